//! Helpers for tests, in this crate and in the crates above it.
//!
//! - [`library_path`]: where the built mock library (`libneuron_mock.so`) is, checked to be
//!   built from the same sources as this crate, so that tests never run against a stale mock.
//! - [`pseudo_random`]: deterministic values for weights and activations in kernel tests and
//!   benches.
//! - [`live_handles`] and [`last_error`]: ask the loaded mock how many models, tensors, tensor
//!   sets and tensor-info arrays are alive and how much device memory is in use (a leak check),
//!   and what its last failure message on this thread was (to check that an error names the
//!   right tensor). They call the mock-only exports `neuron_mock_live_handles` and
//!   `neuron_mock_last_error` of the library neuron-sys loaded.
//!
//! The rlib's statics are separate from the loaded library's: everything here talks to the
//! library through the dynamic loader, never through this crate's own copy of the code.

use std::ffi::c_char;
use std::path::{Path, PathBuf};

use neuron_sys::bindings::NRT_STATUS;

/// Identifies the sources this crate was built from; the library embeds the same string.
pub const BUILD_ID: &str = env!("NEURON_MOCK_BUILD_ID");

/// File name cargo gives the mock library.
pub const LIBRARY_FILE: &str = "libneuron_mock.so";

/// Live objects in the mock (the layout `neuron_mock_live_handles` fills).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveHandles {
    /// Loaded models.
    pub models: u64,
    /// Tensors not freed.
    pub tensors: u64,
    /// Tensor sets not destroyed.
    pub tensor_sets: u64,
    /// Tensor-info arrays not freed.
    pub tensor_infos: u64,
    /// Device memory in use, bytes, over all cores (tensors and loaded models).
    pub device_bytes: u64,
}

impl LiveHandles {
    /// Whether nothing is left allocated.
    pub fn is_empty(&self) -> bool {
        *self == LiveHandles::default()
    }
}

/// Why a testing helper failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestingError {
    /// No mock library built from the current sources was found.
    #[error(
        "the mock libnrt ({LIBRARY_FILE}) built from the current sources was not found; looked \
         at: {}{}. Build it first: `cargo build -p neuron-mock{}` (or `scripts/build-mock.sh`), \
         then rerun the tests",
        .tried.join(", "),
        if .stale.is_empty() { String::new() } else { format!("; stale builds (older sources): {}", .stale.join(", ")) },
        if *.release { " --release" } else { "" }
    )]
    NotFound {
        /// Every path looked at.
        tried: Vec<String>,
        /// Paths holding a mock built from other sources.
        stale: Vec<String>,
        /// Whether the tests run in a release build.
        release: bool,
    },
    /// The library could not be opened, or lacks a mock-only export (it is not the mock).
    #[error("{path}: {message}")]
    Library {
        /// The library.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The mock library built from this crate's sources.
///
/// Looks at `NEURON_SYS_LIB` (a file, or a directory holding `libnrt.so.1`) and then next to
/// the running test binary: `target/<profile>/libneuron_mock.so` and
/// `target/<profile>/deps/libneuron_mock*.so`. A library counts only if it embeds this crate's
/// [`BUILD_ID`].
///
/// # Panics
/// If there is none, with the command that builds it: tests must fail loudly, never skip.
pub fn library_path() -> PathBuf {
    match find_library() {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// [`library_path`] without the panic.
///
/// # Errors
/// [`TestingError::NotFound`], listing where it looked.
pub fn find_library() -> Result<PathBuf, TestingError> {
    // Checking a candidate reads the whole file: do it once per process.
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(path) = FOUND.get() {
        return Ok(path.clone());
    }
    let path = search_library()?;
    Ok(FOUND.get_or_init(|| path).clone())
}

fn search_library() -> Result<PathBuf, TestingError> {
    let mut candidates = Vec::new();
    if let Some(value) = std::env::var_os(neuron_sys::NEURON_SYS_LIB).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        if path.is_dir() {
            candidates.push(path.join("libnrt.so.1"));
            candidates.push(path.join("libnrt.so"));
        } else {
            candidates.push(path);
        }
    }
    let profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .map(|dir| {
            if dir.ends_with("deps") {
                dir.parent().map(Path::to_path_buf).unwrap_or(dir)
            } else {
                dir
            }
        });
    if let Some(dir) = &profile_dir {
        candidates.push(dir.join(LIBRARY_FILE));
        let mut in_deps: Vec<PathBuf> = std::fs::read_dir(dir.join("deps"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libneuron_mock") && n.ends_with(".so"))
            })
            .collect();
        in_deps.sort();
        candidates.extend(in_deps);
    }
    let mut tried = Vec::new();
    let mut stale = Vec::new();
    for candidate in candidates {
        match std::fs::read(&candidate) {
            Ok(bytes) if contains(&bytes, BUILD_ID.as_bytes()) => return Ok(candidate),
            Ok(_) => stale.push(candidate.display().to_string()),
            Err(_) => tried.push(candidate.display().to_string()),
        }
    }
    tried.extend(stale.iter().cloned());
    Err(TestingError::NotFound {
        tried,
        stale,
        release: profile_dir.is_some_and(|d| d.ends_with("release")),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Calls a mock-only export of an already loaded library.
fn with_symbol<F: Copy, R>(
    lib: &neuron_sys::Library,
    symbol: &str,
    call: impl FnOnce(F) -> R,
) -> Result<R, TestingError> {
    let err = |message: String| TestingError::Library {
        path: lib.path().to_path_buf(),
        message,
    };
    // SAFETY: the library is already loaded by neuron-sys (opening it again only takes another
    // reference); the mock's initialisers have no preconditions.
    let handle = unsafe { libloading::Library::new(lib.path()) }.map_err(|e| err(e.to_string()))?;
    // SAFETY: the caller names the symbol with its exact C type `F` (the mock-only exports
    // declared in ffi.rs); the function stays valid while `handle` is alive, i.e. during `call`.
    let f = unsafe { handle.get::<F>(symbol.as_bytes()) }.map_err(|e| {
        err(format!(
            "no {symbol} (is this the neuron-mock library?): {e}"
        ))
    })?;
    Ok(call(*f))
}

/// Live objects in the loaded mock: a leak check for the end of a test.
///
/// # Errors
/// [`TestingError::Library`] if `lib` is not the mock.
pub fn live_handles(lib: &neuron_sys::Library) -> Result<LiveHandles, TestingError> {
    type F = unsafe extern "C" fn(*mut LiveHandles, usize) -> NRT_STATUS;
    with_symbol(lib, "neuron_mock_live_handles", |f: F| {
        let mut counts = LiveHandles::default();
        // SAFETY: `counts` is a writable LiveHandles of the size passed.
        let status = unsafe { f(&mut counts, size_of::<LiveHandles>()) };
        (status, counts)
    })
    .and_then(|(status, counts)| {
        if status.is_success() {
            Ok(counts)
        } else {
            Err(TestingError::Library {
                path: lib.path().to_path_buf(),
                message: format!("neuron_mock_live_handles failed: {status}"),
            })
        }
    })
}

/// The loaded mock's last failure message on the calling thread (`"nrt_execute: ..."`), or
/// an empty string.
///
/// # Errors
/// [`TestingError::Library`] if `lib` is not the mock.
pub fn last_error(lib: &neuron_sys::Library) -> Result<String, TestingError> {
    type F = unsafe extern "C" fn(*mut c_char, usize) -> usize;
    with_symbol(lib, "neuron_mock_last_error", |f: F| {
        let mut buf = vec![0u8; 4096];
        // SAFETY: `buf` is writable for its length.
        let len = unsafe { f(buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(len.min(buf.len() - 1));
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// `n` deterministic values in [-1, 1) from `seed` (an xorshift sequence): weights and
/// activations for kernel tests and benches that must not depend on a random crate's
/// version.
pub fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_says_how_to_build() {
        let e = TestingError::NotFound {
            tried: vec!["/t/debug/libneuron_mock.so".into()],
            stale: vec!["/t/debug/deps/libneuron_mock.so".into()],
            release: true,
        };
        let text = e.to_string();
        assert!(
            text.contains("cargo build -p neuron-mock --release"),
            "{text}"
        );
        assert!(
            text.contains("stale builds (older sources): /t/debug/deps"),
            "{text}"
        );
    }

    #[test]
    fn build_id_search() {
        assert!(contains(b"..xx0.1.0-abc..", b"0.1.0-abc"));
        assert!(!contains(b"0.1.0-ab", b"0.1.0-abc"));
        assert!(!contains(b"anything", b""));
        assert!(BUILD_ID.starts_with(env!("CARGO_PKG_VERSION")));
    }
}
