//! The safe runtime over libnrt (filled in by the neuron-rt issue).
