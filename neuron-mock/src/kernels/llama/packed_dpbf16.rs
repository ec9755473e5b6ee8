//! Weight products in bf16 with AVX-512 BF16 dot products, for `NEURON_MOCK_MATMUL=bf16` on a
//! CPU without AMX (an AMD Zen 4 or later, an Intel Cooper Lake).
//!
//! The arithmetic is that of the AMX path ([`super::packed_amx`]) as its instruction defines
//! it (each weight and activation rounded to bf16, their exact products added one at a time in
//! column order to an f32 sum, each addition rounded, subnormals flushed), computed by
//! [`amx_bf16::dot::block`], which head training's products use as well. Its B vectors are
//! the pair panels of [`super::packed::pack_bf16_pairs`] as they lie in memory (column pair
//! `i` of a 16-row panel is one vector, row `r`'s pair in dword `r`), or f32 panels converted
//! to them a block at a time (`VCVTNE2PS2BF16`, as the AMX path converts them); the
//! activations are converted once per product, each pair swapped as `VDPBF16PS` needs it. The
//! tests check every result against the definition bit for bit.
//!
//! Exactness: a token's results depend only on its own activations and the weights, never on
//! the other tokens of the pass or the block shape, so a decode step and a verify pass agree
//! bit for bit, as parallel decoding needs.

use amx_bf16::{dot, padded};

use super::packed::PANEL;

/// Panels per block: each weight vector loaded serves every token of a group.
pub(super) const PANELS_PER_BLOCK: usize = dot::PANELS;
/// Tokens per group at most.
const GROUP: usize = dot::ROWS;
/// bf16 values in one panel's column pair: 16 rows of 2.
const PAIR_ROW: usize = dot::PAIR_ROW;

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
pub(super) use amx_bf16::dot::available;

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
/// as [`super::packed::pack_bf16_pairs`] lays it out, with every token, six at a time
/// ([`dot::block`]); panel `j`'s results for token `t` go to `out[(j · tokens + t) · PANEL..]`.
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
    let weights = move |j: usize, q: usize| -> [u16; PAIR_ROW] {
        b[row(j, q)..][..PAIR_ROW]
            .try_into()
            .unwrap_or([0; PAIR_ROW])
    };
    let mut sums: dot::Sums = [[[0.0; PANEL]; PANELS_PER_BLOCK]; GROUP];
    for t0 in (0..tokens).step_by(GROUP) {
        let rows = GROUP.min(tokens - t0);
        // The token's pair, swapped already by [`activations`].
        let x = &x16[t0 * k32..(t0 + rows) * k32];
        let pair = move |t: usize, q: usize| {
            let pair = &x[t * k32 + 2 * q..][..2];
            u32::from(pair[0]) | u32::from(pair[1]) << 16
        };
        dot::block(n, rows, pairs, weights, pair, &mut sums);
        for (i, token_sums) in sums.iter().enumerate().take(rows) {
            for (j, s) in token_sums.iter().enumerate().take(n) {
                out[(j * tokens + t0 + i) * PANEL..][..PANEL].copy_from_slice(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::llama::packed::{pack, pack_bf16_pairs};
    use crate::testing::pseudo_random;
    use amx_bf16::dot::definition;
    use amx_bf16::rows_to_bf16;

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
}
