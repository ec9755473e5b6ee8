//! `neuron-decode train-heads`: self-distilled Medusa heads for a model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parallel_decode::artifacts::{CompileOptions, compile};
use parallel_decode::backend::neuron::NeuronModel;
use parallel_decode::loading::cache::home_dir;
use parallel_decode::loading::medusa_heads::{Conditioning, HEADS_FILE, MedusaHeads};
use parallel_decode::loading::{Dtype, Message, ModelDir};
use parallel_decode::medusa::data::{self, DistillOptions};
use parallel_decode::medusa::eval::{Evaluation, evaluate};
use parallel_decode::medusa::file::{HeadsMetadata, read_heads, write_heads};
use parallel_decode::medusa::gemm::Matmul;
use parallel_decode::medusa::prompts::{self, TRAIN_PROMPTS};
use parallel_decode::medusa::train::{LmHead, TrainOptions, train};
use parallel_decode::medusa::vocab::heads_vocabulary;

use super::{GlobalOpts, ModelArg, progress::Bars};

/// Train Medusa heads for a model on its own greedy answers (self-distillation).
///
/// 1. Generates the model's greedy answer to every prompt on the device (or the mock),
///    recording the final hidden state at every position; the result is cached in
///    $NEURON_DECODE_HOME/medusa-data in chunks of 256 prompts, so a rerun starts training at
///    once and prompts added at the end of a set are the only ones distilled. The cache is
///    kept per device as the runtime describes itself (another runtime, or the mock with other
///    arithmetic, gives other answers and distills again).
/// 2. Trains each head k (z = x + SiLU(W x + N e + sum_i P_i c_i + b), scored by the model's
///    own LM head, e being the embedding of the token the model has just chosen and c_i those
///    of the candidates of the heads before it) to predict the token k + 2 positions ahead,
///    with the base model frozen, on every prompt but the held-out ones (every 10th).
/// 3. Writes the heads file with the training answers in it (answer lookup proposes what
///    followed the words just written there), then measures top-k accuracy per head and the
///    joint acceptance of tree paths on the held-out prompts, into FILE.eval.json beside it
///    (what `neuron-decode tune` reads to choose the candidate tree).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Prompts to distill, as JSON lines with a `prompt` field. Default: the built-in set of
    /// shopping-assistant and general prompts (kept apart from the benchmark prompts).
    #[arg(long, value_name = "FILE.jsonl")]
    prompts: Option<PathBuf>,
    /// The heads file to write. Default: medusa_heads.safetensors in the model directory.
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Number of heads (head k predicts the token k + 2 positions ahead).
    #[arg(long, default_value_t = 5)]
    heads: usize,
    /// Passes over the training data.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Examples per optimiser step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Peak learning rate (Adam, linear warm-up, cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    learning_rate: f32,
    /// Seed of the example order (same data and seed, same heads).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// How much of each head's target is the base model's own next-token distribution at the
    /// target's position (its 32 most likely tokens; soft targets, computed once from the
    /// distilled hidden states), the rest being the greedy token: 0 trains on the greedy
    /// tokens alone. The distribution tells a head which tokens the model nearly chose, which
    /// is what a tree's second and third candidates are for (on the default model's 7999
    /// built-in prompts, 0.5 against 0: held-out top-1 of the first head 0.570 against 0.565,
    /// top-2 0.692 against 0.685).
    #[arg(long, default_value_t = 0.5, value_name = "0..1", value_parser = fraction)]
    teacher_weight: f32,
    /// Decoupled weight decay of the heads' matrices (AdamW), per unit of learning rate:
    /// pulls the heads towards the base model's prediction, against over-fitting. 0: none.
    #[arg(long, default_value_t = 0.0, value_parser = not_negative)]
    weight_decay: f32,
    /// What each head takes besides the hidden state: `path` (the token the model has just
    /// chosen and the best candidates of the heads before it, so that a head predicts the
    /// token after the ones proposed before it; heads format version 3), `next-token` (the
    /// chosen token only; version 2) or `hidden` (nothing else: plain Medusa heads; version
    /// 1).
    #[arg(long, value_enum, default_value_t = HeadKind::Path)]
    inputs: HeadKind,
    /// Most tokens per distilled answer.
    #[arg(long, default_value_t = 192)]
    max_new_tokens: usize,
    /// Sequences decoded at once while distilling (KV slots of the distillation model). More
    /// rows share each pass over the weights, and each takes its own KV cache (about 17 MB a
    /// row for the default model and the built-in prompts): 1024 prompts of the built-in set
    /// took 186 s with 64 rows and 171 s with 128 (the bf16 mock, two cores, bf16 matrices;
    /// 2.6 and 3.7 GB resident). The answers do not depend on it.
    #[arg(long, default_value_t = 128)]
    rows: usize,
    /// Distill on these compiled artifacts (for example a Neuron device's) instead of compiling
    /// the model for the mock; their slots set how many answers are decoded at once.
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Tokens the heads score: the ones the training answers use most (0: the whole
    /// vocabulary). A vocabulary of a few thousand makes running (and training) the heads
    /// several times cheaper and loses only rare tokens (see `parallel_decode::medusa::vocab`).
    #[arg(long, default_value_t = 8192)]
    vocab_size: usize,
    /// Keep the weights of the existing heads file --out instead of training: recompute its
    /// vocabulary, answers and evaluation only (the distilled data comes from the cache).
    #[arg(long, conflicts_with = "evaluate_only")]
    reuse_weights: bool,
    /// Train nothing and write nothing: measure the existing heads file --out on every one of
    /// --prompts (distilled like training data, and cached), for example on your own traffic
    /// or on the benchmark prompts, which the held-out split (prompts like the training
    /// ones) can flatter. Prints the same table as training's evaluation.
    #[arg(long)]
    evaluate_only: bool,
    /// Element type of the written heads (f16 keeps a 135M model's heads at a few MB).
    #[arg(long, value_enum, default_value_t = HeadsType::F16)]
    dtype: HeadsType,
    /// Arithmetic of training's and evaluation's matrix products (those with the model's LM
    /// head, which dominate, and the heads' own): `bf16` rounds their operands to bf16 and sums
    /// in f32 on Intel AMX tiles, or with AVX-512 BF16 dot products without AMX (as a
    /// NeuronCore multiplies; on two cores training is 2.6x faster on AMX, 1.4x with AVX-512
    /// BF16 on an AMD Zen 4, same held-out accuracy), `f32` keeps f32, `auto` takes bf16 where
    /// the CPU has either. The weights, their updates and the written heads stay f32 (or
    /// --dtype).
    #[arg(long, value_enum, default_value_t = MatmulArg::Auto)]
    matmul: MatmulArg,
}

/// `--matmul`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MatmulArg {
    Auto,
    F32,
    Bf16,
}

impl MatmulArg {
    fn resolve(self) -> Matmul {
        match self {
            MatmulArg::Auto => Matmul::fastest(),
            MatmulArg::F32 => Matmul::F32,
            MatmulArg::Bf16 => Matmul::Bf16,
        }
    }
}

/// What heads take besides the hidden state (see `--inputs`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HeadKind {
    Hidden,
    NextToken,
    Path,
}

impl From<HeadKind> for Conditioning {
    fn from(kind: HeadKind) -> Self {
        match kind {
            HeadKind::Hidden => Conditioning::HiddenOnly,
            HeadKind::NextToken => Conditioning::NextToken,
            HeadKind::Path => Conditioning::Path,
        }
    }
}

/// Element types a heads file may be written in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum HeadsType {
    F32,
    F16,
    Bf16,
}

/// A number from 0 to 1 (checked before the long work starts, not after distilling).
fn fraction(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(_) => Err("must be between 0 and 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A finite number of 0 or more.
fn not_negative(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        Ok(_) => Err("must be a number of 0 or more".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Candidates per head measured in the evaluation (the heads graph's default top-k).
const EVAL_TOP_K: usize = 10;

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let bars = Bars::new(global);
    // Refused before the long distillation, not after it.
    let matmul = args.matmul.resolve().check().context("--matmul")?;
    let model = args.model.open(global)?;
    let prompt_texts = match &args.prompts {
        Some(path) => prompts::read_prompts(path)?,
        None => prompts::parse_prompts(Path::new("(built-in training prompts)"), TRAIN_PROMPTS)?,
    };
    let tokenized: Vec<Vec<u32>> = prompt_texts
        .iter()
        .map(|p| model.encode_chat(&[Message::user(p.clone())]))
        .collect::<Result<_, _>>()
        .context("cannot apply the chat template to the prompts")?;
    let options = DistillOptions {
        max_new_tokens: args.max_new_tokens,
        stop_tokens: model.eos_token_ids().to_vec(),
    };
    let home = home_dir()?;
    let start = std::time::Instant::now();
    // Started here even when the data is cached: one runtime per process, and its errors
    // (no libnrt, no mock) are the CLI's to explain.
    let runtime = super::session::runtime(global)?;
    // The model is compiled for distilling only if a chunk is missing from the cache, once
    // for all the missing chunks.
    let mut device: Option<DistillDevice> = None;
    // Answers computed by another runtime (or the mock with other arithmetic) are not these.
    let device_description = runtime
        .version()
        .map(|v| format!("libnrt {v}: {}", v.detail))
        .unwrap_or_default();
    let (dataset, read) = data::cached_in_chunks(
        &home,
        model.path(),
        &device_description,
        &tokenized,
        &options,
        data::CHUNK_PROMPTS,
        |chunk| {
            let device = match &mut device {
                Some(device) => device,
                None => device.insert(DistillDevice::open(
                    &model, &tokenized, &options, args.rows, &home, &runtime, &bars,
                )?),
            };
            data::distill(&mut device.model, chunk, &options, &bars)
        },
    )
    .context("cannot generate the training data")?;
    drop(device);
    let tokens: usize = dataset.sequences.iter().map(|s| s.tokens.len()).sum();
    println!(
        "training data: {} answers, {} tokens, {} hidden states of width {} ({:.0} MiB), answers to {} prompts read from the cache ({}) and to {} generated, in {:.1} s",
        dataset.sequences.len(),
        tokens,
        dataset.len(),
        dataset.hidden,
        (dataset.states.len() * 4) as f64 / (1 << 20) as f64,
        read,
        home.join("medusa-data").display(),
        tokenized.len() - read,
        start.elapsed().as_secs_f64(),
    );

    let lm = LmHead::from_model(&model)?
        .with_matmul(matmul)
        .context("--matmul")?;
    tracing::info!(?matmul, "products with the LM head");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| model.path().join(HEADS_FILE));
    if args.evaluate_only {
        let file = MedusaHeads::open(&out, dataset.hidden)
            .with_context(|| format!("--evaluate-only: cannot use {}", out.display()))?;
        let heads = read_heads(&file, dataset.hidden)?;
        let every: Vec<usize> = (0..dataset.sequences.len()).collect();
        let evaluation = evaluate(
            &dataset,
            &every,
            &lm,
            &heads,
            file.vocab(),
            EVAL_TOP_K,
            &bars,
        );
        print_evaluation(
            &evaluation,
            &format!(
                "accuracy of {} on {}",
                out.display(),
                args.prompts.as_deref().map_or_else(
                    || "the built-in training prompts".into(),
                    |p| p.display().to_string()
                )
            ),
            every.len(),
        );
        return Ok(());
    }
    let (train_prompts, held_out) = prompts::split(dataset.sequences.len());
    let vocab = heads_vocabulary(&dataset, &train_prompts, args.vocab_size, lm.vocab());
    match &vocab {
        Some(v) => println!(
            "heads vocabulary: the {} tokens the training answers use most (of {})",
            v.len(),
            lm.vocab()
        ),
        None => println!("heads vocabulary: all {} tokens", lm.vocab()),
    }
    let train_options = TrainOptions {
        heads: args.heads,
        epochs: args.epochs,
        batch: args.batch,
        learning_rate: args.learning_rate,
        seed: args.seed,
        conditioning: args.inputs.into(),
        vocab: vocab.clone(),
        teacher_weight: args.teacher_weight,
        weight_decay: args.weight_decay,
        ..TrainOptions::default()
    };
    let (heads, tree) = if args.reuse_weights {
        let file = MedusaHeads::open(&out, dataset.hidden)
            .with_context(|| format!("--reuse-weights: cannot use {}", out.display()))?;
        println!("kept the {} heads of {}", file.count(), out.display());
        (read_heads(&file, dataset.hidden)?, file.tree().cloned())
    } else {
        let (heads, report) = train(
            &dataset,
            &train_prompts,
            &held_out,
            &lm,
            &train_options,
            &bars,
        )?;
        println!(
            "trained {} heads in {:.1} s: {} examples x {} epochs ({} steps of {}); loss per head {} -> {}; {:.1}% of the targets outside the heads vocabulary (skipped)",
            args.heads,
            report.time.as_secs_f64(),
            report.examples,
            args.epochs,
            report.steps,
            args.batch,
            fmt_losses(&report.initial_loss),
            fmt_losses(report.epoch_loss.last().map_or(&[][..], |l| &l[..])),
            100.0 * report.outside_vocab
        );
        println!(
            "held-out loss per head after each epoch (greedy targets): {}",
            report
                .held_out_loss
                .iter()
                .map(|l| fmt_losses(l))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(agreement) = report.teacher_agreement {
            println!(
                "soft targets (weight {}): the base model's distribution from the stored states, whose most likely token is the answer's at {:.2}% of the positions",
                args.teacher_weight,
                100.0 * agreement
            );
        }
        (heads, None)
    };
    let dtype = match args.dtype {
        HeadsType::F32 => Dtype::F32,
        HeadsType::F16 => Dtype::F16,
        HeadsType::Bf16 => Dtype::BF16,
    };
    let metadata = HeadsMetadata {
        tree,
        base_model: Some(base_model_name(&model)),
        vocab,
        // The training answers (not the held-out ones): decoding looks up what the model
        // wrote after the words it has just written (answer lookup).
        answers: Some(
            train_prompts
                .iter()
                .map(|&i| dataset.sequences[i].tokens.clone())
                .collect(),
        ),
    };
    write_heads(&out, &heads, dtype, &metadata)
        .with_context(|| format!("cannot write {}", out.display()))?;
    // Evaluate exactly what was written (after rounding to the file's element type).
    let file = MedusaHeads::open(&out, dataset.hidden)?;
    let stored = read_heads(&file, dataset.hidden)?;
    let evaluation = evaluate(
        &dataset,
        &held_out,
        &lm,
        &stored,
        file.vocab(),
        EVAL_TOP_K,
        &bars,
    );
    let eval_path = eval_path(&out);
    let json = serde_json::to_string_pretty(&evaluation)?;
    std::fs::write(&eval_path, json)
        .with_context(|| format!("cannot write {}", eval_path.display()))?;
    print_evaluation(&evaluation, "held-out accuracy", held_out.len());
    println!("wrote {} and {}", out.display(), eval_path.display());
    println!(
        "next: neuron-decode tune --heads {} (chooses the candidate tree and records it in the file)",
        out.display()
    );
    Ok(())
}

/// Where the evaluation of a heads file is written: `X.eval.json` beside `X.safetensors`.
pub fn eval_path(heads: &Path) -> PathBuf {
    heads.with_extension("eval.json")
}

fn base_model_name(model: &ModelDir) -> String {
    model.path().file_name().map_or_else(
        || model.path().display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn fmt_losses(l: &[f64]) -> String {
    l.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// The base model compiled for distilling (one-token passes, `rows` slots), in a work
/// directory that lives as long as it.
struct DistillDevice {
    model: NeuronModel,
    _work: tempfile::TempDir,
}

impl DistillDevice {
    /// Compiles and loads `model` with room for the longest of `prompts` and its answer.
    fn open(
        model: &ModelDir,
        prompts: &[Vec<u32>],
        options: &DistillOptions,
        rows: usize,
        home: &Path,
        runtime: &Arc<neuron_rt::Runtime>,
        bars: &Bars,
    ) -> parallel_decode::Result<Self> {
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
        let max_len = (longest + options.max_new_tokens + 1)
            .next_multiple_of(64)
            .min(model.config().max_position_embeddings);
        let compile_options = CompileOptions {
            slots: rows.max(1),
            max_len,
            prefill_buckets: vec![128, 512],
            verify_buckets: vec![1],
            ..CompileOptions::default()
        };
        std::fs::create_dir_all(home).map_err(|e| parallel_decode::Error::Artifacts {
            path: home.to_path_buf(),
            message: format!("cannot create the cache directory: {e}"),
        })?;
        let work = tempfile::Builder::new()
            .prefix(".medusa-distill-")
            .tempdir_in(home)
            .map_err(|e| parallel_decode::Error::Artifacts {
                path: home.to_path_buf(),
                message: format!("cannot create a work directory: {e}"),
            })?;
        let artifacts = work.path().join("artifacts");
        compile(model, None, &artifacts, &compile_options, bars)?;
        let model = NeuronModel::open(runtime, &artifacts, bars)?;
        Ok(DistillDevice { model, _work: work })
    }
}

/// The evaluation as a table: per head its top-k accuracy (each head on the candidates the
/// heads before it chose, as served) and the chain rate (it and every head before it right
/// with their first candidate: what a chain tree of that depth accepts).
fn print_evaluation(e: &Evaluation, what: &str, prompts: usize) {
    println!(
        "{what} ({} prompts, {} positions; base model top-1 on its own answers: {:.3}):",
        prompts, e.paths.positions, e.base_top1
    );
    println!("  head  predicts  examples   top-1   top-2   top-3   top-5  top-10   chain");
    let mut chain_path = Vec::new();
    for (h, a) in e.heads.iter().enumerate() {
        let at = |k: usize| a.top.get(k - 1).copied().unwrap_or(0.0);
        chain_path.push(0);
        let chain = e.paths.probability(&chain_path);
        println!(
            "  {h:>4}  t+{:<7} {:>8}  {:>6.3}  {:>6.3}  {:>6.3}  {:>6.3}  {:>6.3}  {:>6.3}",
            h + 2,
            a.examples,
            at(1),
            at(2),
            at(3),
            at(5),
            at(10),
            chain
        );
    }
}
