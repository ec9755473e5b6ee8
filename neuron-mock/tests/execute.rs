//! Loading mock NEFFs, tensor information, and execution, through the dynamic loader.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::ptr::null_mut;

use common::*;
use neuron_mock::neff::{self, MockNeff, NeffHeader};
use neuron_sys::DType;
use neuron_sys::bindings::{NRT_STATUS, nrt_dtype_t, nrt_model_info_t};
use serde_json::json;

#[test]
fn add_runs_and_reports_its_tensors() {
    let rt = Rt::init();
    let setup = add_setup(&rt, &[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]);
    let info = rt.tensor_info(setup.model);
    let f32_code = nrt_dtype_t::NRT_DTYPE_FLOAT32.0;
    assert_eq!(
        info,
        vec![
            ("a".to_string(), 0, 16, f32_code, vec![4]),
            ("b".to_string(), 0, 16, f32_code, vec![4]),
            ("c".to_string(), 1, 16, f32_code, vec![4]),
        ]
    );
    assert_eq!(setup.run(&rt), SUCCESS, "{}", rt.last_error());
    assert_eq!(rt.read_f32(setup.t("c"), 4), [11.0, 22.0, 33.0, 44.0]);
    // The cached plan follows changes: new input values, and a replaced tensor.
    rt.write_f32(setup.t("a"), &[0.0; 4]);
    assert_eq!(setup.run(&rt), SUCCESS);
    assert_eq!(rt.read_f32(setup.t("c"), 4), [10.0, 20.0, 30.0, 40.0]);
    let other = rt.f32_tensor("b2", &[1.0; 4]);
    rt.add(setup.ins, "b", other);
    assert_eq!(setup.run(&rt), SUCCESS);
    assert_eq!(rt.read_f32(setup.t("c"), 4), [1.0; 4]);
    rt.free(other);
    // ... and a freed tensor still in the set is reported by name, not used.
    assert_eq!(setup.run(&rt), NRT_STATUS::NRT_INVALID);
    assert!(
        rt.last_error().contains("input 'b'") && rt.last_error().contains("freed"),
        "{}",
        rt.last_error()
    );
    let mut model_info = nrt_model_info_t { vnc: 99 };
    let mut written = 0;
    assert_eq!(
        call!(
            rt.lib,
            nrt_get_model_info,
            setup.model,
            &mut model_info,
            4,
            &mut written
        ),
        SUCCESS
    );
    assert_eq!((model_info.vnc, written), (0, 4));
    let mut cores = 0;
    assert_eq!(
        call!(rt.lib, nrt_get_model_vnc_count, setup.model, &mut cores),
        SUCCESS
    );
    assert_eq!(cores, 1);
    setup.teardown(&rt);
    rt.assert_no_leaks();
}

#[test]
fn execution_checks_name_the_tensor() {
    let rt = Rt::init();
    let model = rt.load(&add_neff(4), 0).unwrap();
    let (ins, outs) = (rt.set(), rt.set());
    let a = rt.f32_tensor("a", &[1.0; 4]);
    let short = rt.device(12, "short");
    let c = rt.device(16, "c");
    rt.add(ins, "a", a);
    rt.add(outs, "c", c);
    // Missing input.
    assert_eq!(rt.execute(model, ins, outs), NRT_STATUS::NRT_INVALID);
    let err = rt.last_error();
    assert!(
        err.contains("input 'b'")
            && err.contains("missing from the input set")
            && err.contains("'a'"),
        "{err}"
    );
    // Wrong size.
    rt.add(ins, "b", short);
    assert_eq!(rt.execute(model, ins, outs), NRT_STATUS::NRT_INVALID);
    let err = rt.last_error();
    assert!(
        err.contains("input 'b'") && err.contains("is 12 bytes, the model needs 16"),
        "{err}"
    );
    // Missing output.
    rt.add(ins, "b", a);
    let empty = rt.set();
    assert_eq!(rt.execute(model, ins, empty), NRT_STATUS::NRT_INVALID);
    assert!(
        rt.last_error().contains("output 'c'"),
        "{}",
        rt.last_error()
    );
    // Output partly overlapping an input: refused (in place needs the very same tensor).
    let whole = rt.device(32, "whole");
    let lo = rt.slice(whole, 0, 16, "lo").unwrap();
    let hi = rt.slice(whole, 8, 16, "hi").unwrap();
    rt.add(ins, "a", lo);
    rt.add(outs, "c", hi);
    assert_eq!(rt.execute(model, ins, outs), NRT_STATUS::NRT_INVALID);
    assert!(
        rt.last_error().contains("partly overlaps output 'c'"),
        "{}",
        rt.last_error()
    );
    // Bad handles.
    assert_eq!(rt.execute(a.cast(), ins, outs), NRT_STATUS::NRT_INVALID);
    assert_eq!(
        call!(rt.lib, nrt_execute_repeat, model, ins, outs, 0),
        NRT_STATUS::NRT_INVALID
    );
    for t in [a, short, c, lo, hi, whole] {
        rt.free(t);
    }
    for s in [ins, outs, empty] {
        rt.destroy(s);
    }
    rt.unload(model);
    rt.assert_no_leaks();
}

/// acc += x, with acc bound to both sets.
fn accumulate_neff() -> Vec<u8> {
    MockNeff::new("add")
        .state("acc", DType::F32, &[3])
        .input("x", DType::F32, &[3])
        .to_bytes()
        .unwrap()
}

#[test]
fn state_is_updated_in_place_and_repeat_runs_n_times() {
    let rt = Rt::init();
    let model = rt.load(&accumulate_neff(), 0).unwrap();
    let info = rt.tensor_info(model);
    assert_eq!(
        info.iter().map(|t| (t.0.as_str(), t.1)).collect::<Vec<_>>(),
        [("acc", 0), ("acc", 1), ("x", 0)],
        "NEFF order"
    );
    let acc = rt.f32_tensor("acc", &[1.0, 2.0, 3.0]);
    let x = rt.f32_tensor("x", &[0.5, 0.5, 0.5]);
    let bound = Bound::new(&rt, model, &[("acc", acc), ("x", x)], &[("acc", acc)]);
    assert_eq!(bound.run(&rt), SUCCESS, "{}", rt.last_error());
    assert_eq!(rt.read_f32(acc, 3), [1.5, 2.5, 3.5]);
    let (ins, outs) = (bound.ins, bound.outs);
    assert_eq!(
        call!(rt.lib, nrt_execute_repeat, model, ins, outs, 4),
        SUCCESS
    );
    assert_eq!(rt.read_f32(acc, 3), [3.5, 4.5, 5.5]);
    // Bound to two different tensors, the state is read from one and written to the other.
    let next = rt.device(12, "next");
    rt.add(outs, "acc", next);
    assert_eq!(bound.run(&rt), SUCCESS);
    assert_eq!(rt.read_f32(next, 3), [4.0, 5.0, 6.0]);
    assert_eq!(rt.read_f32(acc, 3), [3.5, 4.5, 5.5]);
    rt.free(next);
    bound.teardown(&rt);
    rt.assert_no_leaks();
}

fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_ne_bytes())
        .collect()
}

#[test]
fn matmul_f32_and_bf16() {
    let rt = Rt::init();
    let (m, k, n) = (2, 3, 2);
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let w = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // [k, n]
    let want = [4.0, 5.0, 10.0, 11.0];
    for dtype in [DType::F32, DType::BF16] {
        let neff = MockNeff::new("matmul")
            .input("x", dtype, &[m, k])
            .input("w", dtype, &[k, n])
            .output("y", DType::F32, &[m, n])
            .to_bytes()
            .unwrap();
        let model = rt.load(&neff, 1).unwrap();
        let bytes = |v: &[f32]| {
            if dtype == DType::F32 {
                bytemuck::cast_slice(v).to_vec()
            } else {
                bf16_bytes(v)
            }
        };
        let (tx, tw) = (
            rt.device(m * k * dtype.size_in_bytes(), "x"),
            rt.device(k * n * dtype.size_in_bytes(), "w"),
        );
        assert_eq!(rt.write(tx, 0, &bytes(&x)), SUCCESS);
        assert_eq!(rt.write(tw, 0, &bytes(&w)), SUCCESS);
        let ty = rt.device(m * n * 4, "y");
        let bound = Bound::new(&rt, model, &[("x", tx), ("w", tw)], &[("y", ty)]);
        assert_eq!(bound.run(&rt), SUCCESS, "{}", rt.last_error());
        assert_eq!(rt.read_f32(ty, 4), want, "{dtype}");
        bound.teardown(&rt);
    }
    rt.assert_no_leaks();
}

#[test]
fn bad_neffs_are_refused_with_a_reason() {
    let rt = Rt::init();
    let good = add_neff(4);
    let cases: Vec<(Vec<u8>, NRT_STATUS, &str)> = vec![
        (good[..100].to_vec(), NRT_STATUS::NRT_INVALID, "truncated"),
        (
            good[..good.len() - 10].to_vec(),
            NRT_STATUS::NRT_INVALID,
            "truncated",
        ),
        (vec![0u8; 4096], NRT_STATUS::NRT_INVALID, "pkg_version"),
        (
            {
                let archive =
                    neff::write_archive(&[("neff.json", b"{}"), ("sg00/def.json", b"{}")]).unwrap();
                neff::write_container(&NeffHeader::for_archive("bert", &archive, 0), &archive)
            },
            NRT_STATUS::NRT_UNSUPPORTED_NEFF_VERSION,
            "compiled by the Neuron compiler",
        ),
        (
            {
                let mut b = good.clone();
                b[0x18] = 3;
                b
            },
            NRT_STATUS::NRT_UNSUPPORTED_NEFF_VERSION,
            "version 3.0",
        ),
        (
            MockNeff::new("fft")
                .input("x", DType::F32, &[1])
                .to_bytes()
                .unwrap(),
            NRT_STATUS::NRT_INVALID,
            "unknown kernel \"fft\"",
        ),
        (
            MockNeff::new("matmul")
                .input("x", DType::F32, &[2, 3])
                .input("w", DType::F32, &[3, 4])
                .output("y", DType::F32, &[2, 4])
                .param("transpose_b", json!("yes"))
                .to_bytes()
                .unwrap(),
            NRT_STATUS::NRT_INVALID,
            "bad params",
        ),
        (
            MockNeff::new("add")
                .input("a", DType::F32, &[4])
                .input("b", DType::F32, &[5])
                .output("c", DType::F32, &[4])
                .to_bytes()
                .unwrap(),
            NRT_STATUS::NRT_INVALID,
            "tensor \"b\"",
        ),
    ];
    for (bytes, status, message) in cases {
        assert_eq!(
            rt.load(&bytes, 0),
            Err(status),
            "{message}: {}",
            rt.last_error()
        );
        assert!(
            rt.last_error().contains(message),
            "expected {message:?} in {}",
            rt.last_error()
        );
    }
    assert_eq!(rt.load(&good, 2), Err(NRT_STATUS::NRT_LOAD_NOT_ENOUGH_NC));
    assert_eq!(
        call!(
            rt.lib,
            nrt_load,
            std::ptr::null(),
            10,
            0,
            -1,
            &mut null_mut()
        ),
        NRT_STATUS::NRT_INVALID
    );
    rt.assert_no_leaks();
}

#[test]
fn loaded_models_use_device_memory_and_cores_are_chosen() {
    let rt = Rt::init();
    let neff = add_neff(4);
    let a = rt.load(&neff, -1).unwrap();
    let b = rt.load(&neff, -1).unwrap();
    assert_eq!(rt.memory(0).0, neff.len());
    assert_eq!(rt.memory(1).0, neff.len(), "-1 picks the least used core");
    let mut info = nrt_model_info_t { vnc: 0 };
    assert_eq!(
        call!(rt.lib, nrt_get_model_info, b, &mut info, 4, null_mut()),
        SUCCESS
    );
    assert_eq!(info.vnc, 1);
    rt.unload(a);
    rt.unload(b);
    assert_eq!(
        call!(rt.lib, nrt_unload, b),
        NRT_STATUS::NRT_INVALID,
        "unloading twice is reported"
    );
    rt.assert_no_leaks();
}

#[test]
fn models_execute_concurrently_from_many_threads() {
    let rt = Rt::init();
    let threads = 4;
    let setups: Vec<Bound> = (0..threads)
        .map(|i| add_setup(&rt, &[i as f32; 64], &[0.0; 64]))
        .collect();
    std::thread::scope(|s| {
        for (i, setup) in setups.iter().enumerate() {
            let rt = &rt;
            s.spawn(move || {
                for step in 0..200 {
                    rt.write_f32(setup.t("b"), &[step as f32; 64]);
                    assert_eq!(setup.run(rt), SUCCESS, "{}", rt.last_error());
                    assert_eq!(
                        rt.read_f32(setup.t("c"), 64),
                        vec![i as f32 + step as f32; 64]
                    );
                }
            });
        }
    });
    for setup in setups {
        setup.teardown(&rt);
    }
    rt.assert_no_leaks();
}
