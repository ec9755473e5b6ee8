//! The 8-bit panel sums with each kernel this CPU has, over the draft's MLP gate and up
//! projections stacked (3072 outputs of 576 inputs: 1.8 MB of weights, which stay in cache),
//! for one and four input rows: what one of a feature draft's products costs on the host.
#![allow(missing_docs, clippy::unwrap_used)]

use amx_bf16::int8::{Kernel, PANEL, PairRow, QuantizedRow, ROWS, Sums, panel_with};
use criterion::{Criterion, criterion_group, criterion_main};

fn panels(c: &mut Criterion) {
    let (out, k) = (3072, 576);
    let pairs = k / 2;
    let weights: Vec<PairRow> = (0..out / PANEL * pairs)
        .map(|q| std::array::from_fn(|j| ((q * 31 + j * 17) % 255) as i8))
        .collect();
    let rows: Vec<QuantizedRow> = (0..ROWS)
        .map(|r| {
            let x: Vec<f32> = (0..k)
                .map(|i| ((i * 13 + r) % 100) as f32 / 50.0 - 1.0)
                .collect();
            QuantizedRow::new(&x)
        })
        .collect();
    let mut group = c.benchmark_group("int8");
    for kernel in [Kernel::Avx512Vnni, Kernel::Avx2, Kernel::Portable] {
        if !kernel.available() {
            continue;
        }
        for m in [1, ROWS] {
            let views: Vec<&QuantizedRow> = rows[..m].iter().collect();
            group.bench_function(format!("{kernel:?}: {out}x{k}, {m} rows"), |b| {
                b.iter(|| {
                    let mut sums: Sums = [[0.0; PANEL]; ROWS];
                    let mut total = 0.0;
                    for panel in weights.chunks_exact(pairs) {
                        panel_with(kernel, panel, &views, &mut sums);
                        total += sums[0][0];
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, panels);
criterion_main!(benches);
