//! Self-distilled training data: the base model's own greedy answers to a prompt set, with the
//! final hidden state at every position of each answer.
//!
//! Heads must learn what the model *will* say, not what some corpus says, so the targets are
//! the model's greedy continuation. The hidden states come for free while generating: every
//! decode pass returns the final hidden state (after the final norm) of the token it ran, which
//! is exactly the `x` a head sees at serving time. Sequences are decoded as a batch, one row
//! per KV slot, refilling a slot as soon as its answer ends, so the model's weights stream once
//! per step for all rows.
//!
//! For a sequence with answer tokens `a[0..n]`, state `j` is the hidden state of the token
//! before `a[j]` (the last prompt token for `j = 0`): the base model predicts `a[j]` from it
//! and head `h` is trained to predict `a[j + h + 1]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{LanguageModel, TreeRow};
use crate::error::{Error, Result};
use crate::loading::dtype::decode_f32;
use crate::loading::safetensors::{SafetensorsFile, SafetensorsWriter};
use crate::loading::{Dtype, Progress, Unit};
use crate::strategy::tree::TokenTree;

/// One prompt's greedy answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistilledSequence {
    /// Index of the prompt in the prompt set.
    pub prompt: usize,
    /// The answer's tokens (the stop token included when one ended it).
    pub tokens: Vec<u32>,
    /// Index of this sequence's first hidden state in [`Dataset::states`]; it has one state
    /// per answer token.
    pub first_state: usize,
}

/// Hidden states and the tokens that followed them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Width of a hidden state.
    pub hidden: usize,
    /// All hidden states, `[states, hidden]` row-major.
    pub states: Vec<f32>,
    /// The sequences, in prompt order.
    pub sequences: Vec<DistilledSequence>,
}

/// How answers are generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistillOptions {
    /// Most tokens per answer.
    pub max_new_tokens: usize,
    /// Tokens that end an answer (kept as its last token).
    pub stop_tokens: Vec<u32>,
}

const STATES_FILE: &str = "states.safetensors";
const SEQUENCES_FILE: &str = "sequences.json";

#[derive(Serialize, Deserialize)]
struct SequencesFile {
    hidden: usize,
    states: usize,
    sequences: Vec<DistilledSequence>,
}

impl Dataset {
    /// Number of hidden states.
    pub fn len(&self) -> usize {
        self.states.len() / self.hidden.max(1)
    }

    /// Whether there are no states.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Hidden state `i`.
    pub fn state(&self, i: usize) -> &[f32] {
        &self.states[i * self.hidden..(i + 1) * self.hidden]
    }

    /// Writes the dataset into the directory `dir` (created if needed).
    ///
    /// # Errors
    /// [`Error::Io`] when the files cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
        let path = dir.join(STATES_FILE);
        let mut w = SafetensorsWriter::create(
            &path,
            Dtype::F32,
            vec![("states".into(), vec![self.len(), self.hidden])],
            &BTreeMap::new(),
        )?;
        w.write_next("states", &self.states)?;
        w.finish()?;
        let path = dir.join(SEQUENCES_FILE);
        let file = SequencesFile {
            hidden: self.hidden,
            states: self.len(),
            sequences: self.sequences.clone(),
        };
        let text = serde_json::to_string(&file).map_err(|e| Error::Json {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, "write", e))
    }

    /// Reads a dataset written by [`Dataset::save`].
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Json`] or [`Error::Safetensors`] naming the file, when it is
    /// missing, corrupt, or disagrees with the other file.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(SEQUENCES_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, "read", e))?;
        let file: SequencesFile = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let bad = |path: &Path, message: String| Error::Artifacts {
            path: path.to_path_buf(),
            message,
        };
        let mut end = 0;
        for s in &file.sequences {
            if s.first_state != end {
                return Err(bad(
                    &path,
                    format!(
                        "sequence of prompt {} starts at state {}, expected {end}",
                        s.prompt, s.first_state
                    ),
                ));
            }
            end += s.tokens.len();
        }
        if end != file.states || file.hidden == 0 {
            return Err(bad(
                &path,
                format!(
                    "lists {end} states for {} declared, width {}",
                    file.states, file.hidden
                ),
            ));
        }
        let states_path = dir.join(STATES_FILE);
        let st = SafetensorsFile::open(&states_path)?;
        let info = st
            .tensors()
            .get("states")
            .ok_or_else(|| Error::MissingTensor {
                path: states_path.clone(),
                tensor: "states".into(),
            })?;
        if info.shape != [file.states, file.hidden] {
            return Err(Error::ShapeMismatch {
                path: states_path,
                tensor: "states".into(),
                expected: vec![file.states, file.hidden],
                actual: info.shape.clone(),
            });
        }
        let mut states = vec![0.0; file.states * file.hidden];
        if !decode_f32(info.dtype, st.data(info), &mut states) {
            return Err(Error::UnsupportedDtype {
                path: states_path,
                tensor: "states".into(),
                dtype: info.dtype.to_string(),
            });
        }
        Ok(Dataset {
            hidden: file.hidden,
            states,
            sequences: file.sequences,
        })
    }
}

/// A sequence being decoded in one slot.
struct Active {
    prompt: usize,
    slot: usize,
    cache_len: usize,
    tokens: Vec<u32>,
    states: Vec<f32>,
}

impl Active {
    fn done(&self, options: &DistillOptions, max_len: usize) -> bool {
        self.tokens.len() >= options.max_new_tokens
            || self
                .tokens
                .last()
                .is_some_and(|t| options.stop_tokens.contains(t))
            || self.cache_len >= max_len
    }
}

/// Generates the greedy answer to every prompt (token ids, chat template already applied) and
/// records the hidden states, decoding as many prompts at once as the model has slots.
///
/// # Errors
/// [`Error::Setting`] for an empty prompt or one that leaves no room in a slot; whatever the
/// model returns.
pub fn distill(
    model: &mut dyn LanguageModel,
    prompts: &[Vec<u32>],
    options: &DistillOptions,
    progress: &dyn Progress,
) -> Result<Dataset> {
    let info = model.info().clone();
    let rows = info.slots.min(info.max_batch).max(1);
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() || p.len() >= info.max_len {
            return Err(Error::Setting {
                field: "prompt",
                message: format!(
                    "prompt {i} has {} tokens; the model takes 1 to {}",
                    p.len(),
                    info.max_len - 1
                ),
            });
        }
    }
    let step = progress.start(
        "generating answers (self-distillation)",
        Some(prompts.len() as u64),
        Unit::Items,
    );
    let mut finished: Vec<Active> = Vec::with_capacity(prompts.len());
    let mut active: Vec<Active> = Vec::with_capacity(rows);
    let mut next_prompt = 0;
    let mut hidden = Vec::with_capacity(info.hidden);
    loop {
        // Fill free slots with new prompts.
        while active.len() < rows && next_prompt < prompts.len() {
            let slot = (0..rows)
                .find(|s| active.iter().all(|a| a.slot != *s))
                .unwrap_or(0);
            let prompt = &prompts[next_prompt];
            let first = model.prefill(slot, prompt)?;
            model.hidden(0, 0, &mut hidden)?;
            let seq = Active {
                prompt: next_prompt,
                slot,
                cache_len: prompt.len(),
                tokens: vec![first],
                states: hidden.clone(),
            };
            next_prompt += 1;
            if seq.done(options, info.max_len) {
                finished.push(seq);
                step.advance(1);
            } else {
                active.push(seq);
            }
        }
        if active.is_empty() {
            break;
        }
        let trees: Vec<TokenTree> = active
            .iter()
            .map(|a| TokenTree::new(*a.tokens.last().unwrap_or(&0)))
            .collect();
        let tree_rows: Vec<TreeRow<'_>> = active
            .iter()
            .zip(&trees)
            .map(|(a, tree)| TreeRow {
                slot: a.slot,
                cache_len: a.cache_len,
                tree,
            })
            .collect();
        let next = model.verify(&tree_rows)?;
        for (row, a) in active.iter_mut().enumerate() {
            model.hidden(row, 0, &mut hidden)?;
            a.states.extend_from_slice(&hidden);
            a.cache_len += 1;
            let token = next
                .get(row)
                .and_then(|n| n.first())
                .copied()
                .ok_or_else(|| Error::Setting {
                    field: "outputs",
                    message: format!("the model returned no token for row {row}"),
                })?;
            a.tokens.push(token);
        }
        let mut i = 0;
        while i < active.len() {
            if active[i].done(options, info.max_len) {
                finished.push(active.swap_remove(i));
                step.advance(1);
            } else {
                i += 1;
            }
        }
    }
    drop(step);
    finished.sort_by_key(|a| a.prompt);
    let mut dataset = Dataset {
        hidden: info.hidden,
        states: Vec::new(),
        sequences: Vec::with_capacity(finished.len()),
    };
    for a in finished {
        // One state per answer token: the state after the last token is never used (nothing
        // follows it), and generation recorded exactly one state before each token.
        let first_state = dataset.len();
        dataset
            .states
            .extend_from_slice(&a.states[..a.tokens.len() * info.hidden]);
        dataset.sequences.push(DistilledSequence {
            prompt: a.prompt,
            tokens: a.tokens,
            first_state,
        });
    }
    Ok(dataset)
}

/// The dataset cached at `dir`, or one made by `make` and cached there (atomically: an
/// interrupted run leaves no half-written cache entry).
///
/// # Errors
/// Whatever `make` returns, or an I/O error writing the cache.
pub fn cached(dir: &Path, make: impl FnOnce() -> Result<Dataset>) -> Result<(Dataset, bool)> {
    if dir.join(SEQUENCES_FILE).is_file() {
        match Dataset::load(dir) {
            Ok(d) => return Ok((d, true)),
            Err(e) => tracing::warn!("ignoring the cached training data: {e}"),
        }
    }
    let dataset = make()?;
    crate::loading::cache::build_atomically(dir, |tmp| dataset.save(tmp))?;
    Ok((dataset, false))
}

/// Prompts per cache entry in [`cached_in_chunks`] (about a minute of distilling for the
/// default model on two cores with the mock's bf16 matrices).
pub const CHUNK_PROMPTS: usize = 256;

/// The dataset for `prompts`, cached under `home` in chunks of `chunk` prompts: chunks already
/// in the cache are read, the others made by `make` (given the chunk's prompts) and cached.
/// `device` describes what computes the answers (see [`cache_dir`]).
/// Since a prompt's answer does not depend on the prompts decoded beside it, adding prompts
/// at the end of a set makes only the new chunks (and the last partial one), and the result
/// is the dataset distilling the whole set at once would give. Returns the dataset and how
/// many of its prompts were read from the cache.
///
/// # Errors
/// Whatever `make` returns, an I/O error writing the cache, or [`Error::Setting`] for chunks
/// of different widths.
pub fn cached_in_chunks(
    home: &Path,
    model: &Path,
    device: &str,
    prompts: &[Vec<u32>],
    options: &DistillOptions,
    chunk: usize,
    mut make: impl FnMut(&[Vec<u32>]) -> Result<Dataset>,
) -> Result<(Dataset, usize)> {
    let chunk = chunk.max(1);
    let mut all: Option<Dataset> = None;
    let mut read = 0;
    for (c, prompts) in prompts.chunks(chunk).enumerate() {
        let dir = cache_dir(home, model, device, prompts, options);
        let (part, was_cached) = cached(&dir, || make(prompts))?;
        if was_cached {
            read += prompts.len();
        }
        let Some(all) = &mut all else {
            all = Some(part);
            continue;
        };
        if part.hidden != all.hidden {
            return Err(Error::Setting {
                field: "training data",
                message: format!(
                    "{} holds hidden states of width {}, the chunks before it {}",
                    dir.display(),
                    part.hidden,
                    all.hidden
                ),
            });
        }
        let offset = all.len();
        all.states.extend_from_slice(&part.states);
        all.sequences
            .extend(part.sequences.into_iter().map(|s| DistilledSequence {
                prompt: s.prompt + c * chunk,
                first_state: s.first_state + offset,
                ..s
            }));
    }
    let empty = || Dataset {
        hidden: 0,
        states: Vec::new(),
        sequences: Vec::new(),
    };
    Ok((all.unwrap_or_else(empty), read))
}

/// Where the training data for a model, prompt set and options is cached: a directory under
/// `home` named by a hash of everything the data depends on.
///
/// `device` describes what computes the answers, as the runtime reports itself (its version
/// and detail string; the mock's names the arithmetic of its weight products): the answers and
/// hidden states of one model differ between devices that round differently, and data from one
/// must not be taken for the other's. An empty `device` leaves it out of the hash (the key
/// caches had before devices were told apart).
pub fn cache_dir(
    home: &Path,
    model: &Path,
    device: &str,
    prompts: &[Vec<u32>],
    options: &DistillOptions,
) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(model.as_os_str().as_encoded_bytes());
    for source in ["config.json", crate::loading::default_model::SOURCE_FILE] {
        if let Ok(bytes) = std::fs::read(model.join(source)) {
            h.update(&bytes);
        }
    }
    if !device.is_empty() {
        h.update(b"device\0");
        h.update(device.as_bytes());
        h.update(b"\0");
    }
    for p in prompts {
        h.update((p.len() as u64).to_le_bytes());
        for t in p {
            h.update(t.to_le_bytes());
        }
    }
    h.update((options.max_new_tokens as u64).to_le_bytes());
    for t in &options.stop_tokens {
        h.update(t.to_le_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    home.join("medusa-data").join(hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::toy::{ToyConfig, ToyModel};
    use crate::engine::{GenerateConfig, generate};
    use crate::loading::NoProgress;
    use crate::strategy::proposer::Autoregressive;

    #[test]
    fn answers_equal_plain_greedy_decoding_and_round_trip() {
        let mut m = ToyModel::new(ToyConfig::default());
        let prompts: Vec<Vec<u32>> = (0..7).map(|i| vec![1 + i, 2, 3 + 2 * i]).collect();
        let options = DistillOptions {
            max_new_tokens: 12,
            stop_tokens: vec![],
        };
        let d = distill(&mut m, &prompts, &options, &NoProgress).unwrap();
        assert_eq!(d.sequences.len(), 7);
        for (i, s) in d.sequences.iter().enumerate() {
            assert_eq!(s.prompt, i);
            let g = generate(
                &mut m,
                &mut Autoregressive,
                &prompts[i],
                &GenerateConfig {
                    max_tokens: 12,
                    ..GenerateConfig::default()
                },
                &mut |_: &[u32]| true,
            )
            .unwrap();
            assert_eq!(s.tokens, g.tokens);
        }
        assert_eq!(d.len(), 7 * 12);
        let dir = tempfile::tempdir().unwrap();
        d.save(dir.path()).unwrap();
        assert_eq!(Dataset::load(dir.path()).unwrap(), d);
        // A corrupt index is an error naming the file.
        std::fs::write(dir.path().join(SEQUENCES_FILE), "{}").unwrap();
        let err = Dataset::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(SEQUENCES_FILE), "{err}");
    }

    #[test]
    fn the_cache_key_tells_devices_apart_and_keeps_the_old_key_without_one() {
        let home = Path::new("/home");
        let model = Path::new("toy");
        let prompts = vec![vec![1, 2, 3]];
        let options = DistillOptions {
            max_new_tokens: 6,
            stop_tokens: vec![2],
        };
        let key = |device: &str| cache_dir(home, model, device, &prompts, &options);
        // Without a device, the key caches had before devices were told apart (the first 8
        // bytes of SHA-256 over "toy", the prompt's length and tokens, 6 and 2, little-endian,
        // computed with Python's hashlib).
        assert_eq!(key(""), home.join("medusa-data").join("7a0e0db25294f412"));
        let f32 = key("libnrt 2.30.0.0: neuron-mock (weight products in f32)");
        let bf16 = key("libnrt 2.30.0.0: neuron-mock (weight products in bf16)");
        assert_ne!(f32, bf16);
        assert_ne!(f32, key(""));
        assert_eq!(
            f32,
            key("libnrt 2.30.0.0: neuron-mock (weight products in f32)")
        );
    }

    #[test]
    fn chunks_are_cached_apart_and_added_prompts_make_only_new_chunks() {
        let mut m = ToyModel::new(ToyConfig::default());
        let prompts: Vec<Vec<u32>> = (0..9).map(|i| vec![2 + i, 5, 1 + 3 * i]).collect();
        let options = DistillOptions {
            max_new_tokens: 6,
            stop_tokens: vec![],
        };
        let whole = distill(&mut m, &prompts, &options, &NoProgress).unwrap();
        let home = tempfile::tempdir().unwrap();
        let model = Path::new("toy");
        let mut made = Vec::new();
        let run = |m: &mut ToyModel, prompts: &[Vec<u32>], made: &mut Vec<usize>| {
            cached_in_chunks(home.path(), model, "toy", prompts, &options, 3, |chunk| {
                made.push(chunk.len());
                distill(m, chunk, &options, &NoProgress)
            })
            .unwrap()
        };
        // Seven prompts: chunks of 3, 3 and 1, all made; the same data as all at once.
        let (first, read) = run(&mut m, &prompts[..7], &mut made);
        assert_eq!((made.as_slice(), read), (&[3, 3, 1][..], 0));
        let expected = Dataset {
            hidden: whole.hidden,
            states: whole.states[..whole.sequences[7].first_state * whole.hidden].to_vec(),
            sequences: whole.sequences[..7].to_vec(),
        };
        assert_eq!(first, expected);
        // Two more: the first two chunks are read, the last one (now full) is made again.
        made.clear();
        let (second, read) = run(&mut m, &prompts, &mut made);
        assert_eq!((made.as_slice(), read), (&[3][..], 6));
        assert_eq!(second, whole);
        // Everything cached now.
        made.clear();
        assert_eq!(run(&mut m, &prompts, &mut made).1, 9);
        assert!(made.is_empty());
    }
}
