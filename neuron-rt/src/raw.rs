//! The one module that names `neuron-sys`: the raw types the other modules use, status
//! checking, and symbol lookup that turns a missing function into [`Error::MissingSymbol`].

use std::ptr::NonNull;

pub(crate) use neuron_sys::bindings::{
    NRT_STATUS, nrt_framework_type_t, nrt_instance_info_t, nrt_model_info_t,
    nrt_tensor_info_array_t, nrt_tensor_info_t, nrt_tensor_placement_t, nrt_tensor_usage_t,
    nrt_vnc_memory_stats_t,
};
pub use neuron_sys::bindings::{nrt_model_t, nrt_tensor_set_t, nrt_tensor_t};

/// `nrt_execute`'s signature, cached by each model so that executing resolves nothing.
pub(crate) type ExecuteFn = unsafe extern "C" fn(
    *mut nrt_model_t,
    *const nrt_tensor_set_t,
    *mut nrt_tensor_set_t,
) -> NRT_STATUS;
pub(crate) use neuron_sys::types::c_chars_to_string;
pub use neuron_sys::{DType, DTypeEncoding, LoadSource, RuntimeVersion};
pub(crate) use neuron_sys::{Library, LoadError, MissingSymbol};

use crate::error::{Error, Result, Status, Subject};

/// The process-wide library: the one given by path, or the one the search order finds.
pub(crate) fn load(path: Option<&std::path::Path>) -> Result<&'static Library> {
    Ok(match path {
        Some(path) => neuron_sys::load_from(path)?,
        None => neuron_sys::lib()?,
    })
}

/// Resolves a libnrt function from a [`Library`], or fails with [`Error::MissingSymbol`].
macro_rules! sym {
    ($lib:expr, $name:ident) => {
        neuron_sys::nrt_fn!($lib, $name).map_err($crate::error::Error::from)
    };
}
pub(crate) use sym;

/// `Ok(())` for `NRT_SUCCESS`, otherwise [`Error::Nrt`] naming the call.
#[inline]
pub(crate) fn check(status: NRT_STATUS, call: &'static str) -> Result<()> {
    if status.is_success() {
        Ok(())
    } else {
        Err(nrt_error(status, call, None))
    }
}

/// Like [`check`], naming the object involved. `subject` runs only on failure, so the
/// success path builds no strings.
#[inline]
pub(crate) fn check_for(
    status: NRT_STATUS,
    call: &'static str,
    subject: impl FnOnce() -> Subject,
) -> Result<()> {
    if status.is_success() {
        Ok(())
    } else {
        Err(nrt_error(status, call, Some(subject())))
    }
}

#[cold]
fn nrt_error(status: NRT_STATUS, call: &'static str, subject: Option<Subject>) -> Error {
    Error::Nrt {
        call,
        status: Status::from(status),
        subject,
    }
}

/// Wraps a handle returned through an out-parameter, or fails with [`Error::NullHandle`].
pub(crate) fn non_null<T>(ptr: *mut T, call: &'static str) -> Result<NonNull<T>> {
    NonNull::new(ptr).ok_or(Error::NullHandle { call })
}

/// The C name of an instance family code (`NRT_INSTANCE_INF2`), if known.
pub(crate) fn instance_family_name(code: u32) -> Option<&'static str> {
    neuron_sys::bindings::nrt_instance_family_t(code).name()
}

/// The C name of an instance size code (`NRT_INSTANCE_SIZE_2XL`), if known.
pub(crate) fn instance_size_name(code: u32) -> Option<&'static str> {
    neuron_sys::bindings::nrt_instance_size_t(code).name()
}
