//! Gives the cdylib the real runtime's soname and stamps the crate with a build id.
//!
//! The build id is a hash of the crate's sources. The cdylib exports it and the rlib knows it,
//! so `neuron_mock::testing::library_path()` can tell a stale `libneuron_mock.so` (built from
//! older sources than the test that wants it) from a current one and say how to rebuild.

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    // Only the cdylib gets the soname; the rlib and the probe binary are unaffected.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnrt.so.1");

    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = Vec::new();
    collect(&manifest.join("src"), &mut files);
    files.push(manifest.join("Cargo.toml"));
    files.push(manifest.join("build.rs"));
    files.sort();
    let mut hash = Fnv64::new();
    for file in &files {
        if let Ok(rel) = file.strip_prefix(&manifest) {
            hash.write(rel.to_string_lossy().as_bytes());
        }
        if let Ok(bytes) = fs::read(file) {
            hash.write(&bytes);
        }
    }
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=build.rs");
    println!(
        "cargo:rustc-env=NEURON_MOCK_BUILD_ID={}-{:016x}",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        hash.finish()
    );
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// FNV-1a: small, dependency-free, and plenty to tell two source trees apart.
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
