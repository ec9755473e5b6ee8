//! The trained Medusa heads shipped for the default model, SmolLM2-135M-Instruct.
//!
//! The file is committed at `parallel-decode/data/` and compiled into the library, so that an
//! installed `neuron-decode` has it too: [`ensure`] writes it into the cache once and returns
//! its path, which is what commands use when the model is the default one and no heads file is
//! given. The heads take the path (heads format version 3, see [`crate::medusa::train`]): each
//! takes the token just chosen and the best candidates of the heads before it. The file was
//! made with `neuron-decode train-heads --out FILE --teacher-weight 0` run with
//! `NEURON_MOCK_MATMUL=bf16` (otherwise the defaults: 5 heads, 3 epochs, seed 0, `--rows 128`,
//! `--matmul auto`, which is bf16 products: AVX-512 BF16 dot products on that machine; the
//! built-in 12936 prompts, the four sets of `scripts/gen-medusa-prompts.py`; a vocabulary of the
//! 8192 tokens the answers use most). On a two-core AMD EPYC (Zen 4, no AMX): the answers to
//! the first 7936 prompts came from the cache of an earlier run (distilling all 7999 of the
//! first three sets had taken 51 minutes there), the other 5000 were distilled in 25 minutes
//! (1,949,471 tokens in all), and training took 67 minutes on 1,743,524 examples (held-out loss
//! per head 1.98/2.60/2.88/3.05/3.20). Then `neuron-decode tune --heads FILE` on the default
//! (f32) mock of that machine; its `tree` metadata is the tree recorded there (a pass of 8
//! tokens 1.42x a decode step, 16 tokens 1.96x): the chosen
//! `[[0], [0, 0], [0, 0, 0], [1], [0, 0, 0, 0]]`, then `[0, 1]` and `[2]` for the passes sized
//! up (rerun `tune` where passes cost differently: on a NeuronCore the best tree is larger and
//! deeper). The file also carries the training answers (the `answers` tensor: 11642 answers, 7
//! MB), which answer lookup and the `hybrid` strategy propose from. Its held-out evaluation
//! (1294 prompts) is committed beside it
//! (`smollm2-135m-instruct.medusa_heads.eval.json`), which is what `tune` reads.
//!
//! Against the heads trained on the first 7999 prompts (shipped before), in one session on
//! that machine with bf16 products: open benchmark hybrid tau 2.29 against 2.24 (trees sized by
//! the measured costs), 2.34 against 2.30 (by `bench/costs/two-core-16-at-1.5x.json`);
//! medusa-lookup 2.16 against 2.16 and 2.23 against 2.21; grounded hybrid 2.72 against 2.70,
//! medusa-lookup 2.68 against 2.59. Held-out top-1 per head 0.574/0.363/0.237/0.167/0.120
//! (0.565/0.352/0.232/0.161/0.119 before, on 800 prompts). 62% more distilled tokens moved the
//! open tau by only ~0.04 (the third set's 2.25x had moved it by 0.12): the fourth set is new
//! phrasings over the earlier sets' things, which the heads had mostly learnt already.
//! Soft targets (`--teacher-weight 0.5`) and 5 epochs had been no better on the open
//! benchmark for the heads before (hybrid tau 2.36 for all three, same session).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::shipped::{Shipped, write_atomically};

/// The file's name, in `parallel-decode/data/` and in the cache.
pub const FILE_NAME: &str = "smollm2-135m-instruct.medusa_heads.safetensors";

/// SHA-256 of the file.
pub const SHA256: &str = "d36ed596b15bb6e25cfaab330248eec05f45e5da8943d7cc582d3a15b0f4a5ba";

/// The file's bytes.
pub const BYTES: &[u8] =
    include_bytes!("../../data/smollm2-135m-instruct.medusa_heads.safetensors");

/// The heads as a file built into the library.
pub const HEADS: Shipped = Shipped {
    name: FILE_NAME,
    dir: "medusa-heads",
    sha256: SHA256,
    bytes: BYTES,
};

/// The heads' held-out evaluation (what `neuron-decode tune` reads), named as
/// `train-heads` names it: the heads file's name with `.eval.json` for `.safetensors`.
pub const EVAL_FILE_NAME: &str = "smollm2-135m-instruct.medusa_heads.eval.json";

/// The evaluation's text.
pub const EVAL: &str = include_str!("../../data/smollm2-135m-instruct.medusa_heads.eval.json");

/// The committed file in the source tree (present in a checkout of the repository).
pub fn source_path() -> PathBuf {
    HEADS.source_path()
}

/// Where [`ensure`] puts the heads under the cache directory `home`.
pub fn cached_path(home: &Path) -> PathBuf {
    HEADS.cached_path(home)
}

/// The default model's heads file under the cache directory `home`, written from the copy
/// compiled into the library when it is missing or differs (atomically), with its evaluation
/// beside it.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when a file cannot be written.
pub fn ensure(home: &Path) -> Result<PathBuf> {
    let path = cached_path(home);
    let eval = path.with_file_name(EVAL_FILE_NAME);
    if std::fs::read(&eval).ok().as_deref() != Some(EVAL.as_bytes()) {
        write_atomically(&eval, EVAL.as_bytes())?;
    }
    HEADS.ensure(home)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::medusa_heads::{Conditioning, MedusaHeads};
    use crate::shipped::sha256_hex;

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
