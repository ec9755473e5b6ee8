//! Matrix products for training, split between the thread pool's threads.
//!
//! Training is dominated by the full-vocabulary products with the LM head (a batch of
//! examples times a `[vocab, hidden]` matrix, forwards and backwards): these are large
//! matrix-matrix products, which `ndarray` hands to a cache-blocked, vectorised kernel
//! (`matrixmultiply`, with AVX2/FMA chosen at run time). That kernel runs on one thread; here the
//! output's rows are cut into one block per thread. Each output element is computed by one
//! thread in a fixed order, so results do not depend on scheduling: training is reproducible.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// `c = a · b + beta · c`, with `a` `[m, k]`, `b` `[k, n]`, `c` `[m, n]` (any strides: pass
/// `.t()` views for transposed operands). Rows of `c` are split between threads.
///
/// # Panics
/// If the shapes do not match (a bug in the caller: every caller builds them from one set of
/// dimensions).
pub fn gemm(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
) {
    assert_eq!(a.ncols(), b.nrows(), "gemm: inner dimensions differ");
    assert_eq!(
        (a.nrows(), b.ncols()),
        c.dim(),
        "gemm: output shape differs"
    );
    let m = c.nrows();
    let threads = rayon::current_num_threads().max(1);
    // Blocks of at least 16 rows keep the kernel efficient; a multiple of 8 keeps its
    // register tiles whole.
    let rows = m.div_ceil(threads).next_multiple_of(8).max(16);
    if m <= rows {
        general_mat_mul(1.0, &a, &b, beta, &mut c);
        return;
    }
    let blocks: Vec<(ArrayView2<'_, f32>, ArrayViewMut2<'_, f32>)> = a
        .axis_chunks_iter(Axis(0), rows)
        .zip(c.axis_chunks_iter_mut(Axis(0), rows))
        .collect();
    blocks.into_par_iter().for_each(|(a, mut c)| {
        general_mat_mul(1.0, &a, &b, beta, &mut c);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn naive(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                c[[i, j]] = (0..a.ncols()).map(|k| a[[i, k]] * b[[k, j]]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_definition_for_every_split() {
        for (m, k, n) in [(1, 3, 2), (17, 5, 9), (70, 33, 12), (129, 8, 3)] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 7) as f32 * 0.5);
            let mut c = Array2::from_elem((m, n), 1.0);
            gemm(a.view(), b.view(), 2.0, c.view_mut());
            let expected = naive(&a, &b) + 2.0;
            assert!(
                c.iter()
                    .zip(expected.iter())
                    .all(|(x, y)| (x - y).abs() < 1e-3),
                "{m}x{k}x{n}"
            );
            // Transposed operands.
            let mut ct = Array2::zeros((n, m));
            gemm(b.t(), a.t(), 0.0, ct.view_mut());
            assert!(
                ct.t()
                    .iter()
                    .zip((expected - 2.0).iter())
                    .all(|(x, y)| (x - y).abs() < 1e-3)
            );
        }
    }
}
