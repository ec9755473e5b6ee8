//! A fake libnrt (filled in by the neuron-mock issue).
pub mod kernels;
