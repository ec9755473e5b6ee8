//! Several proposers in one tree: each adds its candidates under the same root, sharing nodes
//! where they agree, within one node budget. Medusa heads and prompt lookup together, say:
//! the heads guess what the model will say, the prompt supplies what it will copy.

use super::acceptance::{best_count, pass_cost};
use super::proposer::{Outcome, Proposal, ProposeContext, Proposer, RankedCandidates};
use super::tree::TokenTree;
use crate::{Error, Result};

/// Proposers merged into one tree: in priority order (the first gets the budget first), or
/// chosen globally by each candidate's chance ([`Combined::global`]).
pub struct Combined {
    parts: Vec<Box<dyn Proposer>>,
    name: &'static str,
    global: bool,
}

impl Combined {
    /// Merges `parts` in priority order: each part sizes its share of the tree itself, paying
    /// for its nodes on top of those of the parts before it; `name` is what benchmarks call
    /// the combination.
    ///
    /// # Errors
    /// [`Error::Setting`] if there are no parts.
    pub fn new(name: &'static str, parts: Vec<Box<dyn Proposer>>) -> Result<Self> {
        if parts.is_empty() {
            return Err(Error::Setting {
                field: "strategy",
                message: "a combination needs at least one proposer".into(),
            });
        }
        Ok(Combined {
            parts,
            name,
            global: false,
        })
    }

    /// Merges `parts` into one tree chosen across them: every part offers its candidates
    /// with their chances of being accepted ([`Proposer::candidates`]), and the tree is the
    /// `n` likeliest nodes for the `n` that maximises expected tokens per unit of the pass's
    /// cost. A node two parts propose counts once, with the larger chance. A part that does
    /// not rank its candidates sizes its own proposal, and all of it is kept.
    ///
    /// # Errors
    /// [`Error::Setting`] if there are no parts.
    pub fn global(name: &'static str, parts: Vec<Box<dyn Proposer>>) -> Result<Self> {
        let mut combined = Self::new(name, parts)?;
        combined.global = true;
        Ok(combined)
    }

    /// Priority order: each part proposes within the room the earlier ones left.
    fn propose_in_order(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
        let mut merged = Proposal::none(*ctx.tokens.last().unwrap_or(&0));
        for part in &mut self.parts {
            let room = ctx.max_nodes.saturating_sub(merged.tree.len()) + 1;
            if room <= 1 {
                break;
            }
            // The part pays for the nodes it adds on top of those already in the tree: its
            // cost curve starts at the merged tree's size.
            let used = merged.tree.len();
            let tree_cost = ctx.tree_cost.get(used - 1..).unwrap_or(&[]);
            let proposal = part.propose(&ProposeContext {
                max_nodes: room,
                tree_cost,
                ..*ctx
            })?;
            let tree = Self::without_draft(part.as_ref(), proposal)?;
            for (path, _) in leaf_paths(&tree) {
                merged.tree.add_path(0, &path, ctx.max_nodes);
            }
        }
        Ok(merged)
    }

    /// Global choice: the likeliest nodes of all parts, as many as pay.
    fn propose_global(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
        let pending = *ctx.tokens.last().unwrap_or(&0);
        let mut pool = RankedCandidates::none(pending);
        for part in &mut self.parts {
            match part.candidates(ctx)? {
                Some(ranked) => {
                    // Each leaf's path with its nodes' own chances; a node another part
                    // offered too keeps the larger chance (counting agreement as independent
                    // evidence, 1 - (1 - p)(1 - q), modeled no better on the open prompts:
                    // 1.890x against 1.889x).
                    for (path, leaf) in leaf_paths(&ranked.tree) {
                        let chances: Vec<f32> = ranked.tree.path_to(leaf)[1..]
                            .iter()
                            .map(|&n| ranked.chances.get(n).copied().unwrap_or(0.0))
                            .collect();
                        pool.add(&path, &chances);
                    }
                }
                None => {
                    let proposal = part.propose(ctx)?;
                    let tree = Self::without_draft(part.as_ref(), proposal)?;
                    for (path, _) in leaf_paths(&tree) {
                        pool.add(&path, &vec![1.0; path.len()]);
                    }
                }
            }
        }
        let tree = choose_nodes(&pool, ctx);
        for part in &mut self.parts {
            part.keep_only(&tree);
        }
        Ok(Proposal { tree, draft: None })
    }

    /// A proposal's tree, or an error if it is drawn from a draft distribution (its
    /// candidates cannot be verified as deterministic ones in a shared tree).
    fn without_draft(part: &dyn Proposer, proposal: Proposal) -> Result<TokenTree> {
        if proposal.draft.is_some() {
            return Err(Error::Setting {
                field: "strategy",
                message: format!(
                    "{} draws from a draft distribution and cannot share a tree",
                    part.name()
                ),
            });
        }
        Ok(proposal.tree)
    }
}

/// The tokens from the root (excluded) to `node`.
fn path_tokens(tree: &TokenTree, node: usize) -> Vec<u32> {
    tree.path_to(node)[1..]
        .iter()
        .map(|&i| tree.tokens()[i])
        .collect()
}

/// Every leaf's path of tokens and the leaf.
fn leaf_paths(tree: &TokenTree) -> Vec<(Vec<u32>, usize)> {
    (1..tree.len())
        .filter(|&node| tree.children(node).is_empty())
        .map(|node| (path_tokens(tree, node), node))
        .collect()
}

/// The tree of the `n` likeliest nodes of `pool` for the `n` (within the budget) that
/// maximises `(1 + expected accepted) / (cost(n + 1) + heads)`. Expected accepted tokens are
/// the sum of the nodes' chances; a node's chance is capped by its parent's, so that, likeliest
/// first and shallower first among equals, parents come before their children.
pub(crate) fn choose_nodes(pool: &RankedCandidates, ctx: &ProposeContext<'_>) -> TokenTree {
    let t = &pool.tree;
    let mut chance = pool.chances.clone();
    for node in 1..t.len() {
        chance[node] = chance[node].min(chance[t.parent(node)]);
    }
    let mut order: Vec<usize> = (1..t.len()).collect();
    order.sort_by(|&a, &b| {
        chance[b]
            .total_cmp(&chance[a])
            .then(t.depth(a).cmp(&t.depth(b)))
            .then(a.cmp(&b))
    });
    order.truncate(ctx.max_nodes.saturating_sub(1));
    // The heads' run is paid already when they ran; it still weighs on the throughput.
    let heads = if ctx.heads.is_some() {
        ctx.heads_cost
    } else {
        0.0
    };
    let none = 1.0 / (pass_cost(ctx.tree_cost, 1) + heads);
    let n = best_count(
        order.iter().map(|&node| chance[node]),
        ctx.tree_cost,
        heads,
        Some(none),
    );
    let mut tree = TokenTree::new(t.tokens()[0]);
    let mut at = vec![0; t.len()];
    for &node in &order[..n] {
        at[node] = tree.push(at[t.parent(node)], t.tokens()[node]);
    }
    tree
}

impl Proposer for Combined {
    fn name(&self) -> &'static str {
        self.name
    }

    fn wants_heads(&self) -> bool {
        self.parts.iter().any(|p| p.wants_heads())
    }

    fn wants_hidden(&self) -> bool {
        self.parts.iter().any(|p| p.wants_hidden())
    }

    fn hidden_states(&mut self, states: &[Vec<f32>], chosen: &[u32]) -> Result<()> {
        self.parts
            .iter_mut()
            .filter(|p| p.wants_hidden())
            .try_for_each(|p| p.hidden_states(states, chosen))
    }

    fn start(&mut self, tokens: &[u32]) -> Result<()> {
        self.parts.iter_mut().try_for_each(|p| p.start(tokens))
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
        if self.global {
            self.propose_global(ctx)
        } else {
            self.propose_in_order(ctx)
        }
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        // Each part learns from the merged outcome: the accepted path is what the target
        // produced, whichever part proposed it.
        self.parts.iter_mut().try_for_each(|p| p.observe(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::medusa::{Medusa, MedusaTree};
    use crate::strategy::prompt_lookup::{PromptLookup, PromptLookupConfig};
    use crate::strategy::proposer::HeadCandidates;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn both_kinds_of_candidates_share_one_tree() {
        let lookup = PromptLookup::new(PromptLookupConfig {
            max_proposal: 2,
            ..Default::default()
        });
        let medusa = Medusa::new(MedusaTree::new(vec![vec![0], vec![0, 0]]).unwrap());
        let mut c =
            Combined::new("medusa+lookup", vec![Box::new(lookup), Box::new(medusa)]).unwrap();
        assert!(c.wants_heads());
        let heads = HeadCandidates {
            heads: vec![vec![8], vec![30]],
            probs: Vec::new(),
        };
        // "5 6 7 8 9 ... 5 6 7": lookup proposes 8 9; the heads propose 8 30.
        let tokens = [5, 6, 7, 8, 9, 1, 5, 6, 7];
        let p = c
            .propose(&ProposeContext {
                tokens: &tokens,
                max_nodes: 8,
                heads: Some(&heads),
                tree_cost: &[],
                heads_cost: 0.0,
            })
            .unwrap();
        assert_eq!(p.tree.tokens(), &[7, 8, 9, 30]);
        assert_eq!(p.tree.children(1), &[2, 3]);
        let p = c
            .propose(&ProposeContext {
                tokens: &tokens,
                max_nodes: 3,
                heads: Some(&heads),
                tree_cost: &[],
                heads_cost: 0.0,
            })
            .unwrap();
        assert_eq!(p.tree.len(), 3);
    }

    /// Proposes `[(path, chances)]` as ranked candidates and records what it was left with.
    struct Fixed {
        paths: Vec<(Vec<u32>, Vec<f32>)>,
        kept: Rc<RefCell<Vec<Vec<u32>>>>,
    }

    impl Proposer for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }

        fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
            Ok(Proposal::none(*ctx.tokens.last().unwrap_or(&0)))
        }

        fn candidates(&mut self, ctx: &ProposeContext<'_>) -> Result<Option<RankedCandidates>> {
            let mut ranked = RankedCandidates::none(*ctx.tokens.last().unwrap_or(&0));
            for (path, chances) in &self.paths {
                ranked.add(path, chances);
            }
            Ok(Some(ranked))
        }

        fn keep_only(&mut self, tree: &TokenTree) {
            *self.kept.borrow_mut() = self
                .paths
                .iter()
                .map(|(p, _)| p[..tree.follow(p).0].to_vec())
                .collect();
        }
    }

    type Kept = Rc<RefCell<Vec<Vec<u32>>>>;

    fn fixed(paths: &[(&[u32], &[f32])]) -> (Box<Fixed>, Kept) {
        let kept = Kept::default();
        let part = Box::new(Fixed {
            paths: paths
                .iter()
                .map(|(p, c)| (p.to_vec(), c.to_vec()))
                .collect(),
            kept: Rc::clone(&kept),
        });
        (part, kept)
    }

    #[test]
    fn the_global_tree_keeps_the_likeliest_nodes_of_all_parts_as_far_as_they_pay() {
        // Part one: a chain 1 2 3 fading fast; part two: 1 (shared, more likely there) then 4
        // and a rival first token 5.
        let (one, kept_one) = fixed(&[(&[1, 2, 3], &[0.5, 0.2, 0.05])]);
        let (two, kept_two) = fixed(&[(&[1, 4], &[0.7, 0.6]), (&[5], &[0.1])]);
        let mut c = Combined::global("both", vec![one, two]).unwrap();
        let propose = |c: &mut Combined, cost: &[f32]| {
            c.propose(&ProposeContext {
                tokens: &[9],
                max_nodes: 8,
                heads: None,
                tree_cost: cost,
                heads_cost: 0.0,
            })
            .unwrap()
            .tree
        };
        // Flat cost: everything, likeliest first: 1 (0.7), 4 (0.6), 2 (0.2), 5 (0.1), 3.
        let t = propose(&mut c, &[1.0; 8]);
        assert_eq!(t.tokens(), &[9, 1, 4, 2, 5, 3]);
        // Each node costs 0.3 more: 1 and 4 pay (1 + 1.3) / 1.6 = 1.44 against 1.31 for 1 alone
        // and (1 + 1.5) / 1.9 = 1.32 with 2 as well.
        let steep: Vec<f32> = (0..8).map(|n| 1.0 + 0.3 * n as f32).collect();
        let t = propose(&mut c, &steep);
        assert_eq!(t.tokens(), &[9, 1, 4]);
        assert_eq!(t.children(1), &[2]);
        // The parts are told what was kept of their candidates.
        assert_eq!(*kept_one.borrow(), vec![vec![1]]);
        assert_eq!(*kept_two.borrow(), vec![vec![1, 4], vec![]]);
        // Nothing pays when every node costs as much as a pass.
        let ruinous: Vec<f32> = (0..8).map(|n| 1.0 + n as f32).collect();
        assert_eq!(propose(&mut c, &ruinous).len(), 1);
    }
}
