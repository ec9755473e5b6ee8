//! Medusa heads for a base model: self-distilled training data, training, evaluation, and
//! choosing the candidate tree by measurement.
//!
//! | module | job |
//! |---|---|
//! | [`data`] | the base model's greedy answers to a prompt set, with the hidden state at every position |
//! | [`train`] | training the heads (base model frozen) with the full-vocabulary cross-entropy |
//! | [`gemm`] | the matrix products training and evaluation run on, split between threads |
//! | [`eval`] | top-k accuracy per head, and the joint ranks along tree paths, on held-out prompts |
//! | [`vocab`] | the heads' vocabulary: the tokens the model's answers use most |
//! | [`tune`] | the candidate tree that maximises expected tokens per second under a cost model |
//! | [`file`](mod@file) | writing a heads file in the documented format ([`crate::loading::medusa_heads`]) |
//! | [`prompts`] | the prompt sets distilled (the shipped one, and JSON-lines files) |
//! | [`default_heads`] | the trained heads shipped for the default model |

pub mod data;
pub mod default_heads;
pub mod eval;
pub mod file;
pub mod gemm;
pub mod prompts;
pub mod train;
pub mod tune;
pub mod vocab;
