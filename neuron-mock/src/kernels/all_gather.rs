//! `all_gather`: output 0 = every rank's input 0, concatenated in rank order along the
//! outermost dimension (any dtype; the output has world size times the input's elements). No
//! parameters.

use super::{BuildCtx, ExecCtx, Kernel, KernelEntry, KernelError, NoParams};

pub(crate) const KERNEL: KernelEntry = KernelEntry {
    name: "all_gather",
    summary: "output 0 = input 0 of every rank, concatenated in rank order (any dtype)",
    build,
};

struct AllGather;

fn build(ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    ctx.params::<NoParams>()?;
    let (inputs, outputs) = (ctx.inputs(), ctx.outputs());
    ctx.expect_io(1, 1, "1 input and 1 output")?;
    let (input, output) = (&inputs[0], &outputs[0]);
    if output.dtype != input.dtype || output.size_bytes() != input.size_bytes() * ctx.world_size() {
        return Err(ctx.spec_error(
            &output.name,
            format!(
                "must be {} with {} x {} elements (world size x input)",
                input.dtype,
                ctx.world_size(),
                input.elements()
            ),
        ));
    }
    Ok(Box::new(AllGather))
}

impl Kernel for AllGather {
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError> {
        let mine = ctx.input_bytes(0)?;
        let all = ctx.output_bytes(0)?;
        ctx.all_gather_bytes(mine, all)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::neff::Usage::{Input, Output};
    use neuron_sys::DType;
    use serde_json::json;

    #[test]
    fn one_rank_is_a_copy_and_sizes_are_checked() {
        let out = run(
            "all_gather",
            json!({}),
            &[(spec("x", DType::U8, &[2], Input), vec![4, 5])],
            &[spec("y", DType::U8, &[2], Output)],
        )
        .unwrap();
        assert_eq!(out[0], [4, 5]);
        assert!(
            run(
                "all_gather",
                json!({}),
                &[(spec("x", DType::U8, &[2], Input), vec![4, 5])],
                &[spec("y", DType::U8, &[4], Output)],
            )
            .is_err()
        );
    }
}
