//! Training Medusa heads on self-distilled data, with the base model frozen.
//!
//! Head `h` computes `z = x + SiLU(W_h x + b_h)` from a final hidden state `x` and scores the
//! vocabulary with the base model's own LM head `E` (`logits = E z`). It is trained with the
//! cross-entropy of those logits against the token `h + 2` positions after `x`'s (see
//! [`super::data`]). `W_h` and `b_h` start at zero, so every head starts as the base model's
//! own next-token prediction, as in Medusa, and only has to learn the shift. The target may
//! also be soft: a mixture of that token and the base model's own distribution at its
//! position, scored once from the stored hidden states (`TrainOptions::teacher_weight`).
//!
//! A head may also take the token the model chose from `x` (the one just emitted, which the
//! engine knows before it runs the heads): `z = x + SiLU(W_h x + N_h e + b_h)` with `e` that
//! token's input embedding. In greedy decoding the token is a function of `x`, but a
//! nonlinear one (an argmax over the vocabulary) that one residual block cannot compute;
//! given directly it tells every head where the text is (as the shifted token does for
//! EAGLE's draft model). `N_h` also starts at zero.
//!
//! The cost is the softmax over the tokens scored: `E` is `[vocab, hidden]` (49,152 x 576 for
//! SmolLM2), applied forwards and backwards for every example and head. Heads that will score
//! only a vocabulary of the most used tokens (as the heads graph does) are trained over that
//! vocabulary alone ([`TrainOptions::vocab`]: 8,192 rows instead of 49,152, six times less
//! work). Examples are processed in batches, so that both products are matrix-matrix products
//! ([`super::gemm`]). On a CPU with Intel AMX (or AVX-512 BF16), [`LmHead::with_matmul`] takes
//! every product in bf16 with f32 sums ([`super::gemm::Matmul::Bf16`]), as a NeuronCore
//! multiplies: 2.6x faster on two cores with AMX (1.4x with AVX-512 BF16 on an AMD Zen 4),
//! with the same held-out accuracy to the third decimal.
//! The optimiser is Adam with a linear warm-up and a cosine decay. Everything is seeded:
//! the same data, options and seed give the same heads, bit for bit, on the same machine.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use amx_bf16::PackedB;
use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::data::Dataset;
use super::gemm::{Matmul, gemm, gemm_packed, with_strided};
use crate::error::{Error, Result};
use crate::loading::medusa_heads::Conditioning;
use crate::loading::{ModelDir, Progress, Unit};

/// The base model's frozen matrices the heads use: its output matrix `[vocab, hidden]` and,
/// for heads that take the next token, its input embedding (the same matrix when tied).
#[derive(Debug, Clone)]
pub struct LmHead {
    weight: Array2<f32>,
    /// The input embedding when it is not the output matrix (always, once restricted).
    embedding: Option<Array2<f32>>,
    /// The token of each row of `weight` when it scores only part of the vocabulary
    /// (strictly increasing ids); `None` when row `r` is token `r`.
    tokens: Option<Vec<u32>>,
    /// The arithmetic of the products with `weight`.
    matmul: Matmul,
    /// `weight` in bf16 tiles for [`Matmul::Bf16`], converted on first use.
    tiles: OnceLock<Arc<LmTiles>>,
}

/// The output matrix `E` `[scored, hidden]` as the right operands of the two products with it,
/// in bf16 tiles: `E^T` for the logits (`z E^T`) and `E` for their gradient (`G E`).
#[derive(Debug)]
struct LmTiles {
    transposed: PackedB,
    plain: PackedB,
}

impl LmHead {
    /// Wraps a `[vocab, hidden]` matrix (row-major).
    ///
    /// # Errors
    /// [`Error::Setting`] when `data` does not hold `vocab * hidden` values.
    pub fn new(vocab: usize, hidden: usize, data: Vec<f32>) -> Result<Self> {
        let weight = Array2::from_shape_vec((vocab, hidden), data).map_err(|e| Error::Setting {
            field: "lm head",
            message: format!("not a [{vocab}, {hidden}] matrix: {e}"),
        })?;
        Ok(LmHead {
            weight,
            embedding: None,
            tokens: None,
            matmul: Matmul::F32,
            tiles: OnceLock::new(),
        })
    }

    /// Takes training's products (with the output matrix, and the heads' own) in `matmul`
    /// arithmetic (kept by [`LmHead::restricted`]).
    ///
    /// # Errors
    /// [`Error::Setting`] when this process cannot multiply that way ([`Matmul::check`]).
    pub fn with_matmul(mut self, matmul: Matmul) -> Result<Self> {
        self.matmul = matmul.check()?;
        self.tiles = OnceLock::new();
        Ok(self)
    }

    /// The arithmetic of training's products.
    pub fn matmul(&self) -> Matmul {
        self.matmul
    }

    /// The bf16 tiles of the output matrix, for [`Matmul::Bf16`].
    fn tiles(&self) -> Option<&LmTiles> {
        (self.matmul == Matmul::Bf16).then(|| {
            &**self.tiles.get_or_init(|| {
                with_strided(self.weight.view(), |w| {
                    Arc::new(LmTiles {
                        transposed: PackedB::new(w.t()),
                        plain: PackedB::new(w),
                    })
                })
            })
        })
    }

    /// Gives the matrices an input embedding of their own (an untied model's).
    ///
    /// # Errors
    /// [`Error::Setting`] when `data` does not hold `vocab * hidden` values.
    pub fn with_embedding(mut self, data: Vec<f32>) -> Result<Self> {
        let (vocab, hidden) = self.weight.dim();
        let embedding =
            Array2::from_shape_vec((vocab, hidden), data).map_err(|e| Error::Setting {
                field: "token embedding",
                message: format!("not a [{vocab}, {hidden}] matrix: {e}"),
            })?;
        self.embedding = Some(embedding);
        Ok(self)
    }

    /// Reads the LM head of `model` (`lm_head.weight`, or the embedding when it is tied) and,
    /// when it is not tied, the input embedding.
    ///
    /// # Errors
    /// When a tensor is missing or has the wrong shape.
    pub fn from_model(model: &ModelDir) -> Result<Self> {
        const EMBEDDING: &str = "model.embed_tokens.weight";
        let c = model.config();
        let shape = [c.vocab_size, c.hidden_size];
        let t = model.weights().f32(c.lm_head_tensor(), &shape)?;
        let lm = Self::new(c.vocab_size, c.hidden_size, t.data)?;
        if c.lm_head_tensor() == EMBEDDING {
            return Ok(lm);
        }
        lm.with_embedding(model.weights().f32(EMBEDDING, &shape)?.data)
    }

    /// The input embedding of `token` (which must be below [`LmHead::vocab`]).
    pub fn embedding(&self, token: u32) -> &[f32] {
        let m = self.embedding.as_ref().unwrap_or(&self.weight);
        let d = m.ncols();
        let t = token as usize;
        &m.as_slice().unwrap_or(&[])[t * d..(t + 1) * d]
    }

    /// The model's vocabulary size (the rows of its input embedding).
    pub fn vocab(&self) -> usize {
        self.embedding.as_ref().unwrap_or(&self.weight).nrows()
    }

    /// The number of tokens scored (rows of the output matrix): [`LmHead::vocab`], or fewer
    /// once [`LmHead::restricted`].
    pub fn scored(&self) -> usize {
        self.weight.nrows()
    }

    /// The matrices scoring only `tokens` (strictly increasing ids below [`LmHead::vocab`]),
    /// as a heads graph with a vocabulary does; the input embedding stays whole.
    ///
    /// # Errors
    /// [`Error::Setting`] for ids out of order, repeated, or outside the scored tokens.
    pub fn restricted(&self, tokens: &[u32]) -> Result<Self> {
        let bad = |message: String| Error::Setting {
            field: "heads vocabulary",
            message,
        };
        if tokens.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("token ids must be strictly increasing".into()));
        }
        let rows = tokens
            .iter()
            .map(|&t| {
                self.row_of(t)
                    .ok_or_else(|| bad(format!("token {t} is not scored by this LM head")))
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok(LmHead {
            weight: self.weight.select(Axis(0), &rows),
            embedding: Some(
                self.embedding
                    .clone()
                    .unwrap_or_else(|| self.weight.clone()),
            ),
            tokens: Some(tokens.to_vec()),
            matmul: self.matmul,
            tiles: OnceLock::new(),
        })
    }

    /// The row of `weight` that scores `token` (`None` when it is not scored).
    pub fn row_of(&self, token: u32) -> Option<usize> {
        match &self.tokens {
            Some(tokens) => tokens.binary_search(&token).ok(),
            None => ((token as usize) < self.weight.nrows()).then_some(token as usize),
        }
    }

    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.weight.ncols()
    }

    /// The matrix.
    pub fn view(&self) -> ArrayView2<'_, f32> {
        self.weight.view()
    }
}

/// One head's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// `W`: `[hidden, hidden]`, Hugging Face `[out, in]` layout.
    pub weight: Array2<f32>,
    /// The matrices applied to the embeddings of the tokens the head takes
    /// ([`Conditioning::token_parts`]: `N` for the next token, then `P_i` for the best
    /// candidate of each head `i` before it), each `[hidden, hidden]`, `[out, in]`; empty for
    /// a head that sees the hidden state only.
    pub token_weights: Vec<Array2<f32>>,
    /// `b`: `[hidden]`.
    pub bias: Vec<f32>,
}

impl Head {
    /// Head `h` of the given kind, adding nothing (`W`, `b` and the token matrices zero): it
    /// predicts what the base model predicts.
    pub fn zero(hidden: usize, h: usize, conditioning: Conditioning) -> Self {
        Head {
            weight: Array2::zeros((hidden, hidden)),
            token_weights: (0..conditioning.token_parts(h).len())
                .map(|_| Array2::zeros((hidden, hidden)))
                .collect(),
            bias: vec![0.0; hidden],
        }
    }
}

/// Settings of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Number of heads (head `h` predicts the token `h + 2` ahead).
    pub heads: usize,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate of Adam.
    pub learning_rate: f32,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
    /// Seed of the example order.
    pub seed: u64,
    /// What the heads take besides the hidden state (see the module's documentation).
    pub conditioning: Conditioning,
    /// The tokens the heads score (strictly increasing), as the heads file's vocabulary will
    /// say: the softmax is taken over them only, as the heads graph takes it, which makes
    /// training several times cheaper than over the whole vocabulary. Targets outside it are
    /// skipped (the heads could never propose them). `None`: the whole vocabulary.
    pub vocab: Option<Vec<u32>>,
    /// How much of each head's target is the base model's own distribution at the target's
    /// position (its [`TEACHER_TOP`] most likely tokens), the rest being the greedy token
    /// itself: 0 trains on the greedy tokens alone. The distribution says which other tokens
    /// the model nearly chose, which a tree's second and third candidates are for. Default
    /// 0.5, which trained the default model's heads better than 0.
    pub teacher_weight: f32,
    /// Decoupled weight decay of the heads' matrices (AdamW), per unit of learning rate: it
    /// pulls the heads towards the base model's own prediction, against over-fitting a
    /// training set of a few hundred thousand positions. 0: none.
    pub weight_decay: f32,
}

/// Tokens of the base model's distribution kept as a soft target (the rest of its mass, a
/// few percent at most where it matters, is dropped and the kept part renormalised).
pub const TEACHER_TOP: usize = 32;

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            heads: 5,
            epochs: 3,
            batch: 256,
            learning_rate: 2e-3,
            warmup_steps: 30,
            seed: 0,
            conditioning: Conditioning::Path,
            vocab: None,
            teacher_weight: 0.5,
            weight_decay: 0.0,
        }
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Optimiser steps.
    pub steps: usize,
    /// Training examples (hidden states with a target for at least the first head).
    pub examples: usize,
    /// Fraction of the heads' targets outside [`TrainOptions::vocab`] (skipped).
    pub outside_vocab: f64,
    /// Mean cross-entropy of each head over each epoch: `[epoch][head]`.
    pub epoch_loss: Vec<Vec<f64>>,
    /// Mean cross-entropy of each head against the greedy tokens on the held-out sequences
    /// after each epoch: `[epoch][head]` (empty without held-out sequences).
    pub held_out_loss: Vec<Vec<f64>>,
    /// Mean cross-entropy of each head at the start (the zero heads, over the first step).
    pub initial_loss: Vec<f64>,
    /// With soft targets, the fraction of the answers' tokens that are the most likely token
    /// of the teacher's distribution there (about 1; much less means the hidden states and
    /// the LM head do not belong together).
    pub teacher_agreement: Option<f64>,
    /// Wall-clock time.
    pub time: Duration,
}

/// Adam state of one parameter tensor.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    fn new(len: usize) -> Self {
        Adam {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// One Adam step of `param`, with decoupled weight decay `decay` (AdamW: the parameters
    /// shrink by `lr * decay` of themselves, whatever their gradient).
    fn step(&mut self, param: &mut [f32], grad: &[f32], lr: f32, decay: f32, t: i32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        let c1 = 1.0 - B1.powi(t);
        let c2 = 1.0 - B2.powi(t);
        param
            .par_chunks_mut(4096)
            .zip(grad.par_chunks(4096))
            .zip(self.m.par_chunks_mut(4096))
            .zip(self.v.par_chunks_mut(4096))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    m[i] = B1 * m[i] + (1.0 - B1) * g[i];
                    v[i] = B2 * v[i] + (1.0 - B2) * g[i] * g[i];
                    p[i] -= lr * ((m[i] / c1) / ((v[i] / c2).sqrt() + EPS) + decay * p[i]);
                }
            });
    }
}

/// Adam states of one head's tensors.
struct HeadAdam {
    weight: Adam,
    token_weights: Vec<Adam>,
    bias: Adam,
}

impl HeadAdam {
    fn new(head: &Head) -> Self {
        HeadAdam {
            weight: Adam::new(head.weight.len()),
            token_weights: head
                .token_weights
                .iter()
                .map(|t| Adam::new(t.len()))
                .collect(),
            bias: Adam::new(head.bias.len()),
        }
    }
}

/// Buffers reused by every step.
#[derive(Default)]
struct Scratch {
    /// Hidden states of the batch.
    x: Array2<f32>,
    /// Embeddings of the tokens the head takes, one matrix per token (`[examples, hidden]`).
    e: Vec<Array2<f32>>,
    u: Array2<f32>,
    z: Array2<f32>,
    logits: Array2<f32>,
    dz: Array2<f32>,
    dw: Array2<f32>,
    /// Gradients of the token matrices.
    dt: Vec<Array2<f32>>,
    db: Vec<f32>,
}

fn resize(a: &mut Array2<f32>, rows: usize, cols: usize) {
    if a.dim() != (rows, cols) {
        *a = Array2::zeros((rows, cols));
    }
}

/// Copies the states `ids` into the rows of `s.x`, and the embeddings of each column of
/// `tokens` (`tokens[t][i]`: token `t` taken at example `i`) into the rows of `s.e[t]`.
fn gather(data: &Dataset, lm: &LmHead, ids: &[usize], tokens: &[&[u32]], s: &mut Scratch) {
    gather_states(data, ids, s);
    gather_tokens(lm, data.hidden, tokens, s);
}

/// Copies the states `ids` into the rows of `s.x`.
fn gather_states(data: &Dataset, ids: &[usize], s: &mut Scratch) {
    resize(&mut s.x, ids.len(), data.hidden);
    for (mut row, &i) in s.x.axis_iter_mut(Axis(0)).zip(ids) {
        row.as_slice_mut()
            .unwrap_or(&mut [])
            .copy_from_slice(data.state(i));
    }
}

/// Copies the embeddings of each column of `tokens` into the rows of `s.e` (see [`gather`]).
fn gather_tokens(lm: &LmHead, hidden: usize, tokens: &[&[u32]], s: &mut Scratch) {
    s.e.resize_with(tokens.len(), Default::default);
    for (e, column) in s.e.iter_mut().zip(tokens) {
        resize(e, column.len(), hidden);
        for (mut row, &t) in e.axis_iter_mut(Axis(0)).zip(column.iter()) {
            row.as_slice_mut()
                .unwrap_or(&mut [])
                .copy_from_slice(lm.embedding(t));
        }
    }
}

fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + (-a).exp())
}

/// `z = x + SiLU(W x + sum_t T_t e_t + b)` for every row of `s.x` (and of the gathered
/// token embeddings `s.e`), its products in `matmul` arithmetic; leaves the pre-activation in
/// `s.u`.
fn head_forward(matmul: Matmul, head: &Head, s: &mut Scratch) {
    let (n, d) = s.x.dim();
    resize(&mut s.u, n, d);
    resize(&mut s.z, n, d);
    matmul.gemm(s.x.view(), head.weight.t(), 0.0, s.u.view_mut());
    for (t, e) in head.token_weights.iter().zip(&s.e) {
        matmul.gemm(e.view(), t.t(), 1.0, s.u.view_mut());
    }
    let (Some(us), Some(zs), Some(xs)) = (s.u.as_slice_mut(), s.z.as_slice_mut(), s.x.as_slice())
    else {
        return;
    };
    us.par_chunks_mut(d)
        .zip(zs.par_chunks_mut(d))
        .zip(xs.par_chunks(d))
        .for_each(|((u, z), x)| {
            for i in 0..d {
                u[i] += head.bias[i];
                z[i] = x[i] + u[i] * sigmoid(u[i]);
            }
        });
}

/// Logits `z E^T` for every row of `z`, into `logits` `[rows, vocab]`.
pub(crate) fn lm_logits(lm: &LmHead, z: ArrayView2<'_, f32>, logits: &mut Array2<f32>) {
    resize(logits, z.nrows(), lm.scored());
    match lm.tiles() {
        Some(tiles) => gemm_packed(z, &tiles.transposed, false, logits.view_mut()),
        None => gemm(z, lm.view().t(), 0.0, logits.view_mut()),
    }
}

/// The gradient of the loss with respect to `z`, `G E`, from that with respect to the logits
/// (`g`, `[rows, vocab]`), into `dz` `[rows, hidden]`.
fn lm_gradient(lm: &LmHead, g: ArrayView2<'_, f32>, dz: &mut Array2<f32>) {
    resize(dz, g.nrows(), lm.hidden());
    match lm.tiles() {
        Some(tiles) => gemm_packed(g, &tiles.plain, false, dz.view_mut()),
        None => gemm(g, lm.view(), 0.0, dz.view_mut()),
    }
}

/// The target distribution of every example of a batch, as a few weighted rows of the LM
/// head each (weights summing to one): the one-hot greedy token, or a mixture of it and the
/// base model's own distribution at the target's position ([`TrainOptions::teacher_weight`]).
#[derive(Debug, Default, Clone, PartialEq)]
struct Targets {
    /// `entries[starts[i]..starts[i + 1]]` are example `i`'s (row, weight) pairs.
    starts: Vec<usize>,
    entries: Vec<(u32, f32)>,
}

impl Targets {
    fn clear(&mut self) {
        self.starts.clear();
        self.entries.clear();
    }

    /// Adds an example whose target is `hard` with weight `1 - teacher_weight`, and the
    /// (row, probability) pairs of `teacher` (summing to one) scaled by `teacher_weight`.
    fn push(&mut self, hard: u32, teacher: &[(u32, f32)], teacher_weight: f32) {
        self.starts.push(self.entries.len());
        if teacher.is_empty() || teacher_weight <= 0.0 {
            self.entries.push((hard, 1.0));
            return;
        }
        self.entries.push((hard, 1.0 - teacher_weight));
        self.entries
            .extend(teacher.iter().map(|&(r, p)| (r, p * teacher_weight)));
    }

    /// One-hot targets on `rows`.
    #[cfg(test)]
    fn one_hot(rows: &[u32]) -> Self {
        let mut t = Targets::default();
        for &r in rows {
            t.push(r, &[], 0.0);
        }
        t
    }

    fn len(&self) -> usize {
        self.starts.len()
    }

    fn rows(&self) -> impl IndexedParallelIterator<Item = &[(u32, f32)]> + '_ {
        (0..self.len()).into_par_iter().map(|i| {
            let end = self
                .starts
                .get(i + 1)
                .copied()
                .unwrap_or(self.entries.len());
            &self.entries[self.starts[i]..end]
        })
    }
}

/// Turns each row of logits into the gradient of the mean cross-entropy against the target
/// distributions `targets` (softmax minus the target, over the rows); returns the summed loss.
fn softmax_grad(logits: &mut Array2<f32>, targets: &Targets) -> f64 {
    let (n, v) = logits.dim();
    let rows = n as f32;
    let Some(all) = logits.as_slice_mut() else {
        return f64::NAN;
    };
    let losses: Vec<f64> = all
        .par_chunks_mut(v)
        .zip(targets.rows())
        .map(|(row, target)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0.0f64;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += f64::from(*v);
            }
            let loss: f64 = target
                .iter()
                .map(|&(t, w)| -f64::from(w) * (f64::from(row[t as usize]) / sum).max(1e-30).ln())
                .sum();
            let scale = (1.0 / sum) as f32 / rows;
            row.iter_mut().for_each(|v| *v *= scale);
            for &(t, w) in target {
                row[t as usize] -= w / rows;
            }
            loss
        })
        .collect();
    losses.iter().sum()
}

/// The base model's own next-token distribution at hidden states, kept as its `top` most
/// likely rows of the LM head (renormalised to sum to one): the soft targets of
/// [`TrainOptions::teacher_weight`].
struct Teacher {
    top: usize,
    /// `[states, top]` (row, probability) pairs, most likely first; empty rows for states
    /// not computed.
    entries: Vec<(u32, f32)>,
    /// Which states were computed.
    computed: Vec<bool>,
    /// Fraction of the computed states whose most likely token is the one the answer has
    /// next (1 but for rounding: the states are the ones the answers were decoded from).
    agreement: f64,
}

impl Teacher {
    /// Scores the states of `sequences` with `lm` (in batches, as training does).
    fn compute(
        data: &Dataset,
        sequences: &[usize],
        lm: &LmHead,
        top: usize,
        progress: &dyn Progress,
    ) -> Self {
        let top = top.clamp(1, lm.scored());
        let mut teacher = Teacher {
            top,
            entries: vec![(0, 0.0); data.len() * top],
            computed: vec![false; data.len()],
            agreement: 0.0,
        };
        // Each state, and the row of the token the answer has after it.
        let (states, next): (Vec<usize>, Vec<Option<usize>>) = sequences
            .iter()
            .flat_map(|&s| {
                let seq = &data.sequences[s];
                (seq.first_state..).zip(seq.tokens.iter().map(|&t| lm.row_of(t)))
            })
            .unzip();
        let mut agreed = 0usize;
        const CHUNK: usize = 512;
        let bar = progress.start(
            "scoring the answers with the base model (soft targets)",
            Some(states.len() as u64),
            Unit::Items,
        );
        let mut s = Scratch::default();
        let mut logits = Array2::zeros((0, 0));
        for (chunk, next) in states.chunks(CHUNK).zip(next.chunks(CHUNK)) {
            gather_states(data, chunk, &mut s);
            lm_logits(lm, s.x.view(), &mut logits);
            let v = logits.ncols();
            let tops: Vec<Vec<(u32, f32)>> = logits
                .as_slice()
                .unwrap_or(&[])
                .par_chunks(v)
                .map(|row| top_probabilities(row, top))
                .collect();
            for ((&state, best), next) in chunk.iter().zip(tops).zip(next) {
                agreed += usize::from(Some(best[0].0 as usize) == *next);
                teacher.entries[state * top..(state + 1) * top].copy_from_slice(&best);
                teacher.computed[state] = true;
            }
            bar.advance(chunk.len() as u64);
        }
        teacher.agreement = agreed as f64 / states.len().max(1) as f64;
        teacher
    }

    /// The distribution at `state` (empty when it was not computed).
    fn at(&self, state: usize) -> &[(u32, f32)] {
        if self.computed.get(state).copied().unwrap_or(false) {
            &self.entries[state * self.top..(state + 1) * self.top]
        } else {
            &[]
        }
    }
}

/// The `top` most likely entries of `softmax(logits)` (ties to the lower index, as the heads
/// graph breaks them), renormalised to sum to one.
fn top_probabilities(logits: &[f32], top: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<u32> = (0..logits.len() as u32).collect();
    let by_score = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let top = top.min(order.len());
    if top < order.len() {
        order.select_nth_unstable_by(top, by_score);
        order.truncate(top);
    }
    order.sort_by(by_score);
    let max = order.first().map_or(0.0, |&i| logits[i as usize]);
    let weights: Vec<f32> = order
        .iter()
        .map(|&i| (logits[i as usize] - max).exp())
        .collect();
    let sum: f32 = weights.iter().sum();
    order
        .into_iter()
        .zip(weights)
        .map(|(i, w)| (i, w / sum))
        .collect()
}

/// Runs `head` on the gathered batch and returns the summed cross-entropy against `targets`,
/// leaving its gradient with respect to the logits in `s.logits`.
fn forward_loss(lm: &LmHead, head: &Head, targets: &Targets, s: &mut Scratch) -> f64 {
    head_forward(lm.matmul, head, s);
    lm_logits(lm, s.z.view(), &mut s.logits);
    softmax_grad(&mut s.logits, targets)
}

/// Runs `head` on the gathered batch and leaves the gradients of the mean cross-entropy
/// against `targets` (rows of `lm`) in `s.dw` (of `W`), `s.dt` (of the token matrices) and
/// `s.db`; returns the summed loss.
fn forward_backward(lm: &LmHead, head: &Head, targets: &Targets, s: &mut Scratch) -> f64 {
    let d = s.x.ncols();
    let loss = forward_loss(lm, head, targets, s);
    // dL/dz = G E.
    lm_gradient(lm, s.logits.view(), &mut s.dz);
    // dL/du = dL/dz * SiLU'(u), in place.
    if let (Some(dz), Some(u)) = (s.dz.as_slice_mut(), s.u.as_slice()) {
        dz.par_chunks_mut(d)
            .zip(u.par_chunks(d))
            .for_each(|(g, u)| {
                for i in 0..d {
                    let sg = sigmoid(u[i]);
                    g[i] *= sg * (1.0 + u[i] * (1.0 - sg));
                }
            });
    }
    // dL/dW = (dL/du)^T x, dL/dT_t = (dL/du)^T e_t, dL/db = column sums of dL/du.
    resize(&mut s.dw, d, d);
    lm.matmul.gemm(s.dz.t(), s.x.view(), 0.0, s.dw.view_mut());
    s.dt.resize_with(head.token_weights.len(), Default::default);
    for (dt, e) in s.dt.iter_mut().zip(&s.e) {
        resize(dt, d, d);
        lm.matmul.gemm(s.dz.t(), e.view(), 0.0, dt.view_mut());
    }
    s.db.clear();
    s.db.resize(d, 0.0);
    for row in s.dz.rows() {
        for (b, g) in s.db.iter_mut().zip(row) {
            *b += g;
        }
    }
    loss
}

/// One step of one head on the examples whose states are `ids`, taking the token columns
/// `tokens` (see [`gather`]), against `targets` (rows of `lm`), at learning rate `lr` with
/// weight decay `decay` on the matrices; returns the summed loss.
#[allow(clippy::too_many_arguments)]
fn head_step(
    data: &Dataset,
    lm: &LmHead,
    head: &mut Head,
    adam: &mut HeadAdam,
    batch: (&[usize], &[&[u32]], &Targets),
    (lr, decay): (f32, f32),
    t: i32,
    s: &mut Scratch,
) -> f64 {
    let (ids, tokens, targets) = batch;
    gather(data, lm, ids, tokens, s);
    let loss = forward_backward(lm, head, targets, s);
    if let (Some(w), Some(g)) = (head.weight.as_slice_mut(), s.dw.as_slice()) {
        adam.weight.step(w, g, lr, decay, t);
    }
    for ((w, a), g) in head
        .token_weights
        .iter_mut()
        .zip(&mut adam.token_weights)
        .zip(&s.dt)
    {
        if let (Some(w), Some(g)) = (w.as_slice_mut(), g.as_slice()) {
            a.step(w, g, lr, decay, t);
        }
    }
    adam.bias.step(&mut head.bias, &s.db, lr, 0.0, t);
    loss
}

/// One head's share of a batch of examples: the states that have a target for it, the
/// tokens it takes and its targets.
#[derive(Default)]
struct HeadBatch {
    ids: Vec<usize>,
    /// `columns[t][i]`: the `t`-th token example `i` takes (see [`gather`]).
    columns: Vec<Vec<u32>>,
    targets: Targets,
}

impl HeadBatch {
    /// The token columns, as [`gather`] takes them.
    fn tokens(&self) -> Vec<&[u32]> {
        self.columns.iter().map(Vec::as_slice).collect()
    }

    /// Head `h`'s share of `batch`: targets outside `lm`'s rows are skipped; `soft(state)`
    /// is the teacher's distribution at a state, mixed in with weight `teacher_weight`.
    fn fill<'t>(
        &mut self,
        batch: &[Example],
        h: usize,
        head: &Head,
        lm: &LmHead,
        soft: &dyn Fn(usize) -> &'t [(u32, f32)],
        teacher_weight: f32,
    ) {
        self.ids.clear();
        self.targets.clear();
        self.columns.resize_with(head.token_weights.len(), Vec::new);
        self.columns.iter_mut().for_each(Vec::clear);
        for e in batch {
            let target = e.targets.get(h).copied().flatten();
            let Some(row) = target.and_then(|t| lm.row_of(t)) else {
                continue;
            };
            self.ids.push(e.state);
            // The distribution the base model predicted the target from.
            self.targets
                .push(row as u32, soft(e.state + h + 1), teacher_weight);
            // The tokens taken: the next one, then (teacher forcing) the true ones before
            // this head's target, which the best candidates are when the path is accepted
            // that far.
            for (column, token) in self.columns.iter_mut().zip(e.taken()) {
                column.push(token);
            }
        }
    }
}

/// The mean cross-entropy of each head against the greedy tokens (teacher forcing, as in
/// training) on `examples`, in batches of `batch`: the held-out counterpart of the
/// training loss, which shows over-fitting as it happens.
fn held_out_loss(
    data: &Dataset,
    lm: &LmHead,
    heads: &[Head],
    examples: &[Example],
    batch: usize,
    s: &mut Scratch,
) -> Vec<f64> {
    let mut hb = HeadBatch::default();
    heads
        .iter()
        .enumerate()
        .map(|(h, head)| {
            let (mut sum, mut n) = (0.0, 0usize);
            for chunk in examples.chunks(batch.max(1)) {
                hb.fill(chunk, h, head, lm, &|_| &[], 0.0);
                if hb.ids.is_empty() {
                    continue;
                }
                gather(data, lm, &hb.ids, &hb.tokens(), s);
                sum += forward_loss(lm, head, &hb.targets, s);
                n += hb.ids.len();
            }
            if n == 0 { 0.0 } else { sum / n as f64 }
        })
        .collect()
}

/// A position the heads are trained or evaluated at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Example {
    /// Index of the hidden state.
    pub state: usize,
    /// The token the base model chose from it (the answer's next token).
    pub next: u32,
    /// Each head's target (`None` past the end of the answer).
    pub targets: Vec<Option<u32>>,
}

impl Example {
    /// The tokens of the true path from this position: the next token, then each head's
    /// target in order (what heads that take the path see when it is accepted).
    pub(crate) fn taken(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.next).chain(self.targets.iter().map_while(|t| *t))
    }
}

/// The examples of the given sequences: every state that has a target for head 0.
pub(crate) fn examples(data: &Dataset, sequences: &[usize], heads: usize) -> Vec<Example> {
    let mut out = Vec::new();
    for &s in sequences {
        let seq = &data.sequences[s];
        let n = seq.tokens.len();
        for j in 0..n.saturating_sub(1) {
            out.push(Example {
                state: seq.first_state + j,
                next: seq.tokens[j],
                targets: (0..heads)
                    .map(|h| seq.tokens.get(j + h + 1).copied())
                    .collect(),
            });
        }
    }
    out
}

/// The learning rate at `step` of `total`: linear warm-up, then cosine decay to a tenth.
fn schedule(options: &TrainOptions, step: usize, total: usize) -> f32 {
    let peak = options.learning_rate;
    if step < options.warmup_steps {
        return peak * (step + 1) as f32 / options.warmup_steps as f32;
    }
    let span = total.saturating_sub(options.warmup_steps).max(1);
    let done = (step - options.warmup_steps) as f32 / span as f32;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f32::consts::PI * done.min(1.0)).cos()))
}

/// Trains `options.heads` heads on the states of `sequences` (indices into
/// `data.sequences`), starting from zero, measuring the loss on `held_out` (other indices,
/// possibly none) after each epoch.
///
/// # Errors
/// [`Error::Setting`] when the data and the LM head disagree in width, a target is outside
/// the vocabulary, or there is nothing to train on.
pub fn train(
    data: &Dataset,
    sequences: &[usize],
    held_out: &[usize],
    lm: &LmHead,
    options: &TrainOptions,
    progress: &dyn Progress,
) -> Result<(Vec<Head>, TrainReport)> {
    let start = Instant::now();
    if data.hidden != lm.hidden() {
        return Err(Error::Setting {
            field: "training data",
            message: format!(
                "hidden states are {} wide, the model's LM head takes {}",
                data.hidden,
                lm.hidden()
            ),
        });
    }
    if options.heads == 0 || options.batch == 0 || options.epochs == 0 {
        return Err(Error::Setting {
            field: "training",
            message: "heads, batch and epochs must be at least 1".into(),
        });
    }
    if !(0.0..=1.0).contains(&options.teacher_weight) {
        return Err(Error::Setting {
            field: "training",
            message: format!(
                "the teacher's weight must be between 0 and 1, not {}",
                options.teacher_weight
            ),
        });
    }
    if !(options.weight_decay.is_finite() && options.weight_decay >= 0.0) {
        return Err(Error::Setting {
            field: "training",
            message: format!(
                "the weight decay must be 0 or more, not {}",
                options.weight_decay
            ),
        });
    }
    let held_examples = examples(data, held_out, options.heads);
    let mut examples = examples(data, sequences, options.heads);
    if examples.is_empty() {
        return Err(Error::Setting {
            field: "training data",
            message: "no answer has two tokens or more: nothing to train on".into(),
        });
    }
    if let Some(t) = examples
        .iter()
        .flat_map(|e| e.targets.iter().flatten().chain([&e.next]))
        .find(|&&t| t as usize >= lm.vocab())
    {
        return Err(Error::Setting {
            field: "training data",
            message: format!("token {t} is outside the vocabulary of {}", lm.vocab()),
        });
    }
    let restricted;
    let lm = match &options.vocab {
        Some(tokens) => {
            restricted = lm.restricted(tokens)?;
            &restricted
        }
        None => lm,
    };
    let targets_total: usize = examples
        .iter()
        .map(|e| e.targets.iter().flatten().count())
        .sum();
    let outside = examples
        .iter()
        .flat_map(|e| e.targets.iter().flatten())
        .filter(|&&t| lm.row_of(t).is_none())
        .count();
    let d = data.hidden;
    let mut heads: Vec<Head> = (0..options.heads)
        .map(|h| Head::zero(d, h, options.conditioning))
        .collect();
    let mut adams: Vec<HeadAdam> = heads.iter().map(HeadAdam::new).collect();
    let steps_per_epoch = examples.len().div_ceil(options.batch);
    let total = steps_per_epoch * options.epochs;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut scratch = Scratch::default();
    let teacher = (options.teacher_weight > 0.0)
        .then(|| Teacher::compute(data, sequences, lm, TEACHER_TOP, progress));
    let mut report = TrainReport {
        steps: 0,
        examples: examples.len(),
        outside_vocab: outside as f64 / targets_total.max(1) as f64,
        epoch_loss: Vec::new(),
        initial_loss: Vec::new(),
        held_out_loss: Vec::new(),
        teacher_agreement: teacher.as_ref().map(|t| t.agreement),
        time: Duration::ZERO,
    };
    let bar = progress.start(
        &format!(
            "training {} heads ({} examples, {} epochs)",
            options.heads,
            examples.len(),
            options.epochs
        ),
        Some(total as u64),
        Unit::Items,
    );
    let mut hb = HeadBatch::default();
    let soft = |state: usize| teacher.as_ref().map_or(&[][..], |t| t.at(state));
    for epoch in 0..options.epochs {
        examples.shuffle(&mut rng);
        let mut sums = vec![(0.0f64, 0usize); options.heads];
        for batch in examples.chunks(options.batch) {
            let lr = schedule(options, report.steps, total);
            let t = (report.steps + 1) as i32;
            let mut first = Vec::new();
            for (h, (head, adam)) in heads.iter_mut().zip(&mut adams).enumerate() {
                hb.fill(batch, h, head, lm, &soft, options.teacher_weight);
                if hb.ids.is_empty() {
                    continue;
                }
                let tokens = hb.tokens();
                let batch = (&hb.ids[..], &tokens[..], &hb.targets);
                let rates = (lr, options.weight_decay);
                let loss = head_step(data, lm, head, adam, batch, rates, t, &mut scratch);
                sums[h].0 += loss;
                sums[h].1 += hb.ids.len();
                first.push(loss / hb.ids.len() as f64);
            }
            if report.steps == 0 {
                report.initial_loss = first;
            }
            report.steps += 1;
            bar.advance(1);
        }
        let means: Vec<f64> = sums
            .iter()
            .map(|&(s, n)| if n == 0 { 0.0 } else { s / n as f64 })
            .collect();
        tracing::info!(
            "epoch {}: mean loss per head {}",
            epoch + 1,
            means
                .iter()
                .map(|l| format!("{l:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        report.epoch_loss.push(means);
        if !held_examples.is_empty() {
            let loss = held_out_loss(
                data,
                lm,
                &heads,
                &held_examples,
                options.batch,
                &mut scratch,
            );
            tracing::info!(
                "epoch {}: held-out loss per head {}",
                epoch + 1,
                loss.iter()
                    .map(|l| format!("{l:.3}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            report.held_out_loss.push(loss);
        }
    }
    drop(bar);
    report.time = start.elapsed();
    Ok((heads, report))
}

/// `z` of each head for a batch of examples (for evaluation), reusing `scratch`.
pub(crate) struct HeadInputs<'a> {
    data: &'a Dataset,
    lm: &'a LmHead,
    next: Vec<u32>,
    scratch: Scratch,
}

impl<'a> HeadInputs<'a> {
    pub(crate) fn new(data: &'a Dataset, lm: &'a LmHead) -> Self {
        HeadInputs {
            data,
            lm,
            next: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// Loads the states and next tokens of `examples`.
    pub(crate) fn load(&mut self, examples: &[Example]) {
        let ids: Vec<usize> = examples.iter().map(|e| e.state).collect();
        self.next = examples.iter().map(|e| e.next).collect();
        gather_states(self.data, &ids, &mut self.scratch);
    }

    /// The loaded hidden states `[examples, hidden]`.
    pub(crate) fn states(&self) -> ArrayView2<'_, f32> {
        self.scratch.x.view()
    }

    /// `z` of `head` for the loaded examples, `[examples, hidden]`, taking the loaded next
    /// tokens and `path[i]` as the candidate of head `i` (for heads that take the path).
    pub(crate) fn z(&mut self, head: &Head, path: &[Vec<u32>]) -> ArrayView2<'_, f32> {
        let tokens: Vec<&[u32]> = std::iter::once(&self.next[..])
            .chain(path.iter().map(Vec::as_slice))
            .take(head.token_weights.len())
            .collect();
        gather_tokens(self.lm, self.data.hidden, &tokens, &mut self.scratch);
        head_forward(self.lm.matmul, head, &mut self.scratch);
        self.scratch.z.view()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finite-difference check of the hand-written backward pass, for `W` and `N`.
    #[test]
    fn gradient_matches_finite_differences() {
        let (d, v) = (6, 11);
        let lm = LmHead::new(
            v,
            d,
            (0..v * d)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
                .collect(),
        )
        .unwrap()
        .with_embedding(
            (0..v * d)
                .map(|i| ((i * 11 % 13) as f32 - 6.0) / 6.0)
                .collect(),
        )
        .unwrap();
        let data = Dataset {
            hidden: d,
            states: (0..3 * d)
                .map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0)
                .collect(),
            sequences: vec![],
        };
        // Head 2 of heads that take the path: the next token, then two path tokens.
        let ids = [0, 1, 2];
        let tokens: [&[u32]; 3] = [&[4, 9, 0], &[1, 2, 3], &[5, 6, 10]];
        let mut head = Head::zero(d, 2, Conditioning::Path);
        assert_eq!(head.token_weights.len(), 3);
        for (i, w) in head.weight.iter_mut().enumerate() {
            *w = ((i * 7 % 5) as f32 - 2.0) / 10.0;
        }
        for (t, m) in head.token_weights.iter_mut().enumerate() {
            for (i, w) in m.iter_mut().enumerate() {
                *w = ((i * (3 + t) % 7) as f32 - 3.0) / 10.0;
            }
        }
        head.bias = (0..d).map(|i| i as f32 / 20.0).collect();
        // One-hot targets, and targets mixed with a teacher's distribution.
        let one_hot = Targets::one_hot(&[3, 7, 1]);
        let mut mixed = Targets::default();
        mixed.push(3, &[(3, 0.5), (4, 0.3), (0, 0.2)], 0.6);
        mixed.push(7, &[(2, 0.9), (7, 0.1)], 0.3);
        mixed.push(1, &[], 0.5);
        for targets in [&one_hot, &mixed] {
            check_gradient(&data, &lm, &head, &ids, &tokens, targets);
        }
    }

    fn check_gradient(
        data: &Dataset,
        lm: &LmHead,
        head: &Head,
        ids: &[usize],
        tokens: &[&[u32]],
        targets: &Targets,
    ) {
        let run = |head: &Head| {
            let mut s = Scratch::default();
            gather(data, lm, ids, tokens, &mut s);
            let loss = forward_backward(lm, head, targets, &mut s) / ids.len() as f64;
            (loss, s)
        };
        let (_, analytic) = run(head);
        let eps = 1e-3;
        for (r, c) in [(0, 0), (2, 5), (5, 1), (3, 3)] {
            // None: W; Some(t): token matrix t.
            for of in [None, Some(0), Some(1), Some(2)] {
                let nudged = |by: f32| {
                    let mut h = head.clone();
                    match of {
                        None => h.weight[[r, c]] += by,
                        Some(t) => h.token_weights[t][[r, c]] += by,
                    }
                    run(&h).0
                };
                let numeric = (nudged(eps) - nudged(-eps)) / (2.0 * f64::from(eps));
                let grad = of.map_or(&analytic.dw, |t| &analytic.dt[t]);
                let analytic = f64::from(grad[[r, c]]);
                assert!(
                    (numeric - analytic).abs() < 1e-3 * (1.0 + numeric.abs()),
                    "{of:?} [{r},{c}]: numeric {numeric}, analytic {analytic}"
                );
            }
        }
    }

    /// Answers a, a+1, a+2, ... over a vocabulary of 8, with the state before token t being
    /// E[t] plus noise: the base model predicts t, head 0 must predict t + 1.
    fn shifted_data() -> (Dataset, LmHead) {
        let (v, d) = (8usize, 16usize);
        let mut seed = 12345u64;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let e: Vec<f32> = (0..v * d).map(|_| rand() * 4.0).collect();
        let lm = LmHead::new(v, d, e.clone()).unwrap();
        let mut data = Dataset {
            hidden: d,
            states: Vec::new(),
            sequences: Vec::new(),
        };
        for s in 0..24 {
            let tokens: Vec<u32> = (0..6).map(|i| ((s + i) % v) as u32).collect();
            let first_state = data.len();
            for &t in &tokens {
                let row = &e[t as usize * d..(t as usize + 1) * d];
                data.states.extend(row.iter().map(|x| x + rand() * 0.2));
            }
            data.sequences.push(super::super::data::DistilledSequence {
                prompt: s,
                tokens,
                first_state,
            });
        }
        (data, lm)
    }

    /// Heads learn what the base model does not know: here the token after next is always
    /// the next token plus one, and the untrained head (the base model's own prediction)
    /// never gets it right.
    #[test]
    fn heads_learn_a_shift_the_base_model_does_not_know() {
        let (data, lm) = shifted_data();
        let d = data.hidden;
        let all: Vec<usize> = (0..24).collect();
        let before = super::super::eval::evaluate(
            &data,
            &all,
            &lm,
            &[Head::zero(d, 0, Conditioning::HiddenOnly)],
            None,
            1,
            &crate::loading::NoProgress,
        );
        assert!(before.base_top1 > 0.9, "{}", before.base_top1);
        assert!(before.heads[0].top[0] < 0.2, "{:?}", before.heads[0]);
        // Every kind of head on the greedy tokens, and one on soft targets too.
        let runs = Conditioning::ALL
            .map(|c| (c, 0.0))
            .into_iter()
            .chain([(Conditioning::Path, 0.5)]);
        for (conditioning, teacher_weight) in runs {
            let options = TrainOptions {
                heads: 2,
                epochs: 150,
                batch: 32,
                learning_rate: 2e-2,
                warmup_steps: 5,
                seed: 1,
                conditioning,
                vocab: None,
                teacher_weight,
                weight_decay: 0.0,
            };
            let (heads, report) = train(
                &data,
                &all,
                &all[..4],
                &lm,
                &options,
                &crate::loading::NoProgress,
            )
            .unwrap();
            // Measured after every epoch, on greedy targets: the shift is learned there too
            // (a uniform guess over the 8 tokens costs ln 8 = 2.08).
            assert_eq!(report.held_out_loss.len(), options.epochs);
            let held = report.held_out_loss.last().unwrap();
            assert!(held.iter().all(|&l| l < 0.5), "{conditioning:?}: {held:?}");
            if teacher_weight > 0.0 {
                // The base model predicts each answer's next token from its state.
                let agreement = report.teacher_agreement.unwrap();
                assert!(agreement > 0.95, "{agreement}");
            } else {
                assert_eq!(report.teacher_agreement, None);
            }
            for (h, head) in heads.iter().enumerate() {
                assert_eq!(head.token_weights.len(), conditioning.token_parts(h).len());
            }
            let after = super::super::eval::evaluate(
                &data,
                &all,
                &lm,
                &heads,
                None,
                1,
                &crate::loading::NoProgress,
            );
            for h in 0..2 {
                assert!(
                    after.heads[h].top[0] > 0.9,
                    "{conditioning:?}, head {h}: {:?}",
                    after.heads[h]
                );
                assert!(report.epoch_loss.last().unwrap()[h] < 0.5 * report.initial_loss[h]);
            }
        }
    }

    /// Trained over a vocabulary, heads score only its tokens and skip the targets outside
    /// it; the same data as above, with one token left out.
    #[test]
    fn heads_trained_on_a_vocabulary_learn_its_tokens() {
        let (data, lm) = shifted_data();
        let all: Vec<usize> = (0..data.sequences.len()).collect();
        let vocab: Vec<u32> = (0..7).collect();
        let options = TrainOptions {
            heads: 1,
            epochs: 150,
            batch: 32,
            learning_rate: 2e-2,
            warmup_steps: 5,
            seed: 1,
            conditioning: Conditioning::Path,
            vocab: Some(vocab.clone()),
            teacher_weight: 0.0,
            weight_decay: 0.0,
        };
        let (heads, report) =
            train(&data, &all, &[], &lm, &options, &crate::loading::NoProgress).unwrap();
        assert!(report.held_out_loss.is_empty());
        // Token 7 is one target in eight.
        assert!(
            (report.outside_vocab - 1.0 / 8.0).abs() < 0.05,
            "{}",
            report.outside_vocab
        );
        let after = super::super::eval::evaluate(
            &data,
            &all,
            &lm,
            &heads,
            Some(&vocab),
            1,
            &crate::loading::NoProgress,
        );
        // Every target inside the vocabulary is learned; the others cannot be proposed.
        let top1 = after.heads[0].top[0];
        assert!(top1 > 0.8 && top1 < 7.0 / 8.0 + 0.01, "{top1}");
        let bad = TrainOptions {
            vocab: Some(vec![3, 2]),
            ..options
        };
        let err = train(&data, &all, &[], &lm, &bad, &crate::loading::NoProgress).unwrap_err();
        assert!(err.to_string().contains("strictly increasing"), "{err}");
        let bad = TrainOptions {
            teacher_weight: 1.5,
            ..options
        };
        let err = train(&data, &all, &[], &lm, &bad, &crate::loading::NoProgress).unwrap_err();
        assert!(err.to_string().contains("teacher's weight"), "{err}");
    }

    #[test]
    fn teacher_keeps_the_most_likely_tokens_renormalised() {
        // softmax of [ln 1, ln 3, ln 3, ln 2]: the two threes tie, the lower index first.
        let logits = [0.0f32, 3f32.ln(), 3f32.ln(), 2f32.ln()];
        let top = top_probabilities(&logits, 3);
        let ids: Vec<u32> = top.iter().map(|&(i, _)| i).collect();
        assert_eq!(ids, [1, 2, 3]);
        for (&(_, p), want) in top.iter().zip([3.0 / 8.0, 3.0 / 8.0, 2.0 / 8.0]) {
            assert!((p - want).abs() < 1e-6, "{top:?}");
        }
        assert_eq!(top_probabilities(&logits, 9).len(), 4);
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let o = TrainOptions {
            warmup_steps: 10,
            learning_rate: 1.0,
            ..TrainOptions::default()
        };
        assert!((schedule(&o, 0, 100) - 0.1).abs() < 1e-6);
        assert!((schedule(&o, 10, 100) - 1.0).abs() < 1e-6);
        assert!((schedule(&o, 100, 100) - 0.1).abs() < 1e-6);
        assert!(schedule(&o, 50, 100) < 1.0 && schedule(&o, 50, 100) > 0.1);
    }
}
