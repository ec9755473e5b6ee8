//! [`TensorSet`]: named tensors, the argument list of an execution.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result, Subject};
use crate::raw::{self, nrt_tensor_set_t, sym};
use crate::runtime::Runtime;
use crate::tensor::Tensor;

/// Named tensors: what a model execution takes as its inputs or writes as its outputs.
///
/// The keys are the model's tensor names (see [`Model::inputs`](crate::Model::inputs)). The
/// set keeps every tensor it holds alive (libnrt's sets do not own their tensors), and a
/// tensor may sit in several sets at once through its `Arc`. Build sets once and reuse them
/// for every execution: executing with a prepared set does no allocation and no name
/// lookups on the Rust side.
///
/// ```
/// # use std::sync::Arc;
/// # use neuron_rt::{Placement, Runtime, Tensor, TensorSet};
/// # fn main() -> neuron_rt::Result<()> {
/// let rt = Runtime::init()?;
/// let weights = Arc::new(Tensor::zeros::<f32>(&rt, Placement::Device(0), &[8, 8], "w")?);
/// let x = Tensor::zeros::<f32>(&rt, Placement::Device(0), &[8], "x")?;
/// let inputs = TensorSet::builder(&rt)
///     .tensor("weights", Arc::clone(&weights))
///     .tensor("x", x)
///     .build()?;
/// assert_eq!(inputs.len(), 2);
/// # Ok(()) }
/// ```
pub struct TensorSet {
    raw: NonNull<nrt_tensor_set_t>,
    tensors: BTreeMap<String, Arc<Tensor>>,
    /// The last model binding (model id and usage, see [`TensorSet::checked_key`]) this set
    /// was validated for; 0 for none. Reset by every change to the set.
    checked: AtomicU64,
    runtime: Arc<Runtime>,
}

// SAFETY: a tensor set is a handle to process-wide libnrt state, not tied to a thread (libnrt
// documents that several threads may execute models, and executions take sets: nrt_api.h on
// nrt_execute, "Several threads may execute the same model"). The tensors it holds are Send.
unsafe impl Send for TensorSet {}

// SAFETY: every libnrt call that changes the set (`nrt_add_tensor_to_tensor_set`) takes
// `&mut self`. Through `&TensorSet` libnrt only sees the set as the `const nrt_tensor_set_t *`
// input of `nrt_execute`, a read-only use that several threads may make at once (executions
// of a model from several threads are documented, nrt_api.h on nrt_execute). Everything else
// reachable through `&self` is Rust data that is Sync (the map, the atomic, Arc<Tensor>).
unsafe impl Sync for TensorSet {}

impl fmt::Debug for TensorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.tensors.iter()).finish()
    }
}

impl TensorSet {
    /// An empty set (`nrt_allocate_tensor_set`).
    ///
    /// # Errors
    /// [`Error::Nrt`] if libnrt cannot allocate it.
    pub fn new(runtime: &Arc<Runtime>) -> Result<TensorSet> {
        let lib = runtime.lib();
        let allocate = sym!(lib, nrt_allocate_tensor_set)?;
        sym!(lib, nrt_destroy_tensor_set)?;
        sym!(lib, nrt_add_tensor_to_tensor_set)?;
        let mut out = ptr::null_mut();
        // SAFETY: `out` is a valid place for the handle.
        let status = unsafe { allocate(&mut out) };
        raw::check_for(status, "nrt_allocate_tensor_set", || Subject::TensorSet)?;
        Ok(TensorSet {
            raw: raw::non_null(out, "nrt_allocate_tensor_set")?,
            tensors: BTreeMap::new(),
            checked: AtomicU64::new(0),
            runtime: Arc::clone(runtime),
        })
    }

    /// Collects tensors first and builds the set at the end.
    pub fn builder(runtime: &Arc<Runtime>) -> TensorSetBuilder {
        TensorSetBuilder {
            runtime: Arc::clone(runtime),
            entries: Vec::new(),
        }
    }

    /// Binds `tensor` under `name` (`nrt_add_tensor_to_tensor_set`), replacing and returning
    /// the tensor bound to that name before, if any. Pass an `Arc<Tensor>` to share a tensor
    /// with other sets.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name with a NUL byte; [`Error::Nrt`] if libnrt refuses.
    pub fn insert(
        &mut self,
        name: &str,
        tensor: impl Into<Arc<Tensor>>,
    ) -> Result<Option<Arc<Tensor>>> {
        let tensor = tensor.into();
        let c_name = CString::new(name).map_err(|_| Error::InvalidArgument {
            what: "tensor set key",
            message: format!("{name:?} contains a NUL byte"),
        })?;
        let add = sym!(self.runtime.lib(), nrt_add_tensor_to_tensor_set)?;
        // SAFETY: the set and the tensor are live handles; the name is a valid C string that
        // libnrt copies. The set keeps the tensor alive through the Arc stored below.
        let status = unsafe { add(self.raw.as_ptr(), c_name.as_ptr(), tensor.as_raw()) };
        raw::check_for(status, "nrt_add_tensor_to_tensor_set", || {
            Subject::Tensor(name.to_string())
        })?;
        self.checked.store(0, Ordering::Relaxed);
        Ok(self.tensors.insert(name.to_string(), tensor))
    }

    /// The tensor bound to `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Tensor>> {
        self.tensors.get(name)
    }

    /// The tensor bound to `name`, or an error listing the names that are bound.
    ///
    /// # Errors
    /// [`Error::UnknownTensor`] if nothing is bound to `name`.
    pub fn tensor(&self, name: &str) -> Result<&Arc<Tensor>> {
        self.tensors.get(name).ok_or_else(|| Error::UnknownTensor {
            name: name.to_string(),
            owner: Subject::TensorSet,
            known: self.tensors.keys().cloned().collect(),
        })
    }

    /// Whether a tensor is bound to `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// How many tensors are bound.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The bound names and tensors, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<Tensor>)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The raw libnrt handle, for calls this crate does not wrap. The caller must not destroy
    /// it, nor add tensors to it behind this set's back.
    pub fn as_raw(&self) -> *mut nrt_tensor_set_t {
        self.raw.as_ptr()
    }

    /// Whether the set was validated for `key` and has not changed since.
    #[inline]
    pub(crate) fn is_checked(&self, key: u64) -> bool {
        self.checked.load(Ordering::Relaxed) == key
    }

    pub(crate) fn mark_checked(&self, key: u64) {
        self.checked.store(key, Ordering::Relaxed);
    }
}

impl Drop for TensorSet {
    fn drop(&mut self) {
        match sym!(self.runtime.lib(), nrt_destroy_tensor_set) {
            Ok(destroy) => {
                let mut handle = self.raw.as_ptr();
                // SAFETY: the handle is live and destroyed exactly once, here. The tensors it
                // refers to are released after this (the map is a field).
                unsafe { destroy(&mut handle) };
            }
            Err(e) => tracing::warn!(error = %e, "cannot destroy tensor set"),
        }
    }
}

/// Builds a [`TensorSet`]; from [`TensorSet::builder`].
#[must_use = "call .build() to create the set"]
pub struct TensorSetBuilder {
    runtime: Arc<Runtime>,
    entries: Vec<(String, Arc<Tensor>)>,
}

impl TensorSetBuilder {
    /// Binds `tensor` under `name` (a later entry with the same name replaces it).
    pub fn tensor(mut self, name: impl Into<String>, tensor: impl Into<Arc<Tensor>>) -> Self {
        self.entries.push((name.into(), tensor.into()));
        self
    }

    /// Creates the set and binds every tensor.
    ///
    /// # Errors
    /// As [`TensorSet::new`] and [`TensorSet::insert`].
    pub fn build(self) -> Result<TensorSet> {
        let mut set = TensorSet::new(&self.runtime)?;
        for (name, tensor) in self.entries {
            set.insert(&name, tensor)?;
        }
        Ok(set)
    }
}
