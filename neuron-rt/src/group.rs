//! [`ModelGroup`]: one NEFF loaded on N NeuronCores as ranks 0..N-1 of a collective world,
//! executed on all ranks at once.
//!
//! A NEFF with collectives (a tensor-parallel layer that all-reduces, say) completes only when
//! every rank executes it at the same time, so each rank needs its own thread calling
//! `nrt_execute` (libnrt-api.md §7). A tensor-parallel decoder does this once per token, so
//! the threads are persistent: the calling thread runs rank 0 itself, and one worker thread
//! per other rank waits for work (spinning briefly before it sleeps where the machine has cores
//! to spare). A step costs two hand-offs per worker, with no allocation and no thread creation.

use std::borrow::{Borrow, BorrowMut};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, Status};
use crate::model::{IoSets, Model, read_neff_file};
use crate::raw::{ExecuteFn, NRT_STATUS, nrt_model_t, nrt_tensor_set_t};
use crate::runtime::Runtime;
use crate::tensor_set::TensorSet;

/// How long a rank worker (or the caller waiting for one) spins before it sleeps when the
/// machine has a spare core for every rank thread (see [`ModelGroupLoader::spin`]). Long
/// enough to bridge the host work between two
/// decode steps, short enough not to burn a core when the group sits idle.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(100);

/// Options for loading a [`ModelGroup`]; from [`ModelGroup::loader`].
#[derive(Debug, Clone)]
#[must_use = "call .load() or .load_file() to load the group"]
pub struct ModelGroupLoader {
    runtime: Arc<Runtime>,
    cores: Range<u32>,
    name: Option<String>,
    spin: Option<Duration>,
}

/// The spin used when none is set: [`DEFAULT_SPIN`] if the machine has at least two more
/// hardware threads than the group has ranks, else none. Spinning only pays when the spinning
/// thread does not take the core that the thread it waits for needs: on a 2-core machine a
/// spinning 2-rank group measured 2-4x slower per step under load than one that sleeps at once.
fn default_spin(world: u32) -> Duration {
    let threads = thread::available_parallelism().map_or(1, usize::from);
    if threads >= world as usize + 2 {
        DEFAULT_SPIN
    } else {
        Duration::ZERO
    }
}

impl ModelGroupLoader {
    /// The cores to load on: rank `r` goes on core `cores.start + r`, and the world size is
    /// the number of cores (default: core 0 only).
    pub fn cores(mut self, cores: Range<u32>) -> Self {
        self.cores = cores;
        self
    }

    /// The name used in error messages (default: the file's stem, or `"neff"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How long idle rank workers (and the caller waiting for them) spin before sleeping.
    /// Zero sleeps at once: cheapest on a busy machine, a few microseconds slower to wake.
    /// By default [`DEFAULT_SPIN`] when the machine has at least two hardware threads more
    /// than the group has ranks, else zero.
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = Some(spin);
        self
    }

    /// Loads the NEFF in `path` on every rank.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; otherwise as [`ModelGroupLoader::load`].
    pub fn load_file(self, path: impl AsRef<Path>) -> Result<ModelGroup> {
        let path = path.as_ref();
        let (bytes, stem) = read_neff_file(path)?;
        let name = self.name.clone().unwrap_or(stem);
        self.name(name).load_inner(&bytes, Some(path))
    }

    /// Loads the NEFF on every rank (`nrt_load_collectives` with rank `r` of the world),
    /// all ranks in parallel, since a runtime may wait at load for its peers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty core range; [`Error::Rank`] naming the rank
    /// whose load failed (the ranks that did load are unloaded again).
    pub fn load(self, neff: &[u8]) -> Result<ModelGroup> {
        self.load_inner(neff, None)
    }

    fn load_inner(self, neff: &[u8], path: Option<&Path>) -> Result<ModelGroup> {
        let world = self.cores.end.saturating_sub(self.cores.start);
        if world == 0 {
            return Err(Error::InvalidArgument {
                what: "cores",
                message: format!("core range {:?} is empty", self.cores),
            });
        }
        let name = self.name.unwrap_or_else(|| "neff".into());
        let runtime = &self.runtime;
        let cores = self.cores.clone();
        let loaded: Vec<Result<Model>> = thread::scope(|scope| {
            let handles: Vec<_> = cores
                .clone()
                .enumerate()
                .map(|(rank, core)| {
                    let name = &name;
                    scope.spawn(move || {
                        Model::loader(runtime)
                            .core(core)
                            .rank(rank as u32, world)
                            .name(name.clone())
                            .load_inner(neff, path)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::InvalidArgument {
                            what: "rank load",
                            message: "the loading thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        let mut ranks = Vec::with_capacity(loaded.len());
        let mut failures = Vec::new();
        for (rank, result) in loaded.into_iter().enumerate() {
            match result {
                Ok(model) => ranks.push(model),
                Err(e) => failures.push((rank as u32, e)),
            }
        }
        if !failures.is_empty() {
            return Err(rank_error(&name, world, failures));
        }
        let spin = self.spin.unwrap_or_else(|| default_spin(world));
        let workers = (1..world)
            .map(|rank| Worker::spawn(&name, rank, spin))
            .collect::<Result<Vec<_>>>()?;
        tracing::debug!(group = %name, world, first_core = cores.start, "loaded model group");
        Ok(ModelGroup {
            name,
            ranks,
            workers,
            dispatch: Mutex::new(()),
            spin,
        })
    }
}

/// One NEFF loaded on N NeuronCores as ranks 0..N-1 of a collective world, executed on all
/// ranks concurrently.
///
/// Each rank is a [`Model`] with its own input and output sets (tensors live on the rank's
/// core). [`ModelGroup::execute`] runs every rank at once and returns when all have
/// finished; each rank's results are in its output set. If any rank fails, the whole call
/// fails with [`Error::Rank`], which names the rank that caused it (a rank that timed out
/// waiting for a failed peer is reported only if no other rank failed otherwise).
///
/// Group executions are serialised (a collective step needs every rank at once; two
/// interleaved steps would deadlock the ranks), so `execute` takes `&self` and the group may
/// be shared between threads.
pub struct ModelGroup {
    name: String,
    ranks: Vec<Model>,
    /// Workers for ranks 1..N; rank 0 runs on the calling thread.
    workers: Vec<Worker>,
    dispatch: Mutex<()>,
    spin: Duration,
}

impl fmt::Debug for ModelGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelGroup")
            .field("name", &self.name)
            .field("world", &self.ranks.len())
            .field("ranks", &self.ranks)
            .finish_non_exhaustive()
    }
}

impl ModelGroup {
    /// Options for loading a group.
    pub fn loader(runtime: &Arc<Runtime>) -> ModelGroupLoader {
        ModelGroupLoader {
            runtime: Arc::clone(runtime),
            cores: 0..1,
            name: None,
            spin: None,
        }
    }

    /// Loads `neff` on `cores`, rank `r` on core `cores.start + r`.
    ///
    /// # Errors
    /// As [`ModelGroupLoader::load`].
    pub fn load(runtime: &Arc<Runtime>, neff: &[u8], cores: Range<u32>) -> Result<ModelGroup> {
        ModelGroup::loader(runtime).cores(cores).load(neff)
    }

    /// The name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of ranks.
    pub fn world_size(&self) -> u32 {
        self.ranks.len() as u32
    }

    /// The model of rank `rank`, if there is one.
    pub fn rank(&self, rank: u32) -> Option<&Model> {
        self.ranks.get(rank as usize)
    }

    /// Every rank's model, by rank.
    pub fn ranks(&self) -> &[Model] {
        &self.ranks
    }

    /// Allocates input and output sets for every rank, on that rank's core (see
    /// [`Model::allocate_io`]).
    ///
    /// # Errors
    /// As [`Model::allocate_io`].
    pub fn allocate_io(&self) -> Result<Vec<IoSets>> {
        self.ranks.iter().map(Model::allocate_io).collect()
    }

    /// Executes every rank at once, rank `r` with `inputs[r]` and `outputs[r]`, and returns
    /// when all have finished.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is not one input and one output set per rank;
    /// [`Error::Rank`] naming the failing rank if a set does not fit its model (see
    /// [`Model::check_io`]) or an execution fails.
    pub fn execute<I, O>(&self, inputs: &[I], outputs: &mut [O]) -> Result<()>
    where
        I: Borrow<TensorSet>,
        O: BorrowMut<TensorSet>,
    {
        let world = self.ranks.len();
        if inputs.len() != world || outputs.len() != world {
            return Err(Error::InvalidArgument {
                what: "tensor sets",
                message: format!(
                    "group {:?} has {world} ranks but got {} input and {} output sets",
                    self.name,
                    inputs.len(),
                    outputs.len()
                ),
            });
        }
        // Held exclusively by this call; shared within it, one set per rank.
        let outputs: &[O] = outputs;
        self.run(|rank| (inputs[rank].borrow(), outputs[rank].borrow()))
    }

    /// [`ModelGroup::execute`] with the sets of [`ModelGroup::allocate_io`].
    ///
    /// # Errors
    /// As [`ModelGroup::execute`].
    pub fn execute_io(&self, io: &mut [IoSets]) -> Result<()> {
        if io.len() != self.ranks.len() {
            return Err(Error::InvalidArgument {
                what: "tensor sets",
                message: format!(
                    "group {:?} has {} ranks but got {} pairs of sets",
                    self.name,
                    self.ranks.len(),
                    io.len()
                ),
            });
        }
        self.run(|rank| (&io[rank].inputs, &io[rank].outputs))
    }

    /// Validates, dispatches ranks 1.. to their workers, runs rank 0 here, waits for all.
    ///
    /// `sets(r)` gives rank `r`'s sets. The callers hold the output sets exclusively for the
    /// whole call, so no other execution uses them meanwhile.
    fn run<'s>(&self, sets: impl Fn(usize) -> (&'s TensorSet, &'s TensorSet)) -> Result<()> {
        // Serialise group steps; a poisoned lock only means an earlier caller panicked.
        let _step: MutexGuard<'_, ()> = self
            .dispatch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (rank, model) in self.ranks.iter().enumerate() {
            let (inputs, outputs) = sets(rank);
            if let Err(e) = model.ensure_checked(inputs, outputs) {
                return Err(rank_error(
                    &self.name,
                    self.world_size(),
                    vec![(rank as u32, e)],
                ));
            }
        }
        let waiter = thread::current();
        let mut in_flight = InFlight {
            workers: &self.workers,
            submitted: 0,
            spin: self.spin,
        };
        for (worker, model) in self.workers.iter().zip(&self.ranks[1..]) {
            let (inputs, outputs) = sets(in_flight.submitted + 1);
            let (execute, handle) = model.execute_parts();
            worker.submit(
                Job {
                    execute,
                    model: handle,
                    inputs: inputs.as_raw(),
                    outputs: outputs.as_raw(),
                },
                &waiter,
            );
            in_flight.submitted += 1;
        }
        let (inputs, outputs) = sets(0);
        let (execute, handle) = self.ranks[0].execute_parts();
        // SAFETY: the model and both sets are live for the call (borrowed by our caller);
        // several threads may execute (nrt_api.h on nrt_execute), and rank 0's output set is
        // used by no other rank.
        let status0 = unsafe { execute(handle, inputs.as_raw(), outputs.as_raw()) };
        in_flight.wait_all();
        drop(in_flight);

        let ok = status0.is_success()
            && self
                .workers
                .iter()
                .all(|w| NRT_STATUS(w.slot.status.load(Ordering::Acquire)).is_success());
        if ok {
            return Ok(());
        }
        let statuses = std::iter::once(status0).chain(
            self.workers
                .iter()
                .map(|w| NRT_STATUS(w.slot.status.load(Ordering::Acquire))),
        );
        let failures = statuses
            .enumerate()
            .filter(|(_, s)| !s.is_success())
            .map(|(rank, status)| {
                (
                    rank as u32,
                    Error::Nrt {
                        call: "nrt_execute",
                        status: Status::from(status),
                        subject: Some(self.ranks[rank].subject()),
                    },
                )
            })
            .collect();
        Err(rank_error(&self.name, self.world_size(), failures))
    }
}

impl Drop for ModelGroup {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.slot.state.store(SHUTDOWN, Ordering::Release);
            if let Some(thread) = worker.thread.as_ref() {
                thread.thread().unpark();
            }
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take()
                && thread.join().is_err()
            {
                tracing::warn!(group = %self.name, "a rank worker thread panicked");
            }
        }
        // The models (fields) are unloaded after this, with no worker left to use them.
    }
}

/// Builds the group error from every failing rank: the reported rank is the lowest one that
/// did not merely time out waiting for its peers, or the lowest failing rank if all did.
fn rank_error(group: &str, world: u32, mut failures: Vec<(u32, Error)>) -> Error {
    failures.sort_by_key(|(rank, _)| *rank);
    let failed: Vec<u32> = failures.iter().map(|(rank, _)| *rank).collect();
    let cause = failures
        .iter()
        .position(|(_, e)| !e.status().is_some_and(Status::is_timeout))
        .unwrap_or(0);
    let (rank, source) = failures.swap_remove(cause);
    Error::Rank {
        model: group.to_string(),
        rank,
        world,
        failed,
        source: Box::new(source),
    }
}

const IDLE: u32 = 0;
const SUBMITTED: u32 = 1;
const DONE: u32 = 2;
const SHUTDOWN: u32 = 3;

/// One execution for a worker: raw handles only, valid while the submitting call waits.
#[derive(Clone, Copy)]
struct Job {
    execute: ExecuteFn,
    model: *mut nrt_model_t,
    inputs: *const nrt_tensor_set_t,
    outputs: *mut nrt_tensor_set_t,
}

// SAFETY: the handles point to process-wide libnrt objects that several threads may execute
// with (nrt_api.h on nrt_execute: "Several threads may execute the same model"). The Rust
// objects behind them are borrowed by `ModelGroup::run`, which does not return (nor unwind)
// before the worker has finished with the job: `InFlight` waits for every submitted job.
unsafe impl Send for Job {}

/// The hand-off between the caller and one rank worker.
struct Slot {
    /// IDLE -> SUBMITTED (caller) -> DONE (worker) -> IDLE (caller); SHUTDOWN at drop.
    state: AtomicU32,
    /// The job; written by the caller before SUBMITTED, read by the worker after it.
    job: Mutex<Option<Job>>,
    /// The worker's `nrt_execute` status, valid once DONE.
    status: AtomicU32,
    /// The thread to wake when DONE.
    waiter: Mutex<Option<Thread>>,
}

struct Worker {
    slot: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(group: &str, rank: u32, spin: Duration) -> Result<Worker> {
        let slot = Arc::new(Slot {
            state: AtomicU32::new(IDLE),
            job: Mutex::new(None),
            status: AtomicU32::new(0),
            waiter: Mutex::new(None),
        });
        let worker_slot = Arc::clone(&slot);
        let thread = thread::Builder::new()
            .name(format!("{group}-rank{rank}"))
            .spawn(move || worker_loop(&worker_slot, spin))
            .map_err(|e| Error::InvalidArgument {
                what: "rank worker",
                message: format!("cannot start the thread for rank {rank}: {e}"),
            })?;
        Ok(Worker {
            slot,
            thread: Some(thread),
        })
    }

    fn submit(&self, job: Job, waiter: &Thread) {
        *lock(&self.slot.job) = Some(job);
        *lock(&self.slot.waiter) = Some(waiter.clone());
        self.slot.state.store(SUBMITTED, Ordering::Release);
        if let Some(thread) = self.thread.as_ref() {
            thread.thread().unpark();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The protected values are plain data that a panic cannot leave half-written.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn worker_loop(slot: &Slot, spin: Duration) {
    loop {
        let state = wait_until(&slot.state, spin, |s| s == SUBMITTED || s == SHUTDOWN);
        if state == SHUTDOWN {
            return;
        }
        let status = match lock(&slot.job).take() {
            // SAFETY: the submitter keeps the model and sets alive until it sees DONE
            // (see `Job`); several threads may execute (nrt_api.h on nrt_execute).
            Some(job) => unsafe { (job.execute)(job.model, job.inputs, job.outputs) },
            None => NRT_STATUS::NRT_FAILURE,
        };
        slot.status.store(status.0, Ordering::Relaxed);
        let waiter = lock(&slot.waiter).take();
        slot.state.store(DONE, Ordering::Release);
        if let Some(waiter) = waiter {
            waiter.unpark();
        }
    }
}

/// Waits until `state` satisfies `ready`: spins for `spin`, then sleeps (woken by unpark).
/// Returns the state seen.
fn wait_until(state: &AtomicU32, spin: Duration, ready: impl Fn(u32) -> bool) -> u32 {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        let seen = state.load(Ordering::Acquire);
        if ready(seen) {
            return seen;
        }
        polls = polls.wrapping_add(1);
        // Reading the clock costs more than a poll: check it every 64 polls.
        if !polls.is_multiple_of(64) || start.elapsed() < spin {
            std::hint::spin_loop();
        } else {
            // A stale unpark token only makes this return early; the loop checks again.
            thread::park();
        }
    }
}

/// Jobs handed to workers by one `run`. Waiting for them is in `Drop` too, so the borrowed
/// sets outlive the workers' use of them even if the caller unwinds.
struct InFlight<'g> {
    workers: &'g [Worker],
    submitted: usize,
    spin: Duration,
}

impl InFlight<'_> {
    fn wait_all(&mut self) {
        for worker in &self.workers[..self.submitted] {
            wait_until(&worker.slot.state, self.spin, |s| {
                s == DONE || s == SHUTDOWN
            });
            // The next submit overwrites everything; IDLE just documents the state.
            let _ =
                worker
                    .slot
                    .state
                    .compare_exchange(DONE, IDLE, Ordering::AcqRel, Ordering::Acquire);
        }
        self.submitted = 0;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.wait_all();
    }
}
