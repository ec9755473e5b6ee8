//! `nrt-mock-probe`: loads a libnrt (the library `NEURON_SYS_LIB` names, else the mock built
//! from these sources), runs one scenario through the C API and prints what it saw as
//! `key=value` lines. `nrt-mock-probe info` shows what the runtime reports for the current
//! environment (instance, cores, memory, version); the mock's tests run the other scenarios
//! with different environments to check behaviour that is read from them.
//!
//! Scenarios: `info`, `dtypes`, `exec N`, `alloc BYTES COUNT`, `load VNC`,
//! `copy VNC_A VNC_B`, `virtual`, `missing-input`, `missing-rank`.

#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "../../tests/common/mod.rs"]
mod common;

use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::time::Instant;

use common::*;
use neuron_mock::neff::MockNeff;
use neuron_sys::DType;
use neuron_sys::bindings::{nrt_instance_info_t, nrt_version_t};

const USAGE: &str = "usage: nrt-mock-probe info | dtypes | exec N | alloc BYTES COUNT | load VNC | \
                     copy VNC_A VNC_B | virtual | missing-input | missing-rank";

fn main() -> ExitCode {
    common::USE_ENV_LIBRARY.store(true, std::sync::atomic::Ordering::Relaxed);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> i64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{USAGE}"))
    };
    match args.first().map(String::as_str) {
        Some("info") => info(),
        Some("dtypes") => with_runtime(dtypes),
        Some("exec") => with_runtime(|rt| exec(rt, arg(1) as usize)),
        Some("alloc") => with_runtime(|rt| alloc(rt, arg(1) as usize, arg(2) as usize)),
        Some("load") => with_runtime(|rt| load(rt, arg(1) as i32)),
        Some("copy") => with_runtime(|rt| copy(rt, arg(1) as i32, arg(2) as i32)),
        Some("virtual") => with_runtime(virtual_placement),
        Some("missing-input") => with_runtime(missing_input),
        Some("missing-rank") => with_runtime(missing_rank),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn show(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

fn show_status(lib: &neuron_sys::Library, key: &str, status: Status) {
    show(key, status_name(lib, status));
}

/// Initialises the runtime (printing the status), runs the scenario, checks for leaks (with
/// the mock; a real libnrt has no way to ask).
fn with_runtime(scenario: impl FnOnce(&Rt)) {
    let rt = match Rt::try_init() {
        Ok(rt) => rt,
        Err((status, why)) => {
            show_status(lib(), "init", status);
            show("init.error", why);
            return;
        }
    };
    show_status(rt.lib, "init", SUCCESS);
    scenario(&rt);
    if let Ok(live) = neuron_mock::testing::live_handles(rt.lib) {
        show("leaks", !live.is_empty());
    }
}

fn info() {
    let lib = lib();
    let mut n = 0u32;
    let status = call!(lib, nrt_get_total_vnc_count, &mut n);
    show_status(lib, "pre_init.total.status", status);
    show("pre_init.total", n);
    let status = call!(lib, nrt_get_visible_vnc_count, &mut n);
    show_status(lib, "pre_init.visible.status", status);
    show("pre_init.visible", n);
    let mut version = MaybeUninit::<nrt_version_t>::zeroed();
    let status = call!(
        lib,
        nrt_get_version,
        version.as_mut_ptr(),
        size_of::<nrt_version_t>()
    );
    show_status(lib, "version.status", status);
    // SAFETY: zeroed, then filled by the library.
    let v = unsafe { version.assume_init() };
    show(
        "version",
        format!(
            "{}.{}.{}.{}",
            v.rt_major, v.rt_minor, v.rt_patch, v.rt_maintenance
        ),
    );
    if status != SUCCESS {
        show("version.error", last_error(lib));
    }
    with_runtime(|rt| {
        let mut info = MaybeUninit::<nrt_instance_info_t>::zeroed();
        let status = call!(
            rt.lib,
            nrt_get_instance_info,
            info.as_mut_ptr(),
            size_of::<nrt_instance_info_t>()
        );
        show_status(rt.lib, "instance.status", status);
        // SAFETY: zeroed, then filled by the library.
        let info = unsafe { info.assume_init() };
        show("instance.family", info.family);
        show("instance.size", info.size);
        let arch: Vec<u8> = info
            .arch_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        show("instance.arch", String::from_utf8_lossy(&arch));
        let mut total = 0u32;
        call!(rt.lib, nrt_get_total_vnc_count, &mut total);
        show("total", total);
        let visible = rt.visible();
        show("visible", visible);
        show("memory_per_core", rt.memory(0).1);
        show("last_core_memory", rt.memory(visible - 1).1);
        show("encoding", format!("{:?}", rt.lib.dtype_encoding()));
    });
}

fn dtypes(rt: &Rt) {
    let kinds = [
        DType::F32,
        DType::BF16,
        DType::F16,
        DType::I32,
        DType::U8,
        DType::I64,
        DType::Fp8E4,
    ];
    let mut neff = MockNeff::new("copy");
    for d in kinds {
        neff = neff
            .input(format!("in_{d}"), d, &[2])
            .output(format!("out_{d}"), d, &[2]);
    }
    let model = rt.load(&neff.to_bytes().unwrap(), 0).unwrap();
    for (name, usage, _, dtype, _) in rt.tensor_info(model) {
        if usage == 0 {
            show(&format!("dtype.{}", name.trim_start_matches("in_")), dtype);
        }
    }
    rt.unload(model);
}

fn exec(rt: &Rt, n: usize) {
    let setup = add_setup(rt, &[1.0; 4], &[2.0; 4]);
    for i in 1..=n {
        rt.write_f32(setup.t("c"), &[0.0; 4]);
        let started = Instant::now();
        let status = setup.run(rt);
        show_status(rt.lib, &format!("exec.{i}"), status);
        show(&format!("exec.{i}.us"), started.elapsed().as_micros());
        show(&format!("exec.{i}.result"), rt.read_f32(setup.t("c"), 4)[0]);
        if status != SUCCESS {
            show(&format!("exec.{i}.error"), rt.last_error());
        }
    }
    setup.teardown(rt);
}

fn alloc(rt: &Rt, bytes: usize, count: usize) {
    let mut held = Vec::new();
    for i in 1..=count {
        match rt.alloc(DEVICE, 0, bytes, "t") {
            Ok(t) => {
                show_status(rt.lib, &format!("alloc.{i}"), SUCCESS);
                held.push(t);
            }
            Err(status) => {
                show_status(rt.lib, &format!("alloc.{i}"), status);
                show(&format!("alloc.{i}.error"), rt.last_error());
            }
        }
    }
    show("used", rt.memory(0).0);
    for t in held {
        rt.free(t);
    }
}

fn load(rt: &Rt, vnc: i32) {
    match rt.load(&add_neff(4), vnc) {
        Ok(model) => {
            show_status(rt.lib, "load", SUCCESS);
            rt.unload(model);
        }
        Err(status) => {
            show_status(rt.lib, "load", status);
            show("load.error", rt.last_error());
        }
    }
}

fn copy(rt: &Rt, a: i32, b: i32) {
    let ta = rt.alloc(DEVICE, a, 8, "a").unwrap();
    let tb = rt.alloc(DEVICE, b, 8, "b").unwrap();
    let status = call!(rt.lib, nrt_tensor_copy, ta, 0, tb, 0, 8);
    show_status(rt.lib, "copy", status);
    if status != SUCCESS {
        show("copy.error", rt.last_error());
    }
    rt.free(ta);
    rt.free(tb);
}

fn virtual_placement(rt: &Rt) {
    let placement = neuron_sys::bindings::nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_VIRTUAL;
    match rt.alloc(placement, -1, 16, "v") {
        Ok(t) => {
            show_status(rt.lib, "alloc", SUCCESS);
            rt.free(t);
        }
        Err(status) => {
            show_status(rt.lib, "alloc", status);
            show("alloc.error", rt.last_error());
        }
    }
}

fn missing_input(rt: &Rt) {
    let setup = add_setup(rt, &[1.0; 4], &[2.0; 4]);
    let empty = rt.set();
    rt.add(empty, "a", setup.t("a"));
    let status = rt.execute(setup.model, empty, setup.outs);
    show_status(rt.lib, "exec", status);
    rt.destroy(empty);
    setup.teardown(rt);
}

/// Rank 0 of a world of two executes an all-reduce; rank 1 is loaded but never runs.
fn missing_rank(rt: &Rt) {
    let neff = MockNeff::new("all_reduce")
        .input("x", DType::F32, &[4])
        .output("y", DType::F32, &[4])
        .to_bytes()
        .unwrap();
    let r0 = rt.load_rank(&neff, 0, 0, 2).unwrap();
    let r1 = rt.load_rank(&neff, 1, 1, 2).unwrap();
    let x = rt.f32_tensor("x", &[1.0; 4]);
    let y = rt.device(16, "y");
    let (ins, outs) = (rt.set(), rt.set());
    rt.add(ins, "x", x);
    rt.add(outs, "y", y);
    let started = Instant::now();
    let status = rt.execute(r0, ins, outs);
    show_status(rt.lib, "exec", status);
    show("exec.ms", started.elapsed().as_millis());
    show("exec.error", rt.last_error());
    rt.free(x);
    rt.free(y);
    rt.destroy(ins);
    rt.destroy(outs);
    rt.unload(r0);
    rt.unload(r1);
}
