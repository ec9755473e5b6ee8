//! `neuron-decode`: the command-line front end.
fn main() {}
