//! How good trained heads are, measured on held-out prompts: top-k accuracy per head, and the
//! joint ranks along tree paths that tree selection ([`super::tune`]) needs.
//!
//! At serving time a tree path `[r0, r1, ...]` is accepted to depth `d` exactly when, for
//! every depth up to `d`, the true next token is head `k`'s candidate of rank `r_k`. So for
//! each held-out position the ranks of the true tokens under every head are recorded, and
//! the fraction of positions whose ranks start with a path is that path's acceptance
//! probability, measured jointly rather than assuming the heads are independent.
//!
//! Heads that take the path are evaluated as the heads graph runs them: head `k` takes the
//! best candidates of the heads before it (the true tokens only where those were right), so
//! the measured ranks are those a served tree sees.

use std::collections::BTreeMap;

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::data::Dataset;
use super::train::{Head, HeadInputs, LmHead, examples, lm_logits};
use crate::loading::{Progress, Unit};

/// Top-k accuracy of one head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadAccuracy {
    /// Positions with a target for this head.
    pub examples: usize,
    /// `top[k - 1]` is the fraction of positions whose true token is among the head's `k`
    /// best candidates.
    pub top: Vec<f64>,
}

/// How often each path of candidate ranks is accepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PathStats {
    /// Positions measured (the denominator).
    pub positions: u64,
    /// For each path of ranks seen, the positions whose true tokens have exactly those ranks
    /// at its depths (so a path's count is at most its parent's).
    pub counts: Vec<(Vec<usize>, u64)>,
}

impl PathStats {
    /// The fraction of positions at which `path` would be accepted in full.
    pub fn probability(&self, path: &[usize]) -> f64 {
        if self.positions == 0 {
            return 0.0;
        }
        self.counts
            .iter()
            .find(|(p, _)| p == path)
            .map_or(0.0, |(_, c)| *c as f64 / self.positions as f64)
    }
}

/// The evaluation of a set of heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Candidates considered per head.
    pub top_k: usize,
    /// Top-1 accuracy of the base model's own LM head on the same positions (its greedy
    /// answers are the targets, so this checks the data: it should be 1 up to ties).
    pub base_top1: f64,
    /// Accuracy of each head.
    pub heads: Vec<HeadAccuracy>,
    /// Joint ranks along paths.
    pub paths: PathStats,
}

/// Rank of `target` in `logits` as the heads graph orders candidates: by value, lower index
/// first on ties.
fn rank(logits: &[f32], target: usize) -> usize {
    let t = logits[target];
    logits
        .iter()
        .enumerate()
        .filter(|&(i, &v)| v > t || (v == t && i < target))
        .count()
}

/// Rank of `target` among the tokens of `vocab` only (`usize::MAX` when it is not one of
/// them: the heads cannot propose it), ordered as [`rank`] orders them.
fn rank_within(logits: &[f32], target: usize, vocab: &[u32]) -> usize {
    if vocab.binary_search(&(target as u32)).is_err() {
        return usize::MAX;
    }
    let t = logits[target];
    vocab
        .iter()
        .map(|&i| i as usize)
        .filter(|&i| logits[i] > t || (logits[i] == t && i < target))
        .count()
}

/// The heads graph's best candidate among `logits` (over `vocab` only, when given): the
/// highest value, the lowest token id on ties.
fn best_candidate(logits: &[f32], vocab: Option<&[u32]>) -> u32 {
    let better = |a: &u32, b: &u32| {
        logits[*a as usize]
            .total_cmp(&logits[*b as usize])
            .then(b.cmp(a))
    };
    match vocab {
        Some(vocab) => vocab.iter().copied().max_by(better),
        None => (0..logits.len() as u32).max_by(better),
    }
    .unwrap_or(0)
}

/// Evaluates `heads` on the states of `sequences`, counting candidates up to `top_k`; with a
/// `vocab` (strictly increasing ids), the heads rank only those tokens, as the heads graph
/// does.
pub fn evaluate(
    data: &Dataset,
    sequences: &[usize],
    lm: &LmHead,
    heads: &[Head],
    vocab: Option<&[u32]>,
    top_k: usize,
    progress: &dyn Progress,
) -> Evaluation {
    const CHUNK: usize = 256;
    let top_k = top_k.max(1);
    let examples = examples(data, sequences, heads.len());
    // ranks[e][h]: rank of example e's true token under head h (None: no target).
    let mut ranks: Vec<Vec<Option<usize>>> = vec![vec![None; heads.len()]; examples.len()];
    let mut base_hits = 0usize;
    let mut inputs = HeadInputs::new(data, lm);
    let mut logits = Array2::zeros((0, 0));
    let step = progress.start(
        "evaluating the heads on held-out prompts",
        Some(examples.len() as u64),
        Unit::Items,
    );
    let v = lm.scored();
    for (c, chunk) in examples.chunks(CHUNK).enumerate() {
        inputs.load(chunk);
        // The base model: the state's own next token is the one it chose.
        lm_logits(lm, inputs.states(), &mut logits);
        base_hits += chunk
            .par_iter()
            .enumerate()
            .filter(|&(r, e)| {
                let row = &logits.as_slice().unwrap_or(&[])[r * v..(r + 1) * v];
                rank(row, e.next as usize) == 0
            })
            .count();
        // Each head's best candidate per example, for the heads after it that take the path
        // (as the heads graph runs them: on the best candidates, not on the true tokens).
        let mut best: Vec<Vec<u32>> = Vec::new();
        for (h, head) in heads.iter().enumerate() {
            lm_logits(lm, inputs.z(head, &best), &mut logits);
            let all = logits.as_slice().unwrap_or(&[]);
            if heads
                .get(h + 1)
                .is_some_and(|next| next.token_weights.len() > h + 1)
            {
                best.push(
                    (0..chunk.len())
                        .into_par_iter()
                        .map(|r| best_candidate(&all[r * v..(r + 1) * v], vocab))
                        .collect(),
                );
            }
            let got: Vec<Option<usize>> = chunk
                .par_iter()
                .enumerate()
                .map(|(r, e)| {
                    let t = e.targets.get(h).copied().flatten()? as usize;
                    let logits = &all[r * v..(r + 1) * v];
                    Some(match vocab {
                        Some(vocab) => rank_within(logits, t, vocab),
                        None => rank(logits, t),
                    })
                })
                .collect();
            for (r, g) in got.into_iter().enumerate() {
                ranks[c * CHUNK + r][h] = g;
            }
        }
        step.advance(chunk.len() as u64);
    }
    drop(step);
    let heads_acc = (0..heads.len())
        .map(|h| {
            let with_target: Vec<usize> = ranks.iter().filter_map(|r| r[h]).collect();
            let n = with_target.len();
            HeadAccuracy {
                examples: n,
                top: (1..=top_k)
                    .map(|k| {
                        if n == 0 {
                            0.0
                        } else {
                            with_target.iter().filter(|&&r| r < k).count() as f64 / n as f64
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let mut counts: BTreeMap<Vec<usize>, u64> = BTreeMap::new();
    for r in &ranks {
        let mut path = Vec::new();
        for &rank in r {
            match rank {
                Some(rank) if rank < top_k => {
                    path.push(rank);
                    *counts.entry(path.clone()).or_default() += 1;
                }
                _ => break,
            }
        }
    }
    Evaluation {
        top_k,
        base_top1: if examples.is_empty() {
            0.0
        } else {
            base_hits as f64 / examples.len() as f64
        },
        heads: heads_acc,
        paths: PathStats {
            positions: examples.len() as u64,
            counts: counts.into_iter().collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_break_ties_by_index_like_the_heads_graph() {
        let l = [1.0, 5.0, 3.0, 5.0, 0.0];
        assert_eq!(best_candidate(&l, None), 1);
        assert_eq!(best_candidate(&l, Some(&[0, 2, 3])), 3);
        assert_eq!(best_candidate(&l, Some(&[0, 4])), 0);
        assert_eq!(rank(&l, 1), 0);
        assert_eq!(rank(&l, 3), 1);
        assert_eq!(rank(&l, 2), 2);
        assert_eq!(rank(&l, 4), 4);
        // Within a vocabulary: only its tokens count, and others cannot be proposed.
        assert_eq!(rank_within(&l, 2, &[0, 2, 4]), 0);
        assert_eq!(rank_within(&l, 3, &[1, 3]), 1);
        assert_eq!(rank_within(&l, 1, &[0, 2]), usize::MAX);
    }

    #[test]
    fn path_probabilities_are_fractions_of_positions() {
        let s = PathStats {
            positions: 10,
            counts: vec![(vec![0], 6), (vec![0, 0], 3), (vec![1], 2)],
        };
        assert!((s.probability(&[0]) - 0.6).abs() < 1e-12);
        assert!((s.probability(&[0, 0]) - 0.3).abs() < 1e-12);
        assert_eq!(s.probability(&[2]), 0.0);
    }
}
