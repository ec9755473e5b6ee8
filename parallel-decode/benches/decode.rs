//! Host overhead of the decoding loop, which the design budgets at under 10 us per step at
//! batch 1, flat in the context length:
//!
//! - `engine/toy`: the whole loop (propose, verify bookkeeping, emit) over the in-process toy
//!   model, whose "device" work is a few hundred nanoseconds: an upper bound on the engine's
//!   own cost per token.
//! - `device/tiny`: autoregressive steps of a tiny Llama through the Neuron backend on the
//!   mock: host work (writing step inputs, reading the argmax) plus the mock's dispatch, with
//!   next to no kernel time, at two context lengths to show it does not grow with the context.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use neuron_rt::Runtime;
use parallel_decode::artifacts::{CompileOptions, compile};
use parallel_decode::backend::neuron::NeuronModel;
use parallel_decode::backend::toy::{ToyConfig, ToyModel};
use parallel_decode::backend::{LanguageModel, TreeRow};
use parallel_decode::engine::{GenerateConfig, generate};
use parallel_decode::loading::synthetic::{TinyLlama, write_tiny_llama};
use parallel_decode::loading::{ModelDir, NoProgress};
use parallel_decode::strategy::proposer::Autoregressive;
use parallel_decode::strategy::tree::TokenTree;

const TOKENS: usize = 256;

fn engine_overhead(c: &mut Criterion) {
    let mut model = ToyModel::new(ToyConfig {
        vocab: 8,
        window: 1,
        max_len: 4096,
        ..ToyConfig::default()
    });
    let config = GenerateConfig {
        max_tokens: TOKENS,
        ..GenerateConfig::default()
    };
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(TOKENS as u64));
    group.bench_function("toy model, 256 tokens", |b| {
        b.iter(|| {
            generate(
                &mut model,
                &mut Autoregressive,
                &[1, 2, 3],
                &config,
                &mut |_: &[u32]| true,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn device_overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama(&dir.path().join("m"), &TinyLlama::default()).unwrap();
    let source = ModelDir::open(&dir.path().join("m")).unwrap();
    let options = CompileOptions {
        slots: 1,
        max_len: 256,
        prefill_buckets: vec![128],
        verify_buckets: vec![1],
        ..CompileOptions::default()
    };
    compile(&source, None, &dir.path().join("a"), &options, &NoProgress).unwrap();
    let rt = Runtime::builder()
        .lib_path(neuron_mock::testing::library_path())
        .init()
        .unwrap();
    let mut model = NeuronModel::open(&rt, &dir.path().join("a"), &NoProgress).unwrap();
    for context in [8usize, 200] {
        let prompt: Vec<u32> = (0..context as u32).map(|i| 10 + i % 200).collect();
        model.prefill(0, &prompt).unwrap();
        let tree = TokenTree::new(42);
        // Host time: the step minus the time spent inside the graph execution.
        c.bench_function(
            &format!("device/tiny decode step, host part, context {context}"),
            |b| {
                b.iter_custom(|iters| {
                    let device_before = model.device_time();
                    let start = Instant::now();
                    for _ in 0..iters {
                        model
                            .verify(&[TreeRow {
                                slot: 0,
                                cache_len: context,
                                tree: &tree,
                            }])
                            .unwrap();
                    }
                    start
                        .elapsed()
                        .saturating_sub(model.device_time() - device_before)
                })
            },
        );
    }
}

criterion_group!(benches, engine_overhead, device_overhead);
criterion_main!(benches);
