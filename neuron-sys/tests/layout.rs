//! Struct sizes and field offsets, checked against the documented x86_64 layouts
//! (shared/docs/libnrt-api.md, section 4.7), not against the generated code.

use std::mem::{align_of, offset_of, size_of};

use neuron_sys::bindings::*;

#[test]
fn enums_are_four_bytes() {
    assert_eq!(size_of::<NRT_STATUS>(), 4);
    assert_eq!(size_of::<nrt_tensor_placement_t>(), 4);
    assert_eq!(size_of::<nrt_framework_type_t>(), 4);
    assert_eq!(size_of::<nrt_tensor_usage_t>(), 4);
    assert_eq!(size_of::<nrt_dtype_t>(), 4);
}

#[test]
fn version_struct() {
    assert_eq!(size_of::<nrt_version_t>(), 224);
    assert_eq!(align_of::<nrt_version_t>(), 8);
    assert_eq!(offset_of!(nrt_version_t, rt_major), 0);
    assert_eq!(offset_of!(nrt_version_t, rt_minor), 8);
    assert_eq!(offset_of!(nrt_version_t, rt_patch), 16);
    assert_eq!(offset_of!(nrt_version_t, rt_maintenance), 24);
    assert_eq!(offset_of!(nrt_version_t, rt_detail), 32);
    assert_eq!(offset_of!(nrt_version_t, git_hash), 160);
    assert_eq!(RT_VERSION_DETAIL_LEN, 128);
    assert_eq!(GIT_HASH_LEN, 64);
}

#[test]
fn instance_info_struct() {
    assert_eq!(size_of::<nrt_instance_info_t>(), 32);
    assert_eq!(align_of::<nrt_instance_info_t>(), 4);
    assert_eq!(offset_of!(nrt_instance_info_t, family), 0);
    assert_eq!(offset_of!(nrt_instance_info_t, size), 4);
    assert_eq!(offset_of!(nrt_instance_info_t, arch_name), 8);
    assert_eq!(offset_of!(nrt_instance_info_t, device_revision), 24);
}

#[test]
fn tensor_info_struct() {
    assert_eq!(size_of::<nrt_tensor_info_t>(), 296);
    assert_eq!(align_of::<nrt_tensor_info_t>(), 8);
    assert_eq!(offset_of!(nrt_tensor_info_t, name), 0);
    assert_eq!(offset_of!(nrt_tensor_info_t, usage), 256);
    assert_eq!(offset_of!(nrt_tensor_info_t, size), 264);
    assert_eq!(offset_of!(nrt_tensor_info_t, dtype), 272);
    assert_eq!(offset_of!(nrt_tensor_info_t, shape), 280);
    assert_eq!(offset_of!(nrt_tensor_info_t, ndim), 288);
    assert_eq!(NRT_TENSOR_NAME_MAX, 256);
}

#[test]
fn tensor_info_array_struct() {
    assert_eq!(offset_of!(nrt_tensor_info_array_t, tensor_count), 0);
    assert_eq!(offset_of!(nrt_tensor_info_array_t, tensor_array), 8);
    assert_eq!(size_of::<nrt_tensor_info_array_t>(), 8);
}

#[test]
fn model_info_and_memory_stats_structs() {
    assert_eq!(size_of::<nrt_model_info_t>(), 4);
    assert_eq!(offset_of!(nrt_model_info_t, vnc), 0);
    assert_eq!(size_of::<nrt_vnc_memory_stats_t>(), 16);
    assert_eq!(offset_of!(nrt_vnc_memory_stats_t, bytes_used), 0);
    assert_eq!(offset_of!(nrt_vnc_memory_stats_t, bytes_limit), 8);
}

#[test]
fn tensor_set_is_void() {
    // `nrt_tensor_set_t` is `typedef void` in C: a pointer to it is a plain `*mut c_void`.
    let p: *mut nrt_tensor_set_t = std::ptr::null_mut::<std::os::raw::c_void>();
    assert!(p.is_null());
}

#[test]
fn enum_values_match_the_documented_tables() {
    assert_eq!(nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_DEVICE.0, 0);
    assert_eq!(nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_HOST.0, 1);
    assert_eq!(nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_VIRTUAL.0, 2);
    assert_eq!(nrt_framework_type_t::NRT_FRAMEWORK_TYPE_NO_FW.0, 1);
    assert_eq!(nrt_framework_type_t::NRT_FRAMEWORK_TYPE_PRECHECK.0, 5);
    assert_eq!(nrt_tensor_usage_t::NRT_TENSOR_USAGE_OUTPUT.0, 1);
    assert_eq!(nrt_instance_family_t::NRT_INSTANCE_INF2.0, 4);
    assert_eq!(nrt_instance_family_t::NRT_INSTANCE_TRN3PDS98.0, 15);
    assert_eq!(nrt_instance_size_t::NRT_INSTANCE_SIZE_48XL.0, 7);
    assert_eq!(nrt_instance_size_t::NRT_INSTANCE_SIZE_UNKNOWN.0, 9);
    assert_eq!(NRT_STATUS::NRT_UNINITIALIZED.0, 13);
    assert_eq!(NRT_STATUS::NRT_CLOSED.0, 14);
    assert_eq!(NRT_STATUS::NRT_EXEC_UNIT_UNRECOVERABLE.0, 101);
    assert_eq!(NRT_STATUS::NRT_COLL_PENDING.0, 1100);
    assert_eq!(NRT_STATUS::NRT_NETWORK_PROXY_FAILURE.0, 1206);
}
