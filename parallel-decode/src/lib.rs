//! Models, artifacts and decoding strategies (filled in by later issues).
pub mod sampling;
pub mod strategy;
