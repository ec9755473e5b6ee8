//! The small JSON files that say how to prompt a model and when it has finished:
//! `generation_config.json` (BOS/EOS ids) and `tokenizer_config.json` (special token strings,
//! the chat template).

use std::path::Path;

use serde_json::Value;

use super::config::token_ids;
use crate::error::{Error, Result};

/// What `generation_config.json` says (both fields empty if the file is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationConfig {
    /// `bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` (one id or a list).
    pub eos_token_ids: Vec<u32>,
}

/// What `tokenizer_config.json` says about special tokens and chat (all empty if the file is
/// absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizerConfig {
    /// The BOS token string.
    pub bos_token: Option<String>,
    /// The EOS token string.
    pub eos_token: Option<String>,
    /// The chat template (the `default` one if the file lists several).
    pub chat_template: Option<String>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if !v.is_object() {
        return Err(Error::Json {
            path: path.to_path_buf(),
            message: "expected a JSON object".into(),
        });
    }
    Ok(Some(v))
}

impl GenerationConfig {
    /// Reads `path` if it exists; ids must be below `vocab_size`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] / [`Error::Json`] for an unreadable file, [`Error::Config`] for ids that
    /// are not token ids of the model.
    pub fn read(path: &Path, vocab_size: usize) -> Result<Self> {
        let Some(v) = read_json(path)? else {
            return Ok(Self::default());
        };
        let bos = token_ids(v.get("bos_token_id"), "bos_token_id", vocab_size, path)?;
        if bos.len() > 1 {
            return Err(Error::config(path, "bos_token_id", "must be a single id"));
        }
        Ok(Self {
            bos_token_id: bos.first().copied(),
            eos_token_ids: token_ids(v.get("eos_token_id"), "eos_token_id", vocab_size, path)?,
        })
    }
}

impl TokenizerConfig {
    /// Reads `path` if it exists.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] / [`Error::Json`] for an unreadable file, [`Error::Config`] for a token
    /// or template field of the wrong type.
    pub fn read(path: &Path) -> Result<Self> {
        let Some(v) = read_json(path)? else {
            return Ok(Self::default());
        };
        Ok(Self {
            bos_token: token_string(&v, "bos_token", path)?,
            eos_token: token_string(&v, "eos_token", path)?,
            chat_template: chat_template(&v, path)?,
        })
    }
}

/// A special token written either as a string or as an added-token object `{"content": ...}`.
fn token_string(v: &Value, field: &str, path: &Path) -> Result<Option<String>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(Error::config(
                path,
                field,
                "is an object without a `content` string",
            )),
        },
        Some(other) => Err(Error::config(
            path,
            field,
            format!("must be a string, got {other}"),
        )),
    }
}

/// `chat_template` is a string, or a list of `{"name", "template"}` of which `default` is used.
fn chat_template(v: &Value, path: &Path) -> Result<Option<String>> {
    match v.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let default = list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"));
            match default
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
            {
                Some(t) => Ok(Some(t.to_string())),
                None => Err(Error::config(
                    path,
                    "chat_template",
                    "lists templates but none named \"default\"",
                )),
            }
        }
        Some(_) => Err(Error::config(
            path,
            "chat_template",
            "must be a string or a list of named templates",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_generation_config() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "g.json",
            r#"{"bos_token_id": 1, "eos_token_id": [2, 7]}"#,
        );
        let g = GenerationConfig::read(&p, 10).unwrap();
        assert_eq!((g.bos_token_id, g.eos_token_ids), (Some(1), vec![2, 7]));
        assert_eq!(
            GenerationConfig::read(&d.path().join("none.json"), 10).unwrap(),
            GenerationConfig::default()
        );
        let p = write(d.path(), "g.json", r#"{"eos_token_id": 70}"#);
        assert!(
            GenerationConfig::read(&p, 10)
                .unwrap_err()
                .to_string()
                .contains("`eos_token_id` (70) is not below vocab_size (10)")
        );
        let p = write(d.path(), "g.json", r#"{"eos_token_id": "x"}"#);
        assert!(GenerationConfig::read(&p, 10).is_err());
        let p = write(d.path(), "g.json", "[]");
        assert!(
            GenerationConfig::read(&p, 10)
                .unwrap_err()
                .to_string()
                .contains("expected a JSON object")
        );
    }

    #[test]
    fn reads_tokenizer_config_in_both_spellings() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "t.json",
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        );
        let t = TokenizerConfig::read(&p).unwrap();
        assert_eq!(t.bos_token.as_deref(), Some("<s>"));
        assert_eq!(t.eos_token.as_deref(), Some("</s>"));
        assert_eq!(t.chat_template.as_deref(), Some("D"));
        let p = write(d.path(), "t.json", r#"{"eos_token": 5}"#);
        assert!(
            TokenizerConfig::read(&p)
                .unwrap_err()
                .to_string()
                .contains("`eos_token` must be a string")
        );
        let p = write(
            d.path(),
            "t.json",
            r#"{"chat_template": [{"name": "x", "template": "T"}]}"#,
        );
        assert!(
            TokenizerConfig::read(&p)
                .unwrap_err()
                .to_string()
                .contains("none named")
        );
        let p = write(d.path(), "t.json", "{broken");
        assert!(
            TokenizerConfig::read(&p)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("{} is not valid", p.display()))
        );
    }
}
