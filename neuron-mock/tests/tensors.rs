//! Tensors and tensor sets: placement, device memory, bounds, ownership.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::ffi::c_void;
use std::ptr::null_mut;

use common::*;
use neuron_sys::bindings::{NRT_STATUS, nrt_tensor_placement_t};

#[test]
fn device_memory_is_counted_and_returned() {
    let rt = Rt::init();
    let (_, limit) = rt.memory(0);
    let a = rt.device(1 << 20, "a");
    let b = rt.alloc(DEVICE, 1, 4096, "b").unwrap();
    assert_eq!(rt.memory(0).0, 1 << 20);
    assert_eq!(rt.memory(1).0, 4096);
    // Host tensors do not use device memory.
    let h = rt.alloc(HOST, -1, 1 << 20, "h").unwrap();
    assert_eq!(rt.memory(0).0, 1 << 20);
    // Out of device memory: NRT_RESOURCE, and the message says how much is in use.
    assert_eq!(
        rt.alloc(DEVICE, 0, limit, "big"),
        Err(NRT_STATUS::NRT_RESOURCE)
    );
    assert!(rt.last_error().contains("'big'"), "{}", rt.last_error());
    // An allocation that fits exactly the rest succeeds (memory is lazily committed).
    let rest = rt.alloc(DEVICE, 0, limit - (1 << 20), "rest").unwrap();
    assert_eq!(rt.memory(0).0, limit);
    rt.free(rest);
    // Cores that are not visible are refused.
    assert_eq!(rt.alloc(DEVICE, 2, 16, "x"), Err(NRT_STATUS::NRT_INVALID));
    assert!(
        rt.last_error().contains("NeuronCore 2 is not visible"),
        "{}",
        rt.last_error()
    );
    assert_eq!(rt.alloc(DEVICE, -1, 16, "x"), Err(NRT_STATUS::NRT_INVALID));
    assert_eq!(
        rt.alloc(nrt_tensor_placement_t(7), 0, 16, "x"),
        Err(NRT_STATUS::NRT_INVALID)
    );
    for t in [a, b, h] {
        rt.free(t);
    }
    rt.assert_no_leaks();
}

#[test]
fn read_write_memset_copy_are_bounds_checked() {
    let rt = Rt::init();
    let t = rt.device(8, "t");
    assert_eq!(rt.write(t, 2, &[1, 2, 3]), SUCCESS);
    assert_eq!(rt.read(t, 0, 8).unwrap(), [0, 0, 1, 2, 3, 0, 0, 0]);
    assert_eq!(rt.write(t, 6, &[1, 2, 3]), NRT_STATUS::NRT_INVALID);
    assert!(
        rt.last_error().contains("outside tensor 't' of 8 bytes"),
        "{}",
        rt.last_error()
    );
    assert_eq!(rt.read(t, 7, 2), Err(NRT_STATUS::NRT_INVALID));
    assert_eq!(rt.read(t, usize::MAX, 2), Err(NRT_STATUS::NRT_INVALID));
    // NULL buffers are refused unless the size is 0.
    assert_eq!(
        call!(rt.lib, nrt_tensor_write, t, std::ptr::null(), 0, 4),
        NRT_STATUS::NRT_INVALID
    );
    assert_eq!(
        call!(rt.lib, nrt_tensor_write, t, std::ptr::null(), 0, 0),
        SUCCESS
    );
    // memset converts the value to a byte, like memset.
    assert_eq!(call!(rt.lib, nrt_tensor_memset, t, 4, 0x1ff, 4), SUCCESS);
    assert_eq!(
        rt.read(t, 0, 8).unwrap(),
        [0, 0, 1, 2, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(
        call!(rt.lib, nrt_tensor_memset, t, 5, 0, 4),
        NRT_STATUS::NRT_INVALID
    );
    // Copies, including within one tensor (memmove).
    let u = rt.device(8, "u");
    assert_eq!(call!(rt.lib, nrt_tensor_copy, t, 2, u, 0, 6), SUCCESS);
    assert_eq!(
        rt.read(u, 0, 8).unwrap(),
        [1, 2, 0xff, 0xff, 0xff, 0xff, 0, 0]
    );
    assert_eq!(call!(rt.lib, nrt_tensor_copy, u, 0, u, 1, 7), SUCCESS);
    assert_eq!(
        rt.read(u, 0, 8).unwrap(),
        [1, 1, 2, 0xff, 0xff, 0xff, 0xff, 0]
    );
    assert_eq!(
        call!(rt.lib, nrt_tensor_copy, t, 4, u, 0, 5),
        NRT_STATUS::NRT_INVALID
    );
    assert_eq!(call!(rt.lib, nrt_tensor_get_size, u), 8);
    // Both inf2.xlarge cores are on one chip and share its memory: copies between them work.
    let v = rt.alloc(DEVICE, 1, 8, "v").unwrap();
    assert_eq!(call!(rt.lib, nrt_tensor_copy, u, 0, v, 0, 8), SUCCESS);
    rt.free(t);
    rt.free(u);
    rt.free(v);
    rt.assert_no_leaks();
}

#[test]
fn free_nulls_and_detects_double_free() {
    let rt = Rt::init();
    let t = rt.device(16, "t");
    let copy = t;
    rt.free(t); // asserts the pointer was nulled
    // Freeing a stale copy of the handle is reported, never a crash.
    let mut stale = copy;
    call!(rt.lib, nrt_tensor_free, &mut stale);
    assert!(stale.is_null());
    assert!(
        rt.last_error().contains("double free"),
        "{}",
        rt.last_error()
    );
    assert_eq!(rt.write(copy, 0, &[1]), NRT_STATUS::NRT_INVALID);
    // Handles of another kind are refused by name.
    let set = rt.set();
    assert_eq!(call!(rt.lib, nrt_tensor_get_size, set.cast()), 0);
    assert!(
        rt.last_error()
            .contains("is a tensor set handle, not a tensor handle"),
        "{}",
        rt.last_error()
    );
    rt.destroy(set);
    rt.assert_no_leaks();
}

#[test]
fn slices_share_storage_and_memory_goes_with_the_last_one() {
    let rt = Rt::init();
    let t = rt.device(16, "whole");
    let s = rt.slice(t, 4, 8, "part").unwrap();
    assert_eq!(call!(rt.lib, nrt_tensor_get_size, s), 8);
    assert_eq!(rt.write(s, 0, &[9; 8]), SUCCESS);
    assert_eq!(rt.read(t, 0, 16).unwrap()[4..12], [9; 8]);
    let base = call!(rt.lib, nrt_tensor_get_va, t) as usize;
    assert_eq!(call!(rt.lib, nrt_tensor_get_va, s) as usize, base + 4);
    assert_eq!(base % neuron_mock::STORAGE_ALIGN, 0);
    assert_eq!(rt.slice(t, 12, 8, "x"), Err(NRT_STATUS::NRT_INVALID));
    // A slice of a slice offsets again.
    let ss = rt.slice(s, 2, 2, "").unwrap();
    assert_eq!(call!(rt.lib, nrt_tensor_get_va, ss) as usize, base + 6);
    // Freeing the source keeps the slices working; the memory goes with the last of them.
    rt.free(t);
    assert_eq!(rt.memory(0).0, 16);
    assert_eq!(rt.read(s, 0, 8).unwrap(), [9; 8]);
    rt.free(s);
    assert_eq!(rt.memory(0).0, 16);
    rt.free(ss);
    assert_eq!(rt.memory(0).0, 0);
    rt.assert_no_leaks();
}

#[test]
fn attached_buffers_stay_the_callers() {
    let rt = Rt::init();
    let mut buffer = vec![0u8; 32];
    let mut t = null_mut();
    assert_eq!(
        call!(
            rt.lib,
            nrt_tensor_allocate_empty,
            c"attached".as_ptr(),
            &mut t
        ),
        SUCCESS
    );
    assert_eq!(call!(rt.lib, nrt_tensor_get_size, t), 0);
    assert!(call!(rt.lib, nrt_tensor_get_va, t).is_null());
    assert_eq!(
        rt.read(t, 0, 1),
        Err(NRT_STATUS::NRT_INVALID),
        "no storage yet"
    );
    assert_eq!(
        call!(
            rt.lib,
            nrt_tensor_attach_buffer,
            t,
            buffer.as_mut_ptr().cast::<c_void>(),
            buffer.len()
        ),
        SUCCESS
    );
    assert_eq!(
        call!(rt.lib, nrt_tensor_get_va, t),
        buffer.as_mut_ptr().cast::<c_void>()
    );
    assert_eq!(rt.write(t, 1, &[5, 6]), SUCCESS);
    // Attaching replaces a device allocation, whose memory is given back.
    let d = rt.device(64, "d");
    assert_eq!(rt.memory(0).0, 64);
    let mut other = [0u8; 4];
    assert_eq!(
        call!(
            rt.lib,
            nrt_tensor_attach_buffer,
            d,
            other.as_mut_ptr().cast::<c_void>(),
            4
        ),
        SUCCESS
    );
    assert_eq!(rt.memory(0).0, 0);
    assert_eq!(
        call!(rt.lib, nrt_tensor_attach_buffer, d, std::ptr::null_mut(), 4),
        NRT_STATUS::NRT_INVALID
    );
    rt.free(t);
    rt.free(d);
    // The buffers were not freed by the library: still ours, still holding what was written.
    assert_eq!(buffer[..3], [0, 5, 6]);
    buffer.push(1);
    assert_eq!(other, [0; 4]);
    rt.assert_no_leaks();
}

#[test]
fn tensor_sets_do_not_own_tensors() {
    let rt = Rt::init();
    let set = rt.set();
    let a = rt.device(4, "a");
    let b = rt.device(4, "b");
    rt.add(set, "x", a);
    let mut got = null_mut();
    assert_eq!(
        call!(
            rt.lib,
            nrt_get_tensor_from_tensor_set,
            set,
            c"x".as_ptr(),
            &mut got
        ),
        SUCCESS
    );
    assert_eq!(got, a);
    // Adding the same name replaces the entry.
    rt.add(set, "x", b);
    assert_eq!(
        call!(
            rt.lib,
            nrt_get_tensor_from_tensor_set,
            set,
            c"x".as_ptr(),
            &mut got
        ),
        SUCCESS
    );
    assert_eq!(got, b);
    // An unknown name is NRT_FAILURE and leaves the out-parameter alone.
    let mut untouched = 0x1234usize as *mut _;
    assert_eq!(
        call!(
            rt.lib,
            nrt_get_tensor_from_tensor_set,
            set,
            c"y".as_ptr(),
            &mut untouched
        ),
        NRT_STATUS::NRT_FAILURE
    );
    assert_eq!(untouched as usize, 0x1234);
    assert_eq!(
        call!(
            rt.lib,
            nrt_add_tensor_to_tensor_set,
            set,
            std::ptr::null(),
            a
        ),
        NRT_STATUS::NRT_INVALID
    );
    // Destroying the set leaves the tensors alive.
    rt.destroy(set);
    assert_eq!(rt.write(a, 0, &[1, 2, 3, 4]), SUCCESS);
    rt.free(a);
    rt.free(b);
    rt.assert_no_leaks();
}
