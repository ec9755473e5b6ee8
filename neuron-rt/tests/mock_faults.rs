//! Injected faults (`NEURON_MOCK_FAULTS`) come back as typed errors naming the call and the
//! object. Each case runs in a child process with its own environment.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use common::{Fixture, add_neff, child_env, run_in_child};
use neuron_rt::{Error, Model, Placement, Status, Tensor};

#[test]
fn injected_execution_failure() {
    run_in_child(
        "child_exec_fail",
        &[("NEURON_MOCK_FAULTS", "exec-fail=2@NRT_EXEC_NC_BUSY")],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (injected_execution_failure)"]
fn child_exec_fail() {
    if child_env("NEURON_MOCK_FAULTS").is_none() {
        return;
    }
    let fx = Fixture::new();
    let model = Model::loader(&fx.rt)
        .name("adder")
        .core(0)
        .load(&add_neff(4))
        .unwrap();
    let mut io = model.allocate_io().unwrap();
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    let err = model.execute(&io.inputs, &mut io.outputs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nrt_execute failed for model \"adder\": NRT_EXEC_NC_BUSY (1005)"
    );
    assert!(matches!(
        err,
        Error::Nrt {
            call: "nrt_execute",
            status: Status::ExecNcBusy,
            ..
        }
    ));
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    drop((io, model));
    fx.finish();
}

#[test]
fn injected_unknown_status_is_kept() {
    run_in_child(
        "child_unknown_status",
        &[("NEURON_MOCK_FAULTS", "exec-fail=1@4242")],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (injected_unknown_status_is_kept)"]
fn child_unknown_status() {
    if child_env("NEURON_MOCK_FAULTS").is_none() {
        return;
    }
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    let mut io = model.allocate_io().unwrap();
    let err = model.execute(&io.inputs, &mut io.outputs).unwrap_err();
    assert_eq!(err.status(), Some(Status::Unknown(4242)));
    assert!(err.to_string().ends_with("unknown status 4242"), "{err}");
    drop((io, model));
    fx.finish();
}

#[test]
fn injected_load_failure() {
    run_in_child(
        "child_load_fail",
        &[("NEURON_MOCK_FAULTS", "load-fail=1@NRT_RESOURCE")],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (injected_load_failure)"]
fn child_load_fail() {
    if child_env("NEURON_MOCK_FAULTS").is_none() {
        return;
    }
    let fx = Fixture::new();
    let err = Model::loader(&fx.rt)
        .name("first")
        .load(&add_neff(4))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "nrt_load failed for model \"first\": NRT_RESOURCE (4)"
    );
    let second = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    drop(second);
    fx.finish();
}

#[test]
fn allocations_fail_once_the_budget_is_spent() {
    run_in_child(
        "child_alloc_fail",
        &[("NEURON_MOCK_FAULTS", "alloc-fail-after=1K")],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (allocations_fail_once_the_budget_is_spent)"]
fn child_alloc_fail() {
    if child_env("NEURON_MOCK_FAULTS").is_none() {
        return;
    }
    let fx = Fixture::new();
    let first = Tensor::allocate(&fx.rt, Placement::Device(0), 1024, "first").unwrap();
    let err = Tensor::allocate(&fx.rt, Placement::Device(0), 16, "second").unwrap_err();
    assert_eq!(err.status(), Some(Status::Resource), "{err:?}");
    assert!(err.to_string().contains("\"second\""), "{err}");
    // A model's tensors cannot be allocated either: the error names the tensor.
    let model = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    let err = model.allocate_io().unwrap_err();
    assert_eq!(err.status(), Some(Status::Resource));
    drop((first, model));
    fx.finish();
}
