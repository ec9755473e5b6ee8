//! `neuron-decode compile` for the mock device: a model directory in, an artifacts directory
//! out (mock NEFFs per role and bucket, per-rank weight shards, the tokenizer, the manifest).

use std::collections::BTreeMap;
use std::path::Path;

use neuron_mock::kernels::llama::forward::KvLayout;
use neuron_mock::kernels::llama::graph::{
    CommitParams, FORWARD_KERNEL, ForwardParams, HEADS_KERNEL, HEADS_LM_HEAD, HeadsParams,
    KV_COMMIT_KERNEL, LM_HEAD, MatrixDtype, ModelShard, OutputsAt, head_tensor, is_model_matrix,
    is_packed_weight, stored_weight,
};
use neuron_mock::kernels::llama::packed::{pack, pack_bf16_pairs};
use neuron_mock::neff::{MockNeff, TensorSpec};

use super::manifest::{
    FORMAT, FORMAT_VERSION, GraphEntry, HeadsEntry, MANIFEST_FILE, Manifest, ModelEntry, Role,
};
use super::shard::{Split, check_divisible, shard, split_of};
use crate::error::{Error, Result};
use crate::loading::medusa_heads::MedusaHeads;
use crate::loading::safetensors::SafetensorsWriter;
use crate::loading::{Dtype, ModelDir, Progress, Unit};
use crate::medusa::file::write_answers;
use crate::strategy::medusa::MedusaTree;

/// The artifacts' copy of the answers the heads were trained on (see
/// [`crate::loading::medusa_heads`]), named by the manifest's heads entry.
pub const ANSWERS_FILE: &str = "medusa_answers.safetensors";

/// Tree sizes the verify graphs take by default. Every size up to 4 and then steps of about
/// 1.4x: a tree pads up to the next size, and where a pass costs in proportion to its tokens
/// (a CPU, the mock) coarser steps (1, 2, 4, 8, ...) make a 5-node tree cost as much as 8.
/// On a NeuronCore, where cost is flat up to far larger trees, each size is one more graph to
/// compile and no faster; fewer sizes (`--verify-buckets 1,8,32`) serve as well there.
pub const DEFAULT_VERIFY_BUCKETS: [usize; 10] = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32];

/// Settings of a compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileOptions {
    /// Tensor-parallel degree (ranks, one NeuronCore each).
    pub tp: usize,
    /// KV-cache slots: sequences in flight at once.
    pub slots: usize,
    /// Positions per slot (prompt plus generated tokens).
    pub max_len: usize,
    /// Prompt chunk sizes; longer prompts are run in several chunks.
    pub prefill_buckets: Vec<usize>,
    /// Tree sizes a verify pass takes (1 is the decode graph).
    pub verify_buckets: Vec<usize>,
    /// Candidates the heads graph returns per head.
    pub heads_top_k: usize,
    /// The candidate tree to record (when there are heads); the heads file's own tree, or a
    /// default, otherwise.
    pub medusa_tree: Option<MedusaTree>,
    /// How the matrices the forward passes stream (the layers' projections and the LM head)
    /// are stored: f32, or bf16 as a Neuron compiler casts them (half the bytes; the mock runs
    /// them only with its products in bf16). Default: [`matrices_for_mock`].
    pub matrices: MatrixDtype,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            tp: 1,
            slots: 4,
            max_len: 2048,
            prefill_buckets: vec![32, 128, 512],
            verify_buckets: DEFAULT_VERIFY_BUCKETS.to_vec(),
            heads_top_k: 10,
            medusa_tree: None,
            matrices: matrices_for_mock(),
        }
    }
}

/// The matrices that suit the mock in this process: bf16 when its products are bf16
/// (`NEURON_MOCK_MATMUL=bf16`, the variable the mock reads), since it would round f32 weights
/// to the same values on every pass; f32 otherwise, the only ones its f32 products take.
pub fn matrices_for_mock() -> MatrixDtype {
    match std::env::var("NEURON_MOCK_MATMUL") {
        Ok(v) if v.eq_ignore_ascii_case("bf16") => MatrixDtype::Bf16,
        _ => MatrixDtype::F32,
    }
}

impl CompileOptions {
    fn validate(&self, model: &ModelDir) -> Result<()> {
        let bad = |field: &'static str, message: String| Err(Error::Setting { field, message });
        let config = model.config();
        if let Some(why) = check_divisible(config, self.tp) {
            return bad("--tp", why);
        }
        if self.slots == 0 || self.max_len == 0 {
            return bad("--slots/--max-len", "must be at least 1".into());
        }
        if self.max_len > config.max_position_embeddings {
            return bad(
                "--max-len",
                format!(
                    "{} exceeds the model's {} positions",
                    self.max_len, config.max_position_embeddings
                ),
            );
        }
        if self.prefill_buckets.is_empty() || self.prefill_buckets.contains(&0) {
            return bad(
                "prefill buckets",
                "need at least one size, none of them 0".into(),
            );
        }
        if self.verify_buckets.is_empty() || self.verify_buckets.contains(&0) {
            return bad(
                "verify buckets",
                "need at least one size, none of them 0".into(),
            );
        }
        if let Some(&w) = self.verify_buckets.iter().find(|&&w| w >= self.max_len) {
            return bad(
                "verify buckets",
                format!(
                    "a pass of {w} tokens does not fit a context of {} positions (it follows at least one cached token): use smaller buckets or a larger maximum length",
                    self.max_len
                ),
            );
        }
        if config.attention_bias || config.mlp_bias {
            return bad(
                "model",
                "projection biases are not supported by the mock kernels yet".into(),
            );
        }
        if self.heads_top_k == 0 {
            return bad("heads top-k", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Compiles `model` (with optional Medusa `heads`) into the artifacts directory `out`, which
/// is replaced atomically: an interrupted compile never leaves a half-written directory.
///
/// # Errors
/// [`Error::Setting`] for options the model does not allow (a tensor-parallel degree that does
/// not divide its heads, say); I/O and format errors naming the file.
pub fn compile(
    model: &ModelDir,
    heads: Option<&MedusaHeads>,
    out: &Path,
    options: &CompileOptions,
    progress: &dyn Progress,
) -> Result<Manifest> {
    options.validate(model)?;
    let config = model.config();
    let tp = options.tp;
    let split_vocab = config.vocab_size.is_multiple_of(tp) && tp > 1;
    let vocab_local = if split_vocab {
        config.vocab_size / tp
    } else {
        config.vocab_size
    };
    let model_shard = ModelShard {
        vocab: config.vocab_size,
        hidden: config.hidden_size,
        intermediate: config.intermediate_size / tp,
        layers: config.num_layers,
        q_heads: config.num_heads / tp,
        kv_heads: config.num_kv_heads / tp,
        head_dim: config.head_dim,
        rope_inv_freq: config.rope_inv_freq(),
        rms_eps: config.rms_norm_eps as f32,
        tied_embeddings: config.tie_word_embeddings,
        vocab_local,
        matrices: options.matrices,
    };
    let cache = KvLayout {
        layers: config.num_layers,
        slots: options.slots,
        kv_heads: config.num_kv_heads / tp,
        max_len: options.max_len,
        head_dim: config.head_dim,
    };
    let mut prefill: Vec<usize> = options
        .prefill_buckets
        .iter()
        .map(|&b| b.min(options.max_len))
        .collect();
    prefill.sort_unstable();
    prefill.dedup();
    let mut verify: Vec<usize> = options
        .verify_buckets
        .iter()
        .map(|&b| b.min(options.max_len))
        .collect();
    verify.sort_unstable();
    verify.dedup();
    let max_verify = *verify.last().unwrap_or(&1);

    // One NEFF per graph serves every rank, as on a device: the rank (given at load) picks
    // its slice of the LM head; everything else rank-specific is in the weight shards.
    let mut graphs: Vec<(GraphEntry, Vec<u8>)> = Vec::new();
    let forward = |role, width, batch, outputs_at, tree_mask| -> Result<(GraphEntry, Vec<u8>)> {
        let params = ForwardParams {
            model: model_shard.clone(),
            cache,
            batch,
            width,
            outputs_at,
            tree_mask,
        };
        Ok((entry(role, width, batch), forward_neff(&params)?))
    };
    for &width in &prefill {
        graphs.push(forward(Role::Prefill, width, 1, OutputsAt::Last, false)?);
    }
    for &width in &verify {
        let role = if width == 1 {
            Role::Decode
        } else {
            Role::Verify
        };
        graphs.push(forward(
            role,
            width,
            options.slots,
            OutputsAt::All,
            width > 1,
        )?);
    }
    let commit = CommitParams {
        cache,
        batch: options.slots,
        width: max_verify,
    };
    graphs.push((
        entry(Role::KvCommit, max_verify, options.slots),
        neff(KV_COMMIT_KERNEL, &commit.io(), &commit)?,
    ));
    // The answers the heads were trained on, copied into the artifacts for answer lookup.
    let answers = match heads {
        Some(h) => h.answers(config.vocab_size)?,
        None => None,
    };
    let heads_entry = match heads {
        None => None,
        Some(h) => {
            let vocab = h.vocab().map(<[u32]>::to_vec).unwrap_or_default();
            if let Some(&id) = vocab.last().filter(|&&id| id as usize >= config.vocab_size) {
                return Err(Error::Artifacts {
                    path: h.path().to_path_buf(),
                    message: format!(
                        "the heads vocabulary has token {id}, the model has {} tokens",
                        config.vocab_size
                    ),
                });
            }
            let scored = if vocab.is_empty() {
                vocab_local
            } else {
                vocab.len()
            };
            let top_k = options.heads_top_k.min(scored);
            let tree = options
                .medusa_tree
                .clone()
                .or_else(|| h.tree().cloned())
                .unwrap_or_else(|| MedusaTree::default_for(h.count()));
            if tree.depth() > h.count() || tree.top_k_per_head().iter().any(|&k| k > top_k) {
                return Err(Error::Setting {
                    field: "medusa tree",
                    message: format!(
                        "needs {} heads and top-{} candidates; the heads give {} and {top_k}",
                        tree.depth(),
                        tree.top_k_per_head().iter().max().unwrap_or(&0),
                        h.count()
                    ),
                });
            }
            // Only the heads the tree uses: heads that take the path run one after the other,
            // so each extra head is one more pass over the LM head's rows.
            let used = tree.depth();
            let params = HeadsParams {
                model: model_shard.clone(),
                heads: used,
                top_k,
                batch: options.slots,
                // The vocabulary's rows and the heads' matrices are stored in f16 (see
                // `write_weights`).
                half_lm_head: !vocab.is_empty(),
                half_matrices: true,
                vocab,
                takes_next: h.conditioning().takes_next(),
                takes_path: h.conditioning().takes_path(),
            };
            graphs.push((
                entry(Role::Heads, 0, options.slots),
                neff(HEADS_KERNEL, &params.io(), &params)?,
            ));
            Some(HeadsEntry {
                count: used,
                top_k,
                tree: tree.paths().to_vec(),
                takes_next: h.conditioning().takes_next(),
                takes_path: h.conditioning().takes_path(),
                answers: answers.as_ref().map(|_| ANSWERS_FILE.to_string()),
            })
        }
    };

    let mut manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        target: "mock".into(),
        model: ModelEntry {
            name: model
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            config: config.to_hf_json(),
            parameters: config.parameter_count(),
        },
        tp,
        slots: options.slots,
        max_len: options.max_len,
        matrices: options.matrices,
        graphs: Vec::new(),
        weights: (0..tp)
            .map(|r| format!("weights/rank{r}.safetensors"))
            .collect(),
        heads: heads_entry,
        text_files: Vec::new(),
    };

    crate::loading::cache::build_atomically(out, |dir| {
        let graphs_dir = dir.join("graphs");
        std::fs::create_dir_all(&graphs_dir)
            .map_err(|e| Error::io(&graphs_dir, "create directory", e))?;
        for (mut entry, bytes) in graphs {
            entry.path = if entry.role == Role::Heads {
                "graphs/heads.neff".to_string()
            } else {
                format!("graphs/{}-{}.neff", entry.role.name(), entry.width)
            };
            let path = dir.join(&entry.path);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, "write", e))?;
            manifest.graphs.push(entry);
        }
        if let Some(answers) = &answers {
            write_answers(&dir.join(ANSWERS_FILE), answers)?;
        }
        let heads_used = manifest.heads.as_ref().map_or(0, |h| h.count);
        write_weights(
            model,
            heads.map(|h| (h, heads_used)),
            dir,
            options,
            split_vocab,
            progress,
        )?;
        for file in copy_text_files(model.path(), dir)? {
            manifest.text_files.push(file);
        }
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Setting {
            field: "manifest",
            message: e.to_string(),
        })?;
        let path = dir.join(MANIFEST_FILE);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, "write", e))
    })?;
    Ok(manifest)
}

fn entry(role: Role, width: usize, batch: usize) -> GraphEntry {
    GraphEntry {
        role,
        width,
        batch,
        path: String::new(),
    }
}

fn forward_neff(params: &ForwardParams) -> Result<Vec<u8>> {
    params.validate().map_err(|message| Error::Setting {
        field: "graph",
        message,
    })?;
    neff(FORWARD_KERNEL, &params.io(), params)
}

fn neff(kernel: &str, io: &[TensorSpec], params: &impl serde::Serialize) -> Result<Vec<u8>> {
    let params = serde_json::to_value(params).map_err(|e| Error::Setting {
        field: "graph",
        message: e.to_string(),
    })?;
    let mut neff = MockNeff::new(kernel).params(params);
    for t in io {
        neff = neff.tensor(t.name.clone(), t.dtype, &t.shape, t.usage);
    }
    neff.to_bytes().map_err(|e| Error::Setting {
        field: "graph",
        message: e.to_string(),
    })
}

/// Writes each rank's shard: the model's weights split for tensor parallelism, plus the
/// weights of the heads used (the first ones; replicated) when there are heads. Matrices are
/// stored in the layout the mock graphs take ([`stored_weight_shape`]), as a device compiler
/// lays weights out for its program.
fn write_weights(
    model: &ModelDir,
    heads: Option<(&MedusaHeads, usize)>,
    dir: &Path,
    options: &CompileOptions,
    split_vocab: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let tp = options.tp;
    let matrices = options.matrices;
    let weights_dir = dir.join("weights");
    std::fs::create_dir_all(&weights_dir)
        .map_err(|e| Error::io(&weights_dir, "create directory", e))?;
    let config = model.config();
    let mut tensors = config.expected_tensors();
    if config.tie_word_embeddings && matrices == MatrixDtype::Bf16 {
        // The graphs stream a bf16 copy of the embedding as their LM head.
        tensors.push((
            LM_HEAD.to_string(),
            vec![config.vocab_size, config.hidden_size],
        ));
    }
    let (heads, head_count) = match heads {
        Some((file, used)) => (Some(file), used),
        None => (None, 0),
    };
    let d = config.hidden_size;
    // Each head's parts and shapes: `weight`, `bias`, then the matrices of the tokens it takes.
    let head_parts = |h: usize| heads.map_or_else(Vec::new, |f| f.conditioning().head_parts(h, d));
    let head_tensors: usize = (0..head_count).map(|h| head_parts(h).len()).sum();
    let total = (tensors.len() + head_tensors) as u64 * tp as u64;
    let step = progress.start("writing weight shards", Some(total), Unit::Items);
    for rank in 0..tp {
        let mut plan: Vec<(String, Vec<usize>)> = tensors
            .iter()
            .map(|(name, shape)| {
                let split = split_of(name, split_vocab);
                let mut s = shape.clone();
                match split {
                    Split::Replicated => {}
                    Split::Rows => s[0] /= tp,
                    Split::Columns => s[1] /= tp,
                }
                (name.clone(), s)
            })
            .collect();
        for h in 0..head_count {
            for (part, shape) in head_parts(h) {
                plan.push((head_tensor(h, &part), shape));
            }
        }
        let heads_vocab = heads.and_then(MedusaHeads::vocab);
        if let Some(vocab) = heads_vocab {
            plan.push((HEADS_LM_HEAD.to_string(), vec![vocab.len(), d]));
        }
        // bf16 matrices are passed on as the f32 values of their bf16 pair panels: the
        // writer's rounding to bf16 then keeps them exactly.
        let stored = |name: &str, data: &[f32], shape: &[usize]| -> Vec<f32> {
            match *shape {
                [rows, cols] if matrices == MatrixDtype::Bf16 && is_model_matrix(name) => {
                    pack_bf16_pairs(data, rows, cols)
                        .into_iter()
                        .map(amx_bf16::from_bf16)
                        .collect()
                }
                [rows, cols] if is_packed_weight(name) => pack(data, rows, cols),
                _ => data.to_vec(),
            }
        };
        // Everything in f32 but what only the heads read: the heads vocabulary's LM-head rows
        // and the heads' own [d, d] matrices. The heads stream them once per head and step and
        // only rank candidates with them (the model verifies), so they are stored in f16, half
        // the bytes (heads files written by `train-heads` hold their matrices in f16 already,
        // so by default nothing is rounded).
        let plan: Vec<(String, Vec<usize>, Dtype)> = plan
            .into_iter()
            .map(|(name, shape)| {
                let (device_dtype, s) = stored_weight(&name, &shape, matrices);
                let heads_matrix = name.starts_with("medusa.") && shape.len() == 2;
                let dtype = match (heads_matrix, device_dtype) {
                    (true, _) => Dtype::F16,
                    (false, neuron_rt::DType::BF16) => Dtype::BF16,
                    (false, _) => Dtype::F32,
                };
                (name, s, dtype)
            })
            .collect();
        let path = weights_dir.join(format!("rank{rank}.safetensors"));
        let mut meta = BTreeMap::new();
        meta.insert("rank".to_string(), rank.to_string());
        meta.insert("tp".to_string(), tp.to_string());
        let mut writer = SafetensorsWriter::create_mixed(&path, plan, &meta)?;
        for (name, shape) in &tensors {
            let source = match name.as_str() {
                LM_HEAD => config.lm_head_tensor(),
                other => other,
            };
            let full = model.weights().f32(source, shape)?;
            let (data, shard_shape) =
                shard(&full.data, shape, split_of(name, split_vocab), rank, tp);
            writer.write_next(name, &stored(name, &data, &shard_shape))?;
            step.advance(1);
        }
        if let Some(heads) = heads {
            for h in 0..head_count {
                let t = heads.head(h)?;
                let name = head_tensor(h, "weight");
                writer.write_next(&name, &stored(&name, &t.weight, &[d, d]))?;
                writer.write_next(&head_tensor(h, "bias"), &t.bias)?;
                let token_parts = heads.conditioning().token_parts(h);
                for (part, m) in token_parts.iter().zip(&t.token_weights) {
                    let name = head_tensor(h, part);
                    writer.write_next(&name, &stored(&name, m, &[d, d]))?;
                }
                step.advance(2 + token_parts.len() as u64);
            }
        }
        if let Some(vocab) = heads_vocab {
            // The LM head's rows of the heads' vocabulary, whole on every rank.
            let full = model
                .weights()
                .f32(config.lm_head_tensor(), &[config.vocab_size, d])?;
            let rows: Vec<f32> = vocab
                .iter()
                .flat_map(|&id| &full.data[id as usize * d..(id as usize + 1) * d])
                .copied()
                .collect();
            let shape = [vocab.len(), d];
            writer.write_next(HEADS_LM_HEAD, &stored(HEADS_LM_HEAD, &rows, &shape))?;
        }
        writer.finish()?;
    }
    Ok(())
}

/// Copies the tokenizer and its companion files; returns their names.
fn copy_text_files(model_dir: &Path, dir: &Path) -> Result<Vec<String>> {
    use crate::loading::model_dir::{
        CHAT_TEMPLATE_FILE, CONFIG_FILE, GENERATION_CONFIG_FILE, TOKENIZER_CONFIG_FILE,
        TOKENIZER_FILE,
    };
    let mut copied = Vec::new();
    for name in [
        CONFIG_FILE,
        TOKENIZER_FILE,
        TOKENIZER_CONFIG_FILE,
        GENERATION_CONFIG_FILE,
        CHAT_TEMPLATE_FILE,
    ] {
        let src = model_dir.join(name);
        if src.is_file() {
            let dst = dir.join(name);
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, "copy", e))?;
            copied.push(name.to_string());
        }
    }
    Ok(copied)
}

/// Compiles `model` into the artifacts cache under `home` unless an up-to-date compilation is
/// there already; returns its directory.
///
/// The cache key covers what the artifacts depend on: the model's configuration and weight
/// files (names, sizes, modification times), the heads file's contents, the options, and
/// the artifacts format version, so a changed model or option compiles anew.
///
/// # Errors
/// As [`compile`], and I/O errors reading the model's files.
pub fn cached_compile(
    model: &ModelDir,
    heads: Option<&MedusaHeads>,
    home: &Path,
    options: &CompileOptions,
    progress: &dyn Progress,
) -> Result<std::path::PathBuf> {
    use sha2::{Digest, Sha256};
    let mut key = Sha256::new();
    key.update(format!(
        "{FORMAT} {FORMAT_VERSION} {} {options:?}",
        env!("CARGO_PKG_VERSION")
    ));
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(model.path())
        .map_err(|e| Error::io(model.path(), "read directory", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for path in &files {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "read metadata", e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        key.update(format!(
            "{} {} {}\n",
            path.display(),
            meta.len(),
            modified.as_nanos()
        ));
    }
    if let Some(h) = heads {
        let bytes = std::fs::read(h.path()).map_err(|e| Error::io(h.path(), "read", e))?;
        key.update(&bytes);
    }
    let digest: String = key
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = model
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let dir = home
        .join("artifacts")
        .join(format!("{name}-tp{}-{digest}", options.tp));
    if Manifest::load(&dir).is_ok() {
        return Ok(dir);
    }
    compile(model, heads, &dir, options, progress)?;
    Ok(dir)
}
