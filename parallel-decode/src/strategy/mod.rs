//! Parallel decoding: proposers offer a tree of candidate continuations, the target verifies
//! the whole tree in one pass, and a verification rule decides what is accepted.

pub mod acceptance;
pub mod answer_lookup;
pub mod combined;
pub mod draft;
pub mod feature_draft;
pub mod medusa;
pub mod prompt_lookup;
pub mod proposer;
pub mod tree;
pub mod verify;
