//! `add`: elementwise sum of two tensors, `out = a + b`. No parameters.
//!
//! Inputs 0 and 1 and output 0 have the same shape and dtype (f32, bf16, f16 or i32; 16-bit
//! floats are added in f32 and rounded, i32 wraps). Either input may be bound in place to the
//! output (an accumulator: `a += b`).

use neuron_sys::DType;

use super::{
    BuildCtx, Element, ExecCtx, Float, Kernel, KernelEntry, KernelError, NoParams, require_dtype,
};

pub(crate) const KERNEL: KernelEntry = KernelEntry {
    name: "add",
    summary: "out = a + b elementwise; inputs 0, 1 and output 0 of one shape and dtype (f32, bf16, f16, i32)",
    build,
};

struct Add {
    dtype: DType,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    ctx.params::<NoParams>()?;
    let (inputs, outputs) = (ctx.inputs(), ctx.outputs());
    ctx.expect_io(2, 1, "2 inputs and 1 output")?;
    let out = &outputs[0];
    require_dtype(ctx, out, &[DType::F32, DType::BF16, DType::F16, DType::I32])?;
    for input in inputs {
        if input.dtype != out.dtype || input.shape != out.shape {
            return Err(ctx.spec_error(
                &input.name,
                format!(
                    "is {} {:?}; output {:?} is {} {:?} and they must match",
                    input.dtype, input.shape, out.name, out.dtype, out.shape
                ),
            ));
        }
    }
    Ok(Box::new(Add { dtype: out.dtype }))
}

impl Kernel for Add {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        match self.dtype {
            DType::F32 => add::<f32>(ctx, |a, b| a + b),
            DType::BF16 => add::<half::bf16>(ctx, float_add),
            DType::F16 => add::<half::f16>(ctx, float_add),
            _ => add::<i32>(ctx, i32::wrapping_add),
        }
    }
}

fn float_add<T: Float>(a: T, b: T) -> T {
    T::from_f32(a.to_f32() + b.to_f32())
}

/// `out = a + b`, reading an input that is bound in place from the output itself.
fn add<T: Element>(ctx: &ExecCtx<'_>, op: impl Fn(T, T) -> T) -> Result<(), KernelError> {
    let out = ctx.output::<T>(0)?;
    match (ctx.input_alias(0), ctx.input_alias(1)) {
        (Some(_), Some(_)) => out.iter_mut().for_each(|x| *x = op(*x, *x)),
        (Some(_), None) => {
            let b = ctx.input::<T>(1)?;
            out.iter_mut().zip(b).for_each(|(x, &b)| *x = op(*x, b));
        }
        (None, Some(_)) => {
            let a = ctx.input::<T>(0)?;
            out.iter_mut().zip(a).for_each(|(x, &a)| *x = op(a, *x));
        }
        (None, None) => {
            let (a, b) = (ctx.input::<T>(0)?, ctx.input::<T>(1)?);
            for ((x, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *x = op(a, b);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::neff::Usage::{Input, Output};
    use neuron_sys::DType;
    use serde_json::json;

    #[test]
    fn adds_f32_bf16_and_i32() {
        let io = |dtype| {
            (
                vec![spec("a", dtype, &[3], Input), spec("b", dtype, &[3], Input)],
                vec![spec("c", dtype, &[3], Output)],
            )
        };
        let (ins, outs) = io(DType::F32);
        let out = run(
            "add",
            json!({}),
            &[
                (ins[0].clone(), f32_bytes(&[1.0, 2.0, 3.0])),
                (ins[1].clone(), f32_bytes(&[0.5, -2.0, 10.0])),
            ],
            &outs,
        )
        .unwrap();
        assert_eq!(f32_values(&out[0]), [1.5, 0.0, 13.0]);

        let (ins, outs) = io(DType::BF16);
        let bf = |v: &[f32]| {
            v.iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_bits().to_ne_bytes())
                .collect::<Vec<u8>>()
        };
        let out = run(
            "add",
            json!({}),
            &[
                (ins[0].clone(), bf(&[1.0, 2.0, 3.0])),
                (ins[1].clone(), bf(&[1.0, 0.5, -3.0])),
            ],
            &outs,
        )
        .unwrap();
        assert_eq!(out[0], bf(&[2.0, 2.5, 0.0]));

        let (ins, outs) = io(DType::I32);
        let i = |v: &[i32]| bytemuck::cast_slice::<i32, u8>(v).to_vec();
        let out = run(
            "add",
            json!({}),
            &[
                (ins[0].clone(), i(&[1, i32::MAX, -4])),
                (ins[1].clone(), i(&[2, 1, 4])),
            ],
            &outs,
        )
        .unwrap();
        assert_eq!(out[0], i(&[3, i32::MIN, 0]));
    }

    #[test]
    fn refuses_mismatched_shapes_and_dtypes() {
        let err = run(
            "add",
            json!({}),
            &[
                (spec("a", DType::F32, &[3], Input), vec![0; 12]),
                (spec("b", DType::F32, &[4], Input), vec![0; 16]),
            ],
            &[spec("c", DType::F32, &[3], Output)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"b\""), "{err}");
        let err = run(
            "add",
            json!({}),
            &[
                (spec("a", DType::U8, &[3], Input), vec![0; 3]),
                (spec("b", DType::U8, &[3], Input), vec![0; 3]),
            ],
            &[spec("c", DType::U8, &[3], Output)],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("f32 or bf16 or f16 or i32"),
            "{err}"
        );
    }
}
