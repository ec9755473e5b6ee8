//! `copy`: output i = input i, for every i (any dtype). No parameters.
//!
//! An input bound in place to its own output is left as it is.

use super::{BuildCtx, ExecCtx, Kernel, KernelEntry, KernelError, NoParams};

pub(crate) const KERNEL: KernelEntry = KernelEntry {
    name: "copy",
    summary: "output i = input i for every i; inputs and outputs pair up by position, same sizes",
    build,
};

struct Copy {
    pairs: usize,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let (inputs, outputs) = (ctx.inputs(), ctx.outputs());
    if inputs.is_empty() || inputs.len() != outputs.len() {
        return Err(ctx.params_error(format!(
            "needs as many outputs as inputs (at least one); the NEFF has {} inputs and {} outputs",
            inputs.len(),
            outputs.len()
        )));
    }
    for (input, output) in inputs.iter().zip(outputs) {
        if input.size_bytes() != output.size_bytes() {
            return Err(ctx.spec_error(
                &output.name,
                format!(
                    "is {} bytes but input {:?} is {}",
                    output.size_bytes(),
                    input.name,
                    input.size_bytes()
                ),
            ));
        }
    }
    ctx.params::<NoParams>()?;
    Ok(Box::new(Copy {
        pairs: inputs.len(),
    }))
}

impl Kernel for Copy {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        for i in 0..self.pairs {
            if ctx.input_alias(i) == Some(i) {
                continue;
            }
            let src = ctx.input_bytes(i)?;
            ctx.output_bytes(i)?.copy_from_slice(src);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::neff::Usage::{Input, Output};
    use neuron_sys::DType;
    use serde_json::json;

    #[test]
    fn copies_every_pair() {
        let out = run(
            "copy",
            json!({}),
            &[
                (spec("a", DType::F32, &[2], Input), f32_bytes(&[1.0, 2.0])),
                (spec("b", DType::U8, &[3], Input), vec![7, 8, 9]),
            ],
            &[
                spec("x", DType::F32, &[2], Output),
                spec("y", DType::I8, &[3], Output),
            ],
        )
        .unwrap();
        assert_eq!(f32_values(&out[0]), [1.0, 2.0]);
        assert_eq!(out[1], [7, 8, 9]);
    }

    #[test]
    fn refuses_mismatched_specs_and_unknown_params() {
        let err = run(
            "copy",
            json!({}),
            &[(spec("a", DType::F32, &[2], Input), f32_bytes(&[1.0, 2.0]))],
            &[spec("x", DType::F32, &[3], Output)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        let err = run(
            "copy",
            json!({"speed": 11}),
            &[(spec("a", DType::F32, &[2], Input), f32_bytes(&[1.0, 2.0]))],
            &[spec("x", DType::F32, &[2], Output)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("speed"), "{err}");
    }
}
