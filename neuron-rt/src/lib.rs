//! Safe Rust runtime for AWS Neuron devices (Inferentia2, Trainium) over libnrt.
//!
//! | Neuron idea | what it is here | in CPU terms |
//! |---|---|---|
//! | **NEFF** | a compiled model file, loaded as a [`Model`] | a compiled program |
//! | **NeuronCore** | a core that runs a model, numbered among the visible cores (`Placement::Device(core)`) | a device |
//! | **tensor** | a [`Tensor`]: a buffer, normally in a core's device memory | a buffer on the device |
//! | **tensor set** | a [`TensorSet`]: tensors by name, one for the inputs, one for the outputs | an argument list |
//! | **execute** | [`Model::execute`]: run the NEFF on its inputs, fill its outputs | a function call |
//! | **collective world** | a [`ModelGroup`]: one NEFF on N cores as ranks 0..N-1, run together | threads meeting at a barrier |
//!
//! A [`Runtime`] comes first (one per process, shared as `Arc<Runtime>`); every other object
//! holds a clone of it, so the runtime closes only after they are all gone.
//!
//! # Walkthrough
//!
//! Load a NEFF, fill its inputs, run it, read its output. (The NEFF here is a mock NEFF for
//! `neuron-mock`, the fake libnrt that tests and CI run on; on a Neuron instance, load a NEFF
//! compiled by the Neuron compiler instead.)
//!
//! ```
//! use neuron_rt::{Model, Runtime};
//! # use neuron_mock::neff::MockNeff;
//! # use neuron_rt::DType;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let neff = MockNeff::new("add")
//! #     .input("a", DType::F32, &[4])
//! #     .input("b", DType::F32, &[4])
//! #     .output("sum", DType::F32, &[4])
//! #     .to_bytes()?;
//! // libnrt is found through NEURON_SYS_LIB or the system search path.
//! let rt = Runtime::init()?;
//! println!("{} NeuronCores visible", rt.visible_cores()?);
//!
//! // `neff` holds the bytes of a NEFF with inputs `a`, `b` and output `sum`, 4 x f32 each.
//! let model = Model::load(&rt, &neff, 0)?;
//! for input in model.inputs() {
//!     println!("input {input}");
//! }
//!
//! // One device tensor per input and output, bound by name. Build these once, reuse them.
//! let mut io = model.allocate_io()?;
//! io.inputs.tensor("a")?.write_from(0, &[1.0f32, 2.0, 3.0, 4.0])?;
//! io.inputs.tensor("b")?.write_from(0, &[10.0f32, 20.0, 30.0, 40.0])?;
//!
//! model.execute(&io.inputs, &mut io.outputs)?;
//!
//! let mut sum = [0.0f32; 4];
//! io.outputs.tensor("sum")?.read_into(0, &mut sum)?;
//! assert_eq!(sum, [11.0, 22.0, 33.0, 44.0]);
//! # Ok(()) }
//! ```
//!
//! # Threads
//!
//! [`Runtime`], [`Model`], [`Tensor`] and [`TensorSet`] are `Send + Sync`; several threads may
//! execute one model at once, as libnrt documents. Each `unsafe impl` says which documented
//! behaviour makes it sound.
//!
//! # Features
//!
//! - `half` (default): typed access to `f16` and `bf16` tensors through [`half`](https://docs.rs/half).
//! - `ndarray`: `Tensor::from_array`, `Tensor::to_array`, `Tensor::write_array` and
//!   `Tensor::read_array_into` (copies between `ndarray` arrays and tensors).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod dtype;
mod error;
mod group;
mod model;
mod raw;
mod runtime;
mod tensor;
mod tensor_set;

#[cfg(feature = "ndarray")]
mod array;

pub use dtype::{DType, NeuronRepr};
pub use error::{Error, Result, Status, Subject, Usage};
pub use group::{DEFAULT_SPIN, ModelGroup, ModelGroupLoader};
pub use model::{IoSets, Model, ModelLoader, NEFF_HEADER_SIZE, Rank, TensorInfo};
pub use raw::{
    DTypeEncoding, LoadSource, RuntimeVersion, nrt_model_t, nrt_tensor_set_t, nrt_tensor_t,
};
pub use runtime::{Framework, InstanceInfo, MemoryStats, Runtime, RuntimeBuilder};
pub use tensor::{Placement, Tensor};
pub use tensor_set::{TensorSet, TensorSetBuilder};

#[cfg(test)]
mod thread_safety {
    use super::*;
    use static_assertions::{assert_impl_all, assert_not_impl_any};

    // The documented contract (nrt_api.h on nrt_execute: several threads may execute one
    // model) makes these shareable; see each `unsafe impl`.
    assert_impl_all!(Runtime: Send, Sync);
    assert_impl_all!(Model: Send, Sync);
    assert_impl_all!(Tensor: Send, Sync);
    assert_impl_all!(TensorSet: Send, Sync);
    assert_impl_all!(ModelGroup: Send, Sync);
    assert_impl_all!(Error: Send, Sync);
    // Handles are unique owners: a copy would free or unload twice.
    assert_not_impl_any!(Model: Clone);
    assert_not_impl_any!(Tensor: Clone);
    assert_not_impl_any!(TensorSet: Clone);
    assert_not_impl_any!(ModelGroup: Clone);
}
