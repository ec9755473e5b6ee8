//! CPU kernels that mock NEFFs name.
pub mod llama;
