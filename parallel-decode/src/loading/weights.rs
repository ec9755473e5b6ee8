//! The weights of a Hugging Face model directory: one safetensors file or several shards with
//! an index, looked up by parameter name and read as `f32`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::LlamaConfig;
use super::dtype::{Dtype, decode_f32};
use super::safetensors::{SafetensorsFile, TensorInfo};
use crate::error::{Error, Result};

/// The single-file weights name.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of sharded weights.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// A tensor read as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape, outermost dimension first (Hugging Face order).
    pub shape: Vec<usize>,
    /// Elements in row-major order.
    pub data: Vec<f32>,
}

/// A tensor's location and raw bytes, before conversion.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    name: &'a str,
    file: &'a SafetensorsFile,
    info: &'a TensorInfo,
}

impl<'a> TensorView<'a> {
    /// The tensor's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The file holding it.
    pub fn path(&self) -> &'a Path {
        self.file.path()
    }

    /// Its element type as stored.
    pub fn dtype(&self) -> Dtype {
        self.info.dtype
    }

    /// Its shape, outermost dimension first.
    pub fn shape(&self) -> &'a [usize] {
        &self.info.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.info.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored little-endian bytes (no copy: they are memory-mapped).
    pub fn bytes(&self) -> &'a [u8] {
        self.file.data(self.info)
    }

    /// Converts the elements to `f32` into `out`, which must hold exactly [`Self::len`].
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedDtype`] for non-float tensors, [`Error::ShapeMismatch`] if `out`
    /// has the wrong length.
    pub fn read_f32_into(&self, out: &mut [f32]) -> Result<()> {
        if !self.info.dtype.is_float() {
            return Err(Error::UnsupportedDtype {
                path: self.path().to_path_buf(),
                tensor: self.name.to_string(),
                dtype: self.info.dtype.to_string(),
            });
        }
        if !decode_f32(self.info.dtype, self.bytes(), out) {
            return Err(Error::ShapeMismatch {
                path: self.path().to_path_buf(),
                tensor: self.name.to_string(),
                expected: vec![out.len()],
                actual: vec![self.len()],
            });
        }
        Ok(())
    }

    /// Converts the elements to a new `f32` [`Tensor`].
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedDtype`] for non-float tensors.
    pub fn to_f32(&self) -> Result<Tensor> {
        let mut data = vec![0f32; self.len()];
        self.read_f32_into(&mut data)?;
        Ok(Tensor {
            shape: self.info.shape.clone(),
            data,
        })
    }
}

/// All weight files of a model directory, indexed by tensor name.
#[derive(Debug)]
pub struct Weights {
    dir: PathBuf,
    files: Vec<SafetensorsFile>,
    by_name: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl Weights {
    /// Opens `dir/model.safetensors.index.json` and its shards if the index exists, else
    /// `dir/model.safetensors`. Every file is memory-mapped and its header validated.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if neither exists or a file cannot be mapped, [`Error::Json`] for a bad
    /// index, [`Error::Safetensors`] for a corrupt file, or a shard that does not hold the
    /// tensors the index says it holds, or a tensor present in two shards.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(WEIGHTS_INDEX_FILE);
        if index_path.is_file() {
            Self::open_sharded(dir, &index_path)
        } else {
            let path = dir.join(WEIGHTS_FILE);
            if !path.is_file() {
                return Err(Error::NotAModel {
                    path: dir.to_path_buf(),
                    message: format!("it has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}"),
                });
            }
            Self::from_files(dir, vec![SafetensorsFile::open(&path)?])
        }
    }

    fn open_sharded(dir: &Path, index_path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, "read", e))?;
        let index: ShardIndex = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: index_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut shard_names: Vec<&String> = index.weight_map.values().collect();
        shard_names.sort();
        shard_names.dedup();
        let mut files = Vec::with_capacity(shard_names.len());
        for shard in shard_names {
            // The index is input like any other: it must not point outside the directory.
            let plain = Path::new(shard)
                .file_name()
                .is_some_and(|f| f == shard.as_str());
            if !plain {
                return Err(Error::Json {
                    path: index_path.to_path_buf(),
                    message: format!(
                        "shard \"{shard}\" is not a plain file name in the model directory"
                    ),
                });
            }
            files.push(SafetensorsFile::open(&dir.join(shard))?);
        }
        let weights = Self::from_files(dir, files)?;
        for (tensor, shard) in &index.weight_map {
            let found = weights
                .by_name
                .get(tensor)
                .map(|&i| weights.files[i].path());
            if found.and_then(Path::file_name) != Some(std::ffi::OsStr::new(shard)) {
                return Err(Error::Safetensors {
                    path: dir.join(shard),
                    message: format!(
                        "{WEIGHTS_INDEX_FILE} places tensor `{tensor}` here, but the file does not hold it"
                    ),
                });
            }
        }
        Ok(weights)
    }

    fn from_files(dir: &Path, files: Vec<SafetensorsFile>) -> Result<Self> {
        let mut by_name = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for name in f.tensors().keys() {
                if let Some(other) = by_name.insert(name.clone(), i) {
                    return Err(Error::Safetensors {
                        path: f.path().to_path_buf(),
                        message: format!(
                            "tensor `{name}` is also in {}",
                            files[other].path().display()
                        ),
                    });
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            by_name,
        })
    }

    /// The directory the weights were opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Whether a tensor exists.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Total bytes of tensor data across all files.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|f| f.tensors().values())
            .map(|t| t.range.len() as u64)
            .sum()
    }

    /// The stored tensor `name`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTensor`] if no file holds it.
    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        let (key, &i) = self
            .by_name
            .get_key_value(name)
            .ok_or_else(|| Error::MissingTensor {
                path: self.dir.clone(),
                tensor: name.to_string(),
            })?;
        let file = &self.files[i];
        let info = &file.tensors()[key];
        Ok(TensorView {
            name: key,
            file,
            info,
        })
    }

    /// Reads tensor `name` as `f32`, checking that it has shape `expected`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTensor`], [`Error::ShapeMismatch`] or [`Error::UnsupportedDtype`].
    pub fn f32(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let view = self.get(name)?;
        check_shape(&view, expected)?;
        view.to_f32()
    }

    /// Checks that every tensor `config` implies is present with the right shape and a float
    /// element type, so that a model that opens can be loaded.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the tensor.
    pub fn check_against(&self, config: &LlamaConfig) -> Result<()> {
        for (name, shape) in config.expected_tensors() {
            let view = self.get(&name)?;
            check_shape(&view, &shape)?;
            if !view.dtype().is_float() {
                return Err(Error::UnsupportedDtype {
                    path: view.path().to_path_buf(),
                    tensor: name,
                    dtype: view.dtype().to_string(),
                });
            }
        }
        Ok(())
    }
}

fn check_shape(view: &TensorView<'_>, expected: &[usize]) -> Result<()> {
    if view.shape() != expected {
        return Err(Error::ShapeMismatch {
            path: view.path().to_path_buf(),
            tensor: view.name().to_string(),
            expected: expected.to_vec(),
            actual: view.shape().to_vec(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loading::safetensors::SafetensorsWriter;

    fn write(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)], dtype: Dtype) {
        let plan = tensors
            .iter()
            .map(|(n, s, _)| (n.to_string(), s.clone()))
            .collect();
        let mut w = SafetensorsWriter::create(path, dtype, plan, &BTreeMap::new()).unwrap();
        for (n, _, d) in tensors {
            w.write_next(n, d).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn reads_single_file_as_f32() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(WEIGHTS_FILE),
            &[("w", vec![2, 2], vec![1.0, 2.0, 3.0, 4.5])],
            Dtype::BF16,
        );
        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.names(), vec!["w"]);
        let t = w.f32("w", &[2, 2]).unwrap();
        assert_eq!(t.data, vec![1.0, 2.0, 3.0, 4.5]);
        let err = w.f32("w", &[4]).unwrap_err().to_string();
        assert!(
            err.ends_with("tensor `w` has shape [2, 2], expected [4]"),
            "{err}"
        );
        let err = w.get("nope").unwrap_err().to_string();
        assert!(err.ends_with("tensor `nope` is missing"), "{err}");
    }

    #[test]
    fn reads_sharded_weights_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("model-00001-of-00002.safetensors"),
            &[("a", vec![1], vec![1.0])],
            Dtype::F32,
        );
        write(
            &dir.path().join("model-00002-of-00002.safetensors"),
            &[("b", vec![2], vec![2.0, 3.0])],
            Dtype::F16,
        );
        let index = r#"{"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#;
        std::fs::write(dir.path().join(WEIGHTS_INDEX_FILE), index).unwrap();
        let w = Weights::open(dir.path()).unwrap();
        assert_eq!(w.names(), vec!["a", "b"]);
        assert_eq!(w.f32("b", &[2]).unwrap().data, vec![2.0, 3.0]);
        assert_eq!(w.total_bytes(), 4 + 4);
    }

    #[test]
    fn refuses_inconsistent_shards() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("s1.safetensors"),
            &[("a", vec![1], vec![1.0])],
            Dtype::F32,
        );
        write(
            &dir.path().join("s2.safetensors"),
            &[("a", vec![1], vec![1.0])],
            Dtype::F32,
        );
        let idx = dir.path().join(WEIGHTS_INDEX_FILE);
        std::fs::write(
            &idx,
            r#"{"weight_map":{"a":"s1.safetensors","x":"s2.safetensors"}}"#,
        )
        .unwrap();
        assert!(
            Weights::open(dir.path())
                .unwrap_err()
                .to_string()
                .contains("tensor `a` is also in")
        );
        std::fs::write(
            &idx,
            r#"{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors"}}"#,
        )
        .unwrap();
        let err = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("places tensor `b` here, but the file does not hold it"),
            "{err}"
        );
        std::fs::write(&idx, r#"{"weight_map":{"a":"../s1.safetensors"}}"#).unwrap();
        assert!(
            Weights::open(dir.path())
                .unwrap_err()
                .to_string()
                .contains("not a plain file name")
        );
        std::fs::write(&idx, r#"{"weight_map":{"a":"missing.safetensors"}}"#).unwrap();
        assert!(
            Weights::open(dir.path())
                .unwrap_err()
                .to_string()
                .contains("missing.safetensors: open failed")
        );
        std::fs::write(&idx, "[1").unwrap();
        assert!(
            Weights::open(dir.path())
                .unwrap_err()
                .to_string()
                .contains("is not valid")
        );
    }

    #[test]
    fn empty_directory_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let err = Weights::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("has neither model.safetensors nor model.safetensors.index.json"),
            "{err}"
        );
    }
}
