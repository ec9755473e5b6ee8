//! Loader failures are typed errors that name the path and say what to do.

use neuron_sys::{Library, LoadError, LoadSource};

#[test]
fn a_path_that_does_not_exist() {
    let err = Library::open("/nonexistent/dir/libnrt.so.1").unwrap_err();
    match &err {
        LoadError::Open {
            path,
            chosen_by,
            message,
        } => {
            assert_eq!(path.to_str(), Some("/nonexistent/dir/libnrt.so.1"));
            assert_eq!(*chosen_by, LoadSource::Explicit);
            assert!(message.contains("No such file"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("cannot open /nonexistent/dir/libnrt.so.1")
    );
}

#[test]
fn a_directory_is_not_a_library() {
    let err = Library::open(env!("CARGO_MANIFEST_DIR")).unwrap_err();
    assert!(matches!(err, LoadError::Open { .. }), "{err:?}");
}

#[test]
fn a_failed_explicit_load_is_not_cached() {
    // The failure must not poison the process-wide slot: a later load can still succeed.
    assert!(neuron_sys::load_from("/nonexistent/libnrt.so.1").is_err());
    assert!(neuron_sys::loaded().is_none());
    assert!(neuron_sys::load_from("libc.so.6").is_ok());
}

#[test]
fn library_open_does_not_touch_the_process_wide_library() {
    let lib = Library::open("libm.so.6").expect("libm opens");
    assert!(neuron_sys::nrt_fn!(&lib, nrt_close).is_err());
    assert!(neuron_sys::loaded().is_none_or(|l| l.path() != lib.path()));
}
