//! Medusa heads: extra heads on the target's last hidden state propose the next several
//! tokens at once, and a fixed candidate tree says which combinations of their top candidates
//! to verify.
//!
//! A tree is a list of paths, as in the Medusa papers: the path `[a, b, c]` is the a-th
//! candidate of head 0 (for the token after the pending one), then the b-th of head 1, then the
//! c-th of head 2. Every prefix of a path must also be listed, so the tree is closed under
//! taking parents. The engine runs the heads on the hidden state of the last accepted token
//! and passes their candidates to [`Medusa::propose`](super::proposer::Proposer::propose).

use super::proposer::{Proposal, ProposeContext, Proposer};
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

    /// Adds the tree's candidates under `parent`, within the node budget.
    pub fn grow(
        &self,
        tree: &mut TokenTree,
        parent: usize,
        candidates: &[Vec<u32>],
        max_nodes: usize,
    ) {
        for path in &self.paths {
            if tree.len() >= max_nodes {
                break;
            }
            let tokens: Option<Vec<u32>> = path
                .iter()
                .enumerate()
                .map(|(d, &rank)| candidates.get(d)?.get(rank).copied())
                .collect();
            if let Some(tokens) = tokens {
                tree.add_path(parent, &tokens, max_nodes);
            }
        }
    }
}

/// The Medusa proposer: grows its tree from the heads' candidates.
#[derive(Debug, Clone)]
pub struct Medusa {
    tree: MedusaTree,
}

impl Medusa {
    /// A proposer using `tree`.
    pub fn new(tree: MedusaTree) -> Self {
        Medusa { tree }
    }

    /// The candidate tree.
    pub fn tree(&self) -> &MedusaTree {
        &self.tree
    }
}

impl Proposer for Medusa {
    fn name(&self) -> &'static str {
        "medusa"
    }

    fn wants_heads(&self) -> bool {
        true
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
        let mut tree = TokenTree::new(*ctx.tokens.last().unwrap_or(&0));
        if let Some(heads) = ctx.heads {
            self.tree.grow(&mut tree, 0, &heads.heads, ctx.max_nodes);
        }
        Ok(Proposal { tree, draft: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::proposer::HeadCandidates;

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
            })
            .unwrap();
        assert_eq!(p.tree.len(), 1);
    }
}
