//! Half-precision (f16) weight matrices in the panel layout of [`super::packed`], and their
//! product with f32 activations.
//!
//! Used where a product is bound by the bytes of its weights and its results only rank
//! candidates: the Medusa heads' LM-head rows (a pass over the heads' vocabulary for each
//! head, one after another, for one token). Half the bytes is half the time there; the
//! candidates are verified by the full-precision model, so decoding stays exact.
//!
//! Exactness of the product itself: every output is `Σ_c f32(w[r][c])·x[t][c]`, fused
//! multiply-adds in column order from zero, on every path (f16 to f32 is exact), so it equals
//! [`super::packed::matmul_packed`] on the same weights widened to f32, bit for bit.

use half::f16;
use rayon::prelude::*;

use super::packed::{PANEL, SERIAL_WORK, TASKS_PER_THREAD, check_packed_len};

/// A packed `[rows][cols]` matrix of f16 weights.
#[derive(Debug, Clone, Copy)]
pub struct PackedHalf<'a> {
    data: &'a [f16],
    rows: usize,
    cols: usize,
}

impl<'a> PackedHalf<'a> {
    /// Views `data` as a packed `[rows][cols]` matrix.
    ///
    /// # Errors
    /// A sentence when `data` does not hold exactly [`super::packed::packed_len`] values.
    pub fn new(data: &'a [f16], rows: usize, cols: usize) -> Result<Self, String> {
        check_packed_len(data.len(), rows, cols, "f16 ")?;
        Ok(PackedHalf { data, rows, cols })
    }

    /// Rows of the matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Rounds a packed f32 matrix (from [`super::packed::pack`]) to f16, to nearest.
pub fn to_half(packed: &[f32]) -> Vec<f16> {
    packed.iter().map(|&v| f16::from_f32(v)).collect()
}

/// `y[t][r] = Σ_c w[r][c] x[t][c]` for `tokens` rows of `x` (`[tokens][cols]`).
///
/// # Panics
/// If `x` or `y` is shorter than the shapes say (a kernel bug, caught by the mock's guard).
pub fn matmul_packed_half(w: PackedHalf<'_>, x: &[f32], tokens: usize, y: &mut [f32]) {
    let (rows, k) = (w.rows, w.cols);
    assert!(x.len() >= tokens * k && y.len() >= tokens * rows);
    if tokens == 0 || rows == 0 {
        return;
    }
    let panels = rows.div_ceil(PANEL);
    // Results as [panel][token][PANEL], in runs of panels computed as one task each.
    let mut out = vec![0.0f32; panels * tokens * PANEL];
    let per_task = if panels * PANEL * k * tokens <= SERIAL_WORK {
        panels
    } else {
        panels.div_ceil(rayon::current_num_threads().max(1) * TASKS_PER_THREAD)
    };
    let run = |(i, part): (usize, &mut [f32])| {
        let first = i * per_task;
        let count = part.len() / (tokens * PANEL);
        let weights = &w.data[first * k * PANEL..(first + count) * k * PANEL];
        panels_into(weights, k, &x[..tokens * k], tokens, part);
    };
    let chunks = out.chunks_mut(per_task * tokens * PANEL).enumerate();
    if per_task >= panels {
        chunks.for_each(run);
    } else {
        chunks.collect::<Vec<_>>().into_par_iter().for_each(run);
    }
    for (p, panel) in out.chunks_exact(tokens * PANEL).enumerate() {
        let (start, end) = (p * PANEL, ((p + 1) * PANEL).min(rows));
        for (t, lanes) in panel.chunks_exact(PANEL).enumerate() {
            y[t * rows + start..t * rows + end].copy_from_slice(&lanes[..end - start]);
        }
    }
}

/// Whole panels (`weights`, each `k · PANEL` values) times every token, into
/// `[panel][token][PANEL]`, with the widest instructions the CPU has.
fn panels_into(weights: &[f16], k: usize, x: &[f32], tokens: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match super::simd::level() {
        super::simd::Level::Avx512 => {
            // SAFETY: level() detected avx2, fma, f16c and avx512f at run time; the function
            // is safe Rust apart from requiring those features.
            unsafe { zmm::panels(weights, k, x, tokens, out) };
            return;
        }
        super::simd::Level::Avx2 => {
            // SAFETY: level() detected avx2, fma and f16c at run time; the function is safe
            // Rust apart from requiring those features.
            unsafe { ymm::panels(weights, k, x, tokens, out) };
            return;
        }
        super::simd::Level::None => {}
    }
    for (panel, out) in weights
        .chunks_exact(k * PANEL)
        .zip(out.chunks_exact_mut(tokens * PANEL))
    {
        for (xt, acc) in x.chunks_exact(k).zip(out.chunks_exact_mut(PANEL)) {
            acc.fill(0.0);
            for (column, &xc) in panel.chunks_exact(PANEL).zip(xt) {
                for (a, w) in acc.iter_mut().zip(column) {
                    *a = w.to_f32().mul_add(xc, *a);
                }
            }
        }
    }
}

/// The vector paths: four panels at a time (four independent sums per vector in flight while
/// the weights stream), each column's halves widened by one instruction per vector (16 lanes
/// with AVX-512, 8 with F16C).
#[cfg(target_arch = "x86_64")]
macro_rules! half_kernels {
    ($features:literal, $vector:ty, $halves:ty, $lanes:expr, $zero:expr, $widen:path,
     $fma:path, $set1:path) => {
        use std::arch::x86_64::*;

        use super::{PANEL, f16};

        const LANES: usize = $lanes;
        /// Vectors per panel.
        const V: usize = PANEL / LANES;

        /// Panels `p..p + N` times token `t`.
        #[inline]
        #[target_feature(enable = $features)]
        fn block<const N: usize>(
            weights: &[f16],
            k: usize,
            p: usize,
            xt: &[f32],
            out: [&mut [f32]; N],
        ) {
            let columns: [&[[f16; PANEL]]; N] =
                std::array::from_fn(|i| weights[(p + i) * k * PANEL..][..k * PANEL].as_chunks().0);
            let mut acc = [[$zero; V]; N];
            for (c, &xc) in xt.iter().enumerate() {
                let xv = $set1(xc);
                for i in 0..N {
                    let (vectors, _) = columns[i][c].as_chunks::<LANES>();
                    for v in 0..V {
                        let w = $widen(bytemuck::cast::<[f16; LANES], $halves>(vectors[v]));
                        acc[i][v] = $fma(w, xv, acc[i][v]);
                    }
                }
            }
            for (a, o) in acc.into_iter().zip(out) {
                for (v, lanes) in a.into_iter().zip(o.chunks_exact_mut(LANES)) {
                    lanes.copy_from_slice(&bytemuck::cast::<$vector, [f32; LANES]>(v));
                }
            }
        }

        #[target_feature(enable = $features)]
        pub(super) fn panels(weights: &[f16], k: usize, x: &[f32], tokens: usize, out: &mut [f32]) {
            const N: usize = 4;
            let count = weights.len() / (k * PANEL).max(1);
            let mut p = 0;
            while p < count {
                let n = if p + N <= count { N } else { 1 };
                for (t, xt) in x.chunks_exact(k).enumerate().take(tokens) {
                    let at = |i: usize| ((p + i) * tokens + t) * PANEL;
                    if n == N {
                        // Four disjoint 16-lane runs of `out`, one per panel.
                        let mut runs = out
                            .chunks_exact_mut(PANEL)
                            .skip(at(0) / PANEL)
                            .step_by(tokens);
                        let out: [&mut [f32]; N] =
                            std::array::from_fn(|_| runs.next().unwrap_or_default());
                        block::<N>(weights, k, p, xt, out);
                    } else {
                        block::<1>(weights, k, p, xt, [&mut out[at(0)..at(0) + PANEL]]);
                    }
                }
                p += n;
            }
        }
    };
}

/// 512-bit kernels (AVX-512F): a panel's 16 halves are one vector.
#[cfg(target_arch = "x86_64")]
mod zmm {
    half_kernels!(
        "avx2,fma,f16c,avx512f",
        __m512,
        __m256i,
        16,
        _mm512_setzero_ps(),
        _mm512_cvtph_ps,
        _mm512_fmadd_ps,
        _mm512_set1_ps
    );
}

/// 256-bit kernels (AVX2, FMA and F16C): a panel's 16 halves are two vectors.
#[cfg(target_arch = "x86_64")]
mod ymm {
    half_kernels!(
        "avx2,fma,f16c",
        __m256,
        __m128i,
        8,
        _mm256_setzero_ps(),
        _mm256_cvtph_ps,
        _mm256_fmadd_ps,
        _mm256_set1_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::llama::packed::{
        Packed, PackedProduct, PackedScratch, matmul_packed, pack,
    };
    use crate::testing::pseudo_random;

    #[test]
    fn equals_the_f32_product_of_the_widened_weights_bit_for_bit() {
        for (rows, k, tokens) in [
            (1, 1, 1),
            (16, 8, 1),
            (37, 24, 3),
            (200, 64, 1),
            (1000, 96, 2),
        ] {
            let half = to_half(&pack(&pseudo_random(rows * k, rows as u32), rows, k));
            let widened: Vec<f32> = half.iter().map(|h| h.to_f32()).collect();
            let x = pseudo_random(tokens * k, k as u32);
            let mut y = vec![f32::NAN; tokens * rows];
            matmul_packed_half(PackedHalf::new(&half, rows, k).unwrap(), &x, tokens, &mut y);
            let mut expected = vec![0.0; tokens * rows];
            matmul_packed(
                &mut [PackedProduct {
                    w: Packed::new(&widened, rows, k).unwrap(),
                    y: &mut expected,
                }],
                &x,
                k,
                tokens,
                &mut PackedScratch::default(),
            );
            assert_eq!(y, expected, "{rows}x{k}, {tokens} tokens");
        }
    }

    #[test]
    fn a_wrong_length_is_refused() {
        let e = PackedHalf::new(&[f16::ZERO; 10], 3, 4).unwrap_err();
        assert!(e.contains("64 values, this one 10"), "{e}");
    }
}
