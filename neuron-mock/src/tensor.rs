//! Tensors: a named range of a storage, on a core's device memory or on the host.
//!
//! Ownership follows the C API: a tensor made by `nrt_tensor_allocate` owns its storage (and
//! the device memory it is charged for); a slice shares its source's storage, which lives until
//! the last tensor using it is freed; an attached buffer stays the caller's. Every change that
//! could invalidate a cached execution plan (free, attach) bumps the tensor's version.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use neuron_sys::bindings::{NRT_STATUS, nrt_tensor_placement_t};

use crate::memory::{Binding, Storage};
use crate::runtime::{DeviceCharge, Fail, NrtResult, Runtime, lock, next_id};

#[derive(Debug)]
struct State {
    placement: nrt_tensor_placement_t,
    /// API core index of a device tensor.
    core: Option<u32>,
    storage: Option<Arc<Storage>>,
    offset: usize,
    size: usize,
    /// Device memory this tensor keeps charged (shared by slices of one allocation).
    charge: Option<Arc<DeviceCharge>>,
    freed: bool,
}

/// Counts every change of any tensor that bumps its version: while it stands still, no cached
/// plan needs checking tensor by tensor.
static MUTATIONS: AtomicU64 = AtomicU64::new(0);

/// The current count of tensor changes (see [`Tensor::version`]).
pub(crate) fn mutations() -> u64 {
    MUTATIONS.load(Ordering::Acquire)
}

/// A tensor handle's object.
#[derive(Debug)]
pub(crate) struct Tensor {
    pub(crate) id: u64,
    name: String,
    state: Mutex<State>,
    version: AtomicU64,
}

/// What an operation needs from a tensor, taken under its lock and used without it.
struct View {
    storage: Arc<Storage>,
    offset: usize,
    size: usize,
    core: Option<u32>,
}

impl Tensor {
    fn with_state(name: &str, state: State) -> Tensor {
        Tensor {
            id: next_id(),
            name: name.to_string(),
            state: Mutex::new(state),
            version: AtomicU64::new(0),
        }
    }

    /// `nrt_tensor_allocate`.
    pub(crate) fn allocate(
        rt: &Runtime,
        placement: nrt_tensor_placement_t,
        vnc: i64,
        size: usize,
        name: &str,
    ) -> NrtResult<Tensor> {
        let label = label(name);
        let (core, charge) = match placement {
            nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_DEVICE => {
                let memory = rt.core(vnc)?;
                let charge = memory.charge(size as u64).ok_or_else(|| {
                    Fail::new(
                        NRT_STATUS::NRT_RESOURCE,
                        format!(
                            "cannot allocate {size} bytes for tensor {label} on NeuronCore {vnc}: \
                             {} of {} bytes of device memory are in use",
                            memory.used(),
                            memory.limit
                        ),
                    )
                })?;
                (Some(vnc as u32), Some(Arc::new(charge)))
            }
            nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_HOST => (None, None),
            nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_VIRTUAL
                if !rt.config.version.at_least(2, 32) =>
            {
                (None, None)
            }
            nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_VIRTUAL => {
                return Err(Fail::invalid(format!(
                    "tensor {label}: VIRTUAL placement was removed in runtime 2.32 (this runtime \
                     reports {}); use DEVICE, or HOST",
                    rt.config.version
                )));
            }
            other => {
                return Err(Fail::invalid(format!(
                    "tensor {label}: {other} is not a tensor placement"
                )));
            }
        };
        if let Err(limit) = rt.faults.allocate(size as u64) {
            return Err(Fail::new(
                NRT_STATUS::NRT_RESOURCE,
                format!(
                    "cannot allocate {size} bytes for tensor {label}: fault injected by \
                     NEURON_MOCK_FAULTS (alloc-fail-after={limit})"
                ),
            ));
        }
        let storage = Storage::allocate(size).ok_or_else(|| {
            Fail::new(
                NRT_STATUS::NRT_RESOURCE,
                format!("cannot allocate {size} bytes of host memory for tensor {label}"),
            )
        })?;
        Ok(Tensor::with_state(
            name,
            State {
                placement,
                core,
                storage: Some(Arc::new(storage)),
                offset: 0,
                size,
                charge,
                freed: false,
            },
        ))
    }

    /// `nrt_tensor_allocate_empty`: no storage until a buffer is attached.
    pub(crate) fn empty(name: &str) -> Tensor {
        Tensor::with_state(
            name,
            State {
                placement: nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_VIRTUAL,
                core: None,
                storage: None,
                offset: 0,
                size: 0,
                charge: None,
                freed: false,
            },
        )
    }

    /// `nrt_tensor_allocate_slice`: `size` bytes at `offset`, sharing this tensor's storage.
    pub(crate) fn slice(&self, offset: usize, size: usize, name: &str) -> NrtResult<Tensor> {
        let state = lock(&self.state);
        let Some(storage) = &state.storage else {
            return Err(Fail::invalid(format!(
                "cannot slice tensor {}: it has no storage",
                self.label()
            )));
        };
        if offset.checked_add(size).is_none_or(|end| end > state.size) {
            return Err(Fail::invalid(format!(
                "slice [{offset}, {offset}+{size}) is outside tensor {} of {} bytes",
                self.label(),
                state.size
            )));
        }
        Ok(Tensor::with_state(
            name,
            State {
                placement: state.placement,
                core: state.core,
                storage: Some(storage.clone()),
                offset: state.offset + offset,
                size,
                charge: state.charge.clone(),
                freed: false,
            },
        ))
    }

    /// `nrt_tensor_attach_buffer`: from now on the tensor is the caller's buffer.
    pub(crate) fn attach(&self, storage: Storage) {
        let mut state = lock(&self.state);
        state.size = storage.len();
        state.storage = Some(Arc::new(storage));
        state.offset = 0;
        state.placement = nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_VIRTUAL;
        state.core = None;
        state.charge = None;
        self.version.fetch_add(1, Ordering::Release);
        MUTATIONS.fetch_add(1, Ordering::Release);
    }

    /// `nrt_tensor_free`: gives back the storage and device memory this tensor holds.
    pub(crate) fn release(&self) {
        let mut state = lock(&self.state);
        state.storage = None;
        state.charge = None;
        state.freed = true;
        self.version.fetch_add(1, Ordering::Release);
        MUTATIONS.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever a cached binding of this tensor becomes wrong.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> usize {
        lock(&self.state).size
    }

    /// Address of the first byte, if it has storage.
    pub(crate) fn address(&self) -> Option<*mut u8> {
        let state = lock(&self.state);
        state.storage.as_ref().map(|s| s.ptr_at(state.offset))
    }

    /// The tensor's name in messages: `'name'`, or `(unnamed)`.
    pub(crate) fn label(&self) -> String {
        label(&self.name)
    }

    fn view(&self) -> NrtResult<View> {
        let state = lock(&self.state);
        match &state.storage {
            Some(storage) => Ok(View {
                storage: storage.clone(),
                offset: state.offset,
                size: state.size,
                core: state.core,
            }),
            None => Err(Fail::invalid(format!(
                "tensor {} has no storage (allocated empty and no buffer attached)",
                self.label()
            ))),
        }
    }

    fn check_range(&self, view: &View, offset: u64, len: usize, what: &str) -> NrtResult<usize> {
        let offset = usize::try_from(offset).ok();
        match offset {
            Some(o) if o.checked_add(len).is_some_and(|end| end <= view.size) => Ok(o),
            _ => Err(Fail::invalid(format!(
                "{what} of {len} bytes at offset {} is outside tensor {} of {} bytes",
                offset.map_or_else(|| "(too large)".to_string(), |o| o.to_string()),
                self.label(),
                view.size
            ))),
        }
    }

    /// `nrt_tensor_read`.
    pub(crate) fn read(&self, offset: u64, dst: &mut [u8]) -> NrtResult<()> {
        let view = self.view()?;
        let offset = self.check_range(&view, offset, dst.len(), "read")?;
        view.storage.read(view.offset + offset, dst);
        Ok(())
    }

    /// `nrt_tensor_write`.
    pub(crate) fn write(&self, offset: u64, src: &[u8]) -> NrtResult<()> {
        let view = self.view()?;
        let offset = self.check_range(&view, offset, src.len(), "write")?;
        view.storage.write(view.offset + offset, src);
        Ok(())
    }

    /// `nrt_tensor_memset`.
    pub(crate) fn fill(&self, offset: u64, value: u8, len: usize) -> NrtResult<()> {
        let view = self.view()?;
        let offset = self.check_range(&view, offset, len, "memset")?;
        view.storage.fill(view.offset + offset, len, value);
        Ok(())
    }

    /// `nrt_tensor_copy`. Device tensors must be on the same chip (sharing its memory).
    pub(crate) fn copy(
        rt: &Runtime,
        src: &Tensor,
        src_offset: u64,
        dst: &Tensor,
        dst_offset: u64,
        len: usize,
    ) -> NrtResult<()> {
        let from = src.view()?;
        let to = dst.view()?;
        if let (Some(a), Some(b)) = (from.core, to.core)
            && rt.chip_of(a) != rt.chip_of(b)
        {
            return Err(Fail::invalid(format!(
                "cannot copy from tensor {} on NeuronCore {a} to tensor {} on NeuronCore {b}: \
                 device tensors must share a device's memory",
                src.label(),
                dst.label()
            )));
        }
        let so = src.check_range(&from, src_offset, len, "copy source")?;
        let dof = dst.check_range(&to, dst_offset, len, "copy destination")?;
        Storage::copy(
            &from.storage,
            from.offset + so,
            &to.storage,
            to.offset + dof,
            len,
        );
        Ok(())
    }

    /// The bytes an execution binds for a model tensor of `len` bytes.
    pub(crate) fn binding(&self, len: usize) -> Result<Binding, String> {
        let state = lock(&self.state);
        if state.freed {
            return Err("was freed".into());
        }
        if state.size != len {
            return Err(format!("is {} bytes, the model needs {len}", state.size));
        }
        let storage = state
            .storage
            .clone()
            .ok_or_else(|| "has no storage (allocated empty, no buffer attached)".to_string())?;
        Binding::new(storage, state.offset, len).ok_or_else(|| "is outside its storage".to_string())
    }
}

fn label(name: &str) -> String {
    if name.is_empty() {
        "(unnamed)".to_string()
    } else {
        format!("'{name}'")
    }
}
