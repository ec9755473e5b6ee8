//! An obviously correct Llama forward pass for tests: f64 everywhere, plain loops, no cache,
//! no parallelism, weights fetched by their Hugging Face names. Slow on purpose; the kernels
//! and the device path are checked against it.

/// What the reference needs to know about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceConfig {
    /// Vocabulary size.
    pub vocab: usize,
    /// Model width.
    pub hidden: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Rotary frequencies, `head_dim / 2`.
    pub rope_inv_freq: Vec<f64>,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Whether the LM head is the embedding.
    pub tied_embeddings: bool,
}

/// Logits after every token of `tokens` (positions `0..n`), one row of `vocab` per token.
/// `weight(name)` returns a Hugging Face parameter as row-major f32.
pub fn logits(
    cfg: &ReferenceConfig,
    weight: &dyn Fn(&str) -> Vec<f32>,
    tokens: &[u32],
) -> Vec<Vec<f64>> {
    hidden_states(cfg, weight, tokens)
        .iter()
        .map(|h| {
            let head = if cfg.tied_embeddings {
                weight("model.embed_tokens.weight")
            } else {
                weight("lm_head.weight")
            };
            linear(&head, h, cfg.vocab)
        })
        .collect()
}

/// Final hidden states (after the last norm) for every token.
pub fn hidden_states(
    cfg: &ReferenceConfig,
    weight: &dyn Fn(&str) -> Vec<f32>,
    tokens: &[u32],
) -> Vec<Vec<f64>> {
    let (d, hd, n) = (cfg.hidden, cfg.head_dim, tokens.len());
    let embed = weight("model.embed_tokens.weight");
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| {
            embed[t as usize * d..(t as usize + 1) * d]
                .iter()
                .map(|&v| v as f64)
                .collect()
        })
        .collect();
    for l in 0..cfg.layers {
        let w = |name: &str| weight(&format!("model.layers.{l}.{name}"));
        let (wq, wk, wv, wo) = (
            w("self_attn.q_proj.weight"),
            w("self_attn.k_proj.weight"),
            w("self_attn.v_proj.weight"),
            w("self_attn.o_proj.weight"),
        );
        let (n1, n2) = (
            w("input_layernorm.weight"),
            w("post_attention_layernorm.weight"),
        );
        let (wg, wu, wd) = (
            w("mlp.gate_proj.weight"),
            w("mlp.up_proj.weight"),
            w("mlp.down_proj.weight"),
        );
        let h: Vec<Vec<f64>> = x.iter().map(|xi| rms_norm(xi, &n1, cfg.rms_eps)).collect();
        let mut q: Vec<Vec<f64>> = h.iter().map(|hi| linear(&wq, hi, cfg.heads * hd)).collect();
        let mut k: Vec<Vec<f64>> = h
            .iter()
            .map(|hi| linear(&wk, hi, cfg.kv_heads * hd))
            .collect();
        let v: Vec<Vec<f64>> = h
            .iter()
            .map(|hi| linear(&wv, hi, cfg.kv_heads * hd))
            .collect();
        for t in 0..n {
            rope(&mut q[t], hd, t, &cfg.rope_inv_freq);
            rope(&mut k[t], hd, t, &cfg.rope_inv_freq);
        }
        for t in 0..n {
            let mut attn = vec![0.0; cfg.heads * hd];
            for head in 0..cfg.heads {
                let g = head / (cfg.heads / cfg.kv_heads);
                let qh = &q[t][head * hd..(head + 1) * hd];
                let scores: Vec<f64> = (0..=t)
                    .map(|p| {
                        qh.iter()
                            .zip(&k[p][g * hd..(g + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for p in 0..=t {
                    for j in 0..hd {
                        attn[head * hd + j] += e[p] / total * v[p][g * hd + j];
                    }
                }
            }
            let o = linear(&wo, &attn, d);
            for j in 0..d {
                x[t][j] += o[j];
            }
            let h2 = rms_norm(&x[t], &n2, cfg.rms_eps);
            let gate = linear(&wg, &h2, cfg.intermediate);
            let up = linear(&wu, &h2, cfg.intermediate);
            let act: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let down = linear(&wd, &act, d);
            for j in 0..d {
                x[t][j] += down[j];
            }
        }
    }
    let final_norm = weight("model.norm.weight");
    x.iter()
        .map(|xi| rms_norm(xi, &final_norm, cfg.rms_eps))
        .collect()
}

fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    x.iter()
        .zip(w)
        .map(|(v, w)| v / (ms + eps).sqrt() * *w as f64)
        .collect()
}

fn linear(w: &[f32], x: &[f64], out: usize) -> Vec<f64> {
    (0..out)
        .map(|o| (0..x.len()).map(|k| w[o * x.len() + k] as f64 * x[k]).sum())
        .collect()
}

fn rope(v: &mut [f64], hd: usize, pos: usize, inv_freq: &[f64]) {
    for head in v.chunks_exact_mut(hd) {
        for (i, f) in inv_freq.iter().enumerate() {
            let angle = pos as f64 * f;
            let (a, b) = (head[i], head[i + hd / 2]);
            head[i] = a * angle.cos() - b * angle.sin();
            head[i + hd / 2] = b * angle.cos() + a * angle.sin();
        }
    }
}
