//! Models, artifacts and decoding strategies (filled in by later issues).
mod error;
pub mod sampling;
pub mod strategy;

pub use error::{Error, Result};
