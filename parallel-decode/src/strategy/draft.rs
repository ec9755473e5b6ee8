//! Draft model: a smaller model with the same tokenizer proposes a chain of k tokens.
//!
//! The draft keeps its own KV cache in step with the target's sequence. Before proposing it
//! catches up on the tokens it has not seen (the pending token, and any accepted tokens it did
//! not run itself) in one pass, then draws k tokens one pass at a time, each from its
//! distribution after the same sampling transform as the target (greedy: its argmax). After
//! verification its cache is rolled back to the accepted prefix, which costs nothing: the
//! committed length just moves back.
//!
//! k is fixed, or adapts to the running acceptance: longer after a fully accepted chain,
//! shorter after an early rejection.

use std::cell::RefCell;
use std::rc::Rc;

use super::proposer::{Outcome, Proposal, ProposeContext, Proposer};
use super::tree::TokenTree;
use crate::backend::{LanguageModel, TreeRow};
use crate::sampling::{Sampler, SamplingConfig};
use crate::{Error, Result};

/// A draft model shared by the proposers of several sequences (each uses its own slot).
pub type SharedModel = Rc<RefCell<Box<dyn LanguageModel>>>;

/// How many tokens the draft proposes per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraftLength {
    /// Always this many.
    Fixed(usize),
    /// Between 1 and this many, following the acceptance.
    Adaptive(usize),
}

/// The draft-model proposer.
pub struct Draft {
    model: SharedModel,
    slot: usize,
    /// Tokens of the sequence in the draft's cache.
    cached: usize,
    /// Draft tokens proposed last step (to know which of them the draft has run).
    proposed: usize,
    length: DraftLength,
    k: usize,
    sampling: SamplingConfig,
    sampler: Sampler,
}

impl Draft {
    /// A proposer over `model`'s slot `slot`, drawing with `sampling` (the target's).
    ///
    /// # Errors
    /// [`Error::Config`] for a zero length or a slot the draft does not have.
    pub fn new(
        model: SharedModel,
        slot: usize,
        length: DraftLength,
        sampling: SamplingConfig,
        seed: u64,
    ) -> Result<Self> {
        let k = match length {
            DraftLength::Fixed(k) | DraftLength::Adaptive(k) => k,
        };
        if k == 0 {
            return Err(Error::Setting {
                field: "draft length",
                message: "must be at least 1".into(),
            });
        }
        let slots = model.borrow().info().slots;
        if slot >= slots {
            return Err(Error::Setting {
                field: "draft slot",
                message: format!("slot {slot}, the draft has {slots}"),
            });
        }
        let k = match length {
            DraftLength::Fixed(k) => k,
            DraftLength::Adaptive(max) => max.min(4),
        };
        Ok(Draft {
            model,
            slot,
            cached: 0,
            proposed: 0,
            length,
            k,
            sampling,
            sampler: Sampler::new(seed ^ 0xd4af7),
        })
    }

    /// The current proposal length.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Runs `chain` after the cached tokens; returns the draft's choice after it and its
    /// distribution (a point mass when greedy).
    fn step(&mut self, model: &mut dyn LanguageModel, chain: &[u32]) -> Result<(u32, Vec<f32>)> {
        let mut tree = TokenTree::new(chain[0]);
        let mut at = 0;
        for &t in &chain[1..] {
            at = tree.push(at, t);
        }
        let argmax = model.verify(&[TreeRow {
            slot: self.slot,
            cache_len: self.cached,
            tree: &tree,
        }])?;
        self.cached += chain.len();
        let last = chain.len() - 1;
        let choice = argmax
            .first()
            .and_then(|a| a.get(last))
            .copied()
            .unwrap_or(0);
        let mut q = Vec::new();
        if self.sampling.is_greedy() {
            q.resize(model.info().vocab, 0.0);
            q[choice as usize] = 1.0;
            return Ok((choice, q));
        }
        let mut logits = Vec::new();
        model.logits(0, last, &mut logits)?;
        self.sampling.distribution(&logits, &mut q);
        let drawn = self.sampler.draw(&q).unwrap_or(choice as usize) as u32;
        Ok((drawn, q))
    }
}

impl Proposer for Draft {
    fn name(&self) -> &'static str {
        "draft"
    }

    fn start(&mut self, prompt: &[u32]) -> Result<()> {
        let model = Rc::clone(&self.model);
        let mut model = model.borrow_mut();
        model.prefill(self.slot, prompt)?;
        self.cached = prompt.len();
        self.proposed = 0;
        Ok(())
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
        let tokens = ctx.tokens;
        let pending = *tokens.last().unwrap_or(&0);
        let model = Rc::clone(&self.model);
        let mut model = model.borrow_mut();
        let room = model.info().max_len.saturating_sub(tokens.len());
        let k = self.k.min(ctx.max_nodes.saturating_sub(1)).min(room);
        if k == 0 || self.cached >= tokens.len() {
            return Ok(Proposal::none(pending));
        }
        let mut tree = TokenTree::new(pending);
        let mut draft = Vec::with_capacity(k);
        // Catch up on what the draft has not run (at least the pending token), then draw.
        let mut step = self.step(&mut **model, &tokens[self.cached..])?;
        let mut at = 0;
        for i in 0..k {
            let (token, q) = step;
            at = tree.push(at, token);
            draft.push(q);
            if i + 1 < k {
                step = self.step(&mut **model, &[token])?;
            } else {
                break;
            }
        }
        self.proposed = k;
        Ok(Proposal {
            tree,
            draft: Some(draft),
        })
    }

    fn observe(&mut self, outcome: &Outcome<'_>) -> Result<()> {
        let accepted = outcome.verdict.accepted_candidates();
        // The draft ran the pending token and its first k - 1 proposals; keep those that
        // were accepted. The rest of its cache is dropped by moving the length back.
        let ran = self.proposed.saturating_sub(1);
        self.cached -= ran - accepted.min(ran);
        if let DraftLength::Adaptive(max) = self.length {
            if accepted == self.proposed && self.k < max {
                self.k += 1;
            } else if accepted + 1 < self.proposed && self.k > 1 {
                self.k -= 1;
            }
        }
        self.proposed = 0;
        Ok(())
    }
}
