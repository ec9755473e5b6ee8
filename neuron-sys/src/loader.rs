//! Finding and opening libnrt at run time.
//!
//! Search order (the first one that applies decides; an explicit choice that fails is an
//! error, never a quiet fall-through to another library):
//!
//! 1. an explicit path from code: [`load_from`];
//! 2. `NEURON_SYS_LIB`: a file, or a directory holding `libnrt.so.1` (then `libnrt.so`);
//! 3. the system loader: `libnrt.so.1`, then `libnrt.so` (`LD_LIBRARY_PATH`, rpath, ld cache);
//! 4. the SDK's install location, `/opt/aws/neuron/lib/libnrt.so.1`.
//!
//! The library is opened once per process and never closed.

use std::ffi::OsStr;
use std::fmt;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::bindings::{NrtLib, nrt_version_t};
use crate::env;
use crate::types::{DTypeEncoding, RuntimeVersion};

/// The runtime major version this crate's header describes.
pub const SUPPORTED_MAJOR_VERSION: u64 = 2;

/// Where the SDK installs the runtime library.
pub const SDK_LIBRARY_PATH: &str = "/opt/aws/neuron/lib/libnrt.so.1";

/// Why a particular library was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadSource {
    /// A path given in code ([`load_from`], [`Library::open`]).
    Explicit,
    /// The `NEURON_SYS_LIB` environment variable.
    EnvVar,
    /// The system loader found this soname.
    SystemLoader,
    /// The SDK's default install location.
    SdkDefault,
}

impl fmt::Display for LoadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadSource::Explicit => "path given by the program",
            LoadSource::EnvVar => "NEURON_SYS_LIB",
            LoadSource::SystemLoader => "system library search path",
            LoadSource::SdkDefault => "Neuron SDK install location",
        })
    }
}

/// One place the loader tried, and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// A path, or a bare soname handed to the system loader.
    pub candidate: String,
    /// What went wrong.
    pub reason: String,
}

/// Failure to find or open libnrt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// No candidate could be opened.
    #[error(
        "libnrt could not be loaded; tried: {}. Install the Neuron runtime \
         (package aws-neuronx-runtime-lib), or point NEURON_SYS_LIB at a libnrt.so.1 \
         (for the mock device: scripts/build-mock.sh prints the export line)",
        format_attempts(.tried)
    )]
    NotFound {
        /// Every candidate in order, with the reason it failed.
        tried: Vec<Attempt>,
    },
    /// An explicitly chosen library could not be opened.
    #[error("cannot open {path} (chosen by {chosen_by}): {message}")]
    Open {
        /// The path that was chosen.
        path: PathBuf,
        /// Who chose it.
        chosen_by: LoadSource,
        /// The dynamic loader's message.
        message: String,
    },
    /// The library reports a runtime major version this crate does not describe.
    #[error(
        "{path} reports runtime version {found}, but neuron-sys describes major version \
         {required}; use a matching neuron-sys release"
    )]
    Incompatible {
        /// The library's path.
        path: PathBuf,
        /// The version it reports.
        found: String,
        /// The major version this crate supports.
        required: u64,
    },
    /// A different library is already loaded in this process.
    #[error(
        "libnrt is already loaded from {loaded}; cannot also load {requested} \
         (the library is process-wide and is loaded once)"
    )]
    AlreadyInitialized {
        /// The library in use.
        loaded: PathBuf,
        /// The one that was asked for.
        requested: PathBuf,
    },
}

fn format_attempts(tried: &[Attempt]) -> String {
    tried
        .iter()
        .map(|a| format!("{} ({})", a.candidate, a.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A symbol the loaded library does not export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{library} does not export {symbol} (it may be older or newer than this API): {message}")]
pub struct MissingSymbol {
    /// The C function's name.
    pub symbol: &'static str,
    /// The library it was looked up in.
    pub library: PathBuf,
    /// The dynamic loader's message.
    pub message: String,
}

/// An opened libnrt: the per-symbol function table plus what was learnt at load time.
pub struct Library {
    raw: NrtLib,
    path: PathBuf,
    source: LoadSource,
    version: Option<RuntimeVersion>,
    dtype_encoding: DTypeEncoding,
}

impl fmt::Debug for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("source", &self.source)
            .field("version", &self.version)
            .field("dtype_encoding", &self.dtype_encoding)
            .finish_non_exhaustive()
    }
}

impl Library {
    /// Opens the library at `path` without making it the process-wide library.
    ///
    /// Useful for tools and tests that inspect a library; programs normally use [`lib`] or
    /// [`load_from`]. A bare name without `/` goes through the system loader's search.
    ///
    /// # Errors
    /// [`LoadError::Open`] if the dynamic loader refuses the file, [`LoadError::Incompatible`]
    /// if it reports an unsupported runtime major version.
    pub fn open(path: impl AsRef<Path>) -> Result<Library, LoadError> {
        Library::open_with_source(path.as_ref(), LoadSource::Explicit)
    }

    fn open_with_source(path: &Path, source: LoadSource) -> Result<Library, LoadError> {
        // SAFETY: opening a shared object runs its initialisers. libnrt and the project's mock
        // are ordinary C-ABI libraries whose initialisers have no preconditions; loading an
        // arbitrary library is exactly what the caller asked for by naming it.
        let raw = unsafe { NrtLib::new(path.as_os_str()) }.map_err(|e| LoadError::Open {
            path: path.to_path_buf(),
            chosen_by: source.clone(),
            message: e.to_string(),
        })?;
        let version = read_version(&raw);
        if let Some(v) = &version
            && v.major != SUPPORTED_MAJOR_VERSION
        {
            return Err(LoadError::Incompatible {
                path: path.to_path_buf(),
                found: v.to_string(),
                required: SUPPORTED_MAJOR_VERSION,
            });
        }
        let dtype_encoding = DTypeEncoding::for_version(version.as_ref());
        tracing::debug!(path = %path.display(), %source, version = ?version, "loaded libnrt");
        Ok(Library {
            raw,
            path: path.to_path_buf(),
            source,
            version,
            dtype_encoding,
        })
    }

    /// The generated function table. Each field is a `Result`: a symbol the library lacks
    /// is an `Err`. Prefer [`nrt_fn!`](crate::nrt_fn), which turns that into
    /// [`MissingSymbol`]; never call the table's generated convenience methods, which panic.
    pub fn raw(&self) -> &NrtLib {
        &self.raw
    }

    /// The path (or soname) the library was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why this library was chosen.
    pub fn source(&self) -> &LoadSource {
        &self.source
    }

    /// The version the library reported, or `None` if it has no `nrt_get_version` (runtimes
    /// before 2.9) or the call failed.
    pub fn runtime_version(&self) -> Option<&RuntimeVersion> {
        self.version.as_ref()
    }

    /// How this runtime numbers element types.
    pub fn dtype_encoding(&self) -> DTypeEncoding {
        self.dtype_encoding
    }

    /// Builds the error for a symbol this library lacks. Used by [`nrt_fn!`](crate::nrt_fn).
    #[doc(hidden)]
    pub fn missing_symbol(&self, symbol: &'static str, error: &libloading::Error) -> MissingSymbol {
        MissingSymbol {
            symbol,
            library: self.path.clone(),
            message: error.to_string(),
        }
    }
}

/// Calls `nrt_get_version` if the library has it.
fn read_version(raw: &NrtLib) -> Option<RuntimeVersion> {
    let get_version = raw.nrt_get_version.as_ref().ok()?;
    let mut out = MaybeUninit::<nrt_version_t>::zeroed();
    // SAFETY: `out` is a valid, writable nrt_version_t of the size passed; the function
    // writes at most that many bytes and works before nrt_init.
    let status = unsafe { get_version(out.as_mut_ptr(), size_of::<nrt_version_t>()) };
    if !status.is_success() {
        tracing::warn!(%status, "nrt_get_version failed; assuming the legacy dtype encoding");
        return None;
    }
    // SAFETY: zero-initialised and then (partly) filled by the library; every bit pattern is
    // a valid nrt_version_t (integers and char arrays).
    let raw_version = unsafe { out.assume_init() };
    Some(RuntimeVersion::from_raw(&raw_version))
}

/// Resolves a function pointer from a [`Library`], or a [`MissingSymbol`] naming it.
///
/// ```no_run
/// let lib = neuron_sys::lib()?;
/// let init = neuron_sys::nrt_fn!(lib, nrt_init)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! nrt_fn {
    ($lib:expr, $name:ident) => {{
        let lib: &$crate::Library = $lib;
        match &lib.raw().$name {
            Ok(f) => Ok(*f),
            Err(e) => Err(lib.missing_symbol(stringify!($name), e)),
        }
    }};
}

/// One step of the search plan, before touching the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A file named by the user: used as it is.
    File(PathBuf, LoadSource),
    /// A directory named by the user: look for `libnrt.so.1`, then `libnrt.so` inside.
    Dir(PathBuf),
    /// A soname for the system loader.
    Soname(&'static str),
    /// A fixed path of the SDK.
    Sdk(&'static str),
}

/// The search plan. An explicit path or the variable, when present, is the whole plan.
fn plan(explicit: Option<&Path>, env_value: Option<&OsStr>, env_is_dir: bool) -> Vec<Step> {
    if let Some(path) = explicit {
        return vec![Step::File(path.to_path_buf(), LoadSource::Explicit)];
    }
    if let Some(value) = env_value {
        let path = PathBuf::from(value);
        return vec![if env_is_dir {
            Step::Dir(path)
        } else {
            Step::File(path, LoadSource::EnvVar)
        }];
    }
    vec![
        Step::Soname("libnrt.so.1"),
        Step::Soname("libnrt.so"),
        Step::Sdk(SDK_LIBRARY_PATH),
    ]
}

/// Runs the search plan; returns the first library that opens. `env_value` is the value of
/// `NEURON_SYS_LIB` (read by the caller, so that tests can pass one without touching the
/// process environment).
fn search(explicit: Option<&Path>, env_value: Option<&OsStr>) -> Result<Library, LoadError> {
    let env_is_dir = env_value.is_some_and(|v| Path::new(v).is_dir());
    let mut tried = Vec::new();
    for step in plan(explicit, env_value, env_is_dir) {
        match step {
            Step::File(path, source) => {
                // A user's explicit choice is final: report its failure as it is.
                return Library::open_with_source(&path, source);
            }
            Step::Dir(dir) => {
                for name in ["libnrt.so.1", "libnrt.so"] {
                    let path = dir.join(name);
                    if !path.exists() {
                        tried.push(Attempt {
                            candidate: path.display().to_string(),
                            reason: format!(
                                "no such file (directory from {})",
                                env::NEURON_SYS_LIB
                            ),
                        });
                        continue;
                    }
                    return Library::open_with_source(&path, LoadSource::EnvVar);
                }
                return Err(LoadError::NotFound { tried });
            }
            Step::Soname(name) => {
                match Library::open_with_source(Path::new(name), LoadSource::SystemLoader) {
                    Ok(lib) => return Ok(lib),
                    Err(e @ LoadError::Incompatible { .. }) => return Err(e),
                    Err(e) => tried.push(Attempt {
                        candidate: name.to_string(),
                        reason: reason_of(&e),
                    }),
                }
            }
            Step::Sdk(path) => {
                if !Path::new(path).exists() {
                    tried.push(Attempt {
                        candidate: path.to_string(),
                        reason: "no such file".into(),
                    });
                    continue;
                }
                match Library::open_with_source(Path::new(path), LoadSource::SdkDefault) {
                    Ok(lib) => return Ok(lib),
                    Err(e @ LoadError::Incompatible { .. }) => return Err(e),
                    Err(e) => tried.push(Attempt {
                        candidate: path.to_string(),
                        reason: reason_of(&e),
                    }),
                }
            }
        }
    }
    Err(LoadError::NotFound { tried })
}

fn reason_of(error: &LoadError) -> String {
    match error {
        LoadError::Open { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The process-wide library, once loaded. Leaked on purpose: libnrt is never unloaded.
static GLOBAL: Mutex<Option<&'static Library>> = Mutex::new(None);

fn global_or_load(explicit: Option<&Path>) -> Result<&'static Library, LoadError> {
    let mut slot = GLOBAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(lib) = *slot {
        return match explicit {
            Some(requested) if !same_file(requested, lib.path()) => {
                Err(LoadError::AlreadyInitialized {
                    loaded: lib.path().to_path_buf(),
                    requested: requested.to_path_buf(),
                })
            }
            _ => Ok(lib),
        };
    }
    // Failures are not cached, so a later call (say with an explicit path) can still succeed.
    let env_value = if explicit.is_none() {
        env::lib_override()
    } else {
        None
    };
    let lib: &'static Library = Box::leak(Box::new(search(explicit, env_value.as_deref())?));
    *slot = Some(lib);
    Ok(lib)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The process-wide libnrt, loaded on first use.
///
/// Search order (the first one that applies decides; an explicit choice that fails is an
/// error, never a quiet fall-through to another library):
///
/// 1. an explicit path from code: [`load_from`] (the CLI's `--lib`);
/// 2. `NEURON_SYS_LIB`: a file, or a directory holding `libnrt.so.1` (then `libnrt.so`);
/// 3. the system loader: `libnrt.so.1`, then `libnrt.so` (`LD_LIBRARY_PATH`, rpath, ld cache);
/// 4. the SDK's install location, `/opt/aws/neuron/lib/libnrt.so.1`.
///
/// The library is opened once per process and never closed.
///
/// # Errors
/// A [`LoadError`] that names every place tried and why each failed.
pub fn lib() -> Result<&'static Library, LoadError> {
    global_or_load(None)
}

/// Loads the process-wide libnrt from an explicit path (a file, or a soname for the system
/// loader). Returns the already-loaded library if it is the same file.
///
/// # Errors
/// [`LoadError::AlreadyInitialized`] if a different library is already loaded;
/// [`LoadError::Open`] if this one cannot be opened.
pub fn load_from(path: impl AsRef<Path>) -> Result<&'static Library, LoadError> {
    global_or_load(Some(path.as_ref()))
}

/// Whether a libnrt can be loaded (loading it if it has not been). Never fails or panics.
pub fn is_available() -> bool {
    lib().is_ok()
}

/// The process-wide library if one is loaded already; never loads.
pub fn loaded() -> Option<&'static Library> {
    *GLOBAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_is_the_whole_plan() {
        let p = plan(
            Some(Path::new("/x/libnrt.so.1")),
            Some(OsStr::new("/ignored")),
            false,
        );
        assert_eq!(
            p,
            vec![Step::File("/x/libnrt.so.1".into(), LoadSource::Explicit)]
        );
    }

    #[test]
    fn env_var_file_or_directory() {
        assert_eq!(
            plan(None, Some(OsStr::new("/m/libneuron_mock.so")), false),
            vec![Step::File(
                "/m/libneuron_mock.so".into(),
                LoadSource::EnvVar
            )]
        );
        assert_eq!(
            plan(None, Some(OsStr::new("/m")), true),
            vec![Step::Dir("/m".into())]
        );
    }

    #[test]
    fn default_plan_is_system_loader_then_sdk() {
        assert_eq!(
            plan(None, None, false),
            vec![
                Step::Soname("libnrt.so.1"),
                Step::Soname("libnrt.so"),
                Step::Sdk(SDK_LIBRARY_PATH)
            ]
        );
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("neuron-sys-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn env_directory_without_the_library_lists_both_names() {
        let dir = scratch_dir("empty");
        let err = search(None, Some(dir.as_os_str())).unwrap_err();
        let LoadError::NotFound { tried } = &err else {
            panic!("unexpected {err:?}")
        };
        assert_eq!(tried.len(), 2);
        assert!(tried[0].candidate.ends_with("libnrt.so.1"));
        assert!(tried[1].candidate.ends_with("libnrt.so"));
        assert!(err.to_string().contains("NEURON_SYS_LIB"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn env_file_that_does_not_exist_is_an_error_not_a_fallthrough() {
        let err = search(None, Some(OsStr::new("/nonexistent/libnrt.so.1"))).unwrap_err();
        match &err {
            LoadError::Open {
                path, chosen_by, ..
            } => {
                assert_eq!(path, Path::new("/nonexistent/libnrt.so.1"));
                assert_eq!(*chosen_by, LoadSource::EnvVar);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string().contains("chosen by NEURON_SYS_LIB"),
            "{err}"
        );
    }

    #[test]
    fn env_directory_with_a_file_that_is_not_a_library_reports_the_loader_error() {
        let dir = scratch_dir("bogus");
        std::fs::write(dir.join("libnrt.so.1"), b"not an ELF file").unwrap();
        let err = search(None, Some(dir.as_os_str())).unwrap_err();
        assert!(matches!(err, LoadError::Open { .. }), "{err:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn not_found_message_lists_every_attempt_and_says_what_to_do() {
        let e = LoadError::NotFound {
            tried: vec![
                Attempt {
                    candidate: "libnrt.so.1".into(),
                    reason: "not in search path".into(),
                },
                Attempt {
                    candidate: SDK_LIBRARY_PATH.into(),
                    reason: "no such file".into(),
                },
            ],
        };
        let text = e.to_string();
        assert!(text.contains("libnrt.so.1 (not in search path)"), "{text}");
        assert!(
            text.contains("/opt/aws/neuron/lib/libnrt.so.1 (no such file)"),
            "{text}"
        );
        assert!(text.contains("NEURON_SYS_LIB"), "{text}");
        assert!(text.contains("aws-neuronx-runtime-lib"), "{text}");
    }
}
