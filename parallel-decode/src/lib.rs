//! Models, artifacts and decoding strategies (filled in by later issues).
