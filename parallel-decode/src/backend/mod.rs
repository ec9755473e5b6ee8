//! What the decoding engine needs from a model: KV-cache slots on a device and passes over
//! trees of new tokens.
//!
//! The KV cache stays with the model (on the device); the engine keeps only each slot's
//! committed length. Rolling back is therefore free: whatever lies past the committed length is
//! ignored and overwritten by the next pass.

pub mod costs;
pub mod neuron;
pub mod toy;

use crate::Result;
use crate::strategy::proposer::HeadCandidates;
use crate::strategy::tree::TokenTree;

/// Fixed facts about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Vocabulary size (the length of a logits row).
    pub vocab: usize,
    /// Width of a hidden state.
    pub hidden: usize,
    /// KV-cache slots: sequences that can be in flight at once.
    pub slots: usize,
    /// Positions per slot.
    pub max_len: usize,
    /// Most new tokens one tree pass takes per row (the largest verify bucket).
    pub max_tree: usize,
    /// Most rows one pass takes.
    pub max_batch: usize,
    /// Medusa-style heads (0 when the model has none).
    pub heads: usize,
    /// Cost of a tree pass by its number of nodes, relative to a one-node pass: entry `n - 1`
    /// is the cost of `n` nodes (`max_tree` entries). Proposers use it to weigh longer
    /// proposals against what they cost; measured on the device where possible, and kept up
    /// to date from the passes that run (see [`costs`]).
    pub tree_cost: Vec<f32>,
    /// Cost of one run of the heads, relative to a one-node pass (0 without heads or when
    /// unknown): what a proposer that asks for head candidates pays on top of the pass.
    pub heads_cost: f32,
}

impl ModelInfo {
    /// The relative cost of a pass over `nodes` nodes (clamped to the known range).
    pub fn cost_of(&self, nodes: usize) -> f32 {
        let i = nodes.clamp(1, self.tree_cost.len().max(1)) - 1;
        self.tree_cost.get(i).copied().unwrap_or(1.0)
    }
}

/// One row of a tree pass.
#[derive(Debug, Clone, Copy)]
pub struct TreeRow<'a> {
    /// The KV slot.
    pub slot: usize,
    /// Committed positions in the slot; the tree's root goes at this position.
    pub cache_len: usize,
    /// The tokens to run: node 0 (the pending token) and the candidates.
    pub tree: &'a TokenTree,
}

/// The accepted path of one row, to be made contiguous in the KV cache.
#[derive(Debug, Clone, Copy)]
pub struct CommitRow<'a> {
    /// The KV slot.
    pub slot: usize,
    /// Committed positions before the pass.
    pub cache_len: usize,
    /// Accepted node indices, root first, as the verifier returned them.
    pub accepted: &'a [usize],
}

impl CommitRow<'_> {
    /// Whether the accepted nodes already sit at contiguous positions (a chain, or the first
    /// branch of a tree), so that nothing needs to move.
    pub fn is_contiguous(&self) -> bool {
        self.accepted.iter().enumerate().all(|(i, &n)| i == n)
    }
}

/// A model the engine can drive. Implemented over the Neuron runtime by
/// [`neuron::NeuronModel`](crate::backend) (and by small in-process models in tests).
pub trait LanguageModel {
    /// Facts about the model.
    fn info(&self) -> &ModelInfo;

    /// Runs a prompt into `slot` from position 0 (whatever the slot held is discarded).
    /// Returns the argmax of the logits after the last prompt token.
    ///
    /// # Errors
    /// When the prompt is longer than the model's prefill capacity or the device fails.
    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<u32>;

    /// Runs every row's tree in one pass; writes the nodes' keys and values after each row's
    /// committed positions. Returns, per row, the argmax after every node.
    ///
    /// # Errors
    /// When a tree or a batch exceeds the model's buckets or the device fails.
    fn verify(&mut self, rows: &[TreeRow<'_>]) -> Result<Vec<Vec<u32>>>;

    /// Logits after node `node` of row `row` of the last pass (for a prefill: row 0, node 0 is
    /// the last prompt token).
    ///
    /// # Errors
    /// When there is no such row or node, or the device read fails.
    fn logits(&mut self, row: usize, node: usize, out: &mut Vec<f32>) -> Result<()>;

    /// Final hidden state at node `node` of row `row` of the last pass (same indexing as
    /// [`LanguageModel::logits`]).
    ///
    /// # Errors
    /// As for [`LanguageModel::logits`].
    fn hidden(&mut self, row: usize, node: usize, out: &mut Vec<f32>) -> Result<()>;

    /// Moves each row's accepted nodes to contiguous positions after its committed ones.
    ///
    /// # Errors
    /// When the device fails.
    fn commit(&mut self, rows: &[CommitRow<'_>]) -> Result<()>;

    /// The heads' `top_k[h]` best candidates for each head from one hidden state and the
    /// token chosen from it (`next`: the one just emitted, which heads that take the next
    /// token condition on; others ignore it).
    ///
    /// # Errors
    /// When the model has no heads or the device fails.
    fn heads(&mut self, hidden: &[f32], next: u32, top_k: &[usize]) -> Result<HeadCandidates>;
}
