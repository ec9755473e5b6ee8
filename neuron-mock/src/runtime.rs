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
    log!(
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
    if runtime.config.matmul == crate::kernels::llama::packed::Precision::Bf16 {
        log!(
            Info,
            "nrt_init",
            "weight products in {} (operands rounded to bf16, sums in f32)",
            runtime.config.matmul.description()
        );
    }
    if runtime.faults.is_active() {
        log!(
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
            log!(
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

/// Something C holds a handle to.
pub(crate) trait Object {
    /// Its id, unique in the process.
    fn id(&self) -> u64;
}

impl Object for Tensor {
    fn id(&self) -> u64 {
        self.id
    }
}

impl Object for TensorSet {
    fn id(&self) -> u64 {
        self.id
    }
}

impl Object for Model {
    fn id(&self) -> u64 {
        self.id
    }
}

/// The live objects of one kind, by id: what the handles C holds refer to.
pub(crate) struct Table<T> {
    kind: Kind,
    objects: Mutex<IdMap<T>>,
}

impl<T: Object> Table<T> {
    fn new(kind: Kind) -> Table<T> {
        Table {
            kind,
            objects: Mutex::default(),
        }
    }

    /// Registers an object; returns the handle C gets.
    pub(crate) fn add(&self, object: T) -> usize {
        let id = object.id();
        lock(&self.objects).insert(id, Arc::new(object));
        handle(self.kind, id)
    }

    /// The object a handle refers to.
    pub(crate) fn get(&self, raw: usize) -> NrtResult<Arc<T>> {
        let id = decode(self.kind, raw)?;
        self.by_id(id).ok_or_else(|| stale(self.kind, raw))
    }

    /// The object with this id, if it is alive.
    pub(crate) fn by_id(&self, id: u64) -> Option<Arc<T>> {
        lock(&self.objects).get(&id).cloned()
    }

    /// Unregisters the object a handle refers to; executions holding it keep it alive.
    pub(crate) fn remove(&self, raw: usize) -> NrtResult<Arc<T>> {
        let id = decode(self.kind, raw)?;
        lock(&self.objects)
            .remove(&id)
            .ok_or_else(|| stale(self.kind, raw))
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.objects).len()
    }

    fn take_all(&self) -> IdMap<T> {
        std::mem::take(&mut *lock(&self.objects))
    }
}

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
    pub(crate) tensors: Table<Tensor>,
    pub(crate) sets: Table<TensorSet>,
    pub(crate) models: Table<Model>,
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
            tensors: Table::new(Kind::Tensor),
            sets: Table::new(Kind::TensorSet),
            models: Table::new(Kind::Model),
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

    /// How many models sit on each visible core.
    pub(crate) fn models_per_core(&self) -> Vec<usize> {
        let mut counts = vec![0; self.cores.len()];
        for model in lock(&self.models.objects).values() {
            if let Some(c) = counts.get_mut(model.core as usize) {
                *c += 1;
            }
        }
        counts
    }

    pub(crate) fn live(&self) -> Live {
        Live {
            models: self.models.len() as u64,
            tensors: self.tensors.len() as u64,
            tensor_sets: self.sets.len() as u64,
            device_bytes: self.cores.iter().map(|c| c.used()).sum(),
        }
    }

    fn clear(&self) {
        // Models first: unloading them leaves their worlds.
        drop(self.models.take_all());
        for tensor in self.tensors.take_all().values() {
            tensor.release();
        }
        drop(self.sets.take_all());
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
