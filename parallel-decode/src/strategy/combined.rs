//! Several proposers in one tree: each adds its candidates under the same root, sharing nodes
//! where they agree, within one node budget. Medusa heads and prompt lookup together, say:
//! the heads guess what the model will say, the prompt supplies what it will copy.

use super::proposer::{Outcome, Proposal, ProposeContext, Proposer};
use crate::{Error, Result};

/// Proposers merged into one tree, in priority order (the first gets the budget first).
pub struct Combined {
    parts: Vec<Box<dyn Proposer>>,
    name: &'static str,
}

impl Combined {
    /// Merges `parts`; `name` is what benchmarks call the combination.
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
        Ok(Combined { parts, name })
    }
}

impl Proposer for Combined {
    fn name(&self) -> &'static str {
        self.name
    }

    fn wants_heads(&self) -> bool {
        self.parts.iter().any(|p| p.wants_heads())
    }

    fn start(&mut self, tokens: &[u32]) -> Result<()> {
        self.parts.iter_mut().try_for_each(|p| p.start(tokens))
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
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
            if proposal.draft.is_some() {
                return Err(Error::Setting {
                    field: "strategy",
                    message: format!(
                        "{} draws from a draft distribution and cannot share a tree",
                        part.name()
                    ),
                });
            }
            // Each leaf's path, added under the merged root (shared prefixes are reused).
            let t = &proposal.tree;
            for node in 1..t.len() {
                if t.children(node).is_empty() {
                    let path: Vec<u32> = t.path_to(node)[1..]
                        .iter()
                        .map(|&i| t.tokens()[i])
                        .collect();
                    merged.tree.add_path(0, &path, ctx.max_nodes);
                }
            }
        }
        Ok(merged)
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
}
