//! [`Tensor`]: a buffer on a NeuronCore (or in host memory) that models read and write.

use std::ffi::{CString, c_void};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::dtype::{DType, NeuronRepr, as_bytes};
use crate::error::{Error, Result, Subject};
use crate::model::TensorInfo;
use crate::raw::{self, nrt_tensor_placement_t, nrt_tensor_t, sym};
use crate::runtime::Runtime;

/// Where a tensor's storage lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Placement {
    /// Device memory (HBM) of a logical NeuronCore, numbered among the visible cores. Model
    /// inputs and outputs normally live here.
    Device(u32),
    /// DMA-capable host memory (`NRT_TENSOR_PLACEMENT_HOST`; deprecated by the runtime and
    /// limited to 4 MB per tensor there).
    Host,
    /// Ordinary host memory owned by the tensor, attached with [`Tensor::attach`]
    /// (`nrt_tensor_attach_buffer`; the runtime calls this placement VIRTUAL and removed it
    /// in runtime 2.32, where attaching fails with an error).
    Attached,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Device(core) => write!(f, "device memory of NeuronCore {core}"),
            Placement::Host => f.write_str("host memory"),
            Placement::Attached => f.write_str("attached host buffer"),
        }
    }
}

/// Host memory handed to libnrt with `nrt_tensor_attach_buffer`, owned by the tensors that
/// use it (the attaching tensor and its slices) and freed after the last of them.
struct HostBuffer {
    ptr: NonNull<u8>,
    bytes: usize,
    elements: usize,
    /// Frees the leaked `Box<[T]>` for the element type it was made with.
    free: unsafe fn(NonNull<u8>, usize),
}

// SAFETY: the buffer is plain heap memory owned by this value; Rust code never reads or writes
// it (only libnrt does, through the tensors that hold it), and freeing it from any thread is
// fine.
unsafe impl Send for HostBuffer {}
// SAFETY: `&HostBuffer` gives access to nothing but the pointer value and sizes.
unsafe impl Sync for HostBuffer {}

/// Rebuilds and drops a box that [`HostBuffer::new`] leaked.
///
/// # Safety
/// `ptr` and `elements` must come from `HostBuffer::new`'s `Box::into_raw` of a `[T]`, and
/// this must be called once.
unsafe fn free_boxed<T>(ptr: NonNull<u8>, elements: usize) {
    let slice = ptr::slice_from_raw_parts_mut(ptr.as_ptr().cast::<T>(), elements);
    // SAFETY: the caller passes the pointer and length of a leaked Box<[T]>, once.
    drop(unsafe { Box::from_raw(slice) });
}

impl HostBuffer {
    /// Takes ownership of `data`.
    fn new<T: NeuronRepr>(data: Vec<T>) -> HostBuffer {
        let elements = data.len();
        let bytes = size_of_val(data.as_slice());
        let raw: *mut [T] = Box::into_raw(data.into_boxed_slice());
        HostBuffer {
            // A boxed slice's pointer is never null (dangling but non-null when empty).
            ptr: NonNull::new(raw.cast::<u8>()).unwrap_or(NonNull::dangling()),
            bytes,
            elements,
            free: free_boxed::<T>,
        }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `elements` describe the box leaked in `new`, with the matching
        // element type; this is the only place that frees it, and every tensor using it has
        // been freed first (they hold this buffer in an Arc and free their handle before their
        // fields drop).
        unsafe { (self.free)(self.ptr, self.elements) };
    }
}

/// A tensor: a buffer that models take as input or output, with an optional element type and
/// shape for typed access.
///
/// Tensors are allocated on a NeuronCore ([`Placement::Device`]) or in host memory, and bound
/// to model inputs and outputs by name through [`TensorSet`](crate::TensorSet)s. To share one
/// tensor between several sets (weights bound into the sets of several models, a KV cache in
/// both the input and output set of a model), put it in an `Arc`.
///
/// # Access and threads
///
/// Every read and write is a copy through libnrt (`nrt_tensor_read` / `nrt_tensor_write`);
/// Rust code never holds a reference into a tensor's storage. Writes therefore take `&self`,
/// so a tensor shared through an `Arc` can be updated in place (the decoder writes a few
/// token ids per step into a tensor that sits in an input set). Two concurrent writes to
/// overlapping bytes, or a write during an execution that uses the tensor, leave those bytes
/// unspecified, like two unsynchronised DMA transfers; that is a logic error, not undefined
/// behaviour, since every element type ([`NeuronRepr`]) accepts any bit pattern.
pub struct Tensor {
    raw: NonNull<nrt_tensor_t>,
    size: usize,
    name: String,
    placement: Placement,
    dtype: Option<DType>,
    shape: Option<Vec<usize>>,
    /// The caller memory behind an attached tensor and its slices; freed after them.
    buffer: Option<Arc<HostBuffer>>,
    runtime: Arc<Runtime>,
}

// SAFETY: a tensor is a handle to process-wide libnrt state, not tied to the thread that made
// it: libnrt documents that several threads may execute a model at once (nrt_api.h on
// nrt_execute: "Several threads may execute the same model; the runtime pipelines them"), and
// those executions use the tensors of their sets from whichever thread calls. An attached
// buffer is heap memory owned by the tensor, not by a thread.
unsafe impl Send for Tensor {}

// SAFETY: `&Tensor` allows only libnrt copy calls (read, write, copy, memset, slice) and
// reads of immutable Rust fields. The copies go through libnrt's process-wide, thread-safe
// state (see Send) into caller buffers that Rust borrows exclusively (`&mut [T]`) or shares
// read-only (`&[T]`); Rust never references the tensor's own storage, so concurrent calls can
// at worst leave a tensor's bytes unspecified (see the type's docs), never race on Rust memory.
unsafe impl Sync for Tensor {}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("placement", &self.placement)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

fn c_name(name: &str) -> Result<CString> {
    CString::new(name).map_err(|_| Error::InvalidArgument {
        what: "tensor name",
        message: format!("{name:?} contains a NUL byte"),
    })
}

/// Bytes taken by `shape` elements of `dtype`, or an error naming the tensor on overflow.
fn shaped_size(name: &str, dtype: DType, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::InvalidArgument {
            what: "tensor shape",
            message: format!("{name:?}: shape {shape:?} of {dtype} overflows the address space"),
        })
}

impl Tensor {
    /// Allocates `size` bytes (`nrt_tensor_allocate`). The contents are undefined until
    /// written (device memory is not cleared); the tensor has no element type.
    ///
    /// # Errors
    /// [`Error::Nrt`] with [`Status::Resource`](crate::Status::Resource) when the core's
    /// memory is exhausted; [`Error::InvalidArgument`] for [`Placement::Attached`] (use
    /// [`Tensor::attach`]), a size of 0, or a name with a NUL byte.
    pub fn allocate(
        runtime: &Arc<Runtime>,
        placement: Placement,
        size: usize,
        name: &str,
    ) -> Result<Tensor> {
        let (raw_placement, core) = match placement {
            Placement::Device(core) => (
                nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_DEVICE,
                i32::try_from(core).map_err(|_| Error::InvalidArgument {
                    what: "core",
                    message: format!("{core} is out of range"),
                })?,
            ),
            Placement::Host => (nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_HOST, -1),
            Placement::Attached => {
                return Err(Error::InvalidArgument {
                    what: "placement",
                    message: "attached tensors are made with Tensor::attach".into(),
                });
            }
        };
        if size == 0 {
            return Err(Error::InvalidArgument {
                what: "tensor size",
                message: format!("{name:?}: a tensor needs at least one byte"),
            });
        }
        let c_name = c_name(name)?;
        let allocate = sym!(runtime.lib(), nrt_tensor_allocate)?;
        let mut out = ptr::null_mut();
        // SAFETY: `c_name` is a valid C string for the call; `out` is a valid place for the
        // handle.
        let status = unsafe { allocate(raw_placement, core, size, c_name.as_ptr(), &mut out) };
        raw::check_for(status, "nrt_tensor_allocate", || {
            Subject::Tensor(name.to_string())
        })?;
        Ok(Tensor {
            raw: raw::non_null(out, "nrt_tensor_allocate")?,
            size,
            name: name.to_string(),
            placement,
            dtype: None,
            shape: None,
            buffer: None,
            runtime: Arc::clone(runtime),
        })
    }

    /// Allocates a tensor of `shape` elements of `dtype`.
    ///
    /// # Errors
    /// As [`Tensor::allocate`]; [`Error::InvalidArgument`] if the shape's size overflows.
    pub fn allocate_shaped(
        runtime: &Arc<Runtime>,
        placement: Placement,
        dtype: DType,
        shape: &[usize],
        name: &str,
    ) -> Result<Tensor> {
        let size = shaped_size(name, dtype, shape)?;
        let mut tensor = Tensor::allocate(runtime, placement, size, name)?;
        tensor.dtype = Some(dtype);
        tensor.shape = Some(shape.to_vec());
        Ok(tensor)
    }

    /// Allocates a tensor matching a model's input or output description: its size, and its
    /// element type and shape when the runtime reported a known element type.
    ///
    /// # Errors
    /// As [`Tensor::allocate`].
    pub fn allocate_like(
        runtime: &Arc<Runtime>,
        placement: Placement,
        info: &TensorInfo,
    ) -> Result<Tensor> {
        let mut tensor = Tensor::allocate(runtime, placement, info.size, &info.name)?;
        if let Some(dtype) = info.dtype
            && shaped_size(&info.name, dtype, &info.shape).ok() == Some(info.size)
        {
            tensor.dtype = Some(dtype);
            tensor.shape = Some(info.shape.clone());
        }
        Ok(tensor)
    }

    /// Allocates a tensor holding `data`, shaped `shape`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `shape` does not have `data.len()` elements; otherwise as
    /// [`Tensor::allocate`] and [`Tensor::write_from`].
    pub fn from_slice<T: NeuronRepr>(
        runtime: &Arc<Runtime>,
        placement: Placement,
        data: &[T],
        shape: &[usize],
        name: &str,
    ) -> Result<Tensor> {
        check_shape(name, shape, data.len())?;
        let tensor = Tensor::allocate_shaped(runtime, placement, T::DTYPE, shape, name)?;
        tensor.write_from(0, data)?;
        Ok(tensor)
    }

    /// Allocates a tensor of `shape` elements of `T`, all zero.
    ///
    /// # Errors
    /// As [`Tensor::allocate`] and [`Tensor::fill_bytes`].
    pub fn zeros<T: NeuronRepr>(
        runtime: &Arc<Runtime>,
        placement: Placement,
        shape: &[usize],
        name: &str,
    ) -> Result<Tensor> {
        let tensor = Tensor::allocate_shaped(runtime, placement, T::DTYPE, shape, name)?;
        tensor.fill_bytes(0)?;
        Ok(tensor)
    }

    /// Makes a tensor over caller memory: `data` is handed to libnrt with
    /// `nrt_tensor_allocate_empty` + `nrt_tensor_attach_buffer`, without a copy. The tensor
    /// owns the buffer from now on and frees it after the tensor and all its slices are freed
    /// (libnrt never frees attached memory).
    ///
    /// The runtime calls this placement VIRTUAL; runtime 2.32 removed it, so there this
    /// returns the runtime's error and a device tensor is the way to go.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] if `shape` does not have `data.len()` elements;
    /// [`Error::InvalidArgument`] for an empty buffer; [`Error::Nrt`] if libnrt refuses.
    pub fn attach<T: NeuronRepr>(
        runtime: &Arc<Runtime>,
        data: Vec<T>,
        shape: &[usize],
        name: &str,
    ) -> Result<Tensor> {
        check_shape(name, shape, data.len())?;
        if data.is_empty() {
            return Err(Error::InvalidArgument {
                what: "tensor size",
                message: format!("{name:?}: cannot attach an empty buffer"),
            });
        }
        let c_name = c_name(name)?;
        let lib = runtime.lib();
        let allocate_empty = sym!(lib, nrt_tensor_allocate_empty)?;
        let attach = sym!(lib, nrt_tensor_attach_buffer)?;
        sym!(lib, nrt_tensor_free)?;
        let mut out = ptr::null_mut();
        // SAFETY: `c_name` is a valid C string; `out` is a valid place for the handle.
        let status = unsafe { allocate_empty(c_name.as_ptr(), &mut out) };
        raw::check_for(status, "nrt_tensor_allocate_empty", || {
            Subject::Tensor(name.to_string())
        })?;
        let buffer = Arc::new(HostBuffer::new(data));
        // From here on, dropping `tensor` frees the handle before the buffer.
        let tensor = Tensor {
            raw: raw::non_null(out, "nrt_tensor_allocate_empty")?,
            size: buffer.bytes,
            name: name.to_string(),
            placement: Placement::Attached,
            dtype: Some(T::DTYPE),
            shape: Some(shape.to_vec()),
            buffer: Some(Arc::clone(&buffer)),
            runtime: Arc::clone(runtime),
        };
        // SAFETY: the buffer is `bytes` bytes of heap memory that nothing else references and
        // that outlives the tensor (the tensor holds the Arc and frees its handle first).
        let status = unsafe {
            attach(
                tensor.raw.as_ptr(),
                buffer.ptr.as_ptr().cast::<c_void>(),
                buffer.bytes,
            )
        };
        raw::check_for(status, "nrt_tensor_attach_buffer", || tensor.subject())?;
        Ok(tensor)
    }

    /// A zero-copy view of `len` bytes at `offset` (`nrt_tensor_allocate_slice`), sharing
    /// this tensor's storage: writes through one are seen through the other. The view keeps
    /// the storage alive on its own, so it may outlive this tensor. It has no element type
    /// until given one with [`Tensor::with_shape`].
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range is not inside the tensor; [`Error::Nrt`] if libnrt
    /// refuses.
    pub fn slice(&self, offset: usize, len: usize, name: &str) -> Result<Tensor> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Err(Error::InvalidArgument {
                what: "slice length",
                message: format!("{name:?}: a slice needs at least one byte"),
            });
        }
        let c_name = c_name(name)?;
        let allocate_slice = sym!(self.runtime.lib(), nrt_tensor_allocate_slice)?;
        let mut out = ptr::null_mut();
        // SAFETY: `self.raw` is a live tensor; the range was checked against its size;
        // `c_name` is a valid C string and `out` a valid place for the handle.
        let status =
            unsafe { allocate_slice(self.raw.as_ptr(), offset, len, c_name.as_ptr(), &mut out) };
        raw::check_for(status, "nrt_tensor_allocate_slice", || self.subject())?;
        Ok(Tensor {
            raw: raw::non_null(out, "nrt_tensor_allocate_slice")?,
            size: len,
            name: name.to_string(),
            placement: self.placement,
            dtype: None,
            shape: None,
            buffer: self.buffer.clone(),
            runtime: Arc::clone(&self.runtime),
        })
    }

    /// Gives the tensor an element type and shape (for typed access and arrays); the shape
    /// must cover exactly the tensor's bytes.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] if `shape` of `dtype` is not the tensor's size.
    pub fn with_shape(mut self, dtype: DType, shape: &[usize]) -> Result<Tensor> {
        let size = shaped_size(&self.name, dtype, shape)?;
        if size != self.size {
            return Err(Error::SizeMismatch {
                what: "shaped tensor",
                tensor: self.name.clone(),
                expected: size,
                got: self.size,
            });
        }
        self.dtype = Some(dtype);
        self.shape = Some(shape.to_vec());
        Ok(self)
    }

    /// The name given at allocation (used in error messages and libnrt's logs; binding to a
    /// model goes by the key in the tensor set).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Where the storage lives.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The element type, if the tensor has one.
    pub fn dtype(&self) -> Option<DType> {
        self.dtype
    }

    /// The shape, if the tensor has one.
    pub fn shape(&self) -> Option<&[usize]> {
        self.shape.as_deref()
    }

    /// The runtime this tensor belongs to.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The raw libnrt handle, for calls this crate does not wrap. The caller must not free
    /// it, and must not use it after this tensor is dropped.
    pub fn as_raw(&self) -> *mut nrt_tensor_t {
        self.raw.as_ptr()
    }

    /// Copies `out.len()` elements starting at element `offset` into `out`
    /// (`nrt_tensor_read`). No allocation: the decoder reads one row of logits per step
    /// into a reused buffer this way.
    ///
    /// # Errors
    /// [`Error::DTypeMismatch`] if the tensor has an element type other than `T`;
    /// [`Error::OutOfBounds`] if the range is not inside the tensor; [`Error::Nrt`] if the
    /// copy fails.
    #[inline]
    pub fn read_into<T: NeuronRepr>(&self, offset: usize, out: &mut [T]) -> Result<()> {
        self.check_dtype(T::DTYPE)?;
        let start = self.element_offset::<T>(offset)?;
        let bytes = size_of_val(out);
        self.check_range(start, bytes)?;
        self.read_raw(start, out.as_mut_ptr().cast::<c_void>(), bytes)
    }

    /// Copies `data` into the tensor starting at element `offset` (`nrt_tensor_write`). No
    /// allocation: the decoder writes a few token ids per step this way.
    ///
    /// # Errors
    /// As [`Tensor::read_into`].
    #[inline]
    pub fn write_from<T: NeuronRepr>(&self, offset: usize, data: &[T]) -> Result<()> {
        self.check_dtype(T::DTYPE)?;
        let start = self.element_offset::<T>(offset)?;
        self.write_bytes(start, as_bytes(data))
    }

    /// Copies bytes starting at byte `offset` into `out`, whatever the element type.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range is not inside the tensor; [`Error::Nrt`] if the
    /// copy fails.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.check_range(offset, out.len())?;
        self.read_raw(offset, out.as_mut_ptr().cast::<c_void>(), out.len())
    }

    /// Copies `data` into the tensor starting at byte `offset`, whatever the element type.
    ///
    /// # Errors
    /// As [`Tensor::read_bytes`].
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let write = sym!(self.runtime.lib(), nrt_tensor_write)?;
        // SAFETY: `self.raw` is live; `data` is readable for `data.len()` bytes for the whole
        // call, and the range was checked against the tensor's size.
        let status = unsafe {
            write(
                self.raw.as_ptr(),
                data.as_ptr().cast::<c_void>(),
                offset,
                data.len(),
            )
        };
        raw::check_for(status, "nrt_tensor_write", || self.subject())
    }

    /// Reads the whole tensor as elements of `T`.
    ///
    /// # Errors
    /// [`Error::Misaligned`] if the size is not a multiple of `T`'s; otherwise as
    /// [`Tensor::read_into`].
    pub fn to_vec<T: NeuronRepr>(&self) -> Result<Vec<T>> {
        self.check_dtype(T::DTYPE)?;
        let len = self.element_count(T::DTYPE)?;
        let mut out = Vec::<T>::with_capacity(len);
        self.read_raw(0, out.as_mut_ptr().cast::<c_void>(), self.size)?;
        // SAFETY: the read filled all `len * size_of::<T>()` = `self.size` bytes, and any bit
        // pattern is a valid `T` (NeuronRepr).
        unsafe { out.set_len(len) };
        Ok(out)
    }

    /// Sets every byte to `value` (`nrt_tensor_memset`).
    ///
    /// # Errors
    /// [`Error::Nrt`] if libnrt refuses.
    pub fn fill_bytes(&self, value: u8) -> Result<()> {
        let memset = sym!(self.runtime.lib(), nrt_tensor_memset)?;
        // SAFETY: `self.raw` is live and the range is the whole tensor.
        let status = unsafe { memset(self.raw.as_ptr(), 0, i32::from(value), self.size) };
        raw::check_for(status, "nrt_tensor_memset", || self.subject())
    }

    /// Copies all of `src` into this tensor (`nrt_tensor_copy`); the sizes must match. Two
    /// device tensors must be on the same NeuronCore.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] if the sizes differ; [`Error::Nrt`] if libnrt refuses (for
    /// example tensors on different cores).
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.size != self.size {
            return Err(Error::SizeMismatch {
                what: "copy source",
                tensor: src.name.clone(),
                expected: self.size,
                got: src.size,
            });
        }
        self.copy_range_from(src, 0, 0, self.size)
    }

    /// Copies `len` bytes from `src` at `src_offset` to this tensor at `dst_offset`
    /// (`nrt_tensor_copy`).
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if either range is outside its tensor; [`Error::Nrt`] if libnrt
    /// refuses.
    pub fn copy_range_from(
        &self,
        src: &Tensor,
        src_offset: usize,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        src.check_range(src_offset, len)?;
        self.check_range(dst_offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let copy = sym!(self.runtime.lib(), nrt_tensor_copy)?;
        // SAFETY: both handles are live and both ranges were checked against their tensors.
        let status = unsafe {
            copy(
                src.raw.as_ptr(),
                src_offset,
                self.raw.as_ptr(),
                dst_offset,
                len,
            )
        };
        raw::check_for(status, "nrt_tensor_copy", || self.subject())
    }

    /// The number of `dtype` elements in the tensor.
    pub(crate) fn element_count(&self, dtype: DType) -> Result<usize> {
        let elem = dtype.size_in_bytes();
        if !self.size.is_multiple_of(elem) {
            return Err(Error::Misaligned {
                tensor: self.name.clone(),
                bytes: self.size,
                dtype,
            });
        }
        Ok(self.size / elem)
    }

    pub(crate) fn subject(&self) -> Subject {
        Subject::Tensor(self.name.clone())
    }

    #[inline]
    pub(crate) fn check_dtype(&self, got: DType) -> Result<()> {
        match self.dtype {
            Some(expected) if expected != got => Err(Error::DTypeMismatch {
                tensor: self.name.clone(),
                expected,
                got,
            }),
            _ => Ok(()),
        }
    }

    #[inline]
    fn element_offset<T: NeuronRepr>(&self, offset: usize) -> Result<usize> {
        offset
            .checked_mul(size_of::<T>())
            .ok_or_else(|| Error::OutOfBounds {
                tensor: self.name.clone(),
                offset: usize::MAX,
                len: 0,
                size: self.size,
            })
    }

    #[inline]
    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(Error::OutOfBounds {
                tensor: self.name.clone(),
                offset,
                len,
                size: self.size,
            }),
        }
    }

    /// `nrt_tensor_read` into `len` bytes at `out`; the range must have been checked.
    #[inline]
    fn read_raw(&self, offset: usize, out: *mut c_void, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let read = sym!(self.runtime.lib(), nrt_tensor_read)?;
        // SAFETY: `self.raw` is live; callers pass `out` writable for `len` bytes for the
        // whole call (an exclusively borrowed slice or a Vec's spare capacity) and a range
        // checked against the tensor's size.
        let status = unsafe { read(self.raw.as_ptr(), out, offset, len) };
        raw::check_for(status, "nrt_tensor_read", || self.subject())
    }
}

/// [`Error::ShapeMismatch`] unless `shape` has `elements` elements.
pub(crate) fn check_shape(name: &str, shape: &[usize], elements: usize) -> Result<()> {
    let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if product == Some(elements) {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            tensor: name.to_string(),
            shape: shape.to_vec(),
            elements,
        })
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        match sym!(self.runtime.lib(), nrt_tensor_free) {
            Ok(free) => {
                let mut handle = self.raw.as_ptr();
                // SAFETY: the handle is live and freed exactly once, here; sets that refer to
                // it hold an Arc to this tensor, so none is left. An attached buffer is
                // released after this (it is a field, dropped after `drop` returns).
                unsafe { free(&mut handle) };
            }
            Err(e) => tracing::warn!(tensor = %self.name, error = %e, "cannot free tensor"),
        }
    }
}
