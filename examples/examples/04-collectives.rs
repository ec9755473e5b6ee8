//! Walkthrough 4: a collective model on several NeuronCores. One NEFF is loaded on N cores
//! as ranks 0..N-1 of a world; every step runs all ranks at once (the collective operations
//! inside the NEFF need every rank), and fails as a whole, naming the rank, if one fails.
//!
//! ```sh
//! eval "$(scripts/build-mock.sh)"      # on a machine without a Neuron device
//! cargo run -p neuron-examples --example 04-collectives [-- model.neff [ranks]]
//! ```
#![forbid(unsafe_code)]

mod walkthrough;

use std::time::Instant;

use anyhow::Context;
use neuron_mock::neff::MockNeff;
use neuron_rt::{DType, ModelGroup, Runtime};

const DEMO_LEN: usize = 8;

fn main() -> anyhow::Result<()> {
    let rt = Runtime::init()?;
    let neff = walkthrough::NeffFile::from_args_or(|| {
        MockNeff::new("all_reduce")
            .name("all-reduce")
            .input("x", DType::F32, &[DEMO_LEN])
            .output("y", DType::F32, &[DEMO_LEN])
    })?;
    let world: u32 = match std::env::args().nth(2) {
        Some(text) => text
            .parse()
            .with_context(|| format!("rank count {text:?}"))?,
        None => rt.visible_cores()?.min(2),
    };

    // Rank r goes on core r.
    let group = ModelGroup::loader(&rt)
        .cores(0..world)
        .load_file(neff.path())?;
    println!("loaded {} as {world} ranks", neff.path().display());

    // Each rank has its own tensors, on its own core.
    let mut io = group.allocate_io()?;
    for (rank, sets) in io.iter().enumerate() {
        let model = &group.ranks()[rank];
        for info in model.inputs() {
            walkthrough::fill(sets.inputs.tensor(&info.name)?, info, rank * 10)?;
        }
    }

    // One step on every rank at once; the calling thread runs rank 0, persistent worker
    // threads the others, so repeated steps (one per generated token) cost no thread starts.
    let steps = 20;
    let start = Instant::now();
    for _ in 0..steps {
        group.execute_io(&mut io)?;
    }
    println!("{steps} steps in {:.2?}", start.elapsed());

    for (rank, sets) in io.iter().enumerate() {
        for info in group.ranks()[rank].outputs() {
            let tensor = sets.outputs.tensor(&info.name)?;
            println!(
                "rank {rank} {info}: {}",
                walkthrough::preview(tensor, info)?
            );
        }
    }

    // With the demo NEFF, every rank holds the sum over ranks: what one core would compute
    // from all the inputs.
    if neff.is_demo() {
        let expected: Vec<f32> = (0..DEMO_LEN)
            .map(|i| {
                (0..world as usize)
                    .map(|r| ((r * 10 + i) % 100) as f32)
                    .sum()
            })
            .collect();
        for sets in &io {
            anyhow::ensure!(sets.outputs.tensor("y")?.to_vec::<f32>()? == expected);
        }
        println!("all {world} ranks agree with the single-core sum {expected:?}");
    }
    Ok(())
}
