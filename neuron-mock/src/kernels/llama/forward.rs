//! One rank's forward pass of a Llama-family decoder over a batch of rows, with a per-slot KV
//! cache updated in place and an ancestor mask over each row's new tokens.
//!
//! Every graph role is this one pass with different inputs: prefill (a chain of many new
//! tokens, output at the last one), decode (one new token), verify (a tree of new tokens under
//! an ancestor mask, output at every one). Tensor parallelism follows Megatron: each rank holds
//! a slice of the attention heads and of the MLP, and the two row-parallel projections (the
//! attention output and the MLP down projection) are summed across ranks.

use super::linalg::{
    argmax, attention_scores, rms_norm, rope_angles, rope_in_place, softmax_rows, swiglu_in_place,
    weighted_sums,
};
use super::packed::{PARALLEL_TOKENS, Packed, PackedProduct, PackedScratch, matmul_packed};
use rayon::prelude::*;

/// The dimensions of one rank's share of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Dims {
    /// Full vocabulary size.
    pub vocab: usize,
    /// Model width.
    pub hidden: usize,
    /// MLP width held by this rank.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads held by this rank.
    pub q_heads: usize,
    /// Key/value heads held by this rank.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Rotary frequencies, `head_dim / 2` of them.
    pub rope_inv_freq: Vec<f64>,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// KV cache positions per slot.
    pub max_len: usize,
    /// KV cache slots (sequences).
    pub slots: usize,
    /// First vocabulary row of this rank's LM head slice.
    pub vocab_offset: usize,
    /// Vocabulary rows of this rank's LM head slice (`vocab` when the head is not split).
    pub vocab_local: usize,
}

impl Dims {
    /// The layout of this rank's KV cache.
    pub fn kv_layout(&self) -> KvLayout {
        KvLayout {
            layers: self.layers,
            slots: self.slots,
            kv_heads: self.kv_heads,
            max_len: self.max_len,
            head_dim: self.head_dim,
        }
    }

    /// Floats in this rank's KV cache.
    pub fn kv_cache_len(&self) -> usize {
        self.kv_layout().len()
    }

    fn kv_index(&self, layer: usize, which: usize, slot: usize, head: usize, pos: usize) -> usize {
        self.kv_layout().index(layer, which, slot, head, pos)
    }
}

/// The geometry of one rank's KV cache: `[layers][k|v][slots][kv_heads][max_len][head_dim]`
/// f32, so that each head's keys (and values) for one slot are contiguous by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvLayout {
    /// Decoder layers.
    pub layers: usize,
    /// Sequences the cache holds.
    pub slots: usize,
    /// Key/value heads on this rank.
    pub kv_heads: usize,
    /// Positions per slot.
    pub max_len: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl KvLayout {
    /// Floats in the cache.
    pub fn len(&self) -> usize {
        self.layers * 2 * self.slots * self.kv_heads * self.max_len * self.head_dim
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape, outermost first.
    pub fn shape(&self) -> [usize; 6] {
        [
            self.layers,
            2,
            self.slots,
            self.kv_heads,
            self.max_len,
            self.head_dim,
        ]
    }

    /// Index of the first float of one position of one head (`which`: 0 keys, 1 values).
    pub fn index(&self, layer: usize, which: usize, slot: usize, head: usize, pos: usize) -> usize {
        ((((layer * 2 + which) * self.slots + slot) * self.kv_heads + head) * self.max_len + pos)
            * self.head_dim
    }
}

/// One decoder layer's weights, as this rank holds them (Hugging Face shapes; the matrices
/// in the panel layout of [`super::packed`]).
pub struct LayerWeights<'a> {
    /// `input_layernorm.weight` `[hidden]`.
    pub input_norm: &'a [f32],
    /// `self_attn.q_proj.weight` `[q_heads·head_dim][hidden]`.
    pub q_proj: Packed<'a>,
    /// `self_attn.k_proj.weight` `[kv_heads·head_dim][hidden]`.
    pub k_proj: Packed<'a>,
    /// `self_attn.v_proj.weight` `[kv_heads·head_dim][hidden]`.
    pub v_proj: Packed<'a>,
    /// `self_attn.o_proj.weight` `[hidden][q_heads·head_dim]`.
    pub o_proj: Packed<'a>,
    /// `post_attention_layernorm.weight` `[hidden]`.
    pub post_norm: &'a [f32],
    /// `mlp.gate_proj.weight` `[intermediate][hidden]`.
    pub gate_proj: Packed<'a>,
    /// `mlp.up_proj.weight` `[intermediate][hidden]`.
    pub up_proj: Packed<'a>,
    /// `mlp.down_proj.weight` `[hidden][intermediate]`.
    pub down_proj: Packed<'a>,
}

/// The whole model's weights for one rank.
pub struct Weights<'a> {
    /// `model.embed_tokens.weight` `[vocab][hidden]` (every rank holds all of it).
    pub embed: Packed<'a>,
    /// The decoder layers.
    pub layers: Vec<LayerWeights<'a>>,
    /// `model.norm.weight` `[hidden]`.
    pub final_norm: &'a [f32],
    /// This rank's rows of the LM head, `[vocab_local][hidden]` (a view of `embed` when tied).
    pub lm_head: Packed<'a>,
}

/// One row of the batch: a sequence in a KV slot receiving new tokens.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The KV cache slot.
    pub slot: usize,
    /// Positions already in the slot's cache; new tokens are written after them.
    pub cache_len: usize,
    /// New token ids (only the first `new_len` of the bucket are real).
    pub tokens: &'a [i32],
    /// Position ids of the new tokens (for RoPE; the depth in a tree).
    pub positions: &'a [i32],
    /// `[T][T]` ancestor mask (`mask[i][j] != 0`: token i attends to new token j), or `None`
    /// for a causal chain.
    pub mask: Option<&'a [u8]>,
    /// Bucket width `T` (stride of `mask`).
    pub width: usize,
}

impl Row<'_> {
    fn new_len(&self) -> usize {
        self.tokens.len()
    }

    fn attends(&self, i: usize, j: usize) -> bool {
        match self.mask {
            Some(mask) => mask[i * self.width + j] != 0,
            None => j <= i,
        }
    }
}

/// Which new tokens produce outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputAt {
    /// The last new token of each row (prefill, decode).
    Last,
    /// Every new token (verify).
    All,
}

/// A failure of a collective, kept whole so that the caller can recover its status.
pub type CollectiveError = Box<dyn std::error::Error + Send + Sync>;

/// Sums (or gathers) across the ranks of a tensor-parallel world.
pub trait Collective {
    /// Replaces `buf` on every rank by the elementwise sum over ranks.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CollectiveError>;
    /// Writes every rank's `local` into `out`, rank-major (`out.len() = ranks · local.len()`).
    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError>;
    /// Number of ranks.
    fn world_size(&self) -> usize;
}

/// A world of one rank: collectives are identities.
pub struct SingleRank;

impl Collective for SingleRank {
    fn all_reduce_sum(&self, _buf: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(())
    }
    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError> {
        out.copy_from_slice(local);
        Ok(())
    }
    fn world_size(&self) -> usize {
        1
    }
}

/// The rows of one pass and which of their tokens produce outputs.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The rows.
    pub rows: &'a [Row<'a>],
    /// Which new tokens produce outputs.
    pub output_at: OutputAt,
}

/// Where the outputs go. Output number `o` (the selected tokens in row order) is written at
/// row `at[o]` of each output buffer.
pub struct Outputs<'a> {
    /// Destination row of each output.
    pub at: &'a [usize],
    /// `[outputs][vocab]` logits, or `None` to skip them.
    pub logits: Option<&'a mut [f32]>,
    /// `[outputs][hidden]` final-normed hidden states, or `None`.
    pub hidden: Option<&'a mut [f32]>,
    /// `[outputs]` argmax token of each output's logits, or `None`.
    pub next_token: Option<&'a mut [i32]>,
}

/// Why a forward pass was refused.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// An input value is out of range.
    #[error("{0}")]
    BadInput(String),
    /// A collective failed (a rank timed out, say).
    #[error("collective failed: {0}")]
    Collective(CollectiveError),
}

/// Reusable buffers, so that a steady-state step allocates nothing.
#[derive(Default)]
pub struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    sel: Vec<f32>,
    logits_local: Vec<f32>,
    gathered: Vec<f32>,
    rope: Vec<Vec<(f32, f32)>>,
    packed: PackedScratch,
}

/// Runs the pass: writes the rows' new keys and values into `kv_cache` and fills `out`.
///
/// # Errors
/// [`ForwardError::BadInput`] for a slot, token id or length out of range (nothing is written
/// then); [`ForwardError::Collective`] when a collective fails.
pub fn forward(
    dims: &Dims,
    weights: &Weights<'_>,
    kv_cache: &mut [f32],
    batch: Batch<'_>,
    out: Outputs<'_>,
    collective: &dyn Collective,
    s: &mut Scratch,
) -> Result<(), ForwardError> {
    let Batch { rows, output_at } = batch;
    validate(dims, kv_cache, rows)?;
    let d = dims.hidden;
    let hd = dims.head_dim;
    let (qw, kvw) = (dims.q_heads * hd, dims.kv_heads * hd);
    let n: usize = rows.iter().map(Row::new_len).sum();
    if n == 0 {
        return Ok(());
    }
    // Flattened token index -> (row, index within row).
    let token_row: Vec<(usize, usize)> = rows
        .iter()
        .enumerate()
        .flat_map(|(r, row)| (0..row.new_len()).map(move |i| (r, i)))
        .collect();

    resize(&mut s.x, n * d);
    for (t, &(r, i)) in token_row.iter().enumerate() {
        let id = rows[r].tokens[i] as usize;
        weights.embed.row_into(id, &mut s.x[t * d..(t + 1) * d]);
    }
    resize(&mut s.h, n * d);
    resize(&mut s.q, n * qw);
    resize(&mut s.k, n * kvw);
    resize(&mut s.v, n * kvw);
    resize(&mut s.attn, n * qw);
    resize(&mut s.proj, n * d);
    resize(&mut s.gate, n * dims.intermediate);
    resize(&mut s.up, n * dims.intermediate);
    // Rotary angles depend only on the position: computed once per pass, used by every layer.
    s.rope.resize_with(n, Vec::new);
    for (t, &(r, i)) in token_row.iter().enumerate() {
        rope_angles(rows[r].positions[i], &dims.rope_inv_freq, &mut s.rope[t]);
    }

    for (layer, lw) in weights.layers.iter().enumerate() {
        let eps = dims.rms_eps;
        let input_norm = |h: &mut [f32], x: &[f32]| rms_norm(x, lw.input_norm, eps, h);
        per_tokens(&mut s.h, d, &s.x, d, input_norm);
        #[rustfmt::skip]
        let mut qkv = [
            PackedProduct { w: lw.q_proj, y: &mut s.q },
            PackedProduct { w: lw.k_proj, y: &mut s.k },
            PackedProduct { w: lw.v_proj, y: &mut s.v },
        ];
        matmul_packed(&mut qkv, &s.h, d, n, &mut s.packed);
        let rope = |width: usize| {
            move |x: &mut [f32], angles: &[Vec<(f32, f32)>]| {
                for (x, angles) in x.chunks_mut(width).zip(angles) {
                    rope_in_place(x, angles);
                }
            }
        };
        per_tokens(&mut s.q, qw, &s.rope, 1, rope(qw));
        per_tokens(&mut s.k, kvw, &s.rope, 1, rope(kvw));
        for (t, &(r, i)) in token_row.iter().enumerate() {
            let row = &rows[r];
            for g in 0..dims.kv_heads {
                let at = row.cache_len + i;
                let kdst = dims.kv_index(layer, 0, row.slot, g, at);
                kv_cache[kdst..kdst + hd]
                    .copy_from_slice(&s.k[t * kvw + g * hd..t * kvw + (g + 1) * hd]);
                let vdst = dims.kv_index(layer, 1, row.slot, g, at);
                kv_cache[vdst..vdst + hd]
                    .copy_from_slice(&s.v[t * kvw + g * hd..t * kvw + (g + 1) * hd]);
            }
        }
        attention_of_rows(dims, layer, kv_cache, rows, &s.q, &mut s.attn);
        let o_proj = PackedProduct {
            w: lw.o_proj,
            y: &mut s.proj,
        };
        matmul_packed(&mut [o_proj], &s.attn, qw, n, &mut s.packed);
        collective
            .all_reduce_sum(&mut s.proj)
            .map_err(ForwardError::Collective)?;
        per_tokens(&mut s.x, d, &s.proj, d, add_in_place);

        let post_norm = |h: &mut [f32], x: &[f32]| rms_norm(x, lw.post_norm, eps, h);
        per_tokens(&mut s.h, d, &s.x, d, post_norm);
        let f = dims.intermediate;
        #[rustfmt::skip]
        let mut gate_up = [
            PackedProduct { w: lw.gate_proj, y: &mut s.gate },
            PackedProduct { w: lw.up_proj, y: &mut s.up },
        ];
        matmul_packed(&mut gate_up, &s.h, d, n, &mut s.packed);
        per_tokens(&mut s.gate, f, &s.up, f, swiglu_in_place);
        let down = PackedProduct {
            w: lw.down_proj,
            y: &mut s.proj,
        };
        matmul_packed(&mut [down], &s.gate, f, n, &mut s.packed);
        collective
            .all_reduce_sum(&mut s.proj)
            .map_err(ForwardError::Collective)?;
        per_tokens(&mut s.x, d, &s.proj, d, add_in_place);
    }

    // Output tokens: the last of each row, or all of them (padding rows of a bucket are the
    // caller's business: it asked for these tokens only).
    let selected: Vec<usize> = match output_at {
        OutputAt::All => (0..n).collect(),
        OutputAt::Last => {
            let mut end = 0;
            rows.iter()
                .filter_map(|row| {
                    end += row.new_len();
                    (row.new_len() > 0).then(|| end - 1)
                })
                .collect()
        }
    };
    let m = selected.len();
    resize(&mut s.sel, m * d);
    for (o, &t) in selected.iter().enumerate() {
        rms_norm(
            &s.x[t * d..(t + 1) * d],
            weights.final_norm,
            dims.rms_eps,
            &mut s.sel[o * d..(o + 1) * d],
        );
    }
    if out.at.len() < m {
        return Err(ForwardError::BadInput(format!(
            "{m} outputs but {} destinations",
            out.at.len()
        )));
    }
    if let Some(hidden) = out.hidden {
        for (o, &at) in out.at.iter().take(m).enumerate() {
            hidden[at * d..(at + 1) * d].copy_from_slice(&s.sel[o * d..(o + 1) * d]);
        }
    }
    if out.logits.is_none() && out.next_token.is_none() {
        return Ok(());
    }
    let (v, vl) = (dims.vocab, dims.vocab_local);
    // A lone rank whose outputs fill the first rows of the logits in order (a decode step, a
    // verify pass) has the LM head write them in place: through scratch, a pass of 16 tokens
    // copied its 3 MB of logits once more.
    let in_place = vl == v && out.at.iter().take(m).copied().eq(0..m);
    match out.logits {
        Some(dst) if in_place && dst.len() >= m * v => {
            let dst = &mut dst[..m * v];
            let lm_head = PackedProduct {
                w: weights.lm_head,
                y: &mut *dst,
            };
            matmul_packed(&mut [lm_head], &s.sel, d, m, &mut s.packed);
            if let Some(next) = out.next_token {
                next_tokens(dst, v, &out.at[..m], next);
            }
        }
        dst => {
            resize(&mut s.logits_local, m * vl);
            let lm_head = PackedProduct {
                w: weights.lm_head,
                y: &mut s.logits_local,
            };
            matmul_packed(&mut [lm_head], &s.sel, d, m, &mut s.packed);
            let logits: &[f32] = if vl == v {
                &s.logits_local
            } else {
                // Each rank computed its vocabulary slice for every output; gather them
                // rank-major and interleave into [outputs][vocab].
                let ranks = collective.world_size();
                resize(&mut s.gathered, ranks * m * vl);
                collective
                    .all_gather(&s.logits_local, &mut s.gathered)
                    .map_err(ForwardError::Collective)?;
                resize(&mut s.logits_local, m * v);
                for rank in 0..ranks {
                    for o in 0..m {
                        let src = &s.gathered[(rank * m + o) * vl..(rank * m + o + 1) * vl];
                        s.logits_local[o * v + rank * vl..o * v + (rank + 1) * vl]
                            .copy_from_slice(src);
                    }
                }
                &s.logits_local
            };
            if let Some(next) = out.next_token {
                next_tokens(logits, v, &out.at[..m], next);
            }
            if let Some(dst) = dst {
                // Which output each destination row takes (the last one, were two to name it).
                let mut source = vec![None; dst.len() / v.max(1)];
                for (o, &at) in out.at.iter().take(m).enumerate() {
                    source[at] = Some(o);
                }
                let copy = |(dst, o): (&mut [f32], &Option<usize>)| {
                    if let Some(o) = *o {
                        dst.copy_from_slice(&logits[o * v..(o + 1) * v]);
                    }
                };
                if m >= PARALLEL_TOKENS {
                    dst.par_chunks_mut(v).zip(&source).for_each(copy);
                } else {
                    dst.chunks_mut(v).zip(&source).for_each(copy);
                }
            }
        }
    }
    Ok(())
}

/// The greedy token of each output: `next[at[o]]` is the argmax of output `o`'s logits
/// (`logits` holding `at.len()` rows of `vocab`).
fn next_tokens(logits: &[f32], vocab: usize, at: &[usize], next: &mut [i32]) {
    let best = |o: usize| argmax(&logits[o * vocab..(o + 1) * vocab]) as i32;
    let best: Vec<i32> = if at.len() >= PARALLEL_TOKENS {
        (0..at.len()).into_par_iter().map(best).collect()
    } else {
        (0..at.len()).map(best).collect()
    };
    for (&at, best) in at.iter().zip(best) {
        next[at] = best;
    }
}

fn validate(dims: &Dims, kv_cache: &[f32], rows: &[Row<'_>]) -> Result<(), ForwardError> {
    let bad = |m: String| Err(ForwardError::BadInput(m));
    if kv_cache.len() < dims.kv_cache_len() {
        return bad(format!(
            "KV cache holds {} floats, the model needs {}",
            kv_cache.len(),
            dims.kv_cache_len()
        ));
    }
    let mut used_slots = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        if row.slot >= dims.slots {
            return bad(format!(
                "row {r}: KV slot {} is out of range (slots: {})",
                row.slot, dims.slots
            ));
        }
        if used_slots.contains(&row.slot) && row.new_len() > 0 {
            return bad(format!(
                "row {r}: KV slot {} is used by two rows of one batch",
                row.slot
            ));
        }
        used_slots.push(row.slot);
        if row.cache_len + row.new_len() > dims.max_len {
            return bad(format!(
                "row {r}: {} cached + {} new tokens exceed the cache length {}",
                row.cache_len,
                row.new_len(),
                dims.max_len
            ));
        }
        if let Some(&id) = row
            .tokens
            .iter()
            .find(|&&id| id < 0 || id as usize >= dims.vocab)
        {
            return bad(format!(
                "row {r}: token id {id} is outside the vocabulary (0..{})",
                dims.vocab
            ));
        }
        if let Some(&p) = row.positions.iter().find(|&&p| p < 0) {
            return bad(format!("row {r}: negative position id {p}"));
        }
        if row.positions.len() < row.new_len() {
            return bad(format!("row {r}: fewer position ids than tokens"));
        }
        if let Some(mask) = row.mask {
            if mask.len() < row.width * row.width || row.new_len() > row.width {
                return bad(format!(
                    "row {r}: tree mask is smaller than {0}x{0}",
                    row.width
                ));
            }
            for i in 0..row.new_len() {
                if mask[i * row.width + i] == 0 {
                    return bad(format!(
                        "row {r}: tree mask does not let token {i} attend to itself"
                    ));
                }
                if (i + 1..row.new_len()).any(|j| mask[i * row.width + j] != 0) {
                    return bad(format!(
                        "row {r}: tree mask lets token {i} attend to a later token"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Attention whose total multiply-adds are below this many runs on the calling thread (a
/// decode step's few queries over a short context): waking the pool would cost more.
const SERIAL_ATTENTION_WORK: usize = 1 << 17;

/// [`attention`] of every row, `q` and `out` holding the rows' new tokens one after the other.
/// Many rows of a few tokens each (a batch of decode steps, as in distillation) are shared
/// between the pool's threads, since each row alone is too little work to split; one row, or
/// rows too small together, stay on this thread (each row may still split its own work).
fn attention_of_rows(
    dims: &Dims,
    layer: usize,
    kv_cache: &[f32],
    rows: &[Row<'_>],
    q: &[f32],
    out: &mut [f32],
) {
    let width = dims.q_heads * dims.head_dim;
    let mut work = Vec::with_capacity(rows.len());
    let (mut q, mut out) = (q, out);
    let mut total = 0;
    for row in rows {
        let len = row.new_len() * width;
        let (row_q, rest_q) = q.split_at(len);
        let (row_out, rest_out) = std::mem::take(&mut out).split_at_mut(len);
        (q, out) = (rest_q, rest_out);
        total += row.new_len() * dims.q_heads * (row.cache_len + row.new_len()) * dims.head_dim;
        work.push((row, row_q, row_out));
    }
    // Query heads per task: a whole group shares one pass over its keys and values, but a
    // pass of one or two new tokens in all has too few groups to keep the pool's threads busy
    // (3 tasks for 2 threads), and its threads then sleep between the short products around
    // it: one head per task there (a bf16 decode step of SmolLM2 16.8 -> 15.6 ms; from 4
    // tokens on, or with many rows, whole groups are faster).
    let tokens: usize = rows.iter().map(Row::new_len).sum();
    let tasks_wanted = rayon::current_num_threads() * super::packed::TASKS_PER_THREAD;
    let per = if tokens * dims.kv_heads < tasks_wanted {
        1
    } else {
        dims.q_heads / dims.kv_heads
    };
    let one = |(row, q, out): (&Row<'_>, &[f32], &mut [f32])| {
        attention(dims, layer, kv_cache, row, per, q, out)
    };
    if work.len() > 1 && total > SERIAL_ATTENTION_WORK {
        work.into_par_iter().for_each(one);
    } else {
        work.into_iter().for_each(one);
    }
}

/// Grouped-query attention of one row's new tokens over the row's cache and the new tokens
/// each may see. `q` and `out` are `[new tokens][q_heads · head_dim]`.
///
/// Each task covers `per` query heads (a divisor of the group: the whole group sharing a
/// key/value head, or one head in a pass of few tokens), so that a decode step's attention
/// runs on every thread of the pool, not on one, and the tasks of a row share one wake-up of
/// the pool. A task's query heads are scored together against the head's keys (contiguous in
/// the cache), each score summed by the row kernel of [`super::linalg`] in an order that does
/// not depend on how many queries there are: a position scores the same in a decode step and
/// in a verify pass.
fn attention(
    dims: &Dims,
    layer: usize,
    kv_cache: &[f32],
    row: &Row<'_>,
    per: usize,
    q: &[f32],
    out: &mut [f32],
) {
    let (hd, n) = (dims.head_dim, row.new_len());
    let group = dims.q_heads / dims.kv_heads;
    let visible = row.cache_len + n;
    let scale = 1.0 / (hd as f32).sqrt();
    debug_assert!(per > 0 && group.is_multiple_of(per));
    // Buffers for a task's queries (scaled) and their scores, then probabilities, by key.
    let buffers = || (vec![0.0; per * hd], vec![0.0; per * visible]);
    // `out` and `q` are `[token][q head][hd]`: task t holds query heads `t·per ..` of all
    // tokens' heads in order, all of one key/value head since `per` divides the group.
    let task = |bufs: &mut (Vec<f32>, Vec<f32>), (t, out): (usize, &mut [f32])| {
        let (queries, probs) = bufs;
        let first = t * per;
        let (i, g) = (first / dims.q_heads, (first % dims.q_heads) / group);
        let keys = dims.kv_index(layer, 0, row.slot, g, 0);
        let values = dims.kv_index(layer, 1, row.slot, g, 0);
        for (d, v) in queries.iter_mut().zip(&q[first * hd..]) {
            *d = v * scale;
        }
        attention_scores(&kv_cache[keys..keys + visible * hd], queries, probs, hd);
        for p in probs.chunks_exact_mut(visible) {
            for (j, p) in p[row.cache_len..].iter_mut().enumerate() {
                if !row.attends(i, j) {
                    *p = f32::NEG_INFINITY;
                }
            }
        }
        softmax_rows(probs, visible);
        // The task's heads share one pass over the values.
        weighted_sums(probs, &kv_cache[values..values + visible * hd], out, hd);
    };
    let out = &mut out[..n * dims.q_heads * hd];
    if n * dims.q_heads * visible * hd <= SERIAL_ATTENTION_WORK {
        let mut bufs = buffers();
        out.chunks_mut(per * hd)
            .enumerate()
            .for_each(|t| task(&mut bufs, t));
    } else {
        out.par_chunks_mut(per * hd)
            .enumerate()
            .for_each_init(buffers, task);
    }
}

/// `f(dst, src)` for every run of up to [`TOKEN_RUN`] consecutive tokens of a pass, `dst` and
/// `src` holding `dst_width` and `src_width` values a token: on the pool when the pass has
/// [`PARALLEL_TOKENS`] tokens or more. `f` computes each token's values the same way whatever
/// the run, so a token's results do not depend on the pass it is in.
fn per_tokens<D: Send, S: Sync>(
    dst: &mut [D],
    dst_width: usize,
    src: &[S],
    src_width: usize,
    f: impl Fn(&mut [D], &[S]) + Sync,
) {
    if dst_width == 0 || src_width == 0 {
        return;
    }
    let tokens = dst.len() / dst_width;
    let (dst_run, src_run) = (TOKEN_RUN * dst_width, TOKEN_RUN * src_width);
    if tokens >= PARALLEL_TOKENS {
        dst.par_chunks_mut(dst_run)
            .zip(src.par_chunks(src_run))
            .for_each(|(d, s)| f(d, s));
    } else {
        dst.chunks_mut(dst_run)
            .zip(src.chunks(src_run))
            .for_each(|(d, s)| f(d, s));
    }
}

/// Tokens [`per_tokens`] hands over at once: as many as the row norms sum side by side.
const TOKEN_RUN: usize = super::linalg::SIDE_BY_SIDE;

fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn resize(buf: &mut Vec<f32>, len: usize) {
    buf.resize(len, 0.0);
}

/// Moves each row's accepted tree tokens to contiguous positions after its cache: the k-th
/// accepted token, written at `cache_len + src[k]` by a verify pass, goes to `cache_len + k`.
///
/// Moving in increasing k is safe because a tree lists ancestors before descendants, so
/// `src[k] >= k` and no later source is overwritten.
///
/// # Errors
/// [`ForwardError::BadInput`] when a source index is not increasing or leaves the cache.
pub fn commit_kv(
    dims: &KvLayout,
    kv_cache: &mut [f32],
    slot: usize,
    cache_len: usize,
    src: &[i32],
) -> Result<(), ForwardError> {
    let bad = |m: String| Err(ForwardError::BadInput(m));
    if slot >= dims.slots {
        return bad(format!(
            "KV slot {slot} is out of range (slots: {})",
            dims.slots
        ));
    }
    let mut previous: i64 = -1;
    for (k, &s) in src.iter().enumerate() {
        if (s as i64) <= previous || (s as usize) < k || cache_len + s as usize >= dims.max_len {
            return bad(format!(
                "accepted index {s} at depth {k} is not a valid tree path position"
            ));
        }
        previous = s as i64;
    }
    let hd = dims.head_dim;
    for layer in 0..dims.layers {
        for which in 0..2 {
            for g in 0..dims.kv_heads {
                let base = dims.index(layer, which, slot, g, 0);
                for (k, &s) in src.iter().enumerate() {
                    let (from, to) = (
                        base + (cache_len + s as usize) * hd,
                        base + (cache_len + k) * hd,
                    );
                    if from != to {
                        kv_cache.copy_within(from..from + hd, to);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;

    /// A causal chain of new tokens after `cache_len` cached positions.
    fn row(cache_len: usize, tokens: &[i32]) -> Row<'_> {
        Row {
            slot: 0,
            cache_len,
            tokens,
            positions: tokens,
            mask: None,
            width: tokens.len(),
        }
    }

    /// Attention-only dimensions with `slots` KV slots: the head width the AVX2 and AVX-512
    /// score kernels take, grouped queries (6 heads over 2).
    fn attention_dims(slots: usize) -> Dims {
        Dims {
            vocab: 1,
            hidden: 1,
            intermediate: 1,
            layers: 2,
            q_heads: 6,
            kv_heads: 2,
            head_dim: 64,
            rope_inv_freq: Vec::new(),
            rms_eps: 1e-5,
            max_len: 256,
            slots,
            vocab_offset: 0,
            vocab_local: 1,
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn rows_shared_between_threads_equal_each_row_alone() {
        // Twelve rows of one decode step each, in their own slots, after different cache
        // lengths (a distillation batch): together over the serial limit, each alone under it.
        let dims = attention_dims(12);
        let kv = pseudo_random(dims.kv_cache_len(), 3);
        let width = dims.q_heads * dims.head_dim;
        let tokens = [0i32; 1];
        let rows: Vec<Row<'_>> = (0..12)
            .map(|r| Row {
                slot: r,
                cache_len: 60 + 13 * r,
                ..row(0, &tokens)
            })
            .collect();
        let work = |r: &Row<'_>| dims.q_heads * (r.cache_len + 1) * dims.head_dim;
        assert!(rows.iter().all(|r| work(r) <= SERIAL_ATTENTION_WORK));
        assert!(rows.iter().map(work).sum::<usize>() > SERIAL_ATTENTION_WORK);
        let q = pseudo_random(rows.len() * width, 5);
        let mut all = vec![f32::NAN; rows.len() * width];
        attention_of_rows(&dims, 1, &kv, &rows, &q, &mut all);
        for (r, one_row) in rows.iter().enumerate() {
            let mut one = vec![f32::NAN; width];
            let range = r * width..(r + 1) * width;
            // Alone, a decode step: one query head per task.
            attention(&dims, 1, &kv, one_row, 1, &q[range.clone()], &mut one);
            assert!(one.iter().all(|v| v.is_finite()));
            assert_eq!(bits(&all[range]), bits(&one), "row {r}");
        }
    }

    #[test]
    fn attention_of_many_tokens_equals_each_token_alone() {
        // Large enough to run on the pool (a verify pass's 9 tokens, a prefill's 37), with the
        // head width the AVX2 and AVX-512 score kernels take; each token alone is a decode
        // step over the same cache, run on the calling thread.
        let dims = attention_dims(1);
        let kv = pseudo_random(dims.kv_cache_len(), 1);
        let width = dims.q_heads * dims.head_dim;
        for (cache_len, n) in [(150, 9), (40, 37)] {
            assert!(n * dims.q_heads * (cache_len + n) * dims.head_dim > SERIAL_ATTENTION_WORK);
            let q = pseudo_random(n * width, n as u32);
            let tokens = vec![0; n];
            let mut all = vec![f32::NAN; n * width];
            let group = dims.q_heads / dims.kv_heads;
            attention(&dims, 1, &kv, &row(cache_len, &tokens), group, &q, &mut all);
            assert!(all.iter().all(|v| v.is_finite()) && all.iter().any(|&v| v != 0.0));
            for i in 0..n {
                let mut one = vec![f32::NAN; width];
                let q1 = &q[i * width..(i + 1) * width];
                attention(
                    &dims,
                    1,
                    &kv,
                    &row(cache_len + i, &tokens[..1]),
                    1,
                    q1,
                    &mut one,
                );
                assert_eq!(
                    bits(&all[i * width..(i + 1) * width]),
                    bits(&one),
                    "token {i} of {n} after {cache_len}"
                );
            }
        }
    }
}
