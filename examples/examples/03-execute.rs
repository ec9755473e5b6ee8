//! Walkthrough 3: execute a model: bind tensors to its inputs and outputs, run it, read the
//! results. The sets are built once and reused for every execution.
//!
//! ```sh
//! eval "$(scripts/build-mock.sh)"      # on a machine without a Neuron device
//! cargo run -p neuron-examples --example 03-execute [-- model.neff]
//! ```
#![forbid(unsafe_code)]

mod walkthrough;

use std::sync::Arc;
use std::time::Instant;

use neuron_rt::{Model, Runtime};

fn main() -> anyhow::Result<()> {
    let rt = Runtime::init()?;
    let neff = walkthrough::NeffFile::from_args_or(walkthrough::demo_matmul)?;
    let model = Model::load_file(&rt, neff.path(), 0)?;

    // A device tensor for every input and output, bound under the model's names. (Build
    // sets by hand with TensorSet::builder to share tensors, such as weights, between
    // models.)
    let mut io = model.allocate_io()?;
    for (i, info) in model.inputs().iter().enumerate() {
        walkthrough::fill(io.inputs.tensor(&info.name)?, info, i)?;
    }

    // Execute. The first execution checks the sets against the model; later ones with the
    // same sets are a single libnrt call.
    model.execute(&io.inputs, &mut io.outputs)?;
    let runs = 100;
    let start = Instant::now();
    for _ in 0..runs {
        model.execute(&io.inputs, &mut io.outputs)?;
    }
    println!(
        "{} executions of {} in {:.2?} ({:.1?} each)",
        runs,
        model.name(),
        start.elapsed(),
        start.elapsed() / runs
    );

    for info in model.outputs() {
        let tensor = io.outputs.tensor(&info.name)?;
        println!("{info}: {}", walkthrough::preview(tensor, info)?);
    }

    // With the demo NEFF, check the device's answer against the same product on the CPU.
    if neff.is_demo() {
        let x = Arc::clone(io.inputs.tensor("x")?).to_vec::<f32>()?;
        let w = io.inputs.tensor("w")?.to_vec::<f32>()?;
        let y = io.outputs.tensor("y")?.to_vec::<f32>()?;
        for (r, row) in y.chunks(4).enumerate() {
            for (c, &got) in row.iter().enumerate() {
                let want: f32 = (0..8).map(|k| x[r * 8 + k] * w[k * 4 + c]).sum();
                anyhow::ensure!(
                    (got - want).abs() < 1e-3,
                    "y[{r},{c}] = {got}, expected {want}"
                );
            }
        }
        println!("y = x . w matches the CPU");
    }

    // A missing input is a clear error, not a crash.
    let empty = neuron_rt::TensorSet::new(&rt)?;
    if let Err(e) = model.execute(&empty, &mut io.outputs) {
        println!("expected error: {e}");
    }
    Ok(())
}
