//! Sums of 8-bit weights times f32 inputs, for matrix-vector products whose time is the time
//! to read the weights (a feature draft's few rows at a time): 8 bits read half the bytes of
//! bf16.
//!
//! A panel is 16 outputs' weights for each inner index, `weights[i][c]` (16 bytes an index,
//! one stream per panel). [`panel`] sums each output against up to [`ROWS`] rows of inputs
//! in one fixed order: four running sums, over the inner indices modulo 4, each step a fused
//! multiply-add, then `(s0 + s1) + (s2 + s3)`; the indices past the last multiple of 4 go
//! to `s0`. With AVX-512F the sums are 16-wide vectors; without it the same operations run
//! one at a time, so results are the same on every CPU.

/// Outputs in a panel: one AVX-512 vector of f32 sums.
pub const PANEL: usize = 16;
/// Input rows summed at once at most (their sums held in registers).
pub const ROWS: usize = 4;

/// The sums of a panel against each row, `[row][output]`.
pub type Sums = [[f32; PANEL]; ROWS];

/// Whether [`panel`] runs with AVX-512 here (else it is right but slower than a bf16 or f32
/// product).
pub fn fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `sums[r][c] = Σ_i weights[i][c] · rows[r][i]` in the module's order, for up to [`ROWS`]
/// rows (the rest of `sums` is left as it was).
///
/// # Panics
/// If there are more than [`ROWS`] rows, or a row is shorter than `weights`.
pub fn panel(weights: &[[i8; PANEL]], rows: &[&[f32]], sums: &mut Sums) {
    assert!(rows.len() <= ROWS, "int8 panel: more than {ROWS} rows");
    assert!(
        rows.iter().all(|r| r.len() >= weights.len()),
        "int8 panel: a row is shorter than the panel"
    );
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: `fast` checked that this CPU has AVX-512F, the one feature the function is
        // compiled for.
        unsafe { avx512::panel(weights, rows, sums) };
        return;
    }
    portable(weights, rows, sums);
}

/// [`panel`] one operation at a time.
fn portable(weights: &[[i8; PANEL]], rows: &[&[f32]], sums: &mut Sums) {
    for (row, out) in rows.iter().zip(sums.iter_mut()) {
        let mut acc = [[0.0f32; PANEL]; 4];
        let (quads, tail) = weights.as_chunks::<4>();
        let (x_quads, x_tail) = row[..weights.len()].as_chunks::<4>();
        for (quad, xs) in quads.iter().zip(x_quads) {
            for u in 0..4 {
                for c in 0..PANEL {
                    acc[u][c] = f32::from(quad[u][c]).mul_add(xs[u], acc[u][c]);
                }
            }
        }
        for (w, &x) in tail.iter().zip(x_tail) {
            for c in 0..PANEL {
                acc[0][c] = f32::from(w[c]).mul_add(x, acc[0][c]);
            }
        }
        for c in 0..PANEL {
            out[c] = (acc[0][c] + acc[1][c]) + (acc[2][c] + acc[3][c]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{PANEL, Sums};

    /// [`super::portable`] with AVX-512F: the same operations in the same order.
    #[target_feature(enable = "avx512f")]
    pub(super) fn panel(weights: &[[i8; PANEL]], rows: &[&[f32]], sums: &mut Sums) {
        match rows.len() {
            0 => {}
            1 => rows_of::<1>(weights, rows, sums),
            2 => rows_of::<2>(weights, rows, sums),
            3 => rows_of::<3>(weights, rows, sums),
            _ => rows_of::<4>(weights, rows, sums),
        }
    }

    /// [`panel`] for exactly `R` rows: `4 R` running sums in registers, each weight vector
    /// widened once for the `R` rows.
    #[target_feature(enable = "avx512f")]
    fn rows_of<const R: usize>(weights: &[[i8; PANEL]], rows: &[&[f32]], sums: &mut Sums) {
        let x: [&[f32]; R] = std::array::from_fn(|r| &rows[r][..weights.len()]);
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        let (quads, tail) = weights.as_chunks::<4>();
        let k4 = quads.len() * 4;
        for (i, quad) in quads.iter().enumerate() {
            let w: [__m512; 4] = std::array::from_fn(|u| widen(quad[u]));
            for (acc_r, x_r) in acc.iter_mut().zip(&x) {
                let xs = &x_r[4 * i..4 * i + 4];
                for u in 0..4 {
                    acc_r[u] = _mm512_fmadd_ps(w[u], _mm512_set1_ps(xs[u]), acc_r[u]);
                }
            }
        }
        for (j, &w) in tail.iter().enumerate() {
            let w = widen(w);
            for (acc_r, x_r) in acc.iter_mut().zip(&x) {
                acc_r[0] = _mm512_fmadd_ps(w, _mm512_set1_ps(x_r[k4 + j]), acc_r[0]);
            }
        }
        for (out, a) in sums.iter_mut().zip(&acc) {
            let total = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
            // SAFETY: __m512 and [f32; 16] are both 64 bytes of plain values.
            *out = unsafe { std::mem::transmute::<__m512, [f32; PANEL]>(total) };
        }
    }

    /// Sixteen 8-bit weights as f32.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn widen(w: [i8; PANEL]) -> __m512 {
        // SAFETY: [i8; 16] and __m128i are both 16 bytes of plain bits, every pattern valid.
        let v = unsafe { std::mem::transmute::<[i8; PANEL], __m128i>(w) };
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(k: usize, seed: usize) -> Vec<[i8; PANEL]> {
        (0..k)
            .map(|i| {
                std::array::from_fn(|c| (((i * 31 + c * 17 + seed) * 2_654_435_761) % 255) as i8)
            })
            .collect()
    }

    fn row(k: usize, seed: usize) -> Vec<f32> {
        (0..k)
            .map(|i| (((i * 13 + seed) * 2_654_435_761) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn sums_follow_the_order_on_every_path() {
        // Inner sizes with and without a tail past the last multiple of 4; every row count.
        for k in [1, 4, 7, 64, 70] {
            let w = weights(k, k);
            let rows: Vec<Vec<f32>> = (0..ROWS).map(|r| row(k, r * 7 + k)).collect();
            for m in 0..=ROWS {
                let views: Vec<&[f32]> = rows[..m].iter().map(Vec::as_slice).collect();
                let mut got = [[f32::NAN; PANEL]; ROWS];
                panel(&w, &views, &mut got);
                let mut plain = [[f32::NAN; PANEL]; ROWS];
                portable(&w, &views, &mut plain);
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
                            .map(|i| f64::from(w[i][c]) * f64::from(rows[r][i]))
                            .sum();
                        assert!((f64::from(got[r][c]) - exact).abs() <= 1e-4 * (1.0 + exact.abs()));
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "more than 4 rows")]
    fn too_many_rows_panic() {
        let w = weights(4, 0);
        let r = row(4, 0);
        panel(&w, &[r.as_slice(); 5], &mut [[0.0; PANEL]; ROWS]);
    }
}
