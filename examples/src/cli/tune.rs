//! `neuron-decode tune`: choose the Medusa candidate tree by measurement.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use parallel_decode::artifacts::{CompileOptions, DEFAULT_VERIFY_BUCKETS, compile};
use parallel_decode::backend::neuron::NeuronModel;
use parallel_decode::bench::{cost_curve, heads_time};
use parallel_decode::loading::ModelDir;
use parallel_decode::loading::cache::home_dir;
use parallel_decode::loading::medusa_heads::{HEADS_FILE, MedusaHeads};
use parallel_decode::medusa::eval::Evaluation;
use parallel_decode::medusa::file::set_tree;
use parallel_decode::medusa::tune::{CostModel, TreeChoice, TreeLimits, choose_tree};
use parallel_decode::strategy::medusa::MedusaTree;
use serde_json::json;

use super::train_heads::eval_path;
use super::{GlobalOpts, ModelArg, progress::Bars};

/// Choose the Medusa candidate tree that maximises expected tokens per second, and record it in
/// the heads file.
///
/// Reads the heads' measured acceptance along tree paths on held-out prompts (FILE.eval.json,
/// written by `neuron-decode train-heads`) and the cost of a tree pass of each width: measured
/// on the device (the mock here) by default, or read from a table (--cost-table, for a Neuron
/// device). The tree of each size is the set of most likely paths; the size with the highest
/// (expected tokens per pass) / (cost of the pass + the heads) wins. The file records that
/// tree followed by the next most likely paths as deep as it, up to the next verify bucket:
/// decoding sizes each pass from the heads' confidence and chooses among the recorded paths.
/// Also prints what a device with a flat cost up to the largest tree would give (modeled,
/// labelled so).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// The heads file, where the chosen tree is recorded. Default: medusa_heads.safetensors in
    /// the model directory; for the default model without one, a copy of the shipped heads
    /// made there (which generate and bench then use; delete it to go back to the shipped
    /// tree).
    #[arg(long, value_name = "FILE")]
    heads: Option<PathBuf>,
    /// The heads' evaluation. Default: FILE.eval.json beside the heads file.
    #[arg(long, value_name = "FILE")]
    eval: Option<PathBuf>,
    /// A cost table instead of measuring: JSON {"widths": [[1, c1], [2, c2], ...], "heads": h},
    /// in any one unit (fill it in on a Neuron device).
    #[arg(long, value_name = "FILE.json")]
    cost_table: Option<PathBuf>,
    /// Most tree nodes, the pending token included (the largest verify bucket).
    #[arg(long, default_value_t = 32)]
    max_nodes: usize,
    /// Cached positions before the measured passes (a typical prompt plus answer).
    #[arg(long, default_value_t = 256)]
    context: usize,
    /// Runs of each measured pass (the fastest counts). Fewer are quicker but, on a busy
    /// machine, let one burst of load tip the choice between trees whose expected speeds are
    /// close (7 runs chose a 4- or a 6-node tree from run to run on a shared two-core machine).
    #[arg(long, default_value_t = 21)]
    repeats: usize,
    /// Print the choice without writing it into the heads file.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

/// Candidates the heads graph returns per head (the compile default).
pub(crate) const HEADS_TOP_K: usize = 10;

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let model = args.model.open(global)?;
    let hidden = model.config().hidden_size;
    let heads_path = heads_to_tune(&model, args)?;
    let heads = MedusaHeads::open(&heads_path, hidden)
        .with_context(|| format!("cannot open the heads file {}", heads_path.display()))?;
    let eval_file = args.eval.clone().unwrap_or_else(|| eval_path(&heads_path));
    let text = std::fs::read_to_string(&eval_file).with_context(|| {
        format!(
            "cannot read the heads' evaluation {} (written by neuron-decode train-heads)",
            eval_file.display()
        )
    })?;
    let evaluation: Evaluation = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a heads evaluation", eval_file.display()))?;
    let cost = match &args.cost_table {
        Some(path) => CostModel::read(path)?,
        None => measure(&model, &heads_path, args, global)?,
    };
    let limits = TreeLimits {
        max_nodes: args.max_nodes,
        max_depth: heads.count(),
        max_rank: HEADS_TOP_K.min(evaluation.top_k),
    };
    drop(heads);
    let choice = choose_tree(&evaluation.paths, &cost, &limits)?;
    let decode = cost.pass(1).unwrap_or(1.0);
    let flat = CostModel::flat(limits.max_nodes, cost.heads / decode, cost.heads_per_depth);
    let modeled = choose_tree(&evaluation.paths, &flat, &limits)?;
    if args.json {
        println!(
            "{}",
            json!({
                "cost": cost,
                "tree": choice.tree.paths(),
                "recorded": choice.recorded.paths(),
                "chosen": choice.best,
                "options": choice.options,
                "modeled_flat": {"cost": flat, "tree": modeled.tree.paths(), "chosen": modeled.best},
            })
        );
    } else {
        print_cost(&cost, args.cost_table.is_none());
        print_options(&choice, &cost.source);
        println!(
            "modeled (flat cost up to {} tokens, heads {:.0}% of a step): best {} nodes, expected tau {:.2}, speed-up {:.2}x",
            limits.max_nodes,
            100.0 * cost.heads / decode,
            modeled.best.nodes,
            modeled.best.expected_tau,
            modeled.best.speedup
        );
        println!(
            "chosen tree ({} paths): {:?}",
            choice.tree.len(),
            choice.tree.paths()
        );
        println!(
            "recorded tree ({} paths: the chosen one, then the next most likely paths as deep, \
             up to the next verify bucket, for the passes the heads are unsure or sure of): {:?}",
            choice.recorded.len(),
            choice.recorded.paths()
        );
    }
    if args.dry_run {
        return Ok(());
    }
    set_tree(&heads_path, hidden, &choice.recorded)
        .with_context(|| format!("cannot record the tree in {}", heads_path.display()))?;
    if !args.json {
        println!("recorded the tree in {}", heads_path.display());
    }
    Ok(())
}

/// The heads file to tune (see [`Args::heads`]).
fn heads_to_tune(model: &ModelDir, args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.heads {
        return Ok(path.clone());
    }
    let beside_model = model.path().join(HEADS_FILE);
    if beside_model.is_file() {
        return Ok(beside_model);
    }
    let Some(shipped) = super::session::default_heads(model)? else {
        bail!(
            "{} has no heads file; pass --heads FILE (made by neuron-decode train-heads)",
            model.path().display()
        );
    };
    if args.dry_run {
        return Ok(shipped);
    }
    // The cached copy of the shipped heads is rewritten whenever it differs from the
    // program's, so the tree is recorded in a copy beside the model, which the device
    // commands prefer.
    for (from, to) in [
        (shipped.clone(), beside_model.clone()),
        (eval_path(&shipped), eval_path(&beside_model)),
    ] {
        std::fs::copy(&from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    eprintln!(
        "tuning a copy of the shipped heads: {} (generate and bench use it from now on; delete it to go back to the shipped tree)",
        beside_model.display()
    );
    Ok(beside_model)
}

/// Compiles the model with its heads into a scratch directory and measures a pass of every
/// verify width and one run of the heads.
fn measure(
    model: &ModelDir,
    heads_path: &Path,
    args: &Args,
    global: &GlobalOpts,
) -> anyhow::Result<CostModel> {
    let bars = Bars::new(global);
    let home = home_dir()?;
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".tune-")
        .tempdir_in(&home)
        .with_context(|| format!("cannot create a work directory in {}", home.display()))?;
    let heads = MedusaHeads::open(heads_path, model.config().hidden_size)?;
    // Heads that take the path run one after the other: their cost grows with the depth.
    let sequential = heads.conditioning().takes_path();
    // The sizes the verify graphs are compiled for by default, up to the largest tree.
    let mut widths: Vec<usize> = DEFAULT_VERIFY_BUCKETS
        .into_iter()
        .filter(|&w| w < args.max_nodes)
        .collect();
    widths.push(args.max_nodes);
    // The context must leave room for the widest pass within the model's positions.
    let positions = model.config().max_position_embeddings;
    let max_len = (args.context + args.max_nodes + 64)
        .next_multiple_of(128)
        .min(positions);
    let context = args
        .context
        .min(max_len.saturating_sub(args.max_nodes + 1))
        .max(1);
    let options = CompileOptions {
        slots: 1,
        max_len,
        prefill_buckets: vec![512],
        verify_buckets: widths.clone(),
        // A chain through every head, so that the heads graph runs them all (it runs as many
        // as the tree is deep).
        medusa_tree: Some(MedusaTree::new(
            (1..=heads.count()).map(|d| vec![0; d]).collect(),
        )?),
        ..CompileOptions::default()
    };
    let artifacts = work.path().join("artifacts");
    compile(model, Some(&heads), &artifacts, &options, &bars)?;
    let runtime = super::session::runtime(global)?;
    let mut device = NeuronModel::open(&runtime, &artifacts, &bars)?;
    let curve = cost_curve(&mut device, &widths, context, args.repeats)?;
    let best = heads_time(&mut device, HEADS_TOP_K, args.repeats)?
        .context("the compiled model has no heads")?;
    Ok(CostModel {
        source: format!(
            "measured on {} after {} cached positions",
            runtime.library_path().display(),
            context
        ),
        widths: curve.iter().map(|&(w, d)| (w, d.as_secs_f64())).collect(),
        heads: match sequential {
            true => best.as_secs_f64() / heads.count() as f64,
            false => best.as_secs_f64(),
        },
        heads_per_depth: sequential,
    })
}

/// Prints the cost of each width: in milliseconds when `measured` (the model holds seconds),
/// otherwise in the table's own unit, as given.
fn print_cost(cost: &CostModel, measured: bool) {
    let decode = cost.pass(1).unwrap_or(1.0);
    let (scale, unit) = if measured {
        (1e3, "ms")
    } else {
        (1.0, "the table's unit")
    };
    println!("cost of a pass ({}; cost in {unit}):", cost.source);
    println!("  width     cost  x decode");
    for &(w, c) in &cost.widths {
        println!("  {w:>5}  {:>7.2}  {:>8.2}", c * scale, c / decode);
    }
    println!(
        "  heads  {:>7.2}  {:>8.2}{}",
        cost.heads * scale,
        cost.heads / decode,
        if cost.heads_per_depth {
            "   (per depth: these heads run one after the other)"
        } else {
            ""
        }
    );
}

fn print_options(choice: &TreeChoice, source: &str) {
    println!("expected figures per tree size ({source}):");
    println!("  nodes  expected tau  cost x decode  speed-up");
    let decode = choice.options.first().map_or(1.0, |o| o.cost);
    for o in &choice.options {
        let mark = if o.nodes == choice.best.nodes {
            "  <- chosen"
        } else {
            ""
        };
        println!(
            "  {:>5}  {:>12.3}  {:>13.2}  {:>7.3}x{mark}",
            o.nodes,
            o.expected_tau,
            o.cost / decode,
            o.speedup
        );
    }
}
