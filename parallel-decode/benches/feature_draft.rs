//! The feature draft's cost on the host, at the default model's size (width 576, 9 query and
//! 3 key/value heads of 64, MLP 1536, 8192 tokens scored): one committed input after 200
//! (what a pass that accepted nothing feeds it) and one speculative depth of four candidates,
//! with f32, bf16 (where the CPU has the products) and 8-bit weights; the speculative depth
//! also scoring only the 2048 most frequent tokens (the proposer's default), and after the
//! caches were flushed by streaming 256 MB (as a target pass does). A decoding pass runs one
//! of the first and up to `depth - 1` of the second; compare them with the mock's decode step
//! (`neuron-decode bench` prints it).
//!
//! The draft is bound by reading its weights (about 18 MB in bf16 with the whole vocabulary,
//! half of them LM head rows) and, with a few rows, by the arithmetic: what it costs depends
//! on whether they stay in the last-level cache from one run to the next, which the hot
//! figures here assume and the flushed ones do not.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use parallel_decode::feature_draft::{DraftCache, DraftWeights, Scoring, Speculation, synthetic};
use parallel_decode::loading::feature_draft::DraftConfig;

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
    for weights in [DraftWeights::F32, DraftWeights::Bf16, DraftWeights::Int8] {
        if weights.check().is_err() {
            continue;
        }
        let name = format!("{weights:?}").to_lowercase();
        let dir = tempfile::tempdir().unwrap();
        let (draft, _) = synthetic(dir.path(), &config, 49_152, 8192, 1, false, weights).unwrap();
        let mut cache = DraftCache::default();
        let context = Array2::from_elem((200, 576), 0.1f32);
        let tokens: Vec<u32> = (0..200).collect();
        draft
            .extend(&mut cache, context.view(), &tokens, Scoring::all(4))
            .unwrap();
        let one = Array2::from_elem((1, 576), 0.2f32);
        group.bench_function(format!("{name}: one committed input after 200"), |b| {
            b.iter(|| {
                let mut c = cache.clone();
                draft
                    .extend(&mut c, one.view(), &[7], Scoring::all(4))
                    .unwrap()
            })
        });
        let four = Array2::from_elem((4, 576), 0.2f32);
        let speculate = |scoring: Scoring| {
            let mut spec = Speculation::default();
            draft
                .speculate(
                    &cache,
                    &mut spec,
                    &[None; 4],
                    four.view(),
                    &[1, 2, 3, 4],
                    scoring,
                )
                .unwrap()
        };
        let frequent = Scoring {
            top_k: 4,
            tokens: 2048,
        };
        for (label, scoring) in [("", Scoring::all(4)), (", 2048 tokens scored", frequent)] {
            group.bench_function(
                format!("{name}: four speculative inputs after 200{label}"),
                |b| b.iter(|| speculate(scoring)),
            );
            group.bench_function(
                format!("{name}: four speculative inputs after 200{label}, caches flushed"),
                |b| b.iter_batched(flush, |_| speculate(scoring), BatchSize::PerIteration),
            );
        }
    }
    group.finish();
}

/// Streams 256 MB through the caches, as a target pass over the model's weights does.
fn flush() -> f32 {
    thread_local! {
        static BIG: Vec<f32> = vec![1.0; 64 << 20];
    }
    BIG.with(|big| big.iter().step_by(16).sum())
}

criterion_group!(benches, draft_steps);
criterion_main!(benches);
