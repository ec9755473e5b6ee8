//! What the files of trained extras (Medusa heads, feature drafts) check and read alike: the
//! format's name and a vocabulary of token ids in their `__metadata__`, float tensors of
//! given shapes.

use std::collections::BTreeMap;

use super::dtype::decode_f32;
use super::safetensors::SafetensorsFile;
use crate::error::{Error, Result};

/// Checks that `meta` names format `expected`; the error says what it names instead (`what`
/// is the kind of file, for the message: "a Medusa heads file").
pub(crate) fn check_format(
    meta: &BTreeMap<String, String>,
    expected: &str,
    what: &str,
) -> std::result::Result<(), String> {
    match meta.get("format").map(String::as_str) {
        Some(format) if format == expected => Ok(()),
        other => Err(format!(
            "is not {what} (metadata format is {other:?}, expected {expected:?})"
        )),
    }
}

/// Parses a `vocab` metadata value: a JSON list of token ids, not empty, strictly
/// increasing.
pub(crate) fn parse_vocab(text: &str) -> std::result::Result<Vec<u32>, String> {
    let ids: Vec<u32> = serde_json::from_str(text)
        .map_err(|e| format!("metadata `vocab` is not a list of token ids: {e}"))?;
    if ids.is_empty() {
        return Err("metadata `vocab` is empty".into());
    }
    if let Some(w) = ids.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "metadata `vocab` is not strictly increasing ({} then {})",
            w[0], w[1]
        ));
    }
    Ok(ids)
}

/// Checks that `file` has tensor `name` of shape `shape` and a float element type.
pub(crate) fn check_float_tensor(
    file: &SafetensorsFile,
    name: &str,
    shape: &[usize],
) -> std::result::Result<(), String> {
    let info = file
        .tensors()
        .get(name)
        .ok_or_else(|| format!("has no tensor `{name}`"))?;
    if info.shape != shape {
        return Err(format!(
            "tensor `{name}` has shape {:?}, expected {shape:?}",
            info.shape
        ));
    }
    if !info.dtype.is_float() {
        return Err(format!(
            "tensor `{name}` has element type {}, not a float type",
            info.dtype
        ));
    }
    Ok(())
}

/// Tensor `name` of `file` as f32, row-major.
///
/// # Errors
/// [`Error::MissingTensor`] when there is none; [`Error::UnsupportedDtype`] when it is not
/// a float type.
pub(crate) fn read_f32(file: &SafetensorsFile, name: &str) -> Result<Vec<f32>> {
    let info = file
        .tensors()
        .get(name)
        .ok_or_else(|| Error::MissingTensor {
            path: file.path().to_path_buf(),
            tensor: name.to_string(),
        })?;
    let mut out = vec![0.0; info.shape.iter().product()];
    if !decode_f32(info.dtype, file.data(info), &mut out) {
        return Err(Error::UnsupportedDtype {
            path: file.path().to_path_buf(),
            tensor: name.to_string(),
            dtype: info.dtype.to_string(),
        });
    }
    Ok(out)
}
