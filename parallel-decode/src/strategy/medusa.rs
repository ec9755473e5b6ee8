//! Medusa heads: extra heads on the target's last hidden state propose the next several
//! tokens at once, and a fixed candidate tree says which combinations of their top candidates
//! to verify.
//!
//! A tree is a list of paths, as in the Medusa papers: the path `[a, b, c]` is the a-th
//! candidate of head 0 (for the token after the pending one), then the b-th of head 1, then the
//! c-th of head 2. Every prefix of a path must also be listed, so the tree is closed under
//! taking parents. The engine runs the heads on the hidden state of the last accepted token
//! and passes their candidates to [`Medusa::propose`](super::proposer::Proposer::propose).
//!
//! The tree's paths are in priority order, so any prefix of them is a tree too. With the
//! target's measured costs ([`ProposeContext::tree_cost`], [`ProposeContext::heads_cost`]),
//! the proposer learns how often each path is accepted and proposes the prefix that maximises
//! expected tokens per unit of cost. When no prefix beats plain decoding (the heads guess
//! badly on this text, and passes are not free), it stops asking for the heads and decodes
//! one token per pass, probing with the heads now and then in case the text changes.
//!
//! When the heads also report how sure they are ([`HeadCandidates::probs`]), each pass is
//! sized on its own: a candidate's chance of being accepted once its parent is, learned per
//! depth as a function of its head's probability ([`Calibration`]), gives every path of the
//! tree a chance for this pass; the most likely paths are proposed, as many as maximise
//! expected tokens per unit of cost. A confident pass then verifies a deep tree and an unsure
//! one a small tree, where a fixed size would pay for the average.

use super::acceptance::{Acceptance, best_count, common_prefix, pass_cost};
use super::proposer::{
    HeadCandidates, Outcome, Proposal, ProposeContext, Proposer, RankedCandidates,
};
use super::tree::TokenTree;
use crate::{Error, Result};

/// A candidate tree as a list of paths of candidate ranks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MedusaTree {
    paths: Vec<Vec<usize>>,
}

impl MedusaTree {
    /// Validates the paths, keeping their order (a priority order: most valuable first).
    ///
    /// # Errors
    /// [`Error::Config`] for an empty path, a path whose parent is not listed before it, or a
    /// duplicate.
    pub fn new(paths: Vec<Vec<usize>>) -> Result<Self> {
        let bad = |message: String| {
            Err(Error::Setting {
                field: "medusa tree",
                message,
            })
        };
        for (i, p) in paths.iter().enumerate() {
            if p.is_empty() {
                return bad(format!("path {i} is empty"));
            }
            if paths[..i].contains(p) {
                return bad(format!("path {p:?} is listed twice"));
            }
            if p.len() > 1 && !paths[..i].iter().any(|q| q[..] == p[..p.len() - 1]) {
                return bad(format!(
                    "path {p:?} is not preceded by its parent {:?}",
                    &p[..p.len() - 1]
                ));
            }
        }
        Ok(MedusaTree { paths })
    }

    /// A chain through each head's best candidate, then alternatives near the root: a
    /// reasonable tree when nothing has been measured (16 nodes with the root).
    pub fn default_for(heads: usize) -> Self {
        let mut paths: Vec<Vec<usize>> = Vec::new();
        for depth in 1..=heads {
            paths.push(vec![0; depth]);
        }
        for alt in 1..4 {
            paths.push(vec![alt]);
        }
        if heads >= 2 {
            for alt in 1..3 {
                paths.push(vec![0, alt]);
                paths.push(vec![1, alt - 1]);
            }
        }
        if heads >= 3 {
            paths.push(vec![0, 0, 1]);
            paths.push(vec![0, 1, 0]);
        }
        if heads >= 4 {
            paths.push(vec![0, 0, 0, 1]);
        }
        paths.truncate(15);
        MedusaTree::new(paths).unwrap_or(MedusaTree {
            paths: vec![vec![0]],
        })
    }

    /// The paths, in priority order.
    pub fn paths(&self) -> &[Vec<usize>] {
        &self.paths
    }

    /// Nodes the tree adds under the root.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the tree proposes nothing.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Deepest path.
    pub fn depth(&self) -> usize {
        self.paths.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Highest candidate rank used at each depth, plus one: how many candidates each head
    /// must return.
    pub fn top_k_per_head(&self) -> Vec<usize> {
        let mut k = vec![0; self.depth()];
        for p in &self.paths {
            for (d, &rank) in p.iter().enumerate() {
                k[d] = k[d].max(rank + 1);
            }
        }
        k
    }

    /// Adds the candidates of the paths `order` (indices into the paths, each after its
    /// parent) under `parent`, within the node budget. Returns each path's tokens, or `None`
    /// for a path that is not in the tree (not in `order`, its head gave too few candidates,
    /// or the budget ran out).
    pub fn grow(
        &self,
        tree: &mut TokenTree,
        parent: usize,
        candidates: &[Vec<u32>],
        order: &[usize],
        max_nodes: usize,
    ) -> Vec<Option<Vec<u32>>> {
        let mut grown = vec![None; self.paths.len()];
        for &i in order {
            if tree.len() >= max_nodes {
                break;
            }
            let Some(tokens) = self.tokens(i, candidates) else {
                continue;
            };
            if tree.add_path(parent, &tokens, max_nodes) == tokens.len() {
                grown[i] = Some(tokens);
            }
        }
        grown
    }

    /// The tokens of path `i` among `candidates` (`None` if a head gave too few).
    fn tokens(&self, i: usize, candidates: &[Vec<u32>]) -> Option<Vec<u32>> {
        self.paths[i]
            .iter()
            .enumerate()
            .map(|(d, &rank)| candidates.get(d)?.get(rank).copied())
            .collect()
    }

    /// Index of each path's parent path (`None` for a path of length one).
    fn parents(&self) -> Vec<Option<usize>> {
        self.paths
            .iter()
            .map(|p| {
                let parent = &p[..p.len() - 1];
                self.paths.iter().position(|q| q[..] == *parent)
            })
            .collect()
    }
}

/// How likely a head's candidate is to be accepted once its parent is, as a function of the
/// head's probability for it: learned per depth in bins of probability. A head's softmax is
/// not an acceptance rate (heads are over- or under-confident, more so deeper), but the passes
/// where it is sure are the passes where it is right; the bins turn one into the other.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// `[depth][bin]`.
    bins: Vec<Vec<Acceptance>>,
}

impl Calibration {
    /// Bins of probability, equally wide.
    const BINS: usize = 10;

    /// Before anything is observed each bin says its probability (a calibrated head).
    pub fn new(depths: usize) -> Self {
        let bin = |b: usize| Acceptance::new((b as f32 + 0.5) / Self::BINS as f32);
        Calibration {
            bins: (0..depths)
                .map(|_| (0..Self::BINS).map(bin).collect())
                .collect(),
        }
    }

    fn bin(p: f32) -> usize {
        ((p.clamp(0.0, 1.0) * Self::BINS as f32) as usize).min(Self::BINS - 1)
    }

    /// Chance that a candidate at `depth` with head probability `p` is accepted, given its
    /// parent is.
    pub fn chance(&self, depth: usize, p: f32) -> f32 {
        self.bins
            .get(depth)
            .map_or(0.0, |bins| bins[Self::bin(p)].rate())
    }

    /// Records whether such a candidate was accepted (its parent having been).
    pub fn observe(&mut self, depth: usize, p: f32, accepted: bool) {
        if let Some(bins) = self.bins.get_mut(depth) {
            bins[Self::bin(p)].observe(usize::from(accepted), !accepted);
        }
    }
}

/// The Medusa proposer: grows its tree from the heads' candidates, as much of it as pays.
#[derive(Debug, Clone)]
pub struct Medusa {
    tree: MedusaTree,
    /// How often each path was accepted whole when proposed, decayed.
    rates: Vec<Acceptance>,
    /// The tokens of each path in the last proposal (`None` if it was not proposed).
    last: Vec<Option<Vec<u32>>>,
    /// The head probability of each path's last candidate in the last proposal (when the
    /// heads reported probabilities).
    last_prob: Vec<Option<f32>>,
    /// Each path's parent path.
    parents: Vec<Option<usize>>,
    /// Acceptance as a function of the heads' probabilities.
    calibration: Calibration,
    /// The target's costs, from the last proposal's context (`None` before the first, or when
    /// the target has no measured cost curve: then the whole tree is always proposed).
    costs: Option<(Vec<f32>, f32)>,
    /// Passes decoded without the heads since they last ran.
    idle: usize,
}

impl Medusa {
    /// While backing off, the heads run again after this many passes without them.
    const PROBE_EVERY: usize = 16;

    /// A proposer using `tree`.
    pub fn new(tree: MedusaTree) -> Self {
        // Before anything is observed: a path of depth d whose ranks sum to r is accepted
        // with probability about 0.6^d / (1 + r), which keeps the priority order.
        let rates = tree
            .paths()
            .iter()
            .map(|p| {
                let ranks: usize = p.iter().sum();
                Acceptance::new(0.6f32.powi(p.len() as i32) / (1 + ranks) as f32)
            })
            .collect();
        Medusa {
            last: vec![None; tree.len()],
            last_prob: vec![None; tree.len()],
            parents: tree.parents(),
            calibration: Calibration::new(tree.depth()),
            tree,
            rates,
            costs: None,
            idle: 0,
        }
    }

    /// The candidate tree.
    pub fn tree(&self) -> &MedusaTree {
        &self.tree
    }

    /// The number of leading paths to propose, at most `limit`, that maximises expected
    /// tokens per unit of cost. With `or_none`, 0 paths (plain decoding: no heads, a one-node
    /// pass) is a choice too.
    fn best_prefix(
        &self,
        tree_cost: &[f32],
        heads_cost: f32,
        limit: usize,
        or_none: bool,
    ) -> usize {
        let none = or_none.then(|| 1.0 / pass_cost(tree_cost, 1));
        best_count(
            self.rates.iter().take(limit).map(Acceptance::rate),
            tree_cost,
            heads_cost,
            none,
        )
    }

    /// Each path's chance of being accepted whole this pass, from the heads' probabilities
    /// (see the module documentation), and each path's last candidate's probability; `None`
    /// if the heads gave no probabilities.
    fn path_chances(&self, heads: &HeadCandidates) -> Option<(Vec<f32>, Vec<Option<f32>>)> {
        if heads.probs.len() < self.tree.depth() {
            return None;
        }
        let paths = self.tree.paths();
        // Parents before children.
        let mut chance = vec![0.0f32; paths.len()];
        let mut last_prob = vec![None; paths.len()];
        for (i, path) in paths.iter().enumerate() {
            let depth = path.len() - 1;
            let Some(&p) = heads.probs[depth].get(path[depth]) else {
                continue;
            };
            let parent = self.parents[i].map_or(1.0, |j| chance[j]);
            chance[i] = parent * self.calibration.chance(depth, p);
            last_prob[i] = Some(p);
        }
        Some((chance, last_prob))
    }

    /// The paths to propose this pass, most likely first, at most `limit`, and each path's
    /// chance and last candidate's probability (`None`s without the heads' probabilities).
    /// With `costs`, as many as maximise expected tokens per unit of cost (at least one);
    /// without, all `limit` (for a caller that sizes the tree itself).
    fn ranked_paths(
        &self,
        heads: &HeadCandidates,
        costs: Option<(&[f32], f32)>,
        limit: usize,
    ) -> (Vec<usize>, Vec<f32>, Vec<Option<f32>>) {
        let Some((chance, last_prob)) = self.path_chances(heads) else {
            // No probabilities: the paths' learned rates, in the tree's priority order.
            let mut chance: Vec<f32> = self.rates.iter().map(Acceptance::rate).collect();
            for i in 0..chance.len() {
                if let Some(j) = self.parents[i] {
                    chance[i] = chance[i].min(chance[j]);
                }
            }
            let n = match costs {
                Some((tree_cost, heads_cost)) => {
                    self.best_prefix(tree_cost, heads_cost, limit, false)
                }
                None => limit.min(self.tree.len()),
            };
            return ((0..n).collect(), chance, vec![None; self.tree.len()]);
        };
        let mut order: Vec<usize> = (0..chance.len())
            .filter(|&i| last_prob[i].is_some())
            .collect();
        // Stable: a child never outranks its parent (its chance is at most the parent's).
        order.sort_by(|&a, &b| chance[b].total_cmp(&chance[a]));
        order.truncate(limit);
        if let Some((tree_cost, heads_cost)) = costs {
            let n = best_count(
                order.iter().map(|&i| chance[i]),
                tree_cost,
                heads_cost,
                None,
            );
            order.truncate(n);
        }
        (order, chance, last_prob)
    }

    /// Grows this pass's tree: sized by the costs when `size` is set, else every path within
    /// the budget; returns it with each path's chance (`None` when the heads did not run).
    fn grow_pass(&mut self, ctx: &ProposeContext<'_>, size: bool) -> (TokenTree, Option<Vec<f32>>) {
        // The costs of this pass (in a combined tree, those of the nodes this proposer adds),
        // kept for deciding whether the heads should run before the next one.
        if !ctx.tree_cost.is_empty() {
            let costs = self.costs.get_or_insert_with(Default::default);
            costs.0.clear();
            costs.0.extend_from_slice(ctx.tree_cost);
            costs.1 = ctx.heads_cost;
        }
        let mut tree = TokenTree::new(*ctx.tokens.last().unwrap_or(&0));
        let Some(heads) = ctx.heads else {
            self.idle += 1;
            self.last.fill(None);
            self.last_prob.fill(None);
            return (tree, None);
        };
        self.idle = 0;
        // The heads ran: propose the best non-empty prefix (when backing off, this is a
        // probe), or the whole tree when the costs are unknown.
        let limit = self.tree.len().min(ctx.max_nodes.saturating_sub(1));
        let (order, chance, last_prob) = match (&self.costs, size) {
            (Some((tree_cost, heads_cost)), true) => {
                self.ranked_paths(heads, Some((tree_cost, *heads_cost)), limit)
            }
            _ => self.ranked_paths(heads, None, limit),
        };
        self.last = self
            .tree
            .grow(&mut tree, 0, &heads.heads, &order, ctx.max_nodes);
        self.last_prob = last_prob;
        (tree, Some(chance))
    }
}

impl Proposer for Medusa {
    fn name(&self) -> &'static str {
        "medusa"
    }

    fn wants_heads(&self) -> bool {
        match &self.costs {
            None => true,
            Some((tree_cost, heads_cost)) => {
                self.idle + 1 >= Self::PROBE_EVERY
                    || self.best_prefix(tree_cost, *heads_cost, self.tree.len(), true) > 0
            }
        }
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
        let (tree, _) = self.grow_pass(ctx, true);
        Ok(Proposal { tree, draft: None })
    }

    fn candidates(&mut self, ctx: &ProposeContext<'_>) -> Result<Option<RankedCandidates>> {
        let (tree, chance) = self.grow_pass(ctx, false);
        let mut ranked = RankedCandidates::none(tree.tokens()[0]);
        if let Some(chance) = chance {
            for (path, &c) in self.last.iter().zip(&chance) {
                if let Some(tokens) = path {
                    // A path's chance is its last node's; its prefixes are paths too, added
                    // before it with their own (the larger chance stays).
                    let mut along = vec![0.0; tokens.len()];
                    along[tokens.len() - 1] = c;
                    ranked.add(tokens, &along);
                }
            }
        }
        Ok(Some(ranked))
    }

    fn keep_only(&mut self, tree: &TokenTree) {
        for (path, prob) in self.last.iter_mut().zip(&mut self.last_prob) {
            if path.as_ref().is_some_and(|p| tree.follow(p).0 < p.len()) {
                *path = None;
                *prob = None;
            }
        }
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        let accepted = outcome.accepted_tokens();
        for ((rate, path), p) in self.rates.iter_mut().zip(&self.last).zip(&self.last_prob) {
            if let Some(path) = path {
                let along = common_prefix(path, &accepted);
                let whole = along == path.len();
                rate.observe(usize::from(whole), !whole);
                // The path's last candidate, judged only if its parent was accepted.
                if let Some(p) = *p
                    && along + 1 >= path.len()
                {
                    self.calibration.observe(path.len() - 1, p, whole);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::proposer::HeadCandidates;
    use crate::strategy::verify::Verdict;

    #[test]
    fn paths_must_be_closed_under_parents() {
        assert!(MedusaTree::new(vec![vec![0], vec![0, 1]]).is_ok());
        let err = MedusaTree::new(vec![vec![0], vec![1, 0]])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not preceded by its parent [1]"), "{err}");
        assert!(MedusaTree::new(vec![vec![0, 0], vec![0]]).is_err());
        assert!(MedusaTree::new(vec![vec![0], vec![0]]).is_err());
        assert!(MedusaTree::new(vec![vec![]]).is_err());
    }

    #[test]
    fn default_trees_are_valid_for_any_head_count() {
        for heads in 1..=6 {
            let t = MedusaTree::default_for(heads);
            assert!(MedusaTree::new(t.paths().to_vec()).is_ok());
            assert!(t.len() <= 15 && t.depth() <= heads);
        }
        assert_eq!(
            MedusaTree::default_for(4).top_k_per_head(),
            vec![4, 3, 2, 2]
        );
    }

    #[test]
    fn ranked_candidates_carry_each_paths_chance_and_learning_covers_only_what_was_kept() {
        let tree = MedusaTree::new(vec![vec![0], vec![1], vec![0, 0]]).unwrap();
        let heads = HeadCandidates {
            heads: vec![vec![10, 11], vec![20, 21]],
            probs: vec![vec![0.85, 0.05], vec![0.55, 0.1]],
        };
        let mut m = Medusa::new(tree);
        let steep = [1.0, 3.0, 5.0, 7.0];
        let ranked = m
            .candidates(&ProposeContext {
                tokens: &[1, 2, 3],
                max_nodes: 16,
                heads: Some(&heads),
                tree_cost: &steep,
                heads_cost: 0.0,
            })
            .unwrap()
            .unwrap();
        // Every path, whatever the cost (in the tree's path order); an uncalibrated head's
        // chance is its bin's middle: 0.85 for [0], 0.05 for [1], 0.85 x 0.55 for [0, 0].
        assert_eq!(ranked.tree.tokens(), &[3, 10, 11, 20]);
        let expected = [1.0, 0.85, 0.05, 0.85 * 0.55];
        for (c, e) in ranked.chances.iter().zip(expected) {
            assert!((c - e).abs() < 1e-6, "{:?}", ranked.chances);
        }
        // The caller kept only [0]: the others are not judged.
        let mut kept = TokenTree::new(3);
        kept.push(0, 10);
        m.keep_only(&kept);
        assert_eq!(m.last, vec![Some(vec![10]), None, None]);
    }

    #[test]
    fn grows_the_candidate_combinations() {
        let tree =
            MedusaTree::new(vec![vec![0], vec![1], vec![0, 0], vec![0, 1], vec![1, 0]]).unwrap();
        let heads = HeadCandidates {
            heads: vec![vec![10, 11], vec![20, 21]],
            probs: Vec::new(),
        };
        let mut m = Medusa::new(tree);
        let p = m
            .propose(&ProposeContext {
                tokens: &[1, 2, 3],
                max_nodes: 16,
                heads: Some(&heads),
                tree_cost: &[],
                heads_cost: 0.0,
            })
            .unwrap();
        assert_eq!(p.tree.tokens(), &[3, 10, 11, 20, 21, 20]);
        assert_eq!(p.tree.parent(5), 2);
        // Budget: root plus two candidates.
        let p = m
            .propose(&ProposeContext {
                tokens: &[1, 2, 3],
                max_nodes: 3,
                heads: Some(&heads),
                tree_cost: &[],
                heads_cost: 0.0,
            })
            .unwrap();
        assert_eq!(p.tree.len(), 3);
        // No heads output yet: nothing proposed.
        let p = m
            .propose(&ProposeContext {
                tokens: &[1],
                max_nodes: 16,
                heads: None,
                tree_cost: &[],
                heads_cost: 0.0,
            })
            .unwrap();
        assert_eq!(p.tree.len(), 1);
    }

    fn context<'a>(heads: Option<&'a HeadCandidates>, cost: &'a [f32]) -> ProposeContext<'a> {
        ProposeContext {
            tokens: &[1, 2, 3],
            max_nodes: 4,
            heads,
            tree_cost: cost,
            heads_cost: 0.2,
        }
    }

    #[test]
    fn backs_off_when_the_heads_do_not_pay_and_probes_again() {
        let tree = MedusaTree::new(vec![vec![0], vec![0, 0], vec![1]]).unwrap();
        let heads = HeadCandidates {
            heads: vec![vec![10, 11], vec![20, 21]],
            probs: Vec::new(),
        };
        let cost = [1.0, 1.3, 1.6, 1.9];
        let mut m = Medusa::new(tree.clone());
        // The target never takes a candidate.
        let mut passes = 0;
        while m.wants_heads() {
            let p = m.propose(&context(Some(&heads), &cost)).unwrap();
            assert!(p.tree.len() > 1, "the heads ran, so something is proposed");
            let verdict = Verdict {
                accepted: vec![0],
                next_token: 99,
            };
            m.observe(&Outcome {
                proposal: &p,
                verdict: &verdict,
            })
            .unwrap();
            passes += 1;
            assert!(passes < 50, "never backs off");
        }
        // Backing off: plain passes until a probe.
        let mut idle = 0;
        while !m.wants_heads() {
            assert_eq!(m.propose(&context(None, &cost)).unwrap().tree.len(), 1);
            idle += 1;
            assert!(idle < 100, "never probes");
        }
        assert_eq!(idle, Medusa::PROBE_EVERY - 1);

        // The target takes the chain through the best candidates every time: Medusa keeps
        // proposing at least that chain.
        let mut m = Medusa::new(tree);
        for _ in 0..50 {
            assert!(m.wants_heads());
            let p = m.propose(&context(Some(&heads), &cost)).unwrap();
            assert!(p.tree.len() >= 3);
            assert_eq!(&p.tree.tokens()[..3], &[3, 10, 20]);
            let verdict = Verdict {
                accepted: vec![0, 1, 2],
                next_token: 7,
            };
            m.observe(&Outcome {
                proposal: &p,
                verdict: &verdict,
            })
            .unwrap();
        }
    }

    /// Proposes with heads of the given first-candidate probability, after `cost`; the
    /// target accepts `accepted` candidates along the chain of best candidates.
    fn pass_with_confidence(m: &mut Medusa, sure: f32, accepted: usize) -> usize {
        let heads = HeadCandidates {
            heads: vec![vec![10, 11], vec![20, 21], vec![30, 31]],
            probs: vec![vec![sure, 0.02]; 3],
        };
        let cost = [1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 1.7, 1.8];
        let ctx = ProposeContext {
            max_nodes: 8,
            ..context(Some(&heads), &cost)
        };
        let p = m.propose(&ctx).unwrap();
        // The target's path: down the chain of best candidates, as far as it was proposed.
        let mut path = vec![0];
        for token in [10, 20, 30].into_iter().take(accepted) {
            let node = *path.last().unwrap();
            match p
                .tree
                .children(node)
                .iter()
                .find(|&&c| p.tree.tokens()[c] == token)
            {
                Some(&child) => path.push(child),
                None => break,
            }
        }
        let verdict = Verdict {
            accepted: path,
            next_token: 7,
        };
        m.observe(&Outcome {
            proposal: &p,
            verdict: &verdict,
        })
        .unwrap();
        p.tree.len() - 1
    }

    #[test]
    fn a_confident_pass_proposes_more_than_an_unsure_one() {
        let tree = MedusaTree::new(vec![
            vec![0],
            vec![0, 0],
            vec![1],
            vec![0, 0, 0],
            vec![0, 1],
            vec![1, 0],
        ])
        .unwrap();
        let mut m = Medusa::new(tree);
        // Costs become known with the first proposal.
        pass_with_confidence(&mut m, 0.5, 0);
        let sure = pass_with_confidence(&mut m, 0.97, 0);
        let unsure = pass_with_confidence(&mut m, 0.05, 0);
        assert!(sure >= 3, "a sure pass proposes the chain: {sure}");
        assert_eq!(unsure, 1, "an unsure pass proposes one candidate");
    }

    #[test]
    fn confidence_that_is_never_borne_out_is_learned() {
        let tree = MedusaTree::new(vec![vec![0], vec![0, 0], vec![0, 0, 0]]).unwrap();
        let mut m = Medusa::new(tree);
        pass_with_confidence(&mut m, 0.97, 0);
        assert_eq!(pass_with_confidence(&mut m, 0.97, 0), 3);
        // Sure heads whose first candidate the target always rejects.
        for _ in 0..60 {
            pass_with_confidence(&mut m, 0.97, 0);
        }
        assert!(m.calibration.chance(0, 0.97) < 0.1);
        assert_eq!(pass_with_confidence(&mut m, 0.97, 0), 1);
        // And heads that are right though unsure.
        let mut m = Medusa::new(MedusaTree::new(vec![vec![0], vec![0, 0], vec![0, 0, 0]]).unwrap());
        for _ in 0..60 {
            pass_with_confidence(&mut m, 0.35, 3);
        }
        assert!(m.calibration.chance(1, 0.35) > 0.9);
        assert_eq!(pass_with_confidence(&mut m, 0.35, 3), 3);
    }
}
