//! The Llama kernels as the mock runs them: NEFF checks at load, tensor views and collectives
//! per execution, around the computation in [`super::forward`].

use std::sync::Mutex;

use super::forward::{
    Batch, Collective, CollectiveError, ForwardError, LayerWeights, OutputAt, Outputs, Row,
    Scratch, Weights, commit_kv,
};
use super::graph::{
    CommitParams, EMBEDDING, ForwardParams, HEADS_LM_HEAD, HeadsParams, LM_HEAD, MatrixDtype,
    NEXT_IDS, OutputsAt, head_tensor, head_token_parts,
};
use super::linalg::exp_in_place;
use super::packed::{Packed, PackedProduct, PackedScratch, Precision, matmul_packed};
use super::packed_half::{PackedHalf, matmul_packed_half};
use crate::kernels::{BuildCtx, ExecCtx, Kernel, KernelEntry, KernelError};
use crate::neff::{TensorSpec, Usage};

/// `llama.forward`: prefill, decode and verify graphs.
pub(crate) const FORWARD: KernelEntry = KernelEntry {
    name: super::graph::FORWARD_KERNEL,
    summary: "Llama forward pass over a batch of rows with an in-place KV cache (see neuron_mock::kernels::llama::graph)",
    build: build_forward,
};

/// `llama.kv_commit`: moves accepted tree tokens to contiguous cache positions.
pub(crate) const KV_COMMIT: KernelEntry = KernelEntry {
    name: super::graph::KV_COMMIT_KERNEL,
    summary: "moves each row's accepted tree tokens to contiguous KV-cache positions",
    build: build_commit,
};

/// `llama.heads`: Medusa heads, top candidates per head.
pub(crate) const HEADS: KernelEntry = KernelEntry {
    name: super::graph::HEADS_KERNEL,
    summary: "Medusa heads on hidden states: top-k token ids and log-probabilities per head through the model's LM head",
    build: build_heads,
};

/// Checks that the NEFF declares exactly `expected` (in any order) and returns, for each
/// expected tensor, its position among the NEFF's inputs or outputs.
fn resolve(ctx: &BuildCtx<'_>, expected: &[TensorSpec]) -> Result<Vec<usize>, KernelError> {
    let declared = ctx.inputs().len() + ctx.outputs().len();
    if declared != expected.len() {
        return Err(ctx.params_error(format!(
            "the NEFF declares {declared} tensors, the parameters describe {}",
            expected.len()
        )));
    }
    expected
        .iter()
        .map(|want| {
            let (list, position) = match want.usage {
                Usage::Input => (ctx.inputs(), ctx.input(&want.name)?),
                Usage::Output => (ctx.outputs(), ctx.output(&want.name)?),
            };
            let got = &list[position];
            if got.dtype != want.dtype || got.shape != want.shape {
                return Err(ctx.spec_error(
                    &want.name,
                    format!(
                        "is {} {:?}; the parameters need {} {:?}",
                        got.dtype, got.shape, want.dtype, want.shape
                    ),
                ));
            }
            Ok(position)
        })
        .collect()
}

/// The collectives of an execution, as the forward pass wants them.
struct Ranks<'c, 'a>(&'c ExecCtx<'a>);

impl Collective for Ranks<'_, '_> {
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(self.0.all_reduce_sum(buf)?)
    }
    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(self.0.all_gather(local, out)?)
    }
    fn world_size(&self) -> usize {
        self.0.world_size()
    }
}

fn kernel_error(e: ForwardError) -> KernelError {
    match e {
        ForwardError::BadInput(message) => KernelError::BadInput { message },
        ForwardError::Collective(inner) => match inner.downcast::<KernelError>() {
            Ok(k) => *k,
            Err(other) => KernelError::Failed {
                message: other.to_string(),
            },
        },
    }
}

/// Scratch buffers reused across executions; concurrent executions each take their own.
#[derive(Default)]
struct Pool<T>(Mutex<Vec<T>>);

impl<T: Default> Pool<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut item = self
            .0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_default();
        let result = f(&mut item);
        if let Ok(mut v) = self.0.lock() {
            v.push(item);
        }
        result
    }
}

struct Forward {
    params: ForwardParams,
    rank: usize,
    /// Positions of the expected tensors (in `params.io()` order) among inputs or outputs.
    at: Vec<usize>,
    weights_from: usize,
    scratch: Pool<Scratch>,
}

fn build_forward(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let params: ForwardParams = ctx.params()?;
    params.validate().map_err(|e| ctx.params_error(e))?;
    if params.model.vocab_local != params.model.vocab
        && params.model.vocab_local * ctx.world_size() != params.model.vocab
    {
        return Err(ctx.params_error(format!(
            "an LM head split into slices of {} rows needs {} ranks, the world has {}",
            params.model.vocab_local,
            params.model.vocab / params.model.vocab_local,
            ctx.world_size()
        )));
    }
    if params.model.matrices == MatrixDtype::Bf16 && Precision::current() != Precision::Bf16 {
        return Err(ctx.params_error(format!(
            "this graph's matrices are bf16, which the mock multiplies only in bf16: set \
             NEURON_MOCK_MATMUL=bf16 (products now in {}), or compile the model with f32 \
             matrices",
            Precision::current().name()
        )));
    }
    let io = params.io();
    let at = resolve(ctx, &io)?;
    let weights_from = 5 + usize::from(params.tree_mask);
    Ok(Box::new(Forward {
        params,
        rank: ctx.rank(),
        at,
        weights_from,
        scratch: Pool::default(),
    }))
}

impl Kernel for Forward {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        let p = &self.params;
        let (b, t) = (p.batch, p.width);
        let input_ids = ctx.input::<i32>(self.at[0])?;
        let position_ids = ctx.input::<i32>(self.at[1])?;
        let seq_ids = ctx.input::<i32>(self.at[2])?;
        let cache_lens = ctx.input::<i32>(self.at[3])?;
        let new_lens = ctx.input::<i32>(self.at[4])?;
        let mask = if p.tree_mask {
            Some(ctx.input::<u8>(self.at[5])?)
        } else {
            None
        };
        let w = |i: usize| ctx.input::<f32>(self.at[self.weights_from + i]);
        let m = &p.model;
        let (d, hd) = (m.hidden, m.head_dim);
        let matrix = |i: usize, rows: usize, cols: usize| -> Result<Packed<'_>, KernelError> {
            Packed::new(w(i)?, rows, cols).map_err(|message| KernelError::BadInput { message })
        };
        // The matrices stored as `m.matrices` says: the layers' projections and the LM head.
        let layer_matrix = |i: usize, rows: usize, cols: usize| match m.matrices {
            MatrixDtype::F32 => matrix(i, rows, cols),
            MatrixDtype::Bf16 => {
                let values = ctx.input::<half::bf16>(self.at[self.weights_from + i])?;
                Packed::bf16_pairs(bytemuck::cast_slice(values), rows, cols)
                    .map_err(|message| KernelError::BadInput { message })
            }
        };
        let embed = matrix(0, m.vocab, d)?;
        let (qw, kvw) = (m.q_heads * hd, m.kv_heads * hd);
        let layers = (0..m.layers)
            .map(|l| {
                let base = 1 + 9 * l;
                Ok(LayerWeights {
                    input_norm: w(base)?,
                    q_proj: layer_matrix(base + 1, qw, d)?,
                    k_proj: layer_matrix(base + 2, kvw, d)?,
                    v_proj: layer_matrix(base + 3, kvw, d)?,
                    o_proj: layer_matrix(base + 4, d, qw)?,
                    post_norm: w(base + 5)?,
                    gate_proj: layer_matrix(base + 6, m.intermediate, d)?,
                    up_proj: layer_matrix(base + 7, m.intermediate, d)?,
                    down_proj: layer_matrix(base + 8, d, m.intermediate)?,
                })
            })
            .collect::<Result<Vec<_>, KernelError>>()?;
        let after_layers = 1 + 9 * m.layers;
        let final_norm = w(after_layers)?;
        let lm_head = if m.takes_lm_head() {
            layer_matrix(after_layers + 1, m.vocab_local, d)?
        } else {
            embed.slice_rows(m.vocab_offset(self.rank), m.vocab_local)
        };
        let weights = Weights {
            embed,
            layers,
            final_norm,
            lm_head,
        };

        let n_weights = after_layers + 1 + usize::from(p.model.takes_lm_head());
        let kv_in = self.at[self.weights_from + n_weights];
        let out_base = self.weights_from + n_weights + 1;
        let (logits_at, hidden_at, next_at, kv_out) = (
            self.at[out_base],
            self.at[out_base + 1],
            self.at[out_base + 2],
            self.at[out_base + 3],
        );

        let mut rows = Vec::with_capacity(b);
        let mut destinations = Vec::with_capacity(b * t);
        let per_row = p.outputs_per_row();
        for r in 0..b {
            let n = new_lens[r];
            if n == 0 {
                continue;
            }
            let bad = |what: &str, v: i32| KernelError::BadInput {
                message: format!("row {r}: {what} {v} is out of range"),
            };
            if n < 0 || n as usize > t {
                return Err(bad("new_lens", n));
            }
            if seq_ids[r] < 0 {
                return Err(bad("seq_ids", seq_ids[r]));
            }
            if cache_lens[r] < 0 {
                return Err(bad("cache_lens", cache_lens[r]));
            }
            let n = n as usize;
            rows.push(Row {
                slot: seq_ids[r] as usize,
                cache_len: cache_lens[r] as usize,
                tokens: &input_ids[r * t..r * t + n],
                positions: &position_ids[r * t..r * t + n],
                mask: mask.map(|m| &m[r * t * t..(r + 1) * t * t]),
                width: t,
            });
            match p.outputs_at {
                OutputsAt::Last => destinations.push(r * per_row),
                OutputsAt::All => destinations.extend((0..n).map(|i| r * per_row + i)),
            }
        }
        let kv = ctx.state::<f32>(kv_in, kv_out)?;
        let logits = ctx.output::<f32>(logits_at)?;
        let hidden = ctx.output::<f32>(hidden_at)?;
        let next = ctx.output::<i32>(next_at)?;
        // Outputs of unused rows and padding tokens hold -1, never a stale token.
        next.fill(-1);
        let output_at = match p.outputs_at {
            OutputsAt::Last => OutputAt::Last,
            OutputsAt::All => OutputAt::All,
        };
        let dims = p.dims(self.rank);
        let collective = Ranks(ctx);
        self.scratch
            .with(|scratch| {
                super::forward::forward(
                    &dims,
                    &weights,
                    kv,
                    Batch {
                        rows: &rows,
                        output_at,
                    },
                    Outputs {
                        at: &destinations,
                        logits: Some(logits),
                        hidden: Some(hidden),
                        next_token: Some(next),
                    },
                    &collective,
                    scratch,
                )
            })
            .map_err(kernel_error)
    }
}

struct Commit {
    params: CommitParams,
    at: Vec<usize>,
}

fn build_commit(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let params: CommitParams = ctx.params()?;
    if params.batch == 0 || params.width == 0 || params.cache.is_empty() {
        return Err(ctx.params_error("every dimension must be at least 1"));
    }
    let at = resolve(ctx, &params.io())?;
    Ok(Box::new(Commit { params, at }))
}

impl Kernel for Commit {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        let p = &self.params;
        let seq_ids = ctx.input::<i32>(self.at[0])?;
        let cache_lens = ctx.input::<i32>(self.at[1])?;
        let counts = ctx.input::<i32>(self.at[2])?;
        let indices = ctx.input::<i32>(self.at[3])?;
        let kv = ctx.state::<f32>(self.at[4], self.at[5])?;
        for r in 0..p.batch {
            let count = counts[r];
            if count == 0 {
                continue;
            }
            if count < 0 || count as usize > p.width || seq_ids[r] < 0 || cache_lens[r] < 0 {
                return Err(KernelError::BadInput {
                    message: format!(
                        "row {r}: accept count {count}, slot {}, cache length {}",
                        seq_ids[r], cache_lens[r]
                    ),
                });
            }
            let src = &indices[r * p.width..r * p.width + count as usize];
            commit_kv(
                &p.cache,
                kv,
                seq_ids[r] as usize,
                cache_lens[r] as usize,
                src,
            )
            .map_err(|e| KernelError::BadInput {
                message: format!("row {r}: {e}"),
            })?;
        }
        Ok(())
    }
}

struct Heads {
    params: HeadsParams,
    rank: usize,
    at: HeadsAt,
    scratch: Pool<HeadsScratch>,
}

/// Positions of the heads graph's tensors in the NEFF.
struct HeadsAt {
    hidden: usize,
    num_rows: usize,
    lm_head: usize,
    /// `next_ids` and the embedding, for heads that take tokens.
    next: Option<(usize, usize)>,
    /// Per head: `W`, `b`, and the matrices applied to the tokens it takes (see
    /// [`head_token_parts`]).
    heads: Vec<(usize, usize, Vec<usize>)>,
    ids: usize,
    logprobs: usize,
}

impl HeadsAt {
    fn resolve(ctx: &BuildCtx<'_>, params: &HeadsParams) -> Result<Self, KernelError> {
        let io = params.io();
        let at = resolve(ctx, &io)?;
        let find = |name: &str| -> Result<usize, KernelError> {
            io.iter()
                .position(|s| s.name == name)
                .map(|i| at[i])
                .ok_or_else(|| ctx.params_error(format!("the heads graph has no `{name}`")))
        };
        let lm_head = if !params.vocab.is_empty() {
            HEADS_LM_HEAD
        } else if params.model.tied_embeddings {
            EMBEDDING
        } else {
            LM_HEAD
        };
        Ok(HeadsAt {
            hidden: find("hidden")?,
            num_rows: find("num_rows")?,
            lm_head: find(lm_head)?,
            next: match params.takes_next {
                true => Some((find(NEXT_IDS)?, find(EMBEDDING)?)),
                false => None,
            },
            heads: (0..params.heads)
                .map(|h| {
                    let tokens = head_token_parts(h, params.takes_next, params.takes_path)
                        .iter()
                        .map(|part| find(&head_tensor(h, part)))
                        .collect::<Result<_, KernelError>>()?;
                    Ok((
                        find(&head_tensor(h, "weight"))?,
                        find(&head_tensor(h, "bias"))?,
                        tokens,
                    ))
                })
                .collect::<Result<_, KernelError>>()?,
            ids: find("head_ids")?,
            logprobs: find("head_logprobs")?,
        })
    }
}

#[derive(Default)]
struct HeadsScratch {
    z: Vec<f32>,
    proj: Vec<f32>,
    /// Embeddings of one token per row (the next token, or a head's best candidate).
    embedded: Vec<f32>,
    /// `T e` for every row.
    token_proj: Vec<f32>,
    logits: Vec<f32>,
    /// A row's logits less their maximum, exponentiated.
    exps: Vec<f32>,
    local: Vec<f32>,
    gathered: Vec<f32>,
    packed: PackedScratch,
}

/// A packed matrix the heads multiply with, in f32 or f16: the rows they score (the model's LM
/// head, this rank's slice of it, or the heads vocabulary's rows) or one of their own
/// `[hidden, hidden]` matrices.
#[derive(Clone, Copy)]
enum Matrix<'a> {
    Full(Packed<'a>),
    Half(PackedHalf<'a>),
}

impl Matrix<'_> {
    fn rows(&self) -> usize {
        match self {
            Matrix::Full(w) => w.rows(),
            Matrix::Half(w) => w.rows(),
        }
    }

    /// `y[t] = W x[t]` for `tokens` rows of `x`.
    fn product(self, x: &[f32], tokens: usize, y: &mut [f32], scratch: &mut PackedScratch) {
        match self {
            Matrix::Full(w) => {
                let cols = w.cols();
                matmul_packed(&mut [PackedProduct { w, y }], x, cols, tokens, scratch);
            }
            Matrix::Half(w) => matmul_packed_half(w, x, tokens, y),
        }
    }
}

fn build_heads(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let params: HeadsParams = ctx.params()?;
    let m = &params.model;
    let scored = if params.vocab.is_empty() {
        m.vocab_local
    } else {
        params.vocab.len()
    };
    if params.takes_path && !params.takes_next {
        return Err(ctx.params_error("heads that take the path must take the next token too"));
    }
    if params.half_lm_head && params.vocab.is_empty() {
        return Err(ctx.params_error("an f16 LM head is for a heads vocabulary only"));
    }
    if params.heads == 0 || params.top_k == 0 || params.batch == 0 || params.top_k > scored {
        return Err(ctx.params_error(
            "heads, top_k and batch must be at least 1, top_k at most the tokens scored",
        ));
    }
    if params.vocab.windows(2).any(|w| w[0] >= w[1])
        || params
            .vocab
            .last()
            .is_some_and(|&id| id as usize >= m.vocab)
    {
        return Err(ctx.params_error(
            "the heads vocabulary must be strictly increasing token ids below the vocabulary size",
        ));
    }
    if m.vocab_local != m.vocab && m.vocab_local * ctx.world_size() != m.vocab {
        return Err(
            ctx.params_error("the LM-head slices do not cover the vocabulary with this world")
        );
    }
    let at = HeadsAt::resolve(ctx, &params)?;
    Ok(Box::new(Heads {
        params,
        rank: ctx.rank(),
        at,
        scratch: Pool::default(),
    }))
}

/// The `k` largest values of `values`: (index, value), best first, lower index first on ties.
fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in values.iter().enumerate() {
        if best.len() == k && best.last().is_some_and(|&(_, worst)| v <= worst) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= v);
        best.insert(at, (i, v));
        best.truncate(k);
    }
    best
}

/// `ln Σ exp(v)`, computed from the largest value so that nothing overflows; `-inf` for no
/// values. The exponentials are the vectorised ones of the attention's softmax (a head scores
/// thousands of tokens per row, and libm's `expf` is a call per value).
fn log_sum_exp(values: &[f32], scratch: &mut Vec<f32>) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    scratch.clear();
    scratch.extend(values.iter().map(|v| v - max));
    exp_in_place(scratch);
    max + scratch.iter().sum::<f32>().ln()
}

impl Kernel for Heads {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        let p = &self.params;
        let m = &p.model;
        let d = m.hidden;
        let at = &self.at;
        let hidden = ctx.input::<f32>(at.hidden)?;
        let rows = ctx.input::<i32>(at.num_rows)?[0];
        if rows < 0 || rows as usize > p.batch {
            return Err(KernelError::BadInput {
                message: format!("num_rows {rows} is out of range 0..={}", p.batch),
            });
        }
        let rows = rows as usize;
        let packed = |at: usize, rows: usize| -> Result<Packed<'_>, KernelError> {
            Packed::new(ctx.input::<f32>(at)?, rows, d)
                .map_err(|message| KernelError::BadInput { message })
        };
        let bad = |message| KernelError::BadInput { message };
        // A head's own [d, d] matrix.
        let square = |at: usize| -> Result<Matrix<'_>, KernelError> {
            Ok(match p.half_matrices {
                true => {
                    Matrix::Half(PackedHalf::new(ctx.input::<half::f16>(at)?, d, d).map_err(bad)?)
                }
                false => Matrix::Full(packed(at, d)?),
            })
        };
        // The rows scored and the token id of the first: the heads' vocabulary (the same on
        // every rank), or this rank's slice of the whole vocabulary.
        let (lm_head, offset) = if p.half_lm_head {
            let rows = ctx.input::<half::f16>(at.lm_head)?;
            (
                Matrix::Half(PackedHalf::new(rows, p.vocab.len(), d).map_err(bad)?),
                0,
            )
        } else if !p.vocab.is_empty() {
            (Matrix::Full(packed(at.lm_head, p.vocab.len())?), 0)
        } else {
            let offset = m.vocab_offset(self.rank);
            let lm_head = if m.tied_embeddings {
                packed(at.lm_head, m.vocab)?.slice_rows(offset, m.vocab_local)
            } else if m.matrices == MatrixDtype::Bf16 {
                let values = ctx.input::<half::bf16>(at.lm_head)?;
                Packed::bf16_pairs(bytemuck::cast_slice(values), m.vocab_local, d).map_err(bad)?
            } else {
                packed(at.lm_head, m.vocab_local)?
            };
            (Matrix::Full(lm_head), offset)
        };
        let rows_scored = lm_head.rows();
        let token_id = |row: usize| match p.vocab.get(row) {
            Some(&id) => id as usize,
            None => row + offset,
        };
        let ids = ctx.output::<i32>(at.ids)?;
        let logprobs = ctx.output::<f32>(at.logprobs)?;
        ids.fill(-1);
        logprobs.fill(f32::NEG_INFINITY);
        if rows == 0 {
            return Ok(());
        }
        let next_ids = match at.next {
            Some((next_ids, _)) => {
                let next_ids = &ctx.input::<i32>(next_ids)?[..rows];
                if let Some((r, id)) = next_ids
                    .iter()
                    .enumerate()
                    .find(|&(_, &id)| id < 0 || id as usize >= m.vocab)
                {
                    return Err(KernelError::BadInput {
                        message: format!(
                            "next_ids[{r}] = {id} is outside the vocabulary of {}",
                            m.vocab
                        ),
                    });
                }
                next_ids
            }
            None => &[],
        };
        let embedding = match at.next {
            Some((_, embedding)) => Some(packed(embedding, m.vocab)?),
            None => None,
        };
        let k = p.top_k;
        let ranks = ctx.world_size();
        // Heads that take the path run one after the other (each takes the best candidates
        // of the heads before it); others run together, so that the LM head streams once for
        // every row and head.
        let groups: Vec<std::ops::Range<usize>> = if p.takes_path {
            (0..p.heads).map(|h| h..h + 1).collect()
        } else {
            std::iter::once(0..p.heads).collect()
        };
        self.scratch.with(|s| {
            for group in groups {
                let g = group.len();
                // z[row][head] = x + SiLU(W_h x + sum_t T_t e_t + b_h).
                s.z.resize(rows * g * d, 0.0);
                s.proj.resize(rows * d, 0.0);
                s.embedded.resize(rows * d, 0.0);
                s.token_proj.resize(rows * d, 0.0);
                for h in group.clone() {
                    let (w, bias, ref tokens) = at.heads[h];
                    let bias = ctx.input::<f32>(bias)?;
                    square(w)?.product(&hidden[..rows * d], rows, &mut s.proj, &mut s.packed);
                    // Heads take tokens only with `next_ids`, hence with the embedding.
                    for (t, &weight) in tokens.iter().enumerate() {
                        let Some(embedding) = &embedding else { break };
                        // Token 0 is the row's next token, token t the best candidate of
                        // head t - 1 (already written: heads that take the path run alone,
                        // and every head has a best candidate, top_k being at least 1).
                        for r in 0..rows {
                            let id = match t {
                                0 => next_ids[r],
                                _ => ids[(r * p.heads + t - 1) * k],
                            };
                            let id = usize::try_from(id).unwrap_or(0);
                            embedding.row_into(id, &mut s.embedded[r * d..(r + 1) * d]);
                        }
                        square(weight)?.product(
                            &s.embedded,
                            rows,
                            &mut s.token_proj,
                            &mut s.packed,
                        );
                        for (pr, &tp) in s.proj.iter_mut().zip(&s.token_proj) {
                            *pr += tp;
                        }
                    }
                    for r in 0..rows {
                        let x = &hidden[r * d..(r + 1) * d];
                        let q = r * g + h - group.start;
                        let z = &mut s.z[q * d..(q + 1) * d];
                        for (((z, &x), &pr), &bv) in z
                            .iter_mut()
                            .zip(x)
                            .zip(&s.proj[r * d..(r + 1) * d])
                            .zip(bias)
                        {
                            let a = pr + bv;
                            *z = x + a / (1.0 + (-a).exp());
                        }
                    }
                }
                let n = rows * g;
                s.logits.resize(n * rows_scored, 0.0);
                lm_head.product(&s.z, n, &mut s.logits, &mut s.packed);
                // Local top-k per (row, head), as (token id, logit) pairs, then each (row,
                // head)'s log-sum-exp over the tokens scored here (for the candidates'
                // log-probabilities).
                let pairs = n * k * 2;
                s.local.resize(pairs + n, 0.0);
                for q in 0..n {
                    let row_logits = &s.logits[q * rows_scored..(q + 1) * rows_scored];
                    let best = top_k(row_logits, k);
                    for (j, (row, v)) in best.into_iter().enumerate() {
                        // Ids are exact in f32 up to 2^24, far beyond any vocabulary.
                        s.local[(q * k + j) * 2] = token_id(row) as f32;
                        s.local[(q * k + j) * 2 + 1] = v;
                    }
                    s.local[pairs + q] = log_sum_exp(row_logits, &mut s.exps);
                }
                let merged: &[f32] = if m.vocab_local == m.vocab || !p.vocab.is_empty() {
                    &s.local
                } else {
                    s.gathered.resize(ranks * s.local.len(), 0.0);
                    ctx.all_gather(&s.local, &mut s.gathered)?;
                    &s.gathered
                };
                let per_rank = pairs + n;
                let shards = merged.len() / per_rank;
                for q in 0..n {
                    let mut candidates: Vec<(usize, f32)> = (0..shards)
                        .flat_map(|rank| {
                            (0..k).map(move |j| {
                                let at = rank * per_rank + (q * k + j) * 2;
                                (merged[at] as usize, merged[at + 1])
                            })
                        })
                        .collect();
                    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    let sums: Vec<f32> = (0..shards)
                        .map(|rank| merged[rank * per_rank + pairs + q])
                        .collect();
                    let lse = log_sum_exp(&sums, &mut s.exps);
                    let (r, h) = (q / g, group.start + q % g);
                    for (j, (id, v)) in candidates.into_iter().take(k).enumerate() {
                        ids[(r * p.heads + h) * k + j] = id as i32;
                        logprobs[(r * p.heads + h) * k + j] = v - lse;
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::top_k;
    use crate::kernels::KernelError;
    use crate::kernels::llama::forward::KvLayout;
    use crate::kernels::llama::graph::{
        CommitParams, ForwardParams, HEADS_LM_HEAD, HeadsParams, ModelShard, OutputsAt,
    };
    use crate::kernels::llama::packed::pack;
    use crate::kernels::llama::packed_half::to_half;
    use crate::kernels::test_support::{f32_bytes, f32_values, run};
    use crate::neff::{TensorSpec, Usage};

    fn shard() -> ModelShard {
        ModelShard {
            vocab: 23,
            hidden: 16,
            intermediate: 24,
            layers: 2,
            q_heads: 4,
            kv_heads: 2,
            head_dim: 4,
            rope_inv_freq: crate::kernels::llama::linalg::rope_inv_freq(10000.0, 4),
            rms_eps: 1e-5,
            tied_embeddings: true,
            vocab_local: 23,
            matrices: crate::kernels::llama::graph::MatrixDtype::F32,
        }
    }

    fn cache() -> KvLayout {
        KvLayout {
            layers: 2,
            slots: 2,
            kv_heads: 2,
            max_len: 16,
            head_dim: 4,
        }
    }

    fn forward_params(width: usize, outputs_at: OutputsAt, tree_mask: bool) -> ForwardParams {
        ForwardParams {
            model: shard(),
            cache: cache(),
            batch: 2,
            width,
            outputs_at,
            tree_mask,
        }
    }

    /// Deterministic contents for a tensor: weights small and varied, norms near one.
    fn fill(spec: &TensorSpec, seed: u32) -> Vec<u8> {
        let n = spec.elements();
        let mut s = seed.wrapping_add(spec.name.len() as u32 * 7919);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s % 1000) as f32 / 1000.0 - 0.5;
                if spec.name.ends_with("norm.weight") {
                    1.0 + v * 0.2
                } else {
                    v
                }
            })
            .collect();
        f32_bytes(&values)
    }

    fn i32_bytes(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    /// Inputs for a forward graph: two rows, the second unused unless `rows == 2`.
    fn forward_inputs(
        p: &ForwardParams,
        tokens: &[i32],
        rows: usize,
    ) -> Vec<(TensorSpec, Vec<u8>)> {
        let t = p.width;
        let mut ids = vec![0; 2 * t];
        let mut pos = vec![0; 2 * t];
        for r in 0..rows {
            for (i, &tok) in tokens.iter().enumerate() {
                ids[r * t + i] = tok;
                pos[r * t + i] = i as i32;
            }
        }
        let lens = [
            tokens.len() as i32,
            if rows == 2 { tokens.len() as i32 } else { 0 },
        ];
        p.io()
            .into_iter()
            .filter(|s| s.usage == Usage::Input)
            .map(|s| {
                let bytes = match s.name.as_str() {
                    "input_ids" => i32_bytes(&ids),
                    "position_ids" => i32_bytes(&pos),
                    "seq_ids" => i32_bytes(&[0, 1]),
                    "cache_lens" => i32_bytes(&[0, 0]),
                    "new_lens" => i32_bytes(&lens),
                    "tree_mask" => {
                        let mut m = vec![0u8; 2 * t * t];
                        for r in 0..2 {
                            for i in 0..t {
                                for j in 0..=i {
                                    m[r * t * t + i * t + j] = 1;
                                }
                            }
                        }
                        m
                    }
                    "kv_cache" => vec![0; s.size_bytes()],
                    _ => fill(&s, 3),
                };
                (s, bytes)
            })
            .collect()
    }

    fn outputs(p: &ForwardParams) -> Vec<TensorSpec> {
        p.io()
            .into_iter()
            .filter(|s| s.usage == Usage::Output)
            .collect()
    }

    #[test]
    fn verify_outputs_match_prefill_at_every_position() {
        let tokens = [3, 1, 4, 1, 5];
        let all = forward_params(5, OutputsAt::All, true);
        let out = run(
            "llama.forward",
            serde_json::to_value(&all).unwrap(),
            &forward_inputs(&all, &tokens, 1),
            &outputs(&all),
        )
        .unwrap();
        let logits_all = f32_values(&out[0]);
        let next_all: Vec<i32> = out[2]
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // Row 1 is unused: its next tokens are -1.
        assert!(next_all[5..].iter().all(|&x| x == -1));
        for n in 1..=tokens.len() {
            let last = forward_params(n, OutputsAt::Last, false);
            let out = run(
                "llama.forward",
                serde_json::to_value(&last).unwrap(),
                &forward_inputs(&last, &tokens[..n], 1),
                &outputs(&last),
            )
            .unwrap();
            let logits = f32_values(&out[0]);
            let v = 23;
            for (a, b) in logits[..v].iter().zip(&logits_all[(n - 1) * v..n * v]) {
                assert!((a - b).abs() < 1e-5, "position {}: {a} vs {b}", n - 1);
            }
        }
    }

    #[test]
    fn two_rows_give_the_same_answer_for_the_same_prompt() {
        let p = forward_params(3, OutputsAt::Last, false);
        let out = run(
            "llama.forward",
            serde_json::to_value(&p).unwrap(),
            &forward_inputs(&p, &[7, 8, 9], 2),
            &outputs(&p),
        )
        .unwrap();
        let logits = f32_values(&out[0]);
        assert_eq!(logits[..23], logits[23..]);
    }

    /// The error of a forward graph with `params` run on `inputs`, which must fail.
    fn forward_error(params: &ForwardParams, inputs: &[(TensorSpec, Vec<u8>)]) -> KernelError {
        run(
            "llama.forward",
            serde_json::to_value(params).unwrap(),
            inputs,
            &outputs(params),
        )
        .err()
        .unwrap()
    }

    #[test]
    fn a_missing_or_misshapen_weight_refuses_the_load_naming_it() {
        let p = forward_params(3, OutputsAt::Last, false);
        let mut inputs = forward_inputs(&p, &[1], 1);
        let at = inputs
            .iter()
            .position(|(s, _)| s.name == "model.layers.1.mlp.up_proj.weight")
            .unwrap();
        inputs[at].0.shape = vec![23, 16];
        let err = forward_error(&p, &inputs);
        assert!(
            err.to_string()
                .contains("model.layers.1.mlp.up_proj.weight"),
            "{err}"
        );
        inputs.remove(at);
        let err = forward_error(&p, &inputs);
        assert!(err.to_string().contains("declares"), "{err}");
    }

    #[test]
    fn bf16_matrices_are_refused_unless_the_products_are_bf16() {
        use crate::kernels::llama::packed::Precision;
        if Precision::current() == Precision::Bf16 {
            return; // run by the parallel-decode device tests instead
        }
        let mut p = forward_params(1, OutputsAt::Last, false);
        p.model.matrices = crate::kernels::llama::graph::MatrixDtype::Bf16;
        let inputs: Vec<(TensorSpec, Vec<u8>)> = p
            .io()
            .into_iter()
            .filter(|s| s.usage == Usage::Input)
            .map(|s| {
                let bytes = vec![0u8; s.elements() * s.dtype.size_in_bytes()];
                (s, bytes)
            })
            .collect();
        let err = forward_error(&p, &inputs);
        // Refused when the NEFF loads, not when a pass reaches the matrices.
        let err = err.to_string();
        assert!(
            err.contains("matrices are bf16") && err.contains("NEURON_MOCK_MATMUL=bf16"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_inputs_are_bad_input() {
        let p = forward_params(3, OutputsAt::Last, false);
        let mut inputs = forward_inputs(&p, &[1, 2], 1);
        inputs[0].1 = i32_bytes(&[1, 99, 0, 0, 0, 0]);
        let err = forward_error(&p, &inputs);
        assert!(matches!(err, KernelError::BadInput { .. }), "{err:?}");
        assert!(err.to_string().contains("token id 99"), "{err}");
        assert_eq!(
            err.status(),
            neuron_sys::bindings::NRT_STATUS::NRT_EXEC_BAD_INPUT
        );
    }

    #[test]
    fn commit_moves_the_accepted_positions() {
        let c = KvLayout {
            layers: 1,
            slots: 1,
            kv_heads: 1,
            max_len: 8,
            head_dim: 2,
        };
        let p = CommitParams {
            cache: c,
            batch: 1,
            width: 4,
        };
        let kv: Vec<f32> = (0..c.len()).map(|i| i as f32).collect();
        let io = p.io();
        let inputs = vec![
            (io[0].clone(), i32_bytes(&[0])),
            (io[1].clone(), i32_bytes(&[2])),
            (io[2].clone(), i32_bytes(&[3])),
            (io[3].clone(), i32_bytes(&[0, 2, 3, 0])),
            (io[4].clone(), f32_bytes(&kv)),
        ];
        let out = run(
            "llama.kv_commit",
            serde_json::to_value(&p).unwrap(),
            &inputs,
            &[io[5].clone()],
        )
        .unwrap();
        let moved = f32_values(&out[0]);
        // Keys: position 2+0 stays, 2+1 <- 2+2, 2+2 <- 2+3.
        assert_eq!(&moved[4..10], &[4.0, 5.0, 8.0, 9.0, 10.0, 11.0]);
        // Values (second half) moved the same way.
        assert_eq!(&moved[16 + 6..16 + 8], &[16.0 + 8.0, 16.0 + 9.0]);
    }

    /// Runs the heads graph on filled inputs and checks both heads of row 0 against a direct
    /// computation over the tokens scored (`vocab`, or all of them when empty), with or
    /// without the next token as an input, and with head 1 taking head 0's best candidate
    /// when the heads take the path. With `half`, the heads' matrices are f16, and so are the
    /// vocabulary's LM-head rows when there is a vocabulary.
    fn check_heads(vocab: Vec<u32>, takes_next: bool, takes_path: bool, half: bool) {
        let half_lm_head = half && !vocab.is_empty();
        const NEXT: usize = 5;
        let p = HeadsParams {
            model: shard(),
            heads: 2,
            top_k: 3,
            batch: 2,
            vocab: vocab.clone(),
            takes_next,
            takes_path,
            half_lm_head,
            half_matrices: half,
        };
        let (vocab_size, d) = (23, 16);
        let embedding = TensorSpec {
            name: "model.embed_tokens.weight".into(),
            dtype: neuron_sys::DType::F32,
            shape: vec![vocab_size, d],
            usage: Usage::Input,
        };
        let emb = f32_values(&fill(&embedding, 9));
        let scored: Vec<usize> = if vocab.is_empty() {
            (0..vocab_size).collect()
        } else {
            vocab.iter().map(|&v| v as usize).collect()
        };
        // Head matrices row-major, for the computation by hand; the kernel takes them packed.
        let square = TensorSpec {
            shape: vec![d, d],
            ..embedding.clone()
        };
        // With `half`, values an f16 holds exactly: the kernel's f16 matrices are these.
        let matrix = |seed: u32| -> Vec<f32> {
            let m = f32_values(&fill(&square, seed));
            match half {
                true => m.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
                false => m,
            }
        };
        let head_w: Vec<Vec<f32>> = (0..2).map(|h| matrix(20 + h)).collect();
        let head_n: Vec<Vec<f32>> = (0..2).map(|h| matrix(30 + h)).collect();
        let head_1_path = matrix(40);
        let stored = |m: &[f32]| {
            let packed = pack(m, d, d);
            match half {
                true => bytemuck::cast_slice(&to_half(&packed)).to_vec(),
                false => f32_bytes(&packed),
            }
        };
        let io = p.io();
        let inputs: Vec<(TensorSpec, Vec<u8>)> = io
            .iter()
            .filter(|s| s.usage == Usage::Input)
            .map(|s| {
                let bytes = match s.name.as_str() {
                    "num_rows" => i32_bytes(&[1]),
                    "next_ids" => i32_bytes(&[NEXT as i32, -7]),
                    "model.embed_tokens.weight" => f32_bytes(&pack(&emb, vocab_size, d)),
                    HEADS_LM_HEAD => {
                        let rows: Vec<f32> = scored
                            .iter()
                            .flat_map(|&v| emb[v * d..(v + 1) * d].to_vec())
                            .collect();
                        let packed = pack(&rows, scored.len(), d);
                        if half_lm_head {
                            bytemuck::cast_slice(&to_half(&packed)).to_vec()
                        } else {
                            f32_bytes(&packed)
                        }
                    }
                    "medusa.0.weight" => stored(&head_w[0]),
                    "medusa.1.weight" => stored(&head_w[1]),
                    "medusa.0.next_token.weight" => stored(&head_n[0]),
                    "medusa.1.next_token.weight" => stored(&head_n[1]),
                    "medusa.1.path.0.weight" => stored(&head_1_path),
                    _ => fill(s, 9),
                };
                (s.clone(), bytes)
            })
            .collect();
        let outs: Vec<TensorSpec> = io
            .iter()
            .filter(|s| s.usage == Usage::Output)
            .cloned()
            .collect();
        let out = run(
            "llama.heads",
            serde_json::to_value(&p).unwrap(),
            &inputs,
            &outs,
        )
        .unwrap();
        let ids: Vec<i32> = out[0]
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let vals = f32_values(&out[1]);
        // Recompute both heads of row 0 by hand.
        let get = |name: &str| f32_values(&inputs.iter().find(|(s, _)| s.name == name).unwrap().1);
        let x = get("hidden");
        let matvec =
            |m: &[f32], v: &[f32], i: usize| (0..d).map(|j| m[i * d + j] * v[j]).sum::<f32>();
        let embedded = |t: usize| &emb[t * d..(t + 1) * d];
        for h in 0..2 {
            let b = get(&format!("medusa.{h}.bias"));
            let z: Vec<f32> = (0..d)
                .map(|i| {
                    let mut a = matvec(&head_w[h], &x, i) + b[i];
                    if takes_next {
                        a += matvec(&head_n[h], embedded(NEXT), i);
                    }
                    if takes_path && h == 1 {
                        a += matvec(&head_1_path, embedded(ids[0] as usize), i);
                    }
                    x[i] + a / (1.0 + (-a).exp())
                })
                .collect();
            // The LM head's weights as the kernel holds them.
            let weight = |v: usize, j: usize| match half_lm_head {
                true => half::f16::from_f32(emb[v * d + j]).to_f32(),
                false => emb[v * d + j],
            };
            let logits: Vec<f32> = scored
                .iter()
                .map(|&v| (0..d).map(|j| weight(v, j) * z[j]).sum())
                .collect();
            let expected = top_k(&logits, 3);
            let lse = logits.iter().map(|&l| (l as f64).exp()).sum::<f64>().ln() as f32;
            let got = h * 3..(h + 1) * 3;
            for (j, (row, v)) in expected.iter().enumerate() {
                assert_eq!(
                    ids[got.start + j],
                    scored[*row] as i32,
                    "head {h}, candidate {j}"
                );
                assert!(
                    (vals[got.start + j] - (v - lse)).abs() < 1e-4,
                    "head {h}: log-probability of {j}"
                );
            }
            let total: f32 = vals[got.clone()].iter().map(|v| v.exp()).sum();
            assert!(
                total <= 1.0 + 1e-5 && vals[got.start] <= 0.0,
                "head {h}: candidates' probabilities"
            );
        }
        // Row 1 is not in use.
        assert!(ids[6..].iter().all(|&i| i == -1));
        if takes_next {
            // A next token outside the vocabulary is refused, naming the row.
            let mut bad = inputs.clone();
            for (spec, bytes) in &mut bad {
                if spec.name == "next_ids" {
                    *bytes = i32_bytes(&[vocab_size as i32, 0]);
                }
            }
            let err = run(
                "llama.heads",
                serde_json::to_value(&p).unwrap(),
                &bad,
                &outs,
            )
            .unwrap_err();
            assert!(matches!(err, KernelError::BadInput { .. }), "{err:?}");
            assert!(err.to_string().contains("next_ids[0]"), "{err}");
        }
    }

    #[test]
    fn heads_return_the_top_candidates_of_each_head() {
        check_heads(Vec::new(), false, false, false);
    }

    #[test]
    fn heads_with_a_vocabulary_return_only_its_tokens() {
        check_heads(vec![1, 4, 7, 10, 15, 22], false, false, false);
    }

    #[test]
    fn heads_that_take_the_next_token_add_its_embedding() {
        check_heads(Vec::new(), true, false, false);
        check_heads(vec![1, 4, 7, 10, 15, 22], true, false, false);
    }

    #[test]
    fn heads_that_take_the_path_add_the_best_candidates_before_them() {
        check_heads(Vec::new(), true, true, false);
        check_heads(vec![1, 4, 7, 10, 15, 22], true, true, false);
    }

    #[test]
    fn heads_with_f16_weights_use_their_rounded_values() {
        check_heads(vec![1, 4, 7, 10, 15, 22], false, false, true);
        check_heads(vec![1, 4, 7, 10, 15, 22], true, true, true);
        // f16 matrices, f32 LM head (no vocabulary).
        check_heads(Vec::new(), true, true, true);
    }

    #[test]
    fn bad_heads_parameters_are_refused() {
        for vocab in [vec![3, 3, 5], vec![5, 2], vec![1, 23]] {
            let p = HeadsParams {
                model: shard(),
                heads: 1,
                top_k: 1,
                batch: 1,
                vocab,
                takes_next: false,
                takes_path: false,
                half_lm_head: false,
                half_matrices: false,
            };
            let err = run("llama.heads", serde_json::to_value(&p).unwrap(), &[], &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("heads vocabulary"), "{:?}: {err}", p.vocab);
        }
        // The path comes after the next token: heads cannot take one without the other.
        let p = HeadsParams {
            model: shard(),
            heads: 2,
            top_k: 1,
            batch: 1,
            vocab: Vec::new(),
            takes_next: false,
            takes_path: true,
            half_lm_head: false,
            half_matrices: false,
        };
        let err = run("llama.heads", serde_json::to_value(&p).unwrap(), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("take the next token too"), "{err}");
        // An f16 LM head is for a vocabulary's rows only.
        let p = HeadsParams {
            model: shard(),
            heads: 1,
            top_k: 1,
            batch: 1,
            vocab: Vec::new(),
            takes_next: false,
            takes_path: false,
            half_lm_head: true,
            half_matrices: false,
        };
        let err = run("llama.heads", serde_json::to_value(&p).unwrap(), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("f16 LM head"), "{err}");
    }

    #[test]
    fn top_k_is_sorted_and_stable() {
        assert_eq!(
            top_k(&[1.0, 5.0, 3.0, 5.0, 0.0], 3),
            vec![(1, 5.0), (3, 5.0), (2, 3.0)]
        );
        assert_eq!(top_k(&[2.0], 3), vec![(0, 2.0)]);
    }
}
