//! Helpers shared by the numbered walkthroughs: picking the NEFF (a path from the command
//! line, or a small demo NEFF for the mock device), filling inputs, and previewing tensors.
#![allow(dead_code)] // each walkthrough uses some of these

use std::path::{Path, PathBuf};

use anyhow::Context;
use neuron_mock::neff::MockNeff;
use neuron_rt::{DType, Tensor, TensorInfo};

/// The NEFF to run: the path named on the command line, or a demo NEFF written to a
/// temporary directory that is removed on drop.
pub struct NeffFile {
    path: PathBuf,
    demo_dir: Option<PathBuf>,
}

impl NeffFile {
    /// The NEFF named on the command line, or `demo` written to a temporary file. A demo NEFF
    /// is a mock NEFF: it runs on the mock device only (the default in CI); on a Neuron
    /// instance, pass a NEFF compiled by the Neuron compiler instead.
    pub fn from_args_or(demo: impl FnOnce() -> MockNeff) -> anyhow::Result<NeffFile> {
        if let Some(path) = std::env::args_os().nth(1) {
            return Ok(NeffFile {
                path: PathBuf::from(path),
                demo_dir: None,
            });
        }
        let neff = demo();
        let dir = std::env::temp_dir().join(format!("neuron-walkthrough-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{}.neff", neff.program().kernel));
        neff.write(&path)
            .with_context(|| format!("writing the demo NEFF {}", path.display()))?;
        eprintln!("no NEFF given: using a demo mock NEFF, which runs on the mock device");
        Ok(NeffFile {
            path,
            demo_dir: Some(dir),
        })
    }

    /// Where the NEFF is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is the demo NEFF (so its results can be checked).
    pub fn is_demo(&self) -> bool {
        self.demo_dir.is_some()
    }
}

impl Drop for NeffFile {
    fn drop(&mut self) {
        if let Some(dir) = &self.demo_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The demo NEFF of walkthroughs 1 and 3: `y[2, 4] = x[2, 8] . w[8, 4]`, f32.
pub fn demo_matmul() -> MockNeff {
    MockNeff::new("matmul")
        .name("projection")
        .input("x", DType::F32, &[2, 8])
        .input("w", DType::F32, &[8, 4])
        .output("y", DType::F32, &[2, 4])
}

/// Fills an input tensor with small deterministic values of its element type: `seed + i`
/// (modulo 100) for numbers; zeros for element types without a Rust type here.
pub fn fill(tensor: &Tensor, info: &TensorInfo, seed: usize) -> anyhow::Result<()> {
    let n = info.shape.iter().product::<usize>();
    let value = |i: usize| ((seed + i) % 100) as f32;
    match info.dtype {
        Some(DType::F32) => tensor.write_from(0, &(0..n).map(value).collect::<Vec<f32>>())?,
        Some(DType::BF16) => tensor.write_from(
            0,
            &(0..n)
                .map(|i| half::bf16::from_f32(value(i)))
                .collect::<Vec<_>>(),
        )?,
        Some(DType::F16) => tensor.write_from(
            0,
            &(0..n)
                .map(|i| half::f16::from_f32(value(i)))
                .collect::<Vec<_>>(),
        )?,
        Some(DType::I32) => {
            tensor.write_from(0, &(0..n).map(|i| value(i) as i32).collect::<Vec<_>>())?
        }
        Some(DType::I64) => {
            tensor.write_from(0, &(0..n).map(|i| value(i) as i64).collect::<Vec<_>>())?
        }
        Some(DType::U8) => {
            tensor.write_from(0, &(0..n).map(|i| value(i) as u8).collect::<Vec<_>>())?
        }
        _ => tensor.fill_bytes(0)?,
    }
    Ok(())
}

/// The first few values of a tensor, as text.
pub fn preview(tensor: &Tensor, info: &TensorInfo) -> anyhow::Result<String> {
    const SHOWN: usize = 6;
    fn first<T: neuron_rt::NeuronRepr + std::fmt::Debug>(
        t: &Tensor,
        n: usize,
    ) -> anyhow::Result<String> {
        let values = t.to_vec::<T>()?;
        let more = if values.len() > n { ", ..." } else { "" };
        Ok(format!("{:?}{more}", &values[..values.len().min(n)]))
    }
    Ok(match info.dtype {
        Some(DType::F32) => first::<f32>(tensor, SHOWN)?,
        Some(DType::BF16) => first::<half::bf16>(tensor, SHOWN)?,
        Some(DType::F16) => first::<half::f16>(tensor, SHOWN)?,
        Some(DType::I32) => first::<i32>(tensor, SHOWN)?,
        Some(DType::I64) => first::<i64>(tensor, SHOWN)?,
        Some(DType::U8) => first::<u8>(tensor, SHOWN)?,
        _ => {
            let mut bytes = vec![0u8; tensor.size().min(SHOWN)];
            tensor.read_bytes(0, &mut bytes)?;
            format!("bytes {bytes:02x?}")
        }
    })
}
