//! The attention's arithmetic on row-major operands (scores against the keys of the KV cache,
//! sums of the values weighted by the probabilities) and the small elementwise operations
//! around the products. (Weight matrices are stored packed and multiplied by
//! [`super::packed`].)
//!
//! Every result is computed in one fixed order whatever the number of queries, positions and
//! threads, so a position scores the same in a decode step and in a verify pass, which is
//! what makes greedy parallel decoding reproduce greedy decoding exactly. On x86_64 CPUs with
//! AVX2 and FMA (chosen at run time) the loops run as vector instructions (the `simd`
//! module), with the same bits as the portable code here.

/// Partial sums an attention score is made of (one AVX-512 vector of f32).
pub const SCORE_LANES: usize = 16;

/// `out[q][j] = Σ_d queries[q][d] · keys[j][d]` for every query (`[queries][width]`) and key
/// (`[positions][width]`), `out` being `[queries][positions]`: the attention scores of the
/// query heads that share one key head.
///
/// Each score is defined exactly, so that every path gives the same bits: [`SCORE_LANES`]
/// partial sums, lane `l` summing the products of the elements `d ≡ l (mod 16)` in increasing
/// `d` with fused multiply-adds from zero, then added pairwise by halving (lane `l` with
/// `l + 8`, then `+ 4`, `+ 2`, `+ 1`). That order lets the vector path reduce 16 scores at once
/// with a few shuffles instead of summing each one across its vector.
///
/// # Panics
/// If `out` is not a whole number of rows of `positions` for the queries, or `keys` is shorter
/// than `positions` rows (a kernel bug, caught by the mock's guard).
pub fn attention_scores(keys: &[f32], queries: &[f32], out: &mut [f32], width: usize) {
    assert!(width > 0 && queries.len().is_multiple_of(width));
    let count = queries.len() / width;
    assert!(count == 0 || out.len().is_multiple_of(count));
    let positions = out.len().checked_div(count).unwrap_or(0);
    assert!(keys.len() >= positions * width);
    #[cfg(target_arch = "x86_64")]
    if super::simd::attention_scores(keys, queries, out, width) {
        return;
    }
    attention_scores_portable(keys, queries, out, width);
}

/// [`attention_scores`] in plain Rust (the AVX2 path compiles this same code).
#[inline(always)]
pub(super) fn attention_scores_portable(
    keys: &[f32],
    queries: &[f32],
    out: &mut [f32],
    width: usize,
) {
    let count = queries.len() / width;
    let Some(positions) = out.len().checked_div(count) else {
        return;
    };
    for (query, out) in queries
        .chunks_exact(width)
        .zip(out.chunks_exact_mut(positions.max(1)))
    {
        for (key, o) in keys.chunks_exact(width).zip(out.iter_mut()) {
            *o = score(key, query);
        }
    }
}

/// One score of [`attention_scores`].
#[inline(always)]
fn score(key: &[f32], query: &[f32]) -> f32 {
    let mut lanes = [0.0f32; SCORE_LANES];
    for (k, q) in key.chunks(SCORE_LANES).zip(query.chunks(SCORE_LANES)) {
        for ((lane, &k), &q) in lanes.iter_mut().zip(k).zip(q) {
            *lane = k.mul_add(q, *lane);
        }
    }
    halving_sum(lanes)
}

/// The sum of the lanes of [`attention_scores`]: `l` with `l + 8`, then `+ 4`, `+ 2`, `+ 1`.
#[inline(always)]
pub(super) fn halving_sum(mut lanes: [f32; SCORE_LANES]) -> f32 {
    let mut half = SCORE_LANES / 2;
    while half > 0 {
        for i in 0..half {
            lanes[i] += lanes[i + half];
        }
        half /= 2;
    }
    lanes[0]
}

/// `out[q] = Σ_j weights[q][j] · rows[j]` for every query `q`, skipping zero weights: the
/// attention outputs of the query heads that share one value head, from their probabilities.
/// `weights` is `[queries][positions]`, `rows` `[positions][width]`, `out` `[queries][width]`.
///
/// Each output element is the same sum in position order (fused multiply-adds from zero) as a
/// plain loop would give, however many queries there are. Up to [`QUERIES_PER_PASS`] queries
/// share one pass over the values (each value row loaded once for all of them), their
/// accumulators for a run of output elements kept in vector registers through the loop over
/// positions.
///
/// # Panics
/// If `out` is not a whole number of `width`-long rows or the slices are shorter than that
/// number of queries needs (a kernel bug, caught by the mock's guard).
pub fn weighted_sums(weights: &[f32], rows: &[f32], out: &mut [f32], width: usize) {
    assert!(width > 0 && out.len().is_multiple_of(width));
    let queries = out.len() / width;
    assert!(queries == 0 || weights.len().is_multiple_of(queries));
    let positions = weights.len().checked_div(queries).unwrap_or(0);
    assert!(rows.len() >= positions * width);
    #[cfg(target_arch = "x86_64")]
    if super::simd::weighted_sums(weights, rows, out, width) {
        return;
    }
    weighted_sums_portable::<32>(weights, rows, out, width);
}

/// Queries that share one pass over the values in [`weighted_sums`].
pub const QUERIES_PER_PASS: usize = 3;

/// [`weighted_sums`] in plain Rust, `RUN` output elements per pass over the values: the SIMD
/// paths compile this same code for their instruction sets, with runs that fill their
/// registers. Every path gives the same bits (a run only groups elements; each element's sum
/// is the same).
#[inline(always)]
pub(super) fn weighted_sums_portable<const RUN: usize>(
    weights: &[f32],
    rows: &[f32],
    out: &mut [f32],
    width: usize,
) {
    let queries = out.len() / width;
    let Some(positions) = weights.len().checked_div(queries) else {
        return;
    };
    let mut q = 0;
    while q < queries {
        let n = (queries - q).min(QUERIES_PER_PASS);
        let w = &weights[q * positions..(q + n) * positions];
        let o = &mut out[q * width..(q + n) * width];
        match n {
            1 => weighted_pass::<1, RUN>(w, rows, o, width),
            2 => weighted_pass::<2, RUN>(w, rows, o, width),
            _ => weighted_pass::<QUERIES_PER_PASS, RUN>(w, rows, o, width),
        }
        q += n;
    }
}

/// `Q` queries of [`weighted_sums`], one run of `RUN` output elements at a time (the tail of
/// a width that is not a multiple of `RUN` in one shorter run).
#[inline(always)]
fn weighted_pass<const Q: usize, const RUN: usize>(
    weights: &[f32],
    rows: &[f32],
    out: &mut [f32],
    width: usize,
) {
    let positions = weights.len() / Q;
    let mut start = 0;
    while start < width {
        let len = RUN.min(width - start);
        let mut acc = [[0.0f32; RUN]; Q];
        for (j, row) in rows.chunks_exact(width).take(positions).enumerate() {
            let weight = |q: usize| weights[q * positions + j];
            if len == RUN {
                // A whole run as an array: the compiler sees its length and keeps the
                // accumulators in registers.
                let x: &[f32; RUN] = row[start..start + RUN].try_into().expect("a run");
                accumulate(&mut acc, x, weight);
            } else {
                accumulate(&mut acc, &row[start..start + len], weight);
            }
        }
        for (q, acc) in acc.iter().enumerate() {
            out[q * width + start..q * width + start + len].copy_from_slice(&acc[..len]);
        }
        start += len;
    }
}

/// RMS normalisation of each `width`-long row of `x` into `out`, scaled by `weight`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    if width == 0 {
        return;
    }
    // A row's sum of squares is taken in element order, a chain of dependent adds (its bits
    // are defined by that order): rows side by side, so that the CPU overlaps their chains
    // (the norms of a 16-token pass of SmolLM2, 60 rows a layer, took 0.5 ms one row after
    // another).
    let block = SIDE_BY_SIDE * width;
    for (rows, dsts) in x.chunks(block).zip(out.chunks_mut(block)) {
        let sums = sums_in_order(rows, width, |v| v * v);
        for ((row, dst), sum) in rows
            .chunks_exact(width)
            .zip(dsts.chunks_exact_mut(width))
            .zip(sums)
        {
            let scale = 1.0 / (sum / width as f32 + eps).sqrt();
            for ((d, v), w) in dst.iter_mut().zip(row).zip(weight) {
                *d = v * scale * w;
            }
        }
    }
}

/// Rows whose sums [`sums_in_order`] takes side by side.
pub(super) const SIDE_BY_SIDE: usize = 8;

/// `Σ term(v)` over each of up to [`SIDE_BY_SIDE`] rows of `width`, each in element order
/// from zero (each term rounded, then added), the rows' sums side by side.
#[inline(always)]
fn sums_in_order(rows: &[f32], width: usize, term: impl Fn(f32) -> f32) -> [f32; SIDE_BY_SIDE] {
    let n = rows.len() / width;
    let mut sums = [0.0f32; SIDE_BY_SIDE];
    if n == SIDE_BY_SIDE {
        for i in 0..width {
            for (r, sum) in sums.iter_mut().enumerate() {
                *sum += term(rows[r * width + i]);
            }
        }
    } else {
        for (row, sum) in rows.chunks_exact(width).zip(&mut sums) {
            for &v in row {
                *sum += term(v);
            }
        }
    }
    sums
}

/// The rotary frequencies of plain RoPE: `theta^(-2i/head_dim)` for `i < head_dim / 2`.
/// (Scaled variants rescale these; the compile step computes them from the model config.)
pub fn rope_inv_freq(theta: f64, head_dim: usize) -> Vec<f64> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
        .collect()
}

/// Rotary position embedding angles for one position: `(cos, sin)` of
/// `position · inv_freq[i]`.
pub fn rope_angles(position: i32, inv_freq: &[f64], out: &mut Vec<(f32, f32)>) {
    out.clear();
    for &f in inv_freq {
        let angle = position as f64 * f;
        out.push((angle.cos() as f32, angle.sin() as f32));
    }
}

/// Applies rotary embeddings in place to each `head_dim`-wide head of a row, Hugging Face
/// "rotate half" convention: element `i` pairs with `i + head_dim/2`. `angles` comes from
/// [`rope_angles`].
pub fn rope_in_place(row: &mut [f32], angles: &[(f32, f32)]) {
    let half = angles.len();
    for head in row.chunks_exact_mut(2 * half) {
        let (a, b) = head.split_at_mut(half);
        for ((x, y), &(cos, sin)) in a.iter_mut().zip(b.iter_mut()).zip(angles) {
            let (p, q) = (*x, *y);
            *x = p * cos - q * sin;
            *y = q * cos + p * sin;
        }
    }
}

/// Softmax of each `width`-long row of `rows` in place (max-subtracted; `-inf` entries
/// become 0).
///
/// # Panics
/// If `rows` is not a whole number of rows.
pub fn softmax_rows(rows: &mut [f32], width: usize) {
    if width == 0 {
        return;
    }
    assert!(rows.len().is_multiple_of(width), "softmax of a partial row");
    for row in rows.chunks_exact_mut(width) {
        let max = largest(row);
        for v in row.iter_mut() {
            *v -= max;
        }
    }
    exp_in_place(rows);
    // Each row's total in position order, one after the other: a token's ancestors sit at
    // other positions in a verify pass than in a decode step, with masked zeros between them,
    // and only a sequential sum gives the same bits in both (greedy verification must match
    // decoding exactly). Rows side by side, so that their chains of adds overlap.
    for block in rows.chunks_mut(SIDE_BY_SIDE * width) {
        let totals = sums_in_order(block, width, |v| v);
        for (row, total) in block.chunks_exact_mut(width).zip(totals) {
            let inv = 1.0 / total;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// SiLU(gate) · up, elementwise, into `gate`.
pub fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::swiglu_in_place(gate, up) {
        return;
    }
    swiglu_portable(gate, up);
}

/// [`swiglu_in_place`] in plain Rust (the SIMD paths compile this for their instruction sets,
/// [`exp_portable`] inlined into it).
#[inline(always)]
pub(super) fn swiglu_portable(gate: &mut [f32], up: &[f32]) {
    const CHUNK: usize = 64;
    let mut e = [0.0f32; CHUNK];
    for (gate, up) in gate.chunks_mut(CHUNK).zip(up.chunks(CHUNK)) {
        let e = &mut e[..gate.len()];
        for (e, g) in e.iter_mut().zip(gate.iter()) {
            *e = -g;
        }
        exp_portable(e);
        for ((g, u), e) in gate.iter_mut().zip(up).zip(e.iter()) {
            let s = *g / (1.0 + e);
            *g = s * u;
        }
    }
}

/// `acc[q] += weight(q) · x` (fused) for every query whose weight is not zero.
#[inline(always)]
fn accumulate<const Q: usize, const RUN: usize>(
    acc: &mut [[f32; RUN]; Q],
    x: &[f32],
    weight: impl Fn(usize) -> f32,
) {
    for (q, acc) in acc.iter_mut().enumerate() {
        let w = weight(q);
        if w != 0.0 {
            for (a, &x) in acc.iter_mut().zip(x) {
                *a = w.mul_add(x, *a);
            }
        }
    }
}

/// Below this, `e^x` is taken as 0 (it is under `f32::MIN_POSITIVE`, 2^-126).
const EXP_MIN: f32 = -87.33;
/// Above this, `e^x` is taken as `e^EXP_MAX` (about 1.65e38, the largest power that cannot
/// overflow the scaling by 2^n).
const EXP_MAX: f32 = 88.0;

/// `e^x` for every element, in place. For the attention's softmax and the MLP's SiLU, which
/// take an exponential of every score and every unit: libm's `expf` is a call per element,
/// which made a tenth of a verify pass; this is plain arithmetic that the compiler turns into
/// vector instructions.
///
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2`, `e^r` by a degree-7 polynomial (Cephes' `expf`
/// coefficients), times `2^n` built in the exponent bits. Within 2 ulp of `e^x` for
/// `EXP_MIN <= x <= EXP_MAX`; exactly 0 below (so that masked scores give weights of
/// exactly 0), `e^EXP_MAX` above, NaN for NaN. Every path gives the same bits: the SIMD paths
/// compile this same code, and the operations are IEEE's, never fused.
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd::exp_in_place(xs) {
        return;
    }
    exp_portable(xs);
}

/// [`exp_in_place`] in plain Rust (the SIMD paths compile this for their instruction sets).
#[inline(always)]
pub(super) fn exp_portable(xs: &mut [f32]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: `n · LN2_HI` is exact for the n that occur, so `r` keeps its bits.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5, // Cephes writes 5.0000001201e-1, which rounds to 0.5 in f32
    ];
    for x in xs.iter_mut() {
        let v = *x;
        // Comparisons are false for NaN, which then flows through to the result.
        let c = if v > EXP_MAX { EXP_MAX } else { v };
        let c = if c < EXP_MIN { EXP_MIN } else { c };
        let n = (c * LOG2E + 0.5).floor();
        let r = (c - n * LN2_HI) - n * LN2_LO;
        let mut p = P[0];
        for coefficient in &P[1..] {
            p = p * r + coefficient;
        }
        let y = p * (r * r) + r + 1.0;
        // 2^n from its exponent bits; n is within -126..=127 after the clamp. Adding 2^23
        // puts the integer n + 127 in the low bits of the float (exactly), which a vector
        // unit reads without a float-to-integer conversion (`as i32` saturates, lane by lane).
        let biased = (n + (127.0 + 8_388_608.0))
            .to_bits()
            .wrapping_sub(0x4B00_0000);
        let scale = f32::from_bits(biased << 23);
        *x = if v < EXP_MIN { 0.0 } else { y * scale };
    }
}

/// Index of the largest value; the first one on ties, as a greedy decoder expects.
///
/// NaN never wins (nor does anything after a NaN first value, which is returned, as a loop
/// keeping the first value unless a later one is greater would). Two passes that each run as
/// vector instructions, the largest value and then where it first is, rather than one whose
/// every step waits on the last comparison: 1 ms to 0.2 ms for the 786K logits of a 16-token
/// pass of SmolLM2.
pub fn argmax(values: &[f32]) -> usize {
    match values.first() {
        None => return 0,
        Some(first) if first.is_nan() => return 0,
        Some(_) => {}
    }
    let largest = largest(values);
    values.iter().position(|&v| v == largest).unwrap_or(0)
}

/// The largest value that is not NaN (`-inf` if there is none), by lanes: vector
/// instructions, where a fold's every step would wait on the last.
fn largest(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; SCORE_LANES];
    let chunks = values.chunks_exact(SCORE_LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            // `max` keeps the lane when `v` is NaN.
            *lane = lane.max(v);
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;

    /// The definition of a score: 16 lanes of fused multiply-adds, then the halving sum.
    fn defined_score(key: &[f32], query: &[f32]) -> f32 {
        let mut lanes = [0.0f32; SCORE_LANES];
        for (d, (&k, &q)) in key.iter().zip(query).enumerate() {
            lanes[d % SCORE_LANES] = k.mul_add(q, lanes[d % SCORE_LANES]);
        }
        let mut half = 8;
        while half > 0 {
            for i in 0..half {
                lanes[i] += lanes[i + half];
            }
            half /= 2;
        }
        lanes[0]
    }

    #[test]
    fn scores_are_the_definition_bit_for_bit_on_every_path() {
        for width in [1, 8, 16, 32, 40, 64, 128] {
            for positions in [1, 5, 8, 9, 16, 17, 37, 64] {
                for queries in 1..=4 {
                    let keys = pseudo_random(positions * width, 3);
                    let q = pseudo_random(queries * width, 4);
                    let mut out = vec![f32::NAN; queries * positions];
                    attention_scores(&keys, &q, &mut out, width);
                    let mut portable = vec![f32::NAN; queries * positions];
                    attention_scores_portable(&keys, &q, &mut portable, width);
                    for i in 0..queries {
                        for j in 0..positions {
                            let expected = defined_score(
                                &keys[j * width..(j + 1) * width],
                                &q[i * width..(i + 1) * width],
                            );
                            let exact: f64 = (0..width)
                                .map(|d| keys[j * width + d] as f64 * q[i * width + d] as f64)
                                .sum();
                            assert!((expected as f64 - exact).abs() < 1e-4 * (1.0 + exact.abs()));
                            for got in [&out, &portable] {
                                assert_eq!(
                                    got[i * positions + j].to_bits(),
                                    expected.to_bits(),
                                    "width {width}, {positions} keys, query {i} of {queries}, key {j}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_score_has_the_same_bits_whatever_else_is_scored() {
        // A decode step scores one query against the cache; a verify pass scores more queries
        // against more keys (its own tokens too), which moves keys between vector blocks.
        let width = 64;
        let keys = pseudo_random(50 * width, 6);
        let q = pseudo_random(5 * width, 7);
        let mut alone = vec![0.0; 33];
        attention_scores(&keys[..33 * width], &q[..width], &mut alone, width);
        for (positions, queries) in [(34, 1), (40, 3), (50, 5)] {
            let mut all = vec![0.0; queries * positions];
            attention_scores(
                &keys[..positions * width],
                &q[..queries * width],
                &mut all,
                width,
            );
            for j in 0..33 {
                assert_eq!(
                    all[j].to_bits(),
                    alone[j].to_bits(),
                    "key {j} of {positions}"
                );
            }
        }
    }

    #[test]
    fn weighted_sums_are_the_plain_loop_bit_for_bit() {
        let positions = 23;
        for width in [1, 31, 32, 64, 70] {
            for queries in 1..=7 {
                let mut weights = pseudo_random(queries * positions, 8);
                // Zero weights (masked positions) in the first query and the last.
                weights[3] = 0.0;
                weights[(queries - 1) * positions + 5] = 0.0;
                let rows = pseudo_random(positions * width, 9);
                // The path this CPU takes, and the portable one.
                let mut out = vec![f32::NAN; queries * width];
                weighted_sums(&weights, &rows, &mut out, width);
                let mut portable = vec![f32::NAN; queries * width];
                weighted_sums_portable::<32>(&weights, &rows, &mut portable, width);
                for q in 0..queries {
                    let mut expected = vec![0.0f32; width];
                    let w = &weights[q * positions..(q + 1) * positions];
                    for (w, row) in w.iter().zip(rows.chunks_exact(width)) {
                        if *w != 0.0 {
                            for (e, &x) in expected.iter_mut().zip(row) {
                                *e = w.mul_add(x, *e);
                            }
                        }
                    }
                    for got in [&out, &portable] {
                        let got = &got[q * width..(q + 1) * width];
                        let same = got
                            .iter()
                            .zip(&expected)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "width {width}, query {q} of {queries}");
                    }
                }
            }
        }
    }

    #[test]
    fn exp_is_within_two_ulp_and_the_same_on_every_path() {
        let mut xs: Vec<f32> = (0..20_000).map(|i| -87.3 + i as f32 * 0.00876).collect();
        xs.extend([
            0.0, -0.0, 1.0, -1.0, 1e-8, -1e-8, 0.346, -0.347, 88.0, -87.33,
        ]);
        let mut got = xs.clone();
        exp_in_place(&mut got);
        let mut portable = xs.clone();
        exp_portable(&mut portable);
        for ((&x, &y), &p) in xs.iter().zip(&got).zip(&portable) {
            assert_eq!(y.to_bits(), p.to_bits(), "exp({x}) differs between paths");
            let exact = (x as f64).exp();
            let ulp = (exact as f32).to_bits().abs_diff(y.to_bits());
            assert!(ulp <= 2, "exp({x}) = {y}, exactly {exact}: {ulp} ulp");
        }
    }

    #[test]
    fn exp_of_the_extremes() {
        let mut xs = [
            f32::NEG_INFINITY,
            -1000.0,
            -87.4,
            89.0,
            f32::INFINITY,
            f32::NAN,
        ];
        exp_in_place(&mut xs);
        assert_eq!(&xs[..3], &[0.0, 0.0, 0.0]);
        assert!(xs[3].is_finite() && xs[3] > 1e38 && xs[4] == xs[3]);
        assert!(xs[5].is_nan());
        // A row with masked entries: exactly 0 where masked, summing to 1.
        let mut row = [0.5, f32::NEG_INFINITY, -3.0, f32::NEG_INFINITY];
        softmax_rows(&mut row, 4);
        assert_eq!((row[1], row[3]), (0.0, 0.0));
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn swiglu_matches_the_formula() {
        let gate: Vec<f32> = (0..150).map(|i| (i as f32 - 75.0) * 0.3).collect();
        let up: Vec<f32> = (0..150).map(|i| 1.0 + i as f32 * 0.01).collect();
        let mut got = gate.clone();
        swiglu_in_place(&mut got, &up);
        for ((&g, &u), &y) in gate.iter().zip(&up).zip(&got) {
            let exact = g as f64 / (1.0 + (-g as f64).exp()) * u as f64;
            assert!(
                (y as f64 - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                "{g}: {y} vs {exact}"
            );
        }
    }

    #[test]
    fn rms_norm_unit_rows() {
        let x = [3.0, 4.0, 0.0, 0.0];
        let mut out = [0.0; 4];
        rms_norm(&x, &[1.0, 2.0], 1e-12, &mut out);
        let rms = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / rms).abs() < 1e-6);
        assert!((out[1] - 8.0 / rms).abs() < 1e-6);
        assert_eq!(&out[2..], &[0.0, 0.0]);
    }

    #[test]
    fn rms_norm_of_rows_side_by_side_gives_each_row_its_defined_bits() {
        let width = 576;
        let weight = pseudo_random(width, 5);
        for rows in [1, 7, 8, 9, 19] {
            let x = pseudo_random(rows * width, rows as u32);
            let mut expected = vec![0.0f32; rows * width];
            for (row, out) in x.chunks(width).zip(expected.chunks_mut(width)) {
                // The definition: the sum of squares in element order.
                let mut sum = 0.0f32;
                for v in row {
                    sum += v * v;
                }
                let scale = 1.0 / (sum / width as f32 + 1e-5).sqrt();
                for ((o, v), w) in out.iter_mut().zip(row).zip(&weight) {
                    *o = v * scale * w;
                }
            }
            let mut got = vec![0.0f32; rows * width];
            rms_norm(&x, &weight, 1e-5, &mut got);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&expected), "{rows} rows");
        }
    }

    fn rope(row: &mut [f32], head_dim: usize, position: i32, theta: f32) {
        let mut angles = Vec::new();
        rope_angles(
            position,
            &rope_inv_freq(theta as f64, head_dim),
            &mut angles,
        );
        rope_in_place(row, &angles);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let mut row = pseudo_random(16, 5);
        let original = row.clone();
        rope(&mut row, 8, 0, 10000.0);
        assert_eq!(row, original);
        rope(&mut row, 8, 37, 10000.0);
        let n0: f32 = original.iter().map(|v| v * v).sum();
        let n1: f32 = row.iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
    }

    #[test]
    fn rope_pairs_first_and_second_half() {
        // head_dim 2: one pair (x0, x1) rotated by the position (inv_freq = 1).
        let mut row = [1.0, 0.0];
        rope(&mut row, 2, 1, 10000.0);
        assert!((row[0] - 1f32.cos()).abs() < 1e-6 && (row[1] - 1f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn softmax_sums_to_one_and_zeroes_minus_infinity() {
        let mut row = [1.0, f32::NEG_INFINITY, 3.0];
        softmax_rows(&mut row, 3);
        assert_eq!(row[1], 0.0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((row[2] / row[0] - 2f32.exp()).abs() < 1e-4);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    /// Softmax as defined: the largest value subtracted, [`exp_in_place`], the total in
    /// position order, every value times its inverse.
    fn defined_softmax(row: &[f32]) -> Vec<f32> {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut out: Vec<f32> = row.iter().map(|v| v - max).collect();
        exp_in_place(&mut out);
        let mut total = 0.0f32;
        for v in &out {
            total += v;
        }
        out.iter().map(|v| v * (1.0 / total)).collect()
    }

    #[test]
    fn softmax_rows_side_by_side_give_each_row_its_defined_bits() {
        for (rows, width) in [(1, 5), (3, 272), (8, 33), (11, 100), (17, 16)] {
            let mut x: Vec<f32> = pseudo_random(rows * width, rows as u32)
                .iter()
                .map(|v| v * 12.0)
                .collect();
            // Masked positions, as a tree's verify pass has them.
            for (i, v) in x.iter_mut().enumerate() {
                if i % 7 == 3 {
                    *v = f32::NEG_INFINITY;
                }
            }
            let expected: Vec<u32> = x
                .chunks(width)
                .flat_map(defined_softmax)
                .map(f32::to_bits)
                .collect();
            let mut got = x.clone();
            softmax_rows(&mut got, width);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, expected, "{rows} rows of {width}");
        }
    }

    /// The first value unless a later one is greater: what [`argmax`] must equal.
    fn first_greatest(values: &[f32]) -> usize {
        let mut best = 0;
        for (i, v) in values.iter().enumerate() {
            if *v > values[best] {
                best = i;
            }
        }
        best
    }

    #[test]
    fn argmax_is_the_first_greatest_value_with_nans_ties_and_signed_zeros() {
        let specials = [f32::NAN, f32::NEG_INFINITY, f32::INFINITY, 0.0, -0.0, 7.0];
        for len in [1, 2, 15, 16, 17, 33, 1000] {
            for seed in 0..40u32 {
                // Few distinct values, so ties are common; now and then a special one.
                let mut values: Vec<f32> = pseudo_random(len, seed)
                    .iter()
                    .map(|v| (v * 4.0).round())
                    .collect();
                for (i, v) in values.iter_mut().enumerate() {
                    let pick = (i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503);
                    if pick.is_multiple_of(7) {
                        *v = specials[(pick / 7) as usize % specials.len()];
                    }
                }
                assert_eq!(
                    argmax(&values),
                    first_greatest(&values),
                    "{len} values, seed {seed}: {values:?}"
                );
            }
        }
    }
}
