//! The contract between a compiled Llama graph and the kernels that run it: the parameters a
//! mock NEFF carries and the exact list of its input and output tensors.
//!
//! `parallel-decode`'s compile step writes NEFFs from these functions and the kernels check
//! loaded NEFFs against them, so both sides read one definition.
//!
//! Per-row inputs of a forward graph (batch `B`, bucket width `T`):
//!
//! | name | dtype | shape | meaning |
//! |---|---|---|---|
//! | `input_ids` | i32 | `[B, T]` | new tokens (the first `new_lens[b]` of each row are real) |
//! | `position_ids` | i32 | `[B, T]` | their positions (in a tree, cache length + depth) |
//! | `seq_ids` | i32 | `[B]` | KV slot of each row |
//! | `cache_lens` | i32 | `[B]` | positions already cached; new tokens go after them |
//! | `new_lens` | i32 | `[B]` | real new tokens per row (0: the row is unused) |
//! | `tree_mask` | u8 | `[B, T, T]` | ancestor mask (only in graphs built with `tree_mask`) |
//! | `kv_cache` | f32 | see [`KvLayout`] | input **and** output: updated in place |
//!
//! plus every weight, by its Hugging Face name and this rank's shard shape, the matrices in
//! the mock's panel layout ([`super::packed`]: shape `[panels, cols, 16]`, see
//! [`is_packed_weight`]). Outputs: `logits`
//! `[B, O, vocab]` f32, `hidden` `[B, O, hidden]` f32 (after the final norm) and `next_token`
//! `[B, O]` i32 (the argmax of each logits row), where `O` is 1 (output at each row's last new
//! token) or `T` (output at every new token).

use neuron_sys::DType;
use serde::{Deserialize, Serialize};

use super::forward::{Dims, KvLayout};
use super::packed::{packed_pairs_shape, packed_shape};
use crate::neff::{TensorSpec, Usage};

/// Kernel name of the forward graphs (prefill, decode, verify).
pub const FORWARD_KERNEL: &str = "llama.forward";
/// Kernel name of the KV-commit graph.
pub const KV_COMMIT_KERNEL: &str = "llama.kv_commit";
/// Kernel name of the Medusa-heads graph.
pub const HEADS_KERNEL: &str = "llama.heads";

/// Name of the KV-cache tensor (bound to both the input and the output set).
pub const KV_CACHE: &str = "kv_cache";

/// The model, as one rank holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShard {
    /// Full vocabulary size.
    pub vocab: usize,
    /// Model width.
    pub hidden: usize,
    /// MLP width on this rank.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads on this rank.
    pub q_heads: usize,
    /// Key/value heads on this rank.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Rotary frequencies, `head_dim / 2` of them (plain RoPE: `theta^(-2i/head_dim)`;
    /// scaled variants rescale them).
    pub rope_inv_freq: Vec<f64>,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Whether the LM head is the embedding matrix.
    pub tied_embeddings: bool,
    /// Rows of each rank's LM-head slice: `vocab` when the head is not split, otherwise
    /// `vocab / ranks`, rank r holding rows `r · vocab_local ..`. One NEFF serves every rank;
    /// the rank decides the slice.
    pub vocab_local: usize,
    /// How the matrices the forward graphs stream are stored ([`is_model_matrix`]: the
    /// decoder layers' projections and the LM head); the embedding, which is looked up, and
    /// the norms are f32 either way.
    #[serde(default, skip_serializing_if = "MatrixDtype::is_f32")]
    pub matrices: MatrixDtype,
}

/// How a compiled graph stores the matrices its forward passes stream ([`is_model_matrix`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatrixDtype {
    /// f32 panels ([`super::packed::pack`]): the products run in f32 or, with
    /// `NEURON_MOCK_MATMUL=bf16`, in bf16 converting the weights as they stream.
    #[default]
    F32,
    /// bf16 pair panels ([`super::packed::pack_bf16_pairs`]), rounded as the bf16 products
    /// round f32 weights (so the results are the same bits), half the bytes and nothing to
    /// convert. Runs only with `NEURON_MOCK_MATMUL=bf16`, as a NeuronCore runs bf16 weights.
    /// The graphs then take `lm_head.weight` even when it is tied to the embedding (a bf16
    /// copy of it: the lookups keep reading the f32 embedding).
    Bf16,
}

impl MatrixDtype {
    /// Whether this is [`MatrixDtype::F32`].
    pub fn is_f32(&self) -> bool {
        *self == MatrixDtype::F32
    }

    /// The lowercase name (`f32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            MatrixDtype::F32 => "f32",
            MatrixDtype::Bf16 => "bf16",
        }
    }
}

impl ModelShard {
    /// First vocabulary row of `rank`'s LM-head slice.
    pub fn vocab_offset(&self, rank: usize) -> usize {
        if self.vocab_local == self.vocab {
            0
        } else {
            rank * self.vocab_local
        }
    }
}

/// Which new tokens produce outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputsAt {
    /// Each row's last new token (prefill, decode).
    Last,
    /// Every new token (verify).
    All,
}

/// Parameters of a forward graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardParams {
    /// The model shard.
    pub model: ModelShard,
    /// The KV cache.
    pub cache: KvLayout,
    /// Rows per pass.
    pub batch: usize,
    /// New tokens per row (the bucket).
    pub width: usize,
    /// Which tokens produce outputs.
    pub outputs_at: OutputsAt,
    /// Whether the graph takes a `tree_mask` (otherwise new tokens attend causally).
    pub tree_mask: bool,
}

impl ForwardParams {
    /// The compute dimensions of this graph on `rank`.
    pub fn dims(&self, rank: usize) -> Dims {
        let m = &self.model;
        Dims {
            vocab: m.vocab,
            hidden: m.hidden,
            intermediate: m.intermediate,
            layers: m.layers,
            q_heads: m.q_heads,
            kv_heads: m.kv_heads,
            head_dim: m.head_dim,
            rope_inv_freq: m.rope_inv_freq.clone(),
            rms_eps: m.rms_eps,
            max_len: self.cache.max_len,
            slots: self.cache.slots,
            vocab_offset: m.vocab_offset(rank),
            vocab_local: m.vocab_local,
        }
    }

    /// Outputs per row.
    pub fn outputs_per_row(&self) -> usize {
        match self.outputs_at {
            OutputsAt::Last => 1,
            OutputsAt::All => self.width,
        }
    }

    /// Checks that the dimensions are consistent with each other.
    ///
    /// # Errors
    /// A sentence naming the inconsistency.
    pub fn validate(&self) -> Result<(), String> {
        let m = &self.model;
        let c = &self.cache;
        if m.layers != c.layers || m.kv_heads != c.kv_heads || m.head_dim != c.head_dim {
            return Err(
                "the KV cache's layers, heads or head width differ from the model's".into(),
            );
        }
        if [
            m.vocab,
            m.hidden,
            m.intermediate,
            m.layers,
            m.q_heads,
            m.kv_heads,
            m.head_dim,
        ]
        .contains(&0)
            || self.batch == 0
            || self.width == 0
            || c.slots == 0
            || c.max_len == 0
        {
            return Err("every dimension must be at least 1".into());
        }
        if !m.q_heads.is_multiple_of(m.kv_heads) {
            return Err(format!(
                "{} query heads are not a multiple of {} key/value heads",
                m.q_heads, m.kv_heads
            ));
        }
        if !m.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head width {} is odd (rotary embeddings pair dimensions)",
                m.head_dim
            ));
        }
        if m.vocab_local == 0 || m.vocab_local > m.vocab || !m.vocab.is_multiple_of(m.vocab_local) {
            return Err(format!(
                "LM-head slices of {} rows do not divide the vocabulary of {}",
                m.vocab_local, m.vocab
            ));
        }
        if m.rope_inv_freq.len() != m.head_dim / 2 || m.rope_inv_freq.iter().any(|f| !f.is_finite())
        {
            return Err(format!(
                "rope_inv_freq must hold {} finite frequencies (half the head width), it holds {}",
                m.head_dim / 2,
                m.rope_inv_freq.len()
            ));
        }
        if m.rms_eps.is_nan() || m.rms_eps < 0.0 {
            return Err("rms_eps must not be negative".into());
        }
        Ok(())
    }

    /// Every tensor of the graph, inputs first.
    pub fn io(&self) -> Vec<TensorSpec> {
        let (b, t) = (self.batch, self.width);
        let mut io = vec![
            spec("input_ids", DType::I32, &[b, t], Usage::Input),
            spec("position_ids", DType::I32, &[b, t], Usage::Input),
            spec("seq_ids", DType::I32, &[b], Usage::Input),
            spec("cache_lens", DType::I32, &[b], Usage::Input),
            spec("new_lens", DType::I32, &[b], Usage::Input),
        ];
        if self.tree_mask {
            io.push(spec("tree_mask", DType::U8, &[b, t, t], Usage::Input));
        }
        io.extend(weight_specs(&self.model));
        io.push(spec(
            KV_CACHE,
            DType::F32,
            &self.cache.shape(),
            Usage::Input,
        ));
        let o = self.outputs_per_row();
        let m = &self.model;
        io.push(spec("logits", DType::F32, &[b, o, m.vocab], Usage::Output));
        io.push(spec("hidden", DType::F32, &[b, o, m.hidden], Usage::Output));
        io.push(spec("next_token", DType::I32, &[b, o], Usage::Output));
        io.push(spec(
            KV_CACHE,
            DType::F32,
            &self.cache.shape(),
            Usage::Output,
        ));
        io
    }
}

/// The weights of a model shard, by Hugging Face name, with this rank's shapes.
pub fn weight_specs(m: &ModelShard) -> Vec<TensorSpec> {
    let (d, hd) = (m.hidden, m.head_dim);
    let mut specs = vec![weight_spec(EMBEDDING, &[m.vocab, d])];
    let layer_spec = |name: &str, shape: &[usize]| {
        let (dtype, stored) = stored_weight(name, shape, m.matrices);
        spec(name, dtype, &stored, Usage::Input)
    };
    for l in 0..m.layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("input_layernorm.weight", vec![d]),
            ("self_attn.q_proj.weight", vec![m.q_heads * hd, d]),
            ("self_attn.k_proj.weight", vec![m.kv_heads * hd, d]),
            ("self_attn.v_proj.weight", vec![m.kv_heads * hd, d]),
            ("self_attn.o_proj.weight", vec![d, m.q_heads * hd]),
            ("post_attention_layernorm.weight", vec![d]),
            ("mlp.gate_proj.weight", vec![m.intermediate, d]),
            ("mlp.up_proj.weight", vec![m.intermediate, d]),
            ("mlp.down_proj.weight", vec![d, m.intermediate]),
        ] {
            specs.push(layer_spec(&format!("{p}.{name}"), &shape));
        }
    }
    specs.push(weight_spec("model.norm.weight", &[d]));
    if m.takes_lm_head() {
        specs.push(layer_spec(LM_HEAD, &[m.vocab_local, d]));
    }
    specs
}

/// The name of the LM-head input.
pub const LM_HEAD: &str = "lm_head.weight";

impl ModelShard {
    /// Whether the graphs take [`LM_HEAD`] (untied, or a bf16 copy of the tied embedding),
    /// rather than reading the LM head from the embedding.
    pub fn takes_lm_head(&self) -> bool {
        !self.tied_embeddings || self.matrices == MatrixDtype::Bf16
    }
}

/// Whether the weight called `name` is a matrix the kernels multiply, stored in the panel
/// layout of [`super::packed`] (projections, embedding, LM head, Medusa heads and the heads'
/// LM-head rows); vectors (norms, biases) are stored as they are.
pub fn is_packed_weight(name: &str) -> bool {
    name.ends_with("_proj.weight")
        || name == EMBEDDING
        || name == LM_HEAD
        || name == HEADS_LM_HEAD
        || name
            .strip_prefix("medusa.")
            .and_then(|rest| rest.strip_suffix(".weight"))
            .is_some_and(|rest| {
                // `{h}`, `{h}.next_token` or `{h}.path.{i}`: head h's square matrices.
                let (head, part) = rest.split_once('.').unwrap_or((rest, ""));
                let path = part.strip_prefix("path.").map(str::parse::<usize>);
                head.parse::<usize>().is_ok()
                    && (part.is_empty() || part == "next_token" || matches!(path, Some(Ok(_))))
            })
}

/// Whether the weight called `name` is a matrix the forward graphs stream, stored as
/// [`ModelShard::matrices`] says: a decoder layer's projection or the LM head.
pub fn is_model_matrix(name: &str) -> bool {
    (name.starts_with("model.layers.") && name.ends_with("_proj.weight")) || name == LM_HEAD
}

/// The stored dtype and shape of the weight `name` whose Hugging Face shape is `shape`, in a
/// graph whose matrices are `matrices`.
pub fn stored_weight(name: &str, shape: &[usize], matrices: MatrixDtype) -> (DType, Vec<usize>) {
    match (shape, matrices) {
        (&[rows, cols], MatrixDtype::Bf16) if is_model_matrix(name) => {
            (DType::BF16, packed_pairs_shape(rows, cols).to_vec())
        }
        _ => (DType::F32, stored_weight_shape(name, shape)),
    }
}

/// The stored shape of the weight `name` whose Hugging Face shape is `shape`, as f32.
pub fn stored_weight_shape(name: &str, shape: &[usize]) -> Vec<usize> {
    match shape {
        &[rows, cols] if is_packed_weight(name) => packed_shape(rows, cols).to_vec(),
        _ => shape.to_vec(),
    }
}

/// The input spec of a weight with Hugging Face shape `shape`, as stored.
fn weight_spec(name: &str, shape: &[usize]) -> TensorSpec {
    spec(
        name,
        DType::F32,
        &stored_weight_shape(name, shape),
        Usage::Input,
    )
}

/// Parameters of the KV-commit graph: for each row, move the accepted tree tokens (written
/// at `cache_len + accept_indices[k]`) to `cache_len + k`.
///
/// Inputs: `seq_ids` `[B]`, `cache_lens` `[B]`, `accept_counts` `[B]` (0: leave the row
/// alone), `accept_indices` `[B, T]` (i32), and `kv_cache` in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitParams {
    /// The KV cache.
    pub cache: KvLayout,
    /// Rows per call.
    pub batch: usize,
    /// Most accepted tokens per row (the largest verify bucket).
    pub width: usize,
}

impl CommitParams {
    /// Every tensor of the graph, inputs first.
    pub fn io(&self) -> Vec<TensorSpec> {
        let (b, t) = (self.batch, self.width);
        vec![
            spec("seq_ids", DType::I32, &[b], Usage::Input),
            spec("cache_lens", DType::I32, &[b], Usage::Input),
            spec("accept_counts", DType::I32, &[b], Usage::Input),
            spec("accept_indices", DType::I32, &[b, t], Usage::Input),
            spec(KV_CACHE, DType::F32, &self.cache.shape(), Usage::Input),
            spec(KV_CACHE, DType::F32, &self.cache.shape(), Usage::Output),
        ]
    }
}

/// Parameters of the Medusa-heads graph: for each row's hidden state `x` and each head `h`,
/// `z = x + SiLU(W_h x + b_h)`, logits = the model's LM head applied to `z`, and the top-k
/// token ids (best first) with their log-probabilities under the head's softmax over the
/// tokens it scores (how sure the head is: a proposer sizes its tree by them).
///
/// Inputs: `hidden` `[B, hidden]`, `num_rows` `[1]` (rows in use), the LM head
/// (`model.embed_tokens.weight` when tied, else `lm_head.weight`), and per head
/// `medusa.{h}.weight` `[hidden, hidden]` and `medusa.{h}.bias` `[hidden]`. Outputs:
/// `head_ids` `[B, heads, top_k]` i32 and `head_logprobs` `[B, heads, top_k]` f32.
///
/// Heads that take the next token (`takes_next`) compute `z = x + SiLU(W_h x + N_h e + b_h)`
/// with `e` the input embedding of the row's next token: the graph also takes `next_ids`
/// `[B]` i32, the embedding `model.embed_tokens.weight` (once, even when it is the LM head)
/// and per head `medusa.{h}.next_token.weight` `[hidden, hidden]`.
///
/// With a heads vocabulary (`vocab`, strictly increasing token ids), the LM head input is
/// instead `medusa.lm_head` `[vocab.len(), hidden]`: those tokens' rows, the same on every
/// rank (no collective), and the candidates are among those tokens only; f32, or f16 with
/// `half_lm_head`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadsParams {
    /// The model shard (for the LM head).
    pub model: ModelShard,
    /// Number of heads.
    pub heads: usize,
    /// Candidates returned per head.
    pub top_k: usize,
    /// Rows per call.
    pub batch: usize,
    /// The heads' vocabulary (strictly increasing token ids); empty: every token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vocab: Vec<u32>,
    /// Whether the heads also take the next token's embedding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_next: bool,
    /// Whether head `h` also takes the best candidates of heads `0..h` (the path it extends),
    /// so that the heads run one after the other (only with `takes_next`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_path: bool,
    /// Whether the vocabulary's LM-head rows (`medusa.lm_head`) are f16: half the bytes each
    /// head streams (only with a vocabulary; see [`super::packed_half`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub half_lm_head: bool,
    /// Whether the heads' own `[hidden, hidden]` matrices (`weight`, `next_token.weight`,
    /// `path.{i}.weight`) are f16, as heads files store them: half the bytes each head streams
    /// (see [`super::packed_half`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub half_matrices: bool,
}

/// The name of the embedding input (the model's, full vocabulary on every rank).
pub const EMBEDDING: &str = "model.embed_tokens.weight";
/// The heads graph's input holding each row's next token.
pub const NEXT_IDS: &str = "next_ids";

/// Name of head `h`'s weight `part` (`weight`, `bias`, `next_token.weight`,
/// `path.{i}.weight`).
pub fn head_tensor(h: usize, part: &str) -> String {
    format!("medusa.{h}.{part}")
}

/// The parts of head `h` that multiply token embeddings, in the order of the tokens they
/// take: `next_token.weight` (the row's next token) when the heads take it, then, when they
/// take the path, `path.{i}.weight` for the best candidate of each earlier head `i`.
pub fn head_token_parts(h: usize, takes_next: bool, takes_path: bool) -> Vec<String> {
    let mut parts = Vec::new();
    if takes_next {
        parts.push("next_token.weight".to_string());
        if takes_path {
            parts.extend((0..h).map(|i| format!("path.{i}.weight")));
        }
    }
    parts
}

/// The input holding the rows of the heads' vocabulary in the LM head.
pub const HEADS_LM_HEAD: &str = "medusa.lm_head";

impl HeadsParams {
    /// Every tensor of the graph, inputs first.
    pub fn io(&self) -> Vec<TensorSpec> {
        let (b, d, m) = (self.batch, self.model.hidden, &self.model);
        let mut io = vec![
            spec("hidden", DType::F32, &[b, d], Usage::Input),
            spec("num_rows", DType::I32, &[1], Usage::Input),
        ];
        let lm_head_is_embedding = self.vocab.is_empty() && m.tied_embeddings;
        if !self.vocab.is_empty() {
            let dtype = if self.half_lm_head {
                DType::F16
            } else {
                DType::F32
            };
            let shape = stored_weight_shape(HEADS_LM_HEAD, &[self.vocab.len(), d]);
            io.push(spec(HEADS_LM_HEAD, dtype, &shape, Usage::Input));
        } else if m.tied_embeddings {
            io.push(weight_spec(EMBEDDING, &[m.vocab, d]));
        } else {
            let (dtype, shape) = stored_weight(LM_HEAD, &[m.vocab_local, d], m.matrices);
            io.push(spec(LM_HEAD, dtype, &shape, Usage::Input));
        }
        if self.takes_next {
            io.push(spec(NEXT_IDS, DType::I32, &[b], Usage::Input));
            if !lm_head_is_embedding {
                io.push(weight_spec(EMBEDDING, &[m.vocab, d]));
            }
        }
        let matrix = |name: &str| {
            let dtype = if self.half_matrices {
                DType::F16
            } else {
                DType::F32
            };
            spec(
                name,
                dtype,
                &stored_weight_shape(name, &[d, d]),
                Usage::Input,
            )
        };
        for h in 0..self.heads {
            io.push(matrix(&head_tensor(h, "weight")));
            io.push(weight_spec(&head_tensor(h, "bias"), &[d]));
            for part in head_token_parts(h, self.takes_next, self.takes_path) {
                io.push(matrix(&head_tensor(h, &part)));
            }
        }
        io.push(spec(
            "head_ids",
            DType::I32,
            &[b, self.heads, self.top_k],
            Usage::Output,
        ));
        io.push(spec(
            "head_logprobs",
            DType::F32,
            &[b, self.heads, self.top_k],
            Usage::Output,
        ));
        io
    }
}

fn spec(name: &str, dtype: DType, shape: &[usize], usage: Usage) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heads_matrices_are_packed_and_their_vectors_are_not() {
        for name in [
            "medusa.0.weight",
            "medusa.3.next_token.weight",
            "medusa.2.path.1.weight",
            HEADS_LM_HEAD,
            "model.layers.0.mlp.up_proj.weight",
        ] {
            assert!(is_packed_weight(name), "{name}");
        }
        for name in [
            "medusa.0.bias",
            "medusa.x.weight",
            "medusa.2.path.x.weight",
            "medusa.2.other.weight",
            "model.norm.weight",
        ] {
            assert!(!is_packed_weight(name), "{name}");
        }
    }

    #[test]
    fn bf16_applies_to_the_matrices_only() {
        let q = "model.layers.3.self_attn.q_proj.weight";
        assert!(is_model_matrix(q));
        assert_eq!(
            stored_weight(q, &[64, 40], MatrixDtype::Bf16),
            (DType::BF16, vec![4, 32, 16, 2])
        );
        assert_eq!(
            stored_weight(q, &[64, 40], MatrixDtype::F32),
            (DType::F32, vec![4, 40, 16])
        );
        assert!(is_model_matrix(LM_HEAD));
        assert_eq!(
            stored_weight(LM_HEAD, &[64, 40], MatrixDtype::Bf16),
            (DType::BF16, vec![4, 32, 16, 2])
        );
        for name in [EMBEDDING, "medusa.0.weight", HEADS_LM_HEAD] {
            assert!(!is_model_matrix(name), "{name}");
            assert_eq!(
                stored_weight(name, &[64, 40], MatrixDtype::Bf16),
                (DType::F32, vec![4, 40, 16])
            );
        }
        let norm = "model.layers.0.input_layernorm.weight";
        assert_eq!(
            stored_weight(norm, &[40], MatrixDtype::Bf16),
            (DType::F32, vec![40])
        );
    }

    #[test]
    fn heads_take_the_path_after_the_next_token() {
        assert!(head_token_parts(2, false, false).is_empty());
        assert_eq!(head_token_parts(2, true, false), ["next_token.weight"]);
        assert_eq!(
            head_token_parts(2, true, true),
            ["next_token.weight", "path.0.weight", "path.1.weight"]
        );
        assert_eq!(head_token_parts(0, true, true), ["next_token.weight"]);
    }
}
