//! Prompt lookup: propose what followed earlier occurrences of the text just written.
//!
//! The last `n` tokens (longest `n` first, down to `min_ngram`) are looked up among all earlier
//! positions of the prompt and of the text generated so far; the tokens that followed each
//! match are proposed. Several matches make several branches of one tree. No extra model: the
//! whole cost is a hash lookup per n-gram length, kept incremental so that it does not grow
//! with the context.
//!
//! Proposal lengths adapt: for each n-gram length the proposer keeps a running average of how
//! many of its candidates the target accepted, and proposes a little more than that. When
//! matches are weak it proposes short chains or nothing, so that a sequence with nothing to
//! copy decodes at plain autoregressive speed.

use std::collections::HashMap;

use super::proposer::{Outcome, Proposal, ProposeContext, Proposer};
use super::tree::TokenTree;

/// Settings of the prompt-lookup proposer.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptLookupConfig {
    /// Longest n-gram matched.
    pub max_ngram: usize,
    /// Shortest n-gram matched; below it nothing is proposed.
    pub min_ngram: usize,
    /// Longest continuation proposed from one match.
    pub max_proposal: usize,
    /// Most matches (branches) per step.
    pub max_branches: usize,
}

impl Default for PromptLookupConfig {
    fn default() -> Self {
        PromptLookupConfig {
            max_ngram: 4,
            min_ngram: 2,
            max_proposal: 8,
            max_branches: 3,
        }
    }
}

/// Running acceptance for one n-gram length.
#[derive(Debug, Clone, Copy)]
struct Acceptance {
    /// Exponential moving average of candidates accepted per proposal from this length.
    mean_accepted: f32,
}

/// The prompt-lookup proposer.
#[derive(Debug, Clone)]
pub struct PromptLookup {
    config: PromptLookupConfig,
    /// Tokens indexed so far (the proposer's copy of the history).
    history: Vec<u32>,
    /// For each n, the end positions (exclusive) of every occurrence of each n-gram.
    index: Vec<HashMap<u64, Vec<usize>>>,
    acceptance: Vec<Acceptance>,
    /// The n-gram length behind each branch of the last proposal (by first-candidate node).
    last_branches: Vec<(usize, usize)>,
}

const EMA: f32 = 0.3;

impl PromptLookup {
    /// A proposer with the given settings.
    pub fn new(config: PromptLookupConfig) -> Self {
        let n = config.max_ngram + 1;
        PromptLookup {
            index: vec![HashMap::new(); n],
            acceptance: vec![
                Acceptance {
                    mean_accepted: config.max_proposal as f32 / 2.0
                };
                n
            ],
            config,
            history: Vec::new(),
            last_branches: Vec::new(),
        }
    }

    fn hash(tokens: &[u32]) -> u64 {
        // FNV-1a over the token ids: cheap and good enough for a lookup table whose hits are
        // checked against the real tokens.
        tokens.iter().fold(0xcbf29ce484222325u64, |h, &t| {
            let mut h = h;
            for b in t.to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100000001b3);
            }
            h
        })
    }

    /// Brings the index up to date with `tokens` (which extend, or replace, the history).
    fn sync(&mut self, tokens: &[u32]) {
        if !tokens.starts_with(&self.history) {
            *self = PromptLookup::new(self.config.clone());
        }
        for end in self.history.len() + 1..=tokens.len() {
            for n in self.config.min_ngram..=self.config.max_ngram {
                if end >= n {
                    self.index[n]
                        .entry(Self::hash(&tokens[end - n..end]))
                        .or_default()
                        .push(end);
                }
            }
        }
        self.history.clear();
        self.history.extend_from_slice(tokens);
    }

    /// How many candidates to propose from a match of length `n`.
    fn proposal_len(&self, n: usize) -> usize {
        let mean = self.acceptance[n].mean_accepted;
        // A little more than is usually accepted; at least one candidate to keep learning.
        ((mean * 1.5).ceil() as usize + 1).clamp(1, self.config.max_proposal)
    }
}

impl Proposer for PromptLookup {
    fn name(&self) -> &'static str {
        "prompt-lookup"
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Proposal> {
        self.sync(ctx.tokens);
        let tokens = ctx.tokens;
        let pending = *tokens.last().unwrap_or(&0);
        let mut tree = TokenTree::new(pending);
        self.last_branches.clear();
        let len = tokens.len();
        for n in (self.config.min_ngram..=self.config.max_ngram).rev() {
            if len < n
                || tree.len() >= ctx.max_nodes
                || self.last_branches.len() >= self.config.max_branches
            {
                break;
            }
            let suffix = &tokens[len - n..];
            let Some(ends) = self.index[n].get(&Self::hash(suffix)) else {
                continue;
            };
            let want = self.proposal_len(n);
            // Most recent occurrences first (they are most often what is being repeated); the
            // current position itself is not a match.
            for &end in ends.iter().rev() {
                if end >= len || &tokens[end - n..end] != suffix {
                    continue;
                }
                let continuation = &tokens[end..(end + want).min(len)];
                if continuation.is_empty() {
                    continue;
                }
                let before = tree.len();
                let added = tree.add_path(0, continuation, ctx.max_nodes);
                if added > 0 && tree.len() > before {
                    let first = tree.child_with_token(0, continuation[0]).unwrap_or(0);
                    self.last_branches.push((first, n));
                }
                if self.last_branches.len() >= self.config.max_branches
                    || tree.len() >= ctx.max_nodes
                {
                    break;
                }
            }
        }
        Ok(Proposal { tree, draft: None })
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> crate::Result<()> {
        let accepted = &outcome.verdict.accepted;
        for &(first, n) in &self.last_branches {
            // Candidates accepted along this branch: the accepted path if it went this way.
            let along = if accepted.get(1) == Some(&first) {
                accepted.len() - 1
            } else {
                0
            };
            let a = &mut self.acceptance[n];
            a.mean_accepted = (1.0 - EMA) * a.mean_accepted + EMA * along as f32;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::verify::Verdict;

    fn propose(p: &mut PromptLookup, tokens: &[u32], max_nodes: usize) -> Proposal {
        p.propose(&ProposeContext {
            tokens,
            max_nodes,
            heads: None,
        })
        .unwrap()
    }

    #[test]
    fn proposes_what_followed_the_longest_match() {
        let mut p = PromptLookup::new(PromptLookupConfig {
            max_proposal: 3,
            ..Default::default()
        });
        // "... 5 6 7 8 9 ... 5 6 7" -> propose 8 9 (and on).
        let tokens = [1, 5, 6, 7, 8, 9, 10, 2, 3, 5, 6, 7];
        let prop = propose(&mut p, &tokens, 16);
        assert_eq!(prop.tree.tokens()[0], 7);
        assert_eq!(
            prop.tree.path_to(prop.tree.len() - 1).len(),
            prop.tree.max_depth() + 1
        );
        let first_branch: Vec<u32> = (1..=3).map(|i| prop.tree.tokens()[i]).collect();
        assert_eq!(first_branch, vec![8, 9, 10]);
    }

    #[test]
    fn several_matches_make_branches_and_nothing_matches_gives_a_root() {
        let mut p = PromptLookup::new(PromptLookupConfig {
            max_proposal: 2,
            ..Default::default()
        });
        let tokens = [4, 5, 1, 4, 5, 2, 4, 5];
        let prop = propose(&mut p, &tokens, 16);
        let firsts: Vec<u32> = prop
            .tree
            .children(0)
            .iter()
            .map(|&c| prop.tree.tokens()[c])
            .collect();
        assert_eq!(firsts, vec![2, 1], "most recent match first");
        let mut q = PromptLookup::new(PromptLookupConfig::default());
        assert_eq!(propose(&mut q, &[1, 2, 3, 4], 16).tree.len(), 1);
    }

    #[test]
    fn respects_the_node_budget() {
        let mut p = PromptLookup::new(PromptLookupConfig {
            max_proposal: 8,
            ..Default::default()
        });
        let tokens: Vec<u32> = (0..20).chain(0..3).collect();
        assert!(propose(&mut p, &tokens, 4).tree.len() <= 4);
    }

    #[test]
    fn proposals_shrink_when_rejected_and_grow_when_accepted() {
        let mut p = PromptLookup::new(PromptLookupConfig::default());
        let tokens: Vec<u32> = (0..30).chain(0..4).collect();
        let start = propose(&mut p, &tokens, 32).tree.len();
        for _ in 0..10 {
            let prop = propose(&mut p, &tokens, 32);
            let verdict = Verdict {
                accepted: vec![0],
                next_token: 99,
            };
            p.observe(&Outcome {
                proposal: &prop,
                verdict: &verdict,
            })
            .unwrap();
        }
        let after_rejects = propose(&mut p, &tokens, 32).tree.len();
        assert!(after_rejects < start, "{after_rejects} vs {start}");
        for _ in 0..10 {
            let prop = propose(&mut p, &tokens, 32);
            let path = prop.tree.path_to(prop.tree.len() - 1);
            let verdict = Verdict {
                accepted: path,
                next_token: 99,
            };
            p.observe(&Outcome {
                proposal: &prop,
                verdict: &verdict,
            })
            .unwrap();
        }
        assert!(propose(&mut p, &tokens, 32).tree.len() > after_rejects);
    }

    #[test]
    fn history_that_is_rewritten_is_reindexed() {
        let mut p = PromptLookup::new(PromptLookupConfig::default());
        propose(&mut p, &[1, 2, 3, 1, 2], 8);
        // A different sequence: the old index must not leak into it.
        assert_eq!(propose(&mut p, &[7, 8, 1, 2], 8).tree.len(), 1);
    }
}
