//! Tensors: allocation, typed and byte access, slices, copies, attached buffers, against the
//! mock.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use std::sync::Arc;

use common::Fixture;
use neuron_rt::{DType, Error, NeuronRepr, Placement, Status, Tensor};
use proptest::prelude::*;

fn round_trip<T: NeuronRepr + PartialEq + std::fmt::Debug>(fx: &Fixture, values: &[T]) {
    for placement in [Placement::Device(0), Placement::Device(1), Placement::Host] {
        let t = Tensor::from_slice(&fx.rt, placement, values, &[values.len()], "t").unwrap();
        assert_eq!(t.dtype(), Some(T::DTYPE));
        assert_eq!(t.size(), std::mem::size_of_val(values));
        assert_eq!(t.to_vec::<T>().unwrap(), values, "{placement}");
        let mut back = vec![values[0]; values.len() - 1];
        t.read_into(1, &mut back).unwrap();
        assert_eq!(back, values[1..]);
    }
}

#[test]
fn typed_round_trips_for_every_element_type() {
    let fx = Fixture::new();
    round_trip(&fx, &[1.5f32, -2.0, f32::MAX, f32::MIN_POSITIVE]);
    round_trip(&fx, &[1i32, -2, i32::MAX, i32::MIN]);
    round_trip(&fx, &[1i64, -2, i64::MAX, i64::MIN]);
    round_trip(&fx, &[0u8, 1, 254, 255]);
    #[cfg(feature = "half")]
    {
        use half::{bf16, f16};
        round_trip(&fx, &[f16::from_f32(1.5), f16::MAX, f16::MIN, f16::ZERO]);
        round_trip(
            &fx,
            &[bf16::from_f32(-3.25), bf16::MAX, bf16::ONE, bf16::ZERO],
        );
    }
    fx.finish();
}

#[test]
fn element_type_is_checked() {
    let fx = Fixture::new();
    let t = Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[4], "logits").unwrap();
    let err = t.write_from(0, &[1i32]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor \"logits\" holds f32 elements, not i32"
    );
    let mut out = [0u8; 4];
    assert!(matches!(
        t.read_into(0, &mut out),
        Err(Error::DTypeMismatch { .. })
    ));
    // Bytes are always allowed.
    t.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, [0; 4]);
    drop(t);
    fx.finish();
}

#[test]
fn out_of_range_access_is_refused_before_the_call() {
    let fx = Fixture::new();
    let t = Tensor::zeros::<i32>(&fx.rt, Placement::Device(0), &[4], "ids").unwrap();
    let err = t.write_from(3, &[1i32, 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tensor \"ids\" is 16 bytes; bytes 12..20 are out of range"
    );
    let mut out = [0i32; 5];
    assert!(matches!(
        t.read_into(0, &mut out),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        t.read_into(usize::MAX, &mut out[..1]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        t.write_bytes(17, &[]),
        Err(Error::OutOfBounds { .. })
    ));
    // Empty accesses inside the tensor are fine.
    t.write_from::<i32>(4, &[]).unwrap();
    drop(t);
    fx.finish();
}

#[test]
fn untyped_tensors_take_any_element_type() {
    let fx = Fixture::new();
    let t = Tensor::allocate(&fx.rt, Placement::Device(0), 8, "raw").unwrap();
    assert_eq!(t.dtype(), None);
    t.write_from(0, &[1u32, 2]).unwrap();
    assert_eq!(t.to_vec::<u16>().unwrap(), [1, 0, 2, 0]);
    assert!(matches!(t.to_vec::<u64>().map(|v| v.len()), Ok(1)));
    let odd = Tensor::allocate(&fx.rt, Placement::Device(0), 6, "odd").unwrap();
    assert!(matches!(odd.to_vec::<f32>(), Err(Error::Misaligned { .. })));
    let shaped = t.with_shape(DType::I32, &[2]).unwrap();
    assert_eq!(shaped.to_vec::<i32>().unwrap(), [1, 2]);
    let err = shaped.with_shape(DType::I32, &[3]).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err:?}");
    drop(odd);
    fx.finish();
}

#[test]
fn bad_allocations() {
    let fx = Fixture::new();
    for err in [
        Tensor::allocate(&fx.rt, Placement::Device(0), 0, "empty").unwrap_err(),
        Tensor::allocate(&fx.rt, Placement::Device(0), 4, "nul\0name").unwrap_err(),
        Tensor::allocate(&fx.rt, Placement::Attached, 4, "attached").unwrap_err(),
        Tensor::allocate_shaped(
            &fx.rt,
            Placement::Device(0),
            DType::F32,
            &[usize::MAX, 2],
            "huge",
        )
        .unwrap_err(),
        Tensor::from_slice(&fx.rt, Placement::Device(0), &[1f32, 2.0], &[3], "x").unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::InvalidArgument { .. } | Error::ShapeMismatch { .. }
            ),
            "{err:?}"
        );
    }
    fx.finish();
}

#[test]
fn out_of_device_memory_is_a_resource_error() {
    let fx = Fixture::new();
    let limit = fx.rt.memory_stats(0).unwrap().limit;
    let err = Tensor::allocate(&fx.rt, Placement::Device(0), limit + 1, "too big").unwrap_err();
    assert_eq!(err.status(), Some(Status::Resource), "{err:?}");
    assert_eq!(
        err.to_string(),
        "nrt_tensor_allocate failed for tensor \"too big\": NRT_RESOURCE (4)"
    );
    fx.finish();
}

#[test]
fn slices_share_storage_and_outlive_their_source() {
    let fx = Fixture::new();
    let t = Tensor::from_slice(
        &fx.rt,
        Placement::Device(0),
        &[0i32, 1, 2, 3, 4, 5],
        &[6],
        "t",
    )
    .unwrap();
    let tail = t
        .slice(8, 16, "tail")
        .unwrap()
        .with_shape(DType::I32, &[4])
        .unwrap();
    assert_eq!(tail.to_vec::<i32>().unwrap(), [2, 3, 4, 5]);
    tail.write_from(0, &[20i32]).unwrap();
    assert_eq!(t.to_vec::<i32>().unwrap(), [0, 1, 20, 3, 4, 5]);
    assert!(matches!(
        t.slice(20, 8, "past"),
        Err(Error::OutOfBounds { .. })
    ));
    drop(t);
    assert_eq!(tail.to_vec::<i32>().unwrap(), [20, 3, 4, 5]);
    drop(tail);
    fx.finish();
}

#[test]
fn copies_between_tensors() {
    let fx = Fixture::new();
    let src =
        Tensor::from_slice(&fx.rt, Placement::Device(0), &[1f32, 2.0, 3.0], &[3], "src").unwrap();
    let dst = Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[3], "dst").unwrap();
    dst.copy_from(&src).unwrap();
    assert_eq!(dst.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    dst.copy_range_from(&src, 8, 0, 4).unwrap();
    assert_eq!(dst.to_vec::<f32>().unwrap(), [3.0, 2.0, 3.0]);
    let short = Tensor::zeros::<f32>(&fx.rt, Placement::Device(0), &[2], "short").unwrap();
    assert!(matches!(
        short.copy_from(&src),
        Err(Error::SizeMismatch { .. })
    ));
    assert!(matches!(
        dst.copy_range_from(&src, 8, 0, 8),
        Err(Error::OutOfBounds { .. })
    ));
    // The two cores of an inf2.xlarge share one chip's memory, so device-to-device copies
    // between them work.
    let other = Tensor::zeros::<f32>(&fx.rt, Placement::Device(1), &[3], "other").unwrap();
    other.copy_from(&src).unwrap();
    assert_eq!(other.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    // Host to device is fine.
    let host =
        Tensor::from_slice(&fx.rt, Placement::Host, &[9f32, 9.0, 9.0], &[3], "host").unwrap();
    other.copy_from(&host).unwrap();
    assert_eq!(other.to_vec::<f32>().unwrap(), [9.0; 3]);
    drop((src, dst, short, other, host));
    fx.finish();
}

#[test]
fn fill_bytes() {
    let fx = Fixture::new();
    let t = Tensor::allocate(&fx.rt, Placement::Device(0), 5, "t").unwrap();
    t.fill_bytes(0xab).unwrap();
    let mut out = [0u8; 5];
    t.read_bytes(0, &mut out).unwrap();
    assert_eq!(out, [0xab; 5]);
    drop(t);
    fx.finish();
}

#[test]
fn attached_buffers_are_owned_by_the_tensor() {
    let fx = Fixture::new();
    let t = Tensor::attach(&fx.rt, vec![1i64, 2, 3, 4], &[2, 2], "attached").unwrap();
    assert_eq!(t.placement(), Placement::Attached);
    assert_eq!(t.shape(), Some(&[2usize, 2][..]));
    assert_eq!(t.to_vec::<i64>().unwrap(), [1, 2, 3, 4]);
    t.write_from(3, &[40i64]).unwrap();
    let slice = t.slice(16, 16, "half").unwrap();
    drop(t);
    // The slice keeps the attached memory alive.
    assert_eq!(slice.to_vec::<i64>().unwrap(), [3, 40]);
    drop(slice);
    assert!(matches!(
        Tensor::attach::<f32>(&fx.rt, vec![], &[0], "empty"),
        Err(Error::InvalidArgument { .. })
    ));
    fx.finish();
}

#[test]
fn tensors_are_shared_across_threads() {
    let fx = Fixture::new();
    let t =
        Arc::new(Tensor::zeros::<u32>(&fx.rt, Placement::Device(0), &[1024], "shared").unwrap());
    std::thread::scope(|scope| {
        for part in 0..4u32 {
            let t = Arc::clone(&t);
            scope.spawn(move || {
                let values: Vec<u32> = (0..256).map(|i| part * 1000 + i).collect();
                t.write_from(part as usize * 256, &values).unwrap();
            });
        }
    });
    let all = t.to_vec::<u32>().unwrap();
    for (i, v) in all.iter().enumerate() {
        assert_eq!(*v, (i / 256) as u32 * 1000 + (i % 256) as u32);
    }
    drop(t);
    fx.finish();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Writing any values at any in-range offset and reading them back gives the same values,
    /// and leaves the rest of the tensor alone.
    #[test]
    fn write_then_read_round_trips(
        len in 1usize..64,
        values in proptest::collection::vec(any::<i32>(), 0..64),
        offset in 0usize..64,
    ) {
        let fx = Fixture::new();
        let t = Tensor::zeros::<i32>(&fx.rt, Placement::Device(0), &[len], "t").unwrap();
        let result = t.write_from(offset, &values);
        if offset + values.len() <= len {
            result.unwrap();
            let mut back = vec![0i32; values.len()];
            t.read_into(offset, &mut back).unwrap();
            prop_assert_eq!(&back, &values);
            let all = t.to_vec::<i32>().unwrap();
            prop_assert!(all[..offset].iter().all(|&v| v == 0));
            prop_assert!(all[offset + values.len()..].iter().all(|&v| v == 0));
        } else {
            let is_oob = matches!(result, Err(Error::OutOfBounds { .. }));
            prop_assert!(is_oob);
        }
        drop(t);
        fx.finish();
    }
}

#[cfg(feature = "ndarray")]
mod arrays {
    use super::*;
    use ndarray::{Array2, ArrayD, IxDyn, s};

    #[test]
    fn arrays_in_and_out() {
        let fx = Fixture::new();
        let a = Array2::from_shape_fn((3, 4), |(i, j)| (i * 10 + j) as f32);
        let t = Tensor::from_array(&fx.rt, Placement::Device(0), &a, "a").unwrap();
        assert_eq!(t.shape(), Some(&[3usize, 4][..]));
        let back: ArrayD<f32> = t.to_array().unwrap();
        assert_eq!(back, a.clone().into_dyn());

        // A transposed (non-contiguous) view is written in logical order.
        let at = a.t();
        let tt = Tensor::from_array(&fx.rt, Placement::Device(0), &at, "at").unwrap();
        assert_eq!(tt.to_array::<f32>().unwrap(), at.to_owned().into_dyn());

        // Reading into a contiguous array and into a strided view.
        let mut out = Array2::<f32>::zeros((3, 4));
        t.read_array_into(&mut out).unwrap();
        assert_eq!(out, a);
        let mut wide = Array2::<f32>::zeros((3, 8));
        let mut view = wide.slice_mut(s![.., ..;2]);
        t.read_array_into(&mut view).unwrap();
        assert_eq!(wide.slice(s![.., ..;2]), a);

        // Shape mismatches are named.
        let wrong = Array2::<f32>::zeros((4, 3));
        let err = t.write_array(&wrong).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
        let untyped = Tensor::allocate(&fx.rt, Placement::Device(0), 48, "raw").unwrap();
        assert_eq!(untyped.to_array::<f32>().unwrap().shape(), [12]);
        let mut flat = ArrayD::<f32>::zeros(IxDyn(&[12]));
        untyped.read_array_into(&mut flat).unwrap();
        drop((t, tt, untyped));
        fx.finish();
    }
}
