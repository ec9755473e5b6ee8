//! Behaviour read from the environment (instance profiles, core visibility, runtime version,
//! fault injection, timeouts, logging). Each case runs `nrt-mock-probe` in a subprocess with
//! its own environment, so the test process's environment is never modified.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

struct Probe {
    values: HashMap<String, String>,
    stderr: String,
}

impl Probe {
    fn get(&self, key: &str) -> &str {
        self.values.get(key).unwrap_or_else(|| {
            panic!(
                "no {key} in the probe's output: {:?}\nstderr: {}",
                self.values, self.stderr
            )
        })
    }

    fn num(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|_| panic!("{key}={}", self.get(key)))
    }
}

/// Runs the probe with `env` (and nothing else of the mock's variables); fails the test if it
/// has not finished within a minute, so a hang is a failure, not a stuck CI job.
fn probe(env: &[(&str, &str)], args: &[&str]) -> Probe {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nrt-mock-probe"));
    cmd.args(args)
        .env("NEURON_SYS_LIB", neuron_mock::testing::library_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("NEURON_RT_")
            || key.starts_with("NEURON_MOCK_")
            || key.starts_with("NEURON_LOGICAL")
        {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the probe {args:?} with {env:?} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "probe {args:?} failed: {stdout}\n{stderr}"
    );
    let values = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Probe { values, stderr }
}

#[test]
fn instance_profiles_have_the_documented_cores_and_memory() {
    // (profile, cores, memory per core, family code, size code)
    let cases = [
        ("inf2.xlarge", 2, 16 * GIB, 4, 0),
        ("inf2.48xlarge", 24, 16 * GIB, 4, 7),
        ("trn1.2xlarge", 2, 16 * GIB, 2, 1),
        ("trn1.32xlarge", 32, 16 * GIB, 2, 6),
        ("trn2.48xlarge", 64, 24 * GIB, 5, 7),
    ];
    for (name, cores, memory, family, size) in cases {
        let p = probe(&[("NEURON_MOCK_INSTANCE", name)], &["info"]);
        assert_eq!(p.get("init"), "NRT_SUCCESS", "{name}: {}", p.stderr);
        assert_eq!(p.num("pre_init.total"), cores, "{name}");
        assert_eq!(p.num("total"), cores, "{name}");
        assert_eq!(p.num("visible"), cores, "{name}");
        assert_eq!(p.num("memory_per_core"), memory, "{name}");
        assert_eq!(p.num("last_core_memory"), memory, "{name}");
        assert_eq!(p.num("instance.family"), family, "{name}");
        assert_eq!(p.num("instance.size"), size, "{name}");
        assert_eq!(p.get("leaks"), "false");
    }
    // The default is inf2.xlarge.
    let p = probe(&[], &["info"]);
    assert_eq!((p.num("total"), p.get("instance.arch")), (2, "inferentia2"));
    // Trn2 at LNC=1: twice the cores, half the memory each.
    let p = probe(
        &[
            ("NEURON_MOCK_INSTANCE", "trn2.48xlarge"),
            ("NEURON_LOGICAL_NC_CONFIG", "1"),
        ],
        &["info"],
    );
    assert_eq!((p.num("total"), p.num("memory_per_core")), (128, 12 * GIB));
    // Inf2 has no LNC=2.
    let p = probe(&[("NEURON_RT_VIRTUAL_CORE_SIZE", "2")], &["info"]);
    assert_eq!(p.get("init"), "NRT_FAILURE");
    assert!(
        p.get("init.error")
            .contains("supports logical core sizes [1]"),
        "{}",
        p.get("init.error")
    );
    // An unknown profile is an error that lists the known ones, before init as well.
    let p = probe(&[("NEURON_MOCK_INSTANCE", "p5.48xlarge")], &["info"]);
    assert_eq!(p.get("pre_init.total.status"), "NRT_FAILURE");
    assert_eq!(p.get("init"), "NRT_FAILURE");
    assert!(
        p.get("init.error").contains("trn1.32xlarge"),
        "{}",
        p.get("init.error")
    );
}

#[test]
fn visible_cores_and_num_cores() {
    let trn1 = ("NEURON_MOCK_INSTANCE", "trn1.32xlarge");
    let p = probe(&[trn1, ("NEURON_RT_VISIBLE_CORES", "4-6,7")], &["info"]);
    assert_eq!(
        (p.num("pre_init.visible"), p.num("visible"), p.num("total")),
        (4, 4, 32)
    );
    // Core indices are relative to the visible set: 0-3 exist, 4 does not.
    let p = probe(&[trn1, ("NEURON_RT_VISIBLE_CORES", "4-7")], &["load", "3"]);
    assert_eq!(p.get("load"), "NRT_SUCCESS");
    let p = probe(&[trn1, ("NEURON_RT_VISIBLE_CORES", "4-7")], &["load", "4"]);
    assert_eq!(p.get("load"), "NRT_LOAD_NOT_ENOUGH_NC");
    assert!(
        p.get("load.error").contains("4 NeuronCores are visible"),
        "{}",
        p.get("load.error")
    );
    // Non-contiguous or out-of-range lists are refused, as the real runtime does.
    for bad in ["1,3", "5,4", "30-33"] {
        let p = probe(&[trn1, ("NEURON_RT_VISIBLE_CORES", bad)], &["info"]);
        assert_eq!(p.get("init"), "NRT_FAILURE", "{bad}");
        assert!(
            p.get("init.error").contains("NEURON_RT_VISIBLE_CORES"),
            "{bad}: {}",
            p.get("init.error")
        );
    }
    // NUM_CORES, and VISIBLE_CORES winning over it.
    let p = probe(&[trn1, ("NEURON_RT_NUM_CORES", "3")], &["info"]);
    assert_eq!(p.num("visible"), 3);
    let p = probe(
        &[
            trn1,
            ("NEURON_RT_NUM_CORES", "3"),
            ("NEURON_RT_VISIBLE_CORES", "0"),
        ],
        &["info"],
    );
    assert_eq!(p.num("visible"), 1);
    let p = probe(&[("NEURON_RT_NUM_CORES", "3")], &["info"]);
    assert_eq!(p.get("init"), "NRT_FAILURE");
}

#[test]
fn device_copies_need_a_shared_chip() {
    let trn1 = ("NEURON_MOCK_INSTANCE", "trn1.32xlarge");
    assert_eq!(
        probe(&[trn1], &["copy", "0", "1"]).get("copy"),
        "NRT_SUCCESS"
    );
    let p = probe(&[trn1], &["copy", "1", "2"]);
    assert_eq!(p.get("copy"), "NRT_INVALID");
    assert!(
        p.get("copy.error").contains("share a device's memory"),
        "{}",
        p.get("copy.error")
    );
}

#[test]
fn runtime_version_decides_the_dtype_encoding() {
    let current = probe(&[], &["dtypes"]);
    assert_eq!(
        ["f32", "bf16", "f16", "i32", "u8", "i64", "fp8e4"]
            .map(|d| current.num(&format!("dtype.{d}"))),
        [0xA, 0x6, 0x7, 0x8, 0x3, 0xC, 0xE]
    );
    let legacy = probe(&[("NEURON_MOCK_RT_VERSION", "2.29.40.0")], &["dtypes"]);
    assert_eq!(
        ["f32", "bf16", "f16", "i32", "u8", "i64", "fp8e4"]
            .map(|d| legacy.num(&format!("dtype.{d}"))),
        [1, 3, 2, 8, 5, 10, 0],
        "fp8 has no legacy code: UNKNOWN"
    );
    let p = probe(&[("NEURON_MOCK_RT_VERSION", "2.29")], &["info"]);
    assert_eq!(
        (p.get("version"), p.get("encoding")),
        ("2.29.0.0", "Legacy")
    );
    let p = probe(&[("NEURON_MOCK_RT_VERSION", "2.30.50.0")], &["info"]);
    assert_eq!(p.get("encoding"), "Current");
    let p = probe(&[("NEURON_MOCK_RT_VERSION", "two")], &["info"]);
    assert_eq!(p.get("version.status"), "NRT_FAILURE");
    // VIRTUAL placement exists up to 2.31 and was removed in 2.32.
    assert_eq!(probe(&[], &["virtual"]).get("alloc"), "NRT_SUCCESS");
    let p = probe(&[("NEURON_MOCK_RT_VERSION", "2.32.31.0")], &["virtual"]);
    assert_eq!(p.get("alloc"), "NRT_INVALID");
    assert!(p.get("alloc.error").contains("removed in runtime 2.32"));
}

#[test]
fn faults_fail_delay_and_limit() {
    let p = probe(
        &[("NEURON_MOCK_FAULTS", "exec-fail=2@NRT_EXEC_NC_BUSY")],
        &["exec", "3"],
    );
    assert_eq!(
        [p.get("exec.1"), p.get("exec.2"), p.get("exec.3")],
        ["NRT_SUCCESS", "NRT_EXEC_NC_BUSY", "NRT_SUCCESS"]
    );
    assert_eq!(
        p.get("exec.2.result"),
        "0",
        "a failed execution does not run the kernel"
    );
    assert_eq!(p.get("exec.3.result"), "3");
    assert!(
        p.get("exec.2.error").contains("NEURON_MOCK_FAULTS"),
        "{}",
        p.get("exec.2.error")
    );

    let p = probe(
        &[(
            "NEURON_MOCK_FAULTS",
            "exec-fail-every=2@1003; exec-fail-from=5",
        )],
        &["exec", "5"],
    );
    let statuses: Vec<&str> = (1..=5).map(|i| p.get(&format!("exec.{i}"))).collect();
    assert_eq!(
        statuses,
        [
            "NRT_SUCCESS",
            "NRT_EXEC_COMPLETED_WITH_NUM_ERR",
            "NRT_SUCCESS",
            "NRT_EXEC_COMPLETED_WITH_NUM_ERR",
            "NRT_EXEC_COMPLETED_WITH_ERR"
        ]
    );

    let p = probe(&[("NEURON_MOCK_FAULTS", "exec-delay=40ms")], &["exec", "2"]);
    assert!(
        p.num("exec.1.us") >= 40_000 && p.num("exec.2.us") >= 40_000,
        "{:?}",
        p.values
    );

    let p = probe(
        &[("NEURON_MOCK_FAULTS", "alloc-fail-after=1K")],
        &["alloc", "512", "3"],
    );
    assert_eq!(
        [p.get("alloc.1"), p.get("alloc.2"), p.get("alloc.3")],
        ["NRT_SUCCESS", "NRT_SUCCESS", "NRT_RESOURCE"]
    );
    assert!(
        p.get("alloc.3.error").contains("alloc-fail-after=1024"),
        "{}",
        p.get("alloc.3.error")
    );
    assert_eq!(p.get("leaks"), "false");

    let p = probe(
        &[("NEURON_MOCK_FAULTS", "load-fail=1@NRT_RESOURCE")],
        &["load", "0"],
    );
    assert_eq!(p.get("load"), "NRT_RESOURCE");

    let p = probe(&[("NEURON_MOCK_FAULTS", "exec-fail=soon")], &["info"]);
    assert_eq!(p.get("init"), "NRT_FAILURE");
    assert!(
        p.get("init.error").contains("exec-fail=N[@STATUS]"),
        "{}",
        p.get("init.error")
    );
}

#[test]
fn a_rank_that_never_arrives_times_out() {
    let p = probe(&[("NEURON_RT_EXEC_TIMEOUT", "0.3")], &["missing-rank"]);
    assert_eq!(p.get("exec"), "NRT_TIMEOUT");
    assert!(p.num("exec.ms") >= 300, "{}", p.get("exec.ms"));
    assert!(
        p.get("exec.error").contains("ranks [1] never arrived"),
        "{}",
        p.get("exec.error")
    );
    assert_eq!(p.get("leaks"), "false");
    let p = probe(&[("NEURON_RT_EXEC_TIMEOUT", "-1")], &["info"]);
    assert_eq!(p.get("init"), "NRT_FAILURE");
}

#[test]
fn logging_follows_the_level_and_the_log_file() {
    // Default level ERROR: the failure is on stderr, naming the tensor.
    let p = probe(&[], &["missing-input"]);
    assert_eq!(p.get("exec"), "NRT_INVALID");
    assert!(
        p.stderr.contains("ERROR") && p.stderr.contains("input 'b'"),
        "{}",
        p.stderr
    );
    assert!(!p.stderr.contains(" INFO "), "{}", p.stderr);
    // QUIET: nothing.
    let p = probe(&[("NEURON_RT_LOG_LEVEL", "QUIET")], &["missing-input"]);
    assert!(!p.stderr.contains("NRT:"), "{}", p.stderr);
    // INFO shows what the runtime was configured as.
    let p = probe(
        &[
            ("NEURON_RT_LOG_LEVEL", "info"),
            ("NEURON_MOCK_INSTANCE", "trn1.2xlarge"),
        ],
        &["missing-input"],
    );
    assert!(
        p.stderr.contains("INFO") && p.stderr.contains("on trn1.2xlarge"),
        "{}",
        p.stderr
    );
    // A log file gets the lines instead of stderr.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nrt.log");
    let p = probe(
        &[("NEURON_MOCK_LOG_FILE", file.to_str().unwrap())],
        &["missing-input"],
    );
    let logged = std::fs::read_to_string(&file).unwrap();
    assert!(
        logged.contains("nrt_execute") && logged.contains("input 'b'"),
        "{logged}"
    );
    assert!(!p.stderr.contains("NRT:"), "{}", p.stderr);
}
