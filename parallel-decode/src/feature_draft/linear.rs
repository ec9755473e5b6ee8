//! The draft's weight matrices and their products with a few rows of inputs.

use amx_bf16::PackedB;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2};

use super::int8::Int8Matrix;
use crate::error::{Error, Result};
use crate::medusa::gemm::{Matmul, gemm_packed, with_strided};

/// How the draft stores its weights, and so which arithmetic its products take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DraftWeights {
    /// f32 weights and sums.
    #[default]
    F32,
    /// Weights and inputs rounded to bf16, sums in f32 ([`Matmul::Bf16`]: AMX or AVX-512
    /// BF16).
    Bf16,
    /// Weights rounded to 8-bit integers with one f32 scale per output row (each row's
    /// largest magnitude maps to 127), inputs to 16 bits per group of 64, integer sums per
    /// group ([`amx_bf16::int8`], AVX-512 VNNI or AVX2 where the CPU has them): half the bytes
    /// of bf16, and the draft's products are bound by reading its weights. Its choices are not
    /// the target model's, so their rounding does not touch the exactness of decoding, only
    /// how often its guesses are right.
    Int8,
}

impl DraftWeights {
    /// [`DraftWeights::Int8`] where the CPU has AVX-512 VNNI or AVX2 (the fewest bytes to
    /// read), else the fastest of the others ([`Matmul::fastest`]).
    pub fn fastest() -> Self {
        if amx_bf16::int8::fast() {
            DraftWeights::Int8
        } else {
            Matmul::fastest().into()
        }
    }

    /// Checks that this process can multiply this way.
    ///
    /// # Errors
    /// [`Error::Setting`] for [`DraftWeights::Bf16`] on a CPU with neither AMX nor AVX-512
    /// BF16.
    pub fn check(self) -> Result<Self> {
        if self == DraftWeights::Bf16 {
            Matmul::Bf16.check()?;
        }
        Ok(self)
    }
}

impl From<Matmul> for DraftWeights {
    fn from(matmul: Matmul) -> Self {
        match matmul {
            Matmul::F32 => DraftWeights::F32,
            Matmul::Bf16 => DraftWeights::Bf16,
        }
    }
}

impl std::str::FromStr for DraftWeights {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(DraftWeights::F32),
            "bf16" => Ok(DraftWeights::Bf16),
            "int8" => Ok(DraftWeights::Int8),
            other => Err(Error::Setting {
                field: "feature draft weights",
                message: format!("`{other}` is not one of f32, bf16, int8"),
            }),
        }
    }
}

/// A weight matrix `[out, in]` applied to rows of inputs.
///
/// The draft runs a handful of rows at a time, so its products are matrix-vector products
/// that read every weight for a few rows' arithmetic. They run on the calling thread: split
/// over a two-core pool they were slower in decoding (draft 2.4 against 2.1 ms a pass on the
/// open benchmark prompts), the pool's wake-ups, a few tens of microseconds each and several a
/// run, costing more than the second core's share of a product this small saves. A matrix
/// may still be kept in parts of whole rows so that a product can take only the first ones
/// (the scorer's most frequent tokens).
pub(super) struct Linear {
    parts: Vec<Part>,
    out: usize,
}

/// Rows `rows` of a [`Linear`]'s matrix, in the form its products read.
struct Part {
    rows: std::ops::Range<usize>,
    operand: Operand,
}

/// A part's weights as one arithmetic reads them.
enum Operand {
    /// The rows, f32, `[out, in]`.
    F32(Array2<f32>),
    /// Their transpose in bf16 tiles.
    Bf16(PackedB),
    /// The rows in 8 bits.
    Int8(Int8Matrix),
}

impl Linear {
    /// A matrix in one part.
    pub(super) fn new(weight: Array2<f32>, weights: DraftWeights) -> Self {
        let out = weight.nrows();
        Self::in_parts(weight, weights, out)
    }

    /// A matrix in parts of `rows` output rows (rounded up to whole 16-row panels, as the
    /// bf16 and int8 kernels lay them out), so that a product may take only the first parts.
    pub(super) fn in_parts(weight: Array2<f32>, weights: DraftWeights, rows: usize) -> Self {
        let out = weight.nrows();
        let step = rows.next_multiple_of(16).max(16);
        let parts = (0..out)
            .step_by(step)
            .map(|first| {
                let rows = first..(first + step).min(out);
                let weight = weight.slice(ndarray::s![rows.clone(), ..]);
                let operand = match weights {
                    DraftWeights::Bf16 => {
                        Operand::Bf16(with_strided(weight, |w| PackedB::new(w.t())))
                    }
                    DraftWeights::F32 => Operand::F32(weight.to_owned()),
                    DraftWeights::Int8 => Operand::Int8(Int8Matrix::new(weight)),
                };
                Part { rows, operand }
            })
            .collect();
        Linear { parts, out }
    }

    /// `x · weightᵀ`: `[m, in]` to `[m, out]`.
    pub(super) fn apply(&self, x: ArrayView2<'_, f32>) -> Array2<f32> {
        self.apply_first(x, self.out)
    }

    /// The first output columns of `x · weightᵀ`, at least `rows` of them (whole parts; all
    /// when `rows` is not less than the matrix's): `[m, in]` to `[m, ≥ rows]`.
    pub(super) fn apply_first(&self, x: ArrayView2<'_, f32>, rows: usize) -> Array2<f32> {
        let used = self
            .parts
            .iter()
            .position(|p| p.rows.end >= rows)
            .map_or(self.parts.len(), |i| i + 1);
        let parts = &self.parts[..used];
        let width = parts.last().map_or(0, |p| p.rows.end);
        let mut out = Array2::zeros((x.nrows(), width));
        for part in parts {
            let mut dst = out.slice_mut(ndarray::s![.., part.rows.clone()]);
            match &part.operand {
                // The bf16 product writes whole rows: a part of several is done aside.
                Operand::Bf16(p) if dst.is_standard_layout() => gemm_packed(x, p, false, dst),
                Operand::Bf16(p) => {
                    let mut whole = Array2::zeros(dst.dim());
                    gemm_packed(x, p, false, whole.view_mut());
                    dst.assign(&whole);
                }
                Operand::F32(w) => general_mat_mul(1.0, &x, &w.t(), 0.0, &mut dst),
                Operand::Int8(w) => w.apply(x, dst),
            }
        }
        out
    }
}
