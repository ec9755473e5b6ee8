//! Matrix products for training, split between the thread pool's threads.
//!
//! Training is dominated by the full-vocabulary products with the LM head (a batch of
//! examples times a `[vocab, hidden]` matrix, forwards and backwards): these are large
//! matrix-matrix products, which `ndarray` hands to a cache-blocked, vectorised kernel
//! (`matrixmultiply`, with AVX2/FMA chosen at run time). That kernel runs on one thread; here the
//! output's rows are cut into one block per thread. Each output element is computed by one
//! thread in a fixed order, so results do not depend on scheduling: training is reproducible.
//!
//! On a CPU with Intel AMX the products can be taken in bf16 instead ([`Matmul::Bf16`]):
//! operands rounded to bf16, sums in f32, as a NeuronCore multiplies, and several times faster
//! than the f32 kernel on two cores; the frozen LM head is converted once ([`gemm_packed`]).
//! Without AMX, a CPU with AVX-512 BF16 (AMD Zen 4 and later) takes the same sums with
//! `VDPBF16PS` ([`amx_bf16::dot`]).

use std::cell::RefCell;

use amx_bf16::{PackedA, PackedB, Strided};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// The arithmetic of training's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Matmul {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bf16 (to nearest even), sums in f32, on AMX tiles or with AVX-512
    /// BF16.
    Bf16,
}

impl Matmul {
    /// [`Matmul::Bf16`] where this process can use AMX or AVX-512 BF16
    /// ([`amx_bf16::products_available`]; training 1.4x faster than f32 with the second on an
    /// AMD Zen 4), f32 elsewhere.
    pub fn fastest() -> Self {
        if amx_bf16::products_available() {
            Matmul::Bf16
        } else {
            Matmul::F32
        }
    }

    /// Checks that this process can multiply this way.
    ///
    /// # Errors
    /// [`Error::Setting`] for [`Matmul::Bf16`] on a CPU with neither AMX nor AVX-512 BF16.
    pub fn check(self) -> Result<Self> {
        if self == Matmul::Bf16 && !amx_bf16::products_available() {
            return Err(Error::Setting {
                field: "matmul",
                message: "bf16 products need a CPU with Intel AMX (and, on Linux, kernel 5.16 \
                          or later) or with AVX-512 BF16"
                    .into(),
            });
        }
        Ok(self)
    }

    /// `c = a · b + beta · c` in this arithmetic, for products whose right operand changes
    /// from call to call (bf16 converts it each time; see [`gemm_packed`] for a frozen one).
    ///
    /// # Panics
    /// As [`gemm`] and [`gemm_packed`]; for [`Matmul::Bf16`] also if `beta` is neither 0 nor
    /// 1.
    pub fn gemm(
        self,
        a: ArrayView2<'_, f32>,
        b: ArrayView2<'_, f32>,
        beta: f32,
        c: ArrayViewMut2<'_, f32>,
    ) {
        match self {
            Matmul::F32 => gemm(a, b, beta, c),
            Matmul::Bf16 => {
                assert!(
                    beta == 0.0 || beta == 1.0,
                    "bf16 products add with beta 0 or 1 only"
                );
                let packed = with_strided(b, PackedB::new);
                gemm_packed(a, &packed, beta == 1.0, c);
            }
        }
    }
}

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

/// `c = a · b` (or `c += a · b` when `add`) in bf16 ([`amx_bf16::gemm`]), `b` converted beforehand
/// ([`PackedB`], `[k, n]`), `a` `[m, k]` rounded to bf16 here; `c` `[m, n]` must be in
/// standard (row-major) layout. Rows of
/// `c` are split between threads in blocks of 32 (the kernel's blocks); each output element
/// is one sum in a fixed order, so results do not depend on the split.
///
/// # Panics
/// If the shapes do not match, `c` is not row-major, or neither AMX nor AVX-512 BF16 is
/// available (checked by [`Matmul::check`] when the caller chose [`Matmul::Bf16`]).
pub fn gemm_packed(a: ArrayView2<'_, f32>, b: &PackedB, add: bool, mut c: ArrayViewMut2<'_, f32>) {
    assert_eq!(a.ncols(), b.k(), "gemm_packed: inner dimensions differ");
    assert_eq!(
        (a.nrows(), b.n()),
        c.dim(),
        "gemm_packed: output shape differs"
    );
    let (m, k, n) = (a.nrows(), b.k(), b.n());
    let c = c
        .as_slice_mut()
        .expect("gemm_packed: the output is row-major");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // Empty sums (and no rows of `a` to split).
        if !add {
            c.fill(0.0);
        }
        return;
    }
    thread_local! {
        /// Each thread's converted rows of `a`, reused from call to call.
        static A16: RefCell<PackedA> = RefCell::new(PackedA::default());
    }
    let threads = rayon::current_num_threads().max(1);
    let rows = m.div_ceil(threads).next_multiple_of(32);
    with_strided(a, |a| {
        let block = |(i, c): (usize, &mut [f32])| {
            let first = i * rows;
            let m = c.len() / n;
            A16.with_borrow_mut(|a16| {
                a16.convert(a.row_range(first..first + m));
                amx_bf16::gemm(a16, 0..m, b, c, n, add);
            });
        };
        if m <= rows {
            // One block: on this thread, not through the pool (a wake-up costs more than
            // a few rows' product with a small matrix).
            block((0, c));
        } else {
            c.par_chunks_mut(rows * n).enumerate().for_each(block);
        }
    });
}

/// Calls `f` with `m` as a [`Strided`] matrix: straight over its memory when its elements are
/// one run with non-negative strides (a matrix, its transpose, a range of its rows), else
/// over a row-major copy.
pub(crate) fn with_strided<R>(m: ArrayView2<'_, f32>, f: impl FnOnce(Strided<'_>) -> R) -> R {
    let (rows, cols) = m.dim();
    let strides = (
        usize::try_from(m.strides()[0]),
        usize::try_from(m.strides()[1]),
    );
    if let ((Ok(row_stride), Ok(col_stride)), Some(data)) = (strides, m.to_slice_memory_order()) {
        return f(Strided::new(data, rows, cols, row_stride, col_stride));
    }
    let copy = m.as_standard_layout();
    f(Strided::row_major(
        copy.as_slice().expect("standard layout is contiguous"),
        rows,
        cols,
    ))
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

    #[test]
    fn bf16_products_are_close_to_f32_ones_and_split_rows_alike() {
        if Matmul::Bf16.check().is_err() {
            eprintln!("skipped: this CPU has neither AMX nor AVX-512 BF16");
            return;
        }
        for (m, k, n) in [
            (1, 3, 2),
            (70, 33, 12),
            (129, 576, 40),
            (300, 64, 17),
            (5, 0, 3),
        ] {
            let a =
                Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 7) as f32 * 0.05);
            let packed = PackedB::new(Strided::row_major(b.as_slice().unwrap(), k, n));
            let mut c = Array2::from_elem((m, n), f32::NAN);
            gemm_packed(a.view(), &packed, false, c.view_mut());
            let expected = naive(&a, &b);
            for ((i, j), &x) in c.indexed_iter() {
                let scale: f32 = (0..k).map(|l| (a[[i, l]] * b[[l, j]]).abs()).sum();
                assert!(
                    (x - expected[[i, j]]).abs() <= 1e-2 * scale.max(1e-3),
                    "{m}x{k}x{n}"
                );
            }
            // A transposed view of `a` gives the same bits; so does each row alone.
            let at = a.t().to_owned();
            let mut c2 = Array2::from_elem((m, n), f32::NAN);
            gemm_packed(at.t(), &packed, false, c2.view_mut());
            assert!(
                c.iter()
                    .zip(c2.iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
            let mut row = Array2::zeros((1, n));
            gemm_packed(
                a.slice(ndarray::s![m - 1..m, ..]),
                &packed,
                false,
                row.view_mut(),
            );
            assert!(
                row.iter()
                    .zip(c.row(m - 1))
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
            // Matmul::gemm converts `b` itself and adds with beta 1.
            Matmul::Bf16.gemm(a.view(), b.view(), 1.0, c2.view_mut());
            assert!(c2.iter().zip(c.iter()).all(|(x, y)| *x == 2.0 * y));
        }
    }
}
