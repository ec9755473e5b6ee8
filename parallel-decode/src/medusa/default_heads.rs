//! The trained Medusa heads shipped for the default model, SmolLM2-135M-Instruct.
//!
//! The file is committed at `parallel-decode/data/` and compiled into the library, so that an
//! installed `neuron-decode` has it too: [`ensure`] writes it into the cache once and returns
//! its path, which is what commands use when the model is the default one and no heads file is
//! given. The heads take the path (heads format version 3, see [`crate::medusa::train`]): each
//! takes the token just chosen and the best candidates of the heads before it. The file was
//! made with `neuron-decode train-heads --out FILE --rows 32 --teacher-weight 0` run with
//! `NEURON_MOCK_MATMUL=bf16` (otherwise the defaults: 5 heads, 3 epochs, seed 0, `--matmul
//! auto`, which is bf16 products on that AMX machine; the built-in 7999 prompts, the three sets of
//! `scripts/gen-medusa-prompts.py`; a vocabulary of the 8192 tokens the answers use most). On a
//! two-core Xeon with AMX: distilling took about 75 minutes for the 7999 answers (1,164,769
//! tokens; the mock multiplying in bf16, as a NeuronCore does), training 25 minutes on
//! 1,039,647 examples. Then `neuron-decode tune --heads FILE` on the default (f32) mock; its
//! `tree` metadata is the tree recorded there, for the mock's cost curve on that machine (a
//! pass of 8 tokens 1.43x a decode step, 16 tokens 1.96x): the chosen
//! `[[0], [0, 0], [0, 0, 0], [1], [0, 0, 0, 0]]`, then `[0, 1]` and `[2]` for the passes sized
//! up (rerun `tune` where passes cost differently: on a NeuronCore the best tree is larger and
//! deeper). The file also carries the training answers (the `answers` tensor: 7199 answers, 4
//! MB), which answer lookup and the `hybrid` strategy propose from. Its held-out evaluation
//! (800 prompts) is committed beside it
//! (`smollm2-135m-instruct.medusa_heads.eval.json`), which is what `tune` reads.
//!
//! Heads trained since with the new defaults (`--teacher-weight 0.5`; also with 5 epochs)
//! were slightly better on the held-out prompts (first head's top-1 0.570 and 0.575 against
//! 0.565) but no better on the open benchmark (hybrid tau 2.36 for all three, same session),
//! so this file was kept. The whole run at today's defaults (`NEURON_MOCK_MATMUL=bf16
//! neuron-decode train-heads --out FILE`, empty cache, artifacts with bf16 matrices) took 52.5
//! minutes on the same machine: distilling 34.0, training 17.5. Distilling has been faster
//! since (the mock runs these passes on its thread pool, and `train-heads` decodes 128 rows
//! at once): 1024 of the prompts in 171 s instead of 247 s, the same answers. The whole run,
//! measured again from an empty cache: 43.0 minutes (distilling 23.0, training 19.0), the
//! heads byte-identical.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The file's name, in `parallel-decode/data/` and in the cache.
pub const FILE_NAME: &str = "smollm2-135m-instruct.medusa_heads.safetensors";

/// SHA-256 of the file.
pub const SHA256: &str = "d29a5fde12a56e434995bdcbaa5c28dbbae170dcc2531d9da13176a48176c567";

/// The file's bytes.
pub const BYTES: &[u8] =
    include_bytes!("../../data/smollm2-135m-instruct.medusa_heads.safetensors");

/// The heads' held-out evaluation (what `neuron-decode tune` reads), named as
/// `train-heads` names it: the heads file's name with `.eval.json` for `.safetensors`.
pub const EVAL_FILE_NAME: &str = "smollm2-135m-instruct.medusa_heads.eval.json";

/// The evaluation's text.
pub const EVAL: &str = include_str!("../../data/smollm2-135m-instruct.medusa_heads.eval.json");

/// The committed file in the source tree (present in a checkout of the repository).
pub fn source_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(FILE_NAME)
}

/// Where [`ensure`] puts the heads under the cache directory `home`.
pub fn cached_path(home: &Path) -> PathBuf {
    home.join("medusa-heads").join(FILE_NAME)
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The default model's heads file under the cache directory `home`, written from the copy
/// compiled into the library when it is missing or differs (atomically), with its evaluation
/// beside it.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn ensure(home: &Path) -> Result<PathBuf> {
    let path = cached_path(home);
    let eval = path.with_file_name(EVAL_FILE_NAME);
    if std::fs::read(&eval).ok().as_deref() != Some(EVAL.as_bytes()) {
        write_atomically(&eval, EVAL.as_bytes())?;
    }
    if std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == SHA256) {
        return Ok(path);
    }
    write_atomically(&path, BYTES)?;
    Ok(path)
}

/// Writes `bytes` to `path` through a temporary file renamed over it, readable by all.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".medusa-heads-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "create a temporary file", e))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| Error::io(tmp.path(), "write", e))?;
    super::file::readable_by_all(tmp.as_file(), tmp.path())?;
    tmp.persist(path)
        .map_err(|e| Error::io(path, "replace", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::medusa_heads::{Conditioning, MedusaHeads};

    /// SmolLM2-135M's width.
    const HIDDEN: usize = 576;

    #[test]
    fn the_committed_heads_match_their_recorded_hash_and_open() {
        assert_eq!(sha256_hex(BYTES), SHA256, "the compiled-in copy");
        let committed = std::fs::read(source_path()).unwrap();
        assert_eq!(
            sha256_hex(&committed),
            SHA256,
            "{}",
            source_path().display()
        );
        let heads = MedusaHeads::open(&source_path(), HIDDEN).unwrap();
        assert!(heads.count() >= 1);
        let tree = heads.tree().expect("the tuned tree is recorded");
        assert!(!tree.is_empty() && tree.depth() <= heads.count());
        assert!(tree.top_k_per_head().iter().all(|&k| k <= 10));
        assert!(heads.base_model().is_some());
        assert_eq!(
            heads.conditioning(),
            Conditioning::Path,
            "the default heads take the path"
        );
        let t = heads.head(0).unwrap();
        assert!(
            t.token_weights[0].iter().any(|&x| x != 0.0),
            "N of head 0 is trained, not zero"
        );
        let last = heads.head(heads.count() - 1).unwrap();
        assert_eq!(last.token_weights.len(), heads.count());
        assert!(
            last.token_weights
                .iter()
                .all(|m| m.iter().any(|&x| x != 0.0)),
            "every path matrix of the last head is trained"
        );
        let (w, b) = (t.weight, t.bias);
        assert_eq!((w.len(), b.len()), (HIDDEN * HIDDEN, HIDDEN));
        assert!(w.iter().chain(&b).all(|x| x.is_finite()));
        assert!(w.iter().any(|&x| x != 0.0), "head 0 is trained, not zero");
    }

    #[test]
    fn the_committed_evaluation_covers_the_heads() {
        let eval: crate::medusa::eval::Evaluation = serde_json::from_str(EVAL).unwrap();
        let heads = MedusaHeads::open(&source_path(), HIDDEN).unwrap();
        assert_eq!(eval.heads.len(), heads.count());
        assert!(eval.paths.positions > 0 && !eval.paths.counts.is_empty());
        assert!(
            source_path()
                .with_extension("eval.json")
                .ends_with(EVAL_FILE_NAME)
        );
    }

    #[test]
    fn ensure_writes_the_heads_once() {
        let home = tempfile::tempdir().unwrap();
        let path = ensure(home.path()).unwrap();
        assert_eq!(path, cached_path(home.path()));
        assert_eq!(std::fs::read(&path).unwrap(), BYTES);
        // A damaged copy is replaced.
        std::fs::write(&path, b"junk").unwrap();
        assert_eq!(ensure(home.path()).unwrap(), path);
        assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), SHA256);
        // The evaluation is beside it, under the name tune looks for.
        let eval = home.path().join("medusa-heads").join(EVAL_FILE_NAME);
        assert_eq!(eval, path.with_extension("eval.json"));
        assert_eq!(std::fs::read_to_string(&eval).unwrap(), EVAL);
        std::fs::write(&eval, "{}").unwrap();
        ensure(home.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&eval).unwrap(), EVAL);
    }
}
