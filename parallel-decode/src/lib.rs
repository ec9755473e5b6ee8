//! Llama-family models on Neuron devices with parallel (speculative) decoding.
//!
//! Today this crate reads models ([`loading`]): Hugging Face directories and GGUF files, their
//! tokenizers and chat templates, and the default model, SmolLM2-135M-Instruct. Compiled
//! artifacts, the device backend and the decoding strategies come next (see the issues).
//!
//! The only `unsafe` code is the memory map of weight files, in [`loading::mapped`].

#![deny(unsafe_code)]

pub mod error;
pub mod loading;

pub use error::{Error, Result};
