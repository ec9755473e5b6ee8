//! Ranks of a world in parallel threads meeting inside kernels, and the host collectives.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::ffi::c_void;

use common::*;
use neuron_mock::neff::MockNeff;
use neuron_sys::DType;
use serde_json::json;

/// Deterministic small integers, so f32 sums are exact in any order.
fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + seed * 3) % 11) as f32 - 5.0)
        .collect()
}

/// y = x . w with K split over `world` ranks and summed by an all-reduce inside the kernel
/// equals the single-core product.
#[test]
fn tensor_parallel_matmul_equals_the_single_core_result() {
    let rt = Rt::init();
    let (m, k, n) = (3, 8, 5);
    let x = data(m * k, 1);
    let w = data(k * n, 2);
    let mut want = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|t| x[i * k + t] * w[t * n + j]).sum();
        }
    }
    for world in [1usize, 2, 4] {
        let shard = k / world;
        let neff = MockNeff::new("matmul")
            .input("x", DType::F32, &[m, shard])
            .input("w", DType::F32, &[shard, n])
            .output("y", DType::F32, &[m, n])
            .param("all_reduce", json!(true))
            .to_bytes()
            .unwrap();
        let ranks: Vec<Bound> = (0..world)
            .map(|r| {
                let model = rt
                    .load_rank(&neff, (r % 2) as i32, r as u32, world as u32)
                    .unwrap();
                let xs: Vec<f32> = (0..m)
                    .flat_map(|i| x[i * k + r * shard..i * k + (r + 1) * shard].to_vec())
                    .collect();
                let ws = &w[r * shard * n..(r + 1) * shard * n];
                let (tx, tw) = (rt.f32_tensor("x", &xs), rt.f32_tensor("w", ws));
                let ty = rt.device(m * n * 4, "y");
                Bound::new(&rt, model, &[("x", tx), ("w", tw)], &[("y", ty)])
            })
            .collect();
        for _ in 0..20 {
            let statuses = run_parallel(&rt, &ranks);
            assert!(
                statuses.iter().all(|&s| s == SUCCESS),
                "{}",
                rt.last_error()
            );
            for r in &ranks {
                assert_eq!(rt.read_f32(r.t("y"), m * n), want, "world {world}");
            }
        }
        for r in ranks {
            r.teardown(&rt);
        }
    }
    rt.assert_no_leaks();
}

#[test]
fn all_reduce_in_place_and_all_gather_kernels() {
    let rt = Rt::init();
    let world = 3;
    let reduce = MockNeff::new("all_reduce")
        .state("h", DType::F32, &[4])
        .to_bytes()
        .unwrap();
    let ranks: Vec<Bound> = (0..world)
        .map(|r| {
            let model = rt.load_rank(&reduce, 0, r as u32, world as u32).unwrap();
            let h = rt.f32_tensor("h", &[r as f32, 1.0, 2.0, 3.0]);
            Bound::new(&rt, model, &[("h", h)], &[("h", h)])
        })
        .collect();
    let statuses = run_parallel(&rt, &ranks);
    assert!(
        statuses.iter().all(|&s| s == SUCCESS),
        "{}",
        rt.last_error()
    );
    for r in ranks {
        assert_eq!(rt.read_f32(r.t("h"), 4), [3.0, 3.0, 6.0, 9.0]);
        r.teardown(&rt);
    }

    let gather = MockNeff::new("all_gather")
        .input("part", DType::I32, &[2])
        .output("all", DType::I32, &[2 * world])
        .to_bytes()
        .unwrap();
    let ranks: Vec<Bound> = (0..world)
        .map(|r| {
            let model = rt.load_rank(&gather, 1, r as u32, world as u32).unwrap();
            let part = rt.device(8, "part");
            let values = [r as i32 * 10, r as i32 * 10 + 1];
            assert_eq!(rt.write(part, 0, bytemuck::cast_slice(&values)), SUCCESS);
            let all = rt.device(8 * world, "all");
            Bound::new(&rt, model, &[("part", part)], &[("all", all)])
        })
        .collect();
    let statuses = run_parallel(&rt, &ranks);
    assert!(
        statuses.iter().all(|&s| s == SUCCESS),
        "{}",
        rt.last_error()
    );
    for r in ranks {
        let bytes = rt.read(r.t("all"), 0, 8 * world).unwrap();
        assert_eq!(
            bytemuck::cast_slice::<u8, i32>(&bytes),
            [0, 1, 10, 11, 20, 21]
        );
        r.teardown(&rt);
    }
    rt.assert_no_leaks();
}

/// Two worlds of the same NEFF, loaded and run by two threads at once, stay apart.
#[test]
fn concurrent_worlds_of_one_neff_do_not_mix() {
    let rt = Rt::init();
    let neff = MockNeff::new("all_reduce")
        .input("x", DType::F32, &[1])
        .output("y", DType::F32, &[1])
        .to_bytes()
        .unwrap();
    std::thread::scope(|s| {
        for world_id in 0..2 {
            let (rt, neff) = (&rt, &neff);
            s.spawn(move || {
                let ranks: Vec<Bound> = (0..2)
                    .map(|r| {
                        let model = rt.load_rank(neff, r, r as u32, 2).unwrap();
                        let x = rt.f32_tensor("x", &[(world_id * 100 + r) as f32]);
                        let y = rt.device(4, "y");
                        Bound::new(rt, model, &[("x", x)], &[("y", y)])
                    })
                    .collect();
                for _ in 0..50 {
                    assert!(run_parallel(rt, &ranks).iter().all(|&s| s == SUCCESS));
                    for r in &ranks {
                        assert_eq!(rt.read_f32(r.t("y"), 1), [(world_id * 200 + 1) as f32]);
                    }
                }
                for r in ranks {
                    r.teardown(rt);
                }
            });
        }
    });
    rt.assert_no_leaks();
}

#[test]
fn host_barrier_and_all_gather() {
    let rt = Rt::init();
    let world = 3u32;
    let gathered: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|r| {
                let rt = &rt;
                s.spawn(move || {
                    assert_eq!(
                        call!(rt.lib, nrt_barrier, -1, r, world),
                        SUCCESS,
                        "{}",
                        rt.last_error()
                    );
                    let mut input = [r as u8; 4];
                    let mut output = vec![0u8; 4 * world as usize];
                    let status = call!(
                        rt.lib,
                        nrt_all_gather,
                        (r % 2) as i32,
                        r,
                        world,
                        4,
                        input.as_mut_ptr().cast::<c_void>(),
                        output.as_mut_ptr().cast::<c_void>()
                    );
                    assert_eq!(status, SUCCESS, "{}", rt.last_error());
                    output
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for output in gathered {
        assert_eq!(output, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
    }
    assert_eq!(
        call!(rt.lib, nrt_barrier, 0, 3, 3),
        neuron_sys::bindings::NRT_STATUS::NRT_INVALID
    );
    assert_eq!(call!(rt.lib, nrt_build_global_comm, 0, 0, 4), SUCCESS);
    assert_eq!(
        call!(rt.lib, nrt_build_global_comm, 0, 4, 4),
        neuron_sys::bindings::NRT_STATUS::NRT_INVALID
    );
    rt.assert_no_leaks();
}
