//! Llama-family models on Neuron devices with parallel (speculative) decoding.
//!
//! - [`loading`]: Hugging Face directories and GGUF files, their tokenizers and chat
//!   templates, and the default model, SmolLM2-135M-Instruct.
//! - [`artifacts`]: compiling a model for the device, and the manifest the backend loads.
//! - [`backend`]: what the decoding loop needs from a model ([`backend::LanguageModel`]).
//! - [`engine`]: the decoding loop: prefill, then propose, verify, commit, emit.
//! - [`strategy`]: candidate trees, proposers (prompt lookup, draft model, Medusa heads) and
//!   the verification rules (greedy, exact sampling, typical acceptance).
//! - [`medusa`]: training Medusa heads for a model and choosing their candidate tree.
//! - [`feature_draft`]: an EAGLE-style drafter (one decoder layer over the model's hidden
//!   states) run on the host, for [`strategy::feature_draft`].
//! - [`sampling`]: the sampling transform and the seeded sampler.
//! - [`shipped`]: the trained heads and draft of the default model, built into the library.
//!
//! The only `unsafe` code is the memory map of weight files, in [`loading::mapped`].

#![deny(unsafe_code)]

pub mod artifacts;
pub mod backend;
pub mod bench;
pub mod engine;
pub mod error;
pub mod feature_draft;
pub mod loading;
pub mod medusa;
pub mod sampling;
pub mod shipped;
pub mod strategy;
pub mod text;

pub use error::{Error, Result};
