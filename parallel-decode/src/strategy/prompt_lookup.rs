//! Prompt lookup: propose what followed earlier occurrences of the text just written.
//!
//! The last `n` tokens (longest `n` first, down to `min_ngram`) are looked up among all earlier
//! positions of the prompt and of the text generated so far; the tokens that followed each
//! match are candidates. No extra model: the whole cost is a hash lookup per n-gram length,
//! kept incremental so that it does not grow with the context.
//!
//! How much to propose is a trade measured in time. For each n-gram length the proposer keeps
//! a running estimate of `a_n`, the chance that the target accepts the next copied token
//! (accepted tokens over accepted plus rejected ones). A chain of `k` copied tokens is then
//! expected to add `a + a^2 + ... + a^k` accepted tokens to the one every pass makes, at the
//! price of a pass over `k + 1` nodes, whose relative cost the model reports
//! ([`ProposeContext::tree_cost`]). The proposer picks the length that maximises tokens per
//! unit of cost, and adds further matches as branches only while they raise it. When matches
//! are weak this is zero tokens, so a sequence with nothing to copy decodes at plain
//! autoregressive speed.

use std::collections::HashMap;

use super::acceptance::{Acceptance, best_chain_length, common_prefix};
use super::proposer::{Outcome, Proposal, ProposeContext, Proposer, RankedCandidates};
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
    /// Starting estimate of the per-token acceptance, before anything is observed.
    pub prior_acceptance: f32,
}

impl Default for PromptLookupConfig {
    fn default() -> Self {
        PromptLookupConfig {
            max_ngram: 4,
            min_ngram: 2,
            max_proposal: 8,
            max_branches: 3,
            prior_acceptance: 0.5,
        }
    }
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
    /// The branches of the last proposal: (their tokens, n-gram length).
    last_branches: Vec<(Vec<u32>, usize)>,
}

/// A candidate continuation found by a match.
struct Candidate<'t> {
    ngram: usize,
    tokens: &'t [u32],
}

impl PromptLookup {
    /// A proposer with the given settings.
    pub fn new(config: PromptLookupConfig) -> Self {
        let n = config.max_ngram + 1;
        PromptLookup {
            index: vec![HashMap::new(); n],
            acceptance: vec![Acceptance::new(config.prior_acceptance); n],
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
            let acceptance = self.acceptance.clone();
            *self = PromptLookup::new(self.config.clone());
            // What was learnt about acceptance carries over to the next sequence.
            self.acceptance = acceptance;
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

    /// Continuations of the current suffix, longest match first, most recent first, at most
    /// `max_branches` of them with distinct first tokens.
    fn matches<'t>(&self, tokens: &'t [u32]) -> Vec<Candidate<'t>> {
        let len = tokens.len();
        let mut found: Vec<Candidate<'t>> = Vec::new();
        for n in (self.config.min_ngram..=self.config.max_ngram).rev() {
            if len < n {
                continue;
            }
            let suffix = &tokens[len - n..];
            let Some(ends) = self.index[n].get(&Self::hash(suffix)) else {
                continue;
            };
            for &end in ends.iter().rev() {
                // The current position itself is not a match; a hash hit must be a real one.
                if end >= len || &tokens[end - n..end] != suffix {
                    continue;
                }
                let continuation = &tokens[end..(end + self.config.max_proposal).min(len)];
                let Some(first) = continuation.first() else {
                    continue;
                };
                if found.iter().any(|c| c.tokens[0] == *first) {
                    continue;
                }
                found.push(Candidate {
                    ngram: n,
                    tokens: continuation,
                });
                if found.len() >= self.config.max_branches {
                    return found;
                }
            }
        }
        found
    }
}

impl PromptLookup {
    /// The branches of this pass with each node's chance: with `size`, each branch as long as
    /// maximises tokens per unit of cost and only if it raises it (see the module
    /// documentation); without, every match as long as the budget allows, for a caller that
    /// sizes the tree itself.
    fn branches(&mut self, ctx: &ProposeContext<'_>, size: bool) -> RankedCandidates {
        self.sync(ctx.tokens);
        let tokens = ctx.tokens;
        let mut ranked = RankedCandidates::none(*tokens.last().unwrap_or(&0));
        self.last_branches.clear();
        // Greedy: each branch takes the length that maximises (1 + expected accepted) / cost
        // of the whole tree, and is kept only if it improves on the tree without it. A later
        // branch is reached only when the earlier ones' first tokens were rejected.
        let mut expected = 0.0f32;
        let mut reach = 1.0f32;
        for c in self.matches(tokens) {
            let a = self.acceptance[c.ngram].rate();
            let nodes = ranked.tree.len();
            let room = ctx.max_nodes.saturating_sub(nodes).min(c.tokens.len());
            let k = if size {
                let gains: Vec<f32> = (1..=room).map(|k| expected_accepted(a, k)).collect();
                match best_chain_length(&gains, expected, reach, nodes, ctx.tree_cost) {
                    Some(k) => k,
                    None => continue,
                }
            } else {
                room
            };
            let chances: Vec<f32> = (1..=k).map(|i| reach * a.powi(i as i32)).collect();
            ranked.add(&c.tokens[..k], &chances);
            if ranked.tree.len() > nodes {
                self.last_branches.push((c.tokens[..k].to_vec(), c.ngram));
                expected += reach * expected_accepted(a, k);
                reach *= 1.0 - a;
            }
        }
        ranked
    }
}

/// Expected accepted tokens of a chain of `k` tokens each accepted with chance `a` (given
/// the previous ones were).
fn expected_accepted(a: f32, k: usize) -> f32 {
    (1..=k).map(|i| a.powi(i as i32)).sum()
}

impl Proposer for PromptLookup {
    fn name(&self) -> &'static str {
        "prompt-lookup"
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Proposal> {
        Ok(self.branches(ctx, true).into_proposal())
    }

    fn candidates(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Option<RankedCandidates>> {
        Ok(Some(self.branches(ctx, false)))
    }

    fn keep_only(&mut self, tree: &TokenTree) {
        for (branch, _) in &mut self.last_branches {
            branch.truncate(tree.follow(branch).0);
        }
        self.last_branches.retain(|(branch, _)| !branch.is_empty());
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> crate::Result<()> {
        let accepted = outcome.accepted_tokens();
        for (branch, n) in &self.last_branches {
            let along = common_prefix(branch, &accepted);
            if along > 0 {
                // The path went down this branch: it accepted this many of its tokens.
                self.acceptance[*n].observe(along, along < branch.len());
            } else if accepted.is_empty() {
                // Nothing was accepted: this branch's first token was rejected too.
                self.acceptance[*n].observe(0, true);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::verify::Verdict;

    fn propose_with(
        p: &mut PromptLookup,
        tokens: &[u32],
        max_nodes: usize,
        cost: &[f32],
    ) -> Proposal {
        p.propose(&ProposeContext {
            tokens,
            max_nodes,
            heads: None,
            tree_cost: cost,
            heads_cost: 0.0,
        })
        .unwrap()
    }

    fn propose(p: &mut PromptLookup, tokens: &[u32], max_nodes: usize) -> Proposal {
        propose_with(p, tokens, max_nodes, &[])
    }

    #[test]
    fn proposes_what_followed_the_longest_match() {
        let mut p = PromptLookup::new(PromptLookupConfig {
            max_proposal: 3,
            ..Default::default()
        });
        // "... 5 6 7 8 9 10 ... 5 6 7" -> propose 8 9 10.
        let tokens = [1, 5, 6, 7, 8, 9, 10, 2, 3, 5, 6, 7];
        let prop = propose(&mut p, &tokens, 16);
        assert_eq!(prop.tree.tokens(), &[7, 8, 9, 10]);
    }

    #[test]
    fn ranked_candidates_fade_with_depth_and_learning_covers_only_what_was_kept() {
        let mut p = PromptLookup::new(PromptLookupConfig {
            max_proposal: 3,
            ..Default::default()
        });
        let tokens = [1, 5, 6, 7, 8, 9, 10, 2, 3, 5, 6, 7];
        // However steep the cost, every copied token is offered, each less likely.
        let ranked = p
            .candidates(&ProposeContext {
                tokens: &tokens,
                max_nodes: 16,
                heads: None,
                tree_cost: &[1.0, 5.0, 9.0, 13.0],
                heads_cost: 0.0,
            })
            .unwrap()
            .unwrap();
        assert_eq!(ranked.tree.tokens(), &[7, 8, 9, 10]);
        assert_eq!(ranked.chances, vec![1.0, 0.5, 0.25, 0.125]);
        // The caller verified only the first: only it is judged.
        let mut kept = TokenTree::new(7);
        kept.push(0, 8);
        p.keep_only(&kept);
        assert_eq!(p.last_branches, vec![(vec![8], 3)]);
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
    fn proposals_follow_acceptance_and_cost() {
        let tokens: Vec<u32> = (0..30).chain(0..4).collect();
        // Always rejected: the estimate falls until proposing does not pay.
        let mut p = PromptLookup::new(PromptLookupConfig::default());
        let start = propose(&mut p, &tokens, 32).tree.len();
        assert!(start > 2, "a fresh proposer is optimistic");
        for _ in 0..40 {
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
        assert_eq!(
            propose(&mut p, &tokens, 32).tree.len(),
            1,
            "nothing is proposed once it never pays"
        );
        // Always accepted: long chains.
        let mut q = PromptLookup::new(PromptLookupConfig::default());
        for _ in 0..20 {
            let prop = propose(&mut q, &tokens, 32);
            let verdict = Verdict {
                accepted: prop.tree.path_to(prop.tree.len() - 1),
                next_token: 99,
            };
            q.observe(&Outcome {
                proposal: &prop,
                verdict: &verdict,
            })
            .unwrap();
        }
        assert_eq!(propose(&mut q, &tokens, 32).tree.len(), 9);
        // The same acceptance with a steep cost curve: shorter chains.
        let steep: Vec<f32> = (0..32).map(|n| 1.0 + 0.05 * (n * n) as f32).collect();
        assert!(propose_with(&mut q, &tokens, 32, &steep).tree.len() < 9);
    }

    #[test]
    fn history_that_is_rewritten_is_reindexed() {
        let mut p = PromptLookup::new(PromptLookupConfig::default());
        propose(&mut p, &[1, 2, 3, 1, 2], 8);
        // A different sequence: the old index must not leak into it.
        assert_eq!(propose(&mut p, &[7, 8, 1, 2], 8).tree.len(), 1);
    }

    #[test]
    fn expected_accepted_is_the_geometric_sum() {
        assert!((expected_accepted(0.5, 3) - 0.875).abs() < 1e-6);
        assert_eq!(expected_accepted(0.9, 0), 0.0);
    }
}
