//! The Medusa heads file: extra decoding heads trained for a base model.
//!
//! # Format
//!
//! A safetensors file (conventionally `medusa_heads.safetensors` beside the model) holding, for
//! each head `h` in `0..heads`:
//!
//! | tensor | shape | dtype |
//! |---|---|---|
//! | `medusa.{h}.weight` | `[hidden, hidden]` (Hugging Face `[out, in]` layout) | F32, F16 or BF16 |
//! | `medusa.{h}.bias` | `[hidden]` | F32, F16 or BF16 |
//!
//! Head `h` maps the base model's final hidden state `x` (after the final norm) to
//! `z = x + SiLU(W_h x + b_h)` and scores tokens with the base model's own LM head; it is
//! trained to predict the token `h + 2` positions after `x`'s (the base model predicts `h + 1`
//! = the next one). The `__metadata__` map carries:
//!
//! | key | value |
//! |---|---|
//! | `format` | `medusa-heads` |
//! | `version` | `1` |
//! | `heads` | the number of heads |
//! | `hidden` | the base model's hidden size |
//! | `tree` (optional) | a JSON list of paths: the candidate tree measured best for these heads |
//! | `vocab` (optional) | a JSON list of token ids, strictly increasing: the heads' vocabulary |
//! | `base_model` (optional) | what the heads were trained for, for display |
//!
//! With a vocabulary, the heads score only those tokens (the ones the model's answers use
//! most, chosen when the heads are trained): their candidates are always among them, and the
//! heads graph reads that many rows of the LM head instead of all of them, which is most of
//! its cost.

use std::path::{Path, PathBuf};

use super::dtype::decode_f32;
use super::safetensors::SafetensorsFile;
use crate::error::{Error, Result};
use crate::strategy::medusa::MedusaTree;

/// The conventional file name beside a model.
pub const HEADS_FILE: &str = "medusa_heads.safetensors";
/// The `format` metadata value.
pub const HEADS_FORMAT: &str = "medusa-heads";

/// An opened, validated heads file.
#[derive(Debug)]
pub struct MedusaHeads {
    file: SafetensorsFile,
    count: usize,
    hidden: usize,
    tree: Option<MedusaTree>,
    vocab: Option<Vec<u32>>,
}

impl MedusaHeads {
    /// Opens and checks `path` against a base model of width `hidden`.
    ///
    /// # Errors
    /// [`Error::Artifacts`] naming the file and what is wrong (metadata, a missing tensor, a
    /// shape, a tree).
    pub fn open(path: &Path, hidden: usize) -> Result<Self> {
        let file = SafetensorsFile::open(path)?;
        let bad = |message: String| Error::Artifacts {
            path: PathBuf::from(path),
            message,
        };
        let meta = file.metadata();
        match meta.get("format").map(String::as_str) {
            Some(HEADS_FORMAT) => {}
            other => {
                return Err(bad(format!(
                    "is not a Medusa heads file (metadata format is {other:?}, expected {HEADS_FORMAT:?})"
                )));
            }
        }
        if meta.get("version").map(String::as_str) != Some("1") {
            return Err(bad(format!(
                "has heads format version {:?}; this neuron-decode reads version 1",
                meta.get("version")
            )));
        }
        let count: usize = meta
            .get("heads")
            .and_then(|h| h.parse().ok())
            .filter(|&h| h > 0)
            .ok_or_else(|| bad("has no valid `heads` count in its metadata".into()))?;
        let declared_hidden: usize = meta
            .get("hidden")
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| bad("has no valid `hidden` size in its metadata".into()))?;
        if declared_hidden != hidden {
            return Err(bad(format!(
                "was trained for a model of width {declared_hidden}, this model's width is {hidden}"
            )));
        }
        for h in 0..count {
            for (name, shape) in [
                (format!("medusa.{h}.weight"), vec![hidden, hidden]),
                (format!("medusa.{h}.bias"), vec![hidden]),
            ] {
                let info = file
                    .tensors()
                    .get(&name)
                    .ok_or_else(|| bad(format!("has no tensor `{name}`")))?;
                if info.shape != shape {
                    return Err(bad(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        info.shape
                    )));
                }
                if !info.dtype.is_float() {
                    return Err(bad(format!(
                        "tensor `{name}` has element type {}, not a float type",
                        info.dtype
                    )));
                }
            }
        }
        let tree = match meta.get("tree") {
            None => None,
            Some(text) => {
                let paths: Vec<Vec<usize>> = serde_json::from_str(text)
                    .map_err(|e| bad(format!("metadata `tree` is not a list of paths: {e}")))?;
                let tree =
                    MedusaTree::new(paths).map_err(|e| bad(format!("metadata `tree`: {e}")))?;
                if tree.depth() > count {
                    return Err(bad(format!(
                        "metadata `tree` is {} deep but there are {count} heads",
                        tree.depth()
                    )));
                }
                Some(tree)
            }
        };
        let vocab = match meta.get("vocab") {
            None => None,
            Some(text) => {
                let ids: Vec<u32> = serde_json::from_str(text).map_err(|e| {
                    bad(format!("metadata `vocab` is not a list of token ids: {e}"))
                })?;
                if ids.is_empty() {
                    return Err(bad("metadata `vocab` is empty".into()));
                }
                if let Some(w) = ids.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(bad(format!(
                        "metadata `vocab` is not strictly increasing ({} then {})",
                        w[0], w[1]
                    )));
                }
                Some(ids)
            }
        };
        Ok(MedusaHeads {
            file,
            count,
            hidden,
            tree,
            vocab,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Number of heads.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The candidate tree stored with the heads, if any.
    pub fn tree(&self) -> Option<&MedusaTree> {
        self.tree.as_ref()
    }

    /// The heads' vocabulary (token ids, increasing), if they score only some tokens.
    pub fn vocab(&self) -> Option<&[u32]> {
        self.vocab.as_deref()
    }

    /// The element type the weights are stored in (of head 0's weight; the format allows any
    /// float type per tensor).
    pub fn dtype(&self) -> super::Dtype {
        self.file
            .tensors()
            .get("medusa.0.weight")
            .map_or(super::Dtype::F32, |t| t.dtype)
    }

    /// The `base_model` metadata: what the heads were trained for.
    pub fn base_model(&self) -> Option<&str> {
        self.file.metadata().get("base_model").map(String::as_str)
    }

    /// Head `h`'s weight `[hidden, hidden]` and bias `[hidden]`, as f32.
    ///
    /// # Errors
    /// [`Error::Artifacts`] if `h` is out of range.
    pub fn head(&self, h: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        if h >= self.count {
            return Err(Error::Artifacts {
                path: self.path().to_path_buf(),
                message: format!("has no head {h}"),
            });
        }
        let read = |name: String, len: usize| -> Result<Vec<f32>> {
            let info = self
                .file
                .tensors()
                .get(&name)
                .ok_or_else(|| Error::MissingTensor {
                    path: self.path().to_path_buf(),
                    tensor: name.clone(),
                })?;
            let mut out = vec![0.0; len];
            if !decode_f32(info.dtype, self.file.data(info), &mut out) {
                return Err(Error::UnsupportedDtype {
                    path: self.path().to_path_buf(),
                    tensor: name,
                    dtype: info.dtype.to_string(),
                });
            }
            Ok(out)
        };
        let d = self.hidden;
        Ok((
            read(format!("medusa.{h}.weight"), d * d)?,
            read(format!("medusa.{h}.bias"), d)?,
        ))
    }
}
