//! `neuron-decode bench`: decoding strategies over a prompt set, with the device's cost curve
//! and the memory-bandwidth bound of a decode step.

use std::path::PathBuf;

use anyhow::{Context, bail};
use parallel_decode::artifacts::DEFAULT_VERIFY_BUCKETS;
use parallel_decode::backend::LanguageModel;
use parallel_decode::bench::{cost_curve, heads_time, memory_bandwidth, run_strategies};
use parallel_decode::loading::{Progress, Unit};
use parallel_decode::medusa::tune::CostModel;
use parallel_decode::strategy::proposer::Proposer;
use serde_json::json;

use super::GlobalOpts;
use super::generate::SamplingArgs;
use super::progress::Bars;
use super::session::{DeviceArgs, DraftArgs, Strategy, encode_prompt, proposer};
use super::tune::HEADS_TOP_K;

/// Measure decoding strategies on a prompt set: tokens per second, time to first token, time
/// per output token, tau (tokens per target pass), speed-up over autoregressive decoding and
/// whether the outputs are identical to it.
///
/// The prompts file has one JSON object per line with a `prompt` field (and optionally
/// `kind`, e.g. "grounded" or "open", selectable with --kind).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON-lines prompt file (default: the project's shopping-assistant set, bench/prompts.jsonl).
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// Only prompts of this kind.
    #[arg(long)]
    kind: Option<String>,
    /// At most this many prompts.
    #[arg(long)]
    limit: Option<usize>,
    /// Strategies to measure, comma separated; `ar` is always measured too, as the baseline.
    /// Each prompt is decoded by every strategy in turn before the next prompt, so that the
    /// machine's load changing during the run weighs on all of them alike.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Strategy::Ar, Strategy::PromptLookup])]
    strategy: Vec<Strategy>,
    /// Print one JSON object per strategy (and one for the device) instead of a table.
    #[arg(long)]
    json: bool,
    /// Widths of the tree passes timed for the cost curve.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_VERIFY_BUCKETS)]
    cost_widths: Vec<usize>,
    /// Let the strategies size their trees as if every pass cost the same as a one-token pass
    /// (a NeuronCore's cost curve, flat up to tens of tokens) rather than by the costs
    /// measured here: the tau reported is then the one such a device would see (pair it with
    /// a heads file tuned with a flat cost table); tokens per second are still this
    /// machine's, where those trees cost more.
    #[arg(long)]
    assume_flat_cost: bool,
    /// Let the strategies size their trees by this cost table instead of the costs measured
    /// here (JSON, as for `tune --cost-table`: `{"widths": [[1, 29.0], [2, 33.1], ...],
    /// "heads": 1.9}`, in any one unit, up to the largest verify bucket). The tau and the
    /// modeled speed-up reported are then those of the device the table describes, and they
    /// do not depend on this machine's load; tokens per second are still this machine's.
    #[arg(long, value_name = "FILE", conflicts_with = "assume_flat_cost")]
    cost_table: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    draft: DraftArgs,
}

const DEFAULT_PROMPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/prompts.jsonl");

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let mut model = args.device.open(global)?;
    let path = args
        .prompts
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PROMPTS));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the prompts file {}", path.display()))?;
    let mut prompts = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
        let prompt = value["prompt"]
            .as_str()
            .with_context(|| format!("{} line {}: no \"prompt\" string", path.display(), n + 1))?;
        if args
            .kind
            .as_deref()
            .is_some_and(|k| value["kind"].as_str() != Some(k))
        {
            continue;
        }
        prompts.push(encode_prompt(&model, prompt, None, false)?);
    }
    if let Some(limit) = args.limit {
        prompts.truncate(limit);
    }
    if prompts.is_empty() {
        bail!(
            "{} has no prompts{}",
            path.display(),
            args.kind
                .as_ref()
                .map(|k| format!(" of kind {k:?}"))
                .unwrap_or_default()
        );
    }
    let config = args.sampling.config(model.text().eos_token_ids.clone())?;
    let drafts = args
        .draft
        .open(global, &args.device.model, &args.strategy)?;

    // The device: memory bandwidth, the cost of a tree pass by width, and a decode step
    // against the bound of reading every weight once.
    let bandwidth = memory_bandwidth(512 << 20);
    let widths: Vec<usize> = args
        .cost_widths
        .iter()
        .copied()
        .filter(|&w| w <= model.info().max_tree)
        .collect();
    // Time passes after a realistic context, leaving room for the widest tree.
    let context = 256
        .min(
            model
                .info()
                .max_len
                .saturating_sub(widths.iter().max().copied().unwrap_or(1) + 1),
        )
        .max(1);
    let curve = cost_curve(&mut model, &widths, context, 5)?;
    let heads = heads_time(&mut model, HEADS_TOP_K, 5)?;
    // The costs the strategies size their trees by, and so the modeled speed-up's curve.
    let sized_by = if let Some(path) = &args.cost_table {
        let table = CostModel::read(path)?;
        let (tree_cost, heads_cost) = table.relative(model.info().max_tree, model.info().heads)?;
        model.assume_costs(tree_cost, heads_cost);
        format!("cost table {}", path.display())
    } else if args.assume_flat_cost {
        model.assume_flat_cost();
        "flat (heads as measured here)".to_string()
    } else {
        "measured here, updated as the passes run".to_string()
    };
    let weight_bytes = model.config().parameter_count() as f64 * 4.0;
    let step = curve
        .iter()
        .find(|(w, _)| *w == 1)
        .map(|(_, d)| d.as_secs_f64());
    let device = json!({
        "record": "device",
        "weights_bytes": weight_bytes,
        "read_bandwidth_gb_s": bandwidth / 1e9,
        "decode_step_ms": step.map(|s| s * 1e3),
        "bandwidth_bound_ms": weight_bytes / bandwidth * 1e3,
        "fraction_of_bandwidth_bound": step.map(|s| weight_bytes / bandwidth / s),
        "cost_curve_ms": curve.iter().map(|(w, d)| json!({"tokens": w, "ms": d.as_secs_f64() * 1e3})).collect::<Vec<_>>(),
        "heads_ms": heads.map(|d| d.as_secs_f64() * 1e3),
        "trees_sized_by": sized_by,
        "neuron_env": neuron_env(),
    });

    let mut strategies = vec![Strategy::Ar];
    strategies.extend(
        args.strategy
            .iter()
            .map(|s| s.resolve(&model, &drafts))
            .filter(|s| *s != Strategy::Ar),
    );
    strategies.dedup();
    let mut proposers = strategies
        .iter()
        .map(|&strategy| proposer(strategy, &model, &drafts, config.sampling, config.seed))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut proposer_refs: Vec<&mut dyn Proposer> = proposers
        .iter_mut()
        .map(|p| p.as_mut() as &mut dyn Proposer)
        .collect();
    let bars = Bars::new(global);
    let progress = bars.start(
        &format!(
            "decoding {} prompts x {} strategies",
            prompts.len(),
            strategies.len()
        ),
        Some((prompts.len() * strategies.len()) as u64),
        Unit::Items,
    );
    let mut reports = run_strategies(&mut model, &mut proposer_refs, &prompts, &config, |_, _| {
        progress.advance(1)
    })?;
    drop(progress);
    for (report, strategy) in reports.iter_mut().zip(&strategies) {
        report.strategy = strategy.name().to_string();
    }

    // What the trees were sized by when the run ended: the learned costs drift with the
    // machine's load, and a bench whose trees shrank should say so.
    let at_end: Vec<(usize, f32)> = widths
        .iter()
        .filter_map(|&w| Some((w, *model.info().tree_cost.get(w.checked_sub(1)?)?)))
        .collect();
    if args.json {
        let mut device = device;
        device["tree_cost_at_end"] = at_end
            .iter()
            .map(|(w, c)| json!({"tokens": w, "relative": c}))
            .collect();
        println!("{device}");
        for r in &reports {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        println!(
            "device: read bandwidth {:.1} GB/s; decode step {:.1} ms = {:.0}% of the bandwidth bound ({:.1} ms for {:.0} MB of weights)",
            bandwidth / 1e9,
            step.unwrap_or(0.0) * 1e3,
            step.map_or(0.0, |s| weight_bytes / bandwidth / s * 100.0),
            weight_bytes / bandwidth * 1e3,
            weight_bytes / 1e6
        );
        let base = curve.first().map_or(1.0, |(_, d)| d.as_secs_f64());
        let costs: Vec<String> = curve
            .iter()
            .map(|(w, d)| format!("{w}: {:.2}x", d.as_secs_f64() / base))
            .collect();
        println!(
            "cost of a tree pass by tokens (relative to 1): {}",
            costs.join(", ")
        );
        let ended: Vec<String> = at_end
            .iter()
            .map(|(w, c)| format!("{w}: {c:.2}x"))
            .collect();
        println!(
            "costs the trees were sized by when the run ended: {}",
            ended.join(", ")
        );
        if let Some(heads) = heads {
            println!(
                "cost of a run of the heads: {:.2} ms = {:.2}x",
                heads.as_secs_f64() * 1e3,
                heads.as_secs_f64() / base
            );
        }
        println!(
            "{:<16} {:>7} {:>7} {:>9} {:>8} {:>8} {:>6} {:>7} {:>8} {:>9} {:>9} {:>7} {:>7} {:>9}",
            "strategy",
            "prompts",
            "tokens",
            "tokens/s",
            "ttft ms",
            "tpot ms",
            "tau",
            "passes",
            "speedup",
            "decode x†",
            "identical",
            "flat*",
            "model‡",
            "propose§"
        );
        for r in &reports {
            println!(
                "{:<16} {:>7} {:>7} {:>9.2} {:>8.1} {:>8.1} {:>6.2} {:>7} {:>7.2}x {:>8.2}x {:>9} {:>6.2}x {:>6.2}x {:>6.2} ms",
                r.strategy,
                r.prompts,
                r.tokens,
                r.tokens_per_s,
                r.ttft_ms,
                r.tpot_ms,
                r.tau,
                r.target_passes,
                r.speedup_vs_ar.unwrap_or(1.0),
                r.decode_speedup_vs_ar.unwrap_or(1.0),
                r.identical_to_ar.map_or("-".to_string(), |b| b.to_string()),
                r.modeled_flat_speedup.unwrap_or(1.0),
                r.modeled_speedup.unwrap_or(1.0),
                r.proposer_ms_per_pass
            );
        }
        println!(
            "speedup: tokens/s over autoregressive decoding's, prefill included; \
             † decode x: the same for the decode phase only (tokens after the first, time after \
             the first token), the part parallel decoding speeds up"
        );
        println!(
            "* flat: modeled, not measured: the speed-up on a device whose pass costs the same \
             for any tree up to the verify bucket (as on a NeuronCore), heads free: tau / tau(ar)"
        );
        println!(
            "‡ model: modeled, not measured: the decode-phase speed-up on the costs the trees \
             were sized by ({sized_by}), each pass charged its cost by node count plus the heads"
        );
        println!(
            "§ propose: host time the proposer took per decode pass (a feature draft runs its \
             layer then), which the modeled speed-ups leave out"
        );
    }
    Ok(())
}

/// The `NEURON_RT_*` and `NEURON_MOCK_*` variables of this run, which change what the runtime
/// or the mock device does (the mock's `NEURON_MOCK_MATMUL=bf16`, say): a results file then
/// says what the device was asked to do.
fn neuron_env() -> serde_json::Map<String, serde_json::Value> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| k.starts_with("NEURON_RT_") || k.starts_with("NEURON_MOCK_"))
        .collect();
    vars.sort();
    vars.into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect()
}
