//! The Llama architecture in GGUF: metadata keys to [`LlamaConfig`], tensor names to Hugging
//! Face names, and undoing the converter's row permutation of the query and key projections.
//!
//! Hugging Face Llama checkpoints apply rotary embeddings to the two *halves* of each head
//! (`rotate_half`), while GGML rotates *adjacent pairs*. When llama.cpp's converter writes a
//! GGUF it therefore reorders the rows of `q_proj` and `k_proj` (weights and biases) within each
//! head: Hugging Face row `half * head_dim / 2 + j` becomes GGUF row `2 * j + half`. Import
//! applies the inverse ([`unpermute_rows`]) so the result runs with Hugging Face semantics.

use serde_json::json;

use super::reader::GgufFile;
use super::value::Value;
use crate::error::{Error, Result};
use crate::loading::config::{LlamaConfig, RawLlamaConfig};

/// How a GGUF tensor maps onto a Hugging Face parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMapping {
    /// The Hugging Face parameter name.
    pub hf_name: String,
    /// For q/k projections, the number of heads whose rows the converter permuted.
    pub permuted_heads: Option<usize>,
}

/// Reads the Llama hyper-parameters from a GGUF file's metadata.
///
/// # Errors
///
/// [`Error::GgufUnsupported`] for other architectures or features this crate cannot run
/// (per-layer head counts, partial rotary dimensions, rope scaling other than linear, Llama 3.1
/// rope frequency factors); [`Error::Config`] naming the GGUF key that is missing or invalid.
pub fn llama_config(file: &GgufFile) -> Result<LlamaConfig> {
    let path = file.path();
    let unsupported = |feature: String| Error::GgufUnsupported {
        path: path.to_path_buf(),
        feature,
    };
    let arch = file
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::config(path, "general.architecture", "is missing or not a string"))?;
    if arch != "llama" {
        return Err(unsupported(format!(
            "architecture \"{arch}\" (only \"llama\" can be imported)"
        )));
    }
    let key = |k: &str| format!("llama.{k}");
    let int = |k: &str| -> Result<Option<u64>> {
        match file.get(&key(k)) {
            None => Ok(None),
            Some(Value::Array(_)) => Err(unsupported(format!("per-layer `{}`", key(k)))),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                Error::config(
                    path,
                    key(k),
                    format!("is {v}, expected an unsigned integer"),
                )
            }),
        }
    };
    let float = |k: &str| -> Result<Option<f64>> {
        match file.get(&key(k)) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                // GGUF stores these as f32: print the shortest decimal that round-trips the f32
                // (1e-5, not 9.99999974e-6) so the written config.json reads as intended.
                .map(|x| format!("{}", x as f32).parse::<f64>().unwrap_or(x))
                .map(Some)
                .ok_or_else(|| Error::config(path, key(k), format!("is {v}, expected a float"))),
        }
    };
    let required = |k: &str| -> Result<u64> {
        int(k)?.ok_or_else(|| Error::config(path, key(k), "is missing"))
    };

    let hidden = required("embedding_length")?;
    let heads = required("attention.head_count")?;
    let head_dim = match (int("attention.key_length")?, int("attention.value_length")?) {
        (Some(k), Some(v)) if k != v => {
            return Err(unsupported(format!(
                "different key ({k}) and value ({v}) head sizes"
            )));
        }
        (Some(k), _) => Some(k),
        (None, v) => v,
    };
    let resolved_head_dim = head_dim.unwrap_or(hidden.checked_div(heads).unwrap_or(0));
    if let Some(rot) = int("rope.dimension_count")?
        && rot != resolved_head_dim
    {
        return Err(unsupported(format!(
            "partial rotary embeddings (rope.dimension_count {rot} < head size {resolved_head_dim})"
        )));
    }
    let scaling = match file.get(&key("rope.scaling.type")).and_then(Value::as_str) {
        None | Some("none") => None,
        Some("linear") => {
            let factor = float("rope.scaling.factor")?
                .ok_or_else(|| Error::config(path, key("rope.scaling.factor"), "is missing"))?;
            Some(json!({"rope_type": "linear", "factor": factor}))
        }
        Some(other) => return Err(unsupported(format!("rope scaling \"{other}\""))),
    };
    if file.tensor("rope_freqs.weight").is_some() {
        return Err(unsupported(
            "rope frequency factors (tensor rope_freqs.weight, Llama 3.1-style scaling)".into(),
        ));
    }
    let tokens = file
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(|a| a.len() as u64);
    let embd_rows = file
        .tensor("token_embd.weight")
        .and_then(|t| t.dims.get(1).copied());
    let vocab = int("vocab_size")?.or(tokens).or(embd_rows);
    let token_id = |k: &str| file.get(k).and_then(Value::as_u64).map(|id| json!(id));
    let raw = RawLlamaConfig {
        model_type: Some("llama".into()),
        vocab_size: vocab,
        hidden_size: Some(hidden),
        intermediate_size: int("feed_forward_length")?,
        num_hidden_layers: int("block_count")?,
        num_attention_heads: Some(heads),
        num_key_value_heads: int("attention.head_count_kv")?,
        head_dim,
        hidden_act: Some("silu".into()),
        max_position_embeddings: int("context_length")?,
        rms_norm_eps: Some(float("attention.layer_norm_rms_epsilon")?.ok_or_else(|| {
            Error::config(path, key("attention.layer_norm_rms_epsilon"), "is missing")
        })?),
        rope_theta: float("rope.freq_base")?,
        rope_scaling: scaling,
        tie_word_embeddings: Some(file.tensor("output.weight").is_none()),
        attention_bias: Some(file.tensor("blk.0.attn_q.bias").is_some()),
        mlp_bias: Some(file.tensor("blk.0.ffn_up.bias").is_some()),
        bos_token_id: token_id("tokenizer.ggml.bos_token_id"),
        eos_token_id: token_id("tokenizer.ggml.eos_token_id"),
        ..RawLlamaConfig::default()
    };
    LlamaConfig::from_raw(&raw, path)
}

/// Whole-model tensors: (GGUF name, Hugging Face name), without the `.weight` suffix.
const MODEL_TENSORS: [(&str, &str); 3] = [
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// Per-layer tensors: (GGUF part of `blk.N.<part>`, Hugging Face part of
/// `model.layers.N.<part>`).
const LAYER_TENSORS: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Heads whose rows the converter permuted, for the GGUF layer part `part`.
fn permuted_heads(part: &str, config: &LlamaConfig) -> Option<usize> {
    match part {
        "attn_q" => Some(config.num_heads),
        "attn_k" => Some(config.num_kv_heads),
        _ => None,
    }
}

/// Splits `<prefix>N.<part>.<weight|bias>` into the layer, the part and the suffix, for layers
/// the model has. Norms have no bias.
fn split_layer_name<'a>(
    name: &'a str,
    prefix: &str,
    config: &LlamaConfig,
) -> Option<(usize, &'a str, &'a str)> {
    let (layer, rest) = name.strip_prefix(prefix)?.split_once('.')?;
    let layer: usize = layer.parse().ok().filter(|&l| l < config.num_layers)?;
    let (part, suffix) = rest.rsplit_once('.')?;
    let is_norm = part.ends_with("norm");
    (suffix == "weight" || (suffix == "bias" && !is_norm)).then_some((layer, part, suffix))
}

/// The Hugging Face name of a GGUF Llama tensor, and whether its rows were permuted.
///
/// Returns `None` for names that are not part of a Llama model with `config`'s layer count.
pub fn map_tensor_name(gguf_name: &str, config: &LlamaConfig) -> Option<TensorMapping> {
    if let Some((_, hf)) = MODEL_TENSORS
        .iter()
        .find(|(g, _)| gguf_name.strip_suffix(".weight") == Some(*g))
    {
        return Some(TensorMapping {
            hf_name: format!("{hf}.weight"),
            permuted_heads: None,
        });
    }
    let (layer, part, suffix) = split_layer_name(gguf_name, "blk.", config)?;
    let (_, hf_part) = LAYER_TENSORS.iter().find(|(g, _)| *g == part)?;
    Some(TensorMapping {
        hf_name: format!("model.layers.{layer}.{hf_part}.{suffix}"),
        permuted_heads: permuted_heads(part, config),
    })
}

/// The inverse of [`map_tensor_name`]: the GGUF name of a Hugging Face Llama parameter, and the
/// heads its rows are permuted by when written to GGUF.
pub fn gguf_tensor_name(hf_name: &str, config: &LlamaConfig) -> Option<(String, Option<usize>)> {
    if let Some((g, _)) = MODEL_TENSORS
        .iter()
        .find(|(_, h)| hf_name.strip_suffix(".weight") == Some(*h))
    {
        return Some((format!("{g}.weight"), None));
    }
    let (layer, part, suffix) = split_layer_name(hf_name, "model.layers.", config)?;
    let (g, _) = LAYER_TENSORS.iter().find(|(_, h)| *h == part)?;
    Some((
        format!("blk.{layer}.{g}.{suffix}"),
        permuted_heads(g, config),
    ))
}

/// Undoes the converter's rotary row permutation on a `[n_heads * head_dim, cols]` row-major
/// matrix (or a bias, `cols = 1`): Hugging Face row `h * head_dim + half * head_dim / 2 + j`
/// is GGUF row `h * head_dim + 2 * j + half`.
///
/// Returns `None` if the length does not split into `n_heads` heads of an even number of rows.
pub fn unpermute_rows(data: &[f32], n_heads: usize, cols: usize) -> Option<Vec<f32>> {
    reorder_rows(data, n_heads, cols, true)
}

/// The converter's permutation (the inverse of [`unpermute_rows`]), used to write GGUF files
/// in the layout llama.cpp expects.
///
/// Returns `None` under the same conditions as [`unpermute_rows`].
pub fn permute_rows(data: &[f32], n_heads: usize, cols: usize) -> Option<Vec<f32>> {
    reorder_rows(data, n_heads, cols, false)
}

fn reorder_rows(data: &[f32], n_heads: usize, cols: usize, to_hf: bool) -> Option<Vec<f32>> {
    let head_dim = head_rows(data.len(), n_heads, cols)?;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_heads {
        for half in 0..2 {
            for j in 0..head_dim / 2 {
                let hf = h * head_dim + half * head_dim / 2 + j;
                let gg = h * head_dim + 2 * j + half;
                let (src, dst) = if to_hf { (gg, hf) } else { (hf, gg) };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Some(out)
}

/// Rows per head, if `len` elements of `cols` columns split into `n_heads` heads of an even
/// number of rows.
fn head_rows(len: usize, n_heads: usize, cols: usize) -> Option<usize> {
    if n_heads == 0 || cols == 0 || !len.is_multiple_of(cols) {
        return None;
    }
    let rows = len / cols;
    (rows.is_multiple_of(n_heads) && (rows / n_heads).is_multiple_of(2)).then_some(rows / n_heads)
}

/// Reads a required string from GGUF metadata, naming the key when missing.
pub(crate) fn required_str<'a>(file: &'a GgufFile, key: &str) -> Result<&'a str> {
    file.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::config(file.path(), key, "is missing or not a string"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The Hugging Face to GGUF permutation as llama.cpp's converter does it: view the rows as
    /// `[n_heads, 2, head_dim / 2]`, swap the last two axes, flatten.
    fn converter_permute(data: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
        let head_dim = data.len() / cols / n_heads;
        let mut out = vec![0f32; data.len()];
        for h in 0..n_heads {
            for half in 0..2 {
                for j in 0..head_dim / 2 {
                    // Source index in [n_heads, 2, head_dim/2] order, destination in
                    // [n_heads, head_dim/2, 2] order.
                    let src = (h * 2 + half) * (head_dim / 2) + j;
                    let dst = (h * (head_dim / 2) + j) * 2 + half;
                    out[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&data[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_converter_permutation() {
        for (heads, head_dim, cols) in [(1, 2, 1), (2, 4, 3), (3, 8, 5), (9, 64, 2)] {
            let data: Vec<f32> = (0..heads * head_dim * cols).map(|i| i as f32).collect();
            let permuted = converter_permute(&data, heads, cols);
            if head_dim > 2 {
                assert_ne!(
                    permuted, data,
                    "the permutation moves rows when head_dim > 2"
                );
            }
            assert_eq!(unpermute_rows(&permuted, heads, cols).unwrap(), data);
            assert_eq!(permute_rows(&data, heads, cols).unwrap(), permuted);
        }
    }

    #[test]
    fn unpermute_moves_rows_as_worked_out_by_hand() {
        // One head of 4 rows: HF rows [a0, a1, b0, b1] (halves a and b) are stored by the
        // converter interleaved as [a0, b0, a1, b1].
        let gguf = [10.0, 20.0, 11.0, 21.0];
        assert_eq!(
            unpermute_rows(&gguf, 1, 1).unwrap(),
            vec![10.0, 11.0, 20.0, 21.0]
        );
        assert_eq!(unpermute_rows(&gguf, 3, 1), None);
        assert_eq!(unpermute_rows(&gguf[..3], 1, 1), None);
    }

    #[test]
    fn maps_every_llama_tensor_name() {
        let mut c = LlamaConfig::from_raw(
            &serde_json::from_value(
                json!({"vocab_size": 8, "hidden_size": 4, "intermediate_size": 8,
                "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1}),
            )
            .unwrap(),
            Path::new("x"),
        )
        .unwrap();
        c.attention_bias = true;
        let m = |n: &str| map_tensor_name(n, &c);
        assert_eq!(
            m("token_embd.weight").unwrap().hf_name,
            "model.embed_tokens.weight"
        );
        assert_eq!(m("output.weight").unwrap().hf_name, "lm_head.weight");
        assert_eq!(m("blk.1.attn_q.weight").unwrap().permuted_heads, Some(2));
        assert_eq!(
            m("blk.1.attn_k.bias").unwrap().hf_name,
            "model.layers.1.self_attn.k_proj.bias"
        );
        assert_eq!(m("blk.1.attn_k.bias").unwrap().permuted_heads, Some(1));
        assert_eq!(
            m("blk.0.ffn_norm.weight").unwrap().hf_name,
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(m("blk.2.attn_q.weight"), None);
        assert_eq!(m("blk.0.ffn_gate_exps.weight"), None);
        assert_eq!(m("blk.x.attn_q.weight"), None);
        assert_eq!(m("blk.0.attn_norm.bias"), None);
        // Every expected tensor is reachable from a GGUF name.
        let hf: Vec<String> = c.expected_tensors().into_iter().map(|(n, _)| n).collect();
        let mut mapped = vec![];
        for g in ["token_embd.weight", "output_norm.weight", "output.weight"] {
            mapped.push(m(g).unwrap().hf_name);
        }
        for l in 0..2 {
            for p in ["attn_norm", "ffn_norm"] {
                mapped.push(m(&format!("blk.{l}.{p}.weight")).unwrap().hf_name);
            }
            for p in ["attn_q", "attn_k", "attn_v", "attn_output"] {
                for s in ["weight", "bias"] {
                    mapped.push(m(&format!("blk.{l}.{p}.{s}")).unwrap().hf_name);
                }
            }
            for p in ["ffn_gate", "ffn_up", "ffn_down"] {
                mapped.push(m(&format!("blk.{l}.{p}.weight")).unwrap().hf_name);
            }
        }
        let mut a = hf.clone();
        a.sort();
        mapped.sort();
        assert_eq!(a, mapped);
        // And back.
        for name in &hf {
            let (g, heads) = gguf_tensor_name(name, &c).unwrap();
            let there = m(&g).unwrap();
            assert_eq!((&there.hf_name, there.permuted_heads), (name, heads));
        }
        assert_eq!(
            gguf_tensor_name("model.layers.9.mlp.up_proj.weight", &c),
            None
        );
    }
}
