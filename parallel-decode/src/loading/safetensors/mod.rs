//! The safetensors format: reading (memory-mapped) and writing.
//!
//! A file is an 8-byte little-endian header length `n`, `n` bytes of JSON mapping each tensor
//! name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the end of the
//! header), an optional `__metadata__` string map, then the tensor data. Every field is checked
//! against the file size before use: a corrupt header is an error naming the file and tensor,
//! never an out-of-bounds read.

mod write;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

pub use write::SafetensorsWriter;

use super::dtype::Dtype;
use super::mapped::FileBytes;
use crate::error::{Error, Result};

/// Largest header accepted (the reference implementation's limit), so that a corrupt length
/// cannot make us parse or allocate gigabytes of "JSON".
const MAX_HEADER_LEN: u64 = 100_000_000;

/// Where one tensor lives in a safetensors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: Dtype,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Byte range of the data within the file (absolute, header included).
    pub range: std::ops::Range<usize>,
}

/// An opened, validated safetensors file.
#[derive(Debug)]
pub struct SafetensorsFile {
    bytes: FileBytes,
    tensors: BTreeMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// Memory-maps and validates `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if it cannot be opened, [`Error::Safetensors`] if the header is corrupt
    /// or a tensor's byte range does not fit its shape or the file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::parse(FileBytes::map(path)?)
    }

    /// Validates bytes already in memory (the path in `bytes` is used for messages).
    ///
    /// # Errors
    ///
    /// As [`SafetensorsFile::open`].
    pub fn parse(bytes: FileBytes) -> Result<Self> {
        let (tensors, metadata) = parse_header(&bytes).map_err(|message| Error::Safetensors {
            path: bytes.path().to_path_buf(),
            message,
        })?;
        Ok(Self {
            bytes,
            tensors,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.bytes.path()
    }

    /// Tensors by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorInfo> {
        &self.tensors
    }

    /// The `__metadata__` map (empty if absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The raw little-endian bytes of a tensor described by `info` (from [`Self::tensors`]).
    pub(crate) fn data(&self, info: &TensorInfo) -> &[u8] {
        // Ranges were checked against the file length in `parse_header`.
        self.bytes.get(info.range.clone()).unwrap_or(&[])
    }
}

type Header = (BTreeMap<String, TensorInfo>, BTreeMap<String, String>);

fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format!(
                "file is {} bytes, too short for the 8-byte header length",
                bytes.len()
            )
        })?;
    let header_len = u64::from_le_bytes(len_bytes);
    let available = bytes.len() as u64 - 8;
    if header_len > MAX_HEADER_LEN || header_len > available {
        return Err(format!(
            "header length {header_len} exceeds the {available} bytes after it (the file is truncated or not safetensors)"
        ));
    }
    let data_start = 8 + header_len as usize;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| format!("header is not a JSON object: {e}"))?;
    let data_len = bytes.len() - data_start;
    let mut tensors = BTreeMap::new();
    let mut metadata = BTreeMap::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            let map = entry
                .as_object()
                .ok_or_else(|| "`__metadata__` is not an object".to_string())?;
            for (k, v) in map {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("`__metadata__.{k}` is not a string"))?;
                metadata.insert(k.clone(), v.to_string());
            }
            continue;
        }
        let info = parse_entry(&entry, data_len).map_err(|m| format!("tensor `{name}`: {m}"))?;
        tensors.insert(
            name,
            TensorInfo {
                range: info.range.start + data_start..info.range.end + data_start,
                ..info
            },
        );
    }
    // Tensors must not share bytes: a file that aliases them is corrupt (and writing one would
    // silently change another).
    let mut ranges: Vec<(&String, &TensorInfo)> = tensors.iter().collect();
    ranges.sort_by_key(|(_, t)| (t.range.start, t.range.end));
    for pair in ranges.windows(2) {
        let ((a, ta), (b, tb)) = (pair[0], pair[1]);
        if ta.range.end > tb.range.start && !ta.range.is_empty() && !tb.range.is_empty() {
            return Err(format!("tensors `{a}` and `{b}` overlap"));
        }
    }
    Ok((tensors, metadata))
}

fn parse_entry(entry: &Value, data_len: usize) -> std::result::Result<TensorInfo, String> {
    let dtype_name = entry
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or("has no `dtype` string")?;
    let dtype = Dtype::from_safetensors_name(dtype_name)
        .ok_or_else(|| format!("has unknown dtype \"{dtype_name}\""))?;
    let shape = entry
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("has no `shape` array")?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or("has a `shape` that is not a list of sizes")?;
    let offsets = entry
        .get("data_offsets")
        .and_then(Value::as_array)
        .filter(|o| o.len() == 2)
        .ok_or("has no `data_offsets` pair")?;
    let offset = |i: usize| {
        offsets[i]
            .as_u64()
            .and_then(|o| usize::try_from(o).ok())
            .ok_or("has a `data_offsets` entry that is not a byte offset")
    };
    let (begin, end) = (offset(0)?, offset(1)?);
    let bytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or("has a shape whose size overflows")?;
    if begin > end || end > data_len {
        return Err(format!(
            "data_offsets [{begin}, {end}] do not fit in the {data_len} data bytes (the file is truncated or corrupt)"
        ));
    }
    if end - begin != bytes {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {bytes} bytes but data_offsets [{begin}, {end}] hold {}",
            end - begin
        ));
    }
    Ok(TensorInfo {
        dtype,
        shape,
        range: begin..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn parse(bytes: Vec<u8>) -> Result<SafetensorsFile> {
        SafetensorsFile::parse(FileBytes::owned("w.safetensors", bytes))
    }

    #[test]
    fn reads_tensors_and_metadata() {
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,1],"data_offsets":[8,10]}}"#;
        let data = [0, 0, 128, 63, 0, 0, 0, 64, 0xC0, 0x3F];
        let f = parse(file(h, &data)).unwrap();
        assert_eq!(f.metadata()["format"], "pt");
        let a = &f.tensors()["a"];
        assert_eq!((a.dtype, a.shape.clone()), (Dtype::F32, vec![2]));
        assert_eq!(f.data(a), &data[..8]);
        assert_eq!(f.data(&f.tensors()["b"]), &[0xC0, 0x3F]);
    }

    #[test]
    fn corrupt_headers_are_named_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "too short"),
            (u64::MAX.to_le_bytes().to_vec(), "header length"),
            (file("{not json", &[]), "not a JSON object"),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                    &[0; 4],
                ),
                "tensor `a`: data_offsets [0, 8] do not fit in the 4 data bytes",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "needs 12 bytes",
            ),
            (
                file(
                    r#"{"a":{"dtype":"Q4","shape":[3],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "unknown dtype \"Q4\"",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "not a list of sizes",
            ),
            (
                file(r#"{"a":{"dtype":"F32","shape":[1]}}"#, &[0; 8]),
                "no `data_offsets`",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
                    &[0; 8],
                ),
                "overflows",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    &[0; 8],
                ),
                "overlap",
            ),
            (
                file(r#"{"__metadata__":{"x":1}}"#, &[]),
                "`__metadata__.x` is not a string",
            ),
        ];
        for (bytes, expected) in cases {
            let err = parse(bytes).unwrap_err().to_string();
            assert!(
                err.starts_with("w.safetensors is not a valid safetensors file: "),
                "{err}"
            );
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }
}
