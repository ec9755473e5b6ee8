//! Weight-only 8-bit matrices for the draft's matrix-vector products: each output row's
//! weights rounded to integers in -127..=127 times one f32 scale; inputs rounded to 16 bits
//! per group of 64 and the sums taken by [`amx_bf16::int8`] (exact integer sums per group,
//! the same on every CPU).
//!
//! A draft run multiplies a few rows of inputs by every weight, so its time is the time to
//! read the weights; 8 bits halve what bf16 reads, and 16-bit integer products take half the
//! instructions of f32 ones when several rows share the weights.

use amx_bf16::int8::{PANEL, PairRow, QuantizedRow, ROWS, panel};
use ndarray::{ArrayView2, ArrayViewMut2};

/// A matrix `[out, in]` in 8 bits.
#[derive(Debug, Clone)]
pub(super) struct Int8Matrix {
    out: usize,
    k: usize,
    /// `[panel][pair]`: panel `p`'s outputs `16p..16p + 16` (zeros past `out`) for each pair
    /// of input indices (a last odd index with a zero), so that a panel is read as one
    /// stream.
    weights: Vec<PairRow>,
    /// Per output (padded to whole panels): the value of weight 1.
    scales: Vec<f32>,
}

impl Int8Matrix {
    /// Rounds `weight` (`[out, in]`), each row by its own scale, to nearest.
    pub(super) fn new(weight: ArrayView2<'_, f32>) -> Self {
        let (out, k) = weight.dim();
        let (panels, pairs) = (out.div_ceil(PANEL), k.div_ceil(2));
        let mut scales = vec![0.0; panels * PANEL];
        for (scale, row) in scales.iter_mut().zip(weight.rows()) {
            let largest = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
            *scale = if largest > 0.0 { largest / 127.0 } else { 0.0 };
        }
        let mut weights = vec![[0i8; 2 * PANEL]; panels * pairs];
        for (o, row) in weight.rows().into_iter().enumerate() {
            let (p, c) = (o / PANEL, o % PANEL);
            let inverse = if scales[o] > 0.0 {
                1.0 / scales[o]
            } else {
                0.0
            };
            for (i, &w) in row.iter().enumerate() {
                // In -127..=127 by the choice of scale; `as` saturates anyway.
                weights[p * pairs + i / 2][2 * c + i % 2] = (w * inverse).round() as i8;
            }
        }
        Int8Matrix {
            out,
            k,
            weights,
            scales,
        }
    }

    /// The weight at `[o, i]` as the products see it (for tests).
    #[cfg(test)]
    fn weight(&self, o: usize, i: usize) -> f32 {
        let pairs = self.k.div_ceil(2);
        f32::from(self.weights[(o / PANEL) * pairs + i / 2][2 * (o % PANEL) + i % 2])
            * self.scales[o]
    }

    /// `out = x · weightᵀ`: `x` `[m, in]`, `out` `[m, out]`.
    ///
    /// # Panics
    /// If the shapes do not fit.
    pub(super) fn apply(&self, x: ArrayView2<'_, f32>, mut out: ArrayViewMut2<'_, f32>) {
        assert_eq!(x.ncols(), self.k, "int8 product: inner dimensions differ");
        assert_eq!(
            out.dim(),
            (x.nrows(), self.out),
            "int8 product: output shape differs"
        );
        let x = x.as_standard_layout();
        let rows: Vec<QuantizedRow> = x
            .rows()
            .into_iter()
            .map(|r| QuantizedRow::new(r.to_slice().unwrap_or(&[])))
            .collect();
        let rows: Vec<&QuantizedRow> = rows.iter().collect();
        let pairs = self.k.div_ceil(2);
        for (p, weights) in self.weights.chunks_exact(pairs.max(1)).enumerate() {
            let first = p * PANEL;
            let width = PANEL.min(self.out - first);
            let scales = &self.scales[first..first + PANEL];
            for (g, group) in rows.chunks(ROWS).enumerate() {
                let mut sums = [[0.0f32; PANEL]; ROWS];
                panel(weights, group, &mut sums);
                for (r, row_sums) in sums.iter().enumerate().take(group.len()) {
                    let mut dst = out.row_mut(g * ROWS + r);
                    for c in 0..width {
                        dst[first + c] = row_sums[c] * scales[c];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
    }

    #[test]
    fn rounding_keeps_each_weight_within_half_a_step() {
        let mut w = random(37, 23, 1);
        w.row_mut(5).fill(0.0);
        let q = Int8Matrix::new(w.view());
        for ((o, i), &v) in w.indexed_iter() {
            let step = q.scales[o];
            assert!(
                (q.weight(o, i) - v).abs() <= step / 2.0 + 1e-7,
                "[{o}, {i}]"
            );
        }
        assert_eq!(q.scales[5], 0.0);
    }

    #[test]
    fn products_are_those_of_the_rounded_weights_and_inputs() {
        // Shapes with partial panels, odd inner sizes, more than one input group, and more
        // rows than the kernel takes at once.
        for (m, k, n) in [(1, 8, 16), (3, 23, 37), (6, 130, 50), (9, 5, 3)] {
            let w = random(n, k, 2);
            let x = random(m, k, 3);
            let q = Int8Matrix::new(w.view());
            let mut out = Array2::zeros((m, n));
            q.apply(x.view(), out.view_mut());
            for r in 0..m {
                let xq = QuantizedRow::new(x.row(r).as_slice().unwrap());
                for o in 0..n {
                    let exact: f64 = (0..k)
                        .map(|i| f64::from(q.weight(o, i)) * f64::from(xq.value(i)))
                        .sum();
                    assert!(
                        (f64::from(out[[r, o]]) - exact).abs() <= 1e-4 * (1.0 + exact.abs()),
                        "({m}, {k}, {n}) [{r}, {o}]: {} against {exact}",
                        out[[r, o]]
                    );
                    // And close to the product of the unrounded inputs.
                    let unrounded: f64 = (0..k)
                        .map(|i| f64::from(q.weight(o, i)) * f64::from(x[[r, i]]))
                        .sum();
                    assert!((exact - unrounded).abs() <= 1e-3 * (1.0 + unrounded.abs()));
                }
            }
        }
    }
}
