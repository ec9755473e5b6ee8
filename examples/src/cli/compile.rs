//! `neuron-decode compile`: a model directory in, an artifacts directory out.

use std::path::PathBuf;

use anyhow::Context;
use parallel_decode::artifacts::{
    CompileOptions, DEFAULT_VERIFY_BUCKETS, MatrixDtype, compile, matrices_for_mock,
};
use parallel_decode::loading::medusa_heads::MedusaHeads;

use super::progress::Bars;
use super::{GlobalOpts, ModelArg};

/// Compile a model for the mock device: one mock NEFF per graph role and bucket (prefill,
/// decode, verify with a tree mask, KV commit, Medusa heads), each rank's weight shard, the
/// tokenizer and a manifest.
///
/// `generate` and `bench` compile on first use and cache the result; use this command to
/// choose the buckets, or to put the artifacts somewhere of your own.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Where to write the artifacts (replaced if it exists).
    #[arg(long, short = 'o', value_name = "DIR")]
    out: PathBuf,
    /// Tensor-parallel degree: NeuronCores the model is split across.
    #[arg(long, default_value_t = 1)]
    tp: usize,
    /// KV-cache slots (sequences in flight at once).
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Positions per sequence [default: 2048, or the model's maximum if smaller].
    #[arg(long)]
    max_len: Option<usize>,
    /// Prompt chunk sizes (longer prompts run in several chunks).
    #[arg(long, value_delimiter = ',', default_values_t = [32, 128, 512])]
    prefill_buckets: Vec<usize>,
    /// Tree sizes a verify pass takes; 1 is the plain decode graph.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_VERIFY_BUCKETS)]
    verify_buckets: Vec<usize>,
    /// Medusa heads to compile in (a heads safetensors file).
    #[arg(long, value_name = "FILE")]
    heads: Option<PathBuf>,
    /// How to store the matrices the passes stream (every layer's projections and the LM
    /// head): f32, or bf16 as a Neuron compiler casts weights (half the bytes, the values bf16
    /// products round f32 weights to, so the same outputs; the mock runs them only with
    /// NEURON_MOCK_MATMUL=bf16, and a decode step of the default model then takes 15-16 ms
    /// instead of 25-27) [default: bf16 when NEURON_MOCK_MATMUL=bf16, else f32].
    #[arg(long, value_enum)]
    matrices: Option<Matrices>,
}

/// `--matrices`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Matrices {
    F32,
    Bf16,
}

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let model = args.model.open(global)?;
    let heads = args
        .heads
        .as_ref()
        .map(|p| {
            MedusaHeads::open(p, model.config().hidden_size)
                .with_context(|| format!("cannot use the heads in {}", p.display()))
        })
        .transpose()?;
    let options = CompileOptions {
        tp: args.tp,
        slots: args.slots,
        max_len: super::session::default_max_len(args.max_len, &model),
        prefill_buckets: args.prefill_buckets.clone(),
        verify_buckets: args.verify_buckets.clone(),
        matrices: match args.matrices {
            None => matrices_for_mock(),
            Some(Matrices::F32) => MatrixDtype::F32,
            Some(Matrices::Bf16) => MatrixDtype::Bf16,
        },
        ..CompileOptions::default()
    };
    let bars = Bars::new(global);
    let manifest =
        compile(&model, heads.as_ref(), &args.out, &options, &bars).with_context(|| {
            format!(
                "cannot compile {} into {}",
                model.path().display(),
                args.out.display()
            )
        })?;
    println!(
        "compiled {} into {}: {} graphs, tp {}, {} slots of {} positions, {} matrices{}",
        model.path().display(),
        args.out.display(),
        manifest.graphs.len(),
        manifest.tp,
        manifest.slots,
        manifest.max_len,
        options.matrices.name(),
        manifest
            .heads
            .as_ref()
            .map(|h| format!(", {} Medusa heads", h.count))
            .unwrap_or_default()
    );
    Ok(())
}
