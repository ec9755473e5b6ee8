//! A feature draft (EAGLE's design) run on the host CPU: one decoder layer that reads the
//! target model's final hidden state with the token chosen from it, guesses the next hidden
//! state, and scores it with the target's own LM head over the draft's vocabulary. Fed its
//! own guesses, it proposes several tokens ahead; unlike Medusa heads it attends to its own
//! earlier inputs, so it sees the context.
//!
//! The file format is [`crate::loading::feature_draft`]; the proposer that builds candidate
//! trees from it is [`crate::strategy::feature_draft`].
//!
//! Its inputs come in two kinds. *Committed* ones ([`FeatureDraft::extend`]) carry the
//! target's true hidden states of accepted tokens; their keys and values stay in the
//! sequence's [`DraftCache`]. *Speculative* ones ([`FeatureDraft::speculate`]) carry the
//! draft's own guesses along a tree of candidates; they live in a [`Speculation`] that is
//! dropped after each target pass, since the target's states replace them.

use half::f16;
use ndarray::{Array2, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::loading::feature_draft::{DraftConfig, FeatureDraftFile};

pub mod default_draft;
mod int8;
mod linear;

use crate::medusa::train::LmHead;
pub use linear::DraftWeights;
use linear::Linear;

/// LM head rows per part of the scorer: the granularity of [`Scoring::tokens`].
const SCORER_PART: usize = 1024;

/// How a run of the draft scores its guesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scoring {
    /// The best tokens returned per input.
    pub top_k: usize,
    /// Score only the first this many tokens of the draft's vocabulary in scoring order
    /// ([`FeatureDraft::vocab`]), rounded up to whole parts of the scorer; all of it when
    /// larger. Most of a run's weights are LM head rows, and the draft is bound by reading
    /// them: a draft whose file ranks its vocabulary by frequency scores its most frequent
    /// tokens first, so a prefix keeps most of what it would propose.
    pub tokens: usize,
}

impl Scoring {
    /// The best `top_k` of the whole vocabulary.
    pub fn all(top_k: usize) -> Self {
        Scoring {
            top_k,
            tokens: usize::MAX,
        }
    }
}

/// The keys and values of one sequence's committed draft inputs.
#[derive(Debug, Clone, Default)]
pub struct DraftCache {
    /// `[len][kv_heads · head_dim]`, rotated.
    keys: Vec<f32>,
    /// `[len][kv_heads · head_dim]`.
    values: Vec<f32>,
}

impl DraftCache {
    /// Committed inputs so far.
    pub fn len(&self, draft: &FeatureDraft) -> usize {
        self.keys.len() / draft.kv_width()
    }

    /// Forgets everything (a new sequence).
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
    }
}

/// Speculative inputs over a cache: a tree, each entry after its parent (or, without one,
/// right after the committed inputs).
#[derive(Debug, Clone, Default)]
pub struct Speculation {
    keys: Vec<f32>,
    values: Vec<f32>,
    parents: Vec<Option<usize>>,
}

impl Speculation {
    /// Entries so far.
    pub fn len(&self) -> usize {
        self.parents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
        self.parents.clear();
    }

    /// `entry` and its ancestors, the oldest first.
    fn lineage(&self, entry: usize) -> Vec<usize> {
        let mut path = vec![entry];
        while let Some(p) = self.parents[*path.last().unwrap_or(&entry)] {
            path.push(p);
        }
        path.reverse();
        path
    }
}

/// The draft's guesses for a batch of inputs: the next hidden states, and the top tokens of
/// each with their probabilities (softmax over the draft's vocabulary).
#[derive(Debug, Clone)]
pub struct DraftOutput {
    /// `[inputs, hidden]`.
    pub states: Array2<f32>,
    /// Per input, the best tokens, most likely first, with their probabilities.
    pub top: Vec<Vec<(u32, f32)>>,
}

/// A loaded feature draft.
pub struct FeatureDraft {
    config: DraftConfig,
    fc: Linear,
    fc_bias: Vec<f32>,
    /// The query, key and value projections stacked: one product for the three.
    qkv: Linear,
    o: Linear,
    post: Vec<f32>,
    /// The MLP's gate and up projections stacked.
    gate_up: Linear,
    down: Linear,
    /// The target's LM head rows of the draft's vocabulary, in scoring order.
    scorer: Linear,
    /// The draft's vocabulary in scoring order: the most frequent first when the file
    /// ranks it, else increasing.
    vocab: Vec<u32>,
    /// Whether `vocab` is in frequency order.
    ranked: bool,
    /// The target's input embedding (every token), `[vocab][hidden]`, in f16: half the
    /// memory of f32 (57 MB for the default model), and the draft rounds its inputs to 16
    /// bits per group of 64 anyway.
    embedding: Vec<f16>,
    /// Rotary frequencies, `head_dim / 2`.
    inv_freq: Vec<f64>,
}

impl std::fmt::Debug for FeatureDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureDraft")
            .field("config", &self.config)
            .field("vocab", &self.vocab.len())
            .finish_non_exhaustive()
    }
}

impl FeatureDraft {
    /// Loads the draft in `file` for the target whose LM head and embedding are `lm` (the
    /// whole vocabulary), its weights stored as `weights` says.
    ///
    /// # Errors
    /// [`Error::Setting`] when the draft does not fit `lm` (width, vocabulary) or `weights`
    /// is not available; the file's errors for unreadable tensors.
    pub fn new(file: &FeatureDraftFile, lm: &LmHead, weights: DraftWeights) -> Result<Self> {
        let config = file.config().clone();
        if lm.hidden() != config.hidden {
            return Err(Error::Setting {
                field: "feature draft",
                message: format!(
                    "{} is {} wide, the model {}",
                    file.path().display(),
                    config.hidden,
                    lm.hidden()
                ),
            });
        }
        let weights = weights.check()?;
        let shapes = config.tensors();
        let matrix = |name: &str| -> Result<Array2<f32>> {
            let shape = &shapes
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::Setting {
                    field: "feature draft",
                    message: format!("no tensor {name} in the format"),
                })?
                .1;
            Array2::from_shape_vec((shape[0], shape[1]), file.tensor(name)?).map_err(|e| {
                Error::Setting {
                    field: "feature draft",
                    message: format!("{name}: {e}"),
                }
            })
        };
        let linear = |name: &str| -> Result<Linear> { Ok(Linear::new(matrix(name)?, weights)) };
        // Matrices applied to the same input, one under the other.
        let stacked = |names: &[&str]| -> Result<Linear> {
            let parts = names
                .iter()
                .map(|n| matrix(n))
                .collect::<Result<Vec<_>>>()?;
            let views: Vec<ArrayView2<'_, f32>> = parts.iter().map(|p| p.view()).collect();
            let weight = ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Setting {
                field: "feature draft",
                message: format!("stacking {names:?}: {e}"),
            })?;
            Ok(Linear::new(weight, weights))
        };
        // The LM head rows of the draft's vocabulary in scoring order, copied from `lm` (not
        // through `LmHead::restricted`, which would also copy the whole embedding).
        let order = file.vocab_by_frequency().unwrap_or(file.vocab());
        let rows = order
            .iter()
            .map(|&t| {
                lm.row_of(t).ok_or_else(|| Error::Setting {
                    field: "feature draft",
                    message: format!(
                        "token {t} of the draft's vocabulary is not scored by the model"
                    ),
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let scorer = lm.view().select(Axis(0), &rows);
        let embedding = (0..lm.vocab())
            .flat_map(|t| lm.embedding(t as u32).iter().map(|&x| f16::from_f32(x)))
            .collect();
        let half = config.head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| {
                config
                    .rope_theta
                    .powf(-((2 * i) as f64) / config.head_dim as f64)
            })
            .collect();
        Ok(FeatureDraft {
            fc: linear("draft.fc.weight")?,
            fc_bias: file.tensor("draft.fc.bias")?,
            qkv: stacked(&["draft.q.weight", "draft.k.weight", "draft.v.weight"])?,
            o: linear("draft.o.weight")?,
            post: file.tensor("draft.post.weight")?,
            gate_up: stacked(&["draft.gate.weight", "draft.up.weight"])?,
            down: linear("draft.down.weight")?,
            scorer: Linear::in_parts(scorer, weights, SCORER_PART),
            vocab: order.to_vec(),
            ranked: file.vocab_by_frequency().is_some(),
            embedding,
            inv_freq,
            config,
        })
    }

    /// The draft's shape.
    pub fn config(&self) -> &DraftConfig {
        &self.config
    }

    /// The tokens the draft can propose, in scoring order: the most frequent first when
    /// [`FeatureDraft::ranked`], else increasing.
    pub fn vocab(&self) -> &[u32] {
        &self.vocab
    }

    /// Whether the file ranked the vocabulary by frequency, so that a [`Scoring::tokens`]
    /// prefix holds the most frequent tokens.
    pub fn ranked(&self) -> bool {
        self.ranked
    }

    fn kv_width(&self) -> usize {
        self.config.kv_heads * self.config.head_dim
    }

    /// Runs committed inputs (`features[i]`, the target's hidden state, with `tokens[i]`, the
    /// token chosen from it) after those in `cache`, each seeing the ones before it, and
    /// appends them to the cache. Returns the guess after the last input (one row; none
    /// without inputs).
    ///
    /// Only the last input goes past its keys and values: the earlier ones' guesses would be
    /// thrown away (the proposer draws its tree from the last), and skipping their attention,
    /// MLP and scores takes a third off a pass that accepted several tokens.
    ///
    /// # Errors
    /// [`Error::Setting`] for features of the wrong width or a token outside the model's
    /// vocabulary.
    pub fn extend(
        &self,
        cache: &mut DraftCache,
        features: ArrayView2<'_, f32>,
        tokens: &[u32],
        scoring: Scoring,
    ) -> Result<DraftOutput> {
        let start = cache.len(self);
        let positions: Vec<usize> = (start..start + tokens.len()).collect();
        let [u, q, k, v] = self.project(features, tokens, &positions)?;
        cache.keys.extend(k.iter());
        cache.values.extend(v.iter());
        let last = ndarray::s![tokens.len().saturating_sub(1).., ..];
        let attention = self.attend(
            &q.slice(last).to_owned(),
            |_| Visible {
                prefix: start + tokens.len(),
                extra: Vec::new(),
            },
            cache,
            None,
        );
        Ok(self.finish(u.slice(last).to_owned(), &attention, scoring))
    }

    /// Runs speculative inputs (`features[i]`, a guess of the draft's, with `tokens[i]`, a
    /// candidate drawn from it) on top of `cache`: input `i` goes after the entry
    /// `parents[i]` of `spec` (or right after the committed inputs) and sees the committed
    /// inputs, its ancestors and itself. Appends them to `spec`.
    ///
    /// # Errors
    /// As [`FeatureDraft::extend`], and for a parent that is not in `spec`.
    pub fn speculate(
        &self,
        cache: &DraftCache,
        spec: &mut Speculation,
        parents: &[Option<usize>],
        features: ArrayView2<'_, f32>,
        tokens: &[u32],
        scoring: Scoring,
    ) -> Result<DraftOutput> {
        let start = cache.len(self);
        let first = spec.len();
        let mut positions = Vec::with_capacity(parents.len());
        for &p in parents {
            let depth = match p {
                None => 0,
                Some(p) if p < first => spec.lineage(p).len(),
                Some(p) => {
                    return Err(Error::Setting {
                        field: "feature draft",
                        message: format!("speculative parent {p} of {first} entries"),
                    });
                }
            };
            positions.push(start + depth);
        }
        let [u, q, k, v] = self.project(features, tokens, &positions)?;
        spec.keys.extend(k.iter());
        spec.values.extend(v.iter());
        spec.parents.extend_from_slice(parents);
        let attention = self.attend(
            &q,
            |i| Visible {
                prefix: start,
                extra: spec.lineage(first + i),
            },
            cache,
            Some(spec),
        );
        Ok(self.finish(u, &attention, scoring))
    }

    /// The fused inputs and their queries, keys and values (rotated to `positions`).
    fn project(
        &self,
        features: ArrayView2<'_, f32>,
        tokens: &[u32],
        positions: &[usize],
    ) -> Result<[Array2<f32>; 4]> {
        let u = self.fuse(features, tokens)?;
        let (qw, kvw) = (self.config.heads * self.config.head_dim, self.kv_width());
        let qkv = self.qkv.apply(u.view());
        let column = |range: std::ops::Range<usize>| qkv.slice(ndarray::s![.., range]).to_owned();
        let (mut q, mut k) = (column(0..qw), column(qw..qw + kvw));
        let v = column(qw + kvw..qw + 2 * kvw);
        let mut turns = Vec::with_capacity(self.inv_freq.len());
        for (i, &pos) in positions.iter().enumerate() {
            turns.clear();
            turns.extend(self.inv_freq.iter().map(|&f| (pos as f64 * f).sin_cos()));
            rotate(q.row_mut(i).as_slice_mut().unwrap_or(&mut []), &turns);
            rotate(k.row_mut(i).as_slice_mut().unwrap_or(&mut []), &turns);
        }
        Ok([u, q, k, v])
    }

    /// `u = W [f; e] + b` for every input.
    fn fuse(&self, features: ArrayView2<'_, f32>, tokens: &[u32]) -> Result<Array2<f32>> {
        let h = self.config.hidden;
        if features.dim() != (tokens.len(), h) {
            return Err(Error::Setting {
                field: "feature draft",
                message: format!(
                    "features of shape {:?} for {} tokens of width {h}",
                    features.dim(),
                    tokens.len()
                ),
            });
        }
        let mut x = Array2::zeros((tokens.len(), 2 * h));
        for (i, &t) in tokens.iter().enumerate() {
            if t as usize >= self.embedding.len() / h {
                return Err(Error::Setting {
                    field: "feature draft",
                    message: format!("token {t} is outside the model's vocabulary"),
                });
            }
            let mut row = x.row_mut(i);
            row.slice_mut(ndarray::s![..h]).assign(&features.row(i));
            row.slice_mut(ndarray::s![h..])
                .iter_mut()
                .zip(&self.embedding[t as usize * h..(t as usize + 1) * h])
                .for_each(|(o, &e)| *o = e.to_f32());
        }
        let mut u = self.fc.apply(x.view());
        u.rows_mut()
            .into_iter()
            .for_each(|mut r| r.iter_mut().zip(&self.fc_bias).for_each(|(a, b)| *a += b));
        Ok(u)
    }

    /// Attention of every query row over what it may see: `[inputs, heads · head_dim]`.
    fn attend(
        &self,
        q: &Array2<f32>,
        visible: impl Fn(usize) -> Visible,
        cache: &DraftCache,
        spec: Option<&Speculation>,
    ) -> Array2<f32> {
        let c = &self.config;
        let (d, kvw) = (c.head_dim, self.kv_width());
        let group = c.heads / c.kv_heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = Array2::zeros((q.nrows(), c.heads * d));
        let mut scores = Vec::new();
        for (i, (qi, mut oi)) in q.rows().into_iter().zip(out.rows_mut()).enumerate() {
            let seen = visible(i);
            let key = |j: usize, g: usize| -> (&[f32], &[f32]) {
                let (keys, values, at) = if j < seen.prefix {
                    (&cache.keys, &cache.values, j)
                } else {
                    let s = spec.map_or(&cache.keys, |s| &s.keys);
                    let sv = spec.map_or(&cache.values, |s| &s.values);
                    (s, sv, seen.extra[j - seen.prefix])
                };
                let r = at * kvw + g * d..at * kvw + (g + 1) * d;
                (&keys[r.clone()], &values[r])
            };
            let n = seen.prefix + seen.extra.len();
            for h in 0..c.heads {
                let g = h / group;
                let qh = &qi.as_slice().unwrap_or(&[])[h * d..(h + 1) * d];
                scores.clear();
                scores.extend((0..n).map(|j| {
                    let (k, _) = key(j, g);
                    dot(k, qh) * scale
                }));
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0.0;
                for s in &mut scores {
                    *s = (*s - max).exp();
                    total += *s;
                }
                let oh = &mut oi.as_slice_mut().unwrap_or(&mut [])[h * d..(h + 1) * d];
                for (j, &w) in scores.iter().enumerate() {
                    let (_, v) = key(j, g);
                    let w = w / total;
                    oh.iter_mut().zip(v).for_each(|(o, &x)| *o += w * x);
                }
            }
        }
        out
    }

    /// The rest of the layer after attention, and the scores: `x = u + o(att)`,
    /// `g = x + MLP(RMSNorm(x))`.
    fn finish(&self, u: Array2<f32>, attention: &Array2<f32>, scoring: Scoring) -> DraftOutput {
        let mut x = u + self.o.apply(attention.view());
        let mut y = x.clone();
        for mut row in y.rows_mut() {
            let ms = row.iter().map(|a| a * a).sum::<f32>() / row.len() as f32;
            let r = 1.0 / (ms + self.config.rms_eps).sqrt();
            row.iter_mut()
                .zip(&self.post)
                .for_each(|(a, w)| *a *= r * w);
        }
        let both = self.gate_up.apply(y.view());
        let width = self.config.intermediate;
        let mut gate = both.slice(ndarray::s![.., ..width]).to_owned();
        gate.zip_mut_with(&both.slice(ndarray::s![.., width..]), |g, &u| {
            *g = *g / (1.0 + (-*g).exp()) * u;
        });
        x += &self.down.apply(gate.view());
        let logits = self.scorer.apply_first(x.view(), scoring.tokens);
        let top = logits
            .axis_iter(Axis(0))
            .map(|row| self.top_tokens(row.as_slice().unwrap_or(&[]), scoring.top_k))
            .collect();
        DraftOutput { states: x, top }
    }

    /// The `k` most likely tokens of a logits row with their softmax probabilities (ties to
    /// the lower row).
    fn top_tokens(&self, logits: &[f32], k: usize) -> Vec<(u32, f32)> {
        // One pass keeping the best k in order: k is a handful, the row thousands long.
        let mut best: Vec<usize> = Vec::with_capacity(k + 1);
        for (i, &l) in logits.iter().enumerate() {
            if best.len() == k && best.last().is_none_or(|&j| logits[j] >= l) {
                continue;
            }
            let at = best.partition_point(|&j| logits[j] >= l);
            best.insert(at, i);
            best.truncate(k);
        }
        let max = best.first().map_or(0.0, |&i| logits[i]);
        // Logits far below the best add nothing a probability can show, and `exp` of large
        // negative numbers takes a slow path.
        let total: f32 = logits
            .iter()
            .filter(|&&l| l > max - 30.0)
            .map(|&l| (l - max).exp())
            .sum();
        best.into_iter()
            .map(|i| (self.vocab[i], (logits[i] - max).exp() / total))
            .collect()
    }
}

/// Rotary embedding of every head of `x` (`[heads · head_dim]`) by the `(sin, cos)` of each
/// frequency's angle at its position, rotating each head's halves (as Llama does). The
/// angles are the position's, computed once for its query and key heads.
fn rotate(x: &mut [f32], turns: &[(f64, f64)]) {
    let half = turns.len();
    for head in x.chunks_exact_mut(2 * half) {
        for (i, &(sin, cos)) in turns.iter().enumerate() {
            let (a, b) = (head[i], head[i + half]);
            head[i] = (f64::from(a) * cos - f64::from(b) * sin) as f32;
            head[i + half] = (f64::from(b) * cos + f64::from(a) * sin) as f32;
        }
    }
}

/// `Σ a[i]·b[i]` in eight running sums (a head's 64 values), which the compiler can keep in
/// one vector register: a single running sum must add in order, one value at a time.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    for (x, y) in a8.iter().zip(b8) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    sums.iter().sum::<f32>() + tail
}

/// What one query sees: the first `prefix` committed entries, then the speculative entries
/// `extra`.
struct Visible {
    prefix: usize,
    extra: Vec<usize>,
}

/// A draft of shape `config` with seeded random weights over a random LM head of `vocab`
/// tokens, scoring `scored` of them (every other token from 0), with weights stored as `weights`
/// arithmetic; for tests, examples and benchmarks. Its file is written in `dir`. With
/// `identity` it is the base model's own prediction: `u = f`, and the layer adds nothing, so
/// it proposes what the LM head scores best on the state it is given. Its file ranks the
/// scored tokens in a seeded random order, as if by frequency.
///
/// # Errors
/// When the file cannot be written, or `weights` is not available.
pub fn synthetic(
    dir: &std::path::Path,
    config: &DraftConfig,
    vocab: usize,
    scored: usize,
    seed: u64,
    identity: bool,
    weights: DraftWeights,
) -> Result<(FeatureDraft, LmHead)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let hidden = config.hidden;
    let path = dir.join("draft.safetensors");
    let scored: Vec<u32> = (0..vocab as u32).step_by(2).take(scored).collect();
    let mut ranked = scored.clone();
    rand::seq::SliceRandom::shuffle(&mut ranked[..], &mut rng);
    crate::loading::feature_draft::write_feature_draft(
        &path,
        config,
        crate::loading::feature_draft::DraftVocab {
            tokens: &scored,
            by_frequency: Some(&ranked),
        },
        None,
        crate::loading::Dtype::F32,
        |name, shape| {
            let n: usize = shape.iter().product();
            match (identity, name) {
                (true, "draft.fc.weight") => (0..n)
                    .map(|i| f32::from(u8::from(i / (2 * hidden) == i % (2 * hidden))))
                    .collect(),
                (true, "draft.fc.bias" | "draft.o.weight" | "draft.down.weight") => vec![0.0; n],
                _ => (0..n).map(|_| rng.random_range(-0.5..0.5)).collect(),
            }
        },
    )?;
    let lm = LmHead::new(
        vocab,
        hidden,
        (0..vocab * hidden)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
    )?;
    let file = FeatureDraftFile::open(&path, hidden, vocab)?;
    Ok((FeatureDraft::new(&file, &lm, weights)?, lm))
}

/// A small draft's shape for tests: width `hidden`, 4 query heads over 2 key/value heads of
/// width 4, an MLP three times as wide.
pub fn small_config(hidden: usize) -> DraftConfig {
    DraftConfig {
        hidden,
        heads: 4,
        kv_heads: 2,
        head_dim: 4,
        intermediate: 3 * hidden,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_draft(
        dir: &std::path::Path,
        hidden: usize,
        vocab: usize,
        identity: bool,
    ) -> (FeatureDraft, LmHead) {
        synthetic(
            dir,
            &small_config(hidden),
            vocab,
            vocab / 2,
            7,
            identity,
            DraftWeights::F32,
        )
        .unwrap()
    }

    fn rows(n: usize, hidden: usize, seed: u64) -> Array2<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((n, hidden), |_| rng.random_range(-1.0..1.0))
    }

    fn close(a: ndarray::ArrayView1<'_, f32>, b: ndarray::ArrayView1<'_, f32>) -> bool {
        a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs()))
    }

    #[test]
    fn speculative_inputs_see_what_committed_ones_would() {
        let dir = tempfile::tempdir().unwrap();
        let (draft, _) = random_draft(dir.path(), 16, 40, false);
        let f = rows(5, 16, 1);
        let tokens = [3, 9, 27, 4, 11];
        // All five committed one at a time (each run's guess after its input)...
        let mut one_by_one = DraftCache::default();
        let mut all = Array2::zeros((5, 16));
        let mut all_top = Vec::new();
        for i in 0..5 {
            let out = draft
                .extend(
                    &mut one_by_one,
                    f.slice(ndarray::s![i..=i, ..]),
                    &tokens[i..=i],
                    Scoring::all(3),
                )
                .unwrap();
            assert_eq!(out.states.nrows(), 1);
            all.row_mut(i).assign(&out.states.row(0));
            all_top.push(out.top[0].clone());
        }
        // ...or in one run, which gives the guess after the last and the same cache...
        let mut whole = DraftCache::default();
        let last = draft
            .extend(&mut whole, f.view(), &tokens, Scoring::all(3))
            .unwrap();
        assert_eq!(whole.len(&draft), 5);
        assert_eq!(last.states.nrows(), 1);
        assert!(close(all.row(4), last.states.row(0)));
        assert_eq!(last.top[0], all_top[4]);
        for (a, b) in whole.keys.iter().zip(&one_by_one.keys) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()));
        }
        assert!(
            draft
                .extend(
                    &mut whole,
                    f.slice(ndarray::s![..0, ..]),
                    &[],
                    Scoring::all(3)
                )
                .unwrap()
                .top
                .is_empty()
        );
        // ...equal two committed, then a chain of three speculative ones, and a sibling of
        // the fourth input, which must not see it.
        let mut cache = DraftCache::default();
        let first = draft
            .extend(
                &mut cache,
                f.slice(ndarray::s![..2, ..]),
                &tokens[..2],
                Scoring::all(3),
            )
            .unwrap();
        let mut spec = Speculation::default();
        let third = draft
            .speculate(
                &cache,
                &mut spec,
                &[None],
                f.slice(ndarray::s![2..3, ..]),
                &tokens[2..3],
                Scoring::all(3),
            )
            .unwrap();
        let mut siblings = f.slice(ndarray::s![3..5, ..]).to_owned();
        siblings.row_mut(1).assign(&f.row(3));
        let fourth = draft
            .speculate(
                &cache,
                &mut spec,
                &[Some(0), Some(0)],
                siblings.view(),
                &[4, 4],
                Scoring::all(3),
            )
            .unwrap();
        let fifth = draft
            .speculate(
                &cache,
                &mut spec,
                &[Some(1)],
                f.slice(ndarray::s![4..5, ..]),
                &tokens[4..],
                Scoring::all(3),
            )
            .unwrap();
        assert!(close(all.row(1), first.states.row(0)));
        assert!(close(all.row(2), third.states.row(0)));
        assert!(close(all.row(3), fourth.states.row(0)));
        assert!(close(all.row(3), fourth.states.row(1)));
        assert!(close(all.row(4), fifth.states.row(0)));
        assert_eq!(all_top[4], fifth.top[0]);
        // The committed inputs are untouched by speculation.
        assert_eq!(cache.len(&draft), 2);
        assert_eq!(spec.len(), 4);
        assert!(
            draft
                .speculate(
                    &cache,
                    &mut spec,
                    &[Some(9)],
                    f.slice(ndarray::s![..1, ..]),
                    &[1],
                    Scoring::all(3)
                )
                .is_err()
        );
    }

    #[test]
    fn an_identity_draft_proposes_the_models_own_choice() {
        let dir = tempfile::tempdir().unwrap();
        let (draft, lm) = random_draft(dir.path(), 16, 40, true);
        let f = rows(6, 16, 2);
        // Six candidates side by side, each with its own guess.
        let out = draft
            .speculate(
                &DraftCache::default(),
                &mut Speculation::default(),
                &[None; 6],
                f.view(),
                &[0, 1, 2, 3, 4, 5],
                Scoring::all(2),
            )
            .unwrap();
        assert_eq!(out.top.len(), 6);
        for (i, top) in out.top.iter().enumerate() {
            assert!(close(out.states.row(i), f.row(i)));
            // The best scored token by the model's own LM head.
            let best = draft
                .vocab()
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    let score = |t: u32| -> f32 {
                        lm.view()
                            .row(t as usize)
                            .iter()
                            .zip(f.row(i))
                            .map(|(x, y)| x * y)
                            .sum()
                    };
                    score(a).total_cmp(&score(b))
                })
                .unwrap();
            assert_eq!(top[0].0, best);
            assert!(top[0].1 >= top[1].1 && top[1].1 > 0.0);
        }
    }

    #[test]
    fn a_scoring_prefix_proposes_the_best_of_the_most_frequent_tokens() {
        let dir = tempfile::tempdir().unwrap();
        // 1500 scored tokens: three parts of the scorer, the prefix asked for within the first.
        let (draft, lm) = synthetic(
            dir.path(),
            &small_config(16),
            4000,
            1500,
            3,
            true,
            DraftWeights::F32,
        )
        .unwrap();
        assert!(draft.ranked());
        let score = |t: u32, f: ndarray::ArrayView1<'_, f32>| -> f32 {
            lm.view()
                .row(t as usize)
                .iter()
                .zip(f)
                .map(|(x, y)| x * y)
                .sum()
        };
        let best_of = |tokens: &[u32], f| {
            tokens
                .iter()
                .copied()
                .max_by(|&a, &b| score(a, f).total_cmp(&score(b, f)))
                .unwrap()
        };
        let f = rows(4, 16, 5);
        let run = |scoring| {
            let mut spec = Speculation::default();
            draft
                .speculate(
                    &DraftCache::default(),
                    &mut spec,
                    &[None; 4],
                    f.view(),
                    &[1, 2, 3, 4],
                    scoring,
                )
                .unwrap()
        };
        let all = run(Scoring::all(3));
        let prefix = run(Scoring {
            top_k: 3,
            tokens: 100,
        });
        let frequent = &draft.vocab()[..SCORER_PART];
        for i in 0..4 {
            assert_eq!(all.top[i][0].0, best_of(draft.vocab(), f.row(i)));
            assert_eq!(prefix.top[i][0].0, best_of(frequent, f.row(i)));
            assert!(prefix.top[i].iter().all(|(t, _)| frequent.contains(t)));
            // The same state either way: only the scoring differs.
            assert!(close(all.states.row(i), prefix.states.row(i)));
        }
        // The prefix's best token is also scored in the whole vocabulary, where its
        // probability is no larger.
        let p_all = |i: usize, t: u32| {
            let mut spec = Speculation::default();
            let out = draft
                .speculate(
                    &DraftCache::default(),
                    &mut spec,
                    &[None],
                    f.slice(ndarray::s![i..i + 1, ..]),
                    &[i as u32 + 1],
                    Scoring::all(1500),
                )
                .unwrap();
            out.top[0].iter().find(|(u, _)| *u == t).unwrap().1
        };
        for i in 0..4 {
            let (t, p) = prefix.top[i][0];
            assert!(p_all(i, t) <= p + 1e-6);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (draft, _) = random_draft(dir.path(), 16, 40, false);
        let mut cache = DraftCache::default();
        assert!(
            draft
                .extend(&mut cache, rows(2, 8, 1).view(), &[1, 2], Scoring::all(2))
                .is_err()
        );
        assert!(
            draft
                .extend(&mut cache, rows(1, 16, 1).view(), &[40], Scoring::all(2))
                .is_err()
        );
        assert_eq!(cache.len(&draft), 0);
    }
}
