//! Read-only memory maps of weight files: the only `unsafe` code in this crate.
//!
//! Weight files are hundreds of megabytes to many gigabytes. Mapping them instead of reading
//! them means opening a model costs no copy and no allocation, and the operating system pages
//! in only the tensors that are used.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The bytes of a file, either memory-mapped or (for small or in-memory inputs) owned.
///
/// Parsers take `&[u8]` through [`Deref`], so they work the same on both.
#[derive(Debug)]
pub struct FileBytes {
    path: PathBuf,
    bytes: Backing,
}

#[derive(Debug)]
enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `path` read-only.
    ///
    /// The contract with the operating system is a *private, read-only* view of the file as it
    /// is now. The project never writes to a file it has mapped, and model files are replaced
    /// by writing a new file or directory and renaming it over the old one (see
    /// `default_model`), which leaves existing maps pointing at the old, unchanged inode. A
    /// file truncated in place by another program while mapped would make reads past its new
    /// end raise `SIGBUS`; that is the one hazard memory-mapping accepts, as every mmap-based
    /// loader (safetensors, llama.cpp) does.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be opened or mapped.
    pub fn map(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(path, "stat", e))?
            .len();
        if len == 0 {
            // Mapping an empty file fails on some systems; an empty buffer means the same.
            return Ok(Self::owned(path, Vec::new()));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapped memory can change or vanish if the
        // file is modified or truncated while mapped, which Rust's `&[u8]` cannot express. We
        // map read-only and privately, never write through or to the file, and the project
        // replaces model files only by rename (never truncation in place), so for every file
        // this project manages the bytes stay valid and unchanged for the life of the map. The
        // remaining risk (a third party truncating a model file while it is in use) is the
        // documented contract of memory-mapped model loading.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, "memory-map", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes: Backing::Mapped(map),
        })
    }

    /// Wraps bytes already in memory (for example a file extracted from an archive), keeping
    /// `path` for error messages.
    pub fn owned(path: impl Into<PathBuf>, bytes: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            bytes: Backing::Owned(bytes),
        }
    }

    /// The file these bytes came from (used in error messages).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_file_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(&*FileBytes::map(&p).unwrap(), b"hello");
        let empty = dir.path().join("empty.bin");
        std::fs::write(&empty, b"").unwrap();
        assert!(FileBytes::map(&empty).unwrap().is_empty());
        let err = FileBytes::map(&dir.path().join("nope.bin")).unwrap_err();
        assert!(err.to_string().contains("nope.bin: open failed"), "{err}");
    }
}
