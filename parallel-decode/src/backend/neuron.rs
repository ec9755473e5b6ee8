//! A model on NeuronCores (or the mock), driven through `neuron-rt`.
//!
//! [`NeuronModel::open`] loads an artifacts directory: every graph as a group of ranks (one
//! NeuronCore per rank), each rank's weights written to its core once and bound into every
//! graph by name, and one KV cache per rank bound to the input and the output set of every
//! graph, so it is updated in place and never travels to the host. A step writes a few token
//! ids, positions and (for trees) a mask, runs one graph, and reads back the argmax of each new
//! token; logits and hidden states are read only when asked for, one row at a time. Nothing a
//! step does grows with the context length.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use neuron_rt::{ModelGroup, Placement, Runtime, Tensor, TensorSet};

use super::costs::PassCosts;
use super::{CommitRow, LanguageModel, ModelInfo, TreeRow};
use crate::artifacts::manifest::{GraphEntry, Manifest, Role};
use crate::artifacts::{MatrixDtype, matrices_for_mock};
use crate::error::{Error, Result};
use crate::loading::medusa_heads::read_answers;
use crate::loading::safetensors::SafetensorsFile;
use crate::loading::{LlamaConfig, ModelText, Progress, Unit};
use crate::strategy::answer_lookup::{AnswerIndex, AnswerLookupConfig};
use crate::strategy::medusa::MedusaTree;
use crate::strategy::proposer::HeadCandidates;

/// One graph loaded on every rank, with its per-rank tensor sets.
struct Graph {
    role: Role,
    width: usize,
    batch: usize,
    group: ModelGroup,
    inputs: Vec<TensorSet>,
    outputs: Vec<TensorSet>,
}

impl Graph {
    /// Writes `data` at element `offset` of input `name` on every rank.
    fn write<T: neuron_rt::NeuronRepr>(&self, name: &str, offset: usize, data: &[T]) -> Result<()> {
        for set in &self.inputs {
            set.tensor(name)?.write_from(offset, data)?;
        }
        Ok(())
    }

    /// Writes the per-row scalars of a step: `seq_ids`, `cache_lens`, and the row's token count
    /// into `count_input`, which is zero for every row of the graph past the given ones (so
    /// that a row left over from an earlier, larger step is not run again).
    fn write_rows(
        &self,
        ints: &mut Vec<i32>,
        batch: usize,
        rows: impl Iterator<Item = (usize, usize, usize)> + Clone,
        count_input: &str,
    ) -> Result<()> {
        for (name, pick) in [("seq_ids", 0), ("cache_lens", 1), (count_input, 2)] {
            ints.clear();
            ints.extend(
                rows.clone()
                    .map(|(slot, len, count)| [slot, len, count][pick] as i32),
            );
            if pick == 2 {
                ints.resize(batch, 0);
            }
            self.write(name, 0, ints)?;
        }
        Ok(())
    }

    /// Reads rank 0's output `name` from element `offset` into `out`.
    fn read<T: neuron_rt::NeuronRepr>(
        &self,
        name: &str,
        offset: usize,
        out: &mut [T],
    ) -> Result<()> {
        let set = self.outputs.first().ok_or_else(|| Error::Setting {
            field: "graph",
            message: "has no ranks".into(),
        })?;
        Ok(set.tensor(name)?.read_into(offset, out)?)
    }

    /// Executes the graph; returns how long the execution took (the device's share of a
    /// step, as opposed to the host work around it).
    fn run(&mut self) -> Result<std::time::Duration> {
        let start = std::time::Instant::now();
        self.group.execute(&self.inputs, &mut self.outputs)?;
        Ok(start.elapsed())
    }
}

/// Which graph produced the outputs that [`LanguageModel::logits`] and
/// [`LanguageModel::hidden`] read, and how its rows are laid out.
#[derive(Debug, Clone, Copy)]
struct Last {
    /// Index into `NeuronModel::graphs`.
    graph: usize,
    /// Rows used in the last pass.
    rows: usize,
    /// Outputs per row in the graph (1 for a prefill, its width for a tree graph).
    per_row: usize,
    /// Valid nodes per row (the longest tree).
    nodes: usize,
}

/// A model loaded from an artifacts directory onto NeuronCores.
pub struct NeuronModel {
    dir: PathBuf,
    manifest: Manifest,
    config: LlamaConfig,
    text: Arc<ModelText>,
    info: ModelInfo,
    graphs: Vec<Graph>,
    /// Indices into `graphs`, narrowest first.
    prefill: Vec<usize>,
    trees: Vec<usize>,
    commit: usize,
    heads: Option<usize>,
    last: Option<Last>,
    /// Time spent inside graph executions since the model was opened.
    device_time: std::time::Duration,
    /// Pass costs, learned from the passes that run (`None` while they are first measured).
    costs: Option<PassCosts>,
    /// Reused host buffers for step inputs.
    scratch_i32: Vec<i32>,
    scratch_u8: Vec<u8>,
    runtime: Arc<Runtime>,
    /// The heads' training answers indexed for answer lookup, built on first use.
    answer_index: std::sync::OnceLock<Arc<AnswerIndex>>,
}

impl std::fmt::Debug for NeuronModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuronModel")
            .field("dir", &self.dir)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

const STEP_INPUTS: [&str; 8] = [
    "input_ids",
    "position_ids",
    "seq_ids",
    "cache_lens",
    "new_lens",
    "tree_mask",
    "accept_counts",
    "accept_indices",
];

impl NeuronModel {
    /// Loads the artifacts in `dir` onto cores `0..tp` of `runtime`.
    ///
    /// # Errors
    /// [`Error::Artifacts`] for a bad manifest or missing files; [`Error::Setting`] when the
    /// runtime has fewer visible cores than the model's tensor-parallel degree;
    /// [`Error::Runtime`] when loading or allocating on the device fails.
    pub fn open(runtime: &Arc<Runtime>, dir: &Path, progress: &dyn Progress) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        if manifest.target == "mock"
            && manifest.matrices == MatrixDtype::Bf16
            && matrices_for_mock() != MatrixDtype::Bf16
        {
            return Err(Error::Setting {
                field: "NEURON_MOCK_MATMUL",
                message: format!(
                    "{} holds bf16 matrices, which the mock multiplies only in bf16: set \
                     NEURON_MOCK_MATMUL=bf16, or compile with --matrices f32",
                    dir.display()
                ),
            });
        }
        let tp = manifest.tp;
        let visible = runtime.visible_cores()? as usize;
        if visible < tp {
            return Err(Error::Setting {
                field: "cores",
                message: format!(
                    "{} was compiled for {tp} NeuronCores (tensor parallelism) but {visible} are visible; use an instance with more cores or compile with a smaller --tp",
                    dir.display()
                ),
            });
        }
        let config = LlamaConfig::from_file(&dir.join(crate::loading::model_dir::CONFIG_FILE))?;
        let text = Arc::new(ModelText::open(dir, &config)?);

        let step = progress.start(
            "loading weights onto the device",
            Some(tp as u64),
            Unit::Items,
        );
        let mut weights: Vec<HashMap<String, Arc<Tensor>>> = Vec::with_capacity(tp);
        for (rank, file) in manifest.weights.iter().enumerate() {
            weights.push(load_shard(runtime, &dir.join(file), rank as u32)?);
            step.advance(1);
        }
        drop(step);

        // Each rank's cache: [layers][k|v][slots][kv heads on the rank][positions][head width].
        let kv_shape = [
            config.num_layers,
            2,
            manifest.slots,
            config.num_kv_heads / tp,
            manifest.max_len,
            config.head_dim,
        ];
        let mut kv = Vec::with_capacity(tp);
        for rank in 0..tp {
            let t = Tensor::allocate_shaped(
                runtime,
                Placement::Device(rank as u32),
                neuron_rt::DType::F32,
                &kv_shape,
                "kv_cache",
            )?;
            t.fill_bytes(0)?;
            kv.push(Arc::new(t));
        }

        let step = progress.start(
            "loading graphs",
            Some(manifest.graphs.len() as u64),
            Unit::Items,
        );
        let mut graphs = Vec::with_capacity(manifest.graphs.len());
        for entry in &manifest.graphs {
            graphs.push(load_graph(runtime, dir, entry, tp, &weights, &kv)?);
            step.advance(1);
        }
        drop(step);
        let of = |role: Role| -> Vec<usize> {
            let mut v: Vec<usize> = (0..graphs.len())
                .filter(|&i| graphs[i].role == role)
                .collect();
            v.sort_by_key(|&i| graphs[i].width);
            v
        };
        let prefill = of(Role::Prefill);
        let mut trees = of(Role::Decode);
        trees.extend(of(Role::Verify));
        trees.sort_by_key(|&i| graphs[i].width);
        let commit = of(Role::KvCommit)
            .last()
            .copied()
            .ok_or_else(|| artifacts(dir, "has no kv_commit graph"))?;
        let heads = of(Role::Heads).first().copied();
        let max_tree = trees
            .last()
            .map_or(1, |&i| graphs[i].width)
            .min(graphs[commit].width);
        let max_batch = trees
            .iter()
            .map(|&i| graphs[i].batch)
            .min()
            .unwrap_or(1)
            .min(graphs[commit].batch);
        let info = ModelInfo {
            vocab: config.vocab_size,
            hidden: config.hidden_size,
            slots: manifest.slots,
            max_len: manifest.max_len,
            max_tree,
            max_batch,
            heads: manifest.heads.as_ref().map_or(0, |h| h.count),
            tree_cost: Vec::new(),
            heads_cost: 0.0,
        };
        let mut model = NeuronModel {
            dir: dir.to_path_buf(),
            manifest,
            config,
            text,
            info,
            graphs,
            prefill,
            trees,
            commit,
            heads,
            last: None,
            device_time: std::time::Duration::ZERO,
            costs: None,
            scratch_i32: Vec::new(),
            scratch_u8: Vec::new(),
            runtime: Arc::clone(runtime),
            answer_index: std::sync::OnceLock::new(),
        };
        model.costs = Some(model.measure_costs()?);
        model.refresh_costs();
        tracing::debug!(
            tree_cost = ?model.info.tree_cost,
            heads_cost = model.info.heads_cost,
            "measured pass costs relative to a one-token pass"
        );
        Ok(model)
    }

    /// Times a pass of every tree bucket (the median of [`COST_ROUNDS`]) and a run of the
    /// heads, if any: the starting point of the costs learned as passes run. A pass over `n`
    /// nodes runs in the smallest bucket that holds them, so its cost is that bucket's. The
    /// median, not the best, because the learned costs average the passes that run: a best
    /// case for the buckets not in use against typical times for the one in use would make
    /// the one in use look dear.
    fn measure_costs(&mut self) -> Result<PassCosts> {
        let widths = self.tree_buckets();
        let context = 64
            .min(self.info.max_len.saturating_sub(self.info.max_tree + 1))
            .max(1);
        let prompt: Vec<u32> = (0..context).map(|i| (i % 100) as u32).collect();
        self.prefill(0, &prompt)?;
        // Rounds over every width in turn, so that a burst of other work on the machine
        // slows all widths alike rather than one.
        let mut times = vec![Vec::with_capacity(COST_ROUNDS); widths.len()];
        for _ in 0..COST_ROUNDS {
            for (t, &w) in times.iter_mut().zip(&widths) {
                t.push(self.time_tree_pass(context, w)?.as_secs_f64());
            }
        }
        let heads = if self.info.heads > 0 {
            let mut hidden = Vec::new();
            self.hidden(0, 0, &mut hidden)?;
            let top_k = vec![1; self.info.heads];
            let mut runs = Vec::with_capacity(COST_ROUNDS);
            for _ in 0..COST_ROUNDS {
                let start = std::time::Instant::now();
                self.heads(&hidden, 0, &top_k)?;
                runs.push(start.elapsed().as_secs_f64());
            }
            Some(median(&mut runs))
        } else {
            None
        };
        let seconds = times.iter_mut().map(|t| median(t)).collect();
        Ok(PassCosts::new(widths, seconds, heads))
    }

    /// Copies the learned costs into [`ModelInfo::tree_cost`] and [`ModelInfo::heads_cost`].
    fn refresh_costs(&mut self) {
        if let Some(costs) = &self.costs {
            (self.info.tree_cost, self.info.heads_cost) = costs.relative(self.info.max_tree);
        }
    }

    /// From now on, proposers see a pass of any width as costing the same as a one-node pass
    /// (the heads keeping their measured cost), instead of the costs measured here: the trees
    /// they propose are then those a device with a flat cost curve, such as a NeuronCore up
    /// to tens of tokens, would verify. Their tau carries over to that device; their speed
    /// here does not.
    pub fn assume_flat_cost(&mut self) {
        self.refresh_costs();
        let heads = self.info.heads_cost;
        self.assume_costs(vec![1.0; self.info.max_tree], heads);
    }

    /// From now on, proposers see the given costs (relative to a one-node pass, entry `n - 1`
    /// for `n` nodes; see [`ModelInfo::tree_cost`]) instead of the ones measured here, and the
    /// passes that run no longer change them: what a given device's cost table says (see
    /// [`crate::medusa::tune::CostModel::relative`]). As with [`Self::assume_flat_cost`], the
    /// trees and their tau are that device's; the speed is still this one's.
    pub fn assume_costs(&mut self, tree_cost: Vec<f32>, heads_cost: f32) {
        self.costs = None;
        self.info.tree_cost = tree_cost;
        self.info.heads_cost = heads_cost;
    }

    /// The artifacts directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Tokenizer, chat template and special tokens (shared, so that a caller can keep them
    /// while the model is busy generating).
    pub fn text(&self) -> &Arc<ModelText> {
        &self.text
    }

    /// The candidate tree recorded with the heads, if the model has heads.
    pub fn medusa_tree(&self) -> Option<MedusaTree> {
        self.manifest
            .heads
            .as_ref()
            .and_then(|h| MedusaTree::new(h.tree.clone()).ok())
    }

    /// The artifacts' answers file (relative), if they carry the heads' training answers.
    fn answers_file(&self) -> Option<&str> {
        self.manifest.heads.as_ref()?.answers.as_deref()
    }

    /// Whether the artifacts carry the answers the heads were trained on.
    pub fn has_answers(&self) -> bool {
        self.answers_file().is_some()
    }

    /// The answers the heads were trained on, indexed for answer lookup (built on first use,
    /// then shared): `None` when the artifacts carry none.
    ///
    /// # Errors
    /// [`Error::Artifacts`] when the answers file does not read as one (see
    /// [`crate::loading::medusa_heads::read_answers`]).
    pub fn answer_index(&self) -> Result<Option<Arc<AnswerIndex>>> {
        let Some(file) = self.answers_file() else {
            return Ok(None);
        };
        if let Some(index) = self.answer_index.get() {
            return Ok(Some(Arc::clone(index)));
        }
        let path = self.dir.join(file);
        let answers = read_answers(&SafetensorsFile::open(&path)?, self.info.vocab)?
            .ok_or_else(|| artifacts(&path, "has no answers tensor"))?;
        let depth = AnswerLookupConfig::default().max_ngram;
        let index = Arc::new(AnswerIndex::new(answers.iter().map(Vec::as_slice), depth));
        Ok(Some(Arc::clone(self.answer_index.get_or_init(|| index))))
    }

    /// Total time spent executing graphs since the model was opened. The rest of the time a
    /// caller measures around [`LanguageModel`] calls is host work.
    pub fn device_time(&self) -> std::time::Duration {
        self.device_time
    }

    /// The runtime the model runs on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Widths of the tree graphs (1 is the decode graph).
    pub fn tree_buckets(&self) -> Vec<usize> {
        self.trees.iter().map(|&i| self.graphs[i].width).collect()
    }

    /// Runs one tree pass of `width` nodes in slot 0 whatever the trees hold, for measuring
    /// the cost of a pass against its width. Writes only past `cache_len` of slot 0.
    ///
    /// # Errors
    /// As [`LanguageModel::verify`].
    pub fn time_tree_pass(
        &mut self,
        cache_len: usize,
        width: usize,
    ) -> Result<std::time::Duration> {
        let mut tree = crate::strategy::tree::TokenTree::new(0);
        for i in 1..width {
            tree.push(i - 1, (i % self.info.vocab) as u32);
        }
        let start = std::time::Instant::now();
        self.verify(&[TreeRow {
            slot: 0,
            cache_len,
            tree: &tree,
        }])?;
        Ok(start.elapsed())
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot >= self.info.slots {
            return Err(Error::Setting {
                field: "slot",
                message: format!(
                    "slot {slot} does not exist; the model has {} slots",
                    self.info.slots
                ),
            });
        }
        Ok(())
    }

    fn last(&self, row: usize, node: usize) -> Result<Last> {
        let last = self.last.ok_or_else(|| Error::Setting {
            field: "outputs",
            message: "no pass has run yet".into(),
        })?;
        if row >= last.rows || node >= last.nodes {
            return Err(Error::Setting {
                field: "outputs",
                message: format!(
                    "row {row}, node {node} is outside the last pass ({} rows of {} nodes)",
                    last.rows, last.nodes
                ),
            });
        }
        Ok(last)
    }
}

/// Rounds of timed passes behind [`ModelInfo::tree_cost`].
const COST_ROUNDS: usize = 6;

/// The median of `values` (the upper one of an even count); 0 for none.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Reads one rank's weight shard into device tensors on `core`, by tensor name.
fn load_shard(
    runtime: &Arc<Runtime>,
    path: &Path,
    core: u32,
) -> Result<HashMap<String, Arc<Tensor>>> {
    let file = SafetensorsFile::open(path)?;
    let mut tensors = HashMap::with_capacity(file.tensors().len());
    for (name, info) in file.tensors() {
        let dtype = match info.dtype {
            crate::loading::Dtype::F32 => neuron_rt::DType::F32,
            crate::loading::Dtype::F16 => neuron_rt::DType::F16,
            crate::loading::Dtype::BF16 => neuron_rt::DType::BF16,
            other => {
                return Err(artifacts(
                    path,
                    format!("tensor `{name}` is {other}, the graphs take f32, f16 or bf16 weights"),
                ));
            }
        };
        let bytes = file.data(info);
        let t = Tensor::allocate(runtime, Placement::Device(core), bytes.len().max(1), name)?;
        t.write_bytes(0, bytes)?;
        tensors.insert(name.clone(), Arc::new(t.with_shape(dtype, &info.shape)?));
    }
    Ok(tensors)
}

/// Loads one graph on every rank and binds its tensors: weights and the KV cache by name,
/// fresh tensors for the step inputs and the outputs.
fn load_graph(
    runtime: &Arc<Runtime>,
    dir: &Path,
    entry: &GraphEntry,
    tp: usize,
    weights: &[HashMap<String, Arc<Tensor>>],
    kv: &[Arc<Tensor>],
) -> Result<Graph> {
    let path = dir.join(&entry.path);
    let group = ModelGroup::loader(runtime)
        .cores(0..tp as u32)
        .name(entry.path.clone())
        .load_file(&path)?;
    let mut inputs = Vec::with_capacity(tp);
    let mut outputs = Vec::with_capacity(tp);
    for (rank, model) in group.ranks().iter().enumerate() {
        let core = Placement::Device(rank as u32);
        let mut ins = TensorSet::new(runtime)?;
        for info in model.inputs() {
            let tensor = if info.name == "kv_cache" {
                Arc::clone(&kv[rank])
            } else if let Some(w) = weights[rank].get(&info.name) {
                Arc::clone(w)
            } else if STEP_INPUTS.contains(&info.name.as_str())
                || info.name == "hidden"
                || info.name == "num_rows"
                || info.name == "next_ids"
            {
                let t = Arc::new(Tensor::allocate_like(runtime, core, info)?);
                t.fill_bytes(0)?;
                t
            } else {
                return Err(artifacts(
                    &path,
                    format!(
                        "input `{}` is neither a step input nor in weights/rank{rank}.safetensors",
                        info.name
                    ),
                ));
            };
            ins.insert(&info.name, tensor)?;
        }
        let mut outs = TensorSet::new(runtime)?;
        for info in model.outputs() {
            let tensor = if info.name == "kv_cache" {
                Arc::clone(&kv[rank])
            } else {
                Arc::new(Tensor::allocate_like(runtime, core, info)?)
            };
            outs.insert(&info.name, tensor)?;
        }
        model
            .check_io(&ins, &outs)
            .map_err(|e| artifacts(&path, format!("rank {rank}: {e}")))?;
        inputs.push(ins);
        outputs.push(outs);
    }
    Ok(Graph {
        role: entry.role,
        width: entry.width,
        batch: entry.batch,
        group,
        inputs,
        outputs,
    })
}

fn artifacts(path: &Path, message: impl Into<String>) -> Error {
    Error::Artifacts {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl LanguageModel for NeuronModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn prefill(&mut self, slot: usize, tokens: &[u32]) -> Result<u32> {
        self.check_slot(slot)?;
        if tokens.is_empty() || tokens.len() > self.info.max_len {
            return Err(Error::Setting {
                field: "prompt",
                message: format!(
                    "{} tokens; a slot holds 1 to {}",
                    tokens.len(),
                    self.info.max_len
                ),
            });
        }
        let widest = *self
            .prefill
            .last()
            .ok_or_else(|| artifacts(&self.dir, "has no prefill graph"))?;
        let mut start = 0;
        let mut last_graph = widest;
        // A prompt longer than the widest bucket runs in chunks, each after the cached ones.
        while start < tokens.len() {
            let remaining = tokens.len() - start;
            let g = self
                .prefill
                .iter()
                .copied()
                .find(|&i| self.graphs[i].width >= remaining)
                .unwrap_or(widest);
            let n = remaining.min(self.graphs[g].width);
            let graph = &mut self.graphs[g];
            self.scratch_i32.clear();
            self.scratch_i32
                .extend(tokens[start..start + n].iter().map(|&t| t as i32));
            graph.write("input_ids", 0, &self.scratch_i32)?;
            self.scratch_i32.clear();
            self.scratch_i32
                .extend((start..start + n).map(|p| p as i32));
            graph.write("position_ids", 0, &self.scratch_i32)?;
            graph.write("seq_ids", 0, &[slot as i32])?;
            graph.write("cache_lens", 0, &[start as i32])?;
            graph.write("new_lens", 0, &[n as i32])?;
            self.device_time += graph.run()?;
            start += n;
            last_graph = g;
        }
        let mut next = [0i32];
        self.graphs[last_graph].read("next_token", 0, &mut next)?;
        self.last = Some(Last {
            graph: last_graph,
            rows: 1,
            per_row: 1,
            nodes: 1,
        });
        u32::try_from(next[0]).map_err(|_| Error::Setting {
            field: "outputs",
            message: format!("the device returned token {}", next[0]),
        })
    }

    fn verify(&mut self, rows: &[TreeRow<'_>]) -> Result<Vec<Vec<u32>>> {
        let started = std::time::Instant::now();
        let longest = rows.iter().map(|r| r.tree.len()).max().unwrap_or(0);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let fits = self
            .trees
            .iter()
            .position(|&i| self.graphs[i].width >= longest && self.graphs[i].batch >= rows.len())
            .ok_or_else(|| Error::Setting {
                field: "tree",
                message: format!(
                    "{} rows with trees of up to {longest} tokens do not fit the compiled buckets (widest {}, batch {})",
                    rows.len(),
                    self.info.max_tree,
                    self.info.max_batch
                ),
            })?;
        // A speculative one-row pass may run padded in a wider bucket whose learned cost has
        // gone unchecked (see `costs`); one-node passes never do, so autoregressive decoding
        // runs as it always has.
        let bucket = match &self.costs {
            Some(costs) if rows.len() == 1 && longest > 1 => costs.bucket_to_run(fits),
            _ => fits,
        };
        let g = self.trees[bucket];
        for row in rows {
            self.check_slot(row.slot)?;
            if row.cache_len + row.tree.len() > self.info.max_len {
                return Err(Error::Setting {
                    field: "tree",
                    message: format!(
                        "slot {}: {} cached + {} new tokens exceed the context of {}",
                        row.slot,
                        row.cache_len,
                        row.tree.len(),
                        self.info.max_len
                    ),
                });
            }
        }
        let graph = &mut self.graphs[g];
        let (w, batch) = (graph.width, graph.batch);
        let ints = &mut self.scratch_i32;
        // Tokens and positions of every row (padding after each tree).
        ints.clear();
        ints.resize(rows.len() * w, 0);
        for (b, row) in rows.iter().enumerate() {
            for (i, &t) in row.tree.tokens().iter().enumerate() {
                ints[b * w + i] = t as i32;
            }
        }
        graph.write("input_ids", 0, ints)?;
        for (b, row) in rows.iter().enumerate() {
            ints[b * w..b * w + row.tree.len()].copy_from_slice(&row.tree.positions(row.cache_len));
        }
        graph.write("position_ids", 0, ints)?;
        // Per-row scalars for every row of the graph: unused rows get new_lens = 0.
        graph.write_rows(
            ints,
            batch,
            rows.iter().map(|r| (r.slot, r.cache_len, r.tree.len())),
            "new_lens",
        )?;
        if graph.role == Role::Verify {
            let mask = &mut self.scratch_u8;
            mask.clear();
            for row in rows {
                mask.extend(row.tree.ancestor_mask(w));
            }
            graph.write("tree_mask", 0, mask)?;
        }
        self.device_time += graph.run()?;
        let mut next = vec![0i32; rows.len() * w];
        graph.read("next_token", 0, &mut next)?;
        self.last = Some(Last {
            graph: g,
            rows: rows.len(),
            per_row: w,
            nodes: longest,
        });
        // The costs describe one row's pass; batched passes cost more and are not counted.
        if rows.len() == 1 {
            if let Some(costs) = &mut self.costs {
                costs.observe_pass(bucket, started.elapsed().as_secs_f64());
            }
            self.refresh_costs();
        }
        rows.iter()
            .enumerate()
            .map(|(b, row)| {
                next[b * w..b * w + row.tree.len()]
                    .iter()
                    .map(|&t| {
                        u32::try_from(t).map_err(|_| Error::Setting {
                            field: "outputs",
                            message: format!("the device returned token {t}"),
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn logits(&mut self, row: usize, node: usize, out: &mut Vec<f32>) -> Result<()> {
        let last = self.last(row, node)?;
        let v = self.info.vocab;
        out.resize(v, 0.0);
        self.graphs[last.graph].read("logits", (row * last.per_row + node) * v, out)
    }

    fn hidden(&mut self, row: usize, node: usize, out: &mut Vec<f32>) -> Result<()> {
        let last = self.last(row, node)?;
        let d = self.info.hidden;
        out.resize(d, 0.0);
        self.graphs[last.graph].read("hidden", (row * last.per_row + node) * d, out)
    }

    fn commit(&mut self, rows: &[CommitRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let graph = &mut self.graphs[self.commit];
        let (w, batch) = (graph.width, graph.batch);
        if rows.len() > batch || rows.iter().any(|r| r.accepted.len() > w) {
            return Err(Error::Setting {
                field: "commit",
                message: format!(
                    "{} rows exceed the commit graph ({batch} rows of {w})",
                    rows.len()
                ),
            });
        }
        let ints = &mut self.scratch_i32;
        graph.write_rows(
            ints,
            batch,
            rows.iter().map(|r| (r.slot, r.cache_len, r.accepted.len())),
            "accept_counts",
        )?;
        ints.clear();
        ints.resize(rows.len() * w, 0);
        for (b, row) in rows.iter().enumerate() {
            for (k, &node) in row.accepted.iter().enumerate() {
                ints[b * w + k] = node as i32;
            }
        }
        graph.write("accept_indices", 0, ints)?;
        self.device_time += graph.run()?;
        Ok(())
    }

    fn heads(&mut self, hidden: &[f32], next: u32, top_k: &[usize]) -> Result<HeadCandidates> {
        let started = std::time::Instant::now();
        let g = self.heads.ok_or_else(|| Error::Setting {
            field: "strategy",
            message: format!("{} was compiled without Medusa heads", self.dir.display()),
        })?;
        let entry = self
            .manifest
            .heads
            .clone()
            .ok_or_else(|| artifacts(&self.dir, "has a heads graph but no heads entry"))?;
        if hidden.len() != self.info.hidden {
            return Err(Error::Setting {
                field: "hidden",
                message: format!(
                    "{} values, the model's width is {}",
                    hidden.len(),
                    self.info.hidden
                ),
            });
        }
        let graph = &mut self.graphs[g];
        graph.write("hidden", 0, hidden)?;
        graph.write("num_rows", 0, &[1i32])?;
        if entry.takes_next {
            let id = i32::try_from(next).map_err(|_| Error::Setting {
                field: "next token",
                message: format!("token id {next} does not fit the graph's i32 input"),
            })?;
            graph.write("next_ids", 0, &[id])?;
        }
        self.device_time += graph.run()?;
        let mut ids = vec![0i32; entry.count * entry.top_k];
        graph.read("head_ids", 0, &mut ids)?;
        let mut logprobs = vec![0f32; entry.count * entry.top_k];
        graph.read("head_logprobs", 0, &mut logprobs)?;
        let (mut heads, mut probs) = (Vec::new(), Vec::new());
        for h in 0..entry.count {
            let k = top_k
                .get(h)
                .copied()
                .unwrap_or(entry.top_k)
                .min(entry.top_k);
            let range = h * entry.top_k..h * entry.top_k + k;
            // Unused candidate slots (a vocabulary smaller than top_k) hold id -1.
            let valid = ids[range.clone()]
                .iter()
                .zip(&logprobs[range])
                .filter(|(t, _)| **t >= 0);
            heads.push(valid.clone().map(|(&t, _)| t as u32).collect());
            probs.push(valid.map(|(_, &l)| l.exp()).collect());
        }
        if let Some(costs) = &mut self.costs {
            costs.observe_heads(started.elapsed().as_secs_f64());
        }
        self.refresh_costs();
        Ok(HeadCandidates { heads, probs })
    }
}
