//! Turning what a user names as "the model" into a model directory: nothing (the default
//! model, fetched on first use), a Hugging Face directory, or a GGUF file (imported once into
//! the cache).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::cache::{build_atomically, home_dir};
use super::default_model::{self, FetchOptions};
use super::gguf::{GgufFile, ImportOptions, import_gguf};
use super::model_dir::CONFIG_FILE;
use super::progress::Progress;
use crate::error::{Error, Result};

/// Where imported GGUF files are cached, under the home directory.
pub const IMPORTED_DIR: &str = "imported";
/// Marks a complete imported entry.
const DONE_FILE: &str = "config.json";

/// Resolves `model` to a directory [`crate::loading::ModelDir::open`] can open.
///
/// - `None`: the default model ([`default_model::ensure`]: fetched and imported on first use).
/// - a directory: used as it is.
/// - a `.gguf` file: imported into `<home>/imported/<name>-<key>/` on first use, where the key
///   is derived from the file's absolute path, size and modification time (so a changed file is
///   imported again, without hashing gigabytes on every run).
///
/// `home` is the cache directory (`None`: `$NEURON_DECODE_HOME`).
///
/// # Errors
///
/// [`Error::NotAModel`] for anything else, and the errors of fetching or importing.
pub fn resolve_model(
    model: Option<&Path>,
    home: Option<&Path>,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let Some(path) = model else {
        let options = FetchOptions {
            home: home.map(Path::to_path_buf),
            ..FetchOptions::default()
        };
        return default_model::ensure(&options, progress);
    };
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(Error::NotAModel {
            path: path.to_path_buf(),
            message: "it does not exist".into(),
        });
    }
    let is_gguf = std::fs::File::open(path)
        .and_then(|mut f| {
            let mut magic = [0u8; 4];
            std::io::Read::read_exact(&mut f, &mut magic).map(|()| magic == *b"GGUF")
        })
        .unwrap_or(false);
    if !is_gguf {
        return Err(Error::NotAModel {
            path: path.to_path_buf(),
            message: format!("it is neither a directory with {CONFIG_FILE} nor a GGUF file"),
        });
    }
    let home = match home {
        Some(h) => h.to_path_buf(),
        None => home_dir()?,
    };
    let target = home.join(IMPORTED_DIR).join(cache_key(path)?);
    if target.join(DONE_FILE).is_file() {
        return Ok(target);
    }
    let file = GgufFile::open(path)?;
    build_atomically(&target, |staging| {
        import_gguf(&file, staging, &ImportOptions::default(), progress).map(|_| ())
    })?;
    Ok(target)
}

/// `<file stem>-<16 hex digits>` from the absolute path, size and modification time.
fn cache_key(path: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, "resolve", e))?;
    let meta = std::fs::metadata(&abs).map_err(|e| Error::io(path, "stat", e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
    abs.hash(&mut h);
    meta.len().hash(&mut h);
    mtime.hash(&mut h);
    let stem = abs
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!("{stem}-{:016x}", h.0))
}

struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::progress::NoProgress;
    use crate::loading::synthetic::TinyLlama;

    #[test]
    fn imports_a_gguf_once_and_reuses_it() {
        let home = tempfile::tempdir().unwrap();
        let gguf = home.path().join("tiny.gguf");
        TinyLlama::default()
            .to_gguf()
            .unwrap()
            .write(&gguf)
            .unwrap();
        let a = resolve_model(Some(&gguf), Some(home.path()), &NoProgress).unwrap();
        assert!(a.starts_with(home.path().join(IMPORTED_DIR)));
        assert!(a.join("model.safetensors").is_file());
        let stamp = std::fs::metadata(a.join("model.safetensors"))
            .unwrap()
            .modified()
            .unwrap();
        let b = resolve_model(Some(&gguf), Some(home.path()), &NoProgress).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            std::fs::metadata(b.join("model.safetensors"))
                .unwrap()
                .modified()
                .unwrap(),
            stamp
        );
        // A directory is used as is.
        assert_eq!(
            resolve_model(Some(&a), Some(home.path()), &NoProgress).unwrap(),
            a
        );
    }

    #[test]
    fn other_paths_are_refused_clearly() {
        let home = tempfile::tempdir().unwrap();
        let txt = home.path().join("notes.txt");
        std::fs::write(&txt, "hello").unwrap();
        let err = resolve_model(Some(&txt), Some(home.path()), &NoProgress)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is neither a directory with config.json nor a GGUF file"),
            "{err}"
        );
        let err = resolve_model(
            Some(&home.path().join("nope")),
            Some(home.path()),
            &NoProgress,
        )
        .unwrap_err()
        .to_string();
        assert!(err.ends_with("is not a model: it does not exist"), "{err}");
    }
}
