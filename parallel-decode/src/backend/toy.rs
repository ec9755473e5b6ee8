//! A deterministic toy language model that runs in-process, for tests of the decoding loop and
//! for measuring the loop's own host overhead.
//!
//! Its logits depend only on the last `window` tokens and a seed, so any two models built with
//! the same seed agree, and a second model with added noise makes a draft that agrees with the
//! target at a tunable rate. It keeps a real per-slot "KV cache" (the token at every position),
//! written by tree passes and moved by commits exactly as a device cache is, and computes each
//! node's logits from what its cache holds: a bookkeeping mistake in the engine changes the
//! output, so tests that compare outputs also check the bookkeeping.
//!
//! Its hidden state is the context window itself, and its "heads" roll the model forward
//! greedily from it, each candidate list corrupted with a set probability: heads of a chosen
//! accuracy.

use super::{CommitRow, LanguageModel, ModelInfo, TreeRow};
use crate::strategy::proposer::HeadCandidates;
use crate::{Error, Result};

/// Settings of a [`ToyModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct ToyConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Tokens of context the logits depend on.
    pub window: usize,
    /// Seed of the logit function (models with the same seed and no noise agree).
    pub seed: u64,
    /// Scale of the logits: larger is peakier.
    pub sharpness: f32,
    /// Amplitude of independent noise added to the logits (0 for a target).
    pub noise: f32,
    /// Seed of the noise.
    pub noise_seed: u64,
    /// KV slots and positions per slot.
    pub slots: usize,
    /// Positions per slot.
    pub max_len: usize,
    /// Largest tree per row.
    pub max_tree: usize,
    /// Heads, and the probability that a head's candidate list is replaced by junk.
    pub heads: usize,
    /// Probability that a head's list is corrupted.
    pub head_error: f64,
}

impl Default for ToyConfig {
    fn default() -> Self {
        ToyConfig {
            vocab: 50,
            window: 3,
            seed: 1,
            sharpness: 3.0,
            noise: 0.0,
            noise_seed: 2,
            slots: 4,
            max_len: 256,
            max_tree: 32,
            heads: 0,
            head_error: 0.0,
        }
    }
}

/// The toy model (see the module docs).
#[derive(Debug, Clone)]
pub struct ToyModel {
    config: ToyConfig,
    info: ModelInfo,
    /// The token at every committed or written position, per slot.
    cache: Vec<Vec<u32>>,
    /// Contexts (windows) of the last pass, per row and node.
    last: Vec<Vec<Vec<u32>>>,
    /// Passes run so far (prefills and tree passes).
    pub passes: u64,
}

fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}

fn unit(h: u64) -> f32 {
    (mix(h) >> 40) as f32 / (1u64 << 24) as f32
}

impl ToyModel {
    /// A model with the given settings.
    pub fn new(config: ToyConfig) -> Self {
        let info = ModelInfo {
            vocab: config.vocab,
            hidden: config.window,
            slots: config.slots,
            max_len: config.max_len,
            max_tree: config.max_tree,
            max_batch: config.slots,
            heads: config.heads,
            // A device whose cost grows a little with the tree, like the mock's.
            tree_cost: (0..config.max_tree)
                .map(|n| 1.0 + 0.02 * n as f32)
                .collect(),
            heads_cost: if config.heads > 0 { 0.1 } else { 0.0 },
        };
        ToyModel {
            cache: vec![Vec::new(); config.slots],
            last: Vec::new(),
            info,
            config,
            passes: 0,
        }
    }

    /// Logits after a context (only its last `window` tokens matter).
    pub fn logits_for(&self, context: &[u32]) -> Vec<f32> {
        let c = &self.config;
        let window = &context[context.len().saturating_sub(c.window)..];
        let h = window.iter().fold(mix(c.seed), |h, &t| mix(h ^ t as u64));
        (0..c.vocab as u64)
            .map(|t| {
                let base = unit(h ^ mix(t + 1)) * 2.0 - 1.0;
                let noise = if c.noise > 0.0 {
                    (unit(h ^ mix(t + 7) ^ mix(c.noise_seed)) * 2.0 - 1.0) * c.noise
                } else {
                    0.0
                };
                (base + noise) * c.sharpness
            })
            .collect()
    }

    /// The greedy next token after a context.
    pub fn greedy_after(&self, context: &[u32]) -> u32 {
        crate::sampling::argmax(&self.logits_for(context)) as u32
    }

    fn window_of(&self, context: &[u32]) -> Vec<u32> {
        context[context.len().saturating_sub(self.config.window)..].to_vec()
    }

    /// The context window of node `node` of row `row` in the last pass.
    fn last_context(&self, row: usize, node: usize) -> Result<&[u32]> {
        self.last
            .get(row)
            .and_then(|r| r.get(node))
            .map(Vec::as_slice)
            .ok_or_else(|| Error::Setting {
                field: "node",
                message: format!("no node {node} in row {row}"),
            })
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot >= self.config.slots {
            return Err(Error::Setting {
                field: "slot",
                message: format!("slot {slot} of {}", self.config.slots),
            });
        }
        Ok(())
    }
}

impl LanguageModel for ToyModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<u32> {
        self.check_slot(slot)?;
        if tokens.len() > self.config.max_len {
            return Err(Error::Setting {
                field: "prompt",
                message: "longer than the context".into(),
            });
        }
        self.passes += 1;
        self.cache[slot] = tokens.to_vec();
        self.last = vec![vec![self.window_of(tokens)]];
        Ok(self.greedy_after(tokens))
    }

    fn verify(&mut self, rows: &[TreeRow<'_>]) -> Result<Vec<Vec<u32>>> {
        self.passes += 1;
        let mut argmax = Vec::with_capacity(rows.len());
        self.last.clear();
        for row in rows {
            self.check_slot(row.slot)?;
            let n = row.tree.len();
            if n > self.config.max_tree || row.cache_len + n > self.config.max_len {
                return Err(Error::Setting {
                    field: "tree",
                    message: format!("{n} nodes do not fit"),
                });
            }
            // Write the nodes at cache_len + node index, as a device pass does.
            let cache = &mut self.cache[row.slot];
            cache.truncate(row.cache_len);
            cache.extend_from_slice(row.tree.tokens());
            // Each node sees the committed cache and its own ancestors (read back from the
            // positions they were written to).
            let mut contexts = Vec::with_capacity(n);
            for node in 0..n {
                let mut ctx: Vec<u32> = self.cache[row.slot][..row.cache_len].to_vec();
                ctx.extend(
                    row.tree
                        .path_to(node)
                        .iter()
                        .map(|&j| self.cache[row.slot][row.cache_len + j]),
                );
                contexts.push(self.window_of(&ctx));
            }
            argmax.push(contexts.iter().map(|c| self.greedy_after(c)).collect());
            self.last.push(contexts);
        }
        Ok(argmax)
    }

    fn logits(&mut self, row: usize, node: usize, out: &mut Vec<f32>) -> Result<()> {
        *out = self.logits_for(self.last_context(row, node)?);
        Ok(())
    }

    fn hidden(&mut self, row: usize, node: usize, out: &mut Vec<f32>) -> Result<()> {
        // The context window's tokens, zeros first while the context is shorter, so that
        // every state is `hidden` wide.
        let context = self.last_context(row, node)?;
        out.clear();
        out.resize(self.info.hidden.saturating_sub(context.len()), 0.0);
        out.extend(context.iter().map(|&t| t as f32));
        Ok(())
    }

    fn commit(&mut self, rows: &[CommitRow<'_>]) -> Result<()> {
        for row in rows {
            self.check_slot(row.slot)?;
            let cache = &mut self.cache[row.slot];
            for (k, &src) in row.accepted.iter().enumerate() {
                let from = row.cache_len + src;
                if from >= cache.len() {
                    return Err(Error::Setting {
                        field: "commit",
                        message: format!("node {src} was never written"),
                    });
                }
                cache[row.cache_len + k] = cache[from];
            }
        }
        Ok(())
    }

    fn heads(&mut self, hidden: &[f32], _next: u32, top_k: &[usize]) -> Result<HeadCandidates> {
        if self.config.heads == 0 {
            return Err(Error::Setting {
                field: "heads",
                message: "the toy model has no heads".into(),
            });
        }
        // The hidden state is the window after the last accepted token; the target's next
        // token follows it, and head h predicts the token h + 1 places after that.
        let mut ctx: Vec<u32> = hidden.iter().map(|&t| t as u32).collect();
        let salt = ctx.iter().fold(mix(99), |h, &t| mix(h ^ t as u64));
        ctx.push(self.greedy_after(&ctx));
        let mut heads = Vec::with_capacity(self.config.heads);
        let mut probs = Vec::with_capacity(self.config.heads);
        for h in 0..self.config.heads {
            let truth = self.greedy_after(&ctx);
            let k = top_k.get(h).copied().unwrap_or(1).max(1);
            let corrupted = (unit(salt ^ mix(h as u64 + 1)) as f64) < self.config.head_error;
            let first = if corrupted {
                (truth + 1) % self.config.vocab as u32
            } else {
                truth
            };
            let list: Vec<u32> = (0..k as u32)
                .map(|i| (first + i * 7) % self.config.vocab as u32)
                .collect();
            // Confidence that says nothing about this guess: the error rate's complement for
            // the first candidate, the rest shared out among the others.
            let sure = 1.0 - self.config.head_error as f32;
            probs.push(
                (0..k)
                    .map(|i| {
                        if i == 0 {
                            sure
                        } else {
                            (1.0 - sure) / k as f32
                        }
                    })
                    .collect(),
            );
            heads.push(list);
            ctx.push(truth);
        }
        Ok(HeadCandidates { heads, probs })
    }
}
