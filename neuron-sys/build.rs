//! Empty on purpose: it only exists so that `links = "nrt"` makes Cargo refuse two copies of
//! neuron-sys in one build. The bindings are committed; no libclang is needed to build.
fn main() {}
