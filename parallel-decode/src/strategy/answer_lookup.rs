//! Answer lookup: propose what followed the same words in the model's own earlier answers.
//!
//! A small model answers in set phrases ("Here are some tips:", "I hope this helps!", the
//! markup of a list), and its own greedy answers to many prompts record them. The heads file
//! can carry those answers (the training answers `neuron-decode train-heads` distilled,
//! [`crate::loading::medusa_heads`]); this proposer finds the longest run of the last few
//! tokens among them and proposes the most frequent continuation. No extra model: the cost is
//! a binary search over an index built once when the model opens.
//!
//! The index is a suffix array over the answers read backwards: every position sorted by the
//! tokens before it, nearest first. The positions whose preceding tokens end with the current
//! suffix are then one contiguous range, which narrows as the suffix grows; the continuations
//! of a sample of its positions vote for a chain, token by token, and each depth's share of the
//! votes is its estimated chance of acceptance. Counts in a corpus overstate it (an answer
//! seen a few times is not the answer to this prompt), so the proposer also tracks how many of
//! the tokens it expected were accepted, per length of match, and scales its estimates by that.
//! Like prompt lookup, it proposes the chain length that maximises expected tokens per unit of
//! the pass's measured cost, and nothing when no length pays.

use std::sync::Arc;

use super::acceptance::{best_chain_length, common_prefix};
use super::proposer::{Outcome, Proposal, ProposeContext, Proposer, RankedCandidates};
use super::tree::TokenTree;

/// Between answers in [`AnswerIndex`]'s text: matches never cross it.
const SEPARATOR: u32 = u32::MAX;

/// Settings of the answer-lookup proposer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerLookupConfig {
    /// Longest run of context tokens matched.
    pub max_ngram: usize,
    /// Shortest run matched; below it nothing is proposed (one token says little).
    pub min_ngram: usize,
    /// Longest chain proposed.
    pub max_proposal: usize,
    /// Most matching positions whose continuations vote (evenly spaced over the range).
    pub max_votes: usize,
}

impl Default for AnswerLookupConfig {
    fn default() -> Self {
        AnswerLookupConfig {
            max_ngram: 4,
            min_ngram: 2,
            max_proposal: 6,
            max_votes: 256,
        }
    }
}

/// Answers indexed for lookup by the tokens that precede each position.
#[derive(Debug)]
pub struct AnswerIndex {
    /// Every answer followed by [`SEPARATOR`].
    text: Vec<u32>,
    /// Positions in `text` (each a possible next token), sorted by the tokens before them,
    /// nearest first, compared over at most `depth` tokens.
    sorted: Vec<u32>,
    /// Tokens compared when sorting: the longest match the index can resolve.
    depth: usize,
}

impl AnswerIndex {
    /// Indexes `answers` for matches of up to `depth` tokens.
    ///
    /// # Panics
    /// If the answers hold more than `u32::MAX` tokens in all (the positions are u32).
    pub fn new<'a>(answers: impl IntoIterator<Item = &'a [u32]>, depth: usize) -> Self {
        let mut text = Vec::new();
        for answer in answers {
            text.extend(answer.iter().copied().filter(|&t| t != SEPARATOR));
            text.push(SEPARATOR);
        }
        assert!(
            u32::try_from(text.len()).is_ok(),
            "answers too long to index"
        );
        // Positions right after a separator (or at 0) have no context worth indexing.
        let mut sorted: Vec<u32> = (1..text.len() as u32)
            .filter(|&p| text[p as usize - 1] != SEPARATOR && text[p as usize] != SEPARATOR)
            .collect();
        sorted.sort_unstable_by(|&a, &b| {
            Self::before(&text, a as usize, depth).cmp(Self::before(&text, b as usize, depth))
        });
        AnswerIndex {
            text,
            sorted,
            depth,
        }
    }

    /// The tokens before `pos`, nearest first, up to `depth` and stopping at a separator.
    fn before(text: &[u32], pos: usize, depth: usize) -> impl Iterator<Item = u32> + '_ {
        text[pos.saturating_sub(depth)..pos]
            .iter()
            .rev()
            .copied()
            .take_while(|&t| t != SEPARATOR)
    }

    /// Tokens indexed (separators excluded).
    pub fn tokens(&self) -> usize {
        self.text.len() - self.text.iter().filter(|&&t| t == SEPARATOR).count()
    }

    /// Answers indexed.
    pub fn answers(&self) -> usize {
        self.text.iter().filter(|&&t| t == SEPARATOR).count()
    }

    /// The range of `sorted` whose preceding tokens start (nearest first) with `suffix`
    /// reversed, i.e. the positions right after an occurrence of `suffix`.
    fn range(&self, suffix: &[u32]) -> std::ops::Range<usize> {
        let key: Vec<u32> = suffix.iter().rev().copied().collect();
        // Compares a position's context with the key over the key's length only: equal means
        // "matches", so the range of equal elements is the range of matches.
        let cmp = |&p: &u32| {
            let mut ctx = Self::before(&self.text, p as usize, key.len());
            for &k in &key {
                match ctx.next() {
                    None => return std::cmp::Ordering::Less,
                    Some(c) if c != k => return c.cmp(&k),
                    Some(_) => {}
                }
            }
            std::cmp::Ordering::Equal
        };
        let start = self.sorted.partition_point(|p| cmp(p).is_lt());
        let end = start + self.sorted[start..].partition_point(|p| cmp(p).is_eq());
        start..end
    }

    /// The most frequent continuation of the longest match of the end of `tokens` (at least
    /// `min_ngram` tokens long), with each depth's share of the votes: `None` when nothing
    /// matches.
    fn continuation(&self, tokens: &[u32], config: &AnswerLookupConfig) -> Option<Chain> {
        let longest = config.max_ngram.min(self.depth).min(tokens.len());
        for n in (config.min_ngram.max(1)..=longest).rev() {
            let range = self.range(&tokens[tokens.len() - n..]);
            if range.is_empty() {
                continue;
            }
            // Evenly spaced votes over the range (all of them when it is small).
            let votes = range.len().min(config.max_votes.max(1));
            let mut voters: Vec<usize> = (0..votes)
                .map(|i| self.sorted[range.start + i * range.len() / votes] as usize)
                .collect();
            let mut chain = Chain {
                ngram: n,
                tokens: Vec::new(),
                shares: Vec::new(),
            };
            let mut counts: Vec<(u32, usize)> = Vec::new();
            for depth in 0..config.max_proposal {
                counts.clear();
                for &p in &voters {
                    let t = self.text[p + depth];
                    match counts.iter_mut().find(|(c, _)| *c == t) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((t, 1)),
                    }
                }
                // Ties go to the smaller token id, so that proposals are deterministic.
                let Some(&(best, count)) = counts
                    .iter()
                    .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                else {
                    break;
                };
                if best == SEPARATOR {
                    break;
                }
                // One vote more in the denominator: a single match is a guess, not a certainty.
                chain.shares.push(count as f32 / (voters.len() + 1) as f32);
                chain.tokens.push(best);
                voters.retain(|&p| self.text[p + depth] == best);
            }
            return (!chain.tokens.is_empty()).then_some(chain);
        }
        None
    }
}

/// A proposed continuation: its tokens, each one's share of the votes among the matches that
/// agreed up to it, and the length of the match that found it.
#[derive(Debug, Clone, PartialEq)]
struct Chain {
    ngram: usize,
    tokens: Vec<u32>,
    shares: Vec<f32>,
}

/// How many of the tokens the proposer expected were accepted, decayed, for one match length.
#[derive(Debug, Clone, Copy)]
struct Calibration {
    expected: f32,
    accepted: f32,
}

impl Calibration {
    /// Weight of the prior (which is "as expected"), in expected tokens.
    const PRIOR: f32 = 2.0;
    /// Decay per observation: about the last 20 count.
    const DECAY: f32 = 0.95;

    fn new() -> Self {
        Calibration {
            expected: Self::PRIOR,
            accepted: Self::PRIOR,
        }
    }

    /// Accepted over expected.
    fn factor(&self) -> f32 {
        self.accepted / self.expected.max(1e-6)
    }

    fn observe(&mut self, expected: f32, accepted: usize) {
        self.expected = self.expected * Self::DECAY + expected;
        self.accepted = self.accepted * Self::DECAY + accepted as f32;
    }
}

/// The answer-lookup proposer.
#[derive(Debug, Clone)]
pub struct AnswerLookup {
    index: Arc<AnswerIndex>,
    config: AnswerLookupConfig,
    /// Per match length.
    calibration: Vec<Calibration>,
    /// The chain last proposed and the tokens it was expected to get accepted.
    last: Option<(Chain, f32)>,
}

impl AnswerLookup {
    /// A proposer over `index`.
    pub fn new(index: Arc<AnswerIndex>, config: AnswerLookupConfig) -> Self {
        AnswerLookup {
            calibration: vec![Calibration::new(); config.max_ngram + 1],
            index,
            config,
            last: None,
        }
    }
}

impl AnswerLookup {
    /// This pass's chain with each node's chance: with `size`, as long as maximises tokens
    /// per unit of cost (or none); without, as long as the budget allows, for a caller that
    /// sizes the tree itself.
    fn chain(&mut self, ctx: &ProposeContext<'_>, size: bool) -> RankedCandidates {
        let mut ranked = RankedCandidates::none(*ctx.tokens.last().unwrap_or(&0));
        self.last = None;
        let Some(chain) = self.index.continuation(ctx.tokens, &self.config) else {
            return ranked;
        };
        let factor = self.calibration[chain.ngram].factor();
        let room = ctx.max_nodes.saturating_sub(1).min(chain.tokens.len());
        let gains = expected_by_length(&chain.shares[..room], factor);
        let k = if size {
            best_chain_length(&gains, 0.0, 1.0, 1, ctx.tree_cost)
        } else {
            Some(room).filter(|&k| k > 0)
        };
        if let Some(k) = k {
            // Each node's chance is what it adds to the expected accepted tokens.
            let chances: Vec<f32> = (0..k)
                .map(|i| gains[i] - if i == 0 { 0.0 } else { gains[i - 1] })
                .collect();
            ranked.add(&chain.tokens[..k], &chances);
            self.last = Self::judged(chain, k);
        }
        ranked
    }

    /// The first `k` tokens of `chain` as the proposal to judge, with what the votes alone
    /// expected of them (the calibration compares outcomes with it); `None` for `k = 0`.
    fn judged(mut chain: Chain, k: usize) -> Option<(Chain, f32)> {
        if k == 0 {
            return None;
        }
        chain.tokens.truncate(k);
        chain.shares.truncate(k);
        let raw = expected_by_length(&chain.shares, 1.0)[k - 1];
        Some((chain, raw))
    }
}

/// Expected accepted tokens of the first `k` tokens of a chain, for k = 1..: each token is
/// accepted only if those before it were, with chance `factor · share` (at most 0.99).
fn expected_by_length(shares: &[f32], factor: f32) -> Vec<f32> {
    let mut reach = 1.0f32;
    let mut total = 0.0f32;
    shares
        .iter()
        .map(|&s| {
            reach *= (factor * s).min(0.99);
            total += reach;
            total
        })
        .collect()
}

impl Proposer for AnswerLookup {
    fn name(&self) -> &'static str {
        "answer-lookup"
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Proposal> {
        Ok(self.chain(ctx, true).into_proposal())
    }

    fn candidates(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Option<RankedCandidates>> {
        Ok(Some(self.chain(ctx, false)))
    }

    fn keep_only(&mut self, tree: &TokenTree) {
        if let Some((chain, _)) = self.last.take() {
            let k = tree.follow(&chain.tokens).0;
            self.last = Self::judged(chain, k);
        }
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> crate::Result<()> {
        if let Some((chain, raw_expected)) = self.last.take() {
            let along = common_prefix(&chain.tokens, &outcome.accepted_tokens());
            self.calibration[chain.ngram].observe(raw_expected, along);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::verify::Verdict;

    fn index(answers: &[&[u32]]) -> Arc<AnswerIndex> {
        Arc::new(AnswerIndex::new(answers.iter().copied(), 4))
    }

    fn propose(p: &mut AnswerLookup, tokens: &[u32]) -> Proposal {
        p.propose(&ProposeContext {
            tokens,
            max_nodes: 16,
            heads: None,
            tree_cost: &[],
            heads_cost: 0.0,
        })
        .unwrap()
    }

    #[test]
    fn the_longest_match_finds_the_continuation_most_answers_share() {
        let idx = index(&[
            &[1, 2, 3, 4, 5, 6],
            &[9, 2, 3, 4, 5, 7],
            &[8, 2, 3, 4, 5, 6],
            &[7, 7, 3, 4, 9, 9],
        ]);
        assert_eq!((idx.answers(), idx.tokens()), (4, 24));
        let config = AnswerLookupConfig::default();
        // "... 2 3" matches three answers (and "3" a fourth): 4 5, then 6 two votes to one.
        let chain = idx.continuation(&[20, 2, 3], &config).unwrap();
        assert_eq!(chain.ngram, 2);
        assert_eq!(chain.tokens, vec![4, 5, 6]);
        assert_eq!(chain.shares, vec![0.75, 0.75, 2.0 / 4.0]);
        // A longer match narrows it to one answer.
        let chain = idx.continuation(&[9, 2, 3, 4], &config).unwrap();
        assert_eq!((chain.ngram, chain.tokens.clone()), (4, vec![5, 7]));
        // Nothing crosses the end of an answer, and an unknown suffix matches nothing.
        assert_eq!(idx.continuation(&[5, 6], &config), None);
        assert_eq!(idx.continuation(&[42, 43], &config), None);
        // One token is below the shortest match.
        assert_eq!(idx.continuation(&[3], &config), None);
    }

    #[test]
    fn every_match_is_found_in_a_larger_index() {
        // Pseudo-random answers over a small vocabulary: the suffix array's range must hold
        // exactly the positions a scan finds.
        let mut x = 12345u32;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) % 5
        };
        let answers: Vec<Vec<u32>> = (0..40).map(|_| (0..30).map(|_| next()).collect()).collect();
        let idx = AnswerIndex::new(answers.iter().map(Vec::as_slice), 4);
        for suffix in [&[1u32, 2][..], &[0, 0, 3], &[4, 1, 1, 2], &[3]] {
            let found: std::collections::BTreeSet<usize> = idx.sorted[idx.range(suffix)]
                .iter()
                .map(|&p| p as usize)
                .collect();
            let mut expected = std::collections::BTreeSet::new();
            let mut offset = 0;
            for a in &answers {
                for end in suffix.len()..a.len() {
                    if &a[end - suffix.len()..end] == suffix {
                        expected.insert(offset + end);
                    }
                }
                offset += a.len() + 1;
            }
            assert_eq!(found, expected, "suffix {suffix:?}");
        }
    }

    #[test]
    fn ranked_candidates_are_the_whole_chain_and_learning_covers_only_what_was_kept() {
        let idx = index(&[&[1, 2, 3, 4, 5], &[1, 2, 3, 4, 6]]);
        let mut p = AnswerLookup::new(idx, AnswerLookupConfig::default());
        let steep: Vec<f32> = (0..32).map(|n| 1.0 + 3.0 * n as f32).collect();
        let ranked = p
            .candidates(&ProposeContext {
                tokens: &[9, 1, 2],
                max_nodes: 16,
                heads: None,
                tree_cost: &steep,
                heads_cost: 0.0,
            })
            .unwrap()
            .unwrap();
        // Two votes of two for 3 and 4 (shares 2/3 with the +1 smoothing), then one for 5
        // (1/3): each node's chance is the product along its path.
        assert_eq!(ranked.tree.tokens(), &[2, 3, 4, 5]);
        let expected = [1.0, 2.0 / 3.0, 4.0 / 9.0, 4.0 / 27.0];
        for (c, e) in ranked.chances.iter().zip(expected) {
            assert!((c - e).abs() < 1e-5, "{:?}", ranked.chances);
        }
        let mut kept = TokenTree::new(2);
        kept.push(0, 3);
        p.keep_only(&kept);
        let (chain, raw) = p.last.clone().unwrap();
        assert_eq!(chain.tokens, vec![3]);
        assert!((raw - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn proposals_shrink_when_they_are_rejected() {
        let idx = index(&[&[1, 2, 3, 4, 5, 6, 7], &[1, 2, 3, 4, 5, 6, 7]]);
        let mut p = AnswerLookup::new(Arc::clone(&idx), AnswerLookupConfig::default());
        let tokens = [9, 1, 2];
        let first = propose(&mut p, &tokens);
        assert_eq!(first.tree.tokens(), &[2, 3, 4, 5, 6, 7]);
        for _ in 0..60 {
            let prop = propose(&mut p, &tokens);
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
            propose(&mut p, &tokens).tree.len(),
            1,
            "never accepted: nothing"
        );
        // A fresh proposer with a steep cost proposes less than with a flat one.
        let mut q = AnswerLookup::new(idx, AnswerLookupConfig::default());
        let steep: Vec<f32> = (0..32).map(|n| 1.0 + 0.3 * n as f32).collect();
        let prop = q
            .propose(&ProposeContext {
                tokens: &tokens,
                max_nodes: 16,
                heads: None,
                tree_cost: &steep,
                heads_cost: 0.0,
            })
            .unwrap();
        assert!(
            prop.tree.len() < first.tree.len(),
            "{:?}",
            prop.tree.tokens()
        );
    }

    #[test]
    fn an_empty_index_proposes_nothing() {
        let idx = index(&[]);
        let mut p = AnswerLookup::new(idx, AnswerLookupConfig::default());
        assert_eq!(propose(&mut p, &[1, 2, 3]).tree.len(), 1);
        assert_eq!(propose(&mut p, &[]).tree.len(), 1);
    }
}
