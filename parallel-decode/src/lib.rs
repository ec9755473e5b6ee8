//! Models, artifacts and decoding strategies (filled in by later issues).
pub mod backend;
pub mod engine;
mod error;
pub mod sampling;
pub mod strategy;

pub use error::{Error, Result};
