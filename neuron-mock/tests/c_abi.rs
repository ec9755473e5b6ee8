//! A C program, compiled here with the system C compiler against neuron-sys's clean-room
//! header and linked with `-lnrt` against the mock installed by `scripts/install-mock.sh`,
//! runs the documented flow and checks the numbers: the ABI works for non-Rust clients.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use neuron_mock::neff::MockNeff;
use neuron_sys::DType;

fn run(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn c_program_runs_the_documented_flow() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = dir.path().join("lib");

    let installed = run(Command::new(root.join("scripts/install-mock.sh"))
        .arg(&lib_dir)
        .arg("--lib")
        .arg(neuron_mock::testing::library_path()));
    assert!(installed.trim().ends_with("libnrt.so.1"), "{installed}");
    assert!(lib_dir.join("libnrt.so").is_symlink());

    let program = dir.path().join("run_neff");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(root.join("neuron-sys/include"))
        .arg(manifest.join("tests/c/run_neff.c"))
        .arg("-L")
        .arg(&lib_dir)
        .args(["-lnrt", "-o"])
        .arg(&program));

    // The program must find the library by its soname, through the loader's search path.
    let needed = run(Command::new("readelf").arg("-d").arg(&program));
    assert!(needed.contains("[libnrt.so.1]"), "{needed}");

    let neff = dir.path().join("add.neff");
    MockNeff::new("add")
        .input("a", DType::F32, &[1000])
        .input("b", DType::F32, &[1000])
        .output("c", DType::F32, &[1000])
        .write(&neff)
        .unwrap();
    let mut cmd = Command::new(&program);
    cmd.arg(&neff).env("LD_LIBRARY_PATH", &lib_dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("NEURON_") {
            cmd.env_remove(key);
        }
    }
    let stdout = run(&mut cmd);
    assert_eq!(stdout.trim(), "OK");
}
