//! The model cache: where it is (`NEURON_DECODE_HOME`) and how entries are added atomically.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The environment variable naming the cache directory.
pub const HOME_VAR: &str = "NEURON_DECODE_HOME";

/// The cache directory: `$NEURON_DECODE_HOME` if set and not empty, else
/// `$XDG_CACHE_HOME/neuron-decode`, else `~/.cache/neuron-decode`.
///
/// # Errors
///
/// [`Error::Environment`] if none of `NEURON_DECODE_HOME`, `XDG_CACHE_HOME` and `HOME` is set.
pub fn home_dir() -> Result<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(home) = var(HOME_VAR) {
        return Ok(home);
    }
    if let Some(cache) = var("XDG_CACHE_HOME") {
        return Ok(cache.join("neuron-decode"));
    }
    var("HOME")
        .map(|h| h.join(".cache").join("neuron-decode"))
        .ok_or_else(|| Error::Environment {
            variable: HOME_VAR.into(),
            message: "is not set, and neither is HOME to default to ~/.cache/neuron-decode".into(),
        })
}

/// Builds a cache entry at `target` so that it appears complete or not at all.
///
/// `build` fills a fresh temporary directory next to `target` (same file system); only when it
/// succeeds is the directory renamed to `target`, which is atomic. An interrupted or failed build
/// leaves at most a `.tmp-*` directory behind (removed on failure, and ignored by readers), never
/// a half-written `target`. If `target` already exists it is replaced (the old one is moved
/// aside first, then removed). If another process installed `target` at the same moment, its
/// copy is kept and ours discarded.
///
/// # Errors
///
/// Whatever `build` returns, or [`Error::Io`] if the directories cannot be created or renamed.
pub fn build_atomically(target: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, "create directory", e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".tmp-{name}-"))
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, "create temporary directory", e))?;
    let built = staging.path().join("entry");
    std::fs::create_dir(&built).map_err(|e| Error::io(&built, "create directory", e))?;
    build(&built)?;
    if target.exists() {
        let old = staging.path().join("old");
        std::fs::rename(target, &old).map_err(|e| Error::io(target, "move aside", e))?;
    }
    match std::fs::rename(&built, target) {
        Ok(()) => Ok(()),
        // Someone else installed it between our check and our rename: theirs is complete too.
        Err(_) if target.is_dir() => Ok(()),
        Err(e) => Err(Error::io(
            target,
            format!("rename from {}", built.display()),
            e,
        )),
    }
    // `staging` (with any old copy) is removed when dropped.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_builds_leave_nothing() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("models").join("m");
        let err = build_atomically(&target, |dir| {
            std::fs::write(dir.join("half"), b"x").unwrap();
            Err(Error::NoChatTemplate { path: dir.into() })
        });
        assert!(err.is_err());
        assert!(!target.exists());
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join("models"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn successful_builds_replace_the_old_entry() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("m");
        build_atomically(&target, |dir| {
            std::fs::write(dir.join("v"), b"1").map_err(|e| Error::io(dir, "write", e))
        })
        .unwrap();
        build_atomically(&target, |dir| {
            std::fs::write(dir.join("v"), b"2").map_err(|e| Error::io(dir, "write", e))
        })
        .unwrap();
        assert_eq!(std::fs::read(target.join("v")).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
