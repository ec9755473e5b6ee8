//! Collectives between the ranks of a world, in one process.
//!
//! On a device, collectives are compiled into the NEFF and every rank's execution meets the
//! others inside it. Here each rank is a thread calling `nrt_execute` on its own copy of the
//! model; inside the kernel they meet at a [`Rendezvous`]: each rank deposits its data, the
//! last to arrive combines them (in rank order, so every rank gets bit-identical results), and
//! every rank copies the result out. A rank that does not arrive by the execution's deadline
//! (`NEURON_RT_EXEC_TIMEOUT`) makes the others fail with `NRT_TIMEOUT`: never a hang.
//!
//! Worlds of models are formed at load time ([`Worlds`]); host-called `nrt_barrier` /
//! `nrt_all_gather` use one rendezvous per world size, the process's global communicator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use neuron_sys::bindings::NRT_STATUS;

/// Why a collective failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectiveError {
    /// Some ranks did not arrive before the deadline.
    #[error(
        "{op}: rank {rank} of a world of {world_size} waited {waited:?} (NEURON_RT_EXEC_TIMEOUT) \
         but ranks {missing:?} never arrived"
    )]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The rank that gave up.
        rank: usize,
        /// Ranks in the world.
        world_size: usize,
        /// Ranks that had not arrived.
        missing: Vec<usize>,
        /// How long it waited.
        waited: Duration,
    },
    /// Ranks called different collectives, or the same one with different sizes.
    #[error("{op}: rank {rank} does not match the ranks already waiting: {detail}")]
    Mismatch {
        /// The operation this rank called.
        op: &'static str,
        /// The rank.
        rank: usize,
        /// What differs.
        detail: String,
    },
    /// A rank arrived while the same rank was already waiting (two models loaded as one rank).
    #[error(
        "{op}: rank {rank} arrived twice in one round; are two models loaded as the same rank \
         of one world?"
    )]
    DuplicateRank {
        /// The operation.
        op: &'static str,
        /// The rank.
        rank: usize,
    },
    /// A rank id outside the world.
    #[error("rank {rank} is outside a world of {world_size}")]
    BadRank {
        /// The rank.
        rank: usize,
        /// Ranks in the world.
        world_size: usize,
    },
}

impl CollectiveError {
    /// The status an execution failing with this error returns.
    pub fn status(&self) -> NRT_STATUS {
        match self {
            CollectiveError::Timeout { .. } => NRT_STATUS::NRT_TIMEOUT,
            CollectiveError::BadRank { .. } => NRT_STATUS::NRT_INVALID,
            _ => NRT_STATUS::NRT_EXEC_COMPLETED_WITH_ERR,
        }
    }
}

/// What one round of a rendezvous does; every rank of the round must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Barrier,
    /// Elementwise f32 sum; `len` elements per rank.
    AllReduceSumF32 {
        len: usize,
    },
    /// Concatenation in rank order; `bytes` per rank.
    AllGather {
        bytes: usize,
    },
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Barrier => "barrier",
            Op::AllReduceSumF32 { .. } => "all_reduce_sum",
            Op::AllGather { .. } => "all_gather",
        }
    }
}

#[derive(Debug, Default)]
struct Round {
    /// Counts rounds, so a waiter can tell its round completed from a later one.
    number: u64,
    op: Option<Op>,
    /// Each rank's deposit (buffers are reused from round to round).
    deposits: Vec<Vec<u8>>,
    present: Vec<bool>,
    arrived: usize,
    /// Set when the round's result is ready (or it failed); ranks then copy out and depart.
    done: bool,
    failure: Option<CollectiveError>,
    result: Vec<u8>,
    departed: usize,
    /// Ranks asleep on the condition variable (the others are spinning, or busy).
    parked: usize,
}

/// How long a waiting rank spins (yielding the CPU) before it sleeps. Ranks of a world running
/// the same kernel usually arrive within microseconds of each other; waking a sleeping thread
/// costs tens of microseconds, too much for a decode step's dozens of all-reduces.
const SPIN: Duration = Duration::from_micros(50);

/// Where the ranks of one world meet.
#[derive(Debug)]
pub(crate) struct Rendezvous {
    size: usize,
    round: Mutex<Round>,
    /// Bumped (under the lock) on every change a waiter may be waiting for, so spinning
    /// waiters can watch it without the lock.
    changes: AtomicU64,
    changed: Condvar,
}

impl Rendezvous {
    pub(crate) fn new(size: usize) -> Rendezvous {
        Rendezvous {
            size,
            round: Mutex::new(Round {
                deposits: vec![Vec::new(); size],
                present: vec![false; size],
                ..Round::default()
            }),
            changes: AtomicU64::new(0),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells waiters the round changed (call with the lock held).
    fn notify(&self, round: &Round) {
        self.changes.fetch_add(1, Ordering::Release);
        if round.parked > 0 {
            self.changed.notify_all();
        }
    }

    /// Waits until `ready` holds or `deadline` passes (then returns false): spins for
    /// [`SPIN`] watching `changes` without the lock, then sleeps on the condition variable.
    fn wait_until<'g>(
        &'g self,
        mut round: MutexGuard<'g, Round>,
        deadline: Instant,
        ready: impl Fn(&Round) -> bool,
    ) -> (MutexGuard<'g, Round>, bool) {
        let spin_until = Instant::now() + SPIN;
        loop {
            if ready(&round) {
                return (round, true);
            }
            let now = Instant::now();
            if now >= deadline {
                return (round, false);
            }
            if now < spin_until.min(deadline) {
                let seen = self.changes.load(Ordering::Acquire);
                drop(round);
                let mut spins = 0u32;
                while self.changes.load(Ordering::Acquire) == seen {
                    spins += 1;
                    if spins < 64 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                        if Instant::now() >= spin_until.min(deadline) {
                            break;
                        }
                    }
                }
                round = self.lock();
                continue;
            }
            round.parked += 1;
            let (g, _) = self
                .changed
                .wait_timeout(round, deadline - now)
                .unwrap_or_else(|p| p.into_inner());
            round = g;
            round.parked -= 1;
        }
    }

    /// One rank's part in one round: deposit `input`, wait for every rank, write this rank's
    /// share of the result into `output`.
    fn exchange(
        &self,
        rank: usize,
        op: Op,
        input: &[u8],
        output: &mut [u8],
        deadline: Instant,
    ) -> Result<(), CollectiveError> {
        let started = Instant::now();
        if rank >= self.size {
            return Err(CollectiveError::BadRank {
                rank,
                world_size: self.size,
            });
        }
        // Wait for the previous round to empty out before joining the next.
        let (mut round, in_time) = self.wait_until(self.lock(), deadline, |r| !r.done);
        if !in_time {
            return Err(self.timeout(&round, op, rank, started));
        }
        if round.present[rank] {
            return Err(CollectiveError::DuplicateRank {
                op: op.name(),
                rank,
            });
        }
        match round.op {
            None => round.op = Some(op),
            Some(current) if current != op => {
                // Fail the whole round at once rather than letting the others time out.
                let error = CollectiveError::Mismatch {
                    op: op.name(),
                    rank,
                    detail: format!("this rank called {op:?}, the others {current:?}"),
                };
                round.failure = Some(error.clone());
                round.done = true;
                self.notify(&round);
                return Err(error);
            }
            Some(_) => {}
        }
        round.deposits[rank].clear();
        round.deposits[rank].extend_from_slice(input);
        round.present[rank] = true;
        round.arrived += 1;
        let number = round.number;
        if round.arrived == self.size {
            combine(&mut round, op);
            round.done = true;
            self.notify(&round);
        }
        let (mut round, in_time) =
            self.wait_until(round, deadline, |r| r.done && r.number == number);
        if !in_time {
            // Withdraw, so the round is clean for whoever comes later.
            round.present[rank] = false;
            round.arrived -= 1;
            if round.arrived == 0 {
                round.op = None;
            }
            return Err(self.timeout(&round, op, rank, started));
        }
        let outcome = match &round.failure {
            Some(error) => Err(error.clone()),
            None => {
                copy_out(&round.result, op, rank, output);
                Ok(())
            }
        };
        round.departed += 1;
        if round.departed == round.arrived {
            round.number += 1;
            round.op = None;
            round.arrived = 0;
            round.departed = 0;
            round.done = false;
            round.failure = None;
            round.present.iter_mut().for_each(|p| *p = false);
            self.notify(&round);
        }
        outcome
    }

    fn timeout(&self, round: &Round, op: Op, rank: usize, started: Instant) -> CollectiveError {
        CollectiveError::Timeout {
            op: op.name(),
            rank,
            world_size: self.size,
            missing: (0..self.size)
                .filter(|&r| r != rank && !round.present[r])
                .collect(),
            waited: started.elapsed(),
        }
    }
}

/// Combines the deposits of a full round into `round.result`, in rank order.
fn combine(round: &mut Round, op: Op) {
    let Round {
        deposits, result, ..
    } = round;
    result.clear();
    match op {
        Op::Barrier => {}
        Op::AllGather { .. } => deposits.iter().for_each(|d| result.extend_from_slice(d)),
        Op::AllReduceSumF32 { len } => {
            result.resize(len * 4, 0);
            let mut sums = vec![0f32; len];
            for deposit in deposits.iter() {
                for (sum, bytes) in sums.iter_mut().zip(deposit.chunks_exact(4)) {
                    *sum += f32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                }
            }
            for (out, sum) in result.chunks_exact_mut(4).zip(&sums) {
                out.copy_from_slice(&sum.to_ne_bytes());
            }
        }
    }
}

fn copy_out(result: &[u8], op: Op, _rank: usize, output: &mut [u8]) {
    match op {
        Op::Barrier => {}
        Op::AllGather { .. } | Op::AllReduceSumF32 { .. } => {
            let n = output.len().min(result.len());
            output[..n].copy_from_slice(&result[..n]);
        }
    }
}

/// A rank's handle on its world for one execution (or a single-rank stand-in).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Communicator<'a> {
    world: Option<&'a Rendezvous>,
    rank: usize,
    deadline: Instant,
}

impl<'a> Communicator<'a> {
    /// For a model without collectives: world of one, every collective is local.
    pub(crate) fn single() -> Communicator<'static> {
        Communicator {
            world: None,
            rank: 0,
            deadline: Instant::now(),
        }
    }

    pub(crate) fn new(world: &'a Rendezvous, rank: usize, deadline: Instant) -> Communicator<'a> {
        Communicator {
            world: Some(world),
            rank,
            deadline,
        }
    }

    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn world_size(&self) -> usize {
        self.world.map_or(1, Rendezvous::size)
    }

    pub(crate) fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), CollectiveError> {
        let Some(world) = self.world else {
            return Ok(());
        };
        let input = bytemuck::cast_slice::<f32, u8>(data).to_vec();
        world.exchange(
            self.rank,
            Op::AllReduceSumF32 { len: data.len() },
            &input,
            bytemuck::cast_slice_mut(data),
            self.deadline,
        )
    }

    pub(crate) fn all_gather(&self, mine: &[u8], all: &mut [u8]) -> Result<(), CollectiveError> {
        let Some(world) = self.world else {
            all.copy_from_slice(mine);
            return Ok(());
        };
        world.exchange(
            self.rank,
            Op::AllGather { bytes: mine.len() },
            mine,
            all,
            self.deadline,
        )
    }

    pub(crate) fn barrier(&self) -> Result<(), CollectiveError> {
        let Some(world) = self.world else {
            return Ok(());
        };
        world.exchange(self.rank, Op::Barrier, &[], &mut [], self.deadline)
    }
}

/// What makes loaded models ranks of the same world: the same NEFF and world size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct WorldKey {
    pub(crate) neff: u64,
    pub(crate) size: usize,
}

#[derive(Debug)]
struct World {
    key: WorldKey,
    comm: Arc<Rendezvous>,
    loaded: Vec<bool>,
    loaders: Vec<ThreadId>,
}

/// The worlds of loaded models.
///
/// A rank loaded with `nrt_load_collectives` joins a world of the same NEFF and world size
/// that lacks its rank: preferably one whose other ranks were loaded by the same thread (so
/// that concurrent tests, each loading its own ranks, stay apart), otherwise the oldest one.
/// If there is none, it starts a new world. So load all ranks of one world before loading
/// another world of the same NEFF from a different thread.
#[derive(Debug, Default)]
pub(crate) struct Worlds {
    worlds: Vec<World>,
}

impl Worlds {
    pub(crate) fn join(&mut self, key: WorldKey, rank: usize) -> Arc<Rendezvous> {
        let me = std::thread::current().id();
        let open = |w: &&mut World| w.key == key && !w.loaded[rank];
        let chosen = match self
            .worlds
            .iter()
            .position(|w| w.key == key && !w.loaded[rank] && w.loaders.contains(&me))
            .or_else(|| self.worlds.iter_mut().position(|w| open(&w)))
        {
            Some(i) => i,
            None => {
                self.worlds.push(World {
                    key,
                    comm: Arc::new(Rendezvous::new(key.size)),
                    loaded: vec![false; key.size],
                    loaders: Vec::new(),
                });
                self.worlds.len() - 1
            }
        };
        let world = &mut self.worlds[chosen];
        world.loaded[rank] = true;
        world.loaders.push(me);
        world.comm.clone()
    }

    pub(crate) fn leave(&mut self, comm: &Arc<Rendezvous>, rank: usize) {
        if let Some(i) = self.worlds.iter().position(|w| Arc::ptr_eq(&w.comm, comm)) {
            let world = &mut self.worlds[i];
            if let Some(slot) = world.loaded.get_mut(rank) {
                *slot = false;
            }
            if world.loaded.iter().all(|l| !l) {
                self.worlds.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranks<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|r| {
                    s.spawn({
                        let f = &f;
                        move || f(r)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn all_reduce_and_gather_across_threads() {
        let world = Rendezvous::new(3);
        let deadline = Instant::now() + Duration::from_secs(10);
        let results = ranks(3, |r| {
            let comm = Communicator::new(&world, r, deadline);
            let mut out = Vec::new();
            for round in 0..50 {
                let mut data = vec![r as f32 + round as f32, 1.0];
                comm.all_reduce_sum(&mut data).unwrap();
                out.push(data);
                let mut all = vec![0u8; 6];
                comm.all_gather(&[r as u8, round as u8], &mut all).unwrap();
                assert_eq!(all, [0, round as u8, 1, round as u8, 2, round as u8]);
                comm.barrier().unwrap();
            }
            out
        });
        for (r, out) in results.iter().enumerate() {
            for (round, data) in out.iter().enumerate() {
                assert_eq!(data, &[3.0 + 3.0 * round as f32, 3.0], "rank {r}");
            }
        }
    }

    #[test]
    fn missing_rank_times_out_and_the_world_recovers() {
        let world = Rendezvous::new(2);
        let deadline = Instant::now() + Duration::from_millis(50);
        let err = Communicator::new(&world, 0, deadline)
            .barrier()
            .unwrap_err();
        match &err {
            CollectiveError::Timeout { missing, .. } => assert_eq!(missing, &[1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(err.status(), NRT_STATUS::NRT_TIMEOUT);
        // Both ranks arriving later still works.
        let deadline = Instant::now() + Duration::from_secs(10);
        ranks(2, |r| {
            Communicator::new(&world, r, deadline).barrier().unwrap()
        });
    }

    #[test]
    fn mismatch_fails_every_rank_quickly() {
        let world = Rendezvous::new(2);
        let deadline = Instant::now() + Duration::from_secs(30);
        let started = Instant::now();
        let results = ranks(2, |r| {
            let comm = Communicator::new(&world, r, deadline);
            if r == 0 {
                comm.barrier()
            } else {
                std::thread::sleep(Duration::from_millis(20));
                comm.all_reduce_sum(&mut [1.0])
            }
        });
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(CollectiveError::Mismatch { .. })))
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn worlds_group_by_neff_and_thread() {
        let mut worlds = Worlds::default();
        let key = WorldKey { neff: 7, size: 2 };
        let a0 = worlds.join(key, 0);
        let a1 = worlds.join(key, 1);
        assert!(Arc::ptr_eq(&a0, &a1));
        let b0 = worlds.join(key, 0);
        assert!(!Arc::ptr_eq(&a0, &b0));
        // Once world a is empty it is gone, and a new rank 1 completes world b.
        worlds.leave(&a0, 0);
        worlds.leave(&a1, 1);
        assert_eq!(worlds.worlds.len(), 1);
        let again = worlds.join(key, 1);
        assert!(Arc::ptr_eq(&again, &b0));
    }
}
