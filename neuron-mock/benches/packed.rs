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
//! `NEURON_MOCK_MATMUL=bf16` measures the bf16 products (on AMX tiles, `packed_amx`, or with
//! AVX-512 BF16 dot products, `packed_dpbf16`) with the weights in bf16 pair panels, as
//! artifacts compiled for bf16 hold them.

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use neuron_mock::kernels::llama::packed::{
    Packed, PackedProduct, PackedScratch, Precision, matmul_packed, pack, pack_bf16_pairs,
};
use neuron_mock::testing::pseudo_random as values;

const LAYERS: usize = 30;
const HIDDEN: usize = 576;
const KV: usize = 192;
const FFN: usize = 1536;

/// A packed matrix: f32 panels, or bf16 pair panels.
enum Matrix {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

impl Matrix {
    fn new(seed: u32, rows: usize, cols: usize, bf16: bool) -> Self {
        let w = values(rows * cols, seed);
        match bf16 {
            true => Matrix::Bf16(pack_bf16_pairs(&w, rows, cols)),
            false => Matrix::F32(pack(&w, rows, cols)),
        }
    }
}

/// One layer's packed matrices: qkv, o, gate+up, down.
struct Layer {
    qkv: Matrix,
    o: Matrix,
    gate_up: Matrix,
    down: Matrix,
}

fn layer(seed: u32, bf16: bool) -> Layer {
    let qkv_rows = HIDDEN + 2 * KV;
    Layer {
        qkv: Matrix::new(seed, qkv_rows, HIDDEN, bf16),
        o: Matrix::new(seed + 1, HIDDEN, HIDDEN, bf16),
        gate_up: Matrix::new(seed + 2, 2 * FFN, HIDDEN, bf16),
        down: Matrix::new(seed + 3, HIDDEN, FFN, bf16),
    }
}

fn product<'a>(w: &'a Matrix, rows: usize, cols: usize, y: &'a mut [f32]) -> PackedProduct<'a> {
    let w = match w {
        Matrix::F32(w) => Packed::new(w, rows, cols),
        Matrix::Bf16(w) => Packed::bf16_pairs(w, rows, cols),
    };
    PackedProduct { w: w.unwrap(), y }
}

fn model_pass(c: &mut Criterion) {
    let bf16 = Precision::from_env() == Ok(Precision::Bf16);
    let layers: Vec<Layer> = (0..LAYERS as u32)
        .map(|l| layer(10 * l + 1, bf16))
        .collect();
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
