//! Shared helpers for the mock tests: a serialised runtime fixture with a leak check, mock
//! NEFFs, and subprocess runs for tests that need their own environment.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use neuron_mock::neff::MockNeff;
use neuron_mock::testing::{library_path, live_handles};
use neuron_rt::{DType, Runtime};

/// libnrt is process-wide, so tests in one binary take turns: one runtime at a time, and the
/// leak check at the end of each test sees only that test's objects.
static SERIAL: Mutex<()> = Mutex::new(());

/// A runtime on the mock for one test. Call [`Fixture::finish`] at the end: it checks that
/// every model, tensor and tensor set is gone and device memory is back where it started.
pub struct Fixture {
    pub rt: Arc<Runtime>,
    baseline: Vec<usize>,
    _serial: MutexGuard<'static, ()>,
}

/// Takes this binary's turn at the process-wide runtime (for tests that manage the runtime
/// themselves instead of through a [`Fixture`]).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fixture {
    pub fn new() -> Fixture {
        let serial = serial();
        let rt = Runtime::builder()
            .lib_path(library_path())
            .init()
            .expect("init the mock runtime");
        let baseline = (0..rt.visible_cores().unwrap())
            .map(|core| rt.memory_stats(core).unwrap().used)
            .collect();
        Fixture {
            rt,
            baseline,
            _serial: serial,
        }
    }

    /// The leak check: every object dropped, memory of every core back to the baseline.
    pub fn finish(self) {
        let lib = neuron_sys::loaded().expect("library loaded");
        let live = live_handles(lib).unwrap();
        assert_eq!(
            (
                live.models,
                live.tensors,
                live.tensor_sets,
                live.tensor_infos
            ),
            (0, 0, 0, 0),
            "leaked objects: {live:?}"
        );
        for (core, &before) in self.baseline.iter().enumerate() {
            let now = self.rt.memory_stats(core as u32).unwrap().used;
            assert_eq!(now, before, "device memory of core {core} not released");
        }
        assert_eq!(Arc::strong_count(&self.rt), 1, "runtime still referenced");
        let Fixture { rt, .. } = self;
        rt.close().expect("close the runtime");
    }
}

/// `sum = a + b`, `n` f32 each.
pub fn add_neff(n: usize) -> Vec<u8> {
    MockNeff::new("add")
        .input("a", DType::F32, &[n])
        .input("b", DType::F32, &[n])
        .output("sum", DType::F32, &[n])
        .to_bytes()
        .unwrap()
}

/// `y = x` for one tensor of `dtype` and `shape`.
pub fn copy_neff(dtype: DType, shape: &[usize]) -> Vec<u8> {
    MockNeff::new("copy")
        .input("x", dtype, shape)
        .output("y", dtype, shape)
        .to_bytes()
        .unwrap()
}

/// `y = sum over ranks of x`, `n` f32.
pub fn all_reduce_neff(n: usize) -> Vec<u8> {
    MockNeff::new("all_reduce")
        .input("x", DType::F32, &[n])
        .output("y", DType::F32, &[n])
        .to_bytes()
        .unwrap()
}

/// Runs the `#[ignore]`d test `name` of this test binary in a child process with `envs`, and
/// fails unless it passed. Tests that need environment variables read by `nrt_init` (fault
/// injection, instance profiles, timeouts) run this way: tests never set variables in their
/// own process.
pub fn run_in_child(name: &str, envs: &[(&str, &str)]) {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(exe)
        .args([name, "--exact", "--include-ignored", "--test-threads=1"])
        .env("NEURON_SYS_LIB", library_path())
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test {name} with {envs:?} failed:\n{stdout}\n{stderr}"
    );
}

/// In a child test: the value of `var`, or `None` when the test runs outside
/// [`run_in_child`] (for example under `--include-ignored` on hardware), where it has nothing
/// to check.
pub fn child_env(var: &str) -> Option<String> {
    let value = std::env::var(var).ok();
    if value.is_none() {
        eprintln!("{var} is not set: this test only runs as a child of its parent test");
    }
    value
}
