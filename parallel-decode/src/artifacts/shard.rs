//! Tensor-parallel sharding of a Llama model, Megatron style.
//!
//! With degree t, rank r holds 1/t of the attention heads and of the MLP:
//!
//! - column-parallel (rows of the Hugging Face `[out, in]` matrix split): `q_proj`, `k_proj`,
//!   `v_proj` by heads, `gate_proj` and `up_proj` by MLP width;
//! - row-parallel (columns split): `o_proj` and `down_proj`, whose partial outputs the ranks
//!   sum with an all-reduce;
//! - the LM head split by vocabulary rows when t divides the vocabulary (ranks gather their
//!   logits), otherwise replicated; norms and the embedding replicated.

use crate::loading::LlamaConfig;

/// How one tensor is divided between ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Every rank holds all of it.
    Replicated,
    /// Rows (the outer dimension) split evenly.
    Rows,
    /// Columns (the inner dimension of a 2-D tensor) split evenly.
    Columns,
}

/// How a tensor of the given Hugging Face name is split, for a model whose LM head is split
/// by vocabulary rows (`split_vocab`) or not.
pub fn split_of(name: &str, split_vocab: bool) -> Split {
    let ends = |suffix: &str| name.ends_with(suffix);
    if ends("q_proj.weight")
        || ends("k_proj.weight")
        || ends("v_proj.weight")
        || ends("gate_proj.weight")
        || ends("up_proj.weight")
    {
        Split::Rows
    } else if ends("o_proj.weight") || ends("down_proj.weight") {
        Split::Columns
    } else if name == "lm_head.weight" && split_vocab {
        Split::Rows
    } else {
        Split::Replicated
    }
}

/// Why a model cannot be split `tp` ways; `None` when it can.
pub fn check_divisible(config: &LlamaConfig, tp: usize) -> Option<String> {
    if tp == 0 {
        return Some("the tensor-parallel degree must be at least 1".into());
    }
    let parts = [
        ("query heads", config.num_heads),
        ("key/value heads", config.num_kv_heads),
        ("MLP width", config.intermediate_size),
    ];
    let bad: Vec<String> = parts
        .iter()
        .filter(|(_, n)| !n.is_multiple_of(tp))
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if bad.is_empty() {
        return None;
    }
    let good: Vec<String> = (1..=config.num_kv_heads)
        .filter(|t| parts.iter().all(|(_, n)| n.is_multiple_of(*t)))
        .map(|t| t.to_string())
        .collect();
    Some(format!(
        "tensor parallelism {tp} does not divide the model's {}; degrees that do: {}",
        bad.join(", "),
        good.join(", ")
    ))
}

/// Rank `rank`'s part of a tensor of `shape` (row-major data), split `split` among `ranks`.
///
/// # Panics
/// If the shape does not divide (callers check with [`check_divisible`] first).
pub fn shard(
    data: &[f32],
    shape: &[usize],
    split: Split,
    rank: usize,
    ranks: usize,
) -> (Vec<f32>, Vec<usize>) {
    match split {
        Split::Replicated => (data.to_vec(), shape.to_vec()),
        Split::Rows => {
            let rows = shape[0] / ranks;
            let cols: usize = shape[1..].iter().product();
            let mut new_shape = shape.to_vec();
            new_shape[0] = rows;
            (
                data[rank * rows * cols..(rank + 1) * rows * cols].to_vec(),
                new_shape,
            )
        }
        Split::Columns => {
            let (rows, cols) = (shape[0], shape[1]);
            let part = cols / ranks;
            let mut out = Vec::with_capacity(rows * part);
            for row in data.chunks_exact(cols) {
                out.extend_from_slice(&row[rank * part..(rank + 1) * part]);
            }
            (out, vec![rows, part])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_follow_megatron() {
        assert_eq!(
            split_of("model.layers.3.self_attn.q_proj.weight", true),
            Split::Rows
        );
        assert_eq!(
            split_of("model.layers.3.self_attn.o_proj.weight", true),
            Split::Columns
        );
        assert_eq!(
            split_of("model.layers.0.mlp.down_proj.weight", false),
            Split::Columns
        );
        assert_eq!(
            split_of("model.layers.0.input_layernorm.weight", true),
            Split::Replicated
        );
        assert_eq!(split_of("lm_head.weight", true), Split::Rows);
        assert_eq!(split_of("lm_head.weight", false), Split::Replicated);
        assert_eq!(
            split_of("model.embed_tokens.weight", true),
            Split::Replicated
        );
    }

    #[test]
    fn rows_and_columns_reassemble() {
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let (a, sa) = shard(&data, &[4, 6], Split::Rows, 1, 2);
        assert_eq!(sa, vec![2, 6]);
        assert_eq!(a, (12..24).map(|i| i as f32).collect::<Vec<_>>());
        let (b, sb) = shard(&data, &[4, 6], Split::Columns, 2, 3);
        assert_eq!(sb, vec![4, 2]);
        assert_eq!(b, vec![4.0, 5.0, 10.0, 11.0, 16.0, 17.0, 22.0, 23.0]);
    }
}
