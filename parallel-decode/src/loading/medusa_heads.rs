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
//! | `medusa.{h}.next_token.weight` (versions 2 and 3) | `[hidden, hidden]` (`[out, in]`) | F32, F16 or BF16 |
//! | `medusa.{h}.path.{i}.weight` for `i < h` (version 3) | `[hidden, hidden]` (`[out, in]`) | F32, F16 or BF16 |
//! | `answers` (optional, any version) | `[n]` | I32 |
//!
//! Head `h` maps the base model's final hidden state `x` (after the final norm) to
//! `z = x + SiLU(W_h x + b_h)` and scores tokens with the base model's own LM head; it is
//! trained to predict the token `h + 2` positions after `x`'s (the base model predicts `h + 1`
//! = the next one). In version 2 every head also takes the token the base model chose from
//! `x` (the next one, known when the heads run): `z = x + SiLU(W_h x + N_h e + b_h)` with `e`
//! that token's input embedding (`model.embed_tokens.weight`) and `N_h` the
//! `next_token.weight`. In version 3 head `h` also takes the path it extends: the best
//! candidate `c_i` of every head `i < h`, adding `P_{h,i} e(c_i)` (`path.{i}.weight`) inside the
//! SiLU, so that the heads run one after the other and each predicts the token after the
//! ones proposed before it rather than on its own (as Hydra heads do). The `__metadata__` map
//! carries:
//!
//! | key | value |
//! |---|---|
//! | `format` | `medusa-heads` |
//! | `version` | `1`; `2` for heads that take the next token; `3` for heads that take the path |
//! | `heads` | the number of heads |
//! | `hidden` | the base model's hidden size |
//! | `tree` (optional) | a JSON list of paths: the candidate tree measured best for these heads |
//! | `vocab` (optional) | a JSON list of token ids, strictly increasing: the heads' vocabulary |
//! | `base_model` (optional) | what the heads were trained for, for display |
//!
//! `answers` holds the base model's own answers the heads were trained on: every answer's
//! token ids followed by -1. Decoding looks up the words just written among them and proposes
//! what followed ([`crate::strategy::answer_lookup`]).
//!
//! With a vocabulary, the heads score only those tokens (the ones the model's answers use
//! most, chosen when the heads are trained): their candidates are always among them, and the
//! heads graph reads that many rows of the LM head instead of all of them, which is most of
//! its cost.

use std::path::{Path, PathBuf};

use super::safetensors::SafetensorsFile;
use super::trained_file::{check_float_tensor, check_format, parse_vocab, read_f32};
use crate::error::{Error, Result};
use crate::strategy::medusa::MedusaTree;

/// The conventional file name beside a model.
pub const HEADS_FILE: &str = "medusa_heads.safetensors";
/// The `format` metadata value.
pub const HEADS_FORMAT: &str = "medusa-heads";

/// The optional tensor of the answers the heads were trained on.
pub const ANSWERS_TENSOR: &str = "answers";

/// Answers as the `answers` tensor stores them: each answer's token ids, then -1.
///
/// # Errors
/// [`Error::Setting`] for a token id that does not fit an i32.
pub fn encode_answers(answers: &[Vec<u32>]) -> Result<Vec<i32>> {
    let mut out = Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum());
    for answer in answers {
        for &t in answer {
            out.push(i32::try_from(t).map_err(|_| Error::Setting {
                field: "answers",
                message: format!("token id {t} does not fit the answers tensor (i32)"),
            })?);
        }
        out.push(-1);
    }
    Ok(out)
}

/// Reads the `answers` tensor of `file`, if it has one, checking that it is a 1-D I32 tensor
/// of token ids below `vocab_size`, each answer ended by -1.
///
/// # Errors
/// [`Error::Artifacts`] naming the file and the first thing wrong.
pub fn read_answers(file: &SafetensorsFile, vocab_size: usize) -> Result<Option<Vec<Vec<u32>>>> {
    let Some(info) = file.tensors().get(ANSWERS_TENSOR) else {
        return Ok(None);
    };
    let bad = |message: String| Error::Artifacts {
        path: file.path().to_path_buf(),
        message: format!("tensor `{ANSWERS_TENSOR}` {message}"),
    };
    if info.dtype != super::Dtype::I32 || info.shape.len() != 1 {
        return Err(bad(format!(
            "is {} {:?}, expected a 1-D I32 tensor",
            info.dtype, info.shape
        )));
    }
    let mut answers = Vec::new();
    let mut current = Vec::new();
    for (i, bytes) in file.data(info).chunks_exact(4).enumerate() {
        let v = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        match u32::try_from(v) {
            Ok(t) if (t as usize) < vocab_size => current.push(t),
            _ if v == -1 => answers.push(std::mem::take(&mut current)),
            _ => {
                return Err(bad(format!(
                    "holds {v} at {i}: neither a token id below {vocab_size} nor the -1 that ends an answer"
                )));
            }
        }
    }
    if !current.is_empty() {
        return Err(bad(
            "does not end with -1 (the end of its last answer): is it truncated?".into(),
        ));
    }
    Ok(Some(answers))
}

/// What Medusa heads see besides the hidden state; the heads format version says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditioning {
    /// The hidden state only (version 1).
    HiddenOnly,
    /// Also the token the base model chose from it (version 2).
    NextToken,
    /// Also the best candidates of the heads before (version 3).
    Path,
}

impl Conditioning {
    /// Every kind, oldest first.
    pub const ALL: [Conditioning; 3] = [
        Conditioning::HiddenOnly,
        Conditioning::NextToken,
        Conditioning::Path,
    ];

    /// The `version` metadata of heads of this kind.
    pub fn version(self) -> &'static str {
        match self {
            Conditioning::HiddenOnly => "1",
            Conditioning::NextToken => "2",
            Conditioning::Path => "3",
        }
    }

    /// Whether the heads take the next token.
    pub fn takes_next(self) -> bool {
        self != Conditioning::HiddenOnly
    }

    /// Whether each head takes the best candidates of the heads before it.
    pub fn takes_path(self) -> bool {
        self == Conditioning::Path
    }

    /// Every tensor part of head `h` with its shape for a model of width `hidden`: `weight`,
    /// `bias`, then the [`token_parts`](Self::token_parts).
    pub fn head_parts(self, h: usize, hidden: usize) -> Vec<(String, Vec<usize>)> {
        [
            ("weight".to_string(), vec![hidden, hidden]),
            ("bias".to_string(), vec![hidden]),
        ]
        .into_iter()
        .chain(
            self.token_parts(h)
                .into_iter()
                .map(|part| (part, vec![hidden, hidden])),
        )
        .collect()
    }

    /// The parts of head `h` that multiply token embeddings, in the order of the tokens:
    /// the next token's, then the path's.
    pub fn token_parts(self, h: usize) -> Vec<String> {
        neuron_mock::kernels::llama::graph::head_token_parts(
            h,
            self.takes_next(),
            self.takes_path(),
        )
    }
}

/// One head's tensors, as f32.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadTensors {
    /// `W`, `[hidden, hidden]` row-major.
    pub weight: Vec<f32>,
    /// The matrices applied to the embeddings of the tokens the head takes, in the order of
    /// [`Conditioning::token_parts`], each `[hidden, hidden]` row-major.
    pub token_weights: Vec<Vec<f32>>,
    /// `b`, `[hidden]`.
    pub bias: Vec<f32>,
}

/// Name of head `h`'s tensor `part` (`weight`, `bias`, `next_token.weight`,
/// `path.{i}.weight`).
pub fn tensor_name(h: usize, part: &str) -> String {
    format!("medusa.{h}.{part}")
}

/// An opened, validated heads file.
#[derive(Debug)]
pub struct MedusaHeads {
    file: SafetensorsFile,
    count: usize,
    conditioning: Conditioning,
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
        check_format(meta, HEADS_FORMAT, "a Medusa heads file").map_err(bad)?;
        let version = meta.get("version").map(String::as_str);
        let conditioning = Conditioning::ALL
            .into_iter()
            .find(|c| Some(c.version()) == version)
            .ok_or_else(|| {
                bad(format!(
                    "has heads format version {version:?}; this neuron-decode reads versions 1 to {}",
                    Conditioning::Path.version()
                ))
            })?;
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
            for (part, shape) in conditioning.head_parts(h, hidden) {
                check_float_tensor(&file, &tensor_name(h, &part), &shape).map_err(bad)?;
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
        let vocab = meta
            .get("vocab")
            .map(|text| parse_vocab(text).map_err(bad))
            .transpose()?;
        Ok(MedusaHeads {
            file,
            count,
            conditioning,
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

    /// What the heads see besides the hidden state.
    pub fn conditioning(&self) -> Conditioning {
        self.conditioning
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
            .get(&tensor_name(0, "weight"))
            .map_or(super::Dtype::F32, |t| t.dtype)
    }

    /// The answers the heads were trained on, if the file carries them (see the format).
    ///
    /// # Errors
    /// As [`read_answers`].
    pub fn answers(&self, vocab_size: usize) -> Result<Option<Vec<Vec<u32>>>> {
        read_answers(&self.file, vocab_size)
    }

    /// The `base_model` metadata: what the heads were trained for.
    pub fn base_model(&self) -> Option<&str> {
        self.file.metadata().get("base_model").map(String::as_str)
    }

    /// Head `h`'s tensors, as f32.
    ///
    /// # Errors
    /// [`Error::Artifacts`] if `h` is out of range.
    pub fn head(&self, h: usize) -> Result<HeadTensors> {
        if h >= self.count {
            return Err(Error::Artifacts {
                path: self.path().to_path_buf(),
                message: format!("has no head {h}"),
            });
        }
        // Every tensor's shape was checked when the file was opened.
        let read = |part: &str| read_f32(&self.file, &tensor_name(h, part));
        Ok(HeadTensors {
            weight: read("weight")?,
            token_weights: self
                .conditioning
                .token_parts(h)
                .iter()
                .map(|part| read(part))
                .collect::<Result<_>>()?,
            bias: read("bias")?,
        })
    }
}
