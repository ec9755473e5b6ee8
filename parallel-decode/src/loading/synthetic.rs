//! Tiny deterministic Llama models for tests, examples and benchmarks.
//!
//! A [`TinyLlama`] describes a model of a few thousand parameters with seeded pseudo-random
//! weights and a small byte-level BPE vocabulary (the 256 bytes, a few merges, and the ChatML
//! special tokens `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`). [`TinyLlama::to_gguf`] writes
//! it as a GGUF file laid out exactly as llama.cpp's converter lays out a Llama (query/key rows
//! permuted for GGML's rotary embedding), and [`write_tiny_llama`] imports that GGUF into a
//! Hugging Face directory, so tests exercise the same path as real models.

use std::path::Path;

use super::config::{LlamaConfig, RawLlamaConfig};
use super::gguf::llama::{gguf_tensor_name, permute_rows};
use super::gguf::{
    GgufFile, GgufWriter, ImportOptions, ImportSummary, Value, import_gguf, value::Array,
};
use super::mapped::FileBytes;
use super::progress::NoProgress;
use super::weights::Tensor;
use crate::error::Result;

/// The ChatML template the tiny models carry.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Special tokens, at ids 0, 1, 2.
const SPECIAL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// Merges after the byte alphabet (in GGUF "left right" form).
const MERGES: [&str; 6] = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "o n"];

/// The shape of a tiny model. Every field can be changed; [`Default`] gives 2 layers of width
/// 16 with grouped-query attention (4 query heads, 2 key/value heads).
#[derive(Debug, Clone, PartialEq)]
pub struct TinyLlama {
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Share the embedding with the output head.
    pub tie_word_embeddings: bool,
    /// Seed of the weights.
    pub seed: u64,
}

impl Default for TinyLlama {
    fn default() -> Self {
        Self {
            hidden_size: 16,
            intermediate_size: 32,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            tie_word_embeddings: true,
            seed: 1,
        }
    }
}

impl TinyLlama {
    /// The vocabulary: special tokens, the byte alphabet in byte order, then merged tokens.
    pub fn tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = SPECIAL.iter().map(|s| s.to_string()).collect();
        tokens.extend((0..=255u8).map(|b| byte_char(b).to_string()));
        tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
        tokens
    }

    /// The validated configuration.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Config`] if the sizes are inconsistent (heads not dividing the width).
    pub fn config(&self) -> Result<LlamaConfig> {
        let raw = RawLlamaConfig {
            vocab_size: Some(self.tokens().len() as u64),
            hidden_size: Some(self.hidden_size as u64),
            intermediate_size: Some(self.intermediate_size as u64),
            num_hidden_layers: Some(self.num_layers as u64),
            num_attention_heads: Some(self.num_heads as u64),
            num_key_value_heads: Some(self.num_kv_heads as u64),
            max_position_embeddings: Some(256),
            rms_norm_eps: Some(1e-5),
            rope_theta: Some(10_000.0),
            tie_word_embeddings: Some(self.tie_word_embeddings),
            bos_token_id: Some(1.into()),
            eos_token_id: Some(2.into()),
            ..RawLlamaConfig::default()
        };
        LlamaConfig::from_raw(&raw, Path::new("synthetic"))
    }

    /// The weights in Hugging Face layout and names: norms near 1, everything else uniform in
    /// ±0.5 / sqrt(fan-in), from a seeded generator.
    ///
    /// # Errors
    ///
    /// As [`TinyLlama::config`].
    pub fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut rng = SplitMix64(self.seed);
        Ok(self
            .config()?
            .expected_tensors()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let data = if name.ends_with("norm.weight") {
                    (0..n).map(|_| 1.0 + 0.1 * rng.uniform()).collect()
                } else {
                    let scale = 1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt();
                    (0..n).map(|_| rng.uniform() * scale).collect()
                };
                (name, Tensor { shape, data })
            })
            .collect())
    }

    /// The model as a GGUF file with `F32` tensors, as llama.cpp's converter would write it.
    ///
    /// # Errors
    ///
    /// As [`TinyLlama::config`].
    pub fn to_gguf(&self) -> Result<GgufWriter> {
        let c = self.config()?;
        let mut w = self.gguf_metadata()?;
        for (name, Tensor { shape, data }) in self.weights()? {
            // Every name comes from `expected_tensors`, which the mapping covers.
            let Some((gguf_name, heads)) = gguf_tensor_name(&name, &c) else {
                continue;
            };
            let data = match heads {
                Some(h) => {
                    permute_rows(&data, h, shape.get(1).copied().unwrap_or(1)).unwrap_or(data)
                }
                None => data,
            };
            w.tensor_f32(&gguf_name, &shape, &data);
        }
        Ok(w)
    }

    /// A GGUF writer holding this model's metadata (hyper-parameters, tokenizer, chat template)
    /// and no tensors, for tests that add tensors of their own.
    ///
    /// # Errors
    ///
    /// As [`TinyLlama::config`].
    pub fn gguf_metadata(&self) -> Result<GgufWriter> {
        let c = self.config()?;
        let mut w = GgufWriter::new();
        let u32v = |v: usize| Value::U32(v as u32);
        w.metadata("general.architecture", Value::String("llama".into()))
            .metadata("general.name", Value::String("tiny-llama".into()))
            .metadata("llama.block_count", u32v(c.num_layers))
            .metadata("llama.context_length", u32v(c.max_position_embeddings))
            .metadata("llama.embedding_length", u32v(c.hidden_size))
            .metadata("llama.feed_forward_length", u32v(c.intermediate_size))
            .metadata("llama.attention.head_count", u32v(c.num_heads))
            .metadata("llama.attention.head_count_kv", u32v(c.num_kv_heads))
            .metadata("llama.rope.freq_base", Value::F32(c.rope_theta as f32))
            .metadata("llama.rope.dimension_count", u32v(c.head_dim))
            .metadata(
                "llama.attention.layer_norm_rms_epsilon",
                Value::F32(c.rms_norm_eps as f32),
            )
            .metadata("tokenizer.ggml.model", Value::String("gpt2".into()))
            .metadata("tokenizer.ggml.pre", Value::String("smollm".into()))
            .metadata(
                "tokenizer.ggml.tokens",
                Value::Array(Array::String(self.tokens())),
            )
            .metadata(
                "tokenizer.ggml.token_type",
                Value::Array(Array::I32(
                    (0..self.tokens().len())
                        .map(|i| if i < SPECIAL.len() { 3 } else { 1 })
                        .collect(),
                )),
            )
            .metadata(
                "tokenizer.ggml.merges",
                Value::Array(Array::String(
                    MERGES.iter().map(|m| m.to_string()).collect(),
                )),
            )
            .metadata("tokenizer.ggml.bos_token_id", Value::U32(1))
            .metadata("tokenizer.ggml.eos_token_id", Value::U32(2))
            .metadata("tokenizer.ggml.add_bos_token", Value::Bool(false))
            .metadata(
                "tokenizer.chat_template",
                Value::String(CHATML_TEMPLATE.into()),
            );
        Ok(w)
    }
}

/// Writes `spec` as a Hugging Face model directory in `dir` (by importing its GGUF form), with
/// `f32` weights.
///
/// # Errors
///
/// As [`import_gguf`]: invalid sizes in `spec`, or a failure to write.
pub fn write_tiny_llama(dir: &Path, spec: &TinyLlama) -> Result<ImportSummary> {
    let file = GgufFile::parse(FileBytes::owned(
        "tiny-llama.gguf",
        spec.to_gguf()?.to_bytes(),
    ))?;
    let options = ImportOptions {
        overwrite: true,
        ..ImportOptions::default()
    };
    import_gguf(&file, dir, &options, &NoProgress)
}

/// The GPT-2 byte-level character for a byte.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// A small, fast, seeded generator (SplitMix64); quality is ample for test weights.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-0.5, 0.5).
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_match_gpt2() {
        assert_eq!(byte_char(b' '), 'Ġ');
        assert_eq!(byte_char(b'\n'), 'Ċ');
        assert_eq!(byte_char(b'a'), 'a');
        assert_eq!(byte_char(0xAD), '\u{143}');
    }

    #[test]
    fn weights_are_deterministic_and_seeded() {
        let a = TinyLlama::default();
        assert_eq!(a.weights().unwrap(), a.weights().unwrap());
        let b = TinyLlama {
            seed: 2,
            ..a.clone()
        };
        assert_ne!(a.weights().unwrap()[0].1, b.weights().unwrap()[0].1);
        assert_eq!(
            a.weights().unwrap().len(),
            a.config().unwrap().expected_tensors().len()
        );
        let bad = TinyLlama { num_heads: 3, ..a };
        assert!(bad.config().is_err());
    }
}
