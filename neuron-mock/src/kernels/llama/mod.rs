//! The Llama family of mock kernels: the CPU computation behind the prefill, decode, verify,
//! KV-commit and heads graphs that `parallel-decode` compiles for the mock device.

pub mod forward;
pub mod graph;
mod kernel;
pub mod linalg;
pub mod packed;
#[cfg(target_arch = "x86_64")]
mod packed_amx;
#[cfg(target_arch = "x86_64")]
mod packed_dpbf16;
pub mod packed_half;
#[cfg(target_arch = "x86_64")]
mod packed_simd;
#[cfg(target_arch = "x86_64")]
mod simd;

#[cfg(test)]
mod tests;

pub(crate) use kernel::{FORWARD, HEADS, KV_COMMIT};
