//! Compiled artifacts: what `neuron-decode compile` writes and the device backend loads.
//!
//! ```text
//! manifest.json                 format version, model config, tp degree, slots, max length,
//!                               graphs (role, width, batch, NEFF path), weight shards, heads
//! graphs/<role>-<width>.neff    one mock NEFF per role and bucket (per rank when they differ)
//! weights/rank{r}.safetensors   each rank's shard, Hugging Face tensor names; f32, but for
//!                               what only the heads read, f16: the heads vocabulary's LM-head
//!                               rows (`medusa.lm_head`) and the heads' matrices
//! tokenizer.json, ...           the tokenizer and its companion files
//! ```

pub mod compile;
pub mod manifest;
pub mod shard;

pub use compile::{
    CompileOptions, DEFAULT_VERIFY_BUCKETS, cached_compile, compile, matrices_for_mock,
};
pub use manifest::{GraphEntry, HeadsEntry, MANIFEST_FILE, Manifest, Role};
pub use neuron_mock::kernels::llama::graph::MatrixDtype;
