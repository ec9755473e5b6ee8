//! Prompt sets for self-distillation: JSON lines with a `prompt` field.

use std::path::Path;

use crate::error::{Error, Result};

/// The prompt set the default model's heads were trained on
/// (`parallel-decode/data/medusa_train_prompts.jsonl`, written by
/// `scripts/gen-medusa-prompts.py`; kept apart from the benchmark prompts).
pub const TRAIN_PROMPTS: &str = include_str!("../../data/medusa_train_prompts.jsonl");

/// Every `n`-th prompt (the first, the `n + 1`-th, ...) is held out for evaluation.
pub const HELD_OUT_EVERY: usize = 10;

/// Parses JSON lines with a string `prompt` field (other fields are ignored; blank lines are
/// skipped). `path` names the source in errors.
///
/// # Errors
/// [`Error::Json`] naming the line that is not an object with a string `prompt`.
pub fn parse_prompts(path: &Path, text: &str) -> Result<Vec<String>> {
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Json {
            path: path.to_path_buf(),
            message: format!("line {}: {message}", i + 1),
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let prompt = value
            .get("prompt")
            .and_then(|p| p.as_str())
            .ok_or_else(|| bad("has no string field `prompt`".into()))?;
        prompts.push(prompt.to_string());
    }
    if prompts.is_empty() {
        return Err(Error::Json {
            path: path.to_path_buf(),
            message: "holds no prompts".into(),
        });
    }
    Ok(prompts)
}

/// Reads a prompt file.
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] naming the file.
pub fn read_prompts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
    parse_prompts(path, &text)
}

/// Splits prompt indices `0..count` into (training, held out).
pub fn split(count: usize) -> (Vec<usize>, Vec<usize>) {
    (0..count).partition(|i| i % HELD_OUT_EVERY != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_set_parses_and_splits() {
        let p = parse_prompts(Path::new("train.jsonl"), TRAIN_PROMPTS).unwrap();
        assert!(p.len() >= 300, "{}", p.len());
        let (train, held) = split(p.len());
        assert_eq!(train.len() + held.len(), p.len());
        assert!(held.len() >= p.len() / HELD_OUT_EVERY);
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse_prompts(Path::new("p.jsonl"), "{\"prompt\": \"a\"}\n{\"q\": 1}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.jsonl") && err.contains("line 2"), "{err}");
        assert!(parse_prompts(Path::new("p.jsonl"), "\n").is_err());
        assert!(parse_prompts(Path::new("p.jsonl"), "not json").is_err());
    }
}
