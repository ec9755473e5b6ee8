//! CPU kernels: what a mock NEFF runs.
//!
//! A mock NEFF names a kernel in its `mock.json`. When the model is loaded, the kernel's
//! [`KernelEntry::build`] function gets a [`BuildCtx`] (the NEFF's parameters and tensor specs,
//! the rank and world size) and returns a [`Kernel`], or a [`KernelError`] that refuses the
//! load (`NRT_INVALID`, with the error in the mock's log). Everything that depends only on the
//! NEFF (parsing parameters, resolving tensor names to positions, checking shapes) happens
//! there, once. Each execution then calls [`Kernel::run`] with an [`ExecCtx`], which gives:
//!
//! - zero-copy typed views of the inputs (`ctx.input::<f32>(0)?`) and outputs
//!   (`ctx.output::<f32>(0)?`), element types checked against the NEFF's dtypes (`bf16`/`f16`
//!   are [`half`]'s types);
//! - state updated in place: for an input bound to the same tensor as an output (the KV cache),
//!   `ctx.state::<f32>(input, output)?` is the output's view holding the input's values,
//!   without a copy when the caller bound one tensor to both, with one when it bound two;
//! - the rank and world size, and collectives ([`ExecCtx::all_reduce_sum`],
//!   [`ExecCtx::all_gather`], [`ExecCtx::barrier`]) that meet the other ranks of the world in
//!   the middle of the computation.
//!
//! # Adding a kernel
//! Write a module in `src/kernels/` with a `pub(crate) const KERNEL: KernelEntry`, and list it in
//! [`REGISTRY`]. See `add.rs` for a small example.

use std::collections::BTreeMap;
use std::fmt;

use neuron_sys::DType;
use neuron_sys::bindings::NRT_STATUS;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::collectives::{CollectiveError, Communicator};
use crate::memory::{ExecViews, ViewError};
use crate::neff::TensorSpec;

mod add;
mod all_gather;
mod all_reduce;
mod copy;
mod matmul;

/// Every kernel a mock NEFF can name.
pub const REGISTRY: &[KernelEntry] = &[
    copy::KERNEL,
    add::KERNEL,
    matmul::KERNEL,
    all_reduce::KERNEL,
    all_gather::KERNEL,
];

/// Looks a kernel up by name.
pub fn find(name: &str) -> Option<&'static KernelEntry> {
    REGISTRY.iter().find(|k| k.name == name)
}

/// A registered kernel.
#[derive(Clone, Copy)]
pub struct KernelEntry {
    /// The name mock NEFFs use.
    pub name: &'static str,
    /// One line on what it computes and which tensors and parameters it expects.
    pub summary: &'static str,
    /// Builds the kernel for one loaded model.
    pub build: fn(&BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError>,
}

impl fmt::Debug for KernelEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A kernel built for one loaded model.
///
/// `run` may be called from several threads at once (several threads may execute one model),
/// so per-execution scratch memory belongs in `run`, not in `self`.
pub trait Kernel: Send + Sync + 'static {
    /// One execution.
    ///
    /// # Errors
    /// A [`KernelError`]; its [`status`](KernelError::status) is what `nrt_execute` returns.
    fn run(&self, ctx: &ExecCtx<'_>) -> Result<(), KernelError>;
}

/// Why a kernel could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// No kernel of that name is registered.
    #[error("unknown kernel {name:?}; registered kernels: {known}")]
    Unknown {
        /// The name the NEFF gives.
        name: String,
        /// The registered names.
        known: String,
    },
    /// The NEFF's parameters do not suit the kernel.
    #[error("kernel {kernel:?}: bad params: {message}")]
    Params {
        /// The kernel.
        kernel: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor the NEFF declares (or fails to declare) does not suit the kernel.
    #[error("kernel {kernel:?}: tensor {tensor:?}: {why}")]
    Spec {
        /// The kernel.
        kernel: String,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        why: String,
    },
    /// A tensor could not be viewed as asked during a run (a bug in the kernel, or a caller's
    /// buffer that is not aligned for its element type).
    #[error("tensor {tensor:?}: {why}")]
    View {
        /// The tensor.
        tensor: String,
        /// What is wrong.
        why: String,
    },
    /// A collective failed: another rank did not arrive in time, or ranks disagreed.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// An index read from a tensor is out of range (`NRT_EXEC_OOB`, like an embedding lookup
    /// past the table on the device).
    #[error("{what}: index {index} is out of range 0..{len}")]
    OutOfBounds {
        /// What was indexed.
        what: String,
        /// The index.
        index: i64,
        /// The valid length.
        len: usize,
    },
    /// Any other failure during a run.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
    },
}

impl KernelError {
    /// The status an execution (or load) failing with this error returns.
    pub fn status(&self) -> NRT_STATUS {
        match self {
            KernelError::Unknown { .. }
            | KernelError::Params { .. }
            | KernelError::Spec { .. }
            | KernelError::View { .. } => NRT_STATUS::NRT_INVALID,
            KernelError::Collective(e) => e.status(),
            KernelError::OutOfBounds { .. } => NRT_STATUS::NRT_EXEC_OOB,
            KernelError::Failed { .. } => NRT_STATUS::NRT_EXEC_COMPLETED_WITH_ERR,
        }
    }
}

/// An element type kernels can view tensors as. Sealed: implemented for the primitive numbers
/// and `half::{f16, bf16}`, each tied to its [`DType`].
pub trait Element: bytemuck::Pod + sealed::Sealed {
    /// The matching dtype.
    const DTYPE: DType;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! elements {
    ($($ty:ty => $dtype:ident),+ $(,)?) => {$(
        impl sealed::Sealed for $ty {}
        impl Element for $ty {
            const DTYPE: DType = DType::$dtype;
        }
    )+};
}

elements!(
    f32 => F32,
    half::f16 => F16,
    half::bf16 => BF16,
    i8 => I8,
    u8 => U8,
    i16 => I16,
    u16 => U16,
    i32 => I32,
    u32 => U32,
    i64 => I64,
    u64 => U64,
);

/// Floating-point element types kernels compute with in f32 (`f32`, `half::bf16`,
/// `half::f16`).
pub trait Float: Element {
    /// Widens to f32 (exact).
    fn to_f32(self) -> f32;
    /// Narrows from f32, rounding to nearest even.
    fn from_f32(value: f32) -> Self;
}

impl Float for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(value: f32) -> f32 {
        value
    }
}

impl Float for half::bf16 {
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn from_f32(value: f32) -> half::bf16 {
        half::bf16::from_f32(value)
    }
}

impl Float for half::f16 {
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn from_f32(value: f32) -> half::f16 {
        half::f16::from_f32(value)
    }
}

/// What a kernel's build function gets.
#[derive(Debug)]
pub struct BuildCtx<'a> {
    kernel: &'a str,
    params: &'a Value,
    inputs: &'a [TensorSpec],
    outputs: &'a [TensorSpec],
    files: &'a BTreeMap<String, Vec<u8>>,
    rank: usize,
    world_size: usize,
}

impl<'a> BuildCtx<'a> {
    pub(crate) fn new(
        kernel: &'a str,
        params: &'a Value,
        inputs: &'a [TensorSpec],
        outputs: &'a [TensorSpec],
        files: &'a BTreeMap<String, Vec<u8>>,
        rank: usize,
        world_size: usize,
    ) -> BuildCtx<'a> {
        BuildCtx {
            kernel,
            params,
            inputs,
            outputs,
            files,
            rank,
            world_size,
        }
    }

    /// The kernel's name.
    pub fn kernel(&self) -> &'a str {
        self.kernel
    }

    /// The parameters as JSON.
    pub fn raw_params(&self) -> &'a Value {
        self.params
    }

    /// The parameters deserialized into the kernel's own type (use
    /// `#[serde(deny_unknown_fields)]` so that a misspelt parameter is an error).
    ///
    /// # Errors
    /// [`KernelError::Params`] with serde's message.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, KernelError> {
        P::deserialize(self.params).map_err(|e| self.params_error(e.to_string()))
    }

    /// The model's inputs, in order.
    pub fn inputs(&self) -> &'a [TensorSpec] {
        self.inputs
    }

    /// The model's outputs, in order.
    pub fn outputs(&self) -> &'a [TensorSpec] {
        self.outputs
    }

    /// Checks that the NEFF has `inputs` inputs and `outputs` outputs.
    ///
    /// # Errors
    /// [`KernelError::Params`] saying what the kernel needs (`what`) and what the NEFF has.
    pub fn expect_io(&self, inputs: usize, outputs: usize, what: &str) -> Result<(), KernelError> {
        if self.inputs.len() == inputs && self.outputs.len() == outputs {
            return Ok(());
        }
        Err(self.params_error(format!(
            "needs {what}; the NEFF has {} inputs and {} outputs",
            self.inputs.len(),
            self.outputs.len()
        )))
    }

    /// The position of the input called `name`.
    ///
    /// # Errors
    /// [`KernelError::Spec`] if there is none.
    pub fn input(&self, name: &str) -> Result<usize, KernelError> {
        self.inputs
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| self.spec_error(name, "the kernel needs an input of this name"))
    }

    /// The position of the output called `name`.
    ///
    /// # Errors
    /// [`KernelError::Spec`] if there is none.
    pub fn output(&self, name: &str) -> Result<usize, KernelError> {
        self.outputs
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| self.spec_error(name, "the kernel needs an output of this name"))
    }

    /// A file the NEFF carries besides `mock.json`.
    pub fn file(&self, path: &str) -> Option<&'a [u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// This model's rank in its world (0 without collectives).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Ranks in the world (1 without collectives).
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// A [`KernelError::Params`] for this kernel.
    pub fn params_error(&self, message: impl Into<String>) -> KernelError {
        KernelError::Params {
            kernel: self.kernel.to_string(),
            message: message.into(),
        }
    }

    /// A [`KernelError::Spec`] for this kernel.
    pub fn spec_error(&self, tensor: &str, why: impl Into<String>) -> KernelError {
        KernelError::Spec {
            kernel: self.kernel.to_string(),
            tensor: tensor.to_string(),
            why: why.into(),
        }
    }
}

/// What a kernel's run gets: views of the bound tensors, the rank, and collectives.
pub struct ExecCtx<'a> {
    inputs: &'a [TensorSpec],
    outputs: &'a [TensorSpec],
    views: ExecViews<'a>,
    comm: Communicator<'a>,
}

impl fmt::Debug for ExecCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecCtx")
            .field("inputs", &self.inputs.len())
            .field("outputs", &self.outputs.len())
            .field("rank", &self.rank())
            .field("world_size", &self.world_size())
            .finish_non_exhaustive()
    }
}

impl<'a> ExecCtx<'a> {
    pub(crate) fn new(
        inputs: &'a [TensorSpec],
        outputs: &'a [TensorSpec],
        views: ExecViews<'a>,
        comm: Communicator<'a>,
    ) -> ExecCtx<'a> {
        ExecCtx {
            inputs,
            outputs,
            views,
            comm,
        }
    }

    /// The model's inputs, in order.
    pub fn inputs(&self) -> &'a [TensorSpec] {
        self.inputs
    }

    /// The model's outputs, in order.
    pub fn outputs(&self) -> &'a [TensorSpec] {
        self.outputs
    }

    /// Input `i`'s bytes.
    ///
    /// # Errors
    /// [`KernelError::View`] if there is no input `i`, or it is bound to the same tensor as an
    /// output (use [`ExecCtx::state`] or the output's view then).
    pub fn input_bytes(&self, i: usize) -> Result<&'a [u8], KernelError> {
        self.views
            .input(i)
            .map_err(|e| self.view_error(self.inputs.get(i), e))
    }

    /// Input `i` as elements of `T`, which must be its dtype.
    ///
    /// # Errors
    /// As [`ExecCtx::input_bytes`], or a dtype or alignment mismatch.
    pub fn input<T: Element>(&self, i: usize) -> Result<&'a [T], KernelError> {
        let bytes = self.input_bytes(i)?;
        cast(self.inputs.get(i), bytes, T::DTYPE)
    }

    /// Output `j`'s bytes; each output can be taken once per run.
    ///
    /// # Errors
    /// [`KernelError::View`] if there is no output `j` or it was already taken.
    pub fn output_bytes(&self, j: usize) -> Result<&'a mut [u8], KernelError> {
        self.views
            .output(j)
            .map_err(|e| self.view_error(self.outputs.get(j), e))
    }

    /// Output `j` as elements of `T`, which must be its dtype.
    ///
    /// # Errors
    /// As [`ExecCtx::output_bytes`], or a dtype or alignment mismatch.
    pub fn output<T: Element>(&self, j: usize) -> Result<&'a mut [T], KernelError> {
        let spec = self.outputs.get(j);
        let bytes = self.output_bytes(j)?;
        cast_mut(spec, bytes, T::DTYPE)
    }

    /// The output input `i` is bound in place to (the caller put one tensor in both sets).
    pub fn input_alias(&self, i: usize) -> Option<usize> {
        self.views.input_alias(i)
    }

    /// State updated in place: output `j`'s view, holding input `i`'s values. No copy when the
    /// caller bound one tensor to both; otherwise input `i` is copied into output `j` first.
    ///
    /// # Errors
    /// As [`ExecCtx::output`]; [`KernelError::View`] if `i` and `j` differ in size, or input
    /// `i` is bound in place to another output.
    pub fn state<T: Element>(&self, i: usize, j: usize) -> Result<&'a mut [T], KernelError> {
        match self.input_alias(i) {
            Some(alias) if alias == j => self.output::<T>(j),
            Some(other) => Err(KernelError::View {
                tensor: name_of(self.inputs.get(i)),
                why: format!(
                    "bound in place to output {:?}, not {:?}",
                    name_of(self.outputs.get(other)),
                    name_of(self.outputs.get(j))
                ),
            }),
            None => {
                let src = self.input::<T>(i)?;
                let dst = self.output::<T>(j)?;
                if src.len() != dst.len() {
                    return Err(KernelError::View {
                        tensor: name_of(self.inputs.get(i)),
                        why: format!(
                            "has {} elements, output {:?} has {}",
                            src.len(),
                            name_of(self.outputs.get(j)),
                            dst.len()
                        ),
                    });
                }
                dst.copy_from_slice(src);
                Ok(dst)
            }
        }
    }

    /// This model's rank in its world (0 without collectives).
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Ranks in the world (1 without collectives).
    pub fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    /// Sums `data` elementwise across the ranks of the world, in place, in rank order (so every
    /// rank gets bit-identical results). Every rank must call it with the same length.
    ///
    /// # Errors
    /// [`KernelError::Collective`]: a rank did not arrive before `NEURON_RT_EXEC_TIMEOUT`
    /// (`NRT_TIMEOUT`), or ranks disagreed on the operation.
    pub fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), KernelError> {
        Ok(self.comm.all_reduce_sum(data)?)
    }

    /// Gathers every rank's `mine` into `all` (rank 0's first); `all` holds `world_size`
    /// times as many elements as `mine`.
    ///
    /// # Errors
    /// As [`ExecCtx::all_reduce_sum`], or [`KernelError::Failed`] if `all` has the wrong length.
    pub fn all_gather<T: Element>(&self, mine: &[T], all: &mut [T]) -> Result<(), KernelError> {
        self.all_gather_bytes(bytemuck::cast_slice(mine), bytemuck::cast_slice_mut(all))
    }

    /// [`ExecCtx::all_gather`] on raw bytes, for kernels that move data of any dtype.
    ///
    /// # Errors
    /// As [`ExecCtx::all_gather`].
    pub fn all_gather_bytes(&self, mine: &[u8], all: &mut [u8]) -> Result<(), KernelError> {
        if all.len() != mine.len() * self.world_size() {
            return Err(KernelError::Failed {
                message: format!(
                    "all_gather: output holds {} bytes, expected {} x {} ranks",
                    all.len(),
                    mine.len(),
                    self.world_size()
                ),
            });
        }
        Ok(self.comm.all_gather(mine, all)?)
    }

    /// Waits until every rank of the world reaches this point.
    ///
    /// # Errors
    /// As [`ExecCtx::all_reduce_sum`].
    pub fn barrier(&self) -> Result<(), KernelError> {
        Ok(self.comm.barrier()?)
    }

    fn view_error(&self, spec: Option<&TensorSpec>, error: ViewError) -> KernelError {
        let why = match error {
            ViewError::OutOfRange => "no such tensor position".to_string(),
            ViewError::Aliased { output } => format!(
                "is bound to the same tensor as output {:?}: use the output's view (or \
                 ExecCtx::state) to read and update it in place",
                name_of(self.outputs.get(output))
            ),
            ViewError::AlreadyTaken => "the output's view was already taken in this run".into(),
        };
        KernelError::View {
            tensor: name_of(spec),
            why,
        }
    }
}

fn name_of(spec: Option<&TensorSpec>) -> String {
    spec.map_or_else(|| "?".to_string(), |s| s.name.clone())
}

fn check_dtype(spec: Option<&TensorSpec>, wanted: DType) -> Result<(), KernelError> {
    match spec {
        Some(s) if s.dtype != wanted => Err(KernelError::View {
            tensor: s.name.clone(),
            why: format!("is {}, viewed as {wanted}", s.dtype),
        }),
        _ => Ok(()),
    }
}

fn cast<'b, T: Element>(
    spec: Option<&TensorSpec>,
    bytes: &'b [u8],
    dtype: DType,
) -> Result<&'b [T], KernelError> {
    check_dtype(spec, dtype)?;
    bytemuck::try_cast_slice(bytes).map_err(|e| KernelError::View {
        tensor: name_of(spec),
        why: format!("cannot be viewed as {dtype}: {e} (a caller's buffer that is not aligned?)"),
    })
}

fn cast_mut<'b, T: Element>(
    spec: Option<&TensorSpec>,
    bytes: &'b mut [u8],
    dtype: DType,
) -> Result<&'b mut [T], KernelError> {
    check_dtype(spec, dtype)?;
    bytemuck::try_cast_slice_mut(bytes).map_err(|e| KernelError::View {
        tensor: name_of(spec),
        why: format!("cannot be viewed as {dtype}: {e} (a caller's buffer that is not aligned?)"),
    })
}

/// Parameters of a kernel that takes none: deserializing into it refuses any parameter given,
/// so a misspelt or misplaced one is an error rather than ignored.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Checks that a tensor has one of `dtypes`; shared by the small kernels.
pub(crate) fn require_dtype(
    ctx: &BuildCtx<'_>,
    spec: &TensorSpec,
    dtypes: &[DType],
) -> Result<(), KernelError> {
    if dtypes.contains(&spec.dtype) {
        return Ok(());
    }
    let names: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
    Err(ctx.spec_error(
        &spec.name,
        format!(
            "is {}; this kernel takes {}",
            spec.dtype,
            names.join(" or ")
        ),
    ))
}

/// Builds the kernel a NEFF names.
pub(crate) fn build(kernel: &str, ctx: &BuildCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let entry = find(kernel).ok_or_else(|| KernelError::Unknown {
        name: kernel.to_string(),
        known: REGISTRY
            .iter()
            .map(|k| k.name)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    (entry.build)(ctx)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Runs a kernel on host buffers, without the C ABI, for the kernels' unit tests.

    use super::*;
    use crate::memory::{Binding, Bindings, Storage};
    use crate::neff::Usage;
    use std::sync::Arc;
    use std::time::Instant;

    pub(crate) fn spec(name: &str, dtype: DType, shape: &[usize], usage: Usage) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            usage,
        }
    }

    /// Builds `kernel` and runs it once on `inputs`; returns the outputs' bytes.
    pub(crate) fn run(
        kernel: &str,
        params: Value,
        inputs: &[(TensorSpec, Vec<u8>)],
        outputs: &[TensorSpec],
    ) -> Result<Vec<Vec<u8>>, KernelError> {
        let in_specs: Vec<TensorSpec> = inputs.iter().map(|(s, _)| s.clone()).collect();
        let files = BTreeMap::new();
        let ctx = BuildCtx::new(kernel, &params, &in_specs, outputs, &files, 0, 1);
        let built = build(kernel, &ctx)?;
        let in_bindings = inputs
            .iter()
            .map(|(_, bytes)| {
                let s = Arc::new(Storage::allocate(bytes.len()).unwrap());
                s.write(0, bytes);
                Binding::new(s, 0, bytes.len()).unwrap()
            })
            .collect();
        let out_storages: Vec<Arc<Storage>> = outputs
            .iter()
            .map(|s| Arc::new(Storage::allocate(s.size_bytes()).unwrap()))
            .collect();
        let out_bindings = out_storages
            .iter()
            .map(|s| Binding::new(s.clone(), 0, s.len()).unwrap())
            .collect();
        let bindings = Bindings::new(in_bindings, out_bindings).unwrap();
        let locked = bindings.lock(Instant::now()).unwrap();
        let exec = ExecCtx::new(&in_specs, outputs, locked.views(), Communicator::single());
        built.run(&exec)?;
        Ok(out_storages
            .iter()
            .map(|s| {
                let mut out = vec![0u8; s.len()];
                s.read(0, &mut out);
                out
            })
            .collect())
    }

    pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
        bytemuck::cast_slice(values).to_vec()
    }

    pub(crate) fn f32_values(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}
