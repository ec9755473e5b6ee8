//! The feature draft's cost on the host, at the default model's size (width 576, 9 query and
//! 3 key/value heads of 64, MLP 1536, 8192 tokens scored): one committed input after 200
//! (what a pass that accepted nothing feeds it) and one speculative depth of four candidates,
//! in f32 and, where the CPU has them, bf16 products. A decoding pass runs one of the first
//! and up to `depth - 1` of the second; compare them with the mock's decode step
//! (`neuron-decode bench` prints it).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use parallel_decode::feature_draft::{DraftCache, Speculation, synthetic};
use parallel_decode::loading::feature_draft::DraftConfig;
use parallel_decode::medusa::gemm::Matmul;

fn draft_steps(c: &mut Criterion) {
    let config = DraftConfig {
        hidden: 576,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        intermediate: 1536,
        rope_theta: 100_000.0,
        rms_eps: 1e-5,
    };
    let mut group = c.benchmark_group("feature_draft");
    for matmul in [Matmul::F32, Matmul::fastest()] {
        let name = if matmul == Matmul::F32 { "f32" } else { "bf16" };
        let dir = tempfile::tempdir().unwrap();
        let (draft, _) = synthetic(dir.path(), &config, 49_152, 8192, 1, false, matmul).unwrap();
        let mut cache = DraftCache::default();
        let context = Array2::from_elem((200, 576), 0.1f32);
        let tokens: Vec<u32> = (0..200).collect();
        draft
            .extend(&mut cache, context.view(), &tokens, 4)
            .unwrap();
        let one = Array2::from_elem((1, 576), 0.2f32);
        group.bench_function(format!("{name}: one committed input after 200"), |b| {
            b.iter(|| {
                let mut c = cache.clone();
                draft.extend(&mut c, one.view(), &[7], 4).unwrap()
            })
        });
        let four = Array2::from_elem((4, 576), 0.2f32);
        group.bench_function(format!("{name}: four speculative inputs after 200"), |b| {
            b.iter(|| {
                let mut spec = Speculation::default();
                draft
                    .speculate(&cache, &mut spec, &[None; 4], four.view(), &[1, 2, 3, 4], 4)
                    .unwrap()
            })
        });
        if matmul == Matmul::F32 && Matmul::fastest() == Matmul::F32 {
            break;
        }
    }
    group.finish();
}

criterion_group!(benches, draft_steps);
criterion_main!(benches);
