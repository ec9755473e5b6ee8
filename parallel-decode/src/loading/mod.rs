//! Reading models: Hugging Face directories, GGUF files, tokenizers, chat templates, and the
//! default model.
//!
//! [`ModelDir::open`] is the one way the rest of the project opens a model. Everything else
//! here feeds it:
//!
//! | module | job |
//! |---|---|
//! | [`config`] | `config.json` → validated [`LlamaConfig`] |
//! | [`weights`], [`safetensors`], [`dtype`], [`mapped`] | memory-mapped safetensors (single or sharded), read as `f32` |
//! | [`tokenizer`], [`stream`] | `tokenizer.json` via the `tokenizers` crate; streaming decode |
//! | [`chat`], [`generation`] | chat templates (minijinja), EOS/BOS ids |
//! | [`gguf`] | GGUF container, dequantization, import to a Hugging Face directory |
//! | [`default_model`], [`source`], [`cache`] | fetching and caching SmolLM2-135M-Instruct; resolving `--model` |
//! | [`synthetic`] | tiny generated models for tests and examples |
//! | [`medusa_heads`], [`feature_draft`](mod@feature_draft) | the Medusa heads file and the feature-draft file (an EAGLE-style drafter) trained for a model |
//! | [`progress`] | progress reporting hooks for long steps |

pub mod cache;
pub mod chat;
pub mod config;
pub mod default_model;
pub mod dtype;
pub mod feature_draft;
pub mod generation;
pub mod gguf;
#[allow(unsafe_code)] // The one memory map; see the module docs.
pub mod mapped;
pub mod medusa_heads;
pub mod model_dir;
pub mod progress;
pub mod safetensors;
pub mod source;
pub mod stream;
pub mod synthetic;
pub mod tokenizer;
mod trained_file;
pub mod weights;

pub use chat::{ChatTemplate, Message};
pub use config::{LlamaConfig, RawLlamaConfig, RopeScaling};
pub use dtype::Dtype;
pub use mapped::FileBytes;
pub use model_dir::{ModelDir, ModelText};
pub use progress::{NoProgress, Progress, ProgressStep, Unit};
pub use stream::StreamDecoder;
pub use tokenizer::Tokenizer;
pub use weights::{Tensor, TensorView, Weights};
