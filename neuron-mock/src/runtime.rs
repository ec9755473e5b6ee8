//! The runtime's process-wide state: the lifecycle, the handle tables, device memory.
//!
//! The lifecycle is UNINITIALIZED -> ACTIVE (`nrt_init`) -> CLOSED (`nrt_close`) -> ACTIVE
//! again (a new `nrt_init`). Stateful calls return `NRT_UNINITIALIZED` before the first
//! `nrt_init` and `NRT_CLOSED` after `nrt_close`.
//!
//! Handles given to C are not pointers but tagged ids (`kind << 56 | id`) that are never
//! reused in the life of the process. So a stale, double-freed, or wrong-kind handle is
//! reported as such instead of being dereferenced, and a handle from before `nrt_close` is
//! never mistaken for a new object.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use neuron_sys::bindings::NRT_STATUS;

use crate::collectives::{Rendezvous, Worlds};
use crate::config::Config;
use crate::faults::Faults;
use crate::model::Model;
use crate::tensor::Tensor;
use crate::tensor_set::TensorSet;

/// A failed call: the status to return and the message to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub(crate) status: NRT_STATUS,
    pub(crate) message: String,
}

impl Fail {
    pub(crate) fn new(status: NRT_STATUS, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
        }
    }

    /// `NRT_INVALID`: bad arguments.
    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(NRT_STATUS::NRT_INVALID, message)
    }
}

pub(crate) type NrtResult<T> = Result<T, Fail>;

/// Locks a mutex, ignoring poisoning: every critical section here leaves its data
/// consistent, and a panic inside one is already reported as `NRT_FAILURE`.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

enum Phase {
    Uninitialized,
    Active(Arc<Runtime>),
    Closed,
}

static PHASE: RwLock<Phase> = RwLock::new(Phase::Uninitialized);

/// The runtime, if `nrt_init` has been called and `nrt_close` has not.
pub(crate) fn active() -> NrtResult<Arc<Runtime>> {
    match &*PHASE.read().unwrap_or_else(|p| p.into_inner()) {
        Phase::Active(rt) => Ok(rt.clone()),
        Phase::Uninitialized => Err(Fail::new(
            NRT_STATUS::NRT_UNINITIALIZED,
            "the runtime is not initialized: call nrt_init first",
        )),
        Phase::Closed => Err(Fail::new(
            NRT_STATUS::NRT_CLOSED,
            "the runtime was closed by nrt_close: call nrt_init again to reopen it",
        )),
    }
}

/// The runtime if active, without an error.
pub(crate) fn current() -> Option<Arc<Runtime>> {
    active().ok()
}

/// `nrt_init`: reads the configuration and starts a runtime.
pub(crate) fn init() -> NrtResult<()> {
    crate::log::configure();
    let mut phase = PHASE.write().unwrap_or_else(|p| p.into_inner());
    if matches!(*phase, Phase::Active(_)) {
        return Err(Fail::new(
            NRT_STATUS::NRT_FAILURE,
            "the runtime is already initialized in this process; call nrt_close before \
             nrt_init again",
        ));
    }
    // Like the real runtime, a configuration it cannot use makes nrt_init fail.
    let config =
        Config::from_env().map_err(|message| Fail::new(NRT_STATUS::NRT_FAILURE, message))?;
    let runtime = Runtime::new(config);
    crate::log!(
        Info,
        "nrt_init",
        "neuron-mock {} as libnrt {} on {} ({} of {} NeuronCores visible from core {}, LNC={}, \
         {} GiB device memory per core)",
        env!("CARGO_PKG_VERSION"),
        runtime.config.version,
        runtime.config.topology.profile.name,
        runtime.config.topology.visible,
        runtime.config.topology.total(),
        runtime.config.topology.first_visible,
        runtime.config.topology.lnc,
        runtime.config.topology.memory_per_core() >> 30
    );
    if runtime.faults.is_active() {
        crate::log!(
            Warn,
            "nrt_init",
            "fault injection is on: {:?}",
            runtime.config.faults
        );
    }
    *phase = Phase::Active(Arc::new(runtime));
    Ok(())
}

/// `nrt_close`: ends the runtime, freeing whatever the caller left allocated.
pub(crate) fn close() {
    let previous = {
        let mut phase = PHASE.write().unwrap_or_else(|p| p.into_inner());
        match std::mem::replace(&mut *phase, Phase::Closed) {
            Phase::Active(rt) => Some(rt),
            // Closing twice, or before init, is harmless; keep the phase as it was before init.
            Phase::Uninitialized => {
                *phase = Phase::Uninitialized;
                None
            }
            Phase::Closed => None,
        }
    };
    if let Some(rt) = previous {
        let live = rt.live();
        if live.models + live.tensors + live.tensor_sets > 0 {
            crate::log!(
                Warn,
                "nrt_close",
                "closing with {} models, {} tensors and {} tensor sets still allocated; freeing \
                 them (unload and free everything before nrt_close)",
                live.models,
                live.tensors,
                live.tensor_sets
            );
        }
        rt.clear();
    }
}

/// The kinds of handle given to C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Model = 0x4d,
    Tensor = 0x54,
    TensorSet = 0x53,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Tensor => "tensor",
            Kind::TensorSet => "tensor set",
        }
    }

    fn from_tag(tag: usize) -> Option<Kind> {
        [Kind::Model, Kind::Tensor, Kind::TensorSet]
            .into_iter()
            .find(|k| *k as usize == tag)
    }
}

const TAG_SHIFT: u32 = 56;
const ID_MASK: u64 = (1 << TAG_SHIFT) - 1;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id, never used before in this process.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed) & ID_MASK
}

/// The handle value C sees for an object.
pub(crate) fn handle(kind: Kind, id: u64) -> usize {
    ((kind as usize) << TAG_SHIFT) | id as usize
}

/// The id inside a handle of the expected kind.
pub(crate) fn decode(kind: Kind, raw: usize) -> NrtResult<u64> {
    if raw == 0 {
        return Err(Fail::invalid(format!("the {} handle is NULL", kind.name())));
    }
    match Kind::from_tag(raw >> TAG_SHIFT) {
        Some(k) if k == kind => Ok(raw as u64 & ID_MASK),
        Some(other) => Err(Fail::invalid(format!(
            "{raw:#x} is a {} handle, not a {} handle",
            other.name(),
            kind.name()
        ))),
        None => Err(Fail::invalid(format!(
            "{raw:#x} is not a {} handle from this library",
            kind.name()
        ))),
    }
}

/// Hashes the (sequential) ids with a multiplicative hash: fast, well spread.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<T> = HashMap<u64, Arc<T>, BuildHasherDefault<IdHasher>>;

/// Device memory of one logical core.
#[derive(Debug)]
pub(crate) struct CoreMemory {
    pub(crate) limit: u64,
    used: AtomicU64,
}

impl CoreMemory {
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Reserves `bytes`, or `None` if that would exceed the core's memory.
    pub(crate) fn charge(self: &Arc<Self>, bytes: u64) -> Option<DeviceCharge> {
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            let next = current.checked_add(bytes).filter(|&n| n <= self.limit)?;
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(DeviceCharge {
                        core: self.clone(),
                        bytes,
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// Device memory held by a tensor or model; given back on drop.
#[derive(Debug)]
pub(crate) struct DeviceCharge {
    core: Arc<CoreMemory>,
    bytes: u64,
}

impl Drop for DeviceCharge {
    fn drop(&mut self) {
        self.core.used.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Counts of live objects, for `neuron_mock_live_handles`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) models: u64,
    pub(crate) tensors: u64,
    pub(crate) tensor_sets: u64,
    pub(crate) device_bytes: u64,
}

/// One initialised runtime.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    /// Per visible core, indexed by API core index.
    pub(crate) cores: Vec<Arc<CoreMemory>>,
    pub(crate) faults: Faults,
    pub(crate) worlds: Arc<Mutex<Worlds>>,
    /// `nrt_barrier` / `nrt_all_gather` rendezvous, one per world size.
    pub(crate) host_comms: Mutex<HashMap<u32, Arc<Rendezvous>>>,
    tensors: Mutex<IdMap<Tensor>>,
    sets: Mutex<IdMap<TensorSet>>,
    models: Mutex<IdMap<Model>>,
}

impl Runtime {
    fn new(config: Config) -> Runtime {
        let memory = config.topology.memory_per_core();
        Runtime {
            cores: (0..config.topology.visible)
                .map(|_| {
                    Arc::new(CoreMemory {
                        limit: memory,
                        used: AtomicU64::new(0),
                    })
                })
                .collect(),
            faults: Faults::new(config.faults.clone()),
            config,
            worlds: Arc::default(),
            host_comms: Mutex::default(),
            tensors: Mutex::default(),
            sets: Mutex::default(),
            models: Mutex::default(),
        }
    }

    /// The memory of API core index `vnc`.
    pub(crate) fn core(&self, vnc: i64) -> NrtResult<&Arc<CoreMemory>> {
        usize::try_from(vnc)
            .ok()
            .and_then(|i| self.cores.get(i))
            .ok_or_else(|| {
                Fail::invalid(format!(
                    "NeuronCore {vnc} is not visible to this process ({} visible: 0-{})",
                    self.cores.len(),
                    self.cores.len().saturating_sub(1)
                ))
            })
    }

    /// The chip holding API core index `vnc` (cores on one chip share its memory).
    pub(crate) fn chip_of(&self, vnc: u32) -> u32 {
        let topology = &self.config.topology;
        let per_chip = (topology.profile.cores_per_chip / topology.lnc.max(1)).max(1);
        (topology.first_visible + vnc) / per_chip
    }

    pub(crate) fn add_tensor(&self, tensor: Tensor) -> usize {
        let id = tensor.id;
        lock(&self.tensors).insert(id, Arc::new(tensor));
        handle(Kind::Tensor, id)
    }

    pub(crate) fn tensor(&self, raw: usize) -> NrtResult<Arc<Tensor>> {
        let id = decode(Kind::Tensor, raw)?;
        self.tensor_by_id(id)
            .ok_or_else(|| stale(Kind::Tensor, raw))
    }

    pub(crate) fn tensor_by_id(&self, id: u64) -> Option<Arc<Tensor>> {
        lock(&self.tensors).get(&id).cloned()
    }

    pub(crate) fn remove_tensor(&self, raw: usize) -> NrtResult<Arc<Tensor>> {
        let id = decode(Kind::Tensor, raw)?;
        lock(&self.tensors)
            .remove(&id)
            .ok_or_else(|| stale(Kind::Tensor, raw))
    }

    pub(crate) fn add_set(&self, set: TensorSet) -> usize {
        let id = set.id;
        lock(&self.sets).insert(id, Arc::new(set));
        handle(Kind::TensorSet, id)
    }

    pub(crate) fn set(&self, raw: usize) -> NrtResult<Arc<TensorSet>> {
        let id = decode(Kind::TensorSet, raw)?;
        lock(&self.sets)
            .get(&id)
            .cloned()
            .ok_or_else(|| stale(Kind::TensorSet, raw))
    }

    pub(crate) fn remove_set(&self, raw: usize) -> NrtResult<Arc<TensorSet>> {
        let id = decode(Kind::TensorSet, raw)?;
        lock(&self.sets)
            .remove(&id)
            .ok_or_else(|| stale(Kind::TensorSet, raw))
    }

    pub(crate) fn add_model(&self, model: Model) -> usize {
        let id = model.id;
        lock(&self.models).insert(id, Arc::new(model));
        handle(Kind::Model, id)
    }

    pub(crate) fn model(&self, raw: usize) -> NrtResult<Arc<Model>> {
        let id = decode(Kind::Model, raw)?;
        lock(&self.models)
            .get(&id)
            .cloned()
            .ok_or_else(|| stale(Kind::Model, raw))
    }

    pub(crate) fn remove_model(&self, raw: usize) -> NrtResult<Arc<Model>> {
        let id = decode(Kind::Model, raw)?;
        lock(&self.models)
            .remove(&id)
            .ok_or_else(|| stale(Kind::Model, raw))
    }

    /// How many models sit on each visible core.
    pub(crate) fn models_per_core(&self) -> Vec<usize> {
        let mut counts = vec![0; self.cores.len()];
        for model in lock(&self.models).values() {
            if let Some(c) = counts.get_mut(model.core as usize) {
                *c += 1;
            }
        }
        counts
    }

    pub(crate) fn live(&self) -> Live {
        Live {
            models: lock(&self.models).len() as u64,
            tensors: lock(&self.tensors).len() as u64,
            tensor_sets: lock(&self.sets).len() as u64,
            device_bytes: self.cores.iter().map(|c| c.used()).sum(),
        }
    }

    fn clear(&self) {
        // Models first: unloading them leaves their worlds.
        let models = std::mem::take(&mut *lock(&self.models));
        drop(models);
        let tensors = std::mem::take(&mut *lock(&self.tensors));
        for tensor in tensors.values() {
            tensor.release();
        }
        drop(tensors);
        drop(std::mem::take(&mut *lock(&self.sets)));
    }
}

fn stale(kind: Kind, raw: usize) -> Fail {
    Fail::invalid(format!(
        "unknown {} handle {raw:#x}: it was freed already (double free or use after free), or \
         belongs to a runtime closed by nrt_close",
        kind.name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_reject_the_wrong_kind() {
        let raw = handle(Kind::Tensor, 42);
        assert_eq!(decode(Kind::Tensor, raw), Ok(42));
        assert!(
            decode(Kind::Model, raw)
                .unwrap_err()
                .message
                .contains("is a tensor handle")
        );
        assert!(
            decode(Kind::Tensor, 0)
                .unwrap_err()
                .message
                .contains("NULL")
        );
        assert!(
            decode(Kind::Tensor, 0x1234)
                .unwrap_err()
                .message
                .contains("not a tensor handle")
        );
    }

    #[test]
    fn device_memory_is_charged_and_returned() {
        let core = Arc::new(CoreMemory {
            limit: 100,
            used: AtomicU64::new(0),
        });
        let a = core.charge(60).unwrap();
        assert!(core.charge(41).is_none());
        let b = core.charge(40).unwrap();
        assert_eq!(core.used(), 100);
        drop(a);
        drop(b);
        assert_eq!(core.used(), 0);
        assert!(core.charge(u64::MAX).is_none());
    }
}
