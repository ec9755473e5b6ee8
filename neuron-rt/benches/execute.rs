//! The safe layer's overhead: one small execution (and one small tensor write) through
//! `neuron-rt` against the same call through raw `neuron-sys`, on the same libnrt objects.
//!
//! Runs on the mock libnrt (`neuron_mock::testing::library_path`, or `NEURON_SYS_LIB`); the
//! mock's `copy` kernel on 16 floats keeps the device work tiny, so the host-side overhead is
//! what is measured. After the criterion benchmarks, an interleaved measurement prints the
//! safe/raw ratio (target: within 1.10).
//!
//! ```sh
//! cargo bench -p neuron-rt --bench execute
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use neuron_mock::neff::MockNeff;
use neuron_rt::{DType, IoSets, Model, ModelGroup, Runtime};
use neuron_sys::nrt_fn;

const ELEMENTS: usize = 16;

struct Setup {
    rt: Arc<Runtime>,
    model: Model,
    io: IoSets,
}

fn setup() -> Setup {
    let rt = Runtime::builder()
        .lib_path(neuron_mock::testing::library_path())
        .init()
        .expect("initialise the mock runtime");
    let neff = MockNeff::new("copy")
        .input("x", DType::F32, &[ELEMENTS])
        .output("y", DType::F32, &[ELEMENTS])
        .to_bytes()
        .expect("mock NEFF");
    let model = Model::load(&rt, &neff, 0).expect("load");
    let mut io = model.allocate_io().expect("allocate");
    model.execute(&io.inputs, &mut io.outputs).expect("warm-up");
    Setup { rt, model, io }
}

/// One raw `nrt_execute` with the same handles the safe layer uses.
fn raw_executor(s: &Setup) -> impl Fn() + use<> {
    let lib = neuron_sys::loaded().expect("library loaded");
    let execute = nrt_fn!(lib, nrt_execute).expect("nrt_execute");
    let (model, inputs, outputs) = (
        s.model.as_raw(),
        s.io.inputs.as_raw(),
        s.io.outputs.as_raw(),
    );
    move || {
        // SAFETY: the handles stay live for the whole benchmark (`Setup` outlives the closure's
        // use); no other thread uses the output set.
        let status = unsafe { execute(model, inputs, outputs) };
        assert!(status.is_success());
    }
}

fn bench_execute(c: &mut Criterion) {
    let mut s = setup();
    let raw = raw_executor(&s);
    let mut group = c.benchmark_group("execute_copy16");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_neuron_sys", |b| b.iter(&raw));
    group.bench_function("safe_neuron_rt", |b| {
        b.iter(|| {
            s.model
                .execute(black_box(&s.io.inputs), black_box(&mut s.io.outputs))
                .expect("execute")
        })
    });
    group.finish();
}

fn bench_write(c: &mut Criterion) {
    let s = setup();
    let tensor = Arc::clone(s.io.inputs.tensor("x").expect("x"));
    let lib = neuron_sys::loaded().expect("library loaded");
    let write = nrt_fn!(lib, nrt_tensor_write).expect("nrt_tensor_write");
    let token = [7.0f32];
    let mut group = c.benchmark_group("write_one_element");
    group.bench_function("raw_neuron_sys", |b| {
        b.iter(|| {
            // SAFETY: the tensor is live; 4 readable bytes at offset 8 are inside it.
            let status = unsafe { write(tensor.as_raw(), token.as_ptr().cast(), 8, 4) };
            assert!(status.is_success());
        })
    });
    group.bench_function("safe_neuron_rt", |b| {
        b.iter(|| tensor.write_from(2, black_box(&token)).expect("write"))
    });
    group.finish();
    drop(tensor);
    drop(s);
}

fn bench_group(c: &mut Criterion) {
    let rt = setup().rt;
    let neff = MockNeff::new("copy")
        .input("x", DType::F32, &[ELEMENTS])
        .output("y", DType::F32, &[ELEMENTS])
        .to_bytes()
        .expect("mock NEFF");
    let mut bench = c.benchmark_group("group_step_copy16");
    let variants = [
        ("default", None),
        ("spin_0", Some(Duration::ZERO)),
        ("spin_100us", Some(neuron_rt::DEFAULT_SPIN)),
    ];
    for (label, spin) in variants {
        let mut loader = ModelGroup::loader(&rt).cores(0..2);
        if let Some(spin) = spin {
            loader = loader.spin(spin);
        }
        let group = loader.load(&neff).expect("load group");
        let mut io = group.allocate_io().expect("allocate");
        bench.bench_function(label, |b| {
            b.iter(|| group.execute_io(&mut io).expect("group step"))
        });
    }
    bench.finish();
}

/// Interleaves blocks of raw and safe executions (so that drift on a shared machine hits
/// both alike) and compares the medians of the per-call times.
fn report_ratio(blocks: usize, per_block: u32) {
    let (raw_ns, safe_ns, library) = measure_ratio(blocks, per_block);
    println!(
        "execute overhead (copy kernel, {ELEMENTS} f32, library {library}): raw {raw_ns:.0} ns, \
         safe {safe_ns:.0} ns, ratio safe/raw = {:.3} (target <= 1.10; median of {blocks} \
         interleaved blocks of {per_block})",
        safe_ns / raw_ns
    );
}

/// Median nanoseconds per call, raw and safe, and the library measured.
fn measure_ratio(blocks: usize, per_block: u32) -> (f64, f64, String) {
    let mut s = setup();
    let raw = raw_executor(&s);
    let (mut raw_times, mut safe_times) = (Vec::new(), Vec::new());
    let per_call = |d: Duration| d.as_secs_f64() * 1e9 / f64::from(per_block);
    for _ in 0..blocks {
        let start = Instant::now();
        for _ in 0..per_block {
            raw();
        }
        raw_times.push(per_call(start.elapsed()));
        let start = Instant::now();
        for _ in 0..per_block {
            s.model
                .execute(black_box(&s.io.inputs), black_box(&mut s.io.outputs))
                .expect("execute");
        }
        safe_times.push(per_call(start.elapsed()));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (
        median(&mut raw_times),
        median(&mut safe_times),
        s.rt.library_path().display().to_string(),
    )
}

criterion_group!(benches, bench_execute, bench_write, bench_group);

fn main() {
    // Under `cargo test --benches` criterion runs each benchmark once; keep the ratio short
    // there too.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    benches();
    if benchmarking {
        report_ratio(51, 2000);
    } else {
        // A smoke run of the measurement code; unoptimised timings mean nothing, so no ratio.
        let _ = measure_ratio(2, 10);
    }
    Criterion::default().configure_from_args().final_summary();
}
