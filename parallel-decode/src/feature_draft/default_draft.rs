//! The feature draft shipped for the default model, SmolLM2-135M-Instruct.
//!
//! The file is committed at `parallel-decode/data/` and compiled into the library (8.5 MB, f16
//! weights), so that an installed `neuron-decode` has it too: [`ensure`] writes it into the
//! cache once and returns its path, which is what commands use for the default model when no
//! `--feature-draft FILE` is given (`--strategy auto` takes it where the CPU runs its 8-bit
//! products with vectors, see [`super::DraftWeights::fastest`]).
//!
//! It was trained with `scripts/experiments/context_draft_probe.py` (torch, CPU) on the
//! answers `neuron-decode train-heads` distilled from the default model for the built-in
//! prompts (`NEURON_MOCK_MATMUL=bf16`; the same cache the shipped heads were trained from), every
//! 10th prompt held out: `--residual --train-steps 3 --batch 4 --cls-weight 0.5`, two epochs
//! at `--lr 2e-3` on the first 7999 prompts, then three more of one epoch each from the
//! saved state (`--init`, `--lr 1e-3`), then a sixth on all 12936 prompts (`--lr 7e-4`; 77
//! minutes): about three and a half hours of training on two cores in all, across sessions.
//! Exported with `--epochs 0 --export FILE`, which also ranks the vocabulary (the 8192 tokens
//! of the heads' vocabulary) by frequency in the training answers. Held-out chain tau (a chain-only tree,
//! without answer lookup) after the sixth epoch: open 2.703, grounded 3.244;
//! `scripts/experiments/README.md` has the epoch-by-epoch figures and the benchmarks.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::shipped::Shipped;

/// The file's name, in `parallel-decode/data/` and in the cache.
pub const FILE_NAME: &str = "smollm2-135m-instruct.feature_draft.safetensors";

/// The draft as a file built into the library.
pub const DRAFT: Shipped = Shipped {
    name: FILE_NAME,
    dir: "feature-draft",
    sha256: "e0906aab8c02e851f7ba03043392956572332d67231cb149a789580d880a7c8f",
    bytes: include_bytes!("../../data/smollm2-135m-instruct.feature_draft.safetensors"),
};

/// The default model's feature draft under the cache directory `home`, written from the copy
/// compiled into the library when it is missing or differs.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the file cannot be written.
pub fn ensure(home: &Path) -> Result<PathBuf> {
    DRAFT.ensure(home)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::feature_draft::FeatureDraftFile;
    use crate::shipped::sha256_hex;

    #[test]
    fn the_committed_draft_matches_its_hash_and_opens_for_the_default_model() {
        assert_eq!(
            sha256_hex(DRAFT.bytes),
            DRAFT.sha256,
            "the compiled-in copy"
        );
        let committed = std::fs::read(DRAFT.source_path()).unwrap();
        assert_eq!(sha256_hex(&committed), DRAFT.sha256, "the committed file");
        let home = tempfile::tempdir().unwrap();
        let path = ensure(home.path()).unwrap();
        assert_eq!(path, DRAFT.cached_path(home.path()));
        // SmolLM2-135M's width and vocabulary.
        let file = FeatureDraftFile::open(&path, 576, 49_152).unwrap();
        assert_eq!(file.config().heads, 9);
        assert_eq!(file.vocab().len(), 8192);
        assert!(
            file.vocab_by_frequency().is_some(),
            "ranked for --feature-vocab"
        );
    }
}
