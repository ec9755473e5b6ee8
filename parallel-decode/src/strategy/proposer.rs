//! What every proposer offers the verifier, and what it learns back.

use super::tree::TokenTree;
use super::verify::Verdict;

/// Candidate continuations for one sequence: a tree rooted at the pending token.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The candidates; a root-only tree means "nothing to propose" (a plain decode step).
    pub tree: TokenTree,
    /// For a chain drawn from a draft model: the draft's distribution at each depth (entry
    /// `d` is the distribution the candidate at depth `d + 1` was drawn from), after the same
    /// sampling transform as the target. `None` for deterministic candidates.
    pub draft: Option<Vec<Vec<f32>>>,
}

impl Proposal {
    /// A proposal with no candidates.
    pub fn none(pending: u32) -> Self {
        Proposal {
            tree: TokenTree::new(pending),
            draft: None,
        }
    }
}

/// Candidates for a caller that sizes the tree itself (a tree chosen across proposers, see
/// [`super::combined::Combined::global`]): more than the proposer would verify alone, each
/// node with the proposer's estimate of its chance of being accepted (its whole path from the
/// root matching the target's choices).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedCandidates {
    /// The candidates.
    pub tree: TokenTree,
    /// Each node's chance, indexed like the tree's nodes (the root's is 1); a node's is at
    /// most its parent's.
    pub chances: Vec<f32>,
}

impl RankedCandidates {
    /// No candidates.
    pub fn none(pending: u32) -> Self {
        RankedCandidates {
            tree: TokenTree::new(pending),
            chances: vec![1.0],
        }
    }

    /// The candidates as a proposal of deterministic tokens (the chances dropped).
    pub fn into_proposal(self) -> Proposal {
        Proposal {
            tree: self.tree,
            draft: None,
        }
    }

    /// Adds `path` under the root, giving its `i`-th node the chance `chances[i]` (a node
    /// already there keeps the larger of the two).
    pub fn add(&mut self, path: &[u32], chances: &[f32]) {
        let mut at = 0;
        for (&token, &chance) in path.iter().zip(chances) {
            at = self.tree.push(at, token);
            if at == self.chances.len() {
                self.chances.push(chance);
            } else {
                self.chances[at] = self.chances[at].max(chance);
            }
        }
    }
}

/// Top candidates of the Medusa-style heads at the last accepted position: `heads[k]` lists
/// the most likely tokens for the position `k + 1` steps after the pending token's successor,
/// best first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadCandidates {
    /// One list per head, best first.
    pub heads: Vec<Vec<u32>>,
    /// Each candidate's probability under its head, in the shape of `heads`; empty when the
    /// backend does not report them.
    pub probs: Vec<Vec<f32>>,
}

/// What a proposer sees before a target pass.
#[derive(Debug, Clone, Copy)]
pub struct ProposeContext<'a> {
    /// Prompt and generated tokens so far; the last one is the pending token (the tree root),
    /// chosen but not yet run through the target.
    pub tokens: &'a [u32],
    /// Most nodes the tree may have, the root included (the verify bucket, or less near the
    /// end of the context or of the token budget).
    pub max_nodes: usize,
    /// Head candidates for the token after the pending one, when the target has heads and the
    /// proposer asked for them.
    pub heads: Option<&'a HeadCandidates>,
    /// The target's cost of a pass by node count, relative to one node (see
    /// [`crate::backend::ModelInfo::tree_cost`]); empty when unknown.
    pub tree_cost: &'a [f32],
    /// The cost of a run of the target's heads, relative to a one-node pass (see
    /// [`crate::backend::ModelInfo::heads_cost`]).
    pub heads_cost: f32,
}

/// What happened to a proposal.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// The proposal that was verified.
    pub proposal: &'a Proposal,
    /// What the target accepted and the token it chose next.
    pub verdict: &'a Verdict,
}

impl Outcome<'_> {
    /// The accepted candidate tokens, in order (the root excluded).
    pub fn accepted_tokens(&self) -> Vec<u32> {
        let tokens = self.proposal.tree.tokens();
        self.verdict.accepted[1..]
            .iter()
            .map(|&n| tokens[n])
            .collect()
    }
}

/// A source of candidate continuations. The verifier, the KV bookkeeping and the sampling are
/// shared by every proposer; a proposer only proposes and learns from outcomes.
pub trait Proposer {
    /// A short name for logs and benchmarks (`prompt-lookup`, `draft`, `medusa`, ...).
    fn name(&self) -> &'static str;

    /// Whether the engine should run the target's heads and pass their candidates in
    /// [`ProposeContext::heads`].
    fn wants_heads(&self) -> bool {
        false
    }

    /// Whether the engine should pass the target's final hidden states of the accepted
    /// tokens to [`Proposer::hidden_states`] (a drafter that reads them, as a feature draft
    /// does).
    fn wants_hidden(&self) -> bool {
        false
    }

    /// The target's final hidden states (`states[i]`) at the tokens it has just accepted, in
    /// order, each with the token it chose from that state (`chosen[i]`): after the prefill,
    /// the last prompt token's state and the first token; after a pass, the root's and the
    /// accepted candidates' states, the last one's choice being the next pending token. Only
    /// called when [`Proposer::wants_hidden`].
    ///
    /// # Errors
    /// When a proposer with its own model fails to run it.
    fn hidden_states(&mut self, states: &[Vec<f32>], chosen: &[u32]) -> crate::Result<()> {
        let _ = (states, chosen);
        Ok(())
    }

    /// Called once with the prompt (and the first pending token last) before any proposal.
    ///
    /// # Errors
    /// When a proposer with its own model fails to run it.
    fn start(&mut self, tokens: &[u32]) -> crate::Result<()> {
        let _ = tokens;
        Ok(())
    }

    /// Proposes candidates after `ctx.tokens`.
    ///
    /// # Errors
    /// When a proposer with its own model fails to run it.
    fn propose(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Proposal>;

    /// Candidates with their chances for a caller that chooses the tree itself, within
    /// `ctx.max_nodes` (`ctx.tree_cost` and `ctx.heads_cost` are still the real costs, for
    /// what the proposer decides on its own, such as whether to run the heads). `None`: this
    /// proposer sizes its proposals itself, and the caller uses [`Proposer::propose`].
    ///
    /// # Errors
    /// As [`Proposer::propose`].
    fn candidates(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Option<RankedCandidates>> {
        let _ = ctx;
        Ok(None)
    }

    /// After [`Proposer::candidates`]: the tree the caller chose to verify, so that the
    /// proposer learns only from its candidates that were in it.
    fn keep_only(&mut self, tree: &TokenTree) {
        let _ = tree;
    }

    /// Learns what was accepted (to roll back a draft model's cache, adapt proposal lengths).
    ///
    /// # Errors
    /// When a proposer with its own model fails to update it.
    fn observe(&mut self, outcome: &Outcome<'_>) -> crate::Result<()> {
        let _ = outcome;
        Ok(())
    }
}

/// The baseline: never proposes anything, so every pass decodes one token.
#[derive(Debug, Clone, Copy, Default)]
pub struct Autoregressive;

impl Proposer for Autoregressive {
    fn name(&self) -> &'static str {
        "ar"
    }

    fn propose(&mut self, ctx: &ProposeContext<'_>) -> crate::Result<Proposal> {
        Ok(Proposal::none(*ctx.tokens.last().unwrap_or(&0)))
    }
}
