//! Walkthrough 2: tensors on a NeuronCore, written and read with `ndarray` and with typed
//! slices.
//!
//! ```sh
//! eval "$(scripts/build-mock.sh)"      # on a machine without a Neuron device
//! cargo run -p neuron-examples --example 02-tensors
//! ```
// `deny`, not `forbid`: ndarray's `s!` macro expands to an `allow(unsafe_code)`.
#![deny(unsafe_code)]

use std::sync::Arc;

use ndarray::{Array2, ArrayD, s};
use neuron_rt::{DType, Placement, Runtime, Tensor};

fn main() -> anyhow::Result<()> {
    let rt = Runtime::init()?;
    let core0 = Placement::Device(0);

    // From an ndarray: the tensor takes the array's shape and element type.
    let weights = Array2::from_shape_fn((3, 4), |(i, j)| (i * 10 + j) as f32);
    let tensor = Tensor::from_array(&rt, core0, &weights, "weights")?;
    println!(
        "{}: {:?} {} in {}, {} bytes",
        tensor.name(),
        tensor.shape().unwrap_or_default(),
        tensor.dtype().map_or("bytes".into(), |d| d.to_string()),
        tensor.placement(),
        tensor.size()
    );

    // Back to an ndarray (a copy: device memory cannot be borrowed from the host).
    let back: ArrayD<f32> = tensor.to_array()?;
    assert_eq!(back, weights.clone().into_dyn());

    // Typed sub-range access without allocation: element offsets, caller's buffers. This is
    // what a decode loop does every step (write a few token ids, read one row of logits).
    tensor.write_from(5, &[-1.0f32, -2.0])?;
    let mut row = [0f32; 4];
    tensor.read_into(4, &mut row)?;
    println!("row 1 after writing two elements: {row:?}");
    assert_eq!(row, [10.0, -1.0, -2.0, 13.0]);

    // Reading into part of an existing array, even a strided view.
    let mut wide = Array2::<f32>::zeros((3, 8));
    tensor.read_array_into(&mut wide.slice_mut(s![.., ..;2]))?;
    println!("read into every other column:\n{wide}");

    // The wrong element type is an error naming the tensor, not a reinterpretation.
    if let Err(err) = tensor.write_from(0, &[1i32]) {
        println!("expected error: {err}");
    }

    // A slice is a zero-copy view of part of a tensor: row 2 here.
    let row2 = tensor
        .slice(2 * 16, 16, "weights[2]")?
        .with_shape(DType::F32, &[4])?;
    row2.write_from(0, &[100f32])?;
    println!("row 2 through the slice: {:?}", row2.to_vec::<f32>()?);

    // Copies between tensors stay on the device; share tensors with Arc.
    let copy = Arc::new(Tensor::zeros::<f32>(&rt, core0, &[3, 4], "copy")?);
    copy.copy_from(&tensor)?;
    assert_eq!(copy.to_array::<f32>()?, tensor.to_array::<f32>()?);
    println!("copied {} bytes on the device", copy.size());
    Ok(())
}
