use neuron_mock::kernels::llama::linalg::*;
use std::time::Instant;
fn main() {
    let mut scratch = MatmulScratch::default();
    for &(rows, k) in &[(1536usize, 576usize), (49152, 576), (576, 1536)] {
        let w: Vec<f32> = (0..rows * k).map(|i| (i % 13) as f32 * 0.01).collect();
        for t in [1usize, 2, 4, 8, 16] {
            let x: Vec<f32> = (0..t * k).map(|i| (i % 7) as f32 * 0.1).collect();
            let mut y = vec![0.0; t * rows];
            let reps = if rows > 10000 { 5 } else { 200 };
            let mut best = f64::MAX;
            for _ in 0..3 {
                let s = Instant::now();
                for _ in 0..reps {
                    matmul(&w, &x, &mut y, rows, k, t, &mut scratch);
                }
                best = best.min(s.elapsed().as_secs_f64() / reps as f64);
            }
            println!(
                "{rows}x{k} T={t:2}: {:8.3} ms {:6.1} GB/s {:6.1} GFLOP/s",
                best * 1e3,
                (rows * k * 4) as f64 / best / 1e9,
                (2 * rows * k * t) as f64 / best / 1e9
            );
        }
    }
}
