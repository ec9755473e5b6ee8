//! Files built into the library: the trained Medusa heads and feature draft of the default
//! model. An installed `neuron-decode` has no source tree to read them from, so each is compiled
//! in with its SHA-256 and written into the cache directory the first time it is needed (and
//! again whenever the copy there is missing or differs), where the code that opens weight
//! files finds it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A file compiled into the library.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// Its name, in `parallel-decode/data/` and in the cache.
    pub name: &'static str,
    /// The cache's subdirectory for it.
    pub dir: &'static str,
    /// The hex SHA-256 of its bytes.
    pub sha256: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

impl Shipped {
    /// The committed file in the source tree (present in a checkout of the repository).
    pub fn source_path(&self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join(self.name)
    }

    /// Where [`Shipped::ensure`] puts the file under the cache directory `home`.
    pub fn cached_path(&self, home: &Path) -> PathBuf {
        home.join(self.dir).join(self.name)
    }

    /// The file's path under the cache directory `home`, written from the copy compiled into
    /// the library when it is missing or differs (atomically).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn ensure(&self, home: &Path) -> Result<PathBuf> {
        let path = self.cached_path(home);
        if std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == self.sha256) {
            return Ok(path);
        }
        write_atomically(&path, self.bytes)?;
        Ok(path)
    }
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` through a temporary file renamed over it, readable by all, so
/// that a reader never sees half a file.
///
/// # Errors
/// [`Error::Io`] when the directory or the file cannot be written.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".shipped-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "create a temporary file", e))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|e| Error::io(tmp.path(), "write", e))?;
    crate::medusa::file::readable_by_all(tmp.as_file(), tmp.path())?;
    tmp.persist(path)
        .map_err(|e| Error::io(path, "replace", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_writes_once_and_replaces_a_damaged_copy() {
        const FILE: Shipped = Shipped {
            name: "x.bin",
            dir: "things",
            sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            bytes: b"hello",
        };
        assert_eq!(sha256_hex(FILE.bytes), FILE.sha256);
        let home = tempfile::tempdir().unwrap();
        let path = FILE.ensure(home.path()).unwrap();
        assert_eq!(path, home.path().join("things").join("x.bin"));
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        // An intact copy is left alone...
        assert_eq!(FILE.ensure(home.path()).unwrap(), path);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written
        );
        // ...a damaged one replaced.
        std::fs::write(&path, b"junk").unwrap();
        FILE.ensure(home.path()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        // No temporary files left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
