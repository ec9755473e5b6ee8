//! Parsing the GGUF container: header, typed metadata, tensor infos and the aligned data area.
//!
//! Layout (all little-endian): magic `GGUF`, version (2 or 3), tensor count and metadata count
//! (`u64`), the metadata entries (key string, value type, value), the tensor infos (name,
//! number of dimensions, dimensions fastest-varying first, GGML type, offset into the data
//! area), padding to `general.alignment` (32 by default), then the tensor data. Strings are a
//! `u64` length and UTF-8 bytes.
//!
//! The file is untrusted input: every length and count is checked against the bytes left
//! before anything is allocated, arrays nest at most [`MAX_NESTING`] deep, and tensor byte
//! ranges are checked against the file, so a corrupt file is an error naming the byte offset,
//! never a panic or a huge allocation.

use std::collections::HashMap;
use std::path::Path;

use super::ggml_type::GgmlType;
use super::quant::{self, DequantError};
use super::value::{Array, Value, ValueType};
use crate::error::{Error, Result};
use crate::loading::mapped::FileBytes;

/// The magic number: the bytes `GGUF`.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Default alignment of the data area and of every tensor's offset.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array nesting accepted (real files use 1; the limit keeps hostile files from
/// exhausting the stack).
pub const MAX_NESTING: usize = 8;
/// Most dimensions a GGML tensor has.
pub const MAX_DIMS: usize = 4;

/// One tensor's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, fastest-varying first (GGML order: the reverse of the row-major shape).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data area.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The row-major shape, outermost first (as Hugging Face and safetensors write it).
    pub fn shape(&self) -> Vec<usize> {
        // Dimensions were checked to fit in usize when parsed.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file. Tensor data stays in the (memory-mapped) file until asked for.
#[derive(Debug)]
pub struct GgufFile {
    bytes: FileBytes,
    version: u32,
    metadata: Vec<(String, Value)>,
    by_key: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
}

impl GgufFile {
    /// Memory-maps and parses `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be opened, [`Error::Gguf`] (with the byte offset) if it
    /// is truncated or corrupt.
    pub fn open(path: &Path) -> Result<Self> {
        Self::parse(FileBytes::map(path)?)
    }

    /// Parses bytes already in memory (the path in `bytes` is used in messages).
    ///
    /// # Errors
    ///
    /// As [`GgufFile::open`].
    pub fn parse(bytes: FileBytes) -> Result<Self> {
        match parse(&bytes) {
            Ok(p) => Ok(Self {
                by_key: p
                    .metadata
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect(),
                bytes,
                version: p.version,
                metadata: p.metadata,
                tensors: p.tensors,
                alignment: p.alignment,
                data_start: p.data_start,
            }),
            Err((offset, message)) => Err(Error::Gguf {
                path: bytes.path().to_path_buf(),
                offset,
                message,
            }),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.bytes.path()
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The metadata value for `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.by_key.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Tensor descriptions in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The stored bytes of a tensor.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        // Ranges were checked against the file length when parsing.
        let start = (self.data_start + info.offset) as usize;
        self.bytes
            .get(start..start + info.n_bytes as usize)
            .unwrap_or(&[])
    }

    /// Dequantizes a tensor to `f32` (in GGML element order, which is the row-major order of
    /// [`TensorInfo::shape`]).
    ///
    /// # Errors
    ///
    /// [`Error::GgufUnsupported`] if its type has no dequantizer.
    pub fn tensor_f32(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let mut out = vec![0f32; info.elements() as usize];
        quant::dequantize(info.ggml_type, self.tensor_bytes(info), &mut out).map_err(
            |e| match e {
                DequantError::Unsupported(t) => Error::GgufUnsupported {
                    path: self.path().to_path_buf(),
                    feature: format!(
                        "tensor `{}` of type {t} (dequantization of this type)",
                        info.name
                    ),
                },
                DequantError::Length { bytes, elements } => Error::Gguf {
                    path: self.path().to_path_buf(),
                    offset: self.data_start + info.offset,
                    message: format!(
                        "tensor `{}` has {bytes} bytes for {elements} elements",
                        info.name
                    ),
                },
            },
        )?;
        Ok(out)
    }
}

struct Parsed {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
}

type ParseResult<T> = std::result::Result<T, (u64, String)>;

/// A bounds-checked little-endian reader that knows its position for error messages.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn fail<T>(&self, message: impl Into<String>) -> ParseResult<T> {
        Err((self.pos as u64, message.into()))
    }

    fn take(&mut self, n: usize, what: &str) -> ParseResult<&'a [u8]> {
        if n > self.remaining() {
            return self.fail(format!(
                "{what} needs {n} bytes but only {} remain (the file is truncated)",
                self.remaining()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> ParseResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> ParseResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> ParseResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items each at least `min_item_bytes` long: refused if the rest of the file
    /// could not hold that many, so no loop or allocation is driven by a corrupt count.
    fn count(&mut self, what: &str, min_item_bytes: usize) -> ParseResult<usize> {
        let start = self.pos;
        let n = self.u64(what)?;
        let max = (self.remaining() / min_item_bytes.max(1)) as u64;
        if n > max {
            return Err((
                start as u64,
                format!(
                    "{what} is {n}, more than the {} bytes left could hold (the file is truncated or corrupt)",
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> ParseResult<String> {
        let len = self.count(what, 1)?;
        let start = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|e| (start as u64, format!("{what} is not valid UTF-8 ({e})")))
    }
}

fn parse(bytes: &[u8]) -> ParseResult<Parsed> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic: [u8; 4] = c.array("the magic number")?;
    if magic != MAGIC {
        return Err((
            0,
            format!("it starts with {magic:02x?}, not the GGUF magic \"GGUF\""),
        ));
    }
    let version = c.u32("the version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err((
                4,
                "version 1 (32-bit counts) is obsolete and not supported; re-convert the model"
                    .into(),
            ));
        }
        v if v.swap_bytes() <= 3 => {
            return Err((4, "the file is big-endian, which is not supported".into()));
        }
        v => return Err((4, format!("unknown version {v} (supported: 2, 3)"))),
    }
    // A tensor info takes at least 8 (name) + 4 (dims) + 8 (one dim) + 4 + 8 bytes, a
    // metadata entry at least 8 (key) + 4 (type) + 1 byte.
    let tensor_count = c.count("the tensor count", 32)?;
    let kv_count = c.count("the metadata count", 13)?;
    let mut metadata = Vec::new();
    let mut keys = HashMap::new();
    for _ in 0..kv_count {
        let at = c.pos as u64;
        let key = c.string("a metadata key")?;
        let ty = ValueType(c.u32("a metadata value type")?);
        let value = read_value(&mut c, ty, &key, 0)?;
        if keys.insert(key.clone(), ()).is_some() {
            return Err((at, format!("metadata key `{key}` appears twice")));
        }
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
        Some((_, v)) => {
            return Err((
                0,
                format!("`general.alignment` is {v}; it must be a power of two stored as uint32"),
            ));
        }
    };
    let mut tensors = Vec::new();
    let mut names = HashMap::new();
    for _ in 0..tensor_count {
        let at = c.pos as u64;
        let info = read_tensor_info(&mut c)?;
        if names.insert(info.name.clone(), ()).is_some() {
            return Err((at, format!("tensor `{}` appears twice", info.name)));
        }
        if info.offset % alignment != 0 {
            return Err((
                at,
                format!(
                    "tensor `{}` offset {} is not a multiple of the alignment {alignment}",
                    info.name, info.offset
                ),
            ));
        }
        tensors.push(info);
    }
    let data_start = (c.pos as u64).next_multiple_of(alignment);
    let data_len = (bytes.len() as u64).saturating_sub(data_start);
    for t in &tensors {
        let end = t.offset.checked_add(t.n_bytes);
        if end.is_none_or(|end| end > data_len) {
            return Err((
                data_start.saturating_add(t.offset),
                format!(
                    "tensor `{}` ({} bytes at data offset {}) runs past the end of the file (the file is truncated)",
                    t.name, t.n_bytes, t.offset
                ),
            ));
        }
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
    })
}

fn read_tensor_info(c: &mut Cursor<'_>) -> ParseResult<TensorInfo> {
    let name = c.string("a tensor name")?;
    let at = c.pos as u64;
    let n_dims = c.u32("a tensor's dimension count")? as usize;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err((
            at,
            format!("tensor `{name}` has {n_dims} dimensions (GGML allows 1 to {MAX_DIMS})"),
        ));
    }
    let mut dims = Vec::with_capacity(n_dims);
    for _ in 0..n_dims {
        let d = c.u64("a tensor dimension")?;
        if d == 0 || usize::try_from(d).is_err() {
            return Err((at, format!("tensor `{name}` has dimension {d}")));
        }
        dims.push(d);
    }
    let at_type = c.pos as u64;
    let ggml_type = GgmlType(c.u32("a tensor type")?);
    let offset = c.u64("a tensor offset")?;
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&e| usize::try_from(e).is_ok())
        .ok_or_else(|| (at, format!("tensor `{name}` dimensions {dims:?} overflow")))?;
    let Some(layout) = ggml_type.layout() else {
        return Err((
            at_type,
            format!("tensor `{name}` has unknown GGML type {}", ggml_type.0),
        ));
    };
    if dims[0] % layout.block_elems as u64 != 0 {
        return Err((
            at,
            format!(
                "tensor `{name}` rows of {} elements are not a whole number of {ggml_type} blocks of {}",
                dims[0], layout.block_elems
            ),
        ));
    }
    let n_bytes = ggml_type
        .bytes_for(elements)
        .ok_or_else(|| (at, format!("tensor `{name}` size overflows")))?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
    })
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str, depth: usize) -> ParseResult<Value> {
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array(key)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(key)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(key)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(key)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(key)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(key)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(key)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(key)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(key)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(key)?)),
        ValueType::BOOL => Value::Bool(read_bool(c, key)?),
        ValueType::STRING => Value::String(c.string(key)?),
        ValueType::ARRAY => Value::Array(read_array(c, key, depth)?),
        other => return c.fail(format!("metadata `{key}` has {other}")),
    })
}

fn read_bool(c: &mut Cursor<'_>, key: &str) -> ParseResult<bool> {
    match c.array::<1>(key)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        b => Err((
            c.pos as u64 - 1,
            format!("metadata `{key}` has bool byte {b} (must be 0 or 1)"),
        )),
    }
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> ParseResult<Array> {
    if depth >= MAX_NESTING {
        return c.fail(format!(
            "metadata `{key}` nests arrays more than {MAX_NESTING} deep"
        ));
    }
    let ty = ValueType(c.u32(key)?);
    let min_size = match ty {
        ValueType::STRING => 8,
        ValueType::ARRAY => 12,
        t => match t.fixed_size() {
            Some(s) => s,
            None => return c.fail(format!("metadata `{key}` is an array of {t}")),
        },
    };
    let n = c.count(key, min_size)?;
    // `count` checked that n elements of at least `min_size` bytes fit in the file.
    fn fixed<T, const N: usize>(
        c: &mut Cursor<'_>,
        n: usize,
        key: &str,
        f: fn([u8; N]) -> T,
    ) -> ParseResult<Vec<T>> {
        (0..n).map(|_| c.array::<N>(key).map(f)).collect()
    }
    Ok(match ty {
        ValueType::U8 => Array::U8(fixed(c, n, key, u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(fixed(c, n, key, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(fixed(c, n, key, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(fixed(c, n, key, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(fixed(c, n, key, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(fixed(c, n, key, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(fixed(c, n, key, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(fixed(c, n, key, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(fixed(c, n, key, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(fixed(c, n, key, f64::from_le_bytes)?),
        ValueType::BOOL => Array::Bool(
            (0..n)
                .map(|_| read_bool(c, key))
                .collect::<ParseResult<_>>()?,
        ),
        ValueType::STRING => {
            Array::String((0..n).map(|_| c.string(key)).collect::<ParseResult<_>>()?)
        }
        // Each element of an array of arrays is itself (element type, count, elements).
        _ => Array::Array(
            (0..n)
                .map(|_| read_array(c, key, depth + 1))
                .collect::<ParseResult<_>>()?,
        ),
    })
}
