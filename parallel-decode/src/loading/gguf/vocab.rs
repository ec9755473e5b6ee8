//! Rebuilding a Hugging Face `tokenizer.json` from the tokenizer stored in a GGUF file.
//!
//! GGUF keeps the vocabulary (`tokenizer.ggml.tokens`), the token kinds
//! (`tokenizer.ggml.token_type`), the BPE merges, and only the *name* of the pre-tokenizer
//! (`tokenizer.ggml.pre`); the pre-tokenizer itself is known by name. This module supports
//! byte-level BPE (`tokenizer.ggml.model = "gpt2"`) with the pre-tokenizers:
//!
//! - `smollm`: every digit split on its own, then the GPT-2 pattern (SmolLM / SmolLM2);
//! - `gpt2`: the GPT-2 pattern alone.
//!
//! Control and user-defined tokens (`<|im_start|>`) become added tokens, matched whole in the
//! input before pre-tokenization, as the original tokenizers do.

use serde_json::{Map, Value as Json, json};

use super::reader::GgufFile;
use super::value::{Array, Value};
use crate::error::{Error, Result};

/// GGUF token kinds (`tokenizer.ggml.token_type`).
mod token_type {
    pub const NORMAL: i64 = 1;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
}

/// The special tokens and flags that go into `tokenizer_config.json` and
/// `generation_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token id.
    pub bos: Option<u32>,
    /// End-of-sequence token id.
    pub eos: Option<u32>,
    /// End-of-turn token id (chat models that end a turn with a token other than EOS).
    pub eot: Option<u32>,
    /// Unknown-token id.
    pub unk: Option<u32>,
    /// Padding token id.
    pub pad: Option<u32>,
    /// Whether encoding adds the BOS token in front.
    pub add_bos: bool,
}

/// A tokenizer rebuilt from GGUF metadata.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    /// The vocabulary, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.json` contents.
    pub tokenizer_json: Json,
    /// Special tokens.
    pub special: SpecialTokens,
    /// The chat template, if the GGUF has one.
    pub chat_template: Option<String>,
}

impl GgufTokenizer {
    /// The token string for `id`.
    pub fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize))
            .map(String::as_str)
    }

    /// `tokenizer_config.json` contents: special tokens by content, the chat template, and
    /// whether to add BOS.
    pub fn tokenizer_config_json(&self, model_max_length: usize) -> Json {
        let mut c = Map::new();
        c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        c.insert("add_bos_token".into(), json!(self.special.add_bos));
        c.insert("add_eos_token".into(), json!(false));
        c.insert("clean_up_tokenization_spaces".into(), json!(false));
        c.insert("model_max_length".into(), json!(model_max_length));
        for (key, id) in [
            ("bos_token", self.special.bos),
            ("eos_token", self.special.eos),
            ("unk_token", self.special.unk),
            ("pad_token", self.special.pad),
        ] {
            if let Some(t) = self.token(id) {
                c.insert(key.into(), json!(t));
            }
        }
        if let Some(t) = &self.chat_template {
            c.insert("chat_template".into(), json!(t));
        }
        Json::Object(c)
    }

    /// `generation_config.json` contents: BOS, and EOS with the end-of-turn token if it differs.
    pub fn generation_config_json(&self) -> Json {
        let mut eos: Vec<u32> = self.special.eos.into_iter().collect();
        if let Some(eot) = self.special.eot
            && !eos.contains(&eot)
        {
            eos.push(eot);
        }
        let mut c = Map::new();
        if let Some(b) = self.special.bos {
            c.insert("bos_token_id".into(), json!(b));
        }
        match eos.as_slice() {
            [] => {}
            [one] => {
                c.insert("eos_token_id".into(), json!(one));
            }
            many => {
                c.insert("eos_token_id".into(), json!(many));
            }
        }
        if let Some(p) = self.special.pad {
            c.insert("pad_token_id".into(), json!(p));
        }
        Json::Object(c)
    }
}

/// Rebuilds the tokenizer of `file`.
///
/// # Errors
///
/// [`Error::GgufUnsupported`] for tokenizer models or pre-tokenizers not listed in the module
/// docs; [`Error::Tokenizer`] (naming the GGUF) for inconsistent vocabularies: missing or
/// mistyped keys, duplicate tokens, malformed merges, special-token ids out of range.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<GgufTokenizer> {
    let bad = |message: String| Error::Tokenizer {
        path: file.path().to_path_buf(),
        message,
    };
    let model = super::llama::required_str(file, "tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(Error::GgufUnsupported {
            path: file.path().to_path_buf(),
            feature: format!(
                "tokenizer model \"{model}\" (only byte-level BPE, \"gpt2\", can be imported)"
            ),
        });
    }
    let pre = file
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("gpt2");
    let pre_tokenizer = pre_tokenizer(pre).ok_or_else(|| Error::GgufUnsupported {
        path: file.path().to_path_buf(),
        feature: format!("pre-tokenizer \"{pre}\" (supported: smollm, gpt2)"),
    })?;
    let tokens = match file.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
        Some(Array::String(t)) if !t.is_empty() => t.clone(),
        _ => {
            return Err(bad(
                "`tokenizer.ggml.tokens` is missing or not a non-empty string array".into(),
            ));
        }
    };
    let types = match file
        .get("tokenizer.ggml.token_type")
        .and_then(Value::as_array)
    {
        None => vec![token_type::NORMAL; tokens.len()],
        Some(a) => a
            .to_i64_vec()
            .filter(|t| t.len() == tokens.len())
            .ok_or_else(|| {
                bad(format!(
                    "`tokenizer.ggml.token_type` is not an integer array of {} entries",
                    tokens.len()
                ))
            })?,
    };
    let merges = match file.get("tokenizer.ggml.merges").and_then(Value::as_array) {
        Some(Array::String(m)) => m,
        _ => {
            return Err(bad(
                "`tokenizer.ggml.merges` is missing or not a string array".into(),
            ));
        }
    };

    let mut vocab = Map::new();
    let mut added = Vec::new();
    for (id, (token, &kind)) in tokens.iter().zip(&types).enumerate() {
        if vocab.insert(token.clone(), json!(id)).is_some() {
            let first = tokens.iter().position(|t| t == token).unwrap_or(id);
            return Err(bad(format!(
                "token {token:?} appears twice (ids {first} and {id})"
            )));
        }
        if kind == token_type::CONTROL || kind == token_type::USER_DEFINED {
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": kind == token_type::CONTROL,
            }));
        }
    }
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        let (a, b) = m
            .split_once(' ')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(' '))
            .ok_or_else(|| {
                bad(format!(
                    "merge {i} ({m:?}) is not two tokens separated by one space"
                ))
            })?;
        if !vocab.contains_key(a)
            || !vocab.contains_key(b)
            || !vocab.contains_key(&format!("{a}{b}"))
        {
            return Err(bad(format!(
                "merge {i} ({m:?}) uses or makes a token that is not in the vocabulary"
            )));
        }
        pairs.push(json!([a, b]));
    }

    let id = |key: &str| -> Result<Option<u32>> {
        match file.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(i) if (i as usize) < tokens.len() => Ok(Some(i as u32)),
                _ => Err(bad(format!(
                    "`{key}` is {v}, not a token id below {}",
                    tokens.len()
                ))),
            },
        }
    };
    let special = SpecialTokens {
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        eot: id("tokenizer.ggml.eot_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        add_bos: file
            .get("tokenizer.ggml.add_bos_token")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    let post_processor = match special.bos.filter(|_| special.add_bos) {
        Some(bos) => {
            let t = &tokens[bos as usize];
            json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": t, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {t.as_str(): {"id": t, "ids": [bos], "tokens": [t]}}
            })
        }
        None => {
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
        }
    };
    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": pairs,
        },
    });
    let chat_template = file
        .get("tokenizer.chat_template")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(GgufTokenizer {
        tokens,
        tokenizer_json,
        special,
        chat_template,
    })
}

/// The `tokenizer.json` pre-tokenizer for a GGUF pre-tokenizer name.
fn pre_tokenizer(name: &str) -> Option<Json> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    match name {
        "smollm" => Some(json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level],
        })),
        "gpt2" => Some(byte_level),
        _ => None,
    }
}
