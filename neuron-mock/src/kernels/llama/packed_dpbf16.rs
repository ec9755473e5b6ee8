//! Weight products in bf16 with AVX-512 BF16 dot products, for `NEURON_MOCK_MATMUL=bf16` on a
//! CPU without AMX (an AMD Zen 4 or later, an Intel Cooper Lake).
//!
//! The arithmetic is that of the AMX path ([`super::packed_amx`]), as its instruction defines
//! it: each weight and activation rounded to bf16, their exact products added one at a time,
//! in column order, to an f32 sum that starts at zero, each addition rounded to nearest even,
//! subnormal operands and sums taken as zeros. `VDPBF16PS` adds the two products of a column
//! pair into each of 16 f32 sums, the pair's second (odd) product first; so both operands' pairs
//! are given to it swapped, even column in the upper half, and every sum is then taken in
//! column order. The tests check each result against that definition bit for bit.
//!
//! Layout: a 16-row panel's column pair `i` is one vector of 16 pairs, row `r`'s pair in dword
//! `r`: the pair panels of [`super::packed::pack_bf16_pairs`] as they lie in memory, and for
//! f32 panels the same rows converted a block at a time (`VCVTNE2PS2BF16`, as the AMX path
//! converts them). Each token's pair is broadcast to every lane. A block of up to four panels
//! meets up to six tokens at a time: 24 sums in registers, each weight vector loaded once for
//! the six.
//!
//! Exactness: a token's results depend only on its own activations and the weights, never on
//! the other tokens of the pass or the block shape, so a decode step and a verify pass agree
//! bit for bit, as parallel decoding needs.

use std::arch::x86_64::*;

use amx_bf16::padded;

use super::packed::PANEL;

/// Panels per block: each weight vector loaded serves every token of a group.
pub(super) const PANELS_PER_BLOCK: usize = 4;
/// Tokens per group at most: 4 panels × 6 tokens = 24 sums, beside 4 weight vectors and a
/// broadcast, within the 32 vector registers.
const GROUP: usize = 6;
/// bf16 values in one panel's column pair: 16 rows of 2.
const PAIR_ROW: usize = 2 * PANEL;

/// A pass's activations `[tokens][k]` as the kernels read them: `[tokens][padded(k)]` bf16
/// (as for the AMX kernels), each pair of columns swapped, the odd one first, so that
/// `VDPBF16PS` adds the even column's product first.
pub(super) fn activations(x: &[f32], tokens: usize, k: usize, out: &mut Vec<u16>) {
    amx_bf16::rows_to_bf16(x, tokens, k, out);
    for pair in out.chunks_exact_mut(2) {
        pair.swap(0, 1);
    }
}

/// Whether this CPU has what the kernels need: AVX-512F, BW (the conversions' word
/// permutation) and BF16.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// Multiplies whole f32 panels (each `k · PANEL`, [`super::packed`] layout) with the `tokens`
/// rows of `x16` (from [`activations`]), writing `[panel][token][PANEL]` into `out`. Each
/// block of panels is converted to pair rows once and then read by every group of tokens.
///
/// # Panics
/// If `x16` or `out` is shorter than the shapes say, or [`available`] is false.
pub(super) fn panels(panels: &[f32], k: usize, x16: &[u16], tokens: usize, out: &mut [f32]) {
    assert!(
        available(),
        "the AVX-512 BF16 kernels need a CPU with AVX-512 BF16"
    );
    if k == 0 {
        out.fill(0.0);
        return;
    }
    let size = k * PANEL;
    let count = panels.len() / size;
    let k32 = padded(k);
    let steps = k32 / amx_bf16::COLUMNS;
    with_scratch(|converted| {
        converted.resize(PANELS_PER_BLOCK * k32 * PANEL, 0);
        for p in (0..count).step_by(PANELS_PER_BLOCK) {
            let n = PANELS_PER_BLOCK.min(count - p);
            let block = &panels[p * size..(p + n) * size];
            let b = &mut converted[..n * k32 * PANEL];
            super::packed_amx::to_pair_rows(block, k, n, 0..steps, b);
            // The conversion writes [step][panel][16 pair rows]: pair `q` of panel `j` is at
            // ((q / 16) · n + j) · 16 + q % 16.
            let row = |j: usize, q: usize| {
                ((q / (amx_bf16::COLUMNS / 2) * n + j) * (amx_bf16::COLUMNS / 2)
                    + q % (amx_bf16::COLUMNS / 2))
                    * PAIR_ROW
            };
            let out = &mut out[p * tokens * PANEL..];
            multiply_block(b, row, n, k32, x16, tokens, out);
        }
    });
}

/// [`panels`] for weights stored in bf16 pair panels (each panel `padded(k) · PANEL` values),
/// read straight from memory.
///
/// # Panics
/// As [`panels`].
pub(super) fn pair_panels(panels: &[u16], k: usize, x16: &[u16], tokens: usize, out: &mut [f32]) {
    assert!(
        available(),
        "the AVX-512 BF16 kernels need a CPU with AVX-512 BF16"
    );
    let k32 = padded(k);
    if k32 == 0 {
        out.fill(0.0);
        return;
    }
    let size = k32 * PANEL;
    let count = panels.len() / size;
    let row = |j: usize, q: usize| j * size + q * PAIR_ROW;
    for p in (0..count).step_by(PANELS_PER_BLOCK) {
        let n = PANELS_PER_BLOCK.min(count - p);
        let block = &panels[p * size..(p + n) * size];
        multiply_block(
            block,
            row,
            n,
            k32,
            x16,
            tokens,
            &mut out[p * tokens * PANEL..],
        );
    }
}

/// Runs `f` with this thread's buffer for converted blocks (a block is up to a few hundred
/// KiB: allocated for every task, the allocator would map and unmap it each time).
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u16>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| f(&mut cell.borrow_mut()))
}

/// Multiplies one block of `n ≤ 4` panels, pair `q` of panel `j` at `b[row(j, q)..][..32]`
/// as [`super::packed::pack_bf16_pairs`] lays it out, with every token, group by group; panel
/// `j`'s results for token `t` go to `out[(j · tokens + t) · PANEL..]`.
///
/// Every group swaps the halves of each pair row as it loads it (one rotation per weight
/// vector, shared by the group's tokens). Swapping them once, by the first group keeping a
/// swapped copy for the others or by swapping a copy of the block before the products, was
/// slower: 16 tokens 17.4-18.0 ms against 15.8-17.4 for SmolLM2-sized weights.
fn multiply_block(
    b: &[u16],
    row: impl Fn(usize, usize) -> usize + Copy,
    n: usize,
    k32: usize,
    x16: &[u16],
    tokens: usize,
    out: &mut [f32],
) {
    assert!(n <= PANELS_PER_BLOCK && x16.len() >= tokens * k32);
    assert!(out.len() >= n * tokens * PANEL);
    let pairs = k32 / 2;
    // Every weight pair row the block reads lies inside `b` (checked once, so the loops index
    // without checks the optimiser could not remove).
    for j in 0..n {
        assert!(row(j, pairs.saturating_sub(1)) + PAIR_ROW <= b.len() || pairs == 0);
    }
    let mut t0 = 0;
    while t0 < tokens {
        let rows = GROUP.min(tokens - t0);
        let x = &x16[t0 * k32..(t0 + rows) * k32];
        let mut sums = [[[0.0f32; PANEL]; PANELS_PER_BLOCK]; GROUP];
        let mut group = Group {
            pairs,
            x,
            rows,
            k32,
            sums: &mut sums,
        };
        // SAFETY: `available()` was asserted by the kernels' entry points (the only callers),
        // so the CPU has AVX-512F, BW and BF16; the functions are otherwise safe Rust.
        unsafe {
            match n {
                4 => group.tokens::<4>(b, row, 0),
                2 | 3 => group.tokens::<2>(b, row, 0),
                _ => group.tokens::<1>(b, row, 0),
            }
            if n == 3 {
                group.tokens::<1>(b, move |j, q| row(j + 2, q), 2);
            }
        }
        for (i, token_sums) in sums.iter().enumerate().take(rows) {
            for (j, s) in token_sums.iter().enumerate().take(n) {
                out[(j * tokens + t0 + i) * PANEL..][..PANEL].copy_from_slice(s);
            }
        }
        t0 += rows;
    }
}

/// One group of up to [`GROUP`] tokens (`rows` rows of `x`, each `k32` bf16) against panels
/// of `pairs` pair rows, its sums into `sums[token][panel]`.
struct Group<'a> {
    pairs: usize,
    x: &'a [u16],
    rows: usize,
    k32: usize,
    sums: &'a mut [[[f32; PANEL]; PANELS_PER_BLOCK]; GROUP],
}

impl Group<'_> {
    /// The sums of `P` panels, the block's `first..first + P`, for the group's tokens.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    fn tokens<const P: usize>(
        &mut self,
        b: &[u16],
        row: impl Fn(usize, usize) -> usize,
        first: usize,
    ) {
        match self.rows {
            1 => self.sums::<P, 1>(b, row, first),
            2 => self.sums::<P, 2>(b, row, first),
            3 => self.sums::<P, 3>(b, row, first),
            4 => self.sums::<P, 4>(b, row, first),
            5 => self.sums::<P, 5>(b, row, first),
            _ => self.sums::<P, 6>(b, row, first),
        }
    }

    /// [`Group::tokens`] for exactly `T` tokens: `P × T` sums in registers over every pair.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    fn sums<const P: usize, const T: usize>(
        &mut self,
        b: &[u16],
        row: impl Fn(usize, usize) -> usize,
        first: usize,
    ) {
        let (pairs, k32, x) = (self.pairs, self.k32, self.x);
        let mut acc = [[_mm512_setzero_ps(); P]; T];
        for q in 0..pairs {
            // Each pair row with its halves swapped: the even column's weight in the upper
            // half, which VDPBF16PS adds first.
            let w: [__m512i; P] = std::array::from_fn(|j| {
                let words: [u16; PAIR_ROW] = b[row(j, q)..][..PAIR_ROW]
                    .try_into()
                    .unwrap_or([0; PAIR_ROW]);
                _mm512_rol_epi32::<16>(bytemuck::cast(words))
            });
            for (t, acc_t) in acc.iter_mut().enumerate() {
                // The token's pair (swapped already, see [`activations`]) in every lane.
                let at = t * k32 + 2 * q;
                let pair = u32::from(x[at]) | u32::from(x[at + 1]) << 16;
                let xs = _mm512_set1_epi32(pair as i32);
                for (a, &wj) in acc_t.iter_mut().zip(&w) {
                    *a = _mm512_dpbf16_ps(*a, as_bf16(wj), as_bf16(xs));
                }
            }
        }
        for (s, a) in self.sums.iter_mut().zip(&acc) {
            for (sj, &aj) in s[first..].iter_mut().zip(a) {
                *sj = bytemuck::cast(aj);
            }
        }
    }
}

/// A vector of 32 bf16 values from its bits.
#[inline(always)]
fn as_bf16(v: __m512i) -> __m512bh {
    // SAFETY: __m512i and __m512bh are both 64 bytes of plain bits, every pattern valid.
    unsafe { std::mem::transmute(v) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::llama::packed::{pack, pack_bf16_pairs};
    use crate::testing::pseudo_random;
    use amx_bf16::{from_bf16, rows_to_bf16};

    /// The definition (module doc): exact products of the bf16 operands, subnormal ones taken
    /// as zeros, added in column order to an f32 sum from zero, subnormal sums flushed.
    fn definition(w16: &[u16], x16: &[u16]) -> f32 {
        let daz = |b: u16| {
            let v = from_bf16(b);
            if v.is_subnormal() { 0.0 } else { v }
        };
        let mut acc = 0.0f32;
        for (&a, &b) in w16.iter().zip(x16) {
            // The product of two bf16 values is exact in f32 (8 + 8 significant bits).
            acc += daz(a) * daz(b);
            if acc.is_subnormal() {
                acc = 0.0f32.copysign(acc);
            }
        }
        acc
    }

    /// Row `r`'s bf16 weights as `pack_bf16_pairs` rounds them (column order).
    fn weights_row(packed: &[u16], r: usize, k: usize) -> Vec<u16> {
        let k32 = padded(k);
        let panel = &packed[(r / PANEL) * k32 * PANEL..][..k32 * PANEL];
        (0..k32)
            .map(|c| panel[(c / 2) * 2 * PANEL + (r % PANEL) * 2 + c % 2])
            .collect()
    }

    #[test]
    fn products_equal_the_definition_bit_for_bit_however_many_tokens() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        // Partial blocks of 1 to 3 panels, columns not a multiple of 32, groups of 1 to 6
        // tokens and more than one group, values of mixed sizes (sums that lose bits).
        for &(rows, k, tokens) in &[
            (16, 32, 1),
            (40, 45, 3),
            (100, 576, 16),
            (70, 100, 21),
            (36, 64, 7),
            (48, 33, 13),
            (20, 0, 2),
            (33, 7, 5),
        ] {
            let mut w = pseudo_random(rows * k, 11);
            for (i, v) in w.iter_mut().enumerate() {
                *v *= [1.0, 1e3, 1e-3, 37.0][i % 4];
            }
            let x = pseudo_random(tokens * k, 12);
            let mut x16 = Vec::new();
            activations(&x, tokens, k, &mut x16);
            let mut unswapped = Vec::new();
            rows_to_bf16(&x, tokens, k, &mut unswapped);
            let pairs = pack_bf16_pairs(&w, rows, k);
            let panels_n = rows.div_ceil(PANEL);
            let mut from_f32 = vec![f32::NAN; panels_n * tokens * PANEL];
            let mut from_pairs = vec![f32::NAN; panels_n * tokens * PANEL];
            panels(&pack(&w, rows, k), k, &x16, tokens, &mut from_f32);
            pair_panels(&pairs, k, &x16, tokens, &mut from_pairs);
            let k32 = padded(k);
            for t in 0..tokens {
                for r in 0..rows {
                    let want = definition(&weights_row(&pairs, r, k), &unswapped[t * k32..][..k32]);
                    let at = ((r / PANEL) * tokens + t) * PANEL + r % PANEL;
                    assert_eq!(
                        from_pairs[at].to_bits(),
                        want.to_bits(),
                        "{rows}x{k}, {tokens} tokens: token {t} row {r}: {} vs {want}",
                        from_pairs[at]
                    );
                    assert_eq!(from_f32[at].to_bits(), want.to_bits(), "f32 panels");
                }
            }
            // Each token alone gives the same bits as among the others.
            for t in 0..tokens {
                let mut alone = vec![f32::NAN; panels_n * PANEL];
                pair_panels(&pairs, k, &x16[t * k32..][..k32], 1, &mut alone);
                for p in 0..panels_n {
                    for l in 0..PANEL {
                        let among = from_pairs[(p * tokens + t) * PANEL + l];
                        assert_eq!(alone[p * PANEL + l].to_bits(), among.to_bits());
                    }
                }
            }
        }
    }

    #[test]
    fn sums_are_taken_in_column_order_with_each_addition_rounded() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        // 2^24, 0, then the pair 1, 2: in column order, 2^24 + 1 rounds to 2^24 (ties to
        // even), then + 2 gives 2^24 + 2; the pair's odd column first would give 2^24 + 4.
        let k = 4;
        let mut w = vec![0.0f32; PANEL * k];
        w[..4].copy_from_slice(&[16_777_216.0, 0.0, 1.0, 2.0]);
        let x = [1.0f32; 4];
        let mut x16 = Vec::new();
        activations(&x, 1, k, &mut x16);
        let mut out = vec![f32::NAN; PANEL];
        pair_panels(&pack_bf16_pairs(&w, PANEL, k), k, &x16, 1, &mut out);
        assert_eq!(out[0], 16_777_218.0);
        assert_eq!(out[1], 0.0);
    }
}
