//! The one place that reads this crate's environment variables.

use std::ffi::OsString;

/// Name of the variable that points the loader at a specific libnrt: a file, or a directory
/// holding `libnrt.so.1` (or `libnrt.so`).
pub const NEURON_SYS_LIB: &str = "NEURON_SYS_LIB";

/// The value of [`NEURON_SYS_LIB`], if set and not empty.
pub(crate) fn lib_override() -> Option<OsString> {
    let value = std::env::var_os(NEURON_SYS_LIB)?;
    tracing::debug!(variable = NEURON_SYS_LIB, value = ?value, "read environment variable");
    (!value.is_empty()).then_some(value)
}
