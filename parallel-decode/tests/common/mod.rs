//! Helpers shared by the device tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use neuron_mock::reference::ReferenceConfig;
use parallel_decode::loading::ModelDir;

/// The f64 reference forward pass's view of a model, and a weight getter over its files.
pub fn reference_logits(source: &ModelDir, tokens: &[u32]) -> Vec<Vec<f64>> {
    let c = source.config();
    let cfg = ReferenceConfig {
        vocab: c.vocab_size,
        hidden: c.hidden_size,
        intermediate: c.intermediate_size,
        layers: c.num_layers,
        heads: c.num_heads,
        kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
        rope_inv_freq: c.rope_inv_freq(),
        rms_eps: c.rms_norm_eps,
        tied_embeddings: c.tie_word_embeddings,
    };
    let weight = |name: &str| source.weights().get(name).unwrap().to_f32().unwrap().data;
    neuron_mock::reference::logits(&cfg, &weight, tokens)
}
