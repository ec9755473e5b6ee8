//! The cost curve of the mock's weight products: one pass over SmolLM2-135M-sized weights
//! (30 layers of query/key/value, output, gate/up and down projections, 424 MB of f32, far
//! more than the caches) for 1 to 32 tokens, as a decode step or a verify pass of a tree of
//! that many tokens makes it.
//!
//! - `packed/model_pass/T`: every layer's products for `T` tokens. The ratio of `T` tokens to
//!   one token is what decides how large a candidate tree pays off on this machine: one token
//!   is bound by memory bandwidth, many by multiply-add throughput.
//!
//! Compare within one run (the machines are shared): `cargo bench -p neuron-mock --bench
//! packed`. `NEURON_MOCK_SIMD=avx2` measures the 256-bit kernels on an AVX-512 machine.
//! `NEURON_MOCK_MATMUL=bf16` measures the bf16 products on AMX tiles (`packed_amx`).

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use neuron_mock::kernels::llama::packed::{
    Packed, PackedProduct, PackedScratch, matmul_packed, pack,
};
use neuron_mock::testing::pseudo_random as values;

const LAYERS: usize = 30;
const HIDDEN: usize = 576;
const KV: usize = 192;
const FFN: usize = 1536;

/// One layer's packed matrices: (rows, cols, data) for qkv, o, gate+up, down.
struct Layer {
    qkv: Vec<f32>,
    o: Vec<f32>,
    gate_up: Vec<f32>,
    down: Vec<f32>,
}

fn layer(seed: u32) -> Layer {
    let qkv_rows = HIDDEN + 2 * KV;
    Layer {
        qkv: pack(&values(qkv_rows * HIDDEN, seed), qkv_rows, HIDDEN),
        o: pack(&values(HIDDEN * HIDDEN, seed + 1), HIDDEN, HIDDEN),
        gate_up: pack(&values(2 * FFN * HIDDEN, seed + 2), 2 * FFN, HIDDEN),
        down: pack(&values(HIDDEN * FFN, seed + 3), HIDDEN, FFN),
    }
}

fn product<'a>(w: &'a [f32], rows: usize, cols: usize, y: &'a mut [f32]) -> PackedProduct<'a> {
    PackedProduct {
        w: Packed::new(w, rows, cols).unwrap(),
        y,
    }
}

fn model_pass(c: &mut Criterion) {
    let layers: Vec<Layer> = (0..LAYERS as u32).map(|l| layer(10 * l + 1)).collect();
    let mut scratch = PackedScratch::default();
    let mut group = c.benchmark_group("packed/model_pass");
    group.sample_size(20);
    for tokens in [1usize, 2, 4, 6, 8, 12, 16, 32] {
        let x = values(tokens * FFN, 7);
        let mut qkv = vec![0.0; tokens * (HIDDEN + 2 * KV)];
        let mut o = vec![0.0; tokens * HIDDEN];
        let mut gate_up = vec![0.0; tokens * 2 * FFN];
        let mut down = vec![0.0; tokens * HIDDEN];
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(BenchmarkId::from_parameter(tokens), &tokens, |b, &t| {
            b.iter(|| {
                for l in &layers {
                    let x576 = &x[..t * HIDDEN];
                    let mut p = [product(&l.qkv, HIDDEN + 2 * KV, HIDDEN, &mut qkv)];
                    matmul_packed(&mut p, x576, HIDDEN, t, &mut scratch);
                    let mut p = [product(&l.o, HIDDEN, HIDDEN, &mut o)];
                    matmul_packed(&mut p, x576, HIDDEN, t, &mut scratch);
                    let mut p = [product(&l.gate_up, 2 * FFN, HIDDEN, &mut gate_up)];
                    matmul_packed(&mut p, x576, HIDDEN, t, &mut scratch);
                    let mut p = [product(&l.down, HIDDEN, FFN, &mut down)];
                    matmul_packed(&mut p, &x[..t * FFN], FFN, t, &mut scratch);
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, model_pass);
criterion_main!(benches);
