//! `neuron-decode import`: GGUF file to Hugging Face directory.

use std::path::PathBuf;

use anyhow::Context;
use parallel_decode::loading::Dtype;
use parallel_decode::loading::gguf::{GgufFile, ImportOptions, import_gguf};

use super::{GlobalOpts, progress::Bars};

/// Convert a GGUF file (Llama architecture) into a Hugging Face model directory.
///
/// Dequantizes every tensor (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K),
/// restores the Hugging Face layout of the query/key projections, and writes model.safetensors,
/// config.json, tokenizer.json, tokenizer_config.json (with the chat template) and
/// generation_config.json.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The GGUF file.
    #[arg(value_name = "FILE.gguf")]
    file: PathBuf,
    /// The directory to write (created if missing).
    #[arg(long, short, value_name = "DIR")]
    out: PathBuf,
    /// Element type of the written weights: f32 is exact; bf16 and f16 halve the size.
    #[arg(long, value_enum, default_value_t = WeightType::F32)]
    dtype: WeightType,
    /// Replace a model already in the output directory.
    #[arg(long)]
    force: bool,
}

/// Element types the importer writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WeightType {
    F32,
    Bf16,
    F16,
}

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.file)?;
    let options = ImportOptions {
        dtype: match args.dtype {
            WeightType::F32 => Dtype::F32,
            WeightType::Bf16 => Dtype::BF16,
            WeightType::F16 => Dtype::F16,
        },
        overwrite: args.force,
    };
    let start = std::time::Instant::now();
    let summary = import_gguf(&file, &args.out, &options, &Bars::new(global))
        .with_context(|| format!("cannot import {}", args.file.display()))?;
    let c = &summary.config;
    println!(
        "imported {} into {}: {} layers, hidden {}, {} heads ({} kv), vocab {}, {} tensors, {:.1} MiB of {} weights in {:.1} s",
        args.file.display(),
        args.out.display(),
        c.num_layers,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.vocab_size,
        summary.tensors,
        summary.bytes as f64 / (1 << 20) as f64,
        options.dtype,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
