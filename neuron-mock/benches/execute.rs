//! Host overhead of the mock's C API, measured through the dynamic loader like any client.
//!
//! - `execute/copy_pairs/N`: `nrt_execute` of a `copy` kernel binding N inputs and N outputs
//!   of 4 bytes each, so the time is the per-execution overhead (handle lookups, the cached
//!   plan's checks, output locks, views) and its growth with the number of bound tensors.
//! - `tensor/write_read_64B`: one `nrt_tensor_write` plus one `nrt_tensor_read` of 64 bytes.
//! - `all_reduce/2_ranks/576`: one execution per rank of a 576-float all-reduce, two ranks on
//!   two threads: the rendezvous cost per collective.

#![allow(missing_docs, clippy::unwrap_used)]

#[macro_use]
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use neuron_mock::neff::MockNeff;
use neuron_sys::DType;

fn copy_pairs(c: &mut Criterion) {
    let rt = Rt::init();
    let mut group = c.benchmark_group("execute/copy_pairs");
    for pairs in [1usize, 16, 300] {
        let mut neff = MockNeff::new("copy");
        for i in 0..pairs {
            neff = neff.input(format!("in{i}"), DType::F32, &[1]).output(
                format!("out{i}"),
                DType::F32,
                &[1],
            );
        }
        let model = rt.load(&neff.to_bytes().unwrap(), 0).unwrap();
        let names: Vec<(String, String)> = (0..pairs)
            .map(|i| (format!("in{i}"), format!("out{i}")))
            .collect();
        let inputs: Vec<_> = names
            .iter()
            .map(|(n, _)| (n.as_str(), rt.device(4, n)))
            .collect();
        let outputs: Vec<_> = names
            .iter()
            .map(|(_, n)| (n.as_str(), rt.device(4, n)))
            .collect();
        let bound = Bound::new(&rt, model, &inputs, &outputs);
        group.bench_function(BenchmarkId::from_parameter(pairs), |b| {
            b.iter(|| assert_eq!(bound.run(&rt), SUCCESS));
        });
        bound.teardown(&rt);
    }
    group.finish();
}

fn tensor_io(c: &mut Criterion) {
    let rt = Rt::init();
    let t = rt.device(64, "t");
    let data = [7u8; 64];
    let mut back = [0u8; 64];
    c.bench_function("tensor/write_read_64B", |b| {
        b.iter(|| {
            assert_eq!(rt.write(t, 0, &data), SUCCESS);
            let status = call!(rt.lib, nrt_tensor_read, t, back.as_mut_ptr().cast(), 0, 64);
            assert_eq!(status, SUCCESS);
        });
    });
    rt.free(t);
}

fn all_reduce(c: &mut Criterion) {
    let rt = Rt::init();
    let neff = MockNeff::new("all_reduce")
        .state("h", DType::F32, &[576])
        .to_bytes()
        .unwrap();
    let ranks: Vec<Bound> = (0..2)
        .map(|r| {
            let model = rt.load_rank(&neff, r, r as u32, 2).unwrap();
            let h = rt.device(576 * 4, "h");
            Bound::new(&rt, model, &[("h", h)], &[("h", h)])
        })
        .collect();
    c.bench_function("all_reduce/2_ranks/576", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            std::thread::scope(|s| {
                for r in &ranks {
                    let rt = &rt;
                    s.spawn(move || {
                        for _ in 0..iters {
                            assert_eq!(r.run(rt), SUCCESS);
                        }
                    });
                }
            });
            started.elapsed()
        });
    });
    for r in ranks {
        r.teardown(&rt);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = copy_pairs, tensor_io, all_reduce
}
criterion_main!(benches);
