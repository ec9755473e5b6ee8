//! `matmul`: `y = x · w` with f32 accumulation.
//!
//! - Input 0 `x`: `[.., M, K]` (leading dimensions are batch rows; a vector `[K]` is one row).
//! - Input 1 `w`: `[K, N]`, or `[N, K]` with the parameter `"transpose_b": true` (the layout of
//!   a Hugging Face `Linear` weight).
//! - Output 0 `y`: `[.., M, N]`.
//!
//! `x` and `w` are both f32 or both bf16; `y` is f32 or bf16 (rounded to nearest even).
//!
//! With `"all_reduce": true` the f32 products are summed over the ranks of the world before
//! they are stored: a row-parallel linear layer, where each rank holds a slice of `K` (its
//! columns of `x`, its rows of `w`) and every rank ends up with the whole product.

use neuron_sys::DType;
use serde::Deserialize;

use super::{BuildCtx, ExecCtx, Float, Kernel, KernelEntry, KernelError, require_dtype};

pub(crate) const KERNEL: KernelEntry = KernelEntry {
    name: "matmul",
    summary: "y[.., M, N] = x[.., M, K] . w[K, N] (or w[N, K] with transpose_b), summed over ranks with all_reduce; f32/bf16 in, f32/bf16 out",
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    transpose_b: bool,
    #[serde(default)]
    all_reduce: bool,
}

struct Matmul {
    rows: usize,
    k: usize,
    n: usize,
    transpose_b: bool,
    all_reduce: bool,
    input: DType,
    output: DType,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let params: Params = ctx.params()?;
    let (inputs, outputs) = (ctx.inputs(), ctx.outputs());
    ctx.expect_io(2, 1, "inputs x, w and output y")?;
    let (x, w, y) = (&inputs[0], &inputs[1], &outputs[0]);
    require_dtype(ctx, x, &[DType::F32, DType::BF16])?;
    require_dtype(ctx, y, &[DType::F32, DType::BF16])?;
    if w.dtype != x.dtype {
        return Err(ctx.spec_error(
            &w.name,
            format!("is {}, x is {}; they must match", w.dtype, x.dtype),
        ));
    }
    let [w0, w1] = w.shape[..] else {
        return Err(ctx.spec_error(&w.name, format!("must be 2-D, is {:?}", w.shape)));
    };
    let (k, n) = if params.transpose_b {
        (w1, w0)
    } else {
        (w0, w1)
    };
    let Some((&x_k, batch)) = x.shape.split_last() else {
        return Err(ctx.spec_error(&x.name, "must have at least one dimension"));
    };
    if x_k != k {
        return Err(ctx.spec_error(
            &x.name,
            format!(
                "has inner dimension {x_k} but w {:?}{} has {k}",
                w.shape,
                if params.transpose_b {
                    " (transposed)"
                } else {
                    ""
                }
            ),
        ));
    }
    let mut expected = batch.to_vec();
    expected.push(n);
    if y.shape != expected {
        return Err(ctx.spec_error(&y.name, format!("must be {expected:?}, is {:?}", y.shape)));
    }
    Ok(Box::new(Matmul {
        rows: batch.iter().product(),
        k,
        n,
        transpose_b: params.transpose_b,
        all_reduce: params.all_reduce,
        input: x.dtype,
        output: y.dtype,
    }))
}

impl Kernel for Matmul {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        match (self.input, self.output) {
            (DType::F32, DType::F32) => self.typed::<f32, f32>(ctx),
            (DType::F32, _) => self.typed::<f32, half::bf16>(ctx),
            (_, DType::F32) => self.typed::<half::bf16, f32>(ctx),
            _ => self.typed::<half::bf16, half::bf16>(ctx),
        }
    }
}

impl Matmul {
    fn typed<I: Float, O: Float>(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        let x = ctx.input::<I>(0)?;
        let w = ctx.input::<I>(1)?;
        let y = ctx.output::<O>(0)?;
        let (k, n) = (self.k, self.n);
        // The whole product in f32 first: it is what the ranks sum before rounding.
        let mut acc = vec![0f32; self.rows * n];
        for (x_row, acc_row) in x.chunks_exact(k).zip(acc.chunks_exact_mut(n)) {
            if self.transpose_b {
                for (a, w_row) in acc_row.iter_mut().zip(w.chunks_exact(k)) {
                    *a = dot(x_row, w_row);
                }
            } else {
                for (&xv, w_row) in x_row.iter().zip(w.chunks_exact(n)) {
                    let xv = xv.to_f32();
                    for (a, &wv) in acc_row.iter_mut().zip(w_row) {
                        *a += xv * wv.to_f32();
                    }
                }
            }
        }
        if self.all_reduce {
            ctx.all_reduce_sum(&mut acc)?;
        }
        for (out, &a) in y.iter_mut().zip(&acc) {
            *out = O::from_f32(a);
        }
        Ok(())
    }
}

/// Dot product with eight independent partial sums, so the loop vectorises.
fn dot<T: Float>(a: &[T], b: &[T]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| x.to_f32() * y.to_f32())
        .sum();
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for i in 0..8 {
            lanes[i] += ca[i].to_f32() * cb[i].to_f32();
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::neff::Usage::{Input, Output};
    use neuron_sys::DType;
    use serde_json::json;

    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                y[i * n + j] = (0..k).map(|t| x[i * k + t] * w[t * n + j]).sum();
            }
        }
        y
    }

    #[test]
    fn f32_both_layouts() {
        let (m, k, n) = (3, 11, 5);
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let want = reference(&x, &w, m, k, n);
        let out = run(
            "matmul",
            json!({}),
            &[
                (spec("x", DType::F32, &[m, k], Input), f32_bytes(&x)),
                (spec("w", DType::F32, &[k, n], Input), f32_bytes(&w)),
            ],
            &[spec("y", DType::F32, &[m, n], Output)],
        )
        .unwrap();
        assert_eq!(f32_values(&out[0]), want);
        // The same product with w stored as [N, K].
        let mut wt = vec![0f32; k * n];
        for t in 0..k {
            for j in 0..n {
                wt[j * k + t] = w[t * n + j];
            }
        }
        let out = run(
            "matmul",
            json!({"transpose_b": true}),
            &[
                (spec("x", DType::F32, &[m, k], Input), f32_bytes(&x)),
                (spec("w", DType::F32, &[n, k], Input), f32_bytes(&wt)),
            ],
            &[spec("y", DType::F32, &[m, n], Output)],
        )
        .unwrap();
        assert_eq!(f32_values(&out[0]), want);
    }

    #[test]
    fn bf16_inputs_accumulate_in_f32() {
        let (m, k, n) = (2, 9, 3);
        // Small integers are exact in bf16, so the f32 reference is exact too.
        let x: Vec<f32> = (0..m * k).map(|i| (i % 4) as f32).collect();
        let w: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 - 1.0).collect();
        let bf = |v: &[f32]| {
            v.iter()
                .flat_map(|&f| half::bf16::from_f32(f).to_bits().to_ne_bytes())
                .collect::<Vec<u8>>()
        };
        let out = run(
            "matmul",
            json!({}),
            &[
                (spec("x", DType::BF16, &[m, k], Input), bf(&x)),
                (spec("w", DType::BF16, &[k, n], Input), bf(&w)),
            ],
            &[spec("y", DType::F32, &[m, n], Output)],
        )
        .unwrap();
        assert_eq!(f32_values(&out[0]), reference(&x, &w, m, k, n));
    }

    #[test]
    fn refuses_bad_shapes() {
        let err = run(
            "matmul",
            json!({}),
            &[
                (spec("x", DType::F32, &[2, 3], Input), vec![0; 24]),
                (spec("w", DType::F32, &[4, 5], Input), vec![0; 80]),
            ],
            &[spec("y", DType::F32, &[2, 5], Output)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("inner dimension 3"), "{err}");
        let err = run(
            "matmul",
            json!({"transpose": true}),
            &[
                (spec("x", DType::F32, &[2, 3], Input), vec![0; 24]),
                (spec("w", DType::F32, &[3, 5], Input), vec![0; 60]),
            ],
            &[spec("y", DType::F32, &[2, 5], Output)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("transpose"), "{err}");
    }
}
