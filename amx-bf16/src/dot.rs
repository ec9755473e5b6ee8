//! The same bf16 products on a CPU without AMX but with AVX-512 BF16 (AMD Zen 4 and later,
//! Intel Cooper Lake): `VDPBF16PS` adds the two products of a column pair into each of 16 f32
//! sums.
//!
//! The arithmetic is `TDPBF16PS`'s as its instruction defines it: exact products of the bf16
//! operands added one at a time in inner-index order, each addition rounded to nearest even,
//! subnormals taken as zeros. `VDPBF16PS` adds a pair's second (odd) product first (seen on a
//! Zen 4: 2^24 + 2 + 1 gives 2^24 + 4), so both operands reach it with each pair's halves
//! swapped, the even index's value in the upper half, and every sum is then taken in order.
//! Each output is one row of A against one column of B, so results do not depend on how
//! the rows are grouped or split between threads, as with AMX.
//!
//! [`block`] is the kernel the mock device's bf16 products and [`super::gemm`] share: up to 4
//! panels of 16 columns against up to 6 rows, 24 sums in registers, each weight vector loaded
//! once for the 6 rows and each row's pair broadcast once for the 4 panels.

use std::arch::x86_64::*;

/// Panels (of 16 columns) in a block at most.
pub const PANELS: usize = 4;
/// Rows in a block at most: 4 × 6 sums, 4 B vectors and a broadcast fill the 32 registers.
pub const ROWS: usize = 6;
/// bf16 values in one pair row of a panel: 16 columns' pairs.
pub const PAIR_ROW: usize = 32;

/// The sums of a block: `[row][panel][column]`.
pub type Sums = [[[f32; 16]; PANELS]; ROWS];

/// Whether this CPU has the instructions: AVX-512F, BW (the conversions) and BF16.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
}

/// `sums[r][j][c] = Σ_q` the pair products of row `r` and panel `j`'s column `c`, over the
/// pair indices `q < pairs`, for `panels ≤ 4` panels and `rows ≤ 6` rows (the rest of `sums`
/// is left as it was). `b(j, q)` is panel `j`'s pair row `q` as stored (column `c`'s pair at
/// `2c`, `2c + 1`, the even index first); `a(r, q)` is row `r`'s pair `q` swapped (the even
/// index's bf16 bits in the upper half).
///
/// # Panics
/// If [`available`] is false, or `panels` or `rows` is out of range.
pub fn block(
    panels: usize,
    rows: usize,
    pairs: usize,
    b: impl Fn(usize, usize) -> [u16; PAIR_ROW] + Copy,
    a: impl Fn(usize, usize) -> u32 + Copy,
    sums: &mut Sums,
) {
    assert!(
        available(),
        "the AVX-512 BF16 products need a CPU with AVX-512 BF16"
    );
    assert!((1..=PANELS).contains(&panels) && (1..=ROWS).contains(&rows));
    // SAFETY: the assertion checked AVX-512F, BW and BF16; the functions are otherwise safe
    // Rust.
    unsafe {
        match panels {
            4 => rows_of::<4>(rows, pairs, b, a, sums, 0),
            2 | 3 => rows_of::<2>(rows, pairs, b, a, sums, 0),
            _ => rows_of::<1>(rows, pairs, b, a, sums, 0),
        }
        if panels == 3 {
            rows_of::<1>(rows, pairs, move |j, q| b(j + 2, q), a, sums, 2);
        }
    }
}

/// [`block`] for `P` panels, the block's `first..first + P`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn rows_of<const P: usize>(
    rows: usize,
    pairs: usize,
    b: impl Fn(usize, usize) -> [u16; PAIR_ROW],
    a: impl Fn(usize, usize) -> u32,
    sums: &mut Sums,
    first: usize,
) {
    match rows {
        1 => sums_of::<P, 1>(pairs, b, a, sums, first),
        2 => sums_of::<P, 2>(pairs, b, a, sums, first),
        3 => sums_of::<P, 3>(pairs, b, a, sums, first),
        4 => sums_of::<P, 4>(pairs, b, a, sums, first),
        5 => sums_of::<P, 5>(pairs, b, a, sums, first),
        _ => sums_of::<P, 6>(pairs, b, a, sums, first),
    }
}

/// [`rows_of`] for exactly `T` rows: `P × T` sums in registers over every pair.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn sums_of<const P: usize, const T: usize>(
    pairs: usize,
    b: impl Fn(usize, usize) -> [u16; PAIR_ROW],
    a: impl Fn(usize, usize) -> u32,
    sums: &mut Sums,
    first: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); P]; T];
    for q in 0..pairs {
        // Each pair row with its halves swapped: the even index's value in the upper half,
        // which VDPBF16PS adds first. Every block of rows swaps them again; swapping each
        // panel's rows once (the first block keeping a swapped copy for the others, or a
        // swapped copy made before the products) measured slower in the mock: 16 tokens
        // 17.4-18.0 ms against 15.8-17.4 for SmolLM2-sized weights.
        let w: [__m512i; P] =
            std::array::from_fn(|j| _mm512_rol_epi32::<16>(words_to_vector(b(j, q))));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let pair = _mm512_set1_epi32(a(r, q) as i32);
            for (s, &wj) in acc_r.iter_mut().zip(&w) {
                *s = _mm512_dpbf16_ps(*s, as_bf16(wj), as_bf16(pair));
            }
        }
    }
    for (s, row) in sums.iter_mut().zip(&acc) {
        for (sj, &v) in s[first..].iter_mut().zip(row) {
            // SAFETY: __m512 and [f32; 16] are both 64 bytes of plain values.
            *sj = unsafe { std::mem::transmute::<__m512, [f32; 16]>(v) };
        }
    }
}

/// 32 bf16 values as a vector.
#[inline(always)]
fn words_to_vector(words: [u16; PAIR_ROW]) -> __m512i {
    // SAFETY: [u16; 32] and __m512i are both 64 bytes of plain bits, every pattern valid.
    unsafe { std::mem::transmute(words) }
}

/// A vector of 32 bf16 values from its bits.
#[inline(always)]
fn as_bf16(v: __m512i) -> __m512bh {
    // SAFETY: __m512i and __m512bh are both 64 bytes of plain bits, every pattern valid.
    unsafe { std::mem::transmute(v) }
}

/// Swaps the halves of a pair of bf16 values stored even index first: the form [`block`]'s
/// `a` returns.
pub fn swapped(even: u16, odd: u16) -> u32 {
    u32::from(even) << 16 | u32::from(odd)
}

/// The definition (module doc) for one row of A and one column of B, each in inner-index
/// order: what [`block`] computes, written plainly, for tests.
pub fn definition(a: &[u16], b: &[u16]) -> f32 {
    let daz = |v: u16| {
        let v = crate::from_bf16(v);
        if v.is_subnormal() { 0.0 } else { v }
    };
    let mut acc = 0.0f32;
    for (&x, &y) in a.iter().zip(b) {
        // The product of two bf16 values is exact in f32 (8 + 8 significant bits).
        acc += daz(x) * daz(y);
        if acc.is_subnormal() {
            acc = 0.0f32.copysign(acc);
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::to_bf16;

    #[test]
    fn blocks_equal_the_definition_bit_for_bit() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        // Values of mixed sizes, so that sums lose bits; every block shape.
        let k = 70;
        let value = |i: usize| {
            let x = ((i * 2_654_435_761) % 1000) as f32 / 250.0 - 2.0;
            to_bf16(x * [1.0, 1e3, 1e-3, 37.0][i % 4])
        };
        let a: Vec<Vec<u16>> = (0..ROWS)
            .map(|r| (0..k).map(|c| value(r * k + c + 7)).collect())
            .collect();
        let b: Vec<Vec<u16>> = (0..PANELS * 16)
            .map(|col| (0..k).map(|c| value(col * k + c + 1000)).collect())
            .collect();
        let pairs = k / 2;
        for panels in 1..=PANELS {
            for rows in 1..=ROWS {
                let mut sums = [[[f32::NAN; 16]; PANELS]; ROWS];
                let b_row = |j: usize, q: usize| -> [u16; PAIR_ROW] {
                    std::array::from_fn(|w| b[j * 16 + w / 2][2 * q + w % 2])
                };
                let a_pair = |r: usize, q: usize| swapped(a[r][2 * q], a[r][2 * q + 1]);
                block(panels, rows, pairs, b_row, a_pair, &mut sums);
                for r in 0..ROWS {
                    for j in 0..PANELS {
                        for c in 0..16 {
                            let got = sums[r][j][c];
                            if r >= rows || j >= panels {
                                assert!(got.is_nan(), "wrote outside the block");
                                continue;
                            }
                            let want = definition(&a[r], &b[j * 16 + c]);
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{panels}x{rows}: {r} {j} {c}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sums_are_taken_in_order_with_each_addition_rounded() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return;
        }
        // 2^24, 0, then the pair 1, 2: in order, 2^24 + 1 rounds to 2^24 (ties to even),
        // then + 2 gives 2^24 + 2; the pair's odd index first would give 2^24 + 4.
        let b = [16_777_216.0f32, 0.0, 1.0, 2.0].map(to_bf16);
        let one = to_bf16(1.0);
        let mut sums = [[[f32::NAN; 16]; PANELS]; ROWS];
        let b_row = |_: usize, q: usize| -> [u16; PAIR_ROW] {
            std::array::from_fn(|w| if w < 2 { b[2 * q + w] } else { 0 })
        };
        block(1, 1, 2, b_row, |_, _| swapped(one, one), &mut sums);
        assert_eq!(sums[0][0][0], 16_777_218.0);
        assert_eq!(sums[0][0][1], 0.0);
    }
}
