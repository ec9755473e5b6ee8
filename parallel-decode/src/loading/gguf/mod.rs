//! GGUF files: the container ([`GgufFile`]), dequantization ([`quant`]), the Llama mapping
//! ([`llama`]), the tokenizer ([`vocab`]) and import into a Hugging Face directory
//! ([`import_gguf`]).
//!
//! Import is the only way this crate runs a GGUF model: the weights are dequantized to `f32`
//! (or `bf16`) once and written as safetensors, so that there is a single loading path,
//! [`crate::loading::ModelDir`].

pub mod ggml_type;
pub mod import;
pub mod llama;
pub mod quant;
pub mod reader;
pub mod value;
pub mod vocab;
pub mod writer;

pub use ggml_type::GgmlType;
pub use import::{ImportOptions, ImportSummary, import_gguf};
pub use reader::{GgufFile, TensorInfo};
pub use value::{Array, Value, ValueType};
pub use vocab::{GgufTokenizer, tokenizer_from_gguf};
pub use writer::GgufWriter;
