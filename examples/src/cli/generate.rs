//! `neuron-decode generate`: answer a prompt, streaming the text as it is decoded.

use std::io::Write;

use parallel_decode::engine::{GenerateConfig, Generation, StopReason, Verification, generate};
use parallel_decode::sampling::SamplingConfig;
use parallel_decode::strategy::verify::TypicalAcceptance;
use parallel_decode::text::StopStrings;

use super::GlobalOpts;
use super::session::{DeviceArgs, DraftArgs, Strategy, encode_prompt, proposer};

/// Generate an answer to a prompt on the device (the mock, or a NeuronCore).
///
/// The first run with the default model downloads, imports and compiles it (a minute or two);
/// later runs start in seconds. The answer streams to stdout; timings and decoding statistics
/// go to stderr.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The prompt (a user message, wrapped in the model's chat template unless --raw).
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// A system message to put before the prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Use the prompt as it is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// How tokens are proposed; every strategy except typical acceptance gives exactly the
    /// model's own output.
    #[arg(long, value_enum, default_value_t = Strategy::Auto)]
    pub strategy: Strategy,
    #[command(flatten)]
    pub draft: DraftArgs,
    /// Stop when this text appears (may be given several times); it is not printed.
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
}

/// How tokens are chosen.
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Most tokens to generate (at least 1).
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy (the default).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities add up to p.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Seed of the sampler: the same seed gives the same output.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Accept Medusa candidates by typical acceptance (faster, NOT exact: the output is no
    /// longer the model's own distribution).
    #[arg(long)]
    pub typical: bool,
}

impl SamplingArgs {
    /// The engine settings these options describe.
    pub fn config(&self, stop_tokens: Vec<u32>) -> anyhow::Result<GenerateConfig> {
        let sampling = SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
        };
        sampling.validate()?;
        Ok(GenerateConfig {
            max_tokens: self.max_tokens,
            sampling,
            seed: self.seed,
            stop_tokens,
            verification: if self.typical {
                Verification::Typical(TypicalAcceptance::default())
            } else {
                Verification::Exact
            },
            max_tree: None,
        })
    }
}

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let mut model = args.device.open(global)?;
    let text = std::sync::Arc::clone(model.text());
    let prompt = encode_prompt(&model, &args.prompt, args.system.as_deref(), args.raw)?;
    let config = args.sampling.config(text.eos_token_ids.clone())?;
    let drafts = args
        .draft
        .open(global, &args.device.model, &[args.strategy])?;
    let strategy = args.strategy.resolve(&model, &drafts);
    let mut proposer = proposer(strategy, &model, &drafts, config.sampling, config.seed)?;

    let mut decoder = text.tokenizer.stream_decoder(true);
    let mut stops = StopStrings::new(args.stop.iter().cloned());
    let mut stdout = std::io::stdout().lock();
    let mut failure: Option<anyhow::Error> = None;
    let generation = generate(
        &mut model,
        proposer.as_mut(),
        &prompt,
        &config,
        &mut |tokens: &[u32]| {
            for &t in tokens {
                match decoder.step(t) {
                    Ok(Some(piece)) => {
                        let shown = stops.push(&piece);
                        if stdout
                            .write_all(shown.as_bytes())
                            .and_then(|()| stdout.flush())
                            .is_err()
                        {
                            return false;
                        }
                        if stops.stopped() {
                            return false;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e.into());
                        return false;
                    }
                }
            }
            true
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    if !stops.stopped() {
        let rest = stops.push(&decoder.finish()) + &stops.finish();
        stdout.write_all(rest.as_bytes())?;
    }
    writeln!(stdout)?;
    drop(stdout);
    report(
        &generation,
        strategy.name(),
        if args.sampling.typical {
            " (typical acceptance, not exact)"
        } else {
            ""
        },
        stops.stopped(),
    );
    Ok(())
}

/// The statistics line on stderr.
fn report(g: &Generation, strategy: &str, note: &str, stop_string: bool) {
    let stop = match g.stop {
        _ if stop_string => "stop string",
        StopReason::MaxTokens => "max tokens",
        StopReason::StopToken => "end of sequence",
        StopReason::Caller => "stopped",
        StopReason::ContextFull => "context full",
    };
    let depths: Vec<String> = g
        .depth_acceptance
        .iter()
        .map(|d| {
            if d.attempted == 0 {
                "-".into()
            } else {
                format!("{:.2}", d.accepted as f64 / d.attempted as f64)
            }
        })
        .collect();
    eprintln!(
        "[{strategy}{note}] {} tokens ({} prompt) in {:.2} s: time to first token {:.0} ms, {:.1} tokens/s, {:.1} ms/token; \
         tau {:.2} over {} target passes; acceptance by depth [{}]; ended by {stop}",
        g.tokens.len(),
        g.prompt_tokens,
        g.total_time.as_secs_f64(),
        g.time_to_first_token.as_secs_f64() * 1e3,
        g.tokens_per_second(),
        g.time_per_output_token().as_secs_f64() * 1e3,
        g.tau(),
        g.target_passes,
        depths.join(" "),
    );
}

/// Parses a count that must be at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
