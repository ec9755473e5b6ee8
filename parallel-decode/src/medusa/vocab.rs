//! The heads' vocabulary: the tokens they score.
//!
//! A head's candidates are the tokens the model is about to say, and a model's answers use a
//! small part of its vocabulary: the default model's distilled answers (86,822 tokens) use
//! 3,564 distinct tokens of 49,152, and the 4,096 most frequent in half of the answers cover
//! 94.6% of the tokens of the other half. Scoring only a vocabulary of a few thousand tokens makes the heads graph
//! read that many rows of the LM head instead of all of them, which is most of its cost; the
//! rare tokens it cannot propose are the ones the heads would rarely have guessed anyway.

use super::data::Dataset;

/// The `size` tokens the answers of `sequences` (indices into `data.sequences`) use most,
/// topped up with the lowest ids of a model vocabulary of `vocab` tokens (a byte-level BPE
/// numbers its tokens roughly from most to least common), as strictly increasing ids.
/// `None` when `size` is 0 or covers the whole vocabulary: then the heads score everything.
pub fn heads_vocabulary(
    data: &Dataset,
    sequences: &[usize],
    size: usize,
    vocab: usize,
) -> Option<Vec<u32>> {
    if size == 0 || size >= vocab {
        return None;
    }
    let mut counts = vec![0u64; vocab];
    for &s in sequences {
        if let Some(seq) = data.sequences.get(s) {
            for &t in &seq.tokens {
                if let Some(c) = counts.get_mut(t as usize) {
                    *c += 1;
                }
            }
        }
    }
    // Most used first; unused tokens (count 0) follow in id order.
    let mut order: Vec<u32> = (0..vocab as u32).collect();
    order.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    let mut chosen: Vec<u32> = order.into_iter().take(size).collect();
    chosen.sort_unstable();
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::medusa::data::DistilledSequence;

    fn data(answers: &[&[u32]]) -> Dataset {
        Dataset {
            hidden: 1,
            states: vec![0.0; answers.iter().map(|a| a.len()).sum()],
            sequences: answers
                .iter()
                .enumerate()
                .map(|(i, a)| DistilledSequence {
                    prompt: i,
                    tokens: a.to_vec(),
                    first_state: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn most_used_tokens_then_the_lowest_ids() {
        let d = data(&[&[9, 9, 9, 7, 7, 5], &[8, 8, 8, 8]]);
        // Only the first answer counts: 9 (3), 7 (2), 5 (1), then ids 0, 1 ...
        assert_eq!(heads_vocabulary(&d, &[0], 2, 10), Some(vec![7, 9]));
        assert_eq!(heads_vocabulary(&d, &[0], 5, 10), Some(vec![0, 1, 5, 7, 9]));
        assert_eq!(heads_vocabulary(&d, &[0, 1], 2, 10), Some(vec![8, 9]));
        assert_eq!(heads_vocabulary(&d, &[0], 0, 10), None);
        assert_eq!(heads_vocabulary(&d, &[0], 10, 10), None);
        // Out-of-range tokens and sequences are ignored.
        let d = data(&[&[42, 3]]);
        assert_eq!(heads_vocabulary(&d, &[0, 7], 1, 10), Some(vec![3]));
    }
}
