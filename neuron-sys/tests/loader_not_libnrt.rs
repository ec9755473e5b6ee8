//! A real shared object that is not libnrt (the C library) loads, and every nrt function looked
//! up on it is a typed `MissingSymbol` naming the function, never a panic.
//!
//! This is its own test binary because it installs the process-wide library.

use neuron_sys::{LoadError, MissingSymbol, nrt_fn};

const LIBC: &str = "libc.so.6";

#[test]
fn libc_loads_and_nrt_symbols_are_missing() {
    let lib = neuron_sys::load_from(LIBC).expect("the C library opens");
    assert_eq!(lib.runtime_version(), None, "libc has no nrt_get_version");
    assert_eq!(lib.dtype_encoding(), neuron_sys::DTypeEncoding::Legacy);

    let err: MissingSymbol = nrt_fn!(lib, nrt_init).unwrap_err();
    assert_eq!(err.symbol, "nrt_init");
    let text = err.to_string();
    assert!(
        text.contains("libc.so.6 does not export nrt_init"),
        "{text}"
    );

    let err = nrt_fn!(lib, nrt_tensor_allocate_slice).unwrap_err();
    assert_eq!(err.symbol, "nrt_tensor_allocate_slice");

    // The process-wide library is now libc: asking again for it is fine, asking for another
    // library is a typed error.
    assert!(std::ptr::eq(neuron_sys::lib().unwrap(), lib));
    assert!(neuron_sys::load_from(LIBC).is_ok());
    match neuron_sys::load_from("/nonexistent/libnrt.so.1") {
        Err(LoadError::AlreadyInitialized { requested, .. }) => {
            assert_eq!(requested.to_str(), Some("/nonexistent/libnrt.so.1"))
        }
        other => panic!("expected AlreadyInitialized, got {other:?}"),
    }
}
