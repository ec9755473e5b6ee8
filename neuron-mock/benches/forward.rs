//! Whole forward passes of a SmolLM2-135M-shaped model (random weights, 30 layers, width 576,
//! 9 query and 3 key/value heads, MLP 1536, 49,152-token LM head) over a 256-token context:
//! what a decode step (1 token) and a verify pass (a chain of `T` tokens) cost, products,
//! attention, norms and the thread pool's wake-ups included (the `packed` bench times the
//! products alone, back to back).
//!
//! - `forward/outside_pool/T`: the pass called from a thread outside the pool, as a client's
//!   execution thread would: every parallel product hands its work to the pool and waits.
//! - `forward/in_pool/T`: the same pass run on a pool thread (`rayon::scope`), which works on
//!   the products itself and wakes only the other workers.
//!
//! - `distill/C`: a self-distillation pass, 64 rows of one token each at `C` cached positions,
//!   on a pool thread (the bf16 matrices under `NEURON_MOCK_MATMUL=bf16`).
//!
//! `cargo bench -p neuron-mock --bench forward`; compare within one run.
//! `NEURON_MOCK_MATMUL=bf16` measures the bf16 products (on AMX tiles, `packed_amx`, or with
//! AVX-512 BF16 dot products, `packed_dpbf16`), and adds
//! `forward/bf16_matrices/T`: the pass outside the pool with the layer matrices and the LM
//! head stored in bf16 pair panels (`packed::pack_bf16_pairs`), as compiled artifacts hold
//! them then.

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use neuron_mock::kernels::llama::forward::{
    Batch, Dims, LayerWeights, OutputAt, Outputs, Row, Scratch, SingleRank, Weights, forward,
};
use neuron_mock::kernels::llama::linalg::rope_inv_freq;
use neuron_mock::kernels::llama::packed::{Packed, Precision, pack, pack_bf16_pairs};
use neuron_mock::testing::pseudo_random;

const VOCAB: usize = 49_152;
const HIDDEN: usize = 576;
const FFN: usize = 1536;
const LAYERS: usize = 30;
const Q_HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;
const CONTEXT: usize = 256;

struct Layer {
    /// The seven matrices in bf16 pair panels, in the order q, k, v, o, gate, up, down.
    bf16: Vec<Vec<u16>>,
    norm: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
}

/// Small random weights (so that activations stay finite over 30 layers), row-major.
fn weights(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
    pseudo_random(rows * cols, seed)
        .into_iter()
        .map(|v| v * 0.02)
        .collect()
}

/// [`weights`], packed.
fn matrix(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
    pack(&weights(rows, cols, seed), rows, cols)
}

/// The shapes of a layer's seven matrices, q, k, v, o, gate, up, down.
const SHAPES: [(usize, usize); 7] = [
    (Q_HEADS * HEAD_DIM, HIDDEN),
    (KV_HEADS * HEAD_DIM, HIDDEN),
    (KV_HEADS * HEAD_DIM, HIDDEN),
    (HIDDEN, Q_HEADS * HEAD_DIM),
    (FFN, HIDDEN),
    (FFN, HIDDEN),
    (HIDDEN, FFN),
];

fn layer(seed: u32) -> Layer {
    let (qw, kvw) = (Q_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let bf16 = if Precision::from_env() == Ok(Precision::Bf16) {
        (0..7u32)
            .map(|i| {
                let (rows, cols) = SHAPES[i as usize];
                pack_bf16_pairs(&weights(rows, cols, seed + i), rows, cols)
            })
            .collect()
    } else {
        Vec::new()
    };
    Layer {
        bf16,
        norm: vec![1.0; HIDDEN],
        q: matrix(qw, HIDDEN, seed),
        k: matrix(kvw, HIDDEN, seed + 1),
        v: matrix(kvw, HIDDEN, seed + 2),
        o: matrix(HIDDEN, qw, seed + 3),
        gate: matrix(FFN, HIDDEN, seed + 4),
        up: matrix(FFN, HIDDEN, seed + 5),
        down: matrix(HIDDEN, FFN, seed + 6),
    }
}

fn view(data: &[f32], rows: usize, cols: usize) -> Packed<'_> {
    Packed::new(data, rows, cols).unwrap()
}

/// The model's weights: the layer matrices and the LM head in f32 panels or, given the LM
/// head in bf16 pair panels, those.
fn model<'a>(
    layers: &'a [Layer],
    embed: &'a [f32],
    norm: &'a [f32],
    bf16_lm_head: Option<&'a [u16]>,
) -> Weights<'a> {
    let bf16 = bf16_lm_head.is_some();
    Weights {
        embed: view(embed, VOCAB, HIDDEN),
        layers: layers
            .iter()
            .map(|l| {
                let m = |i: usize, f32s: &'a [f32]| {
                    let (rows, cols) = SHAPES[i];
                    match bf16 {
                        true => Packed::bf16_pairs(&l.bf16[i], rows, cols).unwrap(),
                        false => view(f32s, rows, cols),
                    }
                };
                LayerWeights {
                    input_norm: &l.norm,
                    q_proj: m(0, &l.q),
                    k_proj: m(1, &l.k),
                    v_proj: m(2, &l.v),
                    o_proj: m(3, &l.o),
                    post_norm: &l.norm,
                    gate_proj: m(4, &l.gate),
                    up_proj: m(5, &l.up),
                    down_proj: m(6, &l.down),
                }
            })
            .collect(),
        final_norm: norm,
        lm_head: match bf16_lm_head {
            Some(pairs) => Packed::bf16_pairs(pairs, VOCAB, HIDDEN).unwrap(),
            None => view(embed, VOCAB, HIDDEN),
        },
    }
}

fn forward_pass(c: &mut Criterion) {
    let layers: Vec<Layer> = (0..LAYERS as u32).map(|l| layer(10 * l + 1)).collect();
    let embedding = weights(VOCAB, HIDDEN, 7);
    let embed = pack(&embedding, VOCAB, HIDDEN);
    let bf16_lm_head =
        (!layers[0].bf16.is_empty()).then(|| pack_bf16_pairs(&embedding, VOCAB, HIDDEN));
    let final_norm = vec![1.0; HIDDEN];
    let f32_weights = model(&layers, &embed, &final_norm, None);
    let bf16_weights = bf16_lm_head
        .as_deref()
        .map(|lm_head| model(&layers, &embed, &final_norm, Some(lm_head)));
    let dims = Dims {
        vocab: VOCAB,
        hidden: HIDDEN,
        intermediate: FFN,
        layers: LAYERS,
        q_heads: Q_HEADS,
        kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        rope_inv_freq: rope_inv_freq(10_000.0, HEAD_DIM),
        rms_eps: 1e-5,
        max_len: CONTEXT + 64,
        slots: 1,
        vocab_offset: 0,
        vocab_local: VOCAB,
    };
    let mut kv = pseudo_random(dims.kv_cache_len(), 3);
    let mut scratch = Scratch::default();
    let mut group = c.benchmark_group("forward");
    group.sample_size(20);
    for tokens in [1usize, 2, 4, 8, 16] {
        let ids: Vec<i32> = (0..tokens as i32).map(|t| 100 + t).collect();
        let positions: Vec<i32> = (0..tokens as i32).map(|t| CONTEXT as i32 + t).collect();
        let at: Vec<usize> = (0..tokens).collect();
        let mut logits = vec![0.0; tokens * VOCAB];
        let mut next = vec![0; tokens];
        let mut pass = |weights: &Weights<'_>| {
            let rows = [Row {
                slot: 0,
                cache_len: CONTEXT,
                tokens: &ids,
                positions: &positions,
                mask: None,
                width: tokens,
            }];
            let batch = Batch {
                rows: &rows,
                output_at: OutputAt::All,
            };
            let out = Outputs {
                at: &at,
                logits: Some(&mut logits),
                hidden: None,
                next_token: Some(&mut next),
            };
            forward(
                &dims,
                weights,
                &mut kv,
                batch,
                out,
                &SingleRank,
                &mut scratch,
            )
            .unwrap();
        };
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(BenchmarkId::new("outside_pool", tokens), &tokens, |b, _| {
            b.iter(|| pass(&f32_weights))
        });
        group.bench_with_input(BenchmarkId::new("in_pool", tokens), &tokens, |b, _| {
            b.iter(|| rayon::scope(|_| pass(&f32_weights)))
        });
        if let Some(weights) = &bf16_weights {
            group.bench_with_input(
                BenchmarkId::new("bf16_matrices", tokens),
                &tokens,
                |b, _| b.iter(|| pass(weights)),
            );
        }
    }
    group.finish();
    distillation_passes(c, bf16_weights.as_ref().unwrap_or(&f32_weights), dims);
}

/// Rows of the measured distillation pass (`neuron-decode train-heads --rows`, 128 by default).
const DISTILL_ROWS: usize = 64;

/// `distill/C`: a pass of [`DISTILL_ROWS`] rows of one token each, every row `C` positions
/// into its own slot, on a pool thread as self-distillation runs them (with the bf16 matrices under
/// `NEURON_MOCK_MATMUL=bf16`). The weights stream once for all rows while each row reads its
/// own keys and values, so how the time grows with `C` is the attention's share.
fn distillation_passes(c: &mut Criterion, weights: &Weights<'_>, dims: Dims) {
    const CONTEXTS: [usize; 3] = [64, 256, 512];
    let dims = Dims {
        slots: DISTILL_ROWS,
        max_len: CONTEXTS[CONTEXTS.len() - 1] + 1,
        ..dims
    };
    // Zeros: the values do not change the work, and untouched pages cost nothing to make.
    let mut kv = vec![0.0f32; dims.kv_cache_len()];
    let mut scratch = Scratch::default();
    let mut group = c.benchmark_group("distill");
    group.sample_size(10);
    group.throughput(Throughput::Elements(DISTILL_ROWS as u64));
    let ids: Vec<[i32; 1]> = (0..DISTILL_ROWS as i32).map(|r| [100 + r]).collect();
    let at: Vec<usize> = (0..DISTILL_ROWS).collect();
    let mut logits = vec![0.0; DISTILL_ROWS * VOCAB];
    let mut hidden = vec![0.0; DISTILL_ROWS * HIDDEN];
    let mut next = vec![0; DISTILL_ROWS];
    for context in CONTEXTS {
        let positions = [context as i32];
        let rows: Vec<Row<'_>> = ids
            .iter()
            .enumerate()
            .map(|(slot, ids)| Row {
                slot,
                cache_len: context,
                tokens: ids,
                positions: &positions,
                mask: None,
                width: 1,
            })
            .collect();
        group.bench_with_input(BenchmarkId::from_parameter(context), &context, |b, _| {
            b.iter(|| {
                let out = Outputs {
                    at: &at,
                    logits: Some(&mut logits),
                    hidden: Some(&mut hidden),
                    next_token: Some(&mut next),
                };
                let batch = Batch {
                    rows: &rows,
                    output_at: OutputAt::Last,
                };
                // On a pool thread, as the mock runs a model's passes.
                rayon::scope(|_| {
                    forward(
                        &dims,
                        weights,
                        &mut kv,
                        batch,
                        out,
                        &SingleRank,
                        &mut scratch,
                    )
                })
                .unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward_pass);
criterion_main!(benches);
