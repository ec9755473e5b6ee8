//! [`Runtime`]: the process-wide libnrt session (`nrt_init` .. `nrt_close`) and its queries.

use std::ffi::CString;
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::error::{Error, Result, Subject};
use crate::raw::{
    self, DTypeEncoding, Library, LoadSource, RuntimeVersion, c_chars_to_string,
    nrt_framework_type_t, nrt_instance_info_t, nrt_vnc_memory_stats_t, sym,
};

/// The live runtime of this process, if any. `Some` from a successful `nrt_init` until the
/// runtime's `nrt_close` has returned, so a new `init` can never overlap an old close.
static LIVE: Mutex<Option<Weak<Runtime>>> = Mutex::new(None);

fn live() -> MutexGuard<'static, Option<Weak<Runtime>>> {
    // A panic while holding this lock cannot leave the Option inconsistent.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The framework a process reports to libnrt at `nrt_init` (used only to label the process in
/// the runtime's tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Framework {
    /// No framework (`NRT_FRAMEWORK_TYPE_NO_FW`): plain Rust applications.
    #[default]
    None,
    /// PyTorch.
    PyTorch,
    /// TensorFlow.
    TensorFlow,
    /// MXNet.
    MxNet,
}

impl Framework {
    fn raw(self) -> nrt_framework_type_t {
        match self {
            Framework::None => nrt_framework_type_t::NRT_FRAMEWORK_TYPE_NO_FW,
            Framework::PyTorch => nrt_framework_type_t::NRT_FRAMEWORK_TYPE_PYTORCH,
            Framework::TensorFlow => nrt_framework_type_t::NRT_FRAMEWORK_TYPE_TENSORFLOW,
            Framework::MxNet => nrt_framework_type_t::NRT_FRAMEWORK_TYPE_MXNET,
        }
    }
}

/// Options for [`Runtime::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "call .init() to initialise the runtime"]
pub struct RuntimeBuilder {
    lib_path: Option<PathBuf>,
    framework: Framework,
    framework_version: String,
    fal_version: String,
    pending_error: Option<String>,
}

impl RuntimeBuilder {
    /// Loads libnrt from this file instead of the search order of `neuron_sys::lib` (step 1 of
    /// that order: the CLI's `--lib`). Ignored if the same library is already loaded; an error
    /// at [`init`](Self::init) if a different one is.
    pub fn lib_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.lib_path = Some(path.into());
        self
    }

    /// The framework to report, with its version and the framework-adapter version (empty
    /// strings by default).
    pub fn framework(
        mut self,
        framework: Framework,
        version: impl Into<String>,
        fal_version: impl Into<String>,
    ) -> Self {
        self.framework = framework;
        self.framework_version = version.into();
        self.fal_version = fal_version.into();
        self
    }

    /// Reserves only the NeuronCores `cores` (absolute core indices, as `neuron-ls` numbers
    /// them) for this process. After `init`, the API numbers them from 0.
    ///
    /// libnrt takes this only from the environment variable `NEURON_RT_VISIBLE_CORES`, read by
    /// `nrt_init`; this method sets that variable in the process environment, now. Where the
    /// environment is set by the launcher (the usual way), leave this out.
    ///
    /// # Safety
    ///
    /// The same as [`std::env::set_var`]: no other thread may read or write the process
    /// environment while this runs (in practice: call it before starting threads).
    pub unsafe fn visible_cores(mut self, cores: Range<u32>) -> Self {
        if cores.is_empty() {
            self.pending_error = Some(format!("visible core range {cores:?} is empty"));
            return self;
        }
        let value = format!("{}-{}", cores.start, cores.end - 1);
        tracing::debug!(%value, "setting NEURON_RT_VISIBLE_CORES");
        // SAFETY: the caller guarantees that no other thread touches the environment now.
        unsafe { std::env::set_var("NEURON_RT_VISIBLE_CORES", value) };
        self
    }

    /// Loads libnrt if needed and calls `nrt_init`.
    ///
    /// # Errors
    /// [`Error::RuntimeExists`] if a runtime is already live in this process;
    /// [`Error::Load`] if libnrt cannot be loaded; [`Error::Nrt`] if `nrt_init` fails (for
    /// example because another process holds the NeuronCores); [`Error::InvalidArgument`] for
    /// a version string with a NUL byte or an empty core range.
    pub fn init(self) -> Result<Arc<Runtime>> {
        if let Some(message) = self.pending_error {
            return Err(Error::InvalidArgument {
                what: "visible cores",
                message,
            });
        }
        let c_string = |what, text: String| {
            CString::new(text).map_err(|e| Error::InvalidArgument {
                what,
                message: e.to_string(),
            })
        };
        let fw_version = c_string("framework version", self.framework_version)?;
        let fal_version = c_string("framework adapter version", self.fal_version)?;

        let mut slot = live();
        if slot.is_some() {
            return Err(Error::RuntimeExists);
        }
        let lib = raw::load(self.lib_path.as_deref())?;
        let nrt_init = sym!(lib, nrt_init)?;
        // Resolve nrt_close before initialising: a library that cannot be closed again is
        // refused up front rather than leaked at drop.
        sym!(lib, nrt_close)?;
        // SAFETY: both strings are valid NUL-terminated C strings that outlive the call.
        let status = unsafe {
            nrt_init(
                self.framework.raw(),
                fw_version.as_ptr(),
                fal_version.as_ptr(),
            )
        };
        raw::check(status, "nrt_init")?;
        let runtime = Arc::new(Runtime { lib });
        *slot = Some(Arc::downgrade(&runtime));
        tracing::debug!(library = %lib.path().display(), "libnrt initialised");
        Ok(runtime)
    }
}

/// The libnrt runtime of this process: `nrt_init` when built, `nrt_close` when the last
/// reference goes.
///
/// libnrt is process-wide, so there is one `Runtime` per process at a time, shared as
/// `Arc<Runtime>`. Every [`Model`](crate::Model), [`Tensor`](crate::Tensor) and
/// [`TensorSet`](crate::TensorSet) holds a clone of that `Arc`, so the runtime is closed only
/// after all of them are gone, whatever order user code drops them in. After it is closed a
/// new one may be initialised.
///
/// `Runtime` is `Send + Sync` without any unsafe code: it holds only the loaded library, whose
/// function table is immutable; the queries it offers are answered by libnrt's process-wide
/// state, which the runtime keeps consistent across threads (several threads may execute
/// models at once, libnrt-api.md §3.5).
pub struct Runtime {
    lib: &'static Library,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.lib.path())
            .field("version", &self.lib.runtime_version())
            .finish()
    }
}

impl Runtime {
    /// Options for initialising the runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// Initialises the runtime with the defaults: the library found by the search order of
    /// `neuron_sys::lib`, no framework, the cores the environment makes visible.
    ///
    /// # Errors
    /// As [`RuntimeBuilder::init`].
    pub fn init() -> Result<Arc<Runtime>> {
        Runtime::builder().init()
    }

    /// The live runtime of this process, if there is one.
    pub fn current() -> Option<Arc<Runtime>> {
        live().as_ref().and_then(Weak::upgrade)
    }

    /// Closes the runtime now (`nrt_close`), giving the NeuronCores back.
    ///
    /// Dropping the last `Arc<Runtime>` does the same; this says so explicitly and reports
    /// objects that still hold the runtime instead of waiting for them.
    ///
    /// # Errors
    /// [`Error::RuntimeInUse`] if models, tensors, tensor sets or other clones still hold it
    /// (the runtime then stays open until they are dropped).
    pub fn close(self: Arc<Self>) -> Result<()> {
        match Arc::try_unwrap(self) {
            Ok(runtime) => {
                drop(runtime);
                Ok(())
            }
            Err(shared) => Err(Error::RuntimeInUse {
                holders: Arc::strong_count(&shared) - 1,
            }),
        }
    }

    /// The loaded library, for the other modules of this crate.
    pub(crate) fn lib(&self) -> &'static Library {
        self.lib
    }

    /// The version libnrt reports (`nrt_get_version`), or `None` for a runtime too old to
    /// report one.
    pub fn version(&self) -> Option<&RuntimeVersion> {
        self.lib.runtime_version()
    }

    /// The path (or soname) libnrt was loaded from.
    pub fn library_path(&self) -> &Path {
        self.lib.path()
    }

    /// Why that library was chosen (explicit path, `NEURON_SYS_LIB`, system search, SDK path).
    pub fn library_source(&self) -> &LoadSource {
        self.lib.source()
    }

    /// How this runtime numbers element types (it changed at runtime 2.30).
    pub fn dtype_encoding(&self) -> DTypeEncoding {
        self.lib.dtype_encoding()
    }

    /// Logical NeuronCores on the instance, visible or not (`nrt_get_total_vnc_count`, or
    /// `nrt_get_total_nc_count` on runtimes before 2.29).
    ///
    /// # Errors
    /// [`Error::Nrt`] if the call fails; [`Error::MissingSymbol`] if the library has neither.
    pub fn total_cores(&self) -> Result<u32> {
        let f = sym!(self.lib, nrt_get_total_vnc_count)
            .or_else(|_| sym!(self.lib, nrt_get_total_nc_count))?;
        let mut count = 0u32;
        // SAFETY: `count` is a valid u32 to write.
        let status = unsafe { f(&mut count) };
        raw::check(status, "nrt_get_total_vnc_count")?;
        Ok(count)
    }

    /// Logical NeuronCores this process may use (`nrt_get_visible_vnc_count`, or the older
    /// `nrt_get_visible_nc_count`). Core indices in this API run from 0 to this count.
    ///
    /// # Errors
    /// As [`Runtime::total_cores`].
    pub fn visible_cores(&self) -> Result<u32> {
        let f = sym!(self.lib, nrt_get_visible_vnc_count)
            .or_else(|_| sym!(self.lib, nrt_get_visible_nc_count))?;
        let mut count = 0u32;
        // SAFETY: `count` is a valid u32 to write.
        let status = unsafe { f(&mut count) };
        raw::check(status, "nrt_get_visible_vnc_count")?;
        Ok(count)
    }

    /// The instance type (`nrt_get_instance_info`).
    ///
    /// # Errors
    /// [`Error::Nrt`] if the call fails; [`Error::MissingSymbol`] on runtimes before 2.29.
    pub fn instance_info(&self) -> Result<InstanceInfo> {
        let f = sym!(self.lib, nrt_get_instance_info)?;
        let mut info = MaybeUninit::<nrt_instance_info_t>::zeroed();
        // SAFETY: `info` is writable for the size passed; older runtimes fill only a prefix,
        // and the rest stays zero.
        let status = unsafe { f(info.as_mut_ptr(), size_of::<nrt_instance_info_t>()) };
        raw::check(status, "nrt_get_instance_info")?;
        // SAFETY: zero-initialised, then (partly) filled; every bit pattern of its integer and
        // char fields is valid.
        let info = unsafe { info.assume_init() };
        Ok(InstanceInfo {
            family_code: info.family,
            size_code: info.size,
            arch_name: c_chars_to_string(&info.arch_name),
            device_revision: c_chars_to_string(&info.device_revision),
        })
    }

    /// Device memory in use on one logical core, and its limit (`nrt_get_vnc_memory_stats`).
    ///
    /// Tests use it as a leak check: after every tensor and model is dropped, `used` is back
    /// where it was after [`init`](Self::init).
    ///
    /// # Errors
    /// [`Error::Nrt`] (naming the core) if the call fails, for example for a core that is not
    /// visible; [`Error::MissingSymbol`] on runtimes before 2.27.
    pub fn memory_stats(&self, core: u32) -> Result<MemoryStats> {
        let f = sym!(self.lib, nrt_get_vnc_memory_stats)?;
        let mut stats = nrt_vnc_memory_stats_t {
            bytes_used: 0,
            bytes_limit: 0,
        };
        let mut written = 0usize;
        // SAFETY: `stats` is writable for the size passed and `written` is a valid usize; the
        // library writes at most `stats_size_in` bytes.
        let status = unsafe {
            f(
                core,
                &mut stats,
                size_of::<nrt_vnc_memory_stats_t>(),
                &mut written,
            )
        };
        raw::check_for(status, "nrt_get_vnc_memory_stats", || Subject::Core(core))?;
        Ok(MemoryStats {
            used: stats.bytes_used,
            limit: stats.bytes_limit,
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let mut slot = live();
        match sym!(self.lib, nrt_close) {
            Ok(nrt_close) => {
                // SAFETY: every model, tensor and tensor set holds an Arc<Runtime>, so none
                // is left when the last reference is dropped: closing is the last call.
                unsafe { nrt_close() };
                tracing::debug!("libnrt closed");
            }
            // Checked at init, so unreachable in practice; never panic in drop.
            Err(e) => tracing::warn!(error = %e, "cannot close libnrt"),
        }
        *slot = None;
    }
}

/// Device memory of one logical NeuronCore, from [`Runtime::memory_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Bytes in use.
    pub used: usize,
    /// Bytes available to the core in total.
    pub limit: usize,
}

/// The instance type, from [`Runtime::instance_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceInfo {
    /// The raw family code (`NRT_INSTANCE_*`).
    pub family_code: u32,
    /// The raw size code (`NRT_INSTANCE_SIZE_*`).
    pub size_code: u32,
    /// The architecture name the runtime reports (empty on runtimes before 2.30).
    pub arch_name: String,
    /// The device revision the runtime reports (empty on runtimes before 2.30).
    pub device_revision: String,
}

impl InstanceInfo {
    /// The family in lower case (`inf2`, `trn1`, ...), or `None` for a code this crate does
    /// not know (or `UNKNOWN`).
    pub fn family(&self) -> Option<String> {
        let name = raw::instance_family_name(self.family_code)?;
        let family = name.strip_prefix("NRT_INSTANCE_")?;
        (family != "UNKNOWN").then(|| family.to_ascii_lowercase())
    }

    /// The size as in instance type names (`xlarge`, `32xlarge`, ...), or `None` for a code
    /// this crate does not know (or `UNKNOWN`).
    pub fn size(&self) -> Option<String> {
        let name = raw::instance_size_name(self.size_code)?;
        let size = name.strip_prefix("NRT_INSTANCE_SIZE_")?;
        match size {
            "UNKNOWN" => None,
            "1XL" => Some("xlarge".into()),
            other => Some(format!(
                "{}xlarge",
                other.strip_suffix("XL").unwrap_or(other)
            )),
        }
    }

    /// The instance type (`inf2.xlarge`), when both family and size are known.
    pub fn instance_type(&self) -> Option<String> {
        Some(format!("{}.{}", self.family()?, self.size()?))
    }
}

impl fmt::Display for InstanceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.instance_type() {
            Some(name) => f.write_str(&name)?,
            None => write!(
                f,
                "unknown instance (family {}, size {})",
                self.family_code, self.size_code
            )?,
        }
        if !self.arch_name.is_empty() {
            write!(f, " ({})", self.arch_name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(family_code: u32, size_code: u32) -> InstanceInfo {
        InstanceInfo {
            family_code,
            size_code,
            arch_name: String::new(),
            device_revision: String::new(),
        }
    }

    #[test]
    fn instance_names_follow_the_codes() {
        assert_eq!(info(4, 0).instance_type().as_deref(), Some("inf2.xlarge"));
        assert_eq!(info(4, 7).instance_type().as_deref(), Some("inf2.48xlarge"));
        assert_eq!(info(2, 1).instance_type().as_deref(), Some("trn1.2xlarge"));
        assert_eq!(info(2, 6).instance_type().as_deref(), Some("trn1.32xlarge"));
        assert_eq!(info(5, 7).instance_type().as_deref(), Some("trn2.48xlarge"));
        assert_eq!(info(0, 0).instance_type(), None);
        assert_eq!(info(4, 9).instance_type(), None);
        assert_eq!(info(99, 0).family(), None);
        assert_eq!(
            info(99, 0).to_string(),
            "unknown instance (family 99, size 0)"
        );
    }
}
