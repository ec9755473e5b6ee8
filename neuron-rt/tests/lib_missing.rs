//! A library path that does not exist is a typed error, not a panic and not a fall-through to
//! another library. (Its own test binary: the loaded library is process-wide.)
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::path::Path;

use neuron_rt::{Error, Runtime};

#[test]
fn missing_library_is_a_load_error_naming_the_path() {
    let err = Runtime::builder()
        .lib_path("/nonexistent/libnrt.so.1")
        .init()
        .unwrap_err();
    match &err {
        Error::Load(neuron_sys::LoadError::Open { path, .. }) => {
            assert_eq!(path, Path::new("/nonexistent/libnrt.so.1"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains("/nonexistent/libnrt.so.1"),
        "{err}"
    );
    assert!(Runtime::current().is_none());
}
