//! Runtime lifetime and queries, against the mock.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::sync::Arc;

use common::{Fixture, add_neff, child_env, run_in_child};
use neuron_rt::{Error, Framework, Model, Placement, Runtime, Status, Tensor};

#[test]
fn version_counts_and_instance() {
    let fx = Fixture::new();
    let version = fx.rt.version().expect("the mock reports a version");
    assert_eq!(version.major, 2);
    assert!(
        fx.rt
            .library_path()
            .to_string_lossy()
            .contains("neuron_mock")
    );
    // The default mock instance is an inf2.xlarge: 2 NeuronCores, all visible.
    assert_eq!(fx.rt.total_cores().unwrap(), 2);
    assert_eq!(fx.rt.visible_cores().unwrap(), 2);
    let info = fx.rt.instance_info().unwrap();
    assert_eq!(
        info.instance_type().as_deref(),
        Some("inf2.xlarge"),
        "{info}"
    );
    assert!(info.to_string().starts_with("inf2.xlarge"));
    fx.finish();
}

#[test]
fn memory_stats_count_allocations() {
    let fx = Fixture::new();
    let before = fx.rt.memory_stats(0).unwrap();
    assert!(before.limit > 0);
    let t = Tensor::allocate(&fx.rt, Placement::Device(0), 1 << 20, "big").unwrap();
    let during = fx.rt.memory_stats(0).unwrap();
    assert!(
        during.used >= before.used + (1 << 20),
        "{before:?} -> {during:?}"
    );
    // Core 1 is not charged.
    assert_eq!(fx.rt.memory_stats(1).unwrap().used, 0);
    drop(t);
    assert_eq!(fx.rt.memory_stats(0).unwrap().used, before.used);
    fx.finish();
}

#[test]
fn memory_stats_of_a_missing_core_names_it() {
    let fx = Fixture::new();
    let err = fx.rt.memory_stats(7).unwrap_err();
    assert!(err.status().is_some(), "{err:?}");
    assert!(err.to_string().contains("NeuronCore 7"), "{err}");
    fx.finish();
}

#[test]
fn one_runtime_per_process() {
    let fx = Fixture::new();
    let err = Runtime::init().unwrap_err();
    assert!(matches!(err, Error::RuntimeExists), "{err:?}");
    let current = Runtime::current().expect("a live runtime");
    assert!(Arc::ptr_eq(&current, &fx.rt));
    drop(current);
    fx.finish();
    assert!(Runtime::current().is_none());
}

#[test]
fn close_refuses_while_objects_live_and_children_keep_it_open() {
    let fx = Fixture::new();
    let rt = Arc::clone(&fx.rt);
    let tensor = Tensor::allocate(&rt, Placement::Device(0), 64, "t").unwrap();
    let err = rt.close().unwrap_err();
    // The fixture's Arc and the tensor's.
    assert!(matches!(err, Error::RuntimeInUse { holders: 2 }), "{err:?}");
    // Dropping in "wrong" order is fine: the tensor keeps the runtime open.
    let model = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    drop(tensor);
    drop(model);
    fx.finish();
}

#[test]
fn init_again_after_close() {
    let fx = Fixture::new();
    fx.finish();
    // The fixture's guard is released; take a fresh one, which initialises anew.
    let fx = Fixture::new();
    assert_eq!(fx.rt.visible_cores().unwrap(), 2);
    fx.finish();
}

#[test]
fn framework_is_reported_and_bad_version_strings_are_refused() {
    let fx = Fixture::new();
    // A NUL byte cannot reach C: refused before anything else is looked at.
    let err = Runtime::builder()
        .framework(Framework::PyTorch, "2.1\0", "")
        .init()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    fx.finish();
}

#[test]
fn instance_profile_from_the_environment() {
    run_in_child(
        "child_trn1_32xlarge",
        &[
            ("NEURON_MOCK_INSTANCE", "trn1.32xlarge"),
            ("NEURON_RT_VISIBLE_CORES", "4-7"),
        ],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (instance_profile_from_the_environment)"]
fn child_trn1_32xlarge() {
    if child_env("NEURON_MOCK_INSTANCE").is_none() {
        return;
    }
    let fx = Fixture::new();
    assert_eq!(fx.rt.total_cores().unwrap(), 32);
    assert_eq!(fx.rt.visible_cores().unwrap(), 4);
    let info = fx.rt.instance_info().unwrap();
    assert_eq!(info.instance_type().as_deref(), Some("trn1.32xlarge"));
    // Visible cores are numbered from 0: core 3 exists, core 4 does not.
    let t = Tensor::allocate(&fx.rt, Placement::Device(3), 16, "last").unwrap();
    let err = Tensor::allocate(&fx.rt, Placement::Device(4), 16, "beyond").unwrap_err();
    assert!(
        err.status().is_some_and(|s| s != Status::Success),
        "{err:?}"
    );
    drop(t);
    fx.finish();
}

#[test]
fn builder_sets_visible_cores() {
    run_in_child(
        "child_builder_visible_cores",
        &[("NEURON_MOCK_INSTANCE", "inf2.48xlarge")],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (builder_sets_visible_cores)"]
fn child_builder_visible_cores() {
    if child_env("NEURON_MOCK_INSTANCE").is_none() {
        return;
    }
    // SAFETY: the child runs this one test with --test-threads=1; no other thread touches
    // the environment.
    let builder = unsafe {
        Runtime::builder()
            .lib_path(neuron_mock::testing::library_path())
            .visible_cores(10..13)
    };
    let rt = builder.init().unwrap();
    assert_eq!(rt.total_cores().unwrap(), 24);
    assert_eq!(rt.visible_cores().unwrap(), 3);
    rt.close().unwrap();
    // An empty range is refused before anything happens.
    // SAFETY: as above.
    let err = unsafe { Runtime::builder().visible_cores(3..3) }
        .init()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn init_fails_cleanly_when_cores_are_malformed() {
    run_in_child(
        "child_bad_visible_cores",
        &[("NEURON_RT_VISIBLE_CORES", "1,0")],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (init_fails_cleanly_when_cores_are_malformed)"]
fn child_bad_visible_cores() {
    if child_env("NEURON_RT_VISIBLE_CORES").is_none() {
        return;
    }
    let err = Runtime::builder()
        .lib_path(neuron_mock::testing::library_path())
        .init()
        .unwrap_err();
    match &err {
        Error::Nrt { call, status, .. } => {
            assert_eq!(*call, "nrt_init");
            assert_ne!(*status, Status::Success);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Nothing is live after a failed init, so a later one may try again.
    assert!(Runtime::current().is_none());
}
