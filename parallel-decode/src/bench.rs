//! Measuring decoding: strategies over a prompt set, the device's cost of a tree pass by
//! width and of a run of the heads, and the machine's memory bandwidth (the bound a
//! memory-bound decode step approaches).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::Result;
use crate::backend::LanguageModel;
use crate::engine::{GenerateConfig, Generation, generate};
use crate::strategy::proposer::Proposer;
use crate::strategy::tree::TokenTree;

/// Aggregate figures of one strategy over a prompt set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    /// The strategy's name.
    pub strategy: String,
    /// Prompts run.
    pub prompts: usize,
    /// Tokens generated in all.
    pub tokens: usize,
    /// Generated tokens per second of generation time (prefill included).
    pub tokens_per_s: f64,
    /// Tokens per second of the decode phase: the tokens after each answer's first over the
    /// time after it. Prefill (the first token) is the same work for every strategy;
    /// this is the part parallel decoding speeds up.
    pub decode_tokens_per_s: f64,
    /// Mean time to the first token.
    pub ttft_ms: f64,
    /// Mean time per output token after the first.
    pub tpot_ms: f64,
    /// Tokens produced per target pass (tau), stop tokens included (see
    /// [`crate::engine::Generation::tau`]).
    pub tau: f64,
    /// Target passes in all (prefills included).
    pub target_passes: u64,
    /// Acceptance rate at each tree depth (accepted / attempted).
    pub acceptance_per_depth: Vec<f64>,
    /// Tokens per second over the autoregressive baseline's in the same run.
    pub speedup_vs_ar: Option<f64>,
    /// Decode-phase tokens per second over the autoregressive baseline's in the same run.
    pub decode_speedup_vs_ar: Option<f64>,
    /// Whether every output equals the autoregressive one (meaningful for greedy decoding).
    pub identical_to_ar: Option<bool>,
    /// Modeled, not measured: the speed-up over autoregressive decoding on a device where a
    /// pass costs the same for any tree up to the verify bucket and the heads cost nothing
    /// (what a NeuronCore's cost curve looks like), i.e. the ratio of the two taus.
    pub modeled_flat_speedup: Option<f64>,
    /// Modeled, not measured: the decode-phase speed-up over autoregressive decoding on the
    /// cost curve the strategies sized their trees by (measured on this device and kept up to
    /// date as the passes run, or a given table, or flat): tokens after the first per unit of
    /// [`crate::engine::Generation::modeled_cost`], over the baseline's. On the measured
    /// curve it is what the decode-phase speed-up would be without host overhead.
    pub modeled_speedup: Option<f64>,
    /// Mean host time the proposer spent per decode pass, in milliseconds
    /// ([`crate::engine::Generation::proposer_time`]): what the modeled speed-ups leave out
    /// (a feature draft run on the host, for one).
    pub proposer_ms_per_pass: f64,
}

/// Running totals of one strategy's generations.
#[derive(Default)]
struct Tally {
    prompts: usize,
    tokens: usize,
    /// Tokens the passes produced: `tokens` and the stop tokens that ended answers.
    emitted: usize,
    passes: u64,
    total: Duration,
    ttft: Duration,
    tpot: Duration,
    decode_tokens: usize,
    decode_time: Duration,
    /// Tokens the decode passes produced (stop tokens included) and their modeled cost.
    decode_emitted: usize,
    modeled_cost: f64,
    proposer_time: Duration,
    /// Decode passes (prefills excluded).
    decode_passes: u64,
    /// (attempted, accepted) per tree depth.
    depths: Vec<(u64, u64)>,
    outputs: Vec<Vec<u32>>,
}

impl Tally {
    fn add(&mut self, g: Generation) {
        self.prompts += 1;
        self.tokens += g.tokens.len();
        self.emitted += g.emitted_tokens();
        self.passes += g.target_passes;
        self.total += g.total_time;
        self.ttft += g.time_to_first_token;
        self.tpot += g.time_per_output_token();
        self.decode_tokens += g.tokens.len().saturating_sub(1);
        self.decode_time += g.total_time.saturating_sub(g.time_to_first_token);
        self.decode_emitted += g.emitted_tokens().saturating_sub(1);
        self.modeled_cost += g.modeled_cost;
        self.proposer_time += g.proposer_time;
        self.decode_passes += g.target_passes.saturating_sub(1);
        for (d, a) in g.depth_acceptance.iter().enumerate() {
            if self.depths.len() <= d {
                self.depths.resize(d + 1, (0, 0));
            }
            self.depths[d].0 += a.attempted;
            self.depths[d].1 += a.accepted;
        }
        self.outputs.push(g.tokens);
    }

    fn report(&self, strategy: &str) -> StrategyReport {
        let n = self.prompts.max(1) as f64;
        let per_s = |count: usize, time: Duration| {
            if time.is_zero() {
                0.0
            } else {
                count as f64 / time.as_secs_f64()
            }
        };
        StrategyReport {
            strategy: strategy.to_string(),
            prompts: self.prompts,
            tokens: self.tokens,
            tokens_per_s: per_s(self.tokens, self.total),
            decode_tokens_per_s: per_s(self.decode_tokens, self.decode_time),
            ttft_ms: self.ttft.as_secs_f64() * 1e3 / n,
            tpot_ms: self.tpot.as_secs_f64() * 1e3 / n,
            tau: if self.passes == 0 {
                0.0
            } else {
                self.emitted as f64 / self.passes as f64
            },
            target_passes: self.passes,
            acceptance_per_depth: self
                .depths
                .iter()
                .map(|&(t, a)| if t == 0 { 0.0 } else { a as f64 / t as f64 })
                .collect(),
            speedup_vs_ar: None,
            decode_speedup_vs_ar: None,
            identical_to_ar: None,
            modeled_flat_speedup: None,
            modeled_speedup: None,
            proposer_ms_per_pass: if self.decode_passes == 0 {
                0.0
            } else {
                self.proposer_time.as_secs_f64() * 1e3 / self.decode_passes as f64
            },
        }
    }

    /// Tokens the decode passes produced per unit of their modeled cost.
    fn modeled_rate(&self) -> f64 {
        if self.modeled_cost > 0.0 {
            self.decode_emitted as f64 / self.modeled_cost
        } else {
            0.0
        }
    }
}

/// Runs every proposer over `prompts` with `config` and reports each, the first being the
/// baseline (autoregressive decoding) of the others' speed-ups and output comparison.
///
/// The runs are interleaved: every strategy decodes a prompt before any decodes the next, so
/// that a change in the machine's load during the run weighs on all of them alike (on a
/// shared machine, running one strategy over the whole set and then the next measured the
/// load as much as the strategies). `each(prompt, strategy)` is called after each
/// generation, for progress.
///
/// # Errors
/// As [`generate`].
pub fn run_strategies(
    model: &mut dyn LanguageModel,
    proposers: &mut [&mut dyn Proposer],
    prompts: &[Vec<u32>],
    config: &GenerateConfig,
    mut each: impl FnMut(usize, usize),
) -> Result<Vec<StrategyReport>> {
    let mut tallies: Vec<Tally> = proposers.iter().map(|_| Tally::default()).collect();
    for (i, prompt) in prompts.iter().enumerate() {
        for (s, proposer) in proposers.iter_mut().enumerate() {
            let g = generate(
                model,
                &mut **proposer,
                prompt,
                config,
                &mut |_: &[u32]| true,
            )?;
            tallies[s].add(g);
            each(i, s);
        }
    }
    let mut reports: Vec<StrategyReport> = tallies
        .iter()
        .zip(proposers.iter())
        .map(|(t, p)| t.report(p.name()))
        .collect();
    if let Some((base, base_tally)) = reports.first().cloned().zip(tallies.first()) {
        for (r, t) in reports.iter_mut().zip(&tallies) {
            r.speedup_vs_ar = Some(r.tokens_per_s / base.tokens_per_s);
            r.decode_speedup_vs_ar = Some(r.decode_tokens_per_s / base.decode_tokens_per_s);
            r.identical_to_ar = Some(t.outputs == base_tally.outputs);
            r.modeled_flat_speedup = Some(r.tau / base.tau);
            r.modeled_speedup = Some(t.modeled_rate() / base_tally.modeled_rate());
        }
    }
    Ok(reports)
}

/// The time of one tree pass of each width in `widths` (a chain of that many tokens after
/// `context` cached positions in slot 0), the best of `repeats` runs.
///
/// The repeats go round all the widths in turn rather than timing one width `repeats` times
/// and then the next: a burst of load on a shared machine then spoils one run of several
/// widths, not every run of one, and the best of each survives.
///
/// # Errors
/// As [`LanguageModel::verify`].
pub fn cost_curve(
    model: &mut dyn LanguageModel,
    widths: &[usize],
    context: usize,
    repeats: usize,
) -> Result<Vec<(usize, Duration)>> {
    let prompt: Vec<u32> = (0..context.max(1)).map(|i| (i % 100 + 10) as u32).collect();
    model.prefill(0, &prompt)?;
    let trees: Vec<TokenTree> = widths
        .iter()
        .map(|&w| {
            let mut tree = TokenTree::new(7);
            for i in 1..w {
                tree.push(i - 1, (i % 50 + 20) as u32);
            }
            tree
        })
        .collect();
    let mut best = vec![Duration::MAX; widths.len()];
    for _ in 0..repeats.max(1) {
        for (tree, best) in trees.iter().zip(&mut best) {
            let start = Instant::now();
            model.verify(&[crate::backend::TreeRow {
                slot: 0,
                cache_len: prompt.len(),
                tree,
            }])?;
            *best = (*best).min(start.elapsed());
        }
    }
    Ok(widths.iter().copied().zip(best).collect())
}

/// The time of one run of the model's heads (`top_k` candidates from each) on the hidden state
/// after the first node of the last pass, the best of `repeats` runs; `None` for a model
/// without heads. Call it after a pass, [`cost_curve`] for instance.
///
/// # Errors
/// As [`LanguageModel::hidden`] and [`LanguageModel::heads`].
pub fn heads_time(
    model: &mut dyn LanguageModel,
    top_k: usize,
    repeats: usize,
) -> Result<Option<Duration>> {
    let heads = model.info().heads;
    if heads == 0 {
        return Ok(None);
    }
    let mut hidden = Vec::new();
    model.hidden(0, 0, &mut hidden)?;
    let top_k = vec![top_k; heads];
    let mut best = Duration::MAX;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        model.heads(&hidden, 0, &top_k)?;
        best = best.min(start.elapsed());
    }
    Ok(Some(best))
}

/// Read bandwidth of this machine's memory in bytes per second: the best of a few passes
/// summing `bytes` of memory with every thread of the pool (the way the kernels read weights).
pub fn memory_bandwidth(bytes: usize) -> f64 {
    use rayon::prelude::*;
    let words = (bytes / 8).max(1 << 16);
    let data: Vec<u64> = (0..words as u64).collect();
    let mut best = f64::MAX;
    let mut sink = 0u64;
    for _ in 0..5 {
        let start = Instant::now();
        let sum: u64 = data
            .par_chunks(1 << 16)
            .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
            .reduce(|| 0, u64::wrapping_add);
        best = best.min(start.elapsed().as_secs_f64());
        sink = sink.wrapping_add(sum);
    }
    // Keeps the sums from being optimised away.
    std::hint::black_box(sink);
    (words * 8) as f64 / best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::toy::{ToyConfig, ToyModel};
    use crate::strategy::medusa::{Medusa, MedusaTree};
    use crate::strategy::prompt_lookup::{PromptLookup, PromptLookupConfig};
    use crate::strategy::proposer::Autoregressive;

    #[test]
    fn reports_add_up() {
        let mut m = ToyModel::new(ToyConfig {
            heads: 3,
            ..ToyConfig::default()
        });
        let prompts = vec![vec![1, 2, 3], vec![4, 5]];
        let config = GenerateConfig {
            max_tokens: 10,
            ..GenerateConfig::default()
        };
        let mut ar = Autoregressive;
        let mut pl = PromptLookup::new(PromptLookupConfig::default());
        let mut medusa = Medusa::new(MedusaTree::default_for(3));
        let mut order = Vec::new();
        let reports = run_strategies(
            &mut m,
            &mut [&mut ar, &mut pl, &mut medusa],
            &prompts,
            &config,
            |prompt, strategy| order.push((prompt, strategy)),
        )
        .unwrap();
        // Interleaved: every strategy decodes a prompt before the next one.
        assert_eq!(order, vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]);
        let (ar, pl, medusa) = (&reports[0], &reports[1], &reports[2]);
        assert_eq!((ar.prompts, ar.tokens, ar.target_passes), (2, 20, 20));
        assert!((ar.tau - 1.0).abs() < 1e-9);
        assert!(ar.decode_tokens_per_s.is_finite() && ar.decode_tokens_per_s > 0.0);
        assert_eq!(ar.speedup_vs_ar, Some(1.0));
        assert_eq!(ar.modeled_speedup, Some(1.0));
        assert_eq!(pl.identical_to_ar, Some(true));
        assert_eq!(medusa.identical_to_ar, Some(true));
        assert_eq!(pl.tokens, 20);
        let ratio = pl.tokens_per_s / ar.tokens_per_s;
        assert!((pl.speedup_vs_ar.unwrap() - ratio).abs() < 1e-12);
        assert!((medusa.modeled_flat_speedup.unwrap() - medusa.tau).abs() < 1e-12);
        // The heads' passes cost more than one node and a run of the heads each, so the
        // modeled speed-up lies between one and the decode passes' tau (no stop tokens here).
        let decode_tau = (medusa.tokens - medusa.prompts) as f64
            / (medusa.target_passes as usize - medusa.prompts) as f64;
        let modeled = medusa.modeled_speedup.unwrap();
        assert!(
            modeled > 1.0 && modeled < decode_tau,
            "{modeled} against {decode_tau}"
        );
    }

    #[test]
    fn cost_curve_covers_every_width() {
        let mut m = ToyModel::new(ToyConfig::default());
        let curve = cost_curve(&mut m, &[1, 4, 8], 5, 2).unwrap();
        assert_eq!(curve.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 4, 8]);
    }

    #[test]
    fn heads_are_timed_only_when_the_model_has_them() {
        let mut plain = ToyModel::new(ToyConfig {
            heads: 0,
            ..ToyConfig::default()
        });
        cost_curve(&mut plain, &[1], 5, 1).unwrap();
        assert_eq!(heads_time(&mut plain, 4, 2).unwrap(), None);
        let mut with_heads = ToyModel::new(ToyConfig {
            heads: 3,
            ..ToyConfig::default()
        });
        cost_curve(&mut with_heads, &[1], 5, 1).unwrap();
        assert!(heads_time(&mut with_heads, 4, 2).unwrap().is_some());
    }

    #[test]
    fn bandwidth_is_positive() {
        assert!(memory_bandwidth(1 << 20) > 0.0);
    }
}
