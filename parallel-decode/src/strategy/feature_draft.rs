//! Candidates from a feature draft ([`crate::feature_draft`]): a one-layer drafter that reads
//! the target's hidden states and attends to the context, run on the host.
//!
//! Each pass, the draft first takes the target's states of the tokens just accepted (its
//! committed inputs), then grows a tree: the best `top_k` tokens after the pending one, and
//! from the likeliest `frontier` nodes of each depth, their best `top_k` children, fed the
//! draft's own guesses of the states, down to `depth`, or until no node left to expand has a
//! chance of `min_chance`. A node's chance of being accepted is
//! the product of the draft's probabilities along its path (as in EAGLE-2); the tree
//! verified is the likeliest nodes, as many as maximise expected tokens per unit of the
//! target's cost ([`super::combined`] makes the same choice across proposers).

use std::rc::Rc;

use ndarray::{Array2, ArrayView2};

use super::combined::choose_nodes;
use super::proposer::{Proposal, ProposeContext, Proposer, RankedCandidates};
use crate::Result;
use crate::feature_draft::{DraftCache, FeatureDraft, Scoring, Speculation};

/// How far and wide the draft looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureDraftConfig {
    /// Deepest candidate, in tokens after the pending one.
    pub depth: usize,
    /// Children proposed per expanded node.
    pub top_k: usize,
    /// Nodes expanded per depth (the likeliest).
    pub frontier: usize,
    /// The draft stops going deeper once no node of the last depth has at least this chance:
    /// their children, less likely still, would almost never be worth verifying, and each
    /// depth costs a run of the draft.
    pub min_chance: f32,
    /// The draft scores only its this many most frequent tokens (0: all of them), when its
    /// file ranks its vocabulary by frequency: a run of the draft is bound by reading its
    /// weights, most of which are LM head rows, and the tokens it guesses right are mostly
    /// common ones (on the default model's open benchmark prompts, 2048 of 8192 gave the
    /// same tau).
    pub vocab: usize,
}

impl Default for FeatureDraftConfig {
    fn default() -> Self {
        FeatureDraftConfig {
            depth: 6,
            top_k: 4,
            // Two nodes a depth and a 10% floor, rather than four and 5%: on the open
            // benchmark prompts (mock, two cores, trees sized by measured costs) tau 2.462
            // against 2.476 with a quarter less drafting a pass (3.0 against 4.2 ms):
            // feature-hybrid 1.50x against hybrid's 1.45x in the same run, where four and 5%
            // had 1.51x against 1.56x (grounded: 1.66x against 1.62x). One node a depth fell
            // to tau 2.40.
            frontier: 2,
            min_chance: 0.1,
            vocab: 2048,
        }
    }
}

/// The draft stops growing once it holds this many candidates per node the tree may have:
/// enough for the choice of the likeliest, each depth more being a run of the draft.
const POOL_PER_NODE: usize = 4;

/// The proposer; one per sequence, sharing the draft.
#[derive(Debug)]
pub struct FeatureDraftProposer {
    draft: Rc<FeatureDraft>,
    config: FeatureDraftConfig,
    cache: DraftCache,
    spec: Speculation,
    /// Committed inputs not yet run: states `[n, hidden]` flattened, and the chosen tokens.
    pending_states: Vec<f32>,
    pending_tokens: Vec<u32>,
    /// The draft's guess after the last committed input.
    last: Option<Guess>,
}

/// The draft's guess after its last committed input.
#[derive(Debug)]
struct Guess {
    /// The next hidden state, as the draft guesses it.
    state: Vec<f32>,
    /// The best tokens after the pending one, with their probabilities.
    top: Vec<(u32, f32)>,
    /// The token the input chose: the pending one, when the draft is up to date.
    chosen: u32,
}

impl FeatureDraftProposer {
    /// A proposer over `draft`.
    pub fn new(draft: Rc<FeatureDraft>, config: FeatureDraftConfig) -> Self {
        FeatureDraftProposer {
            draft,
            config,
            cache: DraftCache::default(),
            spec: Speculation::default(),
            pending_states: Vec::new(),
            pending_tokens: Vec::new(),
            last: None,
        }
    }

    /// How every run scores its guesses.
    fn scoring(&self) -> Scoring {
        Scoring {
            top_k: self.config.top_k,
            tokens: match self.config.vocab {
                n if n > 0 && self.draft.ranked() => n,
                _ => usize::MAX,
            },
        }
    }

    /// Runs the committed inputs that arrived since the last proposal.
    fn catch_up(&mut self) -> Result<()> {
        if self.pending_tokens.is_empty() {
            return Ok(());
        }
        let h = self.draft.config().hidden;
        let states = ArrayView2::from_shape((self.pending_tokens.len(), h), &self.pending_states)
            .map_err(|e| crate::Error::Setting {
            field: "feature draft",
            message: format!("hidden states: {e}"),
        })?;
        let scoring = self.scoring();
        let out = self
            .draft
            .extend(&mut self.cache, states, &self.pending_tokens, scoring)?;
        // The guess after the last input (the only one `extend` returns).
        let state = out.states.rows().into_iter().next_back();
        let (Some(state), Some(&chosen)) = (state, self.pending_tokens.last()) else {
            return Ok(());
        };
        self.last = Some(Guess {
            state: state.to_vec(),
            top: out.top.into_iter().next_back().unwrap_or_default(),
            chosen,
        });
        self.pending_states.clear();
        self.pending_tokens.clear();
        Ok(())
    }

    /// The draft's tree after the pending token, every node with its chance.
    fn grow(&mut self, pending: u32, max_nodes: usize) -> Result<RankedCandidates> {
        let mut ranked = RankedCandidates::none(pending);
        self.catch_up()?;
        let Some(Guess { state, top, chosen }) = &self.last else {
            return Ok(ranked);
        };
        if *chosen != pending {
            // Out of step with the sequence (no states for its last tokens): propose nothing.
            return Ok(ranked);
        }
        let h = self.draft.config().hidden;
        /// A node that may be expanded: its path with each node's chance, and the row of
        /// `states` its token was drawn from.
        struct Node {
            path: Vec<u32>,
            chances: Vec<f32>,
            from: usize,
        }
        let chance = |n: &Node| *n.chances.last().unwrap_or(&0.0);
        // States the frontier's tokens were drawn from: row `i`, with its speculative entry.
        let mut states: Vec<f32> = state.clone();
        let mut entries: Vec<Option<usize>> = vec![None];
        let mut level: Vec<Node> = top
            .iter()
            .map(|&(t, p)| Node {
                path: vec![t],
                chances: vec![p],
                from: 0,
            })
            .collect();
        self.spec.clear();
        let scoring = self.scoring();
        for depth in 1..=self.config.depth {
            for node in &level {
                ranked.add(&node.path, &node.chances);
            }
            if depth == self.config.depth || ranked.tree.len() >= max_nodes.max(1) * POOL_PER_NODE {
                break;
            }
            level.sort_by(|a, b| chance(b).total_cmp(&chance(a)));
            level.truncate(self.config.frontier);
            level.retain(|n| chance(n) >= self.config.min_chance);
            if level.is_empty() {
                break;
            }
            let mut inputs = Array2::zeros((level.len(), h));
            for (i, node) in level.iter().enumerate() {
                inputs
                    .row_mut(i)
                    .iter_mut()
                    .zip(&states[node.from * h..(node.from + 1) * h])
                    .for_each(|(a, &b)| *a = b);
            }
            let tokens: Vec<u32> = level.iter().map(|n| *n.path.last().unwrap_or(&0)).collect();
            let parents: Vec<Option<usize>> = level.iter().map(|n| entries[n.from]).collect();
            let first = self.spec.len();
            let out = self.draft.speculate(
                &self.cache,
                &mut self.spec,
                &parents,
                inputs.view(),
                &tokens,
                scoring,
            )?;
            let mut next = Vec::new();
            for (i, node) in level.iter().enumerate() {
                let from = entries.len();
                states.extend(out.states.row(i).iter());
                entries.push(Some(first + i));
                for &(t, p) in &out.top[i] {
                    let (mut path, mut chances) = (node.path.clone(), node.chances.clone());
                    path.push(t);
                    chances.push(chance(node) * p);
                    next.push(Node {
                        path,
                        chances,
                        from,
                    });
                }
            }
            level = next;
        }
        Ok(ranked)
    }
}

impl Proposer for FeatureDraftProposer {
    fn name(&self) -> &'static str {
        "feature-draft"
    }

    fn wants_hidden(&self) -> bool {
        true
    }

    fn hidden_states(&mut self, states: &[Vec<f32>], chosen: &[u32]) -> Result<()> {
        let h = self.draft.config().hidden;
        if states.len() != chosen.len() || states.iter().any(|s| s.len() != h) {
            return Err(crate::Error::Setting {
                field: "feature draft",
                message: format!(
                    "{} hidden states for {} tokens, or not {h} wide",
                    states.len(),
                    chosen.len()
                ),
            });
        }
        for s in states {
            self.pending_states.extend_from_slice(s);
        }
        self.pending_tokens.extend_from_slice(chosen);
        Ok(())
    }

    fn start(&mut self, _tokens: &[u32]) -> Result<()> {
        self.cache.clear();
        self.spec.clear();
        self.pending_states.clear();
        self.pending_tokens.clear();
        self.last = None;
        Ok(())
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal> {
        let pending = *ctx.tokens.last().unwrap_or(&0);
        let pool = self.grow(pending, ctx.max_nodes)?;
        Ok(Proposal {
            tree: choose_nodes(&pool, ctx),
            draft: None,
        })
    }

    fn candidates(&mut self, ctx: &ProposeContext<'_>) -> Result<Option<RankedCandidates>> {
        let pending = *ctx.tokens.last().unwrap_or(&0);
        self.grow(pending, ctx.max_nodes).map(Some)
    }
}
