//! x86_64 micro-kernels for the weight-times-activations product, chosen at run time.
//!
//! A block of `R` weight rows is multiplied with `C` activation rows at once, keeping the
//! `R x C` accumulators in vector registers: each weight vector loaded is used `C` times and each
//! activation vector `R` times. With AVX2 there are 16 vector registers, enough for 4 x 2
//! accumulators; with AVX-512 there are 32 registers of twice the width, enough for 4 x 4,
//! which halves the loads per multiply-add and the instructions per flop. A single token (a
//! decode step) has nothing to reuse: 8 rows x 1 keeps enough independent accumulators in
//! flight to stream the weights at memory speed.
//!
//! Everything here is safe code: the intrinsics are safe inside functions compiled for the
//! features they need, and vectors are built from slices through `bytemuck`. The only unsafe
//! operation is calling such a function, after checking that the CPU has the features. The
//! weights of the next row block are prefetched while the current one is computed, so that
//! the memory stream and the arithmetic overlap.

use std::arch::x86_64::_mm_prefetch;
use std::sync::OnceLock;

/// The instruction sets the kernels can use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// Neither: the portable loops.
    None,
    /// AVX2 and FMA: 256-bit vectors, 16 registers.
    Avx2,
    /// AVX-512F as well: 512-bit vectors, 32 registers.
    Avx512,
}

/// The widest vector instructions the CPU has, or the narrower ones `NEURON_MOCK_SIMD`
/// (`avx512`, `avx2` or `none`) asks for, to compare the paths on one machine.
pub(super) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            Level::None
        } else if is_x86_feature_detected!("avx512f") {
            Level::Avx512
        } else {
            Level::Avx2
        };
        let asked = match std::env::var("NEURON_MOCK_SIMD").as_deref() {
            Ok("none") => Level::None,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        // Never more than the CPU has.
        match (detected, asked) {
            (Level::None, _) | (_, Level::None) => Level::None,
            (Level::Avx2, _) | (_, Level::Avx2) => Level::Avx2,
            _ => Level::Avx512,
        }
    })
}

/// Computes rows `first_row..` of the product into `yt` (`[row][token]`) if the CPU has a
/// SIMD path; returns `false` (having done nothing) otherwise.
pub(super) fn rows_into(
    w: &[f32],
    x: &[f32],
    yt: &mut [f32],
    first_row: usize,
    k: usize,
    tokens: usize,
) -> bool {
    match level() {
        Level::None => false,
        Level::Avx2 => {
            // SAFETY: avx2 and fma were detected at run time (level()); the function is safe
            // Rust apart from requiring those features.
            unsafe { rows_avx2(w, x, yt, first_row, k, tokens) };
            true
        }
        Level::Avx512 => {
            // SAFETY: avx2, fma and avx512f were detected at run time (level()); the function
            // is safe Rust apart from requiring those features.
            unsafe { rows_avx512(w, x, yt, first_row, k, tokens) };
            true
        }
    }
}

#[target_feature(enable = "avx2,fma")]
fn rows_avx2(w: &[f32], x: &[f32], yt: &mut [f32], first_row: usize, k: usize, tokens: usize) {
    if tokens == 1 {
        ymm::rows::<8, 1>(w, x, yt, first_row, k, tokens)
    } else {
        ymm::rows::<4, 2>(w, x, yt, first_row, k, tokens)
    }
}

#[target_feature(enable = "avx2,fma,avx512f")]
fn rows_avx512(w: &[f32], x: &[f32], yt: &mut [f32], first_row: usize, k: usize, tokens: usize) {
    if !k.is_multiple_of(zmm::LANES) {
        // Rows that do not fill 512-bit vectors (narrow heads, odd widths): the 256-bit path.
        return rows_avx2(w, x, yt, first_row, k, tokens);
    }
    match tokens {
        1 => zmm::rows::<8, 1>(w, x, yt, first_row, k, tokens),
        2 => zmm::rows::<6, 2>(w, x, yt, first_row, k, tokens),
        3 => zmm::rows::<5, 3>(w, x, yt, first_row, k, tokens),
        _ => zmm::rows::<4, 4>(w, x, yt, first_row, k, tokens),
    }
}

/// Defines `pub(super) fn $name(args) -> bool`: runs `$avx2` or `$avx512` (plain Rust, usually
/// a portable kernel) compiled for the widest instruction set the CPU has (see [`level`]), or
/// returns `false` having done nothing when it has neither.
macro_rules! at_widest_level {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) {
        avx2: $avx2:expr,
        avx512: $avx512:expr $(,)?
    }) => {
        $(#[$doc])*
        pub(super) fn $name($($arg: $ty),*) -> bool {
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                $avx2
            }
            #[target_feature(enable = "avx2,fma,avx512f")]
            fn avx512($($arg: $ty),*) {
                $avx512
            }
            match level() {
                Level::None => false,
                Level::Avx2 => {
                    // SAFETY: avx2 and fma were detected at run time (level()); the function
                    // is safe Rust apart from requiring those features.
                    unsafe { avx2($($arg),*) };
                    true
                }
                Level::Avx512 => {
                    // SAFETY: avx2, fma and avx512f were detected at run time (level()); the
                    // function is safe Rust apart from requiring those features.
                    unsafe { avx512($($arg),*) };
                    true
                }
            }
        }
    };
}

at_widest_level! {
    /// [`super::linalg::weighted_sums`] in vector instructions: the same plain code as the
    /// portable path (multiplies and adds, never fused), so the same bits.
    fn weighted_sums(weights: &[f32], rows: &[f32], out: &mut [f32], width: usize) {
        // Three queries' accumulators of 32 floats: 12 of the 16 registers.
        avx2: super::linalg::weighted_sums_portable::<32>(weights, rows, out, width),
        // Three queries' accumulators of 64 floats (a whole head of 64): 12 of the 32.
        avx512: super::linalg::weighted_sums_portable::<64>(weights, rows, out, width),
    }
}

at_widest_level! {
    /// [`super::linalg::exp_in_place`] in vector instructions: the same plain code as the
    /// portable path, so the same bits.
    fn exp_in_place(xs: &mut [f32]) {
        avx2: super::linalg::exp_portable(xs),
        avx512: super::linalg::exp_portable(xs),
    }
}

/// Asks the CPU to bring the cache line holding `v` into the cache level `HINT` names
/// (`_MM_HINT_T0`: L1, `_MM_HINT_T1`: L2); it never faults.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn prefetch<const HINT: i32>(v: &f32) {
    // A prefetch is only a hint: it never faults or changes memory.
    _mm_prefetch::<HINT>((v as *const f32).cast::<i8>());
}

/// Floats per 64-byte cache line.
pub(super) const LINE: usize = 16;

/// The row-block driver and the register-blocked micro-kernel, for one vector width. The two
/// instances differ only in the vector type and its operations.
macro_rules! micro_kernels {
    ($features:literal, $vector:ty, $lanes:expr, $zero:expr, $fma:path, $hsum:path) => {
        use super::{LINE, prefetch};
        use std::arch::x86_64::*;

        /// f32 lanes per vector.
        pub(super) const LANES: usize = $lanes;

        /// Computes rows `first_row..` of the product into `yt` (`[row][token]`), `R` rows by
        /// `C` tokens at a time.
        #[inline]
        #[target_feature(enable = $features)]
        pub(super) fn rows<const R: usize, const C: usize>(
            w: &[f32],
            x: &[f32],
            yt: &mut [f32],
            first_row: usize,
            k: usize,
            tokens: usize,
        ) {
            let n_rows = yt.len() / tokens;
            let row = |r: usize| &w[(first_row + r) * k..(first_row + r + 1) * k];
            let tok = |t: usize| &x[t * k..(t + 1) * k];
            // The weights of the next row block are prefetched while this one is computed,
            // spread over the token blocks: without it the memory stream and the arithmetic
            // take turns.
            let blocks_per_row_block = tokens.div_ceil(C).max(1);
            let mut r = 0;
            while r + R <= n_rows {
                let ws: [&[f32]; R] = std::array::from_fn(|i| row(r + i));
                let next = &w[((first_row + r + R) * k).min(w.len())
                    ..((first_row + r + 2 * R) * k).min(w.len())];
                let share = next.len().div_ceil(blocks_per_row_block);
                let mut t = 0;
                while t + C <= tokens {
                    let from = (t / C * share).min(next.len());
                    let pf = &next[from..(from + share).min(next.len())];
                    let out = block::<R, C>(ws, std::array::from_fn(|c| tok(t + c)), pf);
                    for (i, o) in out.iter().enumerate() {
                        yt[(r + i) * tokens + t..(r + i) * tokens + t + C].copy_from_slice(o);
                    }
                    t += C;
                }
                while t < tokens {
                    let out = block::<R, 1>(ws, [tok(t)], &[]);
                    for (i, o) in out.iter().enumerate() {
                        yt[(r + i) * tokens + t] = o[0];
                    }
                    t += 1;
                }
                r += R;
            }
            while r < n_rows {
                for t in 0..tokens {
                    yt[r * tokens + t] = block::<1, 1>([row(r)], [tok(t)], &[])[0][0];
                }
                r += 1;
            }
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn load(s: &[f32]) -> $vector {
            let lanes: [f32; LANES] = s.try_into().unwrap_or([0.0; LANES]);
            bytemuck::cast(lanes)
        }

        /// `Σ_k w[r][k] x[c][k]` for every pair, all rows of equal length; prefetches `pf` on
        /// the way.
        #[inline]
        #[target_feature(enable = $features)]
        fn block<const R: usize, const C: usize>(
            w: [&[f32]; R],
            x: [&[f32]; C],
            pf: &[f32],
        ) -> [[f32; C]; R] {
            let k = w[0].len();
            let k_main = k - k % LANES;
            // Slices of exactly k_main elements let the compiler drop the bounds checks below.
            let wm: [&[f32]; R] = std::array::from_fn(|r| &w[r][..k_main]);
            let xm: [&[f32]; C] = std::array::from_fn(|c| &x[c][..k_main]);
            let mut acc: [[$vector; C]; R] = [[$zero; C]; R];
            // Every cache line of pf is prefetched, spread evenly over the steps.
            let steps = (k_main / LANES).max(1);
            let lines_per_step = pf.len().div_ceil(LINE).div_ceil(steps);
            let mut next_pf = 0;
            let mut i = 0;
            while i + LANES <= k_main {
                for _ in 0..lines_per_step {
                    if next_pf < pf.len() {
                        prefetch::<_MM_HINT_T0>(&pf[next_pf]);
                        next_pf += LINE;
                    }
                }
                let xv: [$vector; C] = std::array::from_fn(|c| load(&xm[c][i..i + LANES]));
                for r in 0..R {
                    let wv = load(&wm[r][i..i + LANES]);
                    for c in 0..C {
                        acc[r][c] = $fma(wv, xv[c], acc[r][c]);
                    }
                }
                i += LANES;
            }
            let mut out = [[0.0f32; C]; R];
            for r in 0..R {
                for c in 0..C {
                    let mut s = $hsum(acc[r][c]);
                    for j in k_main..k {
                        s = w[r][j].mul_add(x[c][j], s);
                    }
                    out[r][c] = s;
                }
            }
            out
        }
    };
}

/// 256-bit kernels (AVX2 + FMA).
mod ymm {
    micro_kernels!(
        "avx2,fma",
        __m256,
        8,
        _mm256_setzero_ps(),
        _mm256_fmadd_ps,
        horizontal_sum
    );

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s4 = _mm_add_ps(lo, hi);
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }
}

/// 512-bit kernels (AVX-512F): twice the lanes per instruction and 32 registers, so a 4 x 4
/// block of accumulators fits with room to spare.
mod zmm {
    micro_kernels!(
        "avx2,fma,avx512f",
        __m512,
        16,
        _mm512_setzero_ps(),
        _mm512_fmadd_ps,
        _mm512_reduce_add_ps
    );
}
