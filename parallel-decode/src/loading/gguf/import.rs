//! GGUF to Hugging Face directory: dequantized weights in safetensors plus the JSON files, so
//! that every model is afterwards opened the same way ([`crate::loading::ModelDir`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value as Json;

use super::llama::{llama_config, map_tensor_name, unpermute_rows};
use super::reader::{GgufFile, TensorInfo};
use super::vocab::tokenizer_from_gguf;
use crate::error::{Error, Result};
use crate::loading::config::LlamaConfig;
use crate::loading::dtype::Dtype;
use crate::loading::progress::{Progress, Unit};
use crate::loading::safetensors::SafetensorsWriter;
use crate::loading::weights::WEIGHTS_FILE;

/// Files an import writes.
pub const IMPORTED_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    WEIGHTS_FILE,
];

/// How to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Element type of the written weights: [`Dtype::F32`] (exact: every GGUF type this crate
    /// reads dequantizes exactly into f32) or [`Dtype::BF16`] / [`Dtype::F16`] (half the size,
    /// rounded).
    pub dtype: Dtype,
    /// Replace model files already in the output directory.
    pub overwrite: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            dtype: Dtype::F32,
            overwrite: false,
        }
    }
}

/// What an import produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// The model's configuration.
    pub config: LlamaConfig,
    /// Number of tensors written.
    pub tensors: usize,
    /// Bytes of tensor data written.
    pub bytes: u64,
}

/// Imports the Llama model in `file` into `out_dir` (created if missing).
///
/// # Errors
///
/// [`Error::GgufUnsupported`] or [`Error::Config`] if the model cannot be represented (see
/// [`llama_config`]), [`Error::ShapeMismatch`] / [`Error::MissingTensor`] if its tensors do not
/// match its metadata, [`Error::Tokenizer`] for an unusable vocabulary, [`Error::Io`] if
/// `out_dir` already holds a model (without `overwrite`) or writing fails.
pub fn import_gguf(
    file: &GgufFile,
    out_dir: &Path,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportSummary> {
    let config = llama_config(file)?;
    let tokenizer = tokenizer_from_gguf(file)?;
    if tokenizer.tokens.len() > config.vocab_size {
        return Err(Error::Tokenizer {
            path: file.path().to_path_buf(),
            message: format!(
                "the vocabulary has {} tokens but the model only {} embedding rows",
                tokenizer.tokens.len(),
                config.vocab_size
            ),
        });
    }
    let plan = plan_tensors(file, &config)?;

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, "create directory", e))?;
    if !options.overwrite
        && let Some(existing) = IMPORTED_FILES
            .iter()
            .map(|f| out_dir.join(f))
            .find(|p| p.exists())
    {
        return Err(Error::io(
            existing,
            "import",
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a model is already there (choose another directory or overwrite)",
            ),
        ));
    }

    let bytes = write_weights(file, &plan, out_dir, options.dtype, progress)?;
    write_json(&out_dir.join("config.json"), &config.to_hf_json())?;
    write_json(&out_dir.join("tokenizer.json"), &tokenizer.tokenizer_json)?;
    write_json(
        &out_dir.join("tokenizer_config.json"),
        &tokenizer.tokenizer_config_json(config.max_position_embeddings),
    )?;
    write_json(
        &out_dir.join("generation_config.json"),
        &tokenizer.generation_config_json(),
    )?;
    Ok(ImportSummary {
        config,
        tensors: plan.len(),
        bytes,
    })
}

/// One tensor to write: its Hugging Face name and shape, where it is in the GGUF, and whether
/// its rows must be un-permuted.
struct Planned<'a> {
    hf_name: String,
    shape: Vec<usize>,
    info: &'a TensorInfo,
    permuted_heads: Option<usize>,
}

/// Matches the GGUF tensors to the parameters `config` implies, in Hugging Face order,
/// refusing unknown, missing or misshapen tensors.
fn plan_tensors<'a>(file: &'a GgufFile, config: &LlamaConfig) -> Result<Vec<Planned<'a>>> {
    let mut by_hf: HashMap<String, (&TensorInfo, Option<usize>)> = HashMap::new();
    for info in file.tensors() {
        let mapping =
            map_tensor_name(&info.name, config).ok_or_else(|| Error::GgufUnsupported {
                path: file.path().to_path_buf(),
                feature: format!("tensor `{}` (not part of a Llama model)", info.name),
            })?;
        by_hf.insert(mapping.hf_name, (info, mapping.permuted_heads));
    }
    let mut plan = Vec::new();
    for (hf_name, shape) in config.expected_tensors() {
        let Some((info, permuted_heads)) = by_hf.remove(&hf_name) else {
            return Err(Error::MissingTensor {
                path: file.path().to_path_buf(),
                tensor: format!("{hf_name} (GGUF tensor for it)"),
            });
        };
        if info.shape() != shape {
            return Err(Error::ShapeMismatch {
                path: file.path().to_path_buf(),
                tensor: info.name.clone(),
                expected: shape,
                actual: info.shape(),
            });
        }
        plan.push(Planned {
            hf_name,
            shape,
            info,
            permuted_heads,
        });
    }
    if let Some((hf, (info, _))) = by_hf.into_iter().next() {
        return Err(Error::GgufUnsupported {
            path: file.path().to_path_buf(),
            feature: format!(
                "tensor `{}` ({hf}), which the model's metadata does not account for",
                info.name
            ),
        });
    }
    Ok(plan)
}

fn write_weights(
    file: &GgufFile,
    plan: &[Planned<'_>],
    out_dir: &Path,
    dtype: Dtype,
    progress: &dyn Progress,
) -> Result<u64> {
    let path = out_dir.join(WEIGHTS_FILE);
    let metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("source".to_string(), "gguf".to_string()),
        (
            "source_file".to_string(),
            file.path()
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    ]);
    let layout = plan
        .iter()
        .map(|p| (p.hf_name.clone(), p.shape.clone()))
        .collect();
    let mut writer = SafetensorsWriter::create(&path, dtype, layout, &metadata)?;
    let total: u64 = plan
        .iter()
        .map(|p| p.info.elements() * dtype.size() as u64)
        .sum();
    let step = progress.start("importing weights", Some(total), Unit::Bytes);
    for p in plan {
        let mut data = file.tensor_f32(p.info)?;
        if let Some(heads) = p.permuted_heads {
            let cols = if p.shape.len() == 2 { p.shape[1] } else { 1 };
            data = unpermute_rows(&data, heads, cols).ok_or_else(|| Error::ShapeMismatch {
                path: file.path().to_path_buf(),
                tensor: format!(
                    "{} (rows must split into {heads} heads of an even size)",
                    p.info.name
                ),
                expected: p.shape.clone(),
                actual: p.info.shape(),
            })?;
        }
        writer.write_next(&p.hf_name, &data)?;
        step.advance(data.len() as u64 * dtype.size() as u64);
    }
    writer.finish()?;
    Ok(total)
}

fn write_json(path: &Path, value: &Json) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, "write", e))
}
