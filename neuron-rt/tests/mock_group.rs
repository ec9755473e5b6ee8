//! Collective models on several cores: `ModelGroup`, against the mock.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use common::{Fixture, add_neff, all_reduce_neff, child_env, run_in_child};
use neuron_rt::{Error, Model, ModelGroup, Status};

/// Rank r's input: a distinct vector per rank.
fn rank_input(rank: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| (rank * 100 + i) as f32).collect()
}

/// What a single core computes for the same data: the element-wise sum of every rank's input.
fn single_core_sum(world: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0..world).map(|r| rank_input(r, n)[i]).sum())
        .collect()
}

fn check_all_reduce(fx: &Fixture, world: u32, n: usize, steps: usize) {
    let group = ModelGroup::loader(&fx.rt)
        .cores(0..world)
        .name("allreduce")
        .load(&all_reduce_neff(n))
        .unwrap();
    assert_eq!(group.world_size(), world);
    for (rank, model) in group.ranks().iter().enumerate() {
        assert_eq!(model.core(), Some(rank as u32));
        let r = model.rank().unwrap();
        assert_eq!((r.rank, r.world), (rank as u32, world));
    }
    let mut io = group.allocate_io().unwrap();
    let expected = single_core_sum(world as usize, n);
    let mut out = vec![0f32; n];
    for step in 0..steps {
        for (rank, sets) in io.iter().enumerate() {
            let mut x = rank_input(rank, n);
            x[0] += step as f32;
            sets.inputs.tensor("x").unwrap().write_from(0, &x).unwrap();
        }
        group.execute_io(&mut io).unwrap();
        for sets in &io {
            sets.outputs
                .tensor("y")
                .unwrap()
                .read_into(0, &mut out)
                .unwrap();
            assert_eq!(out[0], expected[0] + (world as usize * step) as f32);
            assert_eq!(out[1..], expected[1..]);
        }
    }
    drop((io, group));
}

#[test]
fn two_ranks_all_reduce_to_the_single_core_answer() {
    let fx = Fixture::new();
    check_all_reduce(&fx, 2, 1000, 20);
    fx.finish();
}

#[test]
fn one_rank_group_runs_on_the_calling_thread() {
    let fx = Fixture::new();
    check_all_reduce(&fx, 1, 16, 3);
    fx.finish();
}

#[test]
fn execute_takes_separate_input_and_output_slices() {
    let fx = Fixture::new();
    let group = ModelGroup::load(&fx.rt, &all_reduce_neff(4), 0..2).unwrap();
    let io = group.allocate_io().unwrap();
    let (inputs, mut outputs): (Vec<_>, Vec<_>) =
        io.into_iter().map(|s| (s.inputs, s.outputs)).unzip();
    for (rank, set) in inputs.iter().enumerate() {
        set.tensor("x")
            .unwrap()
            .write_from(0, &[rank as f32 + 1.0; 4])
            .unwrap();
    }
    group.execute(&inputs, &mut outputs).unwrap();
    for set in &outputs {
        assert_eq!(set.tensor("y").unwrap().to_vec::<f32>().unwrap(), [3.0; 4]);
    }
    let err = group.execute(&inputs[..1], &mut outputs).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    drop((inputs, outputs, group));
    fx.finish();
}

#[test]
fn a_bad_set_fails_the_group_naming_the_rank() {
    let fx = Fixture::new();
    let group = ModelGroup::load(&fx.rt, &all_reduce_neff(4), 0..2).unwrap();
    let mut io = group.allocate_io().unwrap();
    // Rank 1's output set lacks nothing, but its input set is rank 0's model's... swap in a
    // wrongly sized tensor for rank 1.
    let small = neuron_rt::Tensor::zeros::<f32>(&fx.rt, neuron_rt::Placement::Device(1), &[2], "x")
        .unwrap();
    io[1].inputs.insert("x", small).unwrap();
    let err = group.execute_io(&mut io).unwrap_err();
    match &err {
        Error::Rank {
            rank,
            world,
            failed,
            source,
            ..
        } => {
            assert_eq!((*rank, *world), (1, 2));
            assert_eq!(failed, &[1]);
            assert!(matches!(**source, Error::SizeMismatch { .. }), "{source:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    drop((io, group));
    fx.finish();
}

#[test]
fn loading_on_too_many_cores_fails_as_a_whole() {
    let fx = Fixture::new();
    let err = ModelGroup::load(&fx.rt, &all_reduce_neff(4), 0..3).unwrap_err();
    match &err {
        Error::Rank {
            rank,
            world,
            failed,
            ..
        } => {
            assert_eq!((*rank, *world), (2, 3));
            assert_eq!(failed, &[2]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.status(), Some(Status::LoadNotEnoughNc));
    assert!(matches!(
        ModelGroup::load(&fx.rt, &all_reduce_neff(4), 1..1),
        Err(Error::InvalidArgument { .. })
    ));
    // The ranks that did load were unloaded: the fixture's leak check covers it.
    fx.finish();
}

#[test]
fn groups_of_independent_models_also_work() {
    // A NEFF without collectives can be run as a group too (data parallel).
    let fx = Fixture::new();
    let group = ModelGroup::load(&fx.rt, &add_neff(2), 0..2).unwrap();
    let mut io = group.allocate_io().unwrap();
    for (rank, sets) in io.iter().enumerate() {
        sets.inputs
            .tensor("a")
            .unwrap()
            .write_from(0, &[rank as f32; 2])
            .unwrap();
        sets.inputs
            .tensor("b")
            .unwrap()
            .write_from(0, &[1f32; 2])
            .unwrap();
    }
    group.execute_io(&mut io).unwrap();
    for (rank, sets) in io.iter().enumerate() {
        let sum = sets.outputs.tensor("sum").unwrap().to_vec::<f32>().unwrap();
        assert_eq!(sum, [rank as f32 + 1.0; 2]);
    }
    drop((io, group));
    fx.finish();
}

#[test]
fn four_ranks_on_a_bigger_instance() {
    run_in_child(
        "child_four_ranks",
        &[("NEURON_MOCK_INSTANCE", "trn1.32xlarge")],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (four_ranks_on_a_bigger_instance)"]
fn child_four_ranks() {
    if child_env("NEURON_MOCK_INSTANCE").is_none() {
        return;
    }
    let fx = Fixture::new();
    check_all_reduce(&fx, 4, 257, 10);
    fx.finish();
}

#[test]
fn a_missing_rank_times_out() {
    run_in_child("child_missing_rank", &[("NEURON_RT_EXEC_TIMEOUT", "0.5")]);
}

#[test]
#[ignore = "runs in a subprocess with its own environment (a_missing_rank_times_out)"]
fn child_missing_rank() {
    if child_env("NEURON_RT_EXEC_TIMEOUT").is_none() {
        return;
    }
    let fx = Fixture::new();
    let group = ModelGroup::load(&fx.rt, &all_reduce_neff(4), 0..2).unwrap();
    let mut io = group.allocate_io().unwrap();
    // Only rank 0 executes: its all-reduce waits for rank 1, which never comes.
    let rank0: &Model = group.rank(0).unwrap();
    let sets = &mut io[0];
    let err = rank0.execute(&sets.inputs, &mut sets.outputs).unwrap_err();
    assert_eq!(err.status(), Some(Status::Timeout), "{err:?}");
    assert!(err.to_string().contains("rank 0 of 2"), "{err}");
    // The group still works afterwards.
    group.execute_io(&mut io).unwrap();
    drop((io, group));
    fx.finish();
}

#[test]
fn a_failing_rank_fails_the_group() {
    // The mock counts executions over the process; the 3rd execution is one rank of the
    // second group step. The peer then times out in the all-reduce, or runs to completion if
    // it went first; either way the reported rank is the one that failed, not a victim.
    run_in_child(
        "child_failing_rank",
        &[
            (
                "NEURON_MOCK_FAULTS",
                "exec-fail=3@NRT_EXEC_COMPLETED_WITH_ERR",
            ),
            ("NEURON_RT_EXEC_TIMEOUT", "0.5"),
        ],
    );
}

#[test]
#[ignore = "runs in a subprocess with its own environment (a_failing_rank_fails_the_group)"]
fn child_failing_rank() {
    if child_env("NEURON_MOCK_FAULTS").is_none() {
        return;
    }
    let fx = Fixture::new();
    let group = ModelGroup::loader(&fx.rt)
        .cores(0..2)
        .name("tp")
        .load(&all_reduce_neff(4))
        .unwrap();
    let mut io = group.allocate_io().unwrap();
    group.execute_io(&mut io).unwrap();
    let err = group.execute_io(&mut io).unwrap_err();
    match &err {
        Error::Rank {
            model,
            source,
            failed,
            ..
        } => {
            assert_eq!(model, "tp");
            assert_eq!(source.status(), Some(Status::ExecCompletedWithErr), "{err}");
            assert!(!failed.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains("NRT_EXEC_COMPLETED_WITH_ERR"),
        "{err}"
    );
    // The next step succeeds again.
    group.execute_io(&mut io).unwrap();
    drop((io, group));
    fx.finish();
}

#[test]
fn groups_load_from_files_and_are_named_after_them() {
    let fx = Fixture::new();
    let dir = std::env::temp_dir().join(format!("neuron-rt-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tp_layer.neff");
    std::fs::write(&path, all_reduce_neff(4)).unwrap();
    let group = ModelGroup::loader(&fx.rt)
        .cores(0..2)
        .load_file(&path)
        .unwrap();
    assert_eq!(group.name(), "tp_layer");
    assert_eq!(group.rank(1).unwrap().name(), "tp_layer");
    assert!(group.rank(2).is_none());
    let err = ModelGroup::loader(&fx.rt)
        .load_file(dir.join("missing.neff"))
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    drop(group);
    std::fs::remove_dir_all(&dir).unwrap();
    fx.finish();
}
