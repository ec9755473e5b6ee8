//! The decoding loop: prefill, then propose -> verify -> commit -> emit until a stop.
//!
//! One loop serves every strategy: a proposer only proposes, the verification rule decides,
//! and the KV bookkeeping (each slot's committed length and the commit of an accepted tree
//! path) lives here. Several sequences advance together: one target pass verifies every active
//! sequence's tree, each with its own accepted length.

use std::time::{Duration, Instant};

use crate::backend::{CommitRow, LanguageModel, ModelInfo, TreeRow};
use crate::sampling::{Sampler, SamplingConfig};
use crate::strategy::proposer::{HeadCandidates, Outcome, Proposal, ProposeContext, Proposer};
use crate::strategy::verify::{self, Proposed, TypicalAcceptance, Verdict};
use crate::{Error, Result};

/// How candidates are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Verification {
    /// Exact: greedy output equals plain greedy decoding; sampled output has the target's
    /// distribution.
    #[default]
    Exact,
    /// Medusa's typical acceptance: faster, **not exact**.
    Typical(TypicalAcceptance),
}

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: SamplingConfig,
    /// Seed of the sampler: the same seed with a proposer in the same state gives the same
    /// output. (Proposers that learn, such as prompt lookup and Medusa, carry their acceptance
    /// estimates from one sequence to the next; that changes their trees, hence which random
    /// draws are made, though never the output's distribution.)
    pub seed: u64,
    /// Tokens that end the generation (not emitted).
    pub stop_tokens: Vec<u32>,
    /// How candidates are accepted.
    pub verification: Verification,
    /// Most tree nodes per pass, the root included (the model's largest verify bucket when
    /// `None`).
    pub max_tree: Option<usize>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_tokens: 256,
            sampling: SamplingConfig::greedy(),
            seed: 0,
            stop_tokens: Vec::new(),
            verification: Verification::Exact,
            max_tree: None,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop token was generated.
    StopToken,
    /// The caller's callback asked to stop.
    Caller,
    /// The KV slot is full.
    ContextFull,
}

/// Acceptance at one tree depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepthAcceptance {
    /// Passes in which a candidate at this depth could have been accepted.
    pub attempted: u64,
    /// Passes in which one was.
    pub accepted: u64,
}

/// What a generation produced and how it went.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated tokens (stop token excluded).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub stop: StopReason,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Target passes: the prefill and every tree pass.
    pub target_passes: u64,
    /// Candidate tokens proposed in all passes.
    pub proposed: u64,
    /// Acceptance per depth (index 0 is depth 1).
    pub depth_acceptance: Vec<DepthAcceptance>,
    /// Modeled cost of the passes after the prefill, in one-node passes: each pass's cost by
    /// its node count, plus the run of the heads it used, by the costs the proposers were
    /// given when they proposed it ([`ModelInfo::tree_cost`], [`ModelInfo::heads_cost`]:
    /// measured on the device, a table, or flat). Autoregressive decoding costs exactly one
    /// per pass, so the tokens after the first over this is a modeled decode-phase speed-up
    /// on that cost curve (a pass is charged as if its row ran alone).
    pub modeled_cost: f64,
    /// Host time the proposer spent after the prefill: proposing, and taking in the
    /// target's hidden states (a feature draft runs its layer then); not in `modeled_cost`.
    pub proposer_time: Duration,
    /// Time to the first generated token.
    pub time_to_first_token: Duration,
    /// Time of the whole generation.
    pub total_time: Duration,
}

impl Generation {
    /// Tokens the target passes produced: the generated tokens and the stop token, when one
    /// ended the generation (a pass produced it too, though it is not part of the answer).
    pub fn emitted_tokens(&self) -> usize {
        self.tokens.len() + usize::from(self.stop == StopReason::StopToken)
    }

    /// Mean tokens produced per target pass (tau), the stop token included: an answer that
    /// ends with one gives autoregressive decoding a tau of exactly 1, as it should.
    pub fn tau(&self) -> f64 {
        if self.target_passes == 0 {
            0.0
        } else {
            self.emitted_tokens() as f64 / self.target_passes as f64
        }
    }

    /// Generated tokens per second over the whole generation.
    pub fn tokens_per_second(&self) -> f64 {
        let s = self.total_time.as_secs_f64();
        if s > 0.0 {
            self.tokens.len() as f64 / s
        } else {
            0.0
        }
    }

    /// Mean time per output token after the first.
    pub fn time_per_output_token(&self) -> Duration {
        let n = self.tokens.len().saturating_sub(1) as u32;
        if n == 0 {
            Duration::ZERO
        } else {
            (self.total_time.saturating_sub(self.time_to_first_token)) / n
        }
    }
}

/// Receives newly emitted tokens; returning `false` stops the request.
pub type TokenSink<'a> = &'a mut dyn FnMut(&[u32]) -> bool;

/// One request of a batch.
pub struct Request<'a> {
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// The KV slot to use.
    pub slot: usize,
    /// Where candidates come from.
    pub proposer: &'a mut dyn Proposer,
    /// Called with newly emitted tokens; returning `false` stops this request.
    pub on_tokens: TokenSink<'a>,
}

/// Generates for one prompt in slot 0.
///
/// # Errors
/// When the model fails, or the prompt does not fit.
pub fn generate(
    model: &mut dyn LanguageModel,
    proposer: &mut dyn Proposer,
    prompt: &[u32],
    config: &GenerateConfig,
    on_tokens: &mut dyn FnMut(&[u32]) -> bool,
) -> Result<Generation> {
    let mut out = generate_batch(
        model,
        vec![Request {
            prompt: prompt.to_vec(),
            slot: 0,
            proposer,
            on_tokens,
        }],
        config,
    )?;
    out.pop().ok_or_else(|| Error::Setting {
        field: "batch",
        message: "no result".into(),
    })
}

struct Sequence<'a> {
    request: Request<'a>,
    tokens: Vec<u32>,
    generated: Vec<u32>,
    cache_len: usize,
    sampler: Sampler,
    heads: Option<HeadCandidates>,
    stop: Option<StopReason>,
    stats: Generation,
    started: Instant,
}

/// Generates for several prompts together: one target pass verifies every active sequence.
///
/// # Errors
/// When the model fails or a request does not fit (bad slot, prompt too long, batch larger
/// than the model takes). A failure fails the whole batch.
pub fn generate_batch(
    model: &mut dyn LanguageModel,
    requests: Vec<Request<'_>>,
    config: &GenerateConfig,
) -> Result<Vec<Generation>> {
    config.sampling.validate().map_err(|e| Error::Setting {
        field: "sampling",
        message: e.0,
    })?;
    let info = model.info().clone();
    if requests.len() > info.max_batch {
        return Err(Error::Setting {
            field: "batch",
            message: format!(
                "{} requests, the model takes at most {} per pass",
                requests.len(),
                info.max_batch
            ),
        });
    }
    let tree_cap = config
        .max_tree
        .unwrap_or(info.max_tree)
        .clamp(1, info.max_tree);
    let mut seqs: Vec<Sequence<'_>> = Vec::with_capacity(requests.len());
    for (i, request) in requests.into_iter().enumerate() {
        if request.slot >= info.slots
            || seqs
                .iter()
                .any(|s: &Sequence<'_>| s.request.slot == request.slot)
        {
            return Err(Error::Setting {
                field: "slot",
                message: format!(
                    "request {i}: slot {} is out of range or taken",
                    request.slot
                ),
            });
        }
        if request.prompt.is_empty() {
            return Err(Error::Setting {
                field: "prompt",
                message: format!("request {i}: the prompt is empty"),
            });
        }
        let prompt_tokens = request.prompt.len();
        seqs.push(Sequence {
            tokens: request.prompt.clone(),
            request,
            generated: Vec::new(),
            cache_len: 0,
            sampler: Sampler::new(config.seed.wrapping_add(i as u64)),
            heads: None,
            stop: None,
            stats: Generation {
                tokens: Vec::new(),
                stop: StopReason::MaxTokens,
                prompt_tokens,
                target_passes: 0,
                proposed: 0,
                depth_acceptance: Vec::new(),
                modeled_cost: 0.0,
                proposer_time: Duration::ZERO,
                time_to_first_token: Duration::ZERO,
                total_time: Duration::ZERO,
            },
            started: Instant::now(),
        });
    }
    for seq in &mut seqs {
        prefill(model, seq, config)?;
    }
    let mut proposals: Vec<Option<Proposal>> = Vec::new();
    loop {
        proposals.clear();
        for seq in &mut seqs {
            if seq.stop.is_none() && seq.cache_len >= info.max_len {
                seq.stop = Some(StopReason::ContextFull);
            }
            proposals.push(if seq.stop.is_none() {
                // The model's info fresh each pass: its costs follow the passes that ran.
                let info = model.info();
                let started = Instant::now();
                let proposal = propose(seq, config, tree_cap, info)?;
                seq.stats.proposer_time += started.elapsed();
                let heads = if seq.heads.is_some() {
                    info.heads_cost
                } else {
                    0.0
                };
                seq.stats.modeled_cost += f64::from(info.cost_of(proposal.tree.len()) + heads);
                Some(proposal)
            } else {
                None
            });
        }
        let active: Vec<usize> = (0..seqs.len())
            .filter(|&i| proposals[i].is_some())
            .collect();
        if active.is_empty() {
            break;
        }
        let rows: Vec<TreeRow<'_>> = active
            .iter()
            .filter_map(|&i| {
                let tree = &proposals[i].as_ref()?.tree;
                Some(TreeRow {
                    slot: seqs[i].request.slot,
                    cache_len: seqs[i].cache_len,
                    tree,
                })
            })
            .collect();
        let argmax = model.verify(&rows)?;
        let mut verdicts = Vec::with_capacity(active.len());
        for (row, &i) in active.iter().enumerate() {
            let proposal = proposals[i].as_ref().ok_or_else(|| Error::Setting {
                field: "engine",
                message: "lost proposal".into(),
            })?;
            verdicts.push(decide(
                model,
                &mut seqs[i],
                proposal,
                row,
                &argmax[row],
                config,
            )?);
        }
        let commits: Vec<CommitRow<'_>> = active
            .iter()
            .zip(&verdicts)
            .map(|(&i, v)| CommitRow {
                slot: seqs[i].request.slot,
                cache_len: seqs[i].cache_len,
                accepted: &v.accepted,
            })
            .filter(|c| !c.is_contiguous())
            .collect();
        if !commits.is_empty() {
            model.commit(&commits)?;
        }
        for (row, (&i, verdict)) in active.iter().zip(&verdicts).enumerate() {
            let proposal = proposals[i].as_ref().ok_or_else(|| Error::Setting {
                field: "engine",
                message: "lost proposal".into(),
            })?;
            let seq = &mut seqs[i];
            seq.cache_len += verdict.accepted.len();
            seq.stats.target_passes += 1;
            seq.stats.proposed += (proposal.tree.len() - 1) as u64;
            record_depths(&mut seq.stats.depth_acceptance, proposal, verdict);
            let mut emitted: Vec<u32> = verdict.accepted[1..]
                .iter()
                .map(|&n| proposal.tree.tokens()[n])
                .collect();
            emitted.push(verdict.next_token);
            seq.request
                .proposer
                .observe(&Outcome { proposal, verdict })?;
            emit(seq, &emitted, config);
            if seq.stop.is_none() && seq.request.proposer.wants_hidden() {
                // Each accepted node's state, with what the target chose from it: the next
                // accepted candidate, and after the last one the new pending token.
                let states = verdict
                    .accepted
                    .iter()
                    .map(|&node| {
                        let mut hidden = Vec::new();
                        model.hidden(row, node, &mut hidden).map(|()| hidden)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let started = Instant::now();
                seq.request.proposer.hidden_states(&states, &emitted)?;
                seq.stats.proposer_time += started.elapsed();
            }
            // Candidates for the next proposal, or none: candidates from an earlier position
            // would be proposed as if they were fresh and almost never accepted.
            seq.heads = if seq.stop.is_none() && seq.request.proposer.wants_heads() {
                let last = *verdict.accepted.last().unwrap_or(&0);
                let next = verdict.next_token;
                Some(run_heads(model, row, last, next, seq.request.proposer)?)
            } else {
                None
            };
        }
    }
    Ok(seqs
        .into_iter()
        .map(|mut s| {
            s.stats.tokens = s.generated;
            s.stats.stop = s.stop.unwrap_or(StopReason::MaxTokens);
            s.stats.total_time = s.started.elapsed();
            s.stats
        })
        .collect())
}

fn prefill(
    model: &mut dyn LanguageModel,
    seq: &mut Sequence<'_>,
    config: &GenerateConfig,
) -> Result<()> {
    let info = model.info().clone();
    if seq.tokens.len() >= info.max_len {
        return Err(Error::Setting {
            field: "prompt",
            message: format!(
                "{} prompt tokens leave no room in a context of {}",
                seq.tokens.len(),
                info.max_len
            ),
        });
    }
    let argmax = model.prefill(seq.request.slot, &seq.tokens)?;
    seq.stats.target_passes += 1;
    let first = if config.sampling.is_greedy() {
        argmax
    } else {
        let mut logits = Vec::new();
        model.logits(0, 0, &mut logits)?;
        let mut p = Vec::new();
        config.sampling.distribution(&logits, &mut p);
        seq.sampler.draw(&p).unwrap_or(argmax as usize) as u32
    };
    seq.cache_len = seq.tokens.len();
    seq.request.proposer.start(&seq.tokens)?;
    if seq.request.proposer.wants_hidden() {
        let mut hidden = Vec::new();
        model.hidden(0, 0, &mut hidden)?;
        seq.request.proposer.hidden_states(&[hidden], &[first])?;
    }
    if seq.request.proposer.wants_heads() {
        seq.heads = Some(run_heads(model, 0, 0, first, seq.request.proposer)?);
    }
    emit(seq, &[first], config);
    seq.stats.time_to_first_token = seq.started.elapsed();
    Ok(())
}

/// The heads' candidates from the hidden state of tree node `node` of row `row`, from which
/// the model chose `next` (the token just emitted).
fn run_heads(
    model: &mut dyn LanguageModel,
    row: usize,
    node: usize,
    next: u32,
    proposer: &dyn Proposer,
) -> Result<HeadCandidates> {
    let info = model.info();
    if info.heads == 0 {
        return Err(Error::Setting {
            field: "strategy",
            message: format!("{} needs a model with heads", proposer.name()),
        });
    }
    let heads = info.heads;
    let mut hidden = Vec::new();
    model.hidden(row, node, &mut hidden)?;
    model.heads(&hidden, next, &vec![HEAD_TOP_K; heads])
}

/// Candidates each head returns; enough for any tree the tuner produces.
const HEAD_TOP_K: usize = 10;

fn propose(
    seq: &mut Sequence<'_>,
    config: &GenerateConfig,
    tree_cap: usize,
    info: &ModelInfo,
) -> Result<Proposal> {
    let room = info.max_len - seq.cache_len;
    let remaining = config.max_tokens - seq.generated.len();
    // A tree of n nodes emits at most n tokens; it also needs n free positions.
    let max_nodes = tree_cap.min(room).min(remaining).max(1);
    let ctx = ProposeContext {
        tokens: &seq.tokens,
        max_nodes,
        heads: seq.heads.as_ref(),
        tree_cost: &info.tree_cost,
        heads_cost: info.heads_cost,
    };
    let proposal = seq.request.proposer.propose(&ctx)?;
    if proposal.tree.len() > max_nodes {
        return Err(Error::Setting {
            field: "proposal",
            message: format!(
                "{} proposed {} nodes, the budget was {max_nodes}",
                seq.request.proposer.name(),
                proposal.tree.len()
            ),
        });
    }
    let chain = proposal.tree.len() == proposal.tree.max_depth() + 1;
    if proposal
        .draft
        .as_ref()
        .is_some_and(|d| !chain || d.len() < proposal.tree.max_depth())
    {
        return Err(Error::Setting {
            field: "proposal",
            message: format!(
                "{} gave draft distributions for a tree that is not a chain",
                seq.request.proposer.name()
            ),
        });
    }
    Ok(proposal)
}

fn decide(
    model: &mut dyn LanguageModel,
    seq: &mut Sequence<'_>,
    proposal: &Proposal,
    row: usize,
    argmax: &[u32],
    config: &GenerateConfig,
) -> Result<Verdict> {
    let tree = &proposal.tree;
    if config.sampling.is_greedy() && config.verification == Verification::Exact {
        return Ok(verify::greedy(tree, argmax));
    }
    let sampling = config.sampling;
    let mut logits = Vec::new();
    let mut target = |node: usize| -> Result<Vec<f32>> {
        model.logits(row, node, &mut logits)?;
        let mut p = Vec::new();
        sampling.distribution(&logits, &mut p);
        Ok(p)
    };
    match config.verification {
        Verification::Exact => {
            let proposed = |child: usize| match &proposal.draft {
                Some(q) => Proposed::Drawn(&q[tree.depth(child) - 1]),
                None => Proposed::Deterministic,
            };
            verify::sample(tree, &mut target, &proposed, &mut seq.sampler)
        }
        Verification::Typical(t) => verify::typical(tree, &mut target, t, &mut seq.sampler),
    }
}

fn record_depths(depths: &mut Vec<DepthAcceptance>, proposal: &Proposal, verdict: &Verdict) {
    let tree = &proposal.tree;
    for d in 1..=tree.max_depth() {
        // A candidate at depth d could be accepted only if the path reached depth d - 1 at a
        // node that has children.
        let Some(&parent) = verdict.accepted.get(d - 1) else {
            break;
        };
        if tree.children(parent).is_empty() {
            break;
        }
        if depths.len() < d {
            depths.resize(d, DepthAcceptance::default());
        }
        depths[d - 1].attempted += 1;
        if verdict.accepted.len() > d {
            depths[d - 1].accepted += 1;
        }
    }
}

/// Appends emitted tokens up to a stop token or the budget, and tells the caller.
fn emit(seq: &mut Sequence<'_>, tokens: &[u32], config: &GenerateConfig) {
    let mut take = Vec::with_capacity(tokens.len());
    for &t in tokens {
        if config.stop_tokens.contains(&t) {
            seq.stop = Some(StopReason::StopToken);
            break;
        }
        if seq.generated.len() + take.len() >= config.max_tokens {
            break;
        }
        take.push(t);
    }
    seq.tokens.extend_from_slice(&take);
    seq.generated.extend_from_slice(&take);
    if !take.is_empty() && !(seq.request.on_tokens)(&take) {
        seq.stop = Some(StopReason::Caller);
    }
    if seq.stop.is_none() && seq.generated.len() >= config.max_tokens {
        seq.stop = Some(StopReason::MaxTokens);
    }
}
