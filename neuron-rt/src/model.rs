//! [`Model`]: a NEFF loaded on NeuronCores, its input and output descriptions, and execution.

use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dtype::DType;
use crate::error::{Error, Result, Subject, Usage};
use crate::raw::{
    self, ExecuteFn, c_chars_to_string, nrt_model_info_t, nrt_model_t, nrt_tensor_info_array_t,
    nrt_tensor_info_t, nrt_tensor_usage_t, sym,
};
use crate::runtime::Runtime;
use crate::tensor::{Placement, Tensor};
use crate::tensor_set::TensorSet;

/// Size of the NEFF container header; shorter input cannot be a NEFF.
pub const NEFF_HEADER_SIZE: usize = 1024;

/// Unique ids for models, so that tensor sets can remember which model they were checked
/// against. Starts at 1: 0 means "not checked".
static NEXT_MODEL_ID: AtomicU64 = AtomicU64::new(1);

/// One input or output of a model, as the runtime reports it (`nrt_get_model_tensor_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TensorInfo {
    /// The name: the key to bind a tensor under in a [`TensorSet`].
    pub name: String,
    /// Input or output.
    pub usage: Usage,
    /// The element type, or `None` for a code this crate does not know (see `dtype_code`).
    pub dtype: Option<DType>,
    /// The raw element-type code, in the loaded runtime's encoding.
    pub dtype_code: u32,
    /// The dimensions.
    pub shape: Vec<usize>,
    /// Size in bytes.
    pub size: usize,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} ", self.name, self.shape)?;
        match self.dtype {
            Some(dtype) => write!(f, "{dtype}")?,
            None => write!(f, "dtype#{}", self.dtype_code)?,
        }
        write!(f, " ({} bytes)", self.size)
    }
}

/// A model's place in a collective world: rank `rank` of `world` ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rank {
    /// This copy's rank, from 0.
    pub rank: u32,
    /// The number of ranks.
    pub world: u32,
}

/// Options for loading a model; from [`Model::loader`].
#[derive(Debug, Clone)]
#[must_use = "call .load() or .load_file() to load the model"]
pub struct ModelLoader {
    runtime: Arc<Runtime>,
    core: Option<u32>,
    core_count: Option<u32>,
    rank: Option<Rank>,
    name: Option<String>,
}

impl ModelLoader {
    /// The first logical NeuronCore to load on, numbered among the visible cores. By default
    /// libnrt picks the first free core.
    pub fn core(mut self, core: u32) -> Self {
        self.core = Some(core);
        self
    }

    /// How many cores to load on (`vnc_count`). Deprecated by the runtime, which wants -1
    /// (the default); older runtimes load that many replicas when it is a multiple of what
    /// the NEFF needs.
    pub fn core_count(mut self, count: u32) -> Self {
        self.core_count = Some(count);
        self
    }

    /// Loads the NEFF as rank `rank` of a collective world of `world` ranks
    /// (`nrt_load_collectives`); mandatory for NEFFs with collective operations. To load every
    /// rank of a world in this process, use [`ModelGroup`](crate::ModelGroup).
    pub fn rank(mut self, rank: u32, world: u32) -> Self {
        self.rank = Some(Rank { rank, world });
        self
    }

    /// The name used in error messages (default: the file's stem, or `"neff"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Loads the NEFF in `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; otherwise as [`ModelLoader::load`], with the
    /// path in [`Error::Neff`].
    pub fn load_file(self, path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let (bytes, stem) = read_neff_file(path)?;
        let name = self.name.clone().unwrap_or(stem);
        self.name(name).load_inner(&bytes, Some(path))
    }

    /// Loads a NEFF held in memory (`nrt_load`, or `nrt_load_collectives` with a rank). libnrt
    /// copies what it needs; `neff` may be dropped afterwards.
    ///
    /// # Errors
    /// [`Error::Neff`] for input shorter than a NEFF header; [`Error::InvalidArgument`] for a
    /// rank outside its world; [`Error::Nrt`] if libnrt refuses the NEFF (malformed:
    /// [`Status::Invalid`](crate::Status::Invalid); no free core:
    /// [`Status::LoadNotEnoughNc`](crate::Status::LoadNotEnoughNc)) or cannot describe its
    /// tensors.
    pub fn load(self, neff: &[u8]) -> Result<Model> {
        self.load_inner(neff, None)
    }

    /// Loads `neff`, which came from `path` if given (for error messages).
    pub(crate) fn load_inner(self, neff: &[u8], path: Option<&Path>) -> Result<Model> {
        if neff.len() < NEFF_HEADER_SIZE {
            return Err(Error::Neff {
                path: path.map(Path::to_path_buf),
                message: format!(
                    "{} bytes is shorter than the {NEFF_HEADER_SIZE}-byte NEFF header",
                    neff.len()
                ),
            });
        }
        if let Some(Rank { rank, world }) = self.rank
            && rank >= world
        {
            return Err(Error::InvalidArgument {
                what: "rank",
                message: format!("rank {rank} is outside a world of {world}"),
            });
        }
        let to_i32 = |what, value: Option<u32>| match value {
            None => Ok(-1),
            Some(v) => i32::try_from(v).map_err(|_| Error::InvalidArgument {
                what,
                message: format!("{v} is out of range"),
            }),
        };
        let vnc = to_i32("core", self.core)?;
        let vnc_count = to_i32("core count", self.core_count)?;
        let name = self.name.unwrap_or_else(|| "neff".into());
        let lib = self.runtime.lib();
        let execute = sym!(lib, nrt_execute)?;
        sym!(lib, nrt_unload)?;

        let mut out = ptr::null_mut();
        let (status, call) = match self.rank {
            None => {
                let load = sym!(lib, nrt_load)?;
                // SAFETY: `neff` is readable for its length during the call, and libnrt keeps
                // no reference to it; `out` is a valid place for the handle.
                let status =
                    unsafe { load(neff.as_ptr().cast(), neff.len(), vnc, vnc_count, &mut out) };
                (status, "nrt_load")
            }
            Some(Rank { rank, world }) => {
                let load = sym!(lib, nrt_load_collectives)?;
                // SAFETY: as for nrt_load.
                let status = unsafe {
                    load(
                        neff.as_ptr().cast(),
                        neff.len(),
                        vnc,
                        vnc_count,
                        rank,
                        world,
                        &mut out,
                    )
                };
                (status, "nrt_load_collectives")
            }
        };
        raw::check_for(status, call, || Subject::Model(name.clone()))?;
        // From here on, dropping `model` unloads it, also on the error paths below.
        let mut model = Model {
            raw: raw::non_null(out, call)?,
            loaded: true,
            id: NEXT_MODEL_ID.fetch_add(1, Ordering::Relaxed),
            name,
            path: path.map(Path::to_path_buf),
            inputs: Vec::new(),
            outputs: Vec::new(),
            core: self.core,
            core_count: None,
            rank: self.rank,
            execute,
            runtime: self.runtime,
        };
        model.read_tensor_info()?;
        model.read_placement();
        tracing::debug!(
            model = %model.name,
            core = ?model.core,
            rank = ?model.rank,
            inputs = model.inputs.len(),
            outputs = model.outputs.len(),
            "loaded model"
        );
        Ok(model)
    }
}

/// Reads a NEFF file; also returns the name a model loaded from it gets by default (the
/// file's stem).
pub(crate) fn read_neff_file(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map_or_else(|| "neff".into(), |s| s.to_string_lossy().into_owned());
    Ok((bytes, stem))
}

/// A NEFF loaded on one or more NeuronCores (`nrt_load` .. `nrt_unload`).
///
/// Its inputs and outputs are read once at load ([`Model::inputs`], [`Model::outputs`]).
/// Execute it with an input and an output [`TensorSet`], built once and reused.
///
/// # Threads
///
/// `Model` is `Send + Sync` and [`Model::execute`] takes `&self`: libnrt documents that
/// several threads may call `nrt_execute` on one model and that the runtime pipelines those
/// executions (libnrt-api.md §3.5; `nrt_api.h` on `nrt_execute`). The output set is taken as
/// `&mut`, so one output set is never written by two executions at once.
pub struct Model {
    raw: NonNull<nrt_model_t>,
    loaded: bool,
    id: u64,
    name: String,
    path: Option<PathBuf>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    core: Option<u32>,
    core_count: Option<u32>,
    rank: Option<Rank>,
    /// `nrt_execute`, resolved at load so that executing looks nothing up.
    execute: ExecuteFn,
    runtime: Arc<Runtime>,
}

// SAFETY: a model is a handle to process-wide libnrt state, not tied to the thread that loaded
// it; nrt_api.h on nrt_execute: "Several threads may execute the same model; the runtime
// pipelines them", so the handle is used from other threads by design. Unloading (the only
// other call on it) needs `self` by value or `&mut self`.
unsafe impl Send for Model {}

// SAFETY: through `&Model` the only libnrt call is `nrt_execute` (and `nrt_execute_repeat`),
// which several threads may make on one model at once (nrt_api.h on nrt_execute, quoted
// above). Everything else reachable through `&self` is immutable Rust data read at load.
unsafe impl Sync for Model {}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("core", &self.core)
            .field("rank", &self.rank)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// An input and an output set with a tensor for every model input and output; from
/// [`Model::allocate_io`].
#[derive(Debug)]
#[non_exhaustive]
pub struct IoSets {
    /// One tensor per model input.
    pub inputs: TensorSet,
    /// One tensor per model output.
    pub outputs: TensorSet,
}

impl Model {
    /// Options for loading a NEFF.
    pub fn loader(runtime: &Arc<Runtime>) -> ModelLoader {
        ModelLoader {
            runtime: Arc::clone(runtime),
            core: None,
            core_count: None,
            rank: None,
            name: None,
        }
    }

    /// Loads a NEFF held in memory onto logical core `core`.
    ///
    /// # Errors
    /// As [`ModelLoader::load`].
    pub fn load(runtime: &Arc<Runtime>, neff: &[u8], core: u32) -> Result<Model> {
        Model::loader(runtime).core(core).load(neff)
    }

    /// Loads the NEFF in `path` onto logical core `core`.
    ///
    /// # Errors
    /// As [`ModelLoader::load_file`].
    pub fn load_file(runtime: &Arc<Runtime>, path: impl AsRef<Path>, core: u32) -> Result<Model> {
        Model::loader(runtime).core(core).load_file(path)
    }

    /// The name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the NEFF came from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The model's inputs, in the order the runtime lists them.
    pub fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    /// The model's outputs, in the order the runtime lists them.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// The input named `name`.
    ///
    /// # Errors
    /// [`Error::UnknownTensor`] listing the model's inputs.
    pub fn input(&self, name: &str) -> Result<&TensorInfo> {
        self.find(&self.inputs, name)
    }

    /// The output named `name`.
    ///
    /// # Errors
    /// [`Error::UnknownTensor`] listing the model's outputs.
    pub fn output(&self, name: &str) -> Result<&TensorInfo> {
        self.find(&self.outputs, name)
    }

    /// The first logical core the model occupies (`nrt_get_model_info`), or the core asked
    /// for at load on runtimes without that call; `None` if neither is known.
    pub fn core(&self) -> Option<u32> {
        self.core
    }

    /// How many logical cores the model occupies (`nrt_get_model_vnc_count`), where the
    /// runtime reports it.
    pub fn core_count(&self) -> Option<u32> {
        self.core_count
    }

    /// The collective rank, for a model loaded with one.
    pub fn rank(&self) -> Option<Rank> {
        self.rank
    }

    /// The runtime this model belongs to.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The raw libnrt handle, for calls this crate does not wrap. The caller must not unload
    /// it, and must not use it after this model is dropped.
    pub fn as_raw(&self) -> *mut nrt_model_t {
        self.raw.as_ptr()
    }

    /// Allocates a device tensor for every input and output on the model's core (core 0 if
    /// unknown), each bound under its name. A name that is both an input and an output
    /// (state the model updates in place, such as a KV cache) gets one tensor, bound in both
    /// sets. Contents are undefined until written.
    ///
    /// # Errors
    /// As [`Tensor::allocate_like`] and [`TensorSet::insert`].
    pub fn allocate_io(&self) -> Result<IoSets> {
        let placement = Placement::Device(self.core.unwrap_or(0));
        let mut inputs = TensorSet::new(&self.runtime)?;
        let mut outputs = TensorSet::new(&self.runtime)?;
        for info in &self.inputs {
            let tensor = Tensor::allocate_like(&self.runtime, placement, info)?;
            inputs.insert(&info.name, tensor)?;
        }
        for info in &self.outputs {
            let tensor = match inputs.get(&info.name) {
                Some(shared) if shared.size() == info.size => Arc::clone(shared),
                _ => Arc::new(Tensor::allocate_like(&self.runtime, placement, info)?),
            };
            outputs.insert(&info.name, tensor)?;
        }
        Ok(IoSets { inputs, outputs })
    }

    /// Checks that `inputs` and `outputs` bind a tensor of the right size (and element type,
    /// where both are known) to every model input and output. Extra tensors are allowed.
    ///
    /// [`Model::execute`] runs this check the first time it sees a set and again only after
    /// the set changes, so there is no need to call it before executing; it is public for
    /// callers who want to validate sets when building them.
    ///
    /// # Errors
    /// [`Error::MissingTensor`], [`Error::SizeMismatch`] or [`Error::DTypeMismatch`] naming
    /// the first tensor that does not fit.
    pub fn check_io(&self, inputs: &TensorSet, outputs: &TensorSet) -> Result<()> {
        self.check_set(inputs, Usage::Input)?;
        self.check_set(outputs, Usage::Output)
    }

    /// Runs the model once (`nrt_execute`), reading `inputs` and writing `outputs`; blocks
    /// until the execution finishes.
    ///
    /// With sets that were already used with this model and have not changed since, this is
    /// one libnrt call plus two integer comparisons: no allocation, no lookups.
    ///
    /// # Errors
    /// On the first use of a set, as [`Model::check_io`]; [`Error::Nrt`] naming the model if
    /// the execution fails (for example [`Status::Timeout`](crate::Status::Timeout) when a
    /// collective peer never arrives).
    #[inline]
    pub fn execute(&self, inputs: &TensorSet, outputs: &mut TensorSet) -> Result<()> {
        self.ensure_checked(inputs, outputs)?;
        // SAFETY: the model handle is live (it is unloaded only by `unload(self)` or drop);
        // both sets are live handles whose tensors they keep alive; several threads may
        // execute one model (nrt_api.h), and `outputs` is borrowed exclusively.
        let status =
            unsafe { (self.execute)(self.raw.as_ptr(), inputs.as_raw(), outputs.as_raw()) };
        raw::check_for(status, "nrt_execute", || self.subject())
    }

    /// Runs the model `count` times (`nrt_execute_repeat`), each run consuming the previous
    /// run's outputs; the NEFF must have been compiled for it.
    ///
    /// # Errors
    /// As [`Model::execute`]; [`Error::InvalidArgument`] for a count that does not fit a C
    /// `int`.
    pub fn execute_repeat(
        &self,
        inputs: &TensorSet,
        outputs: &mut TensorSet,
        count: u32,
    ) -> Result<()> {
        let count = i32::try_from(count).map_err(|_| Error::InvalidArgument {
            what: "repeat count",
            message: format!("{count} does not fit a C int"),
        })?;
        self.ensure_checked(inputs, outputs)?;
        let execute_repeat = sym!(self.runtime.lib(), nrt_execute_repeat)?;
        // SAFETY: as in `execute`.
        let status =
            unsafe { execute_repeat(self.raw.as_ptr(), inputs.as_raw(), outputs.as_raw(), count) };
        raw::check_for(status, "nrt_execute_repeat", || self.subject())
    }

    /// Unloads the model now (`nrt_unload`), reporting failure; dropping it does the same but
    /// can only log a failure.
    ///
    /// # Errors
    /// [`Error::Nrt`] if libnrt reports that unloading failed.
    pub fn unload(mut self) -> Result<()> {
        self.unload_once()
    }

    /// The error subject naming this model (and its rank, if it has one).
    pub(crate) fn subject(&self) -> Subject {
        Subject::Model(match self.rank {
            Some(Rank { rank, world }) => format!("{} (rank {rank} of {world})", self.name),
            None => self.name.clone(),
        })
    }

    /// The cached nrt_execute and raw handle, for the group's rank workers.
    pub(crate) fn execute_parts(&self) -> (ExecuteFn, *mut nrt_model_t) {
        (self.execute, self.raw.as_ptr())
    }

    /// Validates the sets unless they were validated for this model and unchanged since.
    #[inline]
    pub(crate) fn ensure_checked(&self, inputs: &TensorSet, outputs: &TensorSet) -> Result<()> {
        for (set, usage) in [(inputs, Usage::Input), (outputs, Usage::Output)] {
            let key = self.check_key(usage);
            if !set.is_checked(key) {
                self.check_set(set, usage)?;
                set.mark_checked(key);
            }
        }
        Ok(())
    }

    fn check_key(&self, usage: Usage) -> u64 {
        self.id * 2 + u64::from(usage == Usage::Output)
    }

    fn check_set(&self, set: &TensorSet, usage: Usage) -> Result<()> {
        let (infos, what) = match usage {
            Usage::Input => (&self.inputs, "model input"),
            Usage::Output => (&self.outputs, "model output"),
        };
        for info in infos {
            let tensor = set.get(&info.name).ok_or_else(|| Error::MissingTensor {
                model: self.name.clone(),
                tensor: info.name.clone(),
                usage,
            })?;
            if tensor.size() != info.size {
                return Err(Error::SizeMismatch {
                    what,
                    tensor: info.name.clone(),
                    expected: info.size,
                    got: tensor.size(),
                });
            }
            if let (Some(expected), Some(got)) = (info.dtype, tensor.dtype())
                && expected != got
            {
                return Err(Error::DTypeMismatch {
                    tensor: info.name.clone(),
                    expected,
                    got,
                });
            }
        }
        Ok(())
    }

    fn find<'a>(&self, infos: &'a [TensorInfo], name: &str) -> Result<&'a TensorInfo> {
        infos
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| Error::UnknownTensor {
                name: name.to_string(),
                owner: Subject::Model(self.name.clone()),
                known: infos.iter().map(|i| i.name.clone()).collect(),
            })
    }

    /// Reads the I/O descriptions once (`nrt_get_model_tensor_info`) and frees the array.
    fn read_tensor_info(&mut self) -> Result<()> {
        let lib = self.runtime.lib();
        let get = sym!(lib, nrt_get_model_tensor_info)?;
        let free = sym!(lib, nrt_free_model_tensor_info)?;
        let mut array: *mut nrt_tensor_info_array_t = ptr::null_mut();
        // SAFETY: the model is live; `array` is a valid place for the returned pointer.
        let status = unsafe { get(self.raw.as_ptr(), &mut array) };
        raw::check_for(status, "nrt_get_model_tensor_info", || self.subject())?;
        let array = raw::non_null(array, "nrt_get_model_tensor_info")?;
        let parsed = self.parse_tensor_info(array);
        // SAFETY: `array` came from nrt_get_model_tensor_info and is freed exactly once, after
        // the last read of it.
        let status = unsafe { free(array.as_ptr()) };
        if let Err(e) = raw::check(status, "nrt_free_model_tensor_info") {
            tracing::warn!(model = %self.name, error = %e, "cannot free tensor info");
        }
        let (inputs, outputs) = parsed?;
        self.inputs = inputs;
        self.outputs = outputs;
        Ok(())
    }

    fn parse_tensor_info(
        &self,
        array: NonNull<nrt_tensor_info_array_t>,
    ) -> Result<(Vec<TensorInfo>, Vec<TensorInfo>)> {
        let encoding = self.runtime.dtype_encoding();
        // SAFETY: libnrt returned a valid array: a count followed by that many entries in the
        // same allocation.
        let count = unsafe { (*array.as_ptr()).tensor_count };
        let count = usize::try_from(count).map_err(|_| Error::Neff {
            path: self.path.clone(),
            message: format!("the runtime reports {count} tensors"),
        })?;
        // A pointer derived from the whole allocation (not from a reference to the
        // zero-length field), so that it may reach every entry.
        // SAFETY: `array` is valid; addr_of! creates no reference.
        let first =
            unsafe { ptr::addr_of!((*array.as_ptr()).tensor_array) }.cast::<nrt_tensor_info_t>();
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        for i in 0..count {
            // SAFETY: entry `i` < `count` lies inside the array libnrt allocated.
            let entry = unsafe { &*first.add(i) };
            let shape = if entry.ndim == 0 || entry.shape.is_null() {
                Vec::new()
            } else {
                // SAFETY: `shape` points to `ndim` u32s owned by the array, alive until it is
                // freed after this function returns.
                unsafe { std::slice::from_raw_parts(entry.shape, entry.ndim as usize) }
                    .iter()
                    .map(|&d| d as usize)
                    .collect()
            };
            let usage = match entry.usage {
                nrt_tensor_usage_t::NRT_TENSOR_USAGE_INPUT => Usage::Input,
                nrt_tensor_usage_t::NRT_TENSOR_USAGE_OUTPUT => Usage::Output,
                other => {
                    tracing::warn!(model = %self.name, usage = %other, "skipping tensor of unknown usage");
                    continue;
                }
            };
            let info = TensorInfo {
                name: c_chars_to_string(&entry.name),
                usage,
                dtype: encoding.decode(entry.dtype.0),
                dtype_code: entry.dtype.0,
                shape,
                size: entry.size,
            };
            match usage {
                Usage::Input => inputs.push(info),
                Usage::Output => outputs.push(info),
            }
        }
        Ok((inputs, outputs))
    }

    /// Asks the runtime where the model sits; optional calls, so failures only leave the
    /// values as they were.
    fn read_placement(&mut self) {
        let lib = self.runtime.lib();
        if let Ok(get_info) = sym!(lib, nrt_get_model_info) {
            let mut info = nrt_model_info_t { vnc: 0 };
            let mut written = 0usize;
            // SAFETY: the model is live; `info` is writable for the size passed and `written`
            // is a valid usize.
            let status = unsafe {
                get_info(
                    self.raw.as_ptr(),
                    &mut info,
                    size_of::<nrt_model_info_t>(),
                    &mut written,
                )
            };
            if status.is_success() && written >= size_of::<u32>() {
                self.core = Some(info.vnc);
            }
        }
        let count_fn =
            sym!(lib, nrt_get_model_vnc_count).or_else(|_| sym!(lib, nrt_get_model_nc_count));
        if let Ok(count_fn) = count_fn {
            let mut count = 0u32;
            // SAFETY: the model is live; `count` is a valid u32 to write.
            let status = unsafe { count_fn(self.raw.as_ptr(), &mut count) };
            if status.is_success() {
                self.core_count = Some(count);
            }
        }
    }

    fn unload_once(&mut self) -> Result<()> {
        if !std::mem::replace(&mut self.loaded, false) {
            return Ok(());
        }
        let unload = sym!(self.runtime.lib(), nrt_unload)?;
        // SAFETY: the handle is live and unloaded exactly once (guarded by `loaded`); every
        // execution has returned, since they borrow the model.
        let status = unsafe { unload(self.raw.as_ptr()) };
        raw::check_for(status, "nrt_unload", || self.subject())
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        if let Err(e) = self.unload_once() {
            tracing::warn!(model = %self.name, error = %e, "unloading model failed");
        }
    }
}
