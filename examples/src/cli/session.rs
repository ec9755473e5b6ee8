//! What `generate`, `bench` and `compile` share: the runtime, the compiled artifacts of a
//! model (compiled on first use and cached), and building a decoding strategy by name.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, bail};
use neuron_rt::Runtime;
use parallel_decode::artifacts::{CompileOptions, cached_compile};
use parallel_decode::backend::LanguageModel;
use parallel_decode::backend::neuron::NeuronModel;
use parallel_decode::feature_draft::{DraftWeights, FeatureDraft, default_draft};
use parallel_decode::loading::cache::home_dir;
use parallel_decode::loading::feature_draft::FeatureDraftFile;
use parallel_decode::loading::medusa_heads::{HEADS_FILE, MedusaHeads};
use parallel_decode::loading::{Message, ModelDir, default_model};
use parallel_decode::medusa;
use parallel_decode::medusa::train::LmHead;
use parallel_decode::sampling::SamplingConfig;
use parallel_decode::strategy::answer_lookup::{AnswerLookup, AnswerLookupConfig};
use parallel_decode::strategy::combined::Combined;
use parallel_decode::strategy::draft::{Draft, DraftLength, SharedModel};
use parallel_decode::strategy::feature_draft::{FeatureDraftConfig, FeatureDraftProposer};
use parallel_decode::strategy::medusa::Medusa;
use parallel_decode::strategy::prompt_lookup::{PromptLookup, PromptLookupConfig};
use parallel_decode::strategy::proposer::{Autoregressive, Proposer};

use super::progress::Bars;
use super::{GlobalOpts, ModelArg};

/// Where the model runs and how it is compiled.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// Compiled artifacts to load instead of compiling --model (from `neuron-decode compile`).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Tensor-parallel degree: NeuronCores the model is split across (must divide the
    /// model's heads; SmolLM2-135M has 9 query and 3 key/value heads, so 1 or 3).
    #[arg(long, default_value_t = 1)]
    pub tp: usize,
    /// KV-cache slots (sequences in flight at once).
    #[arg(long, default_value_t = 4)]
    pub slots: usize,
    /// Positions per sequence (prompt plus generated tokens) [default: 2048, or the model's
    /// maximum if smaller].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Medusa heads file to compile in (default: the model's own heads, if it has any).
    #[arg(long, value_name = "FILE", conflicts_with = "no_heads")]
    pub heads: Option<PathBuf>,
    /// Compile without Medusa heads.
    #[arg(long)]
    pub no_heads: bool,
}

impl DeviceArgs {
    fn options(&self, model: &ModelDir) -> CompileOptions {
        let max_len = default_max_len(self.max_len, model);
        // The verify buckets that fit the context (a short --max-len leaves room for fewer).
        let mut verify_buckets = CompileOptions::default().verify_buckets;
        verify_buckets.retain(|&w| w < max_len);
        CompileOptions {
            tp: self.tp,
            slots: self.slots,
            max_len,
            verify_buckets,
            ..CompileOptions::default()
        }
    }

    /// The heads to compile in: `--heads`, else a heads file beside the model, else the
    /// project's trained heads for the default model, unless `--no-heads`.
    fn heads(&self, model: &ModelDir) -> anyhow::Result<Option<MedusaHeads>> {
        if self.no_heads {
            return Ok(None);
        }
        let hidden = model.config().hidden_size;
        let beside_model = model.path().join(HEADS_FILE);
        let path = match &self.heads {
            Some(p) => Some(p.clone()),
            None if beside_model.is_file() => Some(beside_model),
            None => default_heads(model)?,
        };
        path.map(|p| {
            MedusaHeads::open(&p, hidden)
                .with_context(|| format!("cannot use the heads in {}", p.display()))
        })
        .transpose()
    }

    /// Compiles (or finds in the cache) the artifacts for the model; returns their directory.
    pub fn artifacts(&self, global: &GlobalOpts) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.artifacts {
            return Ok(dir.clone());
        }
        let model = self.model.open(global)?;
        let heads = self.heads(&model)?;
        let home = home_dir()?;
        let bars = Bars::new(global);
        let dir = cached_compile(&model, heads.as_ref(), &home, &self.options(&model), &bars)
            .with_context(|| format!("cannot compile the model in {}", model.path().display()))?;
        Ok(dir)
    }

    /// Loads the model onto the device.
    pub fn open(&self, global: &GlobalOpts) -> anyhow::Result<NeuronModel> {
        let dir = self.artifacts(global)?;
        let runtime = runtime(global)?;
        let bars = Bars::new(global);
        NeuronModel::open(&runtime, &dir, &bars)
            .with_context(|| format!("cannot load the artifacts in {}", dir.display()))
    }
}

/// `--max-len`, or 2048 capped at what the model was trained for.
pub fn default_max_len(max_len: Option<usize>, model: &ModelDir) -> usize {
    max_len.unwrap_or_else(|| 2048.min(model.config().max_position_embeddings))
}

/// A prompt as token ids: wrapped in the model's chat template (after an optional system
/// message) unless `raw`.
pub fn encode_prompt(
    model: &NeuronModel,
    prompt: &str,
    system: Option<&str>,
    raw: bool,
) -> anyhow::Result<Vec<u32>> {
    let text = model.text();
    if raw {
        return Ok(text.tokenizer.encode(prompt, true)?);
    }
    let template = text
        .chat_template
        .as_ref()
        .context("the model has no chat template; pass --raw to use the prompt as it is")?;
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(prompt));
    Ok(text
        .tokenizer
        .encode(&template.render(&messages, true)?, false)?)
}

/// The project's trained heads (written into the cache from the copy built into the program),
/// when `model` is the default model.
pub fn default_heads(model: &ModelDir) -> anyhow::Result<Option<PathBuf>> {
    if !default_model::is_default_model(model.path()) {
        return Ok(None);
    }
    let path = medusa::default_heads::ensure(&home_dir()?)
        .context("cannot write the default model's Medusa heads into the cache")?;
    Ok(Some(path))
}

/// The Neuron runtime, initialised once per process.
///
/// The library is `--lib`, else the usual search (`NEURON_SYS_LIB`, the system loader, the
/// SDK's location). When that finds no libnrt at all, the mock device built with this program
/// is used, and a note says so: on a machine without a Neuron device everything still runs.
pub fn runtime(global: &GlobalOpts) -> anyhow::Result<Arc<Runtime>> {
    if let Some(rt) = Runtime::current() {
        return Ok(rt);
    }
    let mut builder = Runtime::builder();
    if let Some(lib) = &global.lib {
        builder = builder.lib_path(lib.clone());
    } else if let Err(search) = neuron_sys::lib() {
        match neuron_mock::testing::find_library() {
            Ok(mock) => {
                eprintln!(
                    "note: no Neuron runtime library found; running on the mock device ({})",
                    mock.display()
                );
                builder = builder.lib_path(mock);
            }
            Err(mock) => {
                return Err(anyhow::Error::new(search).context(format!(
                    "cannot start the Neuron runtime, and the mock device is not usable either \
                     ({mock})"
                )));
            }
        }
    }
    builder.init().context("cannot start the Neuron runtime")
}

/// A decoding strategy, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// With a feature draft (--feature-draft FILE, or the default model's built-in one where
    /// the CPU runs its 8-bit products with vectors): prompt lookup, answer lookup and the
    /// draft in one tree (feature-hybrid), or the draft alone when the model's heads carry no
    /// training answers. Without: prompt lookup, answer lookup and the Medusa heads in one
    /// tree (hybrid) when the model has heads that carry their training answers; the heads
    /// and prompt lookup when they carry none; else prompt lookup.
    Auto,
    /// Plain autoregressive decoding: one token per target pass.
    Ar,
    /// Candidates copied from the prompt and the text so far (no extra model).
    PromptLookup,
    /// A smaller draft model with the same tokenizer (--draft-artifacts DIR).
    Draft,
    /// Medusa heads with a candidate tree.
    Medusa,
    /// Medusa heads and prompt lookup in one tree.
    MedusaLookup,
    /// Candidates from the model's own earlier answers (the heads' training answers): what
    /// followed the words just written there.
    AnswerLookup,
    /// Prompt lookup, answer lookup and Medusa heads in one tree.
    Hybrid,
    /// A feature draft (--feature-draft FILE, or the default model's built-in one): one
    /// decoder layer that reads the model's hidden states and attends to the context (EAGLE's
    /// design), run on the host.
    FeatureDraft,
    /// Prompt lookup, answer lookup and a feature draft in one tree.
    FeatureHybrid,
}

impl Strategy {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Ar => "ar",
            Strategy::PromptLookup => "prompt-lookup",
            Strategy::Draft => "draft",
            Strategy::Medusa => "medusa",
            Strategy::MedusaLookup => "medusa-lookup",
            Strategy::AnswerLookup => "answer-lookup",
            Strategy::Hybrid => "hybrid",
            Strategy::FeatureDraft => "feature-draft",
            Strategy::FeatureHybrid => "feature-hybrid",
        }
    }

    /// What `auto` means for this model and these drafts.
    pub fn resolve(self, model: &NeuronModel, drafts: &Drafts) -> Strategy {
        match self {
            // The draft's tree with lookup's measured 1.74x against hybrid's 1.55x on the
            // open benchmark prompts (bf16 mock, two cores; tau 2.50 against 2.26), 1.71x
            // against 1.57x grounded.
            Strategy::Auto if drafts.feature.is_some() && model.has_answers() => {
                Strategy::FeatureHybrid
            }
            Strategy::Auto if drafts.feature.is_some() => Strategy::FeatureDraft,
            // Hybrid measured at least as fast as medusa-lookup once the tree is chosen
            // across its parts: open prompts 1.47x against 1.46x on the mock (two cores),
            // modeled on the two-core cost table 1.89x against 1.83x, grounded 2.39x
            // against 2.32x.
            Strategy::Auto if model.info().heads > 0 && model.has_answers() => Strategy::Hybrid,
            Strategy::Auto if model.info().heads > 0 => Strategy::MedusaLookup,
            Strategy::Auto => Strategy::PromptLookup,
            other => other,
        }
    }
}

/// A draft model for `--strategy draft`, or a feature draft for `--strategy feature-draft`,
/// loaded once and shared by the sequences.
#[derive(Debug, Clone, clap::Args)]
pub struct DraftArgs {
    /// The draft model's compiled artifacts (from `neuron-decode compile`), for
    /// `--strategy draft`. It must use the target's tokenizer.
    #[arg(long, value_name = "DIR")]
    pub draft_artifacts: Option<PathBuf>,
    /// Longest chain the draft proposes (it adapts between 1 and this).
    #[arg(long, default_value_t = 6)]
    pub draft_len: usize,
    /// A feature-draft file trained for the model (see `parallel_decode::loading::
    /// feature_draft`; `scripts/experiments/context_draft_probe.py --export` writes one), for
    /// `--strategy feature-draft` and `feature-hybrid`, and what `auto` uses. It runs on the
    /// host CPU. Default for the default model: the draft built into this program (written
    /// into the cache), which `auto` takes where the CPU has AVX-512 VNNI or AVX2 for its 8-bit
    /// products.
    #[arg(long, value_name = "FILE", conflicts_with = "no_feature_draft")]
    pub feature_draft: Option<PathBuf>,
    /// Do not use the default model's built-in feature draft (`auto` then takes the Medusa
    /// heads).
    #[arg(long)]
    pub no_feature_draft: bool,
    /// Deepest candidate of the feature draft (one run of the draft per depth).
    #[arg(long, default_value_t = FeatureDraftConfig::default().depth, value_name = "N")]
    pub feature_depth: usize,
    /// Candidates the feature draft proposes after each node it expands.
    #[arg(long, default_value_t = FeatureDraftConfig::default().top_k, value_name = "N")]
    pub feature_top_k: usize,
    /// Nodes the feature draft expands at each depth (the likeliest).
    #[arg(long, default_value_t = FeatureDraftConfig::default().frontier, value_name = "N")]
    pub feature_frontier: usize,
    /// The feature draft goes no deeper once no node left to expand has this chance of being
    /// accepted (the product of the draft's probabilities along its path).
    #[arg(long, default_value_t = FeatureDraftConfig::default().min_chance, value_name = "P")]
    pub feature_min_chance: f32,
    /// The feature draft scores only its this many most frequent tokens (0: all), when its
    /// file ranks them (`vocab_by_frequency`): each depth is a run of the draft, whose time
    /// goes mostly to reading its weights, half of them LM head rows.
    #[arg(long, default_value_t = FeatureDraftConfig::default().vocab, value_name = "N")]
    pub feature_vocab: usize,
    /// How the feature draft holds its weights on the host: `int8` (8-bit, one scale per
    /// row: half the bytes of bf16, and the draft is bound by reading them), `bf16` or
    /// `f32`. Default: int8 where the CPU has AVX-512 VNNI or AVX2, else bf16 where it has AMX
    /// or AVX-512 BF16, else f32. Only how often the draft guesses right depends on it, never the
    /// output.
    #[arg(long, value_name = "KIND")]
    pub feature_weights: Option<DraftWeights>,
}

/// The drafters given on the command line.
#[derive(Default)]
pub struct Drafts {
    /// `--draft-artifacts`, loaded on the device.
    pub model: Option<SharedModel>,
    /// `--draft-len`.
    pub len: usize,
    /// `--feature-draft`, loaded on the host.
    pub feature: Option<Rc<FeatureDraft>>,
    /// How the feature draft grows its trees.
    pub feature_config: FeatureDraftConfig,
}

impl DraftArgs {
    /// Loads the drafters that were given, and the default model's built-in feature draft
    /// when one of `strategies` would use it (`model`: the target, whose LM head and
    /// embedding a feature draft uses).
    pub fn open(
        &self,
        global: &GlobalOpts,
        model: &ModelArg,
        strategies: &[Strategy],
    ) -> anyhow::Result<Drafts> {
        if self.feature_depth == 0 || self.feature_top_k == 0 || self.feature_frontier == 0 {
            bail!("--feature-depth, --feature-top-k and --feature-frontier must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.feature_min_chance) {
            bail!(
                "--feature-min-chance {} is not a probability",
                self.feature_min_chance
            );
        }
        let mut drafts = Drafts {
            len: self.draft_len,
            feature_config: FeatureDraftConfig {
                depth: self.feature_depth,
                top_k: self.feature_top_k,
                frontier: self.feature_frontier,
                min_chance: self.feature_min_chance,
                vocab: self.feature_vocab,
            },
            ..Drafts::default()
        };
        if let Some(dir) = &self.draft_artifacts {
            let runtime = runtime(global)?;
            let bars = Bars::new(global);
            let draft = NeuronModel::open(&runtime, dir, &bars)
                .with_context(|| format!("cannot load the draft model in {}", dir.display()))?;
            drafts.model = Some(Rc::new(RefCell::new(Box::new(draft))));
        }
        if self.feature_draft.is_some() || self.built_in_wanted(strategies) {
            let target = model.open(global)?;
            if let Some(path) = self.feature_draft_path(&target)? {
                drafts.feature = Some(Rc::new(self.load_feature_draft(&path, &target)?));
            }
        }
        Ok(drafts)
    }

    /// Whether one of `strategies` would use the default model's built-in feature draft:
    /// `feature-draft` and `feature-hybrid` always, `auto` where the draft's 8-bit products
    /// have vector instructions (without them it is slower than the heads) or
    /// `--feature-weights` says how to run it.
    fn built_in_wanted(&self, strategies: &[Strategy]) -> bool {
        let auto_takes_it =
            DraftWeights::fastest() == DraftWeights::Int8 || self.feature_weights.is_some();
        !self.no_feature_draft
            && strategies.iter().any(|s| match s {
                Strategy::FeatureDraft | Strategy::FeatureHybrid => true,
                Strategy::Auto => auto_takes_it,
                _ => false,
            })
    }

    /// `--feature-draft`, else the built-in draft when `target` is the default model
    /// (written into the cache first).
    fn feature_draft_path(&self, target: &ModelDir) -> anyhow::Result<Option<PathBuf>> {
        if let Some(path) = &self.feature_draft {
            return Ok(Some(path.clone()));
        }
        if !default_model::is_default_model(target.path()) {
            return Ok(None);
        }
        let path = default_draft::ensure(&home_dir()?)
            .context("cannot write the default model's feature draft into the cache")?;
        Ok(Some(path))
    }

    /// The feature draft in `path`, for `target`.
    fn load_feature_draft(&self, path: &Path, target: &ModelDir) -> anyhow::Result<FeatureDraft> {
        let config = target.config();
        let file = FeatureDraftFile::open(path, config.hidden_size, config.vocab_size)
            .with_context(|| format!("cannot use the feature draft in {}", path.display()))?;
        let lm = LmHead::from_model(target)
            .with_context(|| format!("cannot read the LM head of {}", target.path().display()))?;
        let weights = self.feature_weights.unwrap_or_else(DraftWeights::fastest);
        let draft = FeatureDraft::new(&file, &lm, weights)
            .with_context(|| format!("cannot load the feature draft in {}", path.display()))?;
        if !draft.ranked() && self.feature_vocab > 0 {
            tracing::warn!(
                "{} does not rank its vocabulary by frequency: the draft scores all {} of its \
                 tokens (--feature-vocab has no effect)",
                path.display(),
                draft.vocab().len()
            );
        }
        Ok(draft)
    }
}

/// Builds the proposer for `strategy` on `model`.
pub fn proposer(
    strategy: Strategy,
    model: &NeuronModel,
    drafts: &Drafts,
    sampling: SamplingConfig,
    seed: u64,
) -> anyhow::Result<Box<dyn Proposer>> {
    let lookup = || PromptLookup::new(PromptLookupConfig::default());
    let medusa = || -> anyhow::Result<Medusa> {
        let tree = model.medusa_tree().with_context(|| {
            format!(
                "{} has no Medusa heads; compile with --heads FILE, or choose another --strategy",
                model.dir().display()
            )
        })?;
        Ok(Medusa::new(tree))
    };
    let answers = || -> anyhow::Result<AnswerLookup> {
        let index = model
            .answer_index()
            .with_context(|| format!("cannot read the answers in {}", model.dir().display()))?
            .with_context(|| {
                format!(
                    "{} has no answers with its heads (heads files written by `neuron-decode train-heads` carry them); choose another --strategy",
                    model.dir().display()
                )
            })?;
        Ok(AnswerLookup::new(index, AnswerLookupConfig::default()))
    };
    let feature = || -> anyhow::Result<FeatureDraftProposer> {
        let draft = drafts.feature.as_ref().with_context(|| {
            format!(
                "--strategy {} needs --feature-draft FILE (the default model has one built in)",
                strategy.name()
            )
        })?;
        Ok(FeatureDraftProposer::new(
            Rc::clone(draft),
            drafts.feature_config,
        ))
    };
    Ok(match strategy.resolve(model, drafts) {
        Strategy::Ar => Box::new(Autoregressive),
        Strategy::PromptLookup => Box::new(lookup()),
        Strategy::Medusa => Box::new(medusa()?),
        // One tree chosen across both by each candidate's chance: on the open benchmark
        // prompts, sized by the two-core cost table, it modeled 0.4% faster than prompt
        // lookup first and the heads in what remained (hybrid: 3%).
        Strategy::MedusaLookup => Box::new(Combined::global(
            "medusa-lookup",
            vec![Box::new(lookup()), Box::new(medusa()?)],
        )?),
        Strategy::AnswerLookup => Box::new(answers()?),
        Strategy::Hybrid => Box::new(Combined::global(
            "hybrid",
            vec![
                Box::new(lookup()),
                Box::new(answers()?),
                Box::new(medusa()?),
            ],
        )?),
        Strategy::FeatureDraft => Box::new(feature()?),
        Strategy::FeatureHybrid => Box::new(Combined::global(
            "feature-hybrid",
            vec![
                Box::new(lookup()),
                Box::new(answers()?),
                Box::new(feature()?),
            ],
        )?),
        Strategy::Draft => {
            let Some(draft) = &drafts.model else {
                bail!(
                    "--strategy draft needs --draft-artifacts DIR (a smaller model compiled with `neuron-decode compile`)"
                )
            };
            if draft.borrow().info().vocab != model.info().vocab {
                bail!(
                    "the draft model's vocabulary ({}) differs from the target's ({}); it must use the same tokenizer",
                    draft.borrow().info().vocab,
                    model.info().vocab
                );
            }
            Box::new(Draft::new(
                Rc::clone(draft),
                0,
                DraftLength::Adaptive(drafts.len.max(1)),
                sampling,
                seed,
            )?)
        }
        Strategy::Auto => unreachable_auto()?,
    })
}

fn unreachable_auto() -> anyhow::Result<Box<dyn Proposer>> {
    bail!("internal error: the auto strategy was not resolved")
}
