//! Loading, metadata and execution, against the mock.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::sync::Arc;

use common::{Fixture, add_neff, copy_neff};
use neuron_mock::neff::MockNeff;
use neuron_rt::{DType, Error, Model, Placement, Status, Tensor, TensorSet, Usage};

#[test]
fn metadata_is_read_at_load() {
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &add_neff(4), 1).unwrap();
    assert_eq!(model.core(), Some(1));
    assert_eq!(model.rank(), None);
    let names: Vec<_> = model.inputs().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let sum = model.output("sum").unwrap();
    assert_eq!(sum.usage, Usage::Output);
    assert_eq!(sum.dtype, Some(DType::F32));
    assert_eq!(sum.shape, [4]);
    assert_eq!(sum.size, 16);
    assert_eq!(sum.to_string(), "sum [4] f32 (16 bytes)");
    let err = model.input("c").unwrap_err();
    assert_eq!(
        err.to_string(),
        "model \"neff\" has no tensor named \"c\" (it has: a, b)"
    );
    drop(model);
    fx.finish();
}

#[test]
fn execute_add_and_reuse_the_sets() {
    let fx = Fixture::new();
    let model = Model::loader(&fx.rt)
        .core(0)
        .name("adder")
        .load(&add_neff(4))
        .unwrap();
    assert_eq!(model.name(), "adder");
    let mut io = model.allocate_io().unwrap();
    let a = Arc::clone(io.inputs.tensor("a").unwrap());
    let b = Arc::clone(io.inputs.tensor("b").unwrap());
    let sum = Arc::clone(io.outputs.tensor("sum").unwrap());
    let mut out = [0f32; 4];
    for step in 0..5 {
        let s = step as f32;
        a.write_from(0, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        b.write_from(0, &[s, s, s, s]).unwrap();
        model.execute(&io.inputs, &mut io.outputs).unwrap();
        sum.read_into(0, &mut out).unwrap();
        assert_eq!(out, [1.0 + s, 2.0 + s, 3.0 + s, 4.0 + s]);
    }
    // Sub-range write and read, in elements.
    b.write_from(2, &[100.0f32]).unwrap();
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    let mut two = [0f32; 2];
    sum.read_into(2, &mut two).unwrap();
    assert_eq!(two, [103.0, 8.0]);
    drop((a, b, sum, io, model));
    fx.finish();
}

#[test]
fn load_from_a_file_names_the_model_after_it() {
    let fx = Fixture::new();
    let dir = std::env::temp_dir().join(format!("neuron-rt-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("adder.neff");
    std::fs::write(&path, add_neff(2)).unwrap();
    let model = Model::load_file(&fx.rt, &path, 0).unwrap();
    assert_eq!(model.name(), "adder");
    assert_eq!(model.path(), Some(path.as_path()));
    drop(model);

    let missing = dir.join("missing.neff");
    let err = Model::load_file(&fx.rt, &missing, 0).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.neff"), "{err}");

    let short = dir.join("short.neff");
    std::fs::write(&short, b"NEFF?").unwrap();
    let err = Model::load_file(&fx.rt, &short, 0).unwrap_err();
    assert!(matches!(err, Error::Neff { .. }), "{err:?}");
    assert!(err.to_string().contains("short.neff"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    fx.finish();
}

#[test]
fn corrupt_and_truncated_neffs_are_refused_by_the_runtime() {
    let fx = Fixture::new();
    let good = add_neff(4);
    let mut corrupt = good.clone();
    for byte in &mut corrupt[1024..] {
        *byte ^= 0x5a;
    }
    let truncated = &good[..good.len() - 10];
    for bytes in [&corrupt[..], truncated, &[0u8; 2048][..]] {
        let err = Model::load(&fx.rt, bytes, 0).unwrap_err();
        match &err {
            Error::Nrt { call, status, .. } => {
                assert_eq!(*call, "nrt_load");
                assert_ne!(*status, Status::Success);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    fx.finish();
}

#[test]
fn loading_on_a_core_that_is_not_visible_fails() {
    let fx = Fixture::new();
    let err = Model::load(&fx.rt, &add_neff(4), 5).unwrap_err();
    assert_eq!(err.status(), Some(Status::LoadNotEnoughNc), "{err:?}");
    fx.finish();
}

#[test]
fn missing_input_is_named() {
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    let a = Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[4], "a").unwrap();
    let sum = Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[4], "sum").unwrap();
    let inputs = TensorSet::builder(&fx.rt).tensor("a", a).build().unwrap();
    let mut outputs = TensorSet::builder(&fx.rt)
        .tensor("sum", sum)
        .build()
        .unwrap();
    let err = model.execute(&inputs, &mut outputs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model \"neff\" input \"b\" is not in the input tensor set"
    );
    assert!(matches!(
        err,
        Error::MissingTensor {
            usage: Usage::Input,
            ..
        }
    ));
    drop((inputs, outputs, model));
    fx.finish();
}

#[test]
fn wrong_size_and_wrong_dtype_are_named() {
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    let mut io = model.allocate_io().unwrap();
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    // Replacing a tensor invalidates the set's earlier check.
    let small = Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[3], "b3").unwrap();
    io.inputs.insert("b", small).unwrap();
    let err = model.execute(&io.inputs, &mut io.outputs).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model input \"b\" must be 16 bytes, but is 12 bytes"
    );
    let ints = Tensor::zeros::<i32>(&fx.rt, Placement::Device(0), &[4], "bi").unwrap();
    io.inputs.insert("b", ints).unwrap();
    let err = model.execute(&io.inputs, &mut io.outputs).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DTypeMismatch {
                expected: DType::F32,
                got: DType::I32,
                ..
            }
        ),
        "{err:?}"
    );
    // An untyped tensor of the right size is accepted.
    let raw = Tensor::allocate(&fx.rt, Placement::Device(0), 16, "raw").unwrap();
    io.inputs.insert("b", raw).unwrap();
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    drop((io, model));
    fx.finish();
}

#[test]
fn execution_failure_status_names_the_model() {
    // The safe layer's check runs once per set; libnrt still checks every execution. Swap in
    // a wrong-size tensor behind the set's back through the raw handle: the runtime's refusal
    // comes back as Error::Nrt naming nrt_execute and the model.
    let fx = Fixture::new();
    let model = Model::loader(&fx.rt)
        .name("adder")
        .core(0)
        .load(&add_neff(4))
        .unwrap();
    let mut io = model.allocate_io().unwrap();
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    let small = Tensor::allocate(&fx.rt, Placement::Device(0), 4, "small").unwrap();
    let lib = neuron_sys::loaded().unwrap();
    let add = neuron_sys::nrt_fn!(lib, nrt_add_tensor_to_tensor_set).unwrap();
    // SAFETY: both handles are live; the name is a valid C string. `small` outlives every use
    // of the set below (it is dropped after the sets).
    let status = unsafe { add(io.inputs.as_raw(), c"b".as_ptr(), small.as_raw()) };
    assert!(status.is_success());
    let err = model.execute(&io.inputs, &mut io.outputs).unwrap_err();
    match &err {
        Error::Nrt { call, status, .. } => {
            assert_eq!(*call, "nrt_execute");
            assert!(
                matches!(status, Status::Invalid | Status::ExecBadInput),
                "{status}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("nrt_execute failed for model \"adder\""),
        "{err}"
    );
    drop((io, small, model));
    fx.finish();
}

#[test]
fn state_bound_to_both_sets_is_updated_in_place() {
    let fx = Fixture::new();
    // A copy model whose input and output share a name: one tensor in both sets.
    let neff = MockNeff::new("all_reduce")
        .state("acc", DType::F32, &[3])
        .to_bytes()
        .unwrap();
    let model = Model::load(&fx.rt, &neff, 0).unwrap();
    let mut io = model.allocate_io().unwrap();
    let acc_in = Arc::clone(io.inputs.tensor("acc").unwrap());
    let acc_out = Arc::clone(io.outputs.tensor("acc").unwrap());
    assert!(Arc::ptr_eq(&acc_in, &acc_out), "one tensor in both sets");
    acc_in.write_from(0, &[1.0f32, 2.0, 3.0]).unwrap();
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    assert_eq!(acc_out.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    drop((acc_in, acc_out, io, model));
    fx.finish();
}

#[test]
fn execute_repeat_runs_the_model() {
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &copy_neff(DType::I32, &[3]), 0).unwrap();
    let mut io = model.allocate_io().unwrap();
    io.inputs
        .tensor("x")
        .unwrap()
        .write_from(0, &[7i32, 8, 9])
        .unwrap();
    model
        .execute_repeat(&io.inputs, &mut io.outputs, 3)
        .unwrap();
    assert_eq!(
        io.outputs.tensor("y").unwrap().to_vec::<i32>().unwrap(),
        [7, 8, 9]
    );
    drop((io, model));
    fx.finish();
}

#[test]
fn concurrent_executions_of_one_model() {
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &add_neff(64), 0).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let model = &model;
            scope.spawn(move || {
                // Each thread has its own sets; the model is shared.
                let mut io = model.allocate_io().unwrap();
                let a: Vec<f32> = (0..64).map(|i| (i * (t + 1)) as f32).collect();
                io.inputs.tensor("a").unwrap().write_from(0, &a).unwrap();
                io.inputs.tensor("b").unwrap().fill_bytes(0).unwrap();
                let mut out = vec![0f32; 64];
                for _ in 0..50 {
                    model.execute(&io.inputs, &mut io.outputs).unwrap();
                    io.outputs
                        .tensor("sum")
                        .unwrap()
                        .read_into(0, &mut out)
                        .unwrap();
                    assert_eq!(out, a);
                }
            });
        }
    });
    drop(model);
    fx.finish();
}

#[test]
fn explicit_unload() {
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    model.unload().unwrap();
    // The deprecated core count is passed through.
    let model = Model::loader(&fx.rt)
        .core(1)
        .core_count(1)
        .load(&add_neff(4))
        .unwrap();
    assert_eq!(model.core(), Some(1));
    model.unload().unwrap();
    // A rank outside its world never reaches libnrt.
    let err = Model::loader(&fx.rt)
        .rank(2, 2)
        .load(&add_neff(4))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { what: "rank", .. }),
        "{err:?}"
    );
    fx.finish();
}

#[test]
fn weights_shared_between_models() {
    let fx = Fixture::new();
    let m1 = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    let m2 = Model::load(&fx.rt, &add_neff(4), 0).unwrap();
    let shared = Arc::new(
        Tensor::from_slice(
            &fx.rt,
            Placement::Device(0),
            &[1f32, 1.0, 1.0, 1.0],
            &[4],
            "w",
        )
        .unwrap(),
    );
    let mut sets = Vec::new();
    for (model, offset) in [(&m1, 10f32), (&m2, 20f32)] {
        let x = Tensor::from_slice(&fx.rt, Placement::Device(0), &[offset; 4], &[4], "x").unwrap();
        let inputs = TensorSet::builder(&fx.rt)
            .tensor("a", Arc::clone(&shared))
            .tensor("b", x)
            .build()
            .unwrap();
        let outputs = TensorSet::builder(&fx.rt)
            .tensor(
                "sum",
                Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[4], "sum").unwrap(),
            )
            .build()
            .unwrap();
        sets.push((model, inputs, outputs));
    }
    for (model, inputs, outputs) in &mut sets {
        model.execute(inputs, outputs).unwrap();
    }
    assert_eq!(
        sets[0].2.tensor("sum").unwrap().to_vec::<f32>().unwrap(),
        [11.0; 4]
    );
    assert_eq!(
        sets[1].2.tensor("sum").unwrap().to_vec::<f32>().unwrap(),
        [21.0; 4]
    );
    drop(sets);
    drop((shared, m1, m2));
    fx.finish();
}
