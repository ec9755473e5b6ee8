//! **neuron-mock**: a fake libnrt. It exports the Neuron runtime's C API (every function in
//! `neuron-sys/include/nrt_api.h`) and runs "mock NEFFs" with CPU kernels, so that everything
//! above it (neuron-rt, parallel-decode, the CLI, C programs) runs without a Neuron device.
//!
//! The crate builds two things:
//!
//! - the **cdylib** `libneuron_mock.so` (soname `libnrt.so.1`): load it with `NEURON_SYS_LIB`,
//!   or install it as `libnrt.so.1` with `scripts/install-mock.sh DIR`. Its behaviour follows
//!   the real runtime (lifecycle, instance profiles, core visibility, device memory, ownership
//!   rules, status codes); the README lists every function and the `NEURON_MOCK_*` variables.
//! - the **rlib**, a Rust API for writing mock NEFFs ([`neff::MockNeff`]), the kernel registry
//!   ([`kernels`]), and test helpers ([`testing`]).
//!
//! ```
//! use neuron_mock::neff::MockNeff;
//! use neuron_sys::DType;
//!
//! // A NEFF whose "device code" is the mock's elementwise-add kernel.
//! let neff: Vec<u8> = MockNeff::new("add")
//!     .input("a", DType::F32, &[4])
//!     .input("b", DType::F32, &[4])
//!     .output("sum", DType::F32, &[4])
//!     .to_bytes()?;
//! // Load it with nrt_load from the mock library, like any NEFF.
//! # Ok::<(), neuron_mock::neff::NeffError>(())
//! ```
//!
//! Unsafe code lives in two modules: `ffi` (the C boundary) and `memory` (tensor storage and
//! the views kernels get).

/// Logs a line through the mock's log: `log!(Error, "nrt_execute", "input '{}' is missing", n)`.
macro_rules! log {
    ($level:ident, $function:expr, $($arg:tt)+) => {
        $crate::log::write($crate::log::Level::$level, $function, format_args!($($arg)+))
    };
}

pub mod kernels;
pub mod neff;
pub mod testing;

mod collectives;
mod config;
mod faults;
mod ffi;
mod log;
mod memory;
mod model;
mod profiles;
mod runtime;
mod tensor;
mod tensor_set;

pub use collectives::CollectiveError;
pub use config::{DEFAULT_EXEC_TIMEOUT_SECS, DEFAULT_RT_VERSION};
pub use memory::STORAGE_ALIGN;
pub use profiles::{DEFAULT_INSTANCE, InstanceProfile, PROFILES};
