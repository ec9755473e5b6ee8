//! x86_64 micro-kernels for products with panel-packed weights ([`super::packed`]).
//!
//! A block multiplies `N` panels with a tile of `C` tokens: per column, `N` weight vectors
//! are loaded and each token's activation is broadcast once, feeding `N · C` accumulators
//! held in registers. With AVX-512 a panel is one vector and a block of 4 panels x up to 6
//! tokens keeps 24 accumulators (of 32 registers), while a tile of 7 or 8 tokens takes the
//! block two panels at a time (2 x 8 accumulators); with AVX2 a panel is two vectors and the
//! 16 registers hold 1 panel x 6 tokens (12 accumulators; a pass of 7 or 8 tokens takes one
//! tile whose accumulators spill, see [`widest_tile`]). A single token streams 4 panels at
//! once, enough independent sums to cover the multiply-add latency while memory streams (each
//! panel is one sequential stream, which the hardware prefetchers follow; explicit prefetches
//! measured no faster). Several tokens make the arithmetic dense enough that the prefetchers
//! fall behind, so there the next block is prefetched explicitly, evenly over the columns.
//!
//! As in [`super::simd`], everything is safe code inside functions compiled for the features
//! they need; the only unsafe operation is calling one after checking the CPU has them.

use super::packed::PANEL;
use super::simd::Level;

/// Widest token tile for `level` in a pass of `tokens` tokens.
pub(super) fn widest_tile(level: Level, tokens: usize) -> usize {
    match level {
        Level::None => 1,
        // 1 panel x 6 tokens: 12 accumulators, 2 weight vectors and a broadcast in the 16
        // registers. Every tile is another pass over the weights, and on AVX2 (a Zen 3
        // without AVX-512) a tile cost nearly as much with 4 tokens as with 6: against tiles
        // of 4, whole passes of 5-6 tokens (one tile, not two) measured 21-35% faster, 12
        // tokens 6-18% and 16 tokens 11-17% (three tiles, not four). A pass of 7 or 8 tokens
        // is one tile even so: its accumulators spill to L1, and that measured 15-22% faster
        // than two tiles, whereas in wider passes tiles of 8 were 11-25% slower than of 6.
        Level::Avx2 if tokens <= 8 => 8,
        Level::Avx2 => 6,
        // 4 panels x 6 tokens: 24 accumulators, 4 weight vectors and a broadcast in the 32
        // registers. Wider than 4 saves the second pass over the weights that verify passes
        // of 5 to 6 tokens (and a third of 12) made: 6-13% less time for those passes. Tiles
        // of 7 and 8 tokens go two panels at a time, which still reads each block of weights
        // once: whole passes of 16 tokens (two tiles, not three) measured 8% faster, 7 and 8
        // tokens (one tile, not two) 0-5%.
        Level::Avx512 => 8,
    }
}

/// Panels per block for `level` (task boundaries are multiples of it).
pub(super) fn panels_per_block(level: Level) -> usize {
    match level {
        Level::None => 1,
        Level::Avx2 | Level::Avx512 => 4,
    }
}

/// Multiplies the whole panels in `panels` with every tile of `plan`, writing
/// `[panel][token][PANEL]` into `out` (see [`super::packed`]).
pub(super) fn panels(
    level: Level,
    panels: &[f32],
    k: usize,
    tiles: &[f32],
    plan: &[(usize, usize)],
    tokens: usize,
    out: &mut [f32],
) {
    match level {
        Level::None => unreachable!("the portable path has its own loop"),
        // SAFETY: level() detected avx2 and fma at run time; the function is safe Rust apart
        // from requiring those features.
        Level::Avx2 => unsafe { ymm::panels(panels, k, tiles, plan, tokens, out) },
        // SAFETY: level() detected avx2, fma and avx512f at run time; the function is safe
        // Rust apart from requiring those features.
        Level::Avx512 => unsafe { zmm::panels(panels, k, tiles, plan, tokens, out) },
    }
}

macro_rules! packed_kernels {
    ($features:literal, $vector:ty, $lanes:expr, $zero:expr, $fma:path, $set1:path,
     $panels_per_block:expr, $single_token_panels:expr, $streaming_tokens:expr,
     $streaming_panels:expr) => {
        use super::super::simd::{LINE, prefetch};
        use super::PANEL;
        use std::arch::x86_64::*;

        const LANES: usize = $lanes;
        /// Vectors per panel.
        const V: usize = PANEL / LANES;

        #[inline]
        #[target_feature(enable = $features)]
        fn load(s: &[f32]) -> $vector {
            let lanes: [f32; LANES] = s.try_into().unwrap_or([0.0; LANES]);
            bytemuck::cast(lanes)
        }

        #[inline]
        #[target_feature(enable = $features)]
        fn store(v: $vector, out: &mut [f32]) {
            let lanes: [f32; LANES] = bytemuck::cast(v);
            out[..LANES].copy_from_slice(&lanes);
        }

        /// `N` panels times a tile of `C` tokens (`tile` is `[k][C]`); results go to
        /// `out[n][token i]` at `((first_panel + n) · tokens + t0 + i) · PANEL`.
        #[inline]
        #[target_feature(enable = $features)]
        fn block<const N: usize, const C: usize>(
            panels: [&[f32]; N],
            tile: &[f32],
            out: &mut [f32],
            first_panel: usize,
            t0: usize,
            tokens: usize,
            pf: &[f32],
        ) {
            let mut acc = [[[$zero; V]; C]; N];
            // Columns as fixed-size arrays, every panel cut to the tile's length: the loop
            // below then indexes within bounds the compiler can see, with no checks inside.
            let (columns_x, _) = tile.as_chunks::<C>();
            let k = columns_x.len();
            let columns_w: [&[[f32; PANEL]]; N] =
                std::array::from_fn(|n| &panels[n].as_chunks::<PANEL>().0[..k]);
            // Every cache line of pf is prefetched, spread evenly over the columns: by the end
            // of column j, (j + 1) · lines / k of them (`owed` carries the remainder). Fewer
            // lines than columns (a share of the next panel for each of several tiles) thus
            // go one every few columns rather than one a column from the start: front-loaded,
            // they asked for memory faster than it streams and stalled the tile, and on AVX2
            // whole passes of 12 and 16 tokens measured 17% and 23% faster spread.
            let lines = pf.len().div_ceil(LINE);
            let mut owed = 0;
            let mut next_pf = 0;
            for j in 0..k {
                owed += lines;
                while owed >= k {
                    owed -= k;
                    if let Some(v) = pf.get(next_pf) {
                        // Into L2: a block of panels does not fit in L1.
                        prefetch::<_MM_HINT_T1>(v);
                        next_pf += LINE;
                    }
                }
                let ws: [[$vector; V]; N] = std::array::from_fn(|n| {
                    std::array::from_fn(|v| load(&columns_w[n][j][v * LANES..][..LANES]))
                });
                for (i, &x) in columns_x[j].iter().enumerate() {
                    let xv = $set1(x);
                    for n in 0..N {
                        for v in 0..V {
                            acc[n][i][v] = $fma(ws[n][v], xv, acc[n][i][v]);
                        }
                    }
                }
            }
            for (n, per_token) in acc.iter().enumerate() {
                for (i, vectors) in per_token.iter().enumerate() {
                    let at = ((first_panel + n) * tokens + t0 + i) * PANEL;
                    for (v, &vector) in vectors.iter().enumerate() {
                        store(vector, &mut out[at + v * LANES..]);
                    }
                }
            }
        }

        /// `N` panels times a tile of `C` tokens too wide for `N · C` accumulators: two panels
        /// at a time (the tile stays in L1 between them), each pair prefetching its share of
        /// `pf`.
        #[inline]
        #[target_feature(enable = $features)]
        fn pairs<const N: usize, const C: usize>(
            panels: [&[f32]; N],
            tile: &[f32],
            out: &mut [f32],
            first_panel: usize,
            t0: usize,
            tokens: usize,
            pf: &[f32],
        ) {
            let share = pf.len().div_ceil(N.div_ceil(2));
            for n in (0..N).step_by(2) {
                let pf = &pf[(n / 2 * share).min(pf.len())..((n / 2 + 1) * share).min(pf.len())];
                let at = first_panel + n;
                if n + 1 < N {
                    block::<2, C>([panels[n], panels[n + 1]], tile, out, at, t0, tokens, pf);
                } else {
                    block::<1, C>([panels[n]], tile, out, at, t0, tokens, pf);
                }
            }
        }

        /// `N` panels times one tile of any supported width.
        #[inline]
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        fn tile<const N: usize>(
            panels: [&[f32]; N],
            tile: &[f32],
            width: usize,
            out: &mut [f32],
            first_panel: usize,
            t0: usize,
            tokens: usize,
            pf: &[f32],
        ) {
            match width {
                8 => pairs::<N, 8>(panels, tile, out, first_panel, t0, tokens, pf),
                7 => pairs::<N, 7>(panels, tile, out, first_panel, t0, tokens, pf),
                6 => block::<N, 6>(panels, tile, out, first_panel, t0, tokens, pf),
                5 => block::<N, 5>(panels, tile, out, first_panel, t0, tokens, pf),
                4 => block::<N, 4>(panels, tile, out, first_panel, t0, tokens, pf),
                3 => block::<N, 3>(panels, tile, out, first_panel, t0, tokens, pf),
                2 => block::<N, 2>(panels, tile, out, first_panel, t0, tokens, pf),
                _ => block::<N, 1>(panels, tile, out, first_panel, t0, tokens, pf),
            }
        }

        #[target_feature(enable = $features)]
        pub(super) fn panels(
            panels: &[f32],
            k: usize,
            tiles: &[f32],
            plan: &[(usize, usize)],
            tokens: usize,
            out: &mut [f32],
        ) {
            let size = k * PANEL;
            let count = panels.len() / size.max(1);
            // Passes of up to `$streaming_tokens` tokens stream the weights as a single
            // token does: several panels at once, the hardware prefetchers following them.
            let streaming = tokens <= $streaming_tokens;
            let wide = if tokens == 1 {
                $single_token_panels
            } else if streaming {
                $streaming_panels
            } else {
                $panels_per_block
            };
            let mut p = 0;
            while p < count {
                // Wide blocks while they fit, then one panel at a time.
                let n = if p + wide <= count { wide } else { 1 };
                let panel = |i: usize| &panels[(p + i) * size..(p + i + 1) * size];
                // While a block computes, the next one is prefetched into L2, a share per
                // tile. With several tiles the later ones read the block from the caches and
                // the memory stream would stop meanwhile; with one tile of several tokens the
                // multiply-adds are dense enough that the hardware prefetchers fall behind
                // (3-6 tokens measured 5-10% faster with it). A single token streams: there the
                // hardware prefetchers keep up and explicit prefetches measured 2% slower
                // (on AVX2 so do 2-3 tokens, see the ymm kernels), and prefetching two blocks
                // ahead was slower for every width.
                let next = if !streaming {
                    &panels
                        [((p + n) * size).min(panels.len())..((p + 2 * n) * size).min(panels.len())]
                } else {
                    &[]
                };
                let share = next.len().div_ceil(plan.len());
                let mut tile_start = 0;
                for (i, &(t0, width)) in plan.iter().enumerate() {
                    let t = &tiles[tile_start..tile_start + k * width];
                    let pf = &next[(i * share).min(next.len())..((i + 1) * share).min(next.len())];
                    match n {
                        4 => {
                            tile::<4>(std::array::from_fn(panel), t, width, out, p, t0, tokens, pf)
                        }
                        2 => tile::<2>([panel(0), panel(1)], t, width, out, p, t0, tokens, pf),
                        _ => tile::<1>([panel(0)], t, width, out, p, t0, tokens, pf),
                    }
                    tile_start += k * width;
                }
                p += n;
            }
        }
    };
}

/// 256-bit kernels (AVX2 + FMA): a panel is two vectors. Passes of 2-3 tokens take two
/// panels at a time (8-12 accumulators) without explicit prefetches: 2 tokens measured 6-7%
/// faster than one panel at a time with them (whole passes, alternated in one process).
mod ymm {
    packed_kernels!(
        "avx2,fma",
        __m256,
        8,
        _mm256_setzero_ps(),
        _mm256_fmadd_ps,
        _mm256_set1_ps,
        1,
        4,
        3,
        2
    );
}

/// 512-bit kernels (AVX-512F): a panel is one vector.
mod zmm {
    packed_kernels!(
        "avx2,fma,avx512f",
        __m512,
        16,
        _mm512_setzero_ps(),
        _mm512_fmadd_ps,
        _mm512_set1_ps,
        4,
        4,
        1,
        4
    );
}
