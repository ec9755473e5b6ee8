//! The feature-draft file: a one-layer drafter that reads the base model's hidden states
//! (EAGLE's design), trained for one base model.
//!
//! # Format
//!
//! A safetensors file holding (`H` the base model's width, `Q`/`K` the draft's query and
//! key/value heads of width `D`, `I` its MLP width):
//!
//! | tensor | shape | meaning |
//! |---|---|---|
//! | `draft.fc.weight` | `[H, 2H]` | fuses a hidden state `f` and a token embedding `e`: `u = W [f; e] + b` |
//! | `draft.fc.bias` | `[H]` | `b` |
//! | `draft.q.weight` | `[Q·D, H]` | attention query projection of `u` (no norm before it) |
//! | `draft.k.weight` | `[K·D, H]` | key projection |
//! | `draft.v.weight` | `[K·D, H]` | value projection |
//! | `draft.o.weight` | `[H, Q·D]` | attention output projection, added to `u` |
//! | `draft.post.weight` | `[H]` | RMSNorm before the MLP |
//! | `draft.gate.weight`, `draft.up.weight` | `[I, H]` | SwiGLU MLP |
//! | `draft.down.weight` | `[H, I]` | MLP output, added |
//!
//! every one F32, F16 or BF16, matrices in Hugging Face `[out, in]` layout. The draft's
//! output `g = x + down(SiLU(gate(y)) · up(y))`, with `x = u + o(attention(u))` and
//! `y = RMSNorm(x)`, is a guess at the base model's next hidden state (after its final
//! norm), scored by the base model's own LM head over the draft's vocabulary. Attention is
//! causal over the draft's own inputs, with rotary positions counted from the first input
//! (the hidden state of the last prompt token with the first token chosen from it). The
//! `__metadata__` map carries:
//!
//! | key | value |
//! |---|---|
//! | `format` | `feature-draft` |
//! | `version` | `1` |
//! | `hidden` | `H`, the base model's width |
//! | `heads`, `kv_heads`, `head_dim`, `intermediate` | `Q`, `K`, `D`, `I` |
//! | `rope_theta` | the rotary base |
//! | `rms_eps` | the RMSNorm epsilon |
//! | `vocab` | a JSON list of token ids, strictly increasing: the tokens the draft scores |
//! | `vocab_by_frequency` (optional) | the same tokens, the most frequent first (in the answers the draft was trained on): a proposer may score its guesses over a prefix of them only, to read fewer LM head rows |
//! | `base_model` (optional) | what the draft was trained for, for display |
//!
//! `scripts/experiments/context_draft_probe.py --export FILE` writes one from a trained draft.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::safetensors::SafetensorsFile;
use super::trained_file::{check_float_tensor, check_format, parse_vocab, read_f32};
use crate::error::{Error, Result};

/// The `format` metadata value.
pub const DRAFT_FORMAT: &str = "feature-draft";
/// The format version this program reads and writes.
pub const DRAFT_VERSION: &str = "1";

/// The draft's shape, from the file's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftConfig {
    /// The base model's width (and the draft's).
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (a divisor of `heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Rotary base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
}

impl DraftConfig {
    /// Every tensor with its shape.
    pub fn tensors(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (h, q, kv, i) = (
            self.hidden,
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.intermediate,
        );
        vec![
            ("draft.fc.weight", vec![h, 2 * h]),
            ("draft.fc.bias", vec![h]),
            ("draft.q.weight", vec![q, h]),
            ("draft.k.weight", vec![kv, h]),
            ("draft.v.weight", vec![kv, h]),
            ("draft.o.weight", vec![h, q]),
            ("draft.post.weight", vec![h]),
            ("draft.gate.weight", vec![i, h]),
            ("draft.up.weight", vec![i, h]),
            ("draft.down.weight", vec![h, i]),
        ]
    }

    /// The metadata entries of this shape (without `format`, `version` and `vocab`).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        [
            ("hidden", self.hidden.to_string()),
            ("heads", self.heads.to_string()),
            ("kv_heads", self.kv_heads.to_string()),
            ("head_dim", self.head_dim.to_string()),
            ("intermediate", self.intermediate.to_string()),
            ("rope_theta", self.rope_theta.to_string()),
            ("rms_eps", self.rms_eps.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// An opened, validated feature-draft file.
#[derive(Debug)]
pub struct FeatureDraftFile {
    file: SafetensorsFile,
    config: DraftConfig,
    vocab: Vec<u32>,
    by_frequency: Option<Vec<u32>>,
}

impl FeatureDraftFile {
    /// Opens and checks `path` against a base model of width `hidden` and vocabulary
    /// `vocab_size`.
    ///
    /// # Errors
    /// [`Error::Safetensors`] for a corrupt file; [`Error::Artifacts`] naming the file and
    /// what is wrong (metadata, a missing tensor, a shape, an element type, the vocabulary).
    pub fn open(path: &Path, hidden: usize, vocab_size: usize) -> Result<Self> {
        let file = SafetensorsFile::open(path)?;
        let bad = |message: String| Error::Artifacts {
            path: PathBuf::from(path),
            message,
        };
        let meta = file.metadata();
        check_format(meta, DRAFT_FORMAT, "a feature-draft file").map_err(bad)?;
        let version = meta.get("version").map(String::as_str);
        if version != Some(DRAFT_VERSION) {
            return Err(bad(format!(
                "has feature-draft format version {version:?}; this neuron-decode reads version {DRAFT_VERSION}"
            )));
        }
        let number = |key: &str| -> Result<usize> {
            meta.get(key)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| bad(format!("has no valid `{key}` in its metadata")))
        };
        let real = |key: &str| -> Result<f64> {
            meta.get(key)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| bad(format!("has no valid `{key}` in its metadata")))
        };
        let config = DraftConfig {
            hidden: number("hidden")?,
            heads: number("heads")?,
            kv_heads: number("kv_heads")?,
            head_dim: number("head_dim")?,
            intermediate: number("intermediate")?,
            rope_theta: real("rope_theta")?,
            rms_eps: real("rms_eps")? as f32,
        };
        if config.hidden != hidden {
            return Err(bad(format!(
                "was trained for a model of width {}, this model's width is {hidden}",
                config.hidden
            )));
        }
        if !config.heads.is_multiple_of(config.kv_heads) || !config.head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "has {} query heads over {} key/value heads of width {}: the query heads must \
                 be a multiple of the key/value heads, and the width even (rotary pairs)",
                config.heads, config.kv_heads, config.head_dim
            )));
        }
        for (name, shape) in config.tensors() {
            check_float_tensor(&file, name, &shape).map_err(bad)?;
        }
        let vocab = parse_vocab(
            meta.get("vocab")
                .ok_or_else(|| bad("has no `vocab` in its metadata".into()))?,
        )
        .map_err(bad)?;
        if let Some(&last) = vocab.last().filter(|&&t| t as usize >= vocab_size) {
            return Err(bad(format!(
                "metadata `vocab` holds token {last}, past the model's vocabulary of {vocab_size}"
            )));
        }
        let by_frequency = meta
            .get("vocab_by_frequency")
            .map(|text| frequency_order(text, &vocab))
            .transpose()
            .map_err(bad)?;
        Ok(FeatureDraftFile {
            file,
            config,
            vocab,
            by_frequency,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The draft's shape.
    pub fn config(&self) -> &DraftConfig {
        &self.config
    }

    /// The tokens the draft scores, increasing.
    pub fn vocab(&self) -> &[u32] {
        &self.vocab
    }

    /// The same tokens the most frequent first, when the file ranks them.
    pub fn vocab_by_frequency(&self) -> Option<&[u32]> {
        self.by_frequency.as_deref()
    }

    /// The `base_model` metadata: what the draft was trained for.
    pub fn base_model(&self) -> Option<&str> {
        self.file.metadata().get("base_model").map(String::as_str)
    }

    /// Tensor `name` (one of [`DraftConfig::tensors`]) as f32, row-major.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] for a name the format does not have.
    pub fn tensor(&self, name: &str) -> Result<Vec<f32>> {
        read_f32(&self.file, name)
    }
}

/// Parses `vocab_by_frequency`, which must order exactly the tokens of `vocab` (increasing).
fn frequency_order(text: &str, vocab: &[u32]) -> std::result::Result<Vec<u32>, String> {
    let ranked: Vec<u32> = serde_json::from_str(text)
        .map_err(|e| format!("metadata `vocab_by_frequency` is not a list of token ids: {e}"))?;
    let mut sorted = ranked.clone();
    sorted.sort_unstable();
    if sorted != vocab {
        return Err(format!(
            "metadata `vocab_by_frequency` ({} tokens) does not order the tokens of `vocab` \
             ({} tokens) once each",
            ranked.len(),
            vocab.len()
        ));
    }
    Ok(ranked)
}

/// A draft's vocabulary as the file stores it.
#[derive(Debug, Clone, Copy)]
pub struct DraftVocab<'a> {
    /// The tokens scored, strictly increasing.
    pub tokens: &'a [u32],
    /// The same, the most frequent first (optional).
    pub by_frequency: Option<&'a [u32]>,
}

/// Writes a feature-draft file: every tensor of `config` (from `tensor(name, shape)`, f32
/// row-major) stored as `dtype`, with the metadata the format asks for.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `tensor` returns the wrong number of values; [`Error::Io`]
/// when the file cannot be written; [`Error::UnsupportedDtype`] for a non-float `dtype`.
pub fn write_feature_draft(
    path: &Path,
    config: &DraftConfig,
    vocab: DraftVocab<'_>,
    base_model: Option<&str>,
    dtype: super::Dtype,
    mut tensor: impl FnMut(&str, &[usize]) -> Vec<f32>,
) -> Result<()> {
    let mut metadata = config.metadata();
    metadata.insert("format".into(), DRAFT_FORMAT.into());
    metadata.insert("version".into(), DRAFT_VERSION.into());
    let list = |tokens: &[u32]| {
        serde_json::to_string(tokens).map_err(|e| Error::Setting {
            field: "feature draft",
            message: format!("vocabulary: {e}"),
        })
    };
    metadata.insert("vocab".into(), list(vocab.tokens)?);
    if let Some(ranked) = vocab.by_frequency {
        metadata.insert("vocab_by_frequency".into(), list(ranked)?);
    }
    if let Some(name) = base_model {
        metadata.insert("base_model".into(), name.into());
    }
    let tensors = config.tensors();
    let mut writer = super::safetensors::SafetensorsWriter::create(
        path,
        dtype,
        tensors
            .iter()
            .map(|(n, s)| ((*n).to_string(), s.clone()))
            .collect(),
        &metadata,
    )?;
    for (name, shape) in &tensors {
        writer.write_next(name, &tensor(name, shape))?;
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::Dtype;

    fn small() -> DraftConfig {
        DraftConfig {
            hidden: 8,
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
            intermediate: 12,
            rope_theta: 10000.0,
            rms_eps: 1e-5,
        }
    }

    fn write_ranked(path: &Path, config: &DraftConfig, tokens: &[u32], ranked: Option<&[u32]>) {
        let vocab = DraftVocab {
            tokens,
            by_frequency: ranked,
        };
        write_feature_draft(path, config, vocab, Some("toy"), Dtype::F16, |_, shape| {
            vec![0.5; shape.iter().product()]
        })
        .unwrap();
    }

    fn write(path: &Path, config: &DraftConfig, tokens: &[u32]) {
        write_ranked(path, config, tokens, None);
    }

    #[test]
    fn a_written_draft_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        write(&path, &small(), &[1, 5, 9]);
        let f = FeatureDraftFile::open(&path, 8, 20).unwrap();
        assert_eq!(f.config(), &small());
        assert_eq!(f.vocab(), &[1, 5, 9]);
        assert_eq!(f.vocab_by_frequency(), None);
        assert_eq!(f.base_model(), Some("toy"));
        assert_eq!(f.tensor("draft.fc.weight").unwrap(), vec![0.5; 8 * 16]);
        assert!(f.tensor("draft.nothing").is_err());
        write_ranked(&path, &small(), &[1, 5, 9], Some(&[9, 1, 5]));
        let f = FeatureDraftFile::open(&path, 8, 20).unwrap();
        assert_eq!(f.vocab(), &[1, 5, 9]);
        assert_eq!(f.vocab_by_frequency(), Some(&[9, 1, 5][..]));
    }

    #[test]
    fn bad_drafts_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        let message = |path: &Path, hidden, vocab| {
            FeatureDraftFile::open(path, hidden, vocab)
                .unwrap_err()
                .to_string()
        };
        write(&path, &small(), &[1, 5, 9]);
        assert!(message(&path, 16, 20).contains("width 8"));
        assert!(message(&path, 8, 9).contains("token 9"));
        write(&path, &small(), &[5, 1]);
        assert!(message(&path, 8, 20).contains("strictly increasing"));
        // A frequency order that leaves a token out, or repeats one.
        for ranked in [&[9, 1][..], &[9, 1, 1], &[9, 1, 5, 6]] {
            write_ranked(&path, &small(), &[1, 5, 9], Some(ranked));
            assert!(message(&path, 8, 20).contains("vocab_by_frequency"));
        }
        let mut odd = small();
        odd.kv_heads = 3;
        write(&path, &odd, &[1]);
        assert!(message(&path, 8, 20).contains("multiple"));
        // A file of another format, and one missing a tensor.
        crate::medusa::file::write_answers(&path, &[vec![1, 2]]).unwrap();
        assert!(message(&path, 8, 20).contains("not a feature-draft file"));
        let mut meta = small().metadata();
        meta.insert("format".into(), DRAFT_FORMAT.into());
        meta.insert("version".into(), DRAFT_VERSION.into());
        meta.insert("vocab".into(), "[1]".into());
        let mut w = super::super::safetensors::SafetensorsWriter::create(
            &path,
            Dtype::F32,
            vec![("draft.fc.weight".into(), vec![8, 16])],
            &meta,
        )
        .unwrap();
        w.write_next("draft.fc.weight", &[0.0; 128]).unwrap();
        w.finish().unwrap();
        assert!(message(&path, 8, 20).contains("no tensor `draft.fc.bias`"));
        // A truncated file.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(FeatureDraftFile::open(&path, 8, 20).is_err());
    }
}
