//! Walkthrough 1: start the runtime, load a NEFF, list its inputs and outputs.
//!
//! ```sh
//! eval "$(scripts/build-mock.sh)"      # on a machine without a Neuron device
//! cargo run -p neuron-examples --example 01-load-neff [-- model.neff]
//! ```
#![forbid(unsafe_code)]

mod walkthrough;

use neuron_rt::{Model, Runtime};

fn main() -> anyhow::Result<()> {
    // One runtime per process. libnrt is found through NEURON_SYS_LIB, the system library
    // path, or the SDK's install location, in that order.
    let rt = Runtime::init()?;
    println!(
        "libnrt {} from {} ({})",
        rt.version()
            .map_or("(unknown version)".into(), |v| v.to_string()),
        rt.library_path().display(),
        rt.library_source()
    );
    println!(
        "instance {}: {} NeuronCores, {} visible to this process",
        rt.instance_info()?,
        rt.total_cores()?,
        rt.visible_cores()?
    );

    // Load a NEFF onto NeuronCore 0 (numbered among the visible cores).
    let neff = walkthrough::NeffFile::from_args_or(walkthrough::demo_matmul)?;
    let model = Model::load_file(&rt, neff.path(), 0)?;
    println!(
        "loaded {} on core {:?}",
        neff.path().display(),
        model.core().unwrap_or(0)
    );

    // The runtime describes every input and output; these names are the keys of the
    // tensor sets an execution takes (walkthrough 3).
    for info in model.inputs() {
        println!("  input  {info}");
    }
    for info in model.outputs() {
        println!("  output {info}");
    }

    // The model uses device memory until it is unloaded (dropping it does the same).
    println!("core 0 memory in use: {} bytes", rt.memory_stats(0)?.used);
    model.unload()?;
    Ok(())
}
