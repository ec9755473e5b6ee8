//! Weight products in bf16 on Intel AMX, for `NEURON_MOCK_MATMUL=bf16`.
//!
//! A NeuronCore multiplies matrices in bf16 by default (the compiler casts the operands of
//! every matrix multiplication to bf16 and accumulates in f32), and its time for a pass of 16
//! tokens is close to its time for one. This path does the same arithmetic on a CPU with AMX
//! tiles: each weight and each activation is rounded to bf16 (to nearest, ties to even), and
//! `TDPBF16PS` accumulates their products in f32. The f32 weights of [`super::packed`] are
//! converted 32 columns at a time as they stream from memory, so the compiled artifacts are the same
//! in both modes; one token stays bound by memory bandwidth, while 16 tokens cost little more
//! than one, since a tile multiply-add does 16 tokens × 16 rows × 32 columns at once.
//!
//! Exactness: a token's results depend only on its own activations and on the weights, taken
//! in column order 32 at a time, whatever the number of tokens in the pass (AMX rows are
//! independent), so a decode step and a verify pass agree bit for bit, as parallel decoding
//! needs. The numbers differ from the f32 path's by bf16 rounding, as a device's do.
//!
//! Layouts. A weight block is `n ≤ 4` panels; panel `j`'s column pairs `(2i, 2i + 1)` of each
//! run of 32 columns become the 16 rows of one B tile, row `i` holding for each of the panel's
//! 16 matrix rows `r` the pair `(w[r][2i], w[r][2i + 1])` (the "VNNI" order `TDPBF16PS`
//! reads). An A tile is up to 16 tokens × 32 activations; a C tile up to 16 tokens × 16 f32
//! sums, stored straight into the `[panel][token][PANEL]` result. Columns past `k` are zeros
//! in both operands.
//!
//! The unsafe operations are the AMX instructions themselves (inline assembly: Rust has no
//! stable AMX intrinsics), each next to the bounds check that makes its memory access sound,
//! calling the AVX-512 conversion after checking the CPU has it, and reading a bf16 vector's
//! bits as integers.

use std::arch::x86_64::*;

use amx_bf16::{Tiles, tile_dpbf16ps, tile_load, tile_store, tile_zero};
pub(super) use amx_bf16::{available, padded, rows_to_bf16 as activations};

use super::packed::PANEL;
use super::simd::prefetch;

/// Columns per tile: 32 bf16 values fill a 64-byte tile row.
const COLUMNS: usize = amx_bf16::COLUMNS;
/// Tokens per A tile (its most rows).
pub(super) const GROUP: usize = amx_bf16::ROWS;
/// Panels per block: four C tiles (tmm0-3) beside the A tile (tmm4) and a B tile (tmm5).
pub(super) const PANELS_PER_BLOCK: usize = 4;
/// Bytes in one tile row.
const ROW_BYTES: usize = amx_bf16::ROW_BYTES;

/// The tile rows for one group of `rows` tokens (C tiles tmm0-3 and the A tile tmm4) or, when
/// `second > 0`, two groups: C tiles tmm0-1 and A tile tmm4 of `rows`, C tiles tmm2-3 and A
/// tile tmm6 of `second`. The B tile tmm5 has 16 rows.
fn tile_rows(rows: usize, second: usize) -> [u8; 8] {
    let (r, q) = (rows as u8, second as u8);
    let b = (COLUMNS / 2) as u8;
    if second == 0 {
        [r, r, r, r, r, b, 0, 0]
    } else {
        [r, r, q, q, r, b, q, 0]
    }
}

/// Loads the B tile tmm5 from the 1 KiB at `$b`.
macro_rules! load_b {
    ($b:expr) => {
        tile_load!("5", $b, ROW_BYTES)
    };
}

/// Multiplies the whole panels in `panels` (each `k · PANEL` f32) with the `tokens` rows of
/// `x16` (from [`activations`]), writing `[panel][token][PANEL]` into `out`.
///
/// Up to 16 tokens (a decode step or a verify pass), each 32-column step of a block is
/// converted just before its multiply-adds, so the converted tiles never leave L1, and the
/// next step's weights are prefetched meanwhile (a pass of one token over SmolLM2-sized
/// weights: 28 ms converting whole blocks first, 26 ms step by step, 21 ms with the prefetch;
/// prefetching 2, 4 or 8 steps ahead was slower). 17 to 32 tokens go two groups at a time
/// ([`pairs`]); more (a prefill) convert a whole block once and reuse it for every group of
/// 16.
///
/// # Panics
/// If `x16` or `out` is shorter than the shapes say, or [`available`] is false.
pub(super) fn panels(panels: &[f32], k: usize, x16: &[u16], tokens: usize, out: &mut [f32]) {
    assert!(
        available(),
        "the AMX kernels need a CPU and a kernel with AMX"
    );
    if k == 0 {
        // Empty rows: every sum is zero.
        out.fill(0.0);
        return;
    }
    let size = k * PANEL;
    let count = panels.len() / size;
    let k32 = padded(k);
    let steps = k32 / COLUMNS;
    assert!(x16.len() >= tokens * k32 && out.len() >= count * tokens * PANEL);
    if tokens > GROUP && tokens <= 2 * GROUP {
        return pairs(panels, k, x16, tokens, out);
    }
    let fused = tokens <= GROUP;
    // B tiles, [step][panel][16 rows][16 lanes][2] bf16: one step's in the fused loop, a
    // whole block's otherwise.
    let mut b = vec![0u16; PANELS_PER_BLOCK * if fused { 1 } else { steps } * TILE];
    let mut tiles: Option<Tiles> = None;
    let mut p = 0;
    while p < count {
        let n = PANELS_PER_BLOCK.min(count - p);
        let block = &panels[p * size..(p + n) * size];
        if !fused {
            to_pair_rows(block, k, n, 0..steps, &mut b);
        }
        for t0 in (0..tokens).step_by(GROUP) {
            let rows = GROUP.min(tokens - t0);
            configure_group(&mut tiles, rows);
            let a = &x16[t0 * k32..(t0 + rows) * k32];
            zero_sums();
            if fused {
                for s in 0..steps {
                    to_pair_rows(block, k, n, s..s + 1, &mut b);
                    multiply(|_, j| &b[j * TILE..][..TILE], n, s..s + 1, a, k32);
                }
            } else {
                multiply(|s, j| &b[(s * n + j) * TILE..][..TILE], n, 0..steps, a, k32);
            }
            store_sums(&[0, 1, 2, 3][..n], out, |j| {
                (((p + j) * tokens + t0) * PANEL, rows)
            });
        }
        p += n;
    }
}

/// Configures the tiles for one group of `rows` tokens, keeping the configuration in `tiles`
/// when it is for as many rows already.
fn configure_group(tiles: &mut Option<Tiles>, rows: usize) {
    if tiles
        .as_ref()
        .is_none_or(|t| t.rows() != tile_rows(rows, 0))
    {
        drop(tiles.take()); // released before reconfiguring
        *tiles = Some(Tiles::configure(tile_rows(rows, 0)));
    }
}

/// [`panels`] for 17 to 32 tokens: two groups of tokens (tokens 0-15 and the rest) against
/// blocks of two panels, each 32-column step converted once for both groups just before its
/// multiply-adds. (Whole blocks converted first and then multiplied group by group took 35 ms
/// for 32 tokens over SmolLM2-sized weights, this 30-31.6 ms, against 23 ms for 16 tokens.)
fn pairs(panels: &[f32], k: usize, x16: &[u16], tokens: usize, out: &mut [f32]) {
    let size = k * PANEL;
    let count = panels.len() / size;
    let k32 = padded(k);
    let steps = k32 / COLUMNS;
    let rows = [GROUP, tokens - GROUP];
    let a0 = &x16[..GROUP * k32];
    let a1 = &x16[GROUP * k32..tokens * k32];
    let mut b = vec![0u16; 2 * TILE];
    let _tiles = Tiles::configure(tile_rows(rows[0], rows[1]));
    let mut p = 0;
    while p < count {
        let n = 2.min(count - p);
        let block = &panels[p * size..(p + n) * size];
        zero_sums();
        for s in 0..steps {
            to_pair_rows(block, k, n, s..s + 1, &mut b);
            multiply_pair(|_, j| &b[j * TILE..][..TILE], n, s, [a0, a1], k32);
        }
        // C tiles 0-1: the first group's sums for the block's panels, 2-3 the second's.
        let used: &[usize] = if n == 2 { &[0, 1, 2, 3] } else { &[0, 2] };
        store_sums(used, out, |c| {
            let (group, j) = (c / 2, c % 2);
            (((p + j) * tokens + group * GROUP) * PANEL, rows[group])
        });
        p += n;
    }
}

/// [`panels`] for weights stored in bf16 pair panels (`packed::pack_bf16_pairs`, each panel
/// `padded(k) · PANEL` values): each step of a panel is a B tile as it lies in memory, loaded
/// straight from the weights. Up to 16 tokens, blocks of four panels against one group; 17 to
/// 32 tokens, blocks of two panels against two groups (each B tile loaded once for both);
/// more, every group of 16 against a block of four panels (which stays in L2).
///
/// # Panics
/// If `x16` or `out` is shorter than the shapes say, or [`available`] is false.
pub(super) fn pair_panels(panels: &[u16], k: usize, x16: &[u16], tokens: usize, out: &mut [f32]) {
    assert!(
        available(),
        "the AMX kernels need a CPU and a kernel with AMX"
    );
    let k32 = padded(k);
    if k32 == 0 {
        out.fill(0.0);
        return;
    }
    let size = k32 * PANEL;
    let count = panels.len() / size;
    let steps = k32 / COLUMNS;
    assert!(x16.len() >= tokens * k32 && out.len() >= count * tokens * PANEL);
    // The B tile of step `s` of panel `j` of the block starting at panel `p`.
    let tile = |p: usize| move |s: usize, j: usize| &panels[(p + j) * size + s * TILE..][..TILE];
    if tokens > GROUP && tokens <= 2 * GROUP {
        let rows = [GROUP, tokens - GROUP];
        let a = [&x16[..GROUP * k32], &x16[GROUP * k32..tokens * k32]];
        let _tiles = Tiles::configure(tile_rows(rows[0], rows[1]));
        for p in (0..count).step_by(2) {
            let n = 2.min(count - p);
            zero_sums();
            for s in 0..steps {
                multiply_pair(tile(p), n, s, a, k32);
            }
            let used: &[usize] = if n == 2 { &[0, 1, 2, 3] } else { &[0, 2] };
            store_sums(used, out, |c| {
                let (group, j) = (c / 2, c % 2);
                (((p + j) * tokens + group * GROUP) * PANEL, rows[group])
            });
        }
        return;
    }
    let mut tiles: Option<Tiles> = None;
    for p in (0..count).step_by(PANELS_PER_BLOCK) {
        let n = PANELS_PER_BLOCK.min(count - p);
        for t0 in (0..tokens).step_by(GROUP) {
            let rows = GROUP.min(tokens - t0);
            configure_group(&mut tiles, rows);
            zero_sums();
            multiply(tile(p), n, 0..steps, &x16[t0 * k32..(t0 + rows) * k32], k32);
            store_sums(&[0, 1, 2, 3][..n], out, |j| {
                (((p + j) * tokens + t0) * PANEL, rows)
            });
        }
    }
}

/// Columns ahead of the conversion that are prefetched: the next step.
const AHEAD: usize = COLUMNS;

/// bf16 values in one B tile: 16 rows of 16 pairs (1 KiB).
const TILE: usize = COLUMNS * PANEL;

/// Zeroes the C tiles tmm0-3.
fn zero_sums() {
    // SAFETY: the tiles are configured (the caller holds `Tiles`); touches no memory.
    unsafe {
        tile_zero!("0");
        tile_zero!("1");
        tile_zero!("2");
        tile_zero!("3");
    }
}

/// Adds to the C tiles of `n` panels the products of the column steps `steps`: A tiles from
/// `a` (rows of `k32` bf16), the B tile of step `s` and panel `j` from `b(s, j)`.
fn multiply<'b>(
    b: impl Fn(usize, usize) -> &'b [u16],
    n: usize,
    steps: std::ops::Range<usize>,
    a: &[u16],
    k32: usize,
) {
    let rows = a.len() / k32;
    assert!(n <= PANELS_PER_BLOCK && rows * k32 == a.len());
    assert!(steps.end * COLUMNS <= k32);
    for s in steps {
        let a_ptr = a[s * COLUMNS..].as_ptr();
        // SAFETY: the tiles are configured for one group of `rows` rows (the caller holds
        // `Tiles`). The A tile reads `rows` rows of 64 bytes, 2·k32 bytes apart, from `a_ptr`:
        // row `r` is a[r·k32 + s·32 ..][..32], inside `a` (rows · k32 values) since
        // s·32 + 32 ≤ k32.
        unsafe { tile_load!("4", a_ptr, k32 * 2) };
        let b_tile = |j: usize| b(s, j)[..TILE].as_ptr();
        // SAFETY: each B tile read is the 16 rows of 64 bytes (TILE bf16) at `b_tile(j)`,
        // inside the slice `b(s, j)` by the slicing; tmm4 holds this step's A tile.
        unsafe {
            load_b!(b_tile(0));
            tile_dpbf16ps!("0", "4", "5");
            if n > 1 {
                load_b!(b_tile(1));
                tile_dpbf16ps!("1", "4", "5");
            }
            if n > 2 {
                load_b!(b_tile(2));
                tile_dpbf16ps!("2", "4", "5");
            }
            if n > 3 {
                load_b!(b_tile(3));
                tile_dpbf16ps!("3", "4", "5");
            }
        }
    }
}

/// Adds to the C tiles of two groups of tokens (`a[g]`, rows of `k32` bf16) and `n ≤ 2`
/// panels the products of column step `s`, the B tile of panel `j` from `b(s, j)`.
fn multiply_pair<'b>(
    b: impl Fn(usize, usize) -> &'b [u16],
    n: usize,
    s: usize,
    a: [&[u16]; 2],
    k32: usize,
) {
    assert!(n <= 2 && (s + 1) * COLUMNS <= k32);
    for g in a {
        assert!(!g.is_empty() && g.len() % k32 == 0 && g.len() / k32 <= GROUP);
    }
    let (a0, a1) = (a[0][s * COLUMNS..].as_ptr(), a[1][s * COLUMNS..].as_ptr());
    // SAFETY: the tiles are configured for the two groups' rows (the caller holds `Tiles`).
    // Each A tile reads its group's rows of 64 bytes, 2·k32 bytes apart, from column s·32:
    // inside the group's slice (asserted above), as in `multiply`. Each B tile read is the
    // 1 KiB at the start of `b(s, j)`, inside it by the slicing.
    unsafe {
        tile_load!("4", a0, k32 * 2);
        tile_load!("6", a1, k32 * 2);
        load_b!(b(s, 0)[..TILE].as_ptr());
        tile_dpbf16ps!("0", "4", "5");
        tile_dpbf16ps!("2", "6", "5");
        if n > 1 {
            load_b!(b(s, 1)[..TILE].as_ptr());
            tile_dpbf16ps!("1", "4", "5");
            tile_dpbf16ps!("3", "6", "5");
        }
    }
}

/// Stores the C tiles `tiles` (of tmm0-3), tile `c` as `at(c).1` rows of 16 f32 at
/// `out[at(c).0..]`.
fn store_sums(tiles: &[usize], out: &mut [f32], at: impl Fn(usize) -> (usize, usize)) {
    for &c in tiles {
        let (offset, rows) = at(c);
        let dst = &mut out[offset..][..rows * PANEL];
        let p = dst.as_mut_ptr();
        // SAFETY: tile `c` is configured for `rows` rows (the caller holds `Tiles`); the
        // store writes `rows` rows of 64 bytes (16 f32), 64 bytes apart: exactly `dst`, whose
        // length the slicing checked.
        unsafe {
            match c {
                0 => {
                    tile_store!("0", p, ROW_BYTES)
                }
                1 => {
                    tile_store!("1", p, ROW_BYTES)
                }
                2 => {
                    tile_store!("2", p, ROW_BYTES)
                }
                _ => {
                    tile_store!("3", p, ROW_BYTES)
                }
            }
        }
    }
}

/// [`convert`], after checking that the CPU has what it needs (AVX-512F, BW and BF16, which
/// the AMX kernels and the AVX-512 BF16 ones of [`amx_bf16::dot`] both require).
///
/// # Panics
/// On a CPU without them.
pub(super) fn to_pair_rows(
    panels: &[f32],
    k: usize,
    n: usize,
    steps: std::ops::Range<usize>,
    b: &mut [u16],
) {
    assert!(amx_bf16::dot::available());
    // SAFETY: the assertion checked AVX-512F, BW and BF16; the function is safe Rust apart
    // from needing them.
    unsafe { convert(panels, k, n, steps, b) }
}

/// Converts column steps `steps` of `n` whole panels (f32, [`super::packed`] layout) to B
/// tiles in `b`, `[step - steps.start][panel][TILE]` (see the module doc): each pair of
/// columns becomes one 16-lane row of bf16 pairs (`VCVTNE2PS2BF16` and a word permutation;
/// 3-4% faster for one token than rounding with integer instructions); columns past `k` are
/// zeros. The panels are read in step, a pair of columns of each in turn, as the f32 kernels
/// read them (panel by panel measured 5% slower for one token).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn convert(panels: &[f32], k: usize, n: usize, steps: std::ops::Range<usize>, b: &mut [u16]) {
    let size = k * PANEL;
    // Word 2r of a row is the even column's row r, word 2r + 1 the odd column's.
    let interleave: [u16; 2 * PANEL] = std::array::from_fn(|w| (w / 2 + (w % 2) * PANEL) as u16);
    let interleave: __m512i = bytemuck::cast(interleave);
    let column = |panel: &[f32], c: usize| -> __m512 {
        match panel.get(c * PANEL..(c + 1) * PANEL) {
            Some(s) => bytemuck::cast::<[f32; PANEL], __m512>(s.try_into().unwrap_or([0.0; PANEL])),
            None => _mm512_setzero_ps(),
        }
    };
    let first = steps.start;
    for s in steps {
        for i in 0..COLUMNS / 2 {
            for j in 0..n {
                let panel = &panels[j * size..(j + 1) * size];
                let row = &mut b[((s - first) * n + j) * TILE + i * 2 * PANEL..][..2 * PANEL];
                let c = s * COLUMNS + 2 * i;
                for ahead in [c + AHEAD, c + 1 + AHEAD] {
                    if let Some(v) = panel.get(ahead * PANEL) {
                        prefetch::<_MM_HINT_T0>(v);
                    }
                }
                // Words 0-15: the even column rounded to bf16 (to nearest even), 16-31 the odd
                // one; then each row's two words side by side.
                let halves = _mm512_cvtne2ps_pbh(column(panel, c + 1), column(panel, c));
                // SAFETY: __m512bh and __m512i are both 64 bytes of plain bits, any pattern
                // valid.
                let halves: __m512i = unsafe { std::mem::transmute(halves) };
                let pairs = _mm512_permutexvar_epi16(interleave, halves);
                let lanes: [u16; 2 * PANEL] = bytemuck::cast(pairs);
                row.copy_from_slice(&lanes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::llama::packed::pack;
    use crate::testing::pseudo_random;
    use amx_bf16::{from_bf16, to_bf16};

    /// `(rows, k, tokens)` of the products tested. Odd shapes: a partial last panel, columns
    /// not a multiple of 32 (or odd), a block of fewer than four (or two) panels, two groups of
    /// tokens (17 to 32), more (a prefill), no columns at all.
    const SHAPES: &[(usize, usize, usize)] = &[
        (16, 32, 1),
        (40, 45, 3),
        (100, 576, 16),
        (70, 100, 21),
        (40, 576, 32),
        (36, 64, 17),
        (20, 64, 40),
        (20, 0, 2),
        (33, 7, 5),
    ];

    /// The products in bf16 with f32 sums, in double precision: what AMX should be close to.
    fn reference(w: &[f32], x: &[f32], rows: usize, k: usize, tokens: usize) -> Vec<f64> {
        let mut y = vec![0.0; tokens * rows];
        for t in 0..tokens {
            for r in 0..rows {
                y[t * rows + r] = (0..k)
                    .map(|c| {
                        f64::from(from_bf16(to_bf16(w[r * k + c])))
                            * f64::from(from_bf16(to_bf16(x[t * k + c])))
                    })
                    .sum();
            }
        }
        y
    }

    /// `[panel][token][PANEL]` results of the AMX path.
    fn amx(w: &[f32], x: &[f32], rows: usize, k: usize, tokens: usize) -> Vec<f32> {
        let packed = pack(w, rows, k);
        let mut x16 = Vec::new();
        activations(x, tokens, k, &mut x16);
        let panels_n = rows.div_ceil(PANEL);
        let mut out = vec![f32::NAN; panels_n * tokens * PANEL];
        panels(&packed, k, &x16, tokens, &mut out);
        out
    }

    /// [`amx`] with the weights stored in bf16 pair panels.
    fn amx_pairs(w: &[f32], x: &[f32], rows: usize, k: usize, tokens: usize) -> Vec<f32> {
        let packed = crate::kernels::llama::packed::pack_bf16_pairs(w, rows, k);
        let mut x16 = Vec::new();
        activations(x, tokens, k, &mut x16);
        let mut out = vec![f32::NAN; rows.div_ceil(PANEL) * tokens * PANEL];
        pair_panels(&packed, k, &x16, tokens, &mut out);
        out
    }

    #[test]
    fn pair_panels_are_the_b_tiles_the_conversion_makes() {
        if !available() {
            eprintln!("skipped: this CPU or kernel has no AMX");
            return;
        }
        // Rounding and layout, value by value: subnormals flushed, ties to even, a NaN kept a
        // NaN, columns past k zero.
        let (rows, k) = (40, 100);
        let mut w = pseudo_random(rows * k, 13);
        for (i, v) in w.iter_mut().enumerate().step_by(5) {
            *v = match i % 4 {
                0 => 1.0e-40,
                1 => -3.0e-39,
                2 => f32::from_bits(0x3f80_8000),
                _ => f32::from_bits(0x3f81_8000),
            };
        }
        w[17] = f32::NAN;
        let pairs = crate::kernels::llama::packed::pack_bf16_pairs(&w, rows, k);
        let packed = pack(&w, rows, k);
        let (k32, steps, count) = (padded(k), padded(k) / COLUMNS, rows.div_ceil(PANEL));
        let mut b = vec![0u16; count * steps * TILE];
        to_pair_rows(&packed, k, count, 0..steps, &mut b);
        for s in 0..steps {
            for j in 0..count {
                let converted = &b[(s * count + j) * TILE..][..TILE];
                let stored = &pairs[j * k32 * PANEL + s * TILE..][..TILE];
                assert_eq!(converted, stored, "step {s}, panel {j}");
            }
        }
    }

    #[test]
    fn weights_stored_in_bf16_give_the_bits_of_f32_weights_converted() {
        if !available() {
            eprintln!("skipped: this CPU or kernel has no AMX");
            return;
        }
        for &(rows, k, tokens) in SHAPES {
            let mut w = pseudo_random(rows * k, 11);
            // Values the conversion treats specially: subnormals (flushed to zero), ties, NaN
            // excluded (it would spread to whole rows and compare unequal).
            for (i, v) in w.iter_mut().enumerate().step_by(7) {
                *v = match i % 3 {
                    0 => 1.0e-40,
                    1 => -3.0e-39,
                    _ => f32::from_bits(0x3f80_8000), // halfway between two bf16 values
                };
            }
            let x = pseudo_random(tokens * k, 12);
            let converted = amx(&w, &x, rows, k, tokens);
            let stored = amx_pairs(&w, &x, rows, k, tokens);
            assert!(
                converted
                    .iter()
                    .zip(&stored)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{rows}x{k}, {tokens} tokens: bf16 pair panels differ from converted f32 panels"
            );
        }
    }

    #[test]
    fn products_match_bf16_arithmetic_and_do_not_depend_on_the_token_count() {
        if !available() {
            eprintln!("skipped: this CPU or kernel has no AMX");
            return;
        }
        for &(rows, k, tokens) in SHAPES {
            let w = pseudo_random(rows * k, 7);
            let x = pseudo_random(tokens * k, 8);
            let got = amx(&w, &x, rows, k, tokens);
            let want = reference(&w, &x, rows, k, tokens);
            for t in 0..tokens {
                for r in 0..rows {
                    let g = got[((r / PANEL) * tokens + t) * PANEL + r % PANEL];
                    let e = want[t * rows + r];
                    let scale: f64 = (0..k)
                        .map(|c| f64::from(w[r * k + c] * x[t * k + c]).abs())
                        .sum();
                    assert!(
                        (f64::from(g) - e).abs() <= 1e-5 * scale.max(1.0),
                        "{rows}x{k}, {tokens} tokens: y[{t}][{r}] = {g}, bf16 arithmetic {e}"
                    );
                }
            }
            // Each token alone gives the same bits as in the whole pass.
            for t in 0..tokens {
                let alone = amx(&w, &x[t * k..(t + 1) * k], rows, k, 1);
                for p in 0..rows.div_ceil(PANEL) {
                    let whole = &got[(p * tokens + t) * PANEL..][..PANEL];
                    let single = &alone[p * PANEL..][..PANEL];
                    assert!(
                        whole
                            .iter()
                            .zip(single)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{rows}x{k}: token {t} of {tokens} differs from its product alone"
                    );
                }
            }
        }
    }
}
