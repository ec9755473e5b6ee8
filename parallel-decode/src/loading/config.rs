//! Llama-family model configuration: the `config.json` form and the validated form.
//!
//! [`RawLlamaConfig`] is `config.json` as Hugging Face writes it (every field optional, unknown
//! fields ignored). [`LlamaConfig`] is what the rest of the crate uses: every value present,
//! defaults applied the way Hugging Face `transformers` applies them, and the fields checked
//! against each other, so that code using it never has to re-check (for example that the key/value
//! heads divide the query heads).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// `config.json` as written by Hugging Face, before validation.
///
/// Fields keep their Hugging Face names. Both the transformers 4 spelling of rotary settings
/// (`rope_theta`, `rope_scaling`) and the transformers 5 one (`rope_parameters`) are read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[allow(missing_docs)] // The fields are the documented Hugging Face ones.
pub struct RawLlamaConfig {
    pub model_type: Option<String>,
    pub architectures: Option<Vec<String>>,
    pub vocab_size: Option<u64>,
    pub hidden_size: Option<u64>,
    pub intermediate_size: Option<u64>,
    pub num_hidden_layers: Option<u64>,
    pub num_attention_heads: Option<u64>,
    pub num_key_value_heads: Option<u64>,
    pub head_dim: Option<u64>,
    pub hidden_act: Option<String>,
    pub max_position_embeddings: Option<u64>,
    pub rms_norm_eps: Option<f64>,
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<Value>,
    pub rope_parameters: Option<Value>,
    pub tie_word_embeddings: Option<bool>,
    pub attention_bias: Option<bool>,
    pub mlp_bias: Option<bool>,
    pub bos_token_id: Option<Value>,
    pub eos_token_id: Option<Value>,
}

/// How rotary position embedding frequencies are rescaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum RopeScaling {
    /// Positions divided by `factor` (`"rope_type": "linear"`).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling (`"rope_type": "llama3"`).
    Llama3 {
        /// How much low frequencies are divided by.
        factor: f64,
        /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are
        /// fully scaled.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are
        /// left alone; between the two, the scale is interpolated.
        high_freq_factor: f64,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: u64,
    },
}

/// A validated Llama-family configuration.
///
/// Built by [`LlamaConfig::from_file`] / [`LlamaConfig::from_raw`]; every invariant listed on
/// the fields holds.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Rows of the embedding and of the output projection. Greater than every token id.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Query heads. A multiple of `num_kv_heads`.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head. Even (rotary embeddings rotate pairs).
    pub head_dim: usize,
    /// Base of the rotary embedding frequencies.
    pub rope_theta: f64,
    /// Long-context rescaling of the rotary frequencies, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// Epsilon inside the RMS norms. Positive.
    pub rms_norm_eps: f64,
    /// The output projection is the embedding matrix (no separate `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Longest sequence the model was trained for.
    pub max_position_embeddings: usize,
    /// The q/k/v/o projections have biases.
    pub attention_bias: bool,
    /// The MLP projections have biases.
    pub mlp_bias: bool,
    /// Beginning-of-sequence token, if the model has one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens from `config.json` (generation may add more, see
    /// [`crate::loading::ModelDir::eos_token_ids`]).
    pub eos_token_ids: Vec<u32>,
}

impl LlamaConfig {
    /// Reads and validates `config.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read, [`Error::Json`] if it is not JSON of the
    /// expected form, [`Error::Config`] naming the field if a value is missing, out of range or
    /// contradicts another one.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read", e))?;
        let raw: RawLlamaConfig = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_raw(&raw, path)
    }

    /// Validates a raw configuration; `path` is only used in error messages.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the field at fault.
    pub fn from_raw(raw: &RawLlamaConfig, path: &Path) -> Result<Self> {
        let err = |field: &str, message: String| Error::config(path, field, message);
        if let Some(model_type) = &raw.model_type
            && model_type != "llama"
        {
            return Err(err(
                "model_type",
                format!("is \"{model_type}\"; only Llama-family models (\"llama\") are supported"),
            ));
        }
        if let Some(act) = &raw.hidden_act
            && act != "silu"
        {
            return Err(err(
                "hidden_act",
                format!("is \"{act}\"; Llama models use \"silu\""),
            ));
        }
        // Limits far beyond any released model, so that a corrupt or hostile value is refused
        // here rather than sizing loops and allocations later.
        let limit = |field: &str| -> u64 {
            match field {
                "vocab_size" | "max_position_embeddings" => 1 << 24,
                "num_hidden_layers" | "num_attention_heads" | "num_key_value_heads" => 1 << 12,
                _ => 1 << 20,
            }
        };
        let required = |field: &str, v: Option<u64>| -> Result<usize> {
            match v {
                None => Err(err(field, "is missing".into())),
                Some(0) => Err(err(field, "must be positive, got 0".into())),
                Some(n) if n > limit(field) => Err(err(
                    field,
                    format!(
                        "is {n}, beyond any plausible model (at most {}); the file is corrupt",
                        limit(field)
                    ),
                )),
                Some(n) => {
                    usize::try_from(n).map_err(|_| err(field, format!("is too large ({n})")))
                }
            }
        };
        let vocab_size = required("vocab_size", raw.vocab_size)?;
        let hidden_size = required("hidden_size", raw.hidden_size)?;
        let intermediate_size = required("intermediate_size", raw.intermediate_size)?;
        let num_layers = required("num_hidden_layers", raw.num_hidden_layers)?;
        let num_heads = required("num_attention_heads", raw.num_attention_heads)?;
        let num_kv_heads = required(
            "num_key_value_heads",
            Some(raw.num_key_value_heads.unwrap_or(num_heads as u64)),
        )?;
        if num_heads % num_kv_heads != 0 {
            return Err(err(
                "num_key_value_heads",
                format!("({num_kv_heads}) must divide num_attention_heads ({num_heads})"),
            ));
        }
        let head_dim = match raw.head_dim {
            Some(_) => required("head_dim", raw.head_dim)?,
            None => {
                if hidden_size % num_heads != 0 {
                    return Err(err(
                        "hidden_size",
                        format!(
                            "({hidden_size}) is not a multiple of num_attention_heads ({num_heads}) and no head_dim is given"
                        ),
                    ));
                }
                hidden_size / num_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(err(
                "head_dim",
                format!("({head_dim}) must be even for rotary embeddings"),
            ));
        }
        let max_position_embeddings = required(
            "max_position_embeddings",
            Some(raw.max_position_embeddings.unwrap_or(2048)),
        )?;
        let rms_norm_eps = raw.rms_norm_eps.unwrap_or(1e-6);
        if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
            return Err(err(
                "rms_norm_eps",
                format!("must be a positive number, got {rms_norm_eps}"),
            ));
        }
        let (rope_theta, rope_scaling) = resolve_rope(raw, path)?;
        let bos_token_id = match &raw.bos_token_id {
            None | Some(Value::Null) => None,
            Some(v) => Some(token_id(v, "bos_token_id", vocab_size, path)?),
        };
        let eos_token_ids = token_ids(raw.eos_token_id.as_ref(), "eos_token_id", vocab_size, path)?;
        Ok(Self {
            vocab_size,
            hidden_size,
            intermediate_size,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta,
            rope_scaling,
            rms_norm_eps,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            max_position_embeddings,
            attention_bias: raw.attention_bias.unwrap_or(false),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            bos_token_id,
            eos_token_ids,
        })
    }

    /// Every parameter tensor the model has, with its Hugging Face name and shape, in the order
    /// Hugging Face lists them (embedding, then each layer, then the final norm and head).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                out.push((format!("{p}.self_attn.{name}.weight"), vec![rows, h]));
                if self.attention_bias {
                    out.push((format!("{p}.self_attn.{name}.bias"), vec![rows]));
                }
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            if self.attention_bias {
                out.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
            }
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            for (name, shape) in [
                ("gate_proj", vec![i, h]),
                ("up_proj", vec![i, h]),
                ("down_proj", vec![h, i]),
            ] {
                let rows = shape[0];
                out.push((format!("{p}.mlp.{name}.weight"), shape));
                if self.mlp_bias {
                    out.push((format!("{p}.mlp.{name}.bias"), vec![rows]));
                }
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }

    /// The tensor the LM head reads: `lm_head.weight`, or the token embedding when the two
    /// are tied.
    pub fn lm_head_tensor(&self) -> &'static str {
        if self.tie_word_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        }
    }

    /// The inverse frequencies of the rotary embedding, `head_dim / 2` of them, with
    /// [`RopeScaling`] applied as Hugging Face `transformers` applies it.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        let base: Vec<f64> = (0..self.head_dim / 2)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / d))
            .collect();
        match self.rope_scaling {
            None => base,
            Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let old = original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// The configuration as a Hugging Face `config.json` value (what GGUF import writes).
    pub fn to_hf_json(&self) -> Value {
        let rope_scaling = match self.rope_scaling {
            None => Value::Null,
            Some(RopeScaling::Linear { factor }) => {
                json!({"rope_type": "linear", "factor": factor})
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": rope_scaling,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        })
    }

    /// Number of parameters (elements of all tensors in [`Self::expected_tensors`]).
    pub fn parameter_count(&self) -> u64 {
        self.expected_tensors()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum()
    }
}

/// Reads the rotary settings from either spelling (`rope_theta` + `rope_scaling`, or
/// `rope_parameters`), refusing scaling kinds this crate does not implement.
fn resolve_rope(raw: &RawLlamaConfig, path: &Path) -> Result<(f64, Option<RopeScaling>)> {
    let params = raw.rope_parameters.as_ref().filter(|v| !v.is_null());
    let (field, scaling) = match (params, raw.rope_scaling.as_ref().filter(|v| !v.is_null())) {
        (Some(p), _) => ("rope_parameters", Some(p)),
        (None, s) => ("rope_scaling", s),
    };
    let theta_in_params = params
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64);
    let rope_theta = theta_in_params.or(raw.rope_theta).unwrap_or(10_000.0);
    if !(rope_theta.is_finite() && rope_theta > 0.0) {
        return Err(Error::config(
            path,
            "rope_theta",
            format!("must be a positive number, got {rope_theta}"),
        ));
    }
    let Some(scaling) = scaling else {
        return Ok((rope_theta, None));
    };
    let kind = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let number = |key: &str| -> Result<f64> {
        let v = scaling.get(key).and_then(Value::as_f64).ok_or_else(|| {
            Error::config(
                path,
                format!("{field}.{key}"),
                format!("is missing (needed by rope type \"{kind}\")"),
            )
        })?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(Error::config(
                path,
                format!("{field}.{key}"),
                format!("must be positive, got {v}"),
            ))
        }
    };
    let scaling = match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: number("factor")?,
        }),
        "llama3" => {
            let low_freq_factor = number("low_freq_factor")?;
            let high_freq_factor = number("high_freq_factor")?;
            if high_freq_factor <= low_freq_factor {
                return Err(Error::config(
                    path,
                    format!("{field}.high_freq_factor"),
                    format!(
                        "({high_freq_factor}) must be greater than low_freq_factor ({low_freq_factor})"
                    ),
                ));
            }
            Some(RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: number("original_max_position_embeddings")?
                    as u64,
            })
        }
        other => {
            return Err(Error::config(
                path,
                format!("{field}.rope_type"),
                format!(
                    "is \"{other}\", which is not supported (supported: default, linear, llama3)"
                ),
            ));
        }
    };
    Ok((rope_theta, scaling))
}

fn token_id(v: &Value, field: &str, vocab_size: usize, path: &Path) -> Result<u32> {
    let id = v
        .as_u64()
        .ok_or_else(|| Error::config(path, field, format!("must be a token id, got {v}")))?;
    if id >= vocab_size as u64 {
        return Err(Error::config(
            path,
            field,
            format!("({id}) is not below vocab_size ({vocab_size})"),
        ));
    }
    // In range of vocab_size, which fits in usize; token ids are u32 throughout.
    u32::try_from(id)
        .map_err(|_| Error::config(path, field, format!("({id}) does not fit in 32 bits")))
}

/// Reads a token id field that may be a single id, a list of ids, or null.
pub(crate) fn token_ids(
    v: Option<&Value>,
    field: &str,
    vocab_size: usize,
    path: &Path,
) -> Result<Vec<u32>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| token_id(i, field, vocab_size, path))
            .collect(),
        Some(one) => Ok(vec![token_id(one, field, vocab_size, path)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
            "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
            "hidden_act": "silu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
            "rope_theta": 100000.0, "rope_scaling": null, "tie_word_embeddings": true,
            "bos_token_id": 1, "eos_token_id": 2, "some_future_field": {"x": 1}
        })
    }

    fn resolve(v: Value) -> Result<LlamaConfig> {
        let raw: RawLlamaConfig = serde_json::from_value(v).unwrap();
        LlamaConfig::from_raw(&raw, Path::new("config.json"))
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = smollm();
        v[key] = value;
        v
    }

    fn without(key: &str) -> Value {
        let mut v = smollm();
        v.as_object_mut().unwrap().remove(key);
        v
    }

    #[test]
    fn resolves_smollm2() {
        let c = resolve(smollm()).unwrap();
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (9, 3, 64));
        assert_eq!(c.eos_token_ids, vec![2]);
        assert_eq!(c.bos_token_id, Some(1));
        assert!(c.tie_word_embeddings);
        // 30 layers x 9 tensors + embedding + final norm; no lm_head when tied.
        assert_eq!(c.expected_tensors().len(), 30 * 9 + 2);
        assert_eq!(c.parameter_count(), 134_515_008);
    }

    #[test]
    fn round_trips_through_hf_json() {
        let c = resolve(smollm()).unwrap();
        assert_eq!(resolve(c.to_hf_json()).unwrap(), c);
        let c = resolve(with(
            "rope_scaling",
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        ))
        .unwrap();
        assert_eq!(resolve(c.to_hf_json()).unwrap(), c);
    }

    #[test]
    fn applies_hugging_face_defaults() {
        let c = resolve(without("num_key_value_heads")).unwrap();
        assert_eq!(c.num_kv_heads, 9);
        let c = resolve(without("rope_theta")).unwrap();
        assert_eq!(c.rope_theta, 10_000.0);
        let c = resolve(without("tie_word_embeddings")).unwrap();
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.expected_tensors().last().unwrap().0, "lm_head.weight");
    }

    #[test]
    fn reads_transformers_5_rope_parameters() {
        let mut v = without("rope_theta");
        v["rope_parameters"] =
            json!({"rope_theta": 500000.0, "rope_type": "linear", "factor": 2.0});
        let c = resolve(v).unwrap();
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
    }

    #[test]
    fn names_missing_and_contradictory_fields() {
        let msg = |v| resolve(v).unwrap_err().to_string();
        assert_eq!(
            msg(without("hidden_size")),
            "config.json: `hidden_size` is missing"
        );
        assert_eq!(
            msg(with("num_key_value_heads", json!(4))),
            "config.json: `num_key_value_heads` (4) must divide num_attention_heads (9)"
        );
        assert!(msg(with("num_attention_heads", json!(15))).contains("not a multiple"));
        assert!(msg(with("head_dim", json!(63))).contains("must be even"));
        assert!(
            msg(with("eos_token_id", json!(49152)))
                .contains("`eos_token_id` (49152) is not below vocab_size")
        );
        assert!(msg(with("model_type", json!("gpt2"))).contains("only Llama-family"));
        assert!(msg(with("hidden_act", json!("gelu"))).contains("silu"));
        assert!(msg(with("rms_norm_eps", json!(-1.0))).contains("positive"));
        assert!(msg(with("vocab_size", json!(0))).contains("must be positive"));
        assert_eq!(
            msg(with("rope_scaling", json!({"type": "yarn", "factor": 4.0}))),
            "config.json: `rope_scaling.rope_type` is \"yarn\", which is not supported (supported: default, linear, llama3)"
        );
        assert!(
            msg(with(
                "rope_scaling",
                json!({"rope_type": "llama3", "factor": 8.0})
            ))
            .contains("low_freq_factor")
        );
    }

    #[test]
    fn eos_may_be_a_list() {
        let c = resolve(with("eos_token_id", json!([2, 0]))).unwrap();
        assert_eq!(c.eos_token_ids, vec![2, 0]);
    }

    #[test]
    fn llama3_rope_scaling_matches_hand_computed_values() {
        let mut c = resolve(smollm()).unwrap();
        c.head_dim = 4;
        c.rope_theta = 10_000.0;
        // Frequencies 1 and 1/100: wavelengths 2*pi (short, kept) and 200*pi = 628 (between
        // 8192/4 = 2048 and 8192/1: scaled fully? no: 628 < 2048, so kept too).
        c.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        });
        assert_eq!(c.rope_inv_freq(), vec![1.0, 0.01]);
        // With a small original context, 628 > 64/1 so the second frequency is divided by 8.
        c.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        });
        assert_eq!(c.rope_inv_freq(), vec![1.0, 0.01 / 8.0]);
        // Between the two wavelengths: 2*pi*100 = 628.3; old = 1024 => low 1024, high 256:
        // smooth = (1024/628.3 - 1) / 3 = 0.2099; (1 - s) * f / 8 + s * f.
        c.rope_scaling = Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 1024,
        });
        let s = (1024.0 / (200.0 * std::f64::consts::PI) - 1.0) / 3.0;
        let expected = (1.0 - s) * 0.01 / 8.0 + s * 0.01;
        assert!((c.rope_inv_freq()[1] - expected).abs() < 1e-15);
        c.rope_scaling = Some(RopeScaling::Linear { factor: 2.0 });
        assert_eq!(c.rope_inv_freq(), vec![0.5, 0.005]);
    }
    #[test]
    fn implausible_sizes_are_refused_before_anything_is_sized_by_them() {
        // A corrupt layer count once made the tensor list billions of names long.
        let raw = RawLlamaConfig {
            vocab_size: Some(100),
            hidden_size: Some(16),
            intermediate_size: Some(32),
            num_hidden_layers: Some(2_147_483_648),
            num_attention_heads: Some(4),
            ..RawLlamaConfig::default()
        };
        let err = LlamaConfig::from_raw(&raw, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("num_hidden_layers") && err.contains("corrupt"),
            "{err}"
        );
    }
}
