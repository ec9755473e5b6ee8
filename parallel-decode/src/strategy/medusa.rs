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

use super::acceptance::{Acceptance, common_prefix, pass_cost};
use super::proposer::{Outcome, Proposal, ProposeContext, Proposer};
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

    /// Adds the candidates of the first `paths` paths under `parent`, within the node
    /// budget. Returns each path's tokens, or `None` for a path that is not in the tree (its
    /// head gave too few candidates, or the budget ran out).
    pub fn grow(
        &self,
        tree: &mut TokenTree,
        parent: usize,
        candidates: &[Vec<u32>],
        paths: usize,
        max_nodes: usize,
    ) -> Vec<Option<Vec<u32>>> {
        let mut grown = vec![None; self.paths.len()];
        for (i, path) in self.paths.iter().enumerate().take(paths) {
            if tree.len() >= max_nodes {
                break;
            }
            let tokens: Option<Vec<u32>> = path
                .iter()
                .enumerate()
                .map(|(d, &rank)| candidates.get(d)?.get(rank).copied())
                .collect();
            if let Some(tokens) = tokens
                && tree.add_path(parent, &tokens, max_nodes) == tokens.len()
            {
                grown[i] = Some(tokens);
            }
        }
        grown
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
        let mut best = (
            0,
            if or_none {
                1.0 / pass_cost(tree_cost, 1)
            } else {
                f32::MIN
            },
        );
        let mut expected = 0.0;
        for (m, rate) in self.rates.iter().take(limit).enumerate() {
            expected += rate.rate();
            let throughput = (1.0 + expected) / (pass_cost(tree_cost, m + 2) + heads_cost);
            if throughput > best.1 {
                best = (m + 1, throughput);
            }
        }
        best.0
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
        // The costs of this pass (in a combined tree, those of the nodes this proposer adds),
        // kept for deciding whether the heads should run before the next one.
        if !ctx.tree_cost.is_empty() {
            let costs = self.costs.get_or_insert_with(Default::default);
            costs.0.clear();
            costs.0.extend_from_slice(ctx.tree_cost);
            costs.1 = ctx.heads_cost;
        }
        let mut tree = TokenTree::new(*ctx.tokens.last().unwrap_or(&0));
        match ctx.heads {
            Some(heads) => {
                self.idle = 0;
                // The heads ran: propose the best non-empty prefix (when backing off, this
                // is a probe), or the whole tree when the costs are unknown.
                let limit = self.tree.len().min(ctx.max_nodes.saturating_sub(1));
                let paths = match &self.costs {
                    None => limit,
                    Some((tree_cost, heads_cost)) => {
                        self.best_prefix(tree_cost, *heads_cost, limit, false)
                    }
                };
                self.last = self
                    .tree
                    .grow(&mut tree, 0, &heads.heads, paths, ctx.max_nodes);
            }
            None => {
                self.idle += 1;
                self.last.fill(None);
            }
        }
        Ok(Proposal { tree, draft: None })
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        let accepted = outcome.accepted_tokens();
        for (rate, path) in self.rates.iter_mut().zip(&self.last) {
            if let Some(path) = path {
                let whole = common_prefix(path, &accepted) == path.len();
                rate.observe(usize::from(whole), !whole);
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
    fn grows_the_candidate_combinations() {
        let tree =
            MedusaTree::new(vec![vec![0], vec![1], vec![0, 0], vec![0, 1], vec![1, 0]]).unwrap();
        let heads = HeadCandidates {
            heads: vec![vec![10, 11], vec![20, 21]],
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
}
