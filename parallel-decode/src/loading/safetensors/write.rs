//! Writing safetensors files one tensor at a time.
//!
//! The header (names, shapes, offsets) must come first, so the writer is created with the list
//! of tensors and then given their data in that order. Only one tensor's data is ever held in
//! memory, which keeps importing a multi-gigabyte model within a small memory budget.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::loading::dtype::{Dtype, encode_f32};

/// Writes a safetensors file from `f32` data, stored as `F32`, `F16` or `BF16`.
#[derive(Debug)]
pub struct SafetensorsWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Each tensor's name, shape and stored dtype, in writing order.
    plan: Vec<(String, Vec<usize>, Dtype)>,
    next: usize,
    buf: Vec<u8>,
}

impl SafetensorsWriter {
    /// Creates `path` and writes the header for `tensors` (name and shape, in the order their
    /// data will be given), stored as `dtype`, with `metadata` as `__metadata__`.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedDtype`] if `dtype` is not `F32`, `F16` or `BF16`; [`Error::Io`] if
    /// the file cannot be created or written.
    pub fn create(
        path: &Path,
        dtype: Dtype,
        tensors: Vec<(String, Vec<usize>)>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(Error::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: "(all tensors)".into(),
                dtype: dtype.to_string(),
            });
        }
        let tensors = tensors
            .into_iter()
            .map(|(name, shape)| (name, shape, dtype))
            .collect();
        Self::create_mixed(path, tensors, metadata)
    }

    /// As [`SafetensorsWriter::create`], each tensor with its own stored dtype.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedDtype`] naming the first tensor whose dtype is not `F32`, `F16`,
    /// `BF16` or `I32` (written with [`SafetensorsWriter::write_next_i32`]); [`Error::Io`] if
    /// the file cannot be created or written.
    pub fn create_mixed(
        path: &Path,
        tensors: Vec<(String, Vec<usize>, Dtype)>,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        if let Some((name, _, dtype)) = tensors
            .iter()
            .find(|(_, _, d)| !matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::I32))
        {
            return Err(Error::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name.clone(),
                dtype: dtype.to_string(),
            });
        }
        let mut header = Map::new();
        if !metadata.is_empty() {
            header.insert("__metadata__".into(), json!(metadata));
        }
        let mut offset = 0usize;
        for (name, shape, dtype) in &tensors {
            let len = shape.iter().product::<usize>() * dtype.size();
            header.insert(
                name.clone(),
                json!({"dtype": dtype.safetensors_name(), "shape": shape, "data_offsets": [offset, offset + len]}),
            );
            offset += len;
        }
        let mut header = Value::Object(header).to_string().into_bytes();
        // Pad with spaces so the data starts 8-byte aligned, as the reference writer does;
        // readers can then view f32/f64 data in place.
        header.resize(header.len().next_multiple_of(8), b' ');
        let file = File::create(path).map_err(|e| Error::io(path, "create", e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let io = |e| Error::io(path, "write", e);
        out.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        out.write_all(&header).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            plan: tensors,
            next: 0,
            buf: Vec::new(),
        })
    }

    /// Writes the data of the next tensor in the plan.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] if `name` is not the next tensor or `data` has the wrong
    /// length; [`Error::Io`] if writing fails.
    pub fn write_next(&mut self, name: &str, data: &[f32]) -> Result<()> {
        let dtype = self.check_next(name, data.len(), false)?;
        self.buf.clear();
        encode_f32(dtype, data, &mut self.buf);
        self.write_buf()
    }

    /// Writes the data of the next tensor in the plan, which is stored as `I32`.
    ///
    /// # Errors
    ///
    /// As [`SafetensorsWriter::write_next`], and [`Error::ShapeMismatch`] if the tensor is not
    /// an `I32` one.
    pub fn write_next_i32(&mut self, name: &str, data: &[i32]) -> Result<()> {
        self.check_next(name, data.len(), true)?;
        self.buf.clear();
        self.buf.extend(data.iter().flat_map(|v| v.to_le_bytes()));
        self.write_buf()
    }

    /// The stored dtype of the next tensor, after checking that it is `name`, has `len`
    /// elements and is (or, for float data, is not) an `I32` tensor.
    fn check_next(&self, name: &str, len: usize, integers: bool) -> Result<Dtype> {
        let Some((expected_name, shape, dtype)) = self.plan.get(self.next) else {
            return Err(self.mismatch(name, Vec::new(), vec![len]));
        };
        let elements: usize = shape.iter().product();
        if expected_name != name || elements != len || (*dtype == Dtype::I32) != integers {
            let what = if integers { "i32 data" } else { "f32 data" };
            return Err(self.mismatch(&format!("{name} ({what})"), shape.clone(), vec![len]));
        }
        Ok(*dtype)
    }

    fn write_buf(&mut self) -> Result<()> {
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, "write", e))?;
        self.next += 1;
        Ok(())
    }

    /// Checks that every tensor was written and flushes the file to disk.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTensor`] naming the first tensor never written; [`Error::Io`] if
    /// flushing fails.
    pub fn finish(self) -> Result<()> {
        if let Some((name, _, _)) = self.plan.get(self.next) {
            return Err(Error::MissingTensor {
                path: self.path,
                tensor: name.clone(),
            });
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&self.path, "write", e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(&self.path, "sync", e))
    }

    fn mismatch(&self, name: &str, expected: Vec<usize>, actual: Vec<usize>) -> Error {
        let expected_name = self
            .plan
            .get(self.next)
            .map_or("(none left)", |(n, _, _)| n.as_str());
        Error::ShapeMismatch {
            path: self.path.clone(),
            tensor: format!("{name} (writer expected `{expected_name}` next)"),
            expected,
            actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::safetensors::SafetensorsFile;

    #[test]
    fn writes_what_the_reader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let plan = vec![("b".to_string(), vec![2, 3]), ("a".to_string(), vec![1])];
        let mut w = SafetensorsWriter::create(&p, Dtype::BF16, plan, &meta).unwrap();
        w.write_next("b", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        w.write_next("a", &[-1.0]).unwrap();
        w.finish().unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        assert_eq!(f.metadata(), &meta);
        let b = &f.tensors()["b"];
        assert_eq!((b.dtype, b.shape.clone()), (Dtype::BF16, vec![2, 3]));
        // Data is 8-byte aligned after the padded header.
        assert_eq!(b.range.start % 8, 0);
        assert_eq!(
            f.data(&f.tensors()["a"]),
            &half::bf16::from_f32(-1.0).to_le_bytes()
        );
    }

    #[test]
    fn refuses_out_of_order_short_and_unfinished_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let plan = vec![("a".to_string(), vec![2]), ("b".to_string(), vec![1])];
        let mut w = SafetensorsWriter::create(&p, Dtype::F32, plan, &BTreeMap::new()).unwrap();
        assert!(
            w.write_next("b", &[1.0])
                .unwrap_err()
                .to_string()
                .contains("expected `a` next")
        );
        assert!(w.write_next("a", &[1.0]).is_err());
        w.write_next("a", &[1.0, 2.0]).unwrap();
        let err = w.finish().unwrap_err().to_string();
        assert!(err.ends_with("tensor `b` is missing"), "{err}");
        assert!(SafetensorsWriter::create(&p, Dtype::I8, vec![], &BTreeMap::new()).is_err());
    }

    #[test]
    fn tensors_may_each_have_their_own_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let plan = vec![
            ("a".to_string(), vec![3], Dtype::F32),
            ("b".to_string(), vec![2], Dtype::F16),
            ("ids".to_string(), vec![2], Dtype::I32),
        ];
        let mut w = SafetensorsWriter::create_mixed(&p, plan, &BTreeMap::new()).unwrap();
        w.write_next("a", &[1.0, 2.0, 3.0]).unwrap();
        w.write_next("b", &[0.5, -2.0]).unwrap();
        // Integers go through their own call, and floats cannot land in an integer tensor.
        assert!(w.write_next("ids", &[1.0, 2.0]).is_err());
        w.write_next_i32("ids", &[70_000, -1]).unwrap();
        w.finish().unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        let ids = &f.tensors()["ids"];
        assert_eq!(ids.dtype, Dtype::I32);
        let bytes = [70_000i32.to_le_bytes(), (-1i32).to_le_bytes()].concat();
        assert_eq!(f.data(ids), bytes.as_slice());
        assert_eq!(f.tensors()["a"].dtype, Dtype::F32);
        let b = &f.tensors()["b"];
        assert_eq!(b.dtype, Dtype::F16);
        let halves: Vec<u8> = [0.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        assert_eq!(f.data(b), halves.as_slice());
        let bad = vec![("c".to_string(), vec![1], Dtype::I8)];
        let err = SafetensorsWriter::create_mixed(&p, bad, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains('c'), "{err}");
    }
}
