//! [`ModelDir`]: a Hugging Face model directory, opened and checked.

use std::path::{Path, PathBuf};

use super::chat::{ChatTemplate, Message};
use super::config::LlamaConfig;
use super::generation::{GenerationConfig, TokenizerConfig};
use super::tokenizer::Tokenizer;
use super::weights::Weights;
use crate::error::{Error, Result};

/// The configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Special tokens and the chat template.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// Generation defaults (EOS ids).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
/// A chat template stored on its own (newer `transformers` write it; it takes precedence).
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// A Llama-family model in Hugging Face layout: `config.json`, safetensors weights (one file
/// or sharded), `tokenizer.json`, and optionally `tokenizer_config.json`,
/// `generation_config.json` and `chat_template.jinja`.
///
/// This is the one place the rest of the project opens a model. Opening validates the
/// configuration, maps the weights and checks that every parameter the configuration implies
/// is present with the right shape, loads the tokenizer and compiles the chat template, so a
/// `ModelDir` that opened can be run. Weights stay memory-mapped until read.
///
/// ```
/// use parallel_decode::loading::{Message, ModelDir, synthetic};
///
/// // A tiny random model written for the example; real code opens a downloaded or imported
/// // directory, e.g. the one `default_model::ensure` returns.
/// let dir = tempfile::tempdir()?;
/// synthetic::write_tiny_llama(dir.path(), &synthetic::TinyLlama::default())?;
///
/// let model = ModelDir::open(dir.path())?;
/// let cfg = model.config();
/// assert_eq!(cfg.hidden_size, 16);
///
/// // Weights by Hugging Face name, as f32 with their shape.
/// let emb = model.weights().f32("model.embed_tokens.weight", &[cfg.vocab_size, cfg.hidden_size])?;
/// assert_eq!(emb.data.len(), cfg.vocab_size * cfg.hidden_size);
///
/// // Tokenizer, chat template and end-of-sequence ids.
/// let prompt = model.render_chat(&[Message::user("hi")], true)?;
/// assert_eq!(prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
/// let ids = model.tokenizer().encode(&prompt, false)?;
/// assert_eq!(model.tokenizer().decode(&ids, false)?, prompt);
/// assert!(model.is_eos(model.tokenizer().token_to_id("<|im_end|>").unwrap()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ModelDir {
    path: PathBuf,
    config: LlamaConfig,
    weights: Weights,
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
    eos_token_ids: Vec<u32>,
    bos_token_id: Option<u32>,
}

impl ModelDir {
    /// Opens and checks the model in `path`.
    ///
    /// # Errors
    ///
    /// [`Error::NotAModel`] if `path` is not a directory with a `config.json`; otherwise the
    /// first problem found, naming its file: [`Error::Config`], [`Error::Json`],
    /// [`Error::Safetensors`], [`Error::MissingTensor`], [`Error::ShapeMismatch`],
    /// [`Error::Tokenizer`] (including a tokenizer with more ids than the model has
    /// embeddings), [`Error::ChatTemplate`].
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(Error::NotAModel {
                path: path.to_path_buf(),
                message: if path.exists() {
                    "it is not a directory (a GGUF file must be imported first)".into()
                } else {
                    "it does not exist".into()
                },
            });
        }
        let config_path = path.join(CONFIG_FILE);
        if !config_path.is_file() {
            return Err(Error::NotAModel {
                path: path.to_path_buf(),
                message: format!("it has no {CONFIG_FILE}"),
            });
        }
        let config = LlamaConfig::from_file(&config_path)?;
        let weights = Weights::open(path)?;
        weights.check_against(&config)?;

        let tokenizer = Tokenizer::from_file(&path.join(TOKENIZER_FILE))?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::Tokenizer {
                path: tokenizer.path().to_path_buf(),
                message: format!(
                    "the tokenizer has {} ids but the model only {} embedding rows (vocab_size in {CONFIG_FILE})",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            });
        }
        let tok_config = TokenizerConfig::read(&path.join(TOKENIZER_CONFIG_FILE))?;
        let generation =
            GenerationConfig::read(&path.join(GENERATION_CONFIG_FILE), config.vocab_size)?;

        let template_file = path.join(CHAT_TEMPLATE_FILE);
        let template = if template_file.is_file() {
            let src = std::fs::read_to_string(&template_file)
                .map_err(|e| Error::io(&template_file, "read", e))?;
            Some((src, template_file))
        } else {
            tok_config
                .chat_template
                .clone()
                .map(|src| (src, path.join(TOKENIZER_CONFIG_FILE)))
        };
        let chat_template = template
            .map(|(src, file)| {
                ChatTemplate::new(
                    src,
                    &file,
                    tok_config.bos_token.clone(),
                    tok_config.eos_token.clone(),
                )
            })
            .transpose()?;

        // EOS: generation_config first (what generation APIs honour), then config.json, then
        // the tokenizer's eos_token; duplicates removed, order kept.
        let mut eos_token_ids = Vec::new();
        let from_tokenizer = tok_config
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t));
        for id in generation
            .eos_token_ids
            .iter()
            .chain(&config.eos_token_ids)
            .copied()
            .chain(from_tokenizer)
        {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
        let bos_token_id = generation.bos_token_id.or(config.bos_token_id).or_else(|| {
            tok_config
                .bos_token
                .as_deref()
                .and_then(|t| tokenizer.token_to_id(t))
        });
        Ok(Self {
            path: path.to_path_buf(),
            config,
            weights,
            tokenizer,
            chat_template,
            eos_token_ids,
            bos_token_id,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The weights, by Hugging Face parameter name.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Tokens that end generation: `generation_config.json`'s, then `config.json`'s, then
    /// `tokenizer_config.json`'s `eos_token`.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// Whether `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_token_ids.contains(&id)
    }

    /// The beginning-of-sequence token, if any.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    /// Renders a conversation with the model's chat template.
    ///
    /// # Errors
    ///
    /// [`Error::NoChatTemplate`] if the model has none, [`Error::ChatTemplate`] if rendering
    /// fails.
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.chat_template
            .as_ref()
            .ok_or_else(|| Error::NoChatTemplate {
                path: self.path.clone(),
            })?
            .render(messages, add_generation_prompt)
    }

    /// Renders a conversation and tokenizes it, ready for generation (the template supplies
    /// any special tokens, so none are added on top, as `transformers` does).
    ///
    /// # Errors
    ///
    /// As [`ModelDir::render_chat`] and [`Tokenizer::encode`].
    pub fn encode_chat(&self, messages: &[Message]) -> Result<Vec<u32>> {
        let text = self.render_chat(messages, true)?;
        self.tokenizer.encode(&text, false)
    }
}
