//! Sums of 8-bit weights times 16-bit inputs, for matrix-vector products whose time is the
//! time to read the weights (a feature draft's few rows at a time): 8 bits read half the
//! bytes of bf16, and `VPDPWSSD` (AVX-512 VNNI) takes 32 multiply-adds an instruction, twice
//! an f32 fused multiply-add's.
//!
//! A panel is 16 outputs' weights for the inner indices in pairs: `weights[q]` holds, for
//! output `c`, index `2q` at `2c` and index `2q + 1` at `2c + 1` (a last odd index paired with
//! a zero). An input row is quantized by [`QuantizedRow::new`] in groups of [`GROUP`]
//! indices, each group with its own scale (its largest magnitude maps to 32767), so that one
//! large input does not flatten the small ones of other groups. [`panel`] sums each output
//! against up to [`ROWS`] rows: per group, the exact integer sum of the products (at most
//! 64 · 127 · 32767 in magnitude, far inside i32), converted to f32 and added to the row's
//! total with a fused multiply-add by the group's scale. With AVX-512 (F, BW, VNNI) the sums
//! are 16-wide vectors; with AVX2 and FMA (`VPMADDWD`, 16 multiply-adds an instruction: the
//! hosts of Inf2 instances, AMD EPYC of the Zen 3 generation, have no AVX-512), two 8-wide
//! ones; without either, the same operations run one at a time. Integer sums do not depend
//! on their order, so results are the same bits on every CPU.

/// Outputs in a panel: one vector of 16 sums.
pub const PANEL: usize = 16;
/// Input rows summed at once at most (their sums held in registers).
pub const ROWS: usize = 4;
/// Inner indices sharing one input scale.
pub const GROUP: usize = 64;
/// Pairs of inner indices in a group.
const GROUP_PAIRS: usize = GROUP / 2;
/// The largest quantized input.
const LARGEST: f32 = 32767.0;

/// The sums of a panel against each row, `[row][output]`.
pub type Sums = [[f32; PANEL]; ROWS];

/// One panel's weights for a pair of inner indices (see the module doc).
pub type PairRow = [i8; 2 * PANEL];

/// An input row in 16 bits: pairs of values, and one scale per [`GROUP`] of them.
#[derive(Debug, Clone, Default)]
pub struct QuantizedRow {
    /// Pair `q`: index `2q` in the lower half, `2q + 1` in the upper (as `VPDPWSSD` pairs
    /// them with the weights).
    pairs: Vec<u32>,
    /// Per group: the value of input 1.
    scales: Vec<f32>,
}

impl QuantizedRow {
    /// Rounds `x` to nearest, each group by its own scale.
    pub fn new(x: &[f32]) -> Self {
        let mut row = QuantizedRow {
            pairs: Vec::with_capacity(x.len().div_ceil(2)),
            scales: Vec::with_capacity(x.len().div_ceil(GROUP)),
        };
        for group in x.chunks(GROUP) {
            let largest = group.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if largest > 0.0 && largest.is_finite() {
                largest / LARGEST
            } else {
                0.0
            };
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            // To nearest, ties to even, by adding and taking away 1.5 · 2^23: the sum's last
            // bit is worth 1 for magnitudes below 2^22 (the scaled inputs are at most 32767),
            // so the addition rounds. It runs in vector registers, where `round` is a call a
            // value on CPUs without SSE4.1 (the baseline this crate is compiled for). In
            // -32767..=32767 by the choice of scale (NaN to 0); `as` saturates anyway.
            const ROUNDER: f32 = 12_582_912.0;
            let q = |v: f32| (((v * inverse + ROUNDER) - ROUNDER) as i16) as u16;
            let (twos, last) = group.as_chunks::<2>();
            let pair = |even: f32, odd: f32| u32::from(q(even)) | u32::from(q(odd)) << 16;
            row.pairs
                .extend(twos.iter().map(|&[even, odd]| pair(even, odd)));
            row.pairs.extend(last.iter().map(|&even| pair(even, 0.0)));
            row.scales.push(scale);
        }
        row
    }

    /// The value index `i` stands for (for tests).
    pub fn value(&self, i: usize) -> f32 {
        let pair = self.pairs[i / 2];
        let half = if i.is_multiple_of(2) {
            pair
        } else {
            pair >> 16
        };
        f32::from(half as u16 as i16) * self.scales[i / GROUP]
    }
}

/// The instructions [`panel`] sums with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512 F, BW and VNNI: `VPDPWSSD`, 16 outputs a vector.
    Avx512Vnni,
    /// AVX2 and FMA: `VPMADDWD`, 8 outputs a vector.
    Avx2,
    /// One operation at a time (right, but slower than a bf16 or f32 product).
    Portable,
}

impl Kernel {
    /// The fastest this CPU has.
    pub fn detect() -> Self {
        [Kernel::Avx512Vnni, Kernel::Avx2]
            .into_iter()
            .find(|k| k.available())
            .unwrap_or(Kernel::Portable)
    }

    /// Whether this CPU has it.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Kernel::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
                Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                Kernel::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Kernel::Portable
        }
    }
}

/// Whether [`panel`] runs with vector instructions here (else it is right but slower than a
/// bf16 or f32 product).
pub fn fast() -> bool {
    Kernel::detect() != Kernel::Portable
}

/// `sums[r][c] = Σ_i w_i[c] · rows[r]_i` in the module's order, for up to [`ROWS`] rows (the
/// rest of `sums` is left as it was); `weights` holds `ceil(k / 2)` pair rows for rows of `k`
/// inputs.
///
/// # Panics
/// If there are more than [`ROWS`] rows, or a row does not have one pair for each of
/// `weights`.
pub fn panel(weights: &[PairRow], rows: &[&QuantizedRow], sums: &mut Sums) {
    static DETECTED: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    panel_with(*DETECTED.get_or_init(Kernel::detect), weights, rows, sums);
}

/// [`panel`] with `kernel` (for tests and benchmarks; the same bits with any).
///
/// # Panics
/// As [`panel`], and if this CPU lacks `kernel`.
pub fn panel_with(kernel: Kernel, weights: &[PairRow], rows: &[&QuantizedRow], sums: &mut Sums) {
    assert!(rows.len() <= ROWS, "int8 panel: more than {ROWS} rows");
    assert!(
        rows.iter().all(|r| r.pairs.len() == weights.len()),
        "int8 panel: a row's length differs from the panel's"
    );
    assert!(kernel.available(), "int8 panel: this CPU has no {kernel:?}");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available` checked that this CPU has AVX-512F, BW and VNNI, the features
        // the function is compiled for.
        Kernel::Avx512Vnni => unsafe { avx512::panel(weights, rows, sums) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available` checked that this CPU has AVX2 and FMA, the features the
        // function is compiled for.
        Kernel::Avx2 => unsafe { avx2::panel(weights, rows, sums) },
        _ => portable(weights, rows, sums),
    }
}

/// [`panel`] one operation at a time.
fn portable(weights: &[PairRow], rows: &[&QuantizedRow], sums: &mut Sums) {
    for (row, out) in rows.iter().zip(sums.iter_mut()) {
        let mut total = [0.0f32; PANEL];
        for ((w, x), &scale) in weights
            .chunks(GROUP_PAIRS)
            .zip(row.pairs.chunks(GROUP_PAIRS))
            .zip(&row.scales)
        {
            let mut acc = [0i32; PANEL];
            for (pair, &xs) in w.iter().zip(x) {
                let (even, odd) = (
                    i32::from(xs as u16 as i16),
                    i32::from((xs >> 16) as u16 as i16),
                );
                for c in 0..PANEL {
                    acc[c] += i32::from(pair[2 * c]) * even + i32::from(pair[2 * c + 1]) * odd;
                }
            }
            for c in 0..PANEL {
                total[c] = (acc[c] as f32).mul_add(scale, total[c]);
            }
        }
        *out = total;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{GROUP_PAIRS, PANEL, PairRow, QuantizedRow, Sums};

    /// [`super::portable`] with AVX-512: the same operations in the same order.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn panel(weights: &[PairRow], rows: &[&QuantizedRow], sums: &mut Sums) {
        match rows.len() {
            0 => {}
            1 => rows_of::<1>(weights, rows, sums),
            2 => rows_of::<2>(weights, rows, sums),
            3 => rows_of::<3>(weights, rows, sums),
            _ => rows_of::<4>(weights, rows, sums),
        }
    }

    /// [`panel`] for exactly `R` rows: each pair row widened once for the `R` rows; two
    /// integer sums a row (even and odd pairs, added at the end of the group), so that
    /// consecutive instructions do not wait on each other.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn rows_of<const R: usize>(weights: &[PairRow], rows: &[&QuantizedRow], sums: &mut Sums) {
        let mut total = [_mm512_setzero_ps(); R];
        for (g, w) in weights.chunks(GROUP_PAIRS).enumerate() {
            let first = g * GROUP_PAIRS;
            let x: [&[u32]; R] = std::array::from_fn(|r| &rows[r].pairs[first..first + w.len()]);
            let mut acc = [[_mm512_setzero_si512(); 2]; R];
            let (twos, rest) = w.as_chunks::<2>();
            for (j, two) in twos.iter().enumerate() {
                let (w0, w1) = (widen(two[0]), widen(two[1]));
                for (acc_r, x_r) in acc.iter_mut().zip(&x) {
                    let (x0, x1) = (x_r[2 * j] as i32, x_r[2 * j + 1] as i32);
                    acc_r[0] = _mm512_dpwssd_epi32(acc_r[0], w0, _mm512_set1_epi32(x0));
                    acc_r[1] = _mm512_dpwssd_epi32(acc_r[1], w1, _mm512_set1_epi32(x1));
                }
            }
            if let [last] = rest {
                let wv = widen(*last);
                for (acc_r, x_r) in acc.iter_mut().zip(&x) {
                    let xv = _mm512_set1_epi32(x_r[2 * twos.len()] as i32);
                    acc_r[0] = _mm512_dpwssd_epi32(acc_r[0], wv, xv);
                }
            }
            for (r, (t, a)) in total.iter_mut().zip(&acc).enumerate() {
                let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(a[0], a[1]));
                *t = _mm512_fmadd_ps(sum, _mm512_set1_ps(rows[r].scales[g]), *t);
            }
        }
        for (out, t) in sums.iter_mut().zip(&total) {
            // SAFETY: __m512 and [f32; 16] are both 64 bytes of plain values.
            *out = unsafe { std::mem::transmute::<__m512, [f32; PANEL]>(*t) };
        }
    }

    /// A pair row's 32 weights as 16-bit integers, in the same order.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn widen(w: PairRow) -> __m512i {
        // SAFETY: [i8; 32] and __m256i are both 32 bytes of plain bits, every pattern valid.
        let v = unsafe { std::mem::transmute::<PairRow, __m256i>(w) };
        _mm512_cvtepi8_epi16(v)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{GROUP_PAIRS, PANEL, PairRow, QuantizedRow, Sums};

    /// [`super::portable`] with AVX2: each panel's 16 outputs in two vectors of 8.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn panel(weights: &[PairRow], rows: &[&QuantizedRow], sums: &mut Sums) {
        match rows.len() {
            0 => {}
            1 => rows_of::<1>(weights, rows, sums),
            2 => rows_of::<2>(weights, rows, sums),
            3 => rows_of::<3>(weights, rows, sums),
            _ => rows_of::<4>(weights, rows, sums),
        }
    }

    /// [`panel`] for exactly `R` rows: each pair row widened once (outputs 0-7, then 8-15)
    /// for the `R` rows; `VPMADDWD` multiplies a row's pair by each output's two weights and
    /// adds them, giving 8 exact 32-bit sums.
    #[target_feature(enable = "avx2,fma")]
    fn rows_of<const R: usize>(weights: &[PairRow], rows: &[&QuantizedRow], sums: &mut Sums) {
        let mut total = [[_mm256_setzero_ps(); 2]; R];
        for (g, w) in weights.chunks(GROUP_PAIRS).enumerate() {
            let first = g * GROUP_PAIRS;
            let x: [&[u32]; R] = std::array::from_fn(|r| &rows[r].pairs[first..first + w.len()]);
            let mut acc = [[_mm256_setzero_si256(); 2]; R];
            for (q, pair) in w.iter().enumerate() {
                let [low, high] = widen(*pair);
                for (acc_r, x_r) in acc.iter_mut().zip(&x) {
                    let xv = _mm256_set1_epi32(x_r[q] as i32);
                    acc_r[0] = _mm256_add_epi32(acc_r[0], _mm256_madd_epi16(low, xv));
                    acc_r[1] = _mm256_add_epi32(acc_r[1], _mm256_madd_epi16(high, xv));
                }
            }
            for (r, (t, a)) in total.iter_mut().zip(&acc).enumerate() {
                let scale = _mm256_set1_ps(rows[r].scales[g]);
                for (t, a) in t.iter_mut().zip(a) {
                    *t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(*a), scale, *t);
                }
            }
        }
        for (out, t) in sums.iter_mut().zip(&total) {
            // SAFETY: [__m256; 2] and [f32; 16] are both 64 bytes of plain values.
            *out = unsafe { std::mem::transmute::<[__m256; 2], [f32; PANEL]>(*t) };
        }
    }

    /// A pair row's 32 weights as 16-bit integers: outputs 0-7's pairs, then 8-15's.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn widen(w: PairRow) -> [__m256i; 2] {
        // SAFETY: [i8; 32] and [__m128i; 2] are both 32 bytes of plain bits, every pattern
        // valid.
        let [low, high] = unsafe { std::mem::transmute::<PairRow, [__m128i; 2]>(w) };
        [_mm256_cvtepi8_epi16(low), _mm256_cvtepi8_epi16(high)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: usize, seed: usize) -> Vec<PairRow> {
        (0..pairs)
            .map(|q| {
                std::array::from_fn(|j| (((q * 31 + j * 17 + seed) * 2_654_435_761) % 255) as i8)
            })
            .collect()
    }

    fn row(k: usize, seed: usize) -> Vec<f32> {
        (0..k)
            .map(|i| (((i * 13 + seed) * 2_654_435_761) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn quantized_inputs_are_within_half_a_step_per_group() {
        let mut x = row(150, 3);
        // A large value in the second group does not coarsen the first.
        x[70] = 1000.0;
        let q = QuantizedRow::new(&x);
        for (i, &v) in x.iter().enumerate() {
            let step = q.scales[i / GROUP];
            assert!((q.value(i) - v).abs() <= step / 2.0 + 1e-6, "[{i}]");
        }
        assert!(q.scales[0] < 1e-3 && q.scales[1] > 0.03);
        assert_eq!(QuantizedRow::new(&[0.0; 3]).value(2), 0.0);
    }

    #[test]
    fn sums_follow_the_order_on_every_path() {
        // Odd sizes (a zero-padded last pair), several groups and a partial one; every row
        // count.
        for k in [1usize, 4, 7, 64, 70, 200] {
            let pairs = k.div_ceil(2);
            let w = weights(pairs, k);
            let rows: Vec<QuantizedRow> = (0..ROWS)
                .map(|r| QuantizedRow::new(&row(k, r * 7 + k)))
                .collect();
            for m in 0..=ROWS {
                let views: Vec<&QuantizedRow> = rows[..m].iter().collect();
                let mut plain = [[f32::NAN; PANEL]; ROWS];
                portable(&w, &views, &mut plain);
                for kernel in [Kernel::Avx512Vnni, Kernel::Avx2, Kernel::Portable] {
                    if !kernel.available() {
                        eprintln!("{kernel:?}: not on this CPU");
                        continue;
                    }
                    let mut got = [[f32::NAN; PANEL]; ROWS];
                    panel_with(kernel, &w, &views, &mut got);
                    check(k, m, &w, &rows, &got, &plain);
                }
            }
        }
    }

    /// `got` against the portable sums (bit for bit) and the exact ones, for `m` rows of `k`.
    fn check(k: usize, m: usize, w: &[PairRow], rows: &[QuantizedRow], got: &Sums, plain: &Sums) {
        for r in 0..ROWS {
            for c in 0..PANEL {
                if r >= m {
                    assert!(got[r][c].is_nan(), "wrote past the rows");
                    continue;
                }
                assert_eq!(
                    got[r][c].to_bits(),
                    plain[r][c].to_bits(),
                    "k {k} [{r}][{c}]"
                );
                let exact: f64 = (0..k)
                    .map(|i| f64::from(w[i / 2][2 * c + i % 2]) * f64::from(rows[r].value(i)))
                    .sum();
                assert!(
                    (f64::from(got[r][c]) - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                    "k {k} [{r}][{c}]: {} against {exact}",
                    got[r][c]
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "more than 4 rows")]
    fn too_many_rows_panic() {
        let w = weights(2, 0);
        let r = QuantizedRow::new(&row(4, 0));
        panel(&w, &[&r; 5], &mut [[0.0; PANEL]; ROWS]);
    }
}
