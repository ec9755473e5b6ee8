//! One thread's bf16 products of Medusa-head training (see Cargo.toml): on AMX tiles, or with
//! AVX-512 BF16 dot products on a CPU without AMX.

use amx_bf16::{PackedA, PackedB, Strided, gemm, products_available};
use criterion::{Criterion, criterion_group, criterion_main};

fn products(c: &mut Criterion) {
    if !products_available() {
        eprintln!("skipped: this CPU has neither AMX nor AVX-512 BF16");
        return;
    }
    let m = 128;
    for (name, k, n) in [
        ("logits 128x576x8192", 576, 8192),
        ("gradient 128x8192x576", 8192, 576),
        ("head 128x576x576", 576, 576),
    ] {
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 31) % 97) as f32 * 0.01 - 0.5)
            .collect();
        let b = PackedB::new(Strided::row_major(&b, k, n));
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 13) % 101) as f32 * 0.01 - 0.5)
            .collect();
        let mut a16 = PackedA::default();
        a16.convert(Strided::row_major(&a, m, k));
        let mut out = vec![0.0; m * n];
        c.bench_function(name, |bench| {
            bench.iter(|| gemm(&a16, 0..m, &b, &mut out, n, false))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = products
}
criterion_main!(benches);
