//! `all_reduce`: output 0 = the sum over all ranks of input 0 (f32, same shape). No
//! parameters. Input 0 may be bound in place to output 0. With one rank it is a copy.

use neuron_sys::DType;

use super::{BuildCtx, ExecCtx, Kernel, KernelEntry, KernelError, NoParams, require_dtype};

pub(crate) const KERNEL: KernelEntry = KernelEntry {
    name: "all_reduce",
    summary: "output 0 = sum over the world's ranks of input 0 (f32, same shape)",
    build,
};

struct AllReduce;

fn build(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    ctx.params::<NoParams>()?;
    let (inputs, outputs) = (ctx.inputs(), ctx.outputs());
    ctx.expect_io(1, 1, "1 input and 1 output")?;
    require_dtype(ctx, &inputs[0], &[DType::F32])?;
    if inputs[0].dtype != outputs[0].dtype || inputs[0].shape != outputs[0].shape {
        return Err(ctx.spec_error(&outputs[0].name, "must have the input's dtype and shape"));
    }
    Ok(Box::new(AllReduce))
}

impl Kernel for AllReduce {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        let data = ctx.state::<f32>(0, 0)?;
        ctx.all_reduce_sum(data)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::neff::Usage::{Input, Output};
    use neuron_sys::DType;
    use serde_json::json;

    #[test]
    fn one_rank_is_a_copy() {
        let out = run(
            "all_reduce",
            json!({}),
            &[(spec("x", DType::F32, &[2], Input), f32_bytes(&[1.5, -2.0]))],
            &[spec("y", DType::F32, &[2], Output)],
        )
        .unwrap();
        assert_eq!(f32_values(&out[0]), [1.5, -2.0]);
    }
}
