//! Lifecycle, topology queries and the export table, through the dynamic loader.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::ffi::CStr;
use std::mem::MaybeUninit;

use common::*;
use neuron_sys::bindings::{
    NRT_STATUS, nrt_framework_type_t, nrt_instance_family_t, nrt_instance_info_t,
    nrt_instance_size_t, nrt_version_t,
};

fn init(lib: &neuron_sys::Library) -> Status {
    call!(
        lib,
        nrt_init,
        nrt_framework_type_t::NRT_FRAMEWORK_TYPE_NO_FW,
        c"".as_ptr(),
        c"".as_ptr()
    )
}

#[test]
fn every_header_function_is_exported() {
    // The names are read from the generated bindings, so a function added to the header
    // without an export here fails this test.
    let bindings = include_str!("../../neuron-sys/src/bindings.rs");
    let start = bindings.find("pub struct NrtLib").unwrap();
    let end = start + bindings[start..].find("\n}").unwrap();
    let names: Vec<&str> = bindings[start..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split(':').next())
        .filter(|n| n.starts_with("nrt_"))
        .collect();
    assert!(names.len() >= 38, "parsed {} names", names.len());
    let path = neuron_mock::testing::library_path();
    // SAFETY: loading the mock runs no initialisers with preconditions.
    let lib = unsafe { libloading::Library::new(&path) }.unwrap();
    for name in names {
        // SAFETY: only the symbol's presence is checked; it is not called.
        let found = unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) };
        assert!(found.is_ok(), "{} does not export {name}", path.display());
    }
}

#[test]
fn calls_before_init_and_after_close() {
    let _turn = serial();
    let lib = lib();
    // The first test to run may find the runtime uninitialised or closed by another test.
    let mut t = std::ptr::null_mut();
    let before = call!(
        lib,
        nrt_tensor_allocate,
        DEVICE,
        0,
        16,
        c"x".as_ptr(),
        &mut t
    );
    assert!(
        before == NRT_STATUS::NRT_UNINITIALIZED || before == NRT_STATUS::NRT_CLOSED,
        "{before}"
    );
    assert!(t.is_null());
    // Counts and version work before init.
    let mut n = 0u32;
    assert_eq!(call!(lib, nrt_get_total_vnc_count, &mut n), SUCCESS);
    assert_eq!(n, 2, "inf2.xlarge by default");
    assert_eq!(call!(lib, nrt_get_visible_nc_count, &mut n), SUCCESS);
    assert_eq!(n, 2);
    let mut version = MaybeUninit::<nrt_version_t>::zeroed();
    assert_eq!(
        call!(
            lib,
            nrt_get_version,
            version.as_mut_ptr(),
            size_of::<nrt_version_t>()
        ),
        SUCCESS
    );

    assert_eq!(init(lib), SUCCESS);
    assert_eq!(
        init(lib),
        NRT_STATUS::NRT_FAILURE,
        "a second init without close is refused"
    );
    assert!(
        last_error(lib).contains("already initialized"),
        "{}",
        last_error(lib)
    );
    let mut t = std::ptr::null_mut();
    assert_eq!(
        call!(
            lib,
            nrt_tensor_allocate,
            DEVICE,
            0,
            16,
            c"x".as_ptr(),
            &mut t
        ),
        SUCCESS
    );
    call!(lib, nrt_close);
    // After close: NRT_CLOSED, and the old handle is dead.
    let mut u = std::ptr::null_mut();
    assert_eq!(
        call!(
            lib,
            nrt_tensor_allocate,
            DEVICE,
            0,
            16,
            c"x".as_ptr(),
            &mut u
        ),
        NRT_STATUS::NRT_CLOSED
    );
    assert!(last_error(lib).contains("nrt_close"), "{}", last_error(lib));
    assert_eq!(call!(lib, nrt_tensor_get_size, t), 0);
    call!(lib, nrt_close); // closing twice is harmless

    // Re-init works; handles from the previous runtime stay dead, memory starts at zero.
    assert_eq!(init(lib), SUCCESS);
    assert_eq!(call!(lib, nrt_tensor_get_size, t), 0);
    assert!(
        last_error(lib).contains("unknown tensor handle"),
        "{}",
        last_error(lib)
    );
    let live = neuron_mock::testing::live_handles(lib).unwrap();
    assert!(live.is_empty(), "{live:?}");
    call!(lib, nrt_close);
}

#[test]
fn version_and_instance_info() {
    let rt = Rt::init();
    let mut version = MaybeUninit::<nrt_version_t>::zeroed();
    assert_eq!(
        call!(
            rt.lib,
            nrt_get_version,
            version.as_mut_ptr(),
            size_of::<nrt_version_t>()
        ),
        SUCCESS
    );
    // SAFETY: zeroed and filled by the library.
    let version = unsafe { version.assume_init() };
    assert_eq!(
        (version.rt_major, version.rt_minor, version.rt_patch),
        (2, 31, 24)
    );
    // SAFETY: the library NUL-terminates rt_detail.
    let detail = unsafe { CStr::from_ptr(version.rt_detail.as_ptr()) };
    let detail = detail.to_string_lossy();
    assert!(detail.contains("neuron-mock"), "{detail}");
    // It names the arithmetic of the weight products, which a model's outputs depend on.
    let matmul = std::env::var("NEURON_MOCK_MATMUL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "f32".into())
        .to_ascii_lowercase();
    assert!(
        detail.contains(&format!("weight products in {matmul}")),
        "{detail}"
    );
    // neuron-sys read the same version when it loaded the library.
    assert_eq!(rt.lib.runtime_version().map(|v| v.minor), Some(31));
    assert_eq!(rt.lib.dtype_encoding(), neuron_sys::DTypeEncoding::Current);

    // A short size truncates the copy (the first 8 bytes: rt_major only).
    let mut short = [0xffu8; 16];
    assert_eq!(
        call!(rt.lib, nrt_get_version, short.as_mut_ptr().cast(), 8),
        SUCCESS
    );
    assert_eq!(u64::from_ne_bytes(short[..8].try_into().unwrap()), 2);
    assert_eq!(short[8..], [0xff; 8]);

    let mut info = MaybeUninit::<nrt_instance_info_t>::zeroed();
    assert_eq!(
        call!(
            rt.lib,
            nrt_get_instance_info,
            info.as_mut_ptr(),
            size_of::<nrt_instance_info_t>()
        ),
        SUCCESS
    );
    // SAFETY: zeroed and filled by the library.
    let info = unsafe { info.assume_init() };
    assert_eq!(info.family, nrt_instance_family_t::NRT_INSTANCE_INF2.0);
    assert_eq!(info.size, nrt_instance_size_t::NRT_INSTANCE_SIZE_1XL.0);
    // Old callers pass the 8-byte struct: only that much is written.
    let mut old = [0xffu8; 12];
    assert_eq!(
        call!(rt.lib, nrt_get_instance_info, old.as_mut_ptr().cast(), 8),
        SUCCESS
    );
    assert_eq!(old[8..], [0xff; 4]);
    assert_eq!(
        call!(rt.lib, nrt_get_instance_info, std::ptr::null_mut(), 32),
        NRT_STATUS::NRT_INVALID
    );

    let (used, limit) = rt.memory(0);
    assert_eq!((used, limit), (0, 16 << 30), "16 GiB per inf2 core");
    rt.assert_no_leaks();
}

#[test]
fn status_names() {
    let lib = lib();
    assert_eq!(status_name(lib, NRT_STATUS::NRT_SUCCESS), "NRT_SUCCESS");
    assert_eq!(
        status_name(lib, NRT_STATUS::NRT_EXEC_NC_BUSY),
        "NRT_EXEC_NC_BUSY"
    );
    assert_eq!(status_name(lib, NRT_STATUS(12)), "NRT_UNKNOWN_STATUS");
    // Static strings: the same pointer every time.
    let a = call!(lib, nrt_get_status_as_str, NRT_STATUS::NRT_TIMEOUT);
    let b = call!(lib, nrt_get_status_as_str, NRT_STATUS::NRT_TIMEOUT);
    assert_eq!(a, b);
}

#[test]
fn null_out_parameters_are_refused() {
    let rt = Rt::init();
    assert_eq!(
        call!(rt.lib, nrt_get_total_vnc_count, std::ptr::null_mut()),
        NRT_STATUS::NRT_INVALID
    );
    assert!(
        rt.last_error().contains("vnc_count is NULL"),
        "{}",
        rt.last_error()
    );
    assert_eq!(
        call!(rt.lib, nrt_allocate_tensor_set, std::ptr::null_mut()),
        NRT_STATUS::NRT_INVALID
    );
    assert_eq!(
        call!(
            rt.lib,
            nrt_tensor_allocate,
            DEVICE,
            0,
            4,
            std::ptr::null(),
            std::ptr::null_mut()
        ),
        NRT_STATUS::NRT_INVALID
    );
    // Void functions given NULL do nothing (and do not crash).
    call!(rt.lib, nrt_tensor_free, std::ptr::null_mut());
    call!(rt.lib, nrt_destroy_tensor_set, std::ptr::null_mut());
    rt.assert_no_leaks();
}
