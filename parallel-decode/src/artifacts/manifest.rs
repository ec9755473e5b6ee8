//! `manifest.json`: what an artifacts directory holds, validated on load.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use neuron_mock::kernels::llama::graph::MatrixDtype;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The manifest's file name inside an artifacts directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The value of the manifest's `format` field.
pub const FORMAT: &str = "neuron-decode-artifacts";
/// The manifest format version this crate writes and reads. 2: the weight shards hold the
/// matrices in the mock kernels' panel layout (version 1 held them row-major). 3: the heads
/// graph returns its candidates' log-probabilities (`head_logprobs`, was `head_logits`). 4: the
/// heads graph may take the rows' next tokens (`next_ids`; the heads entry's `takes_next`). 5:
/// heads may take the path (the heads entry's `takes_path`, the heads' `path.{i}` matrices).
/// 6: the heads vocabulary's LM-head rows are stored in f16 (the heads graph's
/// `half_lm_head`). 7: so are the heads' `[hidden, hidden]` matrices (`half_matrices`). 8: the
/// heads entry may name a file of the answers the heads were trained on (`answers`).
pub const FORMAT_VERSION: u32 = 8;

/// What a graph computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A prompt chunk of up to `width` tokens into one slot; outputs at its last token.
    Prefill,
    /// One token per row (a tree of one node), outputs for it.
    Decode,
    /// A tree of up to `width` tokens per row under an ancestor mask; outputs at every node.
    Verify,
    /// Moves accepted tree tokens to contiguous cache positions.
    KvCommit,
    /// Medusa heads: top candidates per head from a hidden state.
    Heads,
}

impl Role {
    /// The name used in the manifest and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Role::Prefill => "prefill",
            Role::Decode => "decode",
            Role::Verify => "verify",
            Role::KvCommit => "kv_commit",
            Role::Heads => "heads",
        }
    }
}

/// One compiled graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEntry {
    /// What it computes.
    pub role: Role,
    /// New tokens per row (the bucket), or accepted tokens per row for `kv_commit`; 0 for
    /// `heads`.
    pub width: usize,
    /// Rows per pass.
    pub batch: usize,
    /// The NEFF, relative to the artifacts directory.
    pub path: String,
}

/// Medusa heads compiled into the artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadsEntry {
    /// Number of heads.
    pub count: usize,
    /// Candidates the heads graph returns per head.
    pub top_k: usize,
    /// The candidate tree to verify, as paths of candidate ranks (see
    /// [`crate::strategy::medusa::MedusaTree`]).
    pub tree: Vec<Vec<usize>>,
    /// Whether the heads graph takes each row's next token (`next_ids`) besides its hidden
    /// state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_next: bool,
    /// Whether each head takes the best candidates of the heads before it (they run one
    /// after the other).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_path: bool,
    /// A file holding the base model's answers the heads were trained on (the heads file's
    /// `answers` tensor, [`crate::loading::medusa_heads`]), for answer lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<String>,
}

/// The model the artifacts were compiled from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// A name for display (the source directory's name).
    pub name: String,
    /// The source model's `config.json`, as written by [`crate::loading::LlamaConfig::to_hf_json`].
    pub config: serde_json::Value,
    /// Parameters of the base model.
    pub parameters: u64,
}

/// The manifest of an artifacts directory (design section 5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for manifests this crate reads.
    pub format_version: u32,
    /// What the graphs run on: `"mock"` (neuron-mock kernels) or `"neuron"` (NEFFs compiled
    /// for NeuronCores).
    pub target: String,
    /// The source model.
    pub model: ModelEntry,
    /// Tensor-parallel degree: ranks, one NeuronCore each.
    pub tp: usize,
    /// KV-cache slots: sequences in flight at once.
    pub slots: usize,
    /// Positions per slot.
    pub max_len: usize,
    /// How the decoder layers' projection matrices are stored in the weight shards (absent:
    /// f32).
    #[serde(default, skip_serializing_if = "MatrixDtype::is_f32")]
    pub matrices: MatrixDtype,
    /// Every graph.
    pub graphs: Vec<GraphEntry>,
    /// Each rank's weight shard (safetensors, Hugging Face names), relative paths, rank order.
    pub weights: Vec<String>,
    /// Medusa heads, if compiled in.
    pub heads: Option<HeadsEntry>,
    /// The tokenizer and its companion files (relative paths) copied from the model.
    pub text_files: Vec<String>,
}

impl Manifest {
    /// Reads and validates `dir/manifest.json`, and checks that every file it names exists.
    ///
    /// # Errors
    /// [`Error::Artifacts`] naming the file and what is wrong.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !dir.is_dir() {
            return Err(artifacts(
                dir,
                "is not an artifacts directory (it does not exist or is not a directory)",
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            artifacts(&path, format!("cannot be read ({e}); is {} an artifacts directory made by `neuron-decode compile`?", dir.display()))
        })?;
        let manifest = Manifest::parse(&text).map_err(|message| artifacts(&path, message))?;
        for file in manifest.files() {
            let full = dir.join(file);
            if !full.is_file() {
                return Err(artifacts(&full, "is named in the manifest but missing"));
            }
        }
        Ok(manifest)
    }

    /// Parses and validates manifest text (no file-system checks).
    ///
    /// # Errors
    /// A sentence saying what is wrong.
    pub fn parse(text: &str) -> std::result::Result<Manifest, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        // Check the format and version first, so that a newer manifest gets a clear message
        // rather than a complaint about a field this version does not know.
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => return Err(format!("has format {other:?}, expected {FORMAT:?}")),
            None => return Err(format!("has no \"format\": {FORMAT:?} field")),
        }
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            Some(v) if v > FORMAT_VERSION as u64 => {
                return Err(format!(
                    "has format version {v}, newer than this neuron-decode reads ({FORMAT_VERSION}); upgrade, or compile the model again"
                ));
            }
            Some(v) => {
                return Err(format!(
                    "has format version {v}, older than this neuron-decode reads ({FORMAT_VERSION}); compile the model again"
                ));
            }
            None => return Err("has no format_version".into()),
        }
        let manifest: Manifest =
            serde_json::from_value(value).map_err(|e| format!("is not a valid manifest: {e}"))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.target != "mock" && self.target != "neuron" {
            return Err(format!(
                "target {:?} is neither \"mock\" nor \"neuron\"",
                self.target
            ));
        }
        if self.tp == 0 || self.slots == 0 || self.max_len == 0 {
            return Err("tp, slots and max_len must be at least 1".into());
        }
        if self.weights.len() != self.tp {
            return Err(format!(
                "tp is {} but {} weight shards are listed",
                self.tp,
                self.weights.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for g in &self.graphs {
            if !seen.insert((g.role, g.width, g.batch)) {
                return Err(format!(
                    "graph {} of width {} and batch {} is listed twice",
                    g.role.name(),
                    g.width,
                    g.batch
                ));
            }
            if g.batch == 0 || (g.width == 0) != (g.role == Role::Heads) {
                return Err(format!(
                    "graph {} has width {} and batch {}",
                    g.role.name(),
                    g.width,
                    g.batch
                ));
            }
            if g.batch > self.slots {
                return Err(format!(
                    "graph {} has batch {} but there are only {} slots",
                    g.role.name(),
                    g.batch,
                    self.slots
                ));
            }
            if g.role == Role::Decode && g.width != 1 {
                return Err(format!("a decode graph has width {}, not 1", g.width));
            }
        }
        let has = |role| self.graphs.iter().any(|g| g.role == role);
        for role in [Role::Prefill, Role::KvCommit] {
            if !has(role) {
                return Err(format!("there is no {} graph", role.name()));
            }
        }
        if !has(Role::Decode) && !has(Role::Verify) {
            return Err("there is neither a decode nor a verify graph".into());
        }
        match (&self.heads, has(Role::Heads)) {
            (Some(h), true) => {
                if h.count == 0 || h.top_k == 0 {
                    return Err("heads.count and heads.top_k must be at least 1".into());
                }
                crate::strategy::medusa::MedusaTree::new(h.tree.clone())
                    .map_err(|e| format!("heads.tree: {e}"))?;
                if h.tree
                    .iter()
                    .any(|p| p.len() > h.count || p.iter().any(|&r| r >= h.top_k))
                {
                    return Err(format!(
                        "heads.tree uses more than {} heads or ranks beyond top_k {}",
                        h.count, h.top_k
                    ));
                }
            }
            (None, false) => {}
            (Some(_), false) => {
                return Err("heads are described but there is no heads graph".into());
            }
            (None, true) => return Err("there is a heads graph but no heads entry".into()),
        }
        for file in self.files() {
            check_relative(file)?;
        }
        Ok(())
    }

    /// Every file the manifest names, relative to the artifacts directory.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.graphs
            .iter()
            .map(|g| g.path.as_str())
            .chain(self.weights.iter().map(String::as_str))
            .chain(self.text_files.iter().map(String::as_str))
            .chain(self.heads.iter().filter_map(|h| h.answers.as_deref()))
    }

    /// The graphs of one role, narrowest first.
    pub fn graphs_of(&self, role: Role) -> Vec<&GraphEntry> {
        let mut graphs: Vec<&GraphEntry> = self.graphs.iter().filter(|g| g.role == role).collect();
        graphs.sort_by_key(|g| (g.width, g.batch));
        graphs
    }
}

/// A manifest path must stay inside the artifacts directory.
fn check_relative(file: &str) -> std::result::Result<(), String> {
    let path = Path::new(file);
    let inside = !file.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if inside {
        Ok(())
    } else {
        Err(format!(
            "file {file:?} is not a plain relative path inside the artifacts directory"
        ))
    }
}

fn artifacts(path: &Path, message: impl Into<String>) -> Error {
    Error::Artifacts {
        path: PathBuf::from(path),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        let graph = |role, width, batch| GraphEntry {
            role,
            width,
            batch,
            path: format!("graphs/{}-{width}.neff", Role::name(role)),
        };
        Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            target: "mock".into(),
            model: ModelEntry {
                name: "tiny".into(),
                config: serde_json::json!({}),
                parameters: 10,
            },
            tp: 1,
            slots: 2,
            max_len: 64,
            matrices: MatrixDtype::F32,
            graphs: vec![
                graph(Role::Prefill, 16, 1),
                graph(Role::Decode, 1, 2),
                graph(Role::Verify, 8, 2),
                graph(Role::KvCommit, 8, 2),
            ],
            weights: vec!["weights/rank0.safetensors".into()],
            heads: None,
            text_files: vec!["tokenizer.json".into()],
        }
    }

    fn reparse(m: &Manifest) -> std::result::Result<Manifest, String> {
        Manifest::parse(&serde_json::to_string(m).unwrap())
    }

    #[test]
    fn a_written_manifest_reads_back() {
        let m = sample();
        assert_eq!(reparse(&m).unwrap(), m);
        assert_eq!(m.graphs_of(Role::Verify).len(), 1);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        type Breaker = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Breaker, &str)> = vec![
            (
                Box::new(|m| m.format_version = FORMAT_VERSION + 1),
                "newer than this neuron-decode",
            ),
            (
                Box::new(|m| m.format_version = FORMAT_VERSION - 1),
                "older than this neuron-decode reads",
            ),
            (Box::new(|m| m.format = "other".into()), "format \"other\""),
            (Box::new(|m| m.tp = 2), "2 but 1 weight shards"),
            (
                Box::new(|m| m.graphs.retain(|g| g.role != Role::Prefill)),
                "no prefill graph",
            ),
            (Box::new(|m| m.graphs[2].batch = 3), "only 2 slots"),
            (
                Box::new(|m| m.weights[0] = "../escape".into()),
                "plain relative path",
            ),
            (
                Box::new(|m| m.weights[0] = "/abs/path".into()),
                "plain relative path",
            ),
            (Box::new(|m| m.target = "gpu".into()), "target \"gpu\""),
            (
                Box::new(|m| {
                    m.heads = Some(HeadsEntry {
                        count: 2,
                        top_k: 3,
                        tree: vec![vec![0]],
                        takes_next: false,
                        takes_path: false,
                        answers: None,
                    })
                }),
                "no heads graph",
            ),
            (
                Box::new(|m| {
                    let g = m.graphs[1].clone();
                    m.graphs.push(g)
                }),
                "listed twice",
            ),
        ];
        for (break_it, needle) in cases {
            let mut m = sample();
            break_it(&mut m);
            let err = reparse(&m).unwrap_err();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
        assert!(Manifest::parse("{").unwrap_err().contains("not JSON"));
        assert!(Manifest::parse("{}").unwrap_err().contains("no \"format\""));
        let unknown =
            serde_json::to_string(&sample())
                .unwrap()
                .replacen('{', "{\"surprise\":1,", 1);
        assert!(Manifest::parse(&unknown).unwrap_err().contains("surprise"));
    }

    #[test]
    fn load_checks_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an artifacts directory"), "{err}");
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("manifest.json") && err.contains("neuron-decode compile"),
            "{err}"
        );
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            serde_json::to_string(&sample()).unwrap(),
        )
        .unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("missing") && err.contains("prefill-16.neff"),
            "{err}"
        );
    }

    proptest::proptest! {
        /// Random mutations of a valid manifest never panic: they parse or give an error.
        #[test]
        fn mutated_manifests_never_panic(cut in 0usize..2000, byte in 0u8..128, at in 0usize..2000) {
            let mut text = serde_json::to_string(&sample()).unwrap().into_bytes();
            let at = at % text.len();
            text[at] = byte;
            text.truncate(cut.max(1).min(text.len()));
            let _ = Manifest::parse(&String::from_utf8_lossy(&text));
        }
    }
}
