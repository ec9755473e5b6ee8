//! Tensor sets, tensors made from model descriptions, and drop order, against the mock.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::sync::Arc;

use common::{Fixture, add_neff, serial};
use neuron_mock::testing::library_path;
use neuron_rt::{DType, Error, Model, Placement, Runtime, Subject, Tensor, TensorSet};

#[test]
fn sets_bind_replace_and_list_tensors() {
    let fx = Fixture::new();
    let mut set = TensorSet::new(&fx.rt).unwrap();
    assert!(set.is_empty());
    let a = Arc::new(Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[2], "a").unwrap());
    assert!(set.insert("a", Arc::clone(&a)).unwrap().is_none());
    assert!(
        set.insert(
            "b",
            Tensor::zeros::<i32>(&fx.rt, Placement::Device(0), &[2], "b").unwrap()
        )
        .unwrap()
        .is_none()
    );
    assert_eq!(set.len(), 2);
    assert!(set.contains("a") && !set.contains("c"));
    assert!(Arc::ptr_eq(set.get("a").unwrap(), &a));
    // Replacing returns the tensor bound before.
    let replaced = set
        .insert(
            "a",
            Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[2], "a2").unwrap(),
        )
        .unwrap();
    assert!(Arc::ptr_eq(&replaced.unwrap(), &a));
    assert_eq!(set.tensor("a").unwrap().name(), "a2");
    let names: Vec<&str> = set.iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["a", "b"]);
    let err = set.tensor("c").unwrap_err();
    assert!(matches!(
        err,
        Error::UnknownTensor {
            owner: Subject::TensorSet,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "tensor set has no tensor named \"c\" (it has: a, b)"
    );
    assert!(matches!(
        set.insert("bad\0key", Arc::clone(&a)),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(!set.as_raw().is_null());
    // The set keeps its tensors alive: only `a` itself is still held outside.
    drop(a);
    drop(set);
    fx.finish();
}

#[test]
fn builder_binds_everything_and_later_entries_win() {
    let fx = Fixture::new();
    let t = |name: &str| Tensor::zeros::<u8>(&fx.rt, Placement::Host, &[4], name).unwrap();
    let set = TensorSet::builder(&fx.rt)
        .tensor("x", t("first"))
        .tensor("y", t("y"))
        .tensor("x", t("second"))
        .build()
        .unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.tensor("x").unwrap().name(), "second");
    drop(set);
    fx.finish();
}

#[test]
fn tensors_from_model_descriptions() {
    let fx = Fixture::new();
    let model = Model::load(&fx.rt, &add_neff(3), 0).unwrap();
    assert!(model.core_count().is_none_or(|n| n >= 1));
    let info = model.input("a").unwrap();
    let t = Tensor::allocate_like(&fx.rt, Placement::Device(1), info).unwrap();
    assert_eq!(
        (t.size(), t.dtype(), t.shape()),
        (12, Some(DType::F32), Some(&[3usize][..]))
    );
    assert_eq!(t.name(), "a");
    assert!(Arc::ptr_eq(t.runtime(), &fx.rt));
    assert!(Arc::ptr_eq(model.runtime(), &fx.rt));
    assert!(!model.as_raw().is_null() && !t.as_raw().is_null());
    drop((t, model));
    fx.finish();
}

#[test]
fn children_keep_the_runtime_open_whatever_the_drop_order() {
    let _serial = serial();
    let rt = Runtime::builder().lib_path(library_path()).init().unwrap();
    assert!(rt.library_source().to_string().contains("program"));
    let _ = rt.dtype_encoding();
    let model = Model::load(&rt, &add_neff(2), 0).unwrap();
    let mut io = model.allocate_io().unwrap();
    let extra = Tensor::zeros::<f32>(&rt, Placement::Device(0), &[2], "extra").unwrap();
    // Drop the runtime handle first: the children still hold it, so it stays open.
    drop(rt);
    assert!(Runtime::current().is_some());
    model.execute(&io.inputs, &mut io.outputs).unwrap();
    // Drop the model before the tensors it was executed with, then the rest.
    drop(model);
    drop(io);
    assert!(Runtime::current().is_some());
    drop(extra);
    // The last child closed it.
    assert!(Runtime::current().is_none());
}
