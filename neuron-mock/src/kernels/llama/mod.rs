//! The Llama family of mock kernels: the CPU computation behind the prefill, decode, verify,
//! KV-commit and heads graphs that `parallel-decode` compiles for the mock device.

pub mod forward;
pub mod graph;
mod kernel;
pub mod linalg;
pub mod packed;
#[cfg(target_arch = "x86_64")]
mod packed_simd;
#[cfg(target_arch = "x86_64")]
mod simd;

#[cfg(test)]
mod tests;

/// Deterministic values in [-1, 1) for the products' tests.
#[cfg(test)]
fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

pub(crate) use kernel::{FORWARD, HEADS, KV_COMMIT};
