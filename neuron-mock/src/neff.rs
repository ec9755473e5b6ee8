//! Mock NEFFs: writing and parsing.
//!
//! A mock NEFF is a real NEFF container (shared/docs/libnrt-api.md section 8): a 1024-byte
//! header, then a gzipped tar. Where a compiled NEFF has `neff.json`, `kelf-*.json` and
//! per-subgraph directories, a mock NEFF has `mock.json`: the kernel to run, its parameters,
//! and the model's input and output tensors. Extra files (say, small constant tables) may ride
//! along and are handed to the kernel when it is built.
//!
//! ```
//! use neuron_mock::neff::{self, MockNeff};
//! use neuron_sys::DType;
//!
//! let bytes = MockNeff::new("add")
//!     .input("a", DType::F32, &[4])
//!     .input("b", DType::F32, &[4])
//!     .output("sum", DType::F32, &[4])
//!     .to_bytes()?;
//! let parsed = neff::parse(&bytes)?;
//! assert_eq!(parsed.program.kernel, "add");
//! assert_eq!(parsed.program.outputs().next().unwrap().size_bytes(), 16);
//! # Ok::<(), neuron_mock::neff::NeffError>(())
//! ```
//!
//! `mock.json` (format version 1):
//!
//! ```json
//! { "format": "neuron-mock", "version": 1, "kernel": "matmul",
//!   "params": { "transpose_b": true },
//!   "tensors": [ { "name": "x", "dtype": "bf16", "shape": [2, 8], "usage": "input" }, ... ] }
//! ```
//!
//! Dtype names are [`DType::name`]'s. A name may appear once as an input and once as an output:
//! that tensor is state the model updates in place (bind the same device tensor to both sets).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use md5::{Digest, Md5};
use neuron_sys::DType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Size of the NEFF header.
pub const HEADER_SIZE: usize = 1024;

/// The archive member that makes a NEFF a mock NEFF.
pub const MANIFEST_NAME: &str = "mock.json";

/// Value of `format` in `mock.json`.
pub const MANIFEST_FORMAT: &str = "neuron-mock";

/// The `mock.json` version this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Longest tensor name in bytes (the C API's `NRT_TENSOR_NAME_MAX` minus the NUL).
pub const MAX_TENSOR_NAME: usize = 255;

/// Most bytes a NEFF's archive may unpack to; more is refused as corrupt or hostile.
pub const MAX_UNPACKED_SIZE: u64 = 1 << 30;

/// Largest single tensor a mock NEFF may declare (256 TiB: far beyond any device, small
/// enough that sizes never overflow).
pub const MAX_TENSOR_BYTES: u64 = 1 << 48;

/// Most archive members a NEFF may have.
const MAX_ENTRIES: usize = 4096;

/// Why a NEFF could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NeffError {
    /// The file ends before something it declares.
    #[error("truncated NEFF: {what} needs {needed} bytes but the file has {len}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        len: u64,
    },
    /// A header field has an impossible value.
    #[error("bad NEFF header: {field} = {value} ({why})")]
    BadHeader {
        /// The header field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A NEFF format version newer than the runtime knows.
    #[error("NEFF version {major}.{minor} is not supported (at most 2.x)")]
    UnsupportedVersion {
        /// `neff_version_major`.
        major: u64,
        /// `neff_version_minor`.
        minor: u64,
    },
    /// Feature bits the runtime does not know.
    #[error("NEFF uses unsupported features: [{bits:#x}]")]
    UnsupportedFeatures {
        /// The unknown bits.
        bits: u64,
    },
    /// The archive after the header is not a readable (gzipped) tar.
    #[error("NEFF archive is corrupt: {message}")]
    Archive {
        /// What the decoder said.
        message: String,
    },
    /// The archive unpacks to more than [`MAX_UNPACKED_SIZE`] or has too many members.
    #[error(
        "NEFF archive is larger than the mock accepts ({limit} bytes or {MAX_ENTRIES} members)"
    )]
    TooLarge {
        /// The byte limit.
        limit: u64,
    },
    /// A NEFF compiled for a real device: the mock has no device to run its code on.
    #[error(
        "this is a NEFF compiled by the Neuron compiler (it contains {}), not a mock NEFF: the \
         mock device cannot execute device code. Build a mock NEFF (neuron_mock::neff::MockNeff) \
         or run on a Neuron instance",
        .members.join(", ")
    )]
    CompiledNeff {
        /// The compiler-made members found (neff.json, kelf-0.json, sg00/def.json, ...).
        members: Vec<String>,
    },
    /// The archive has no `mock.json`.
    #[error("NEFF archive has no {MANIFEST_NAME} (members: {})", .members.join(", "))]
    MissingManifest {
        /// The members it does have.
        members: Vec<String>,
    },
    /// `mock.json` is not valid.
    #[error("{MANIFEST_NAME} is invalid: {message}")]
    Manifest {
        /// What is wrong.
        message: String,
    },
    /// A tensor declaration is not valid.
    #[error("tensor {name:?} in {MANIFEST_NAME}: {why}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The header's hash does not match the archive (checked with `NEURON_RT_VALIDATE_HASH`).
    #[error("NEFF hash mismatch: the header says {expected}, the archive hashes to {actual}")]
    HashMismatch {
        /// Hex hash from the header.
        expected: String,
        /// Hex hash of the archive.
        actual: String,
    },
    /// Writing a NEFF file failed.
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The 1024-byte NEFF header (little-endian; layout in shared/docs/libnrt-api.md section 8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeffHeader {
    /// Packager version: 1 = plain tar with a SHA-256 hash, 2 = gzipped tar with an MD5 hash.
    pub pkg_version: u64,
    /// Header length (1024).
    pub header_size: u64,
    /// Length of the archive after the header.
    pub data_size: u64,
    /// NEFF format major version.
    pub neff_version_major: u64,
    /// NEFF format minor version.
    pub neff_version_minor: u64,
    /// Build version string (at most 127 bytes are kept).
    pub neff_build_version: String,
    /// TPBs (cores) needed.
    pub num_tpb: u32,
    /// Archive hash (MD5 in the first 16 bytes for `pkg_version` 2).
    pub hash: [u8; 32],
    /// UUID.
    pub uuid: [u8; 16],
    /// Model name (at most 255 bytes are kept).
    pub name: String,
    /// TPBs requested at compile time.
    pub requested_tpb_count: u32,
    /// TPBs per node, one byte each.
    pub tpb_per_node: [u8; 64],
    /// Incompatible-feature flags; any bit set is refused by the mock.
    pub feature_bits: u64,
    /// Logical core size the NEFF was compiled for; 0 = not recorded (runs at any size).
    pub lnc_size: u32,
}

mod offsets {
    pub const PKG_VERSION: usize = 0x000;
    pub const HEADER_SIZE: usize = 0x008;
    pub const DATA_SIZE: usize = 0x010;
    pub const VERSION_MAJOR: usize = 0x018;
    pub const VERSION_MINOR: usize = 0x020;
    pub const BUILD_VERSION: usize = 0x028;
    pub const NUM_TPB: usize = 0x0A8;
    pub const HASH: usize = 0x0AC;
    pub const UUID: usize = 0x0CC;
    pub const NAME: usize = 0x0DC;
    pub const REQUESTED_TPB: usize = 0x1DC;
    pub const TPB_PER_NODE: usize = 0x1E0;
    pub const FEATURE_BITS: usize = 0x220;
    pub const LNC_SIZE: usize = 0x228;
}

fn u64_at(b: &[u8; HEADER_SIZE], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn u32_at(b: &[u8; HEADER_SIZE], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(raw)
}

/// A NUL-terminated string field (lossy: header strings are informational).
fn str_at(b: &[u8; HEADER_SIZE], at: usize, len: usize) -> String {
    let field = &b[at..at + len];
    let end = field.iter().position(|&c| c == 0).unwrap_or(len);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn put_str(b: &mut [u8; HEADER_SIZE], at: usize, len: usize, s: &str) {
    // Keep room for the NUL; cut at a character boundary.
    let mut end = s.len().min(len - 1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    b[at..at + end].copy_from_slice(&s.as_bytes()[..end]);
}

impl NeffHeader {
    /// Decodes the first [`HEADER_SIZE`] bytes of a file. Only decodes: see [`parse`] for the
    /// checks.
    ///
    /// # Errors
    /// [`NeffError::Truncated`] if `bytes` is shorter than a header.
    pub fn decode(bytes: &[u8]) -> Result<NeffHeader, NeffError> {
        let b: &[u8; HEADER_SIZE] = bytes
            .get(..HEADER_SIZE)
            .and_then(|h| h.try_into().ok())
            .ok_or(NeffError::Truncated {
                what: "the header",
                needed: HEADER_SIZE as u64,
                len: bytes.len() as u64,
            })?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&b[offsets::HASH..offsets::HASH + 32]);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[offsets::UUID..offsets::UUID + 16]);
        let mut tpb_per_node = [0u8; 64];
        tpb_per_node.copy_from_slice(&b[offsets::TPB_PER_NODE..offsets::TPB_PER_NODE + 64]);
        Ok(NeffHeader {
            pkg_version: u64_at(b, offsets::PKG_VERSION),
            header_size: u64_at(b, offsets::HEADER_SIZE),
            data_size: u64_at(b, offsets::DATA_SIZE),
            neff_version_major: u64_at(b, offsets::VERSION_MAJOR),
            neff_version_minor: u64_at(b, offsets::VERSION_MINOR),
            neff_build_version: str_at(b, offsets::BUILD_VERSION, 128),
            num_tpb: u32_at(b, offsets::NUM_TPB),
            hash,
            uuid,
            name: str_at(b, offsets::NAME, 256),
            requested_tpb_count: u32_at(b, offsets::REQUESTED_TPB),
            tpb_per_node,
            feature_bits: u64_at(b, offsets::FEATURE_BITS),
            lnc_size: u32_at(b, offsets::LNC_SIZE),
        })
    }

    /// Encodes the header (strings are cut to fit their fields).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        let mut put_u64 = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put_u64(offsets::PKG_VERSION, self.pkg_version);
        put_u64(offsets::HEADER_SIZE, self.header_size);
        put_u64(offsets::DATA_SIZE, self.data_size);
        put_u64(offsets::VERSION_MAJOR, self.neff_version_major);
        put_u64(offsets::VERSION_MINOR, self.neff_version_minor);
        put_u64(offsets::FEATURE_BITS, self.feature_bits);
        b[offsets::NUM_TPB..offsets::NUM_TPB + 4].copy_from_slice(&self.num_tpb.to_le_bytes());
        b[offsets::REQUESTED_TPB..offsets::REQUESTED_TPB + 4]
            .copy_from_slice(&self.requested_tpb_count.to_le_bytes());
        b[offsets::LNC_SIZE..offsets::LNC_SIZE + 4].copy_from_slice(&self.lnc_size.to_le_bytes());
        b[offsets::HASH..offsets::HASH + 32].copy_from_slice(&self.hash);
        b[offsets::UUID..offsets::UUID + 16].copy_from_slice(&self.uuid);
        b[offsets::TPB_PER_NODE..offsets::TPB_PER_NODE + 64].copy_from_slice(&self.tpb_per_node);
        put_str(
            &mut b,
            offsets::BUILD_VERSION,
            128,
            &self.neff_build_version,
        );
        put_str(&mut b, offsets::NAME, 256, &self.name);
        b
    }

    /// A header for an archive of `data`, as this crate writes them: packager version 2
    /// (gzipped tar, MD5), NEFF version 2.0, one core, no feature bits.
    pub fn for_archive(name: &str, data: &[u8], lnc_size: u32) -> NeffHeader {
        let digest = Md5::digest(data);
        let mut hash = [0u8; 32];
        hash[..16].copy_from_slice(&digest);
        // A stable UUID: the MD5 of the name and the archive, with version-4 style bits.
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&Md5::new().chain_update(name).chain_update(data).finalize());
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let mut tpb_per_node = [0u8; 64];
        tpb_per_node[0] = 1;
        NeffHeader {
            pkg_version: 2,
            header_size: HEADER_SIZE as u64,
            data_size: data.len() as u64,
            neff_version_major: 2,
            neff_version_minor: 0,
            neff_build_version: format!("neuron-mock {}", env!("CARGO_PKG_VERSION")),
            num_tpb: 1,
            hash,
            uuid,
            name: name.to_string(),
            requested_tpb_count: 1,
            tpb_per_node,
            feature_bits: 0,
            lnc_size,
        }
    }
}

/// Whether a model tensor is read or written by the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Usage {
    /// Read by the model (`NRT_TENSOR_USAGE_INPUT`).
    Input,
    /// Written by the model (`NRT_TENSOR_USAGE_OUTPUT`).
    Output,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Usage::Input => "input",
            Usage::Output => "output",
        })
    }
}

/// One model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// The name: the key to use in tensor sets.
    pub name: String,
    /// Element type.
    #[serde(with = "dtype_name")]
    pub dtype: DType,
    /// Dimensions, outermost first; `[]` is a scalar.
    pub shape: Vec<usize>,
    /// Input or output.
    pub usage: Usage,
}

impl TensorSpec {
    /// Number of elements (the product of the shape; 1 for a scalar).
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.elements() * self.dtype.size_in_bytes()
    }

    fn check(&self) -> Result<(), NeffError> {
        let bad = |why: String| NeffError::Tensor {
            name: self.name.clone(),
            why,
        };
        if self.name.is_empty() {
            return Err(bad("the name is empty".into()));
        }
        if self.name.len() > MAX_TENSOR_NAME {
            return Err(bad(format!(
                "the name is {} bytes long; the C API allows {MAX_TENSOR_NAME}",
                self.name.len()
            )));
        }
        if self.name.contains('\0') {
            return Err(bad("the name contains a NUL byte".into()));
        }
        if self.shape.len() > 32 {
            return Err(bad(format!("{} dimensions is too many", self.shape.len())));
        }
        let mut bytes = self.dtype.size_in_bytes() as u64;
        for &dim in &self.shape {
            if dim > u32::MAX as usize {
                return Err(bad(format!(
                    "dimension {dim} does not fit the C API's uint32"
                )));
            }
            bytes = bytes.saturating_mul(dim as u64);
        }
        if bytes > MAX_TENSOR_BYTES {
            return Err(bad(format!(
                "shape {:?} of {} is more than {MAX_TENSOR_BYTES} bytes",
                self.shape, self.dtype
            )));
        }
        Ok(())
    }
}

mod dtype_name {
    use neuron_sys::DType;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(dtype: &DType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(dtype.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DType, D::Error> {
        let name = String::deserialize(d)?;
        DType::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            D::Error::custom(format!(
                "unknown dtype {name:?} (known: {})",
                known.join(", ")
            ))
        })
    }
}

/// What a mock NEFF runs: `mock.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockProgram {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// Always [`MANIFEST_VERSION`].
    pub version: u32,
    /// The registered kernel to run (see `neuron_mock::kernels`).
    pub kernel: String,
    /// The kernel's parameters: a JSON object the kernel reads when the model is loaded.
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Inputs and outputs in the order `nrt_get_model_tensor_info` reports them.
    pub tensors: Vec<TensorSpec>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl MockProgram {
    /// The inputs, in order.
    pub fn inputs(&self) -> impl Iterator<Item = &TensorSpec> {
        self.tensors.iter().filter(|t| t.usage == Usage::Input)
    }

    /// The outputs, in order.
    pub fn outputs(&self) -> impl Iterator<Item = &TensorSpec> {
        self.tensors.iter().filter(|t| t.usage == Usage::Output)
    }

    /// Checks the format marker, the kernel name, the parameters and every tensor.
    ///
    /// # Errors
    /// [`NeffError::Manifest`] or [`NeffError::Tensor`] naming what is wrong.
    pub fn validate(&self) -> Result<(), NeffError> {
        let bad = |message: String| NeffError::Manifest { message };
        if self.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "format is {:?}, expected {MANIFEST_FORMAT:?}",
                self.format
            )));
        }
        if self.version != MANIFEST_VERSION {
            return Err(bad(format!(
                "version {} is not supported (this mock reads version {MANIFEST_VERSION})",
                self.version
            )));
        }
        if self.kernel.trim().is_empty() {
            return Err(bad("the kernel name is empty".into()));
        }
        if !self.params.is_object() {
            return Err(bad("params must be a JSON object".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for tensor in &self.tensors {
            tensor.check()?;
            if !seen.insert((tensor.name.as_str(), tensor.usage)) {
                return Err(NeffError::Tensor {
                    name: tensor.name.clone(),
                    why: format!("declared twice as an {}", tensor.usage),
                });
            }
        }
        for tensor in &self.tensors {
            // A name in both lists is state updated in place: it must be the same tensor.
            if let Some(other) = self
                .tensors
                .iter()
                .find(|o| o.name == tensor.name && o.usage != tensor.usage)
                && (other.dtype != tensor.dtype || other.shape != tensor.shape)
            {
                return Err(NeffError::Tensor {
                    name: tensor.name.clone(),
                    why: "declared as both input and output with different dtypes or shapes".into(),
                });
            }
        }
        Ok(())
    }
}

/// A parsed mock NEFF.
#[derive(Debug, Clone)]
pub struct Neff {
    /// The container header.
    pub header: NeffHeader,
    /// `mock.json`.
    pub program: MockProgram,
    /// Every other regular file in the archive, by path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// MD5 of the archive, for [`Neff::verify_hash`].
    archive_md5: [u8; 16],
}

impl Neff {
    /// Compares the header's hash with the archive's (what `NEURON_RT_VALIDATE_HASH` asks for).
    /// Packager version 1 (SHA-256) is not checked.
    ///
    /// # Errors
    /// [`NeffError::HashMismatch`].
    pub fn verify_hash(&self) -> Result<(), NeffError> {
        if self.header.pkg_version != 2 || self.header.hash[..16] == self.archive_md5 {
            return Ok(());
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        Err(NeffError::HashMismatch {
            expected: hex(&self.header.hash[..16]),
            actual: hex(&self.archive_md5),
        })
    }
}

/// Parses and checks a mock NEFF: the header, the archive, and `mock.json`.
///
/// # Errors
/// A [`NeffError`] saying what is wrong; [`NeffError::CompiledNeff`] for a NEFF the Neuron
/// compiler made. Never panics, whatever the bytes.
pub fn parse(bytes: &[u8]) -> Result<Neff, NeffError> {
    let header = NeffHeader::decode(bytes)?;
    let file_len = bytes.len() as u64;
    if !(1..=2).contains(&header.pkg_version) {
        return Err(NeffError::BadHeader {
            field: "pkg_version",
            value: header.pkg_version,
            why: "known packager versions are 1 and 2",
        });
    }
    if header.header_size < HEADER_SIZE as u64 || header.header_size > file_len {
        return Err(NeffError::BadHeader {
            field: "header_size",
            value: header.header_size,
            why: "must be at least 1024 and within the file",
        });
    }
    let available = file_len - header.header_size;
    if header.data_size > available {
        return Err(NeffError::Truncated {
            what: "the archive (header data_size)",
            needed: header.header_size.saturating_add(header.data_size),
            len: file_len,
        });
    }
    if header.data_size == 0 {
        return Err(NeffError::BadHeader {
            field: "data_size",
            value: 0,
            why: "the NEFF has no archive",
        });
    }
    if header.neff_version_major > 2 {
        return Err(NeffError::UnsupportedVersion {
            major: header.neff_version_major,
            minor: header.neff_version_minor,
        });
    }
    if header.feature_bits != 0 {
        return Err(NeffError::UnsupportedFeatures {
            bits: header.feature_bits,
        });
    }
    let start = header.header_size as usize;
    let data = &bytes[start..start + header.data_size as usize];
    let archive_md5: [u8; 16] = Md5::digest(data).into();
    let members = if data.starts_with(&[0x1f, 0x8b]) {
        read_tar(GzDecoder::new(data))?
    } else {
        read_tar(data)?
    };
    let mut files = BTreeMap::new();
    let mut manifest = None;
    for (path, content) in members {
        if path == MANIFEST_NAME {
            manifest = Some(content);
        } else {
            files.insert(path, content);
        }
    }
    let Some(manifest) = manifest else {
        let compiled: Vec<String> = files
            .keys()
            .filter(|p| is_compiler_member(p))
            .cloned()
            .collect();
        return Err(if compiled.is_empty() {
            NeffError::MissingManifest {
                members: files.keys().cloned().collect(),
            }
        } else {
            NeffError::CompiledNeff { members: compiled }
        });
    };
    let program: MockProgram =
        serde_json::from_slice(&manifest).map_err(|e| NeffError::Manifest {
            message: e.to_string(),
        })?;
    program.validate()?;
    Ok(Neff {
        header,
        program,
        files,
        archive_md5,
    })
}

/// Members the Neuron compiler writes into real NEFFs.
fn is_compiler_member(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    path == "neff.json"
        || (file.starts_with("kelf-") && file.ends_with(".json"))
        || file == "def.json"
        || path.ends_with(".neff")
}

/// Reads every regular file of a tar stream, within [`MAX_UNPACKED_SIZE`].
fn read_tar(reader: impl Read) -> Result<Vec<(String, Vec<u8>)>, NeffError> {
    let archive_err = |e: std::io::Error| NeffError::Archive {
        message: e.to_string(),
    };
    // The limit applies to the decompressed stream, headers included, so a small gzip bomb
    // stops at the limit instead of filling memory.
    let mut archive = tar::Archive::new(reader.take(MAX_UNPACKED_SIZE + 1));
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for entry in archive.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        if out.len() >= MAX_ENTRIES {
            return Err(NeffError::TooLarge {
                limit: MAX_UNPACKED_SIZE,
            });
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(archive_err)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.size();
        total = total.saturating_add(size);
        if total > MAX_UNPACKED_SIZE {
            return Err(NeffError::TooLarge {
                limit: MAX_UNPACKED_SIZE,
            });
        }
        let mut content = Vec::with_capacity(size.min(1 << 20) as usize);
        entry.read_to_end(&mut content).map_err(archive_err)?;
        if content.len() as u64 != size {
            return Err(NeffError::Archive {
                message: format!("member {path} is cut short"),
            });
        }
        out.push((path, content));
    }
    Ok(out)
}

/// Writes a gzipped tar of `members` (path, content), deterministically (no timestamps).
pub fn write_archive(members: &[(&str, &[u8])]) -> Result<Vec<u8>, NeffError> {
    let io_err = |e: std::io::Error| NeffError::Archive {
        message: e.to_string(),
    };
    let gz = flate2::GzBuilder::new().write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, content) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, *content)
            .map_err(io_err)?;
    }
    let gz = tar.into_inner().map_err(io_err)?;
    gz.finish().map_err(io_err)
}

/// A NEFF file: `header` followed by `archive`.
pub fn write_container(header: &NeffHeader, archive: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + archive.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(archive);
    out
}

/// Builds a mock NEFF.
///
/// ```
/// use neuron_mock::neff::MockNeff;
/// use neuron_sys::DType;
/// use serde_json::json;
///
/// let neff = MockNeff::new("matmul")
///     .name("proj")
///     .input("x", DType::BF16, &[2, 8])
///     .input("w", DType::BF16, &[4, 8])
///     .output("y", DType::F32, &[2, 4])
///     .param("transpose_b", json!(true))
///     .to_bytes()?;
/// # Ok::<(), neuron_mock::neff::NeffError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MockNeff {
    name: Option<String>,
    program: MockProgram,
    files: Vec<(String, Vec<u8>)>,
    lnc_size: u32,
}

impl MockNeff {
    /// A NEFF that runs the registered kernel `kernel`.
    pub fn new(kernel: impl Into<String>) -> MockNeff {
        MockNeff {
            name: None,
            program: MockProgram {
                format: MANIFEST_FORMAT.into(),
                version: MANIFEST_VERSION,
                kernel: kernel.into(),
                params: empty_object(),
                tensors: Vec::new(),
            },
            files: Vec::new(),
            lnc_size: 0,
        }
    }

    /// The model name in the header (default: the kernel name).
    pub fn name(mut self, name: impl Into<String>) -> MockNeff {
        self.name = Some(name.into());
        self
    }

    /// Adds an input.
    pub fn input(self, name: impl Into<String>, dtype: DType, shape: &[usize]) -> MockNeff {
        self.tensor(name, dtype, shape, Usage::Input)
    }

    /// Adds an output.
    pub fn output(self, name: impl Into<String>, dtype: DType, shape: &[usize]) -> MockNeff {
        self.tensor(name, dtype, shape, Usage::Output)
    }

    /// Adds state updated in place: an input and an output of the same name (bind one tensor
    /// to both sets, as the KV cache is).
    pub fn state(self, name: impl Into<String>, dtype: DType, shape: &[usize]) -> MockNeff {
        let name = name.into();
        self.tensor(name.clone(), dtype, shape, Usage::Input)
            .tensor(name, dtype, shape, Usage::Output)
    }

    /// Adds a tensor.
    pub fn tensor(
        mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: &[usize],
        usage: Usage,
    ) -> MockNeff {
        self.program.tensors.push(TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            usage,
        });
        self
    }

    /// Sets one kernel parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<Value>) -> MockNeff {
        if let Value::Object(map) = &mut self.program.params {
            map.insert(key.into(), value.into());
        }
        self
    }

    /// Replaces all kernel parameters (a JSON object, or the NEFF will not validate).
    pub fn params(mut self, params: Value) -> MockNeff {
        self.program.params = params;
        self
    }

    /// Adds a file to the archive, given to the kernel when it is built.
    pub fn file(mut self, path: impl Into<String>, content: impl Into<Vec<u8>>) -> MockNeff {
        self.files.push((path.into(), content.into()));
        self
    }

    /// Records the logical core size the NEFF is "compiled" for (default 0: any).
    pub fn lnc_size(mut self, lnc: u32) -> MockNeff {
        self.lnc_size = lnc;
        self
    }

    /// The program as it will be written.
    pub fn program(&self) -> &MockProgram {
        &self.program
    }

    /// Encodes the NEFF.
    ///
    /// # Errors
    /// [`NeffError::Manifest`] / [`NeffError::Tensor`] if the program is not valid (the same
    /// checks the mock makes at load), or a file uses the reserved name `mock.json`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NeffError> {
        self.program.validate()?;
        if self.files.iter().any(|(p, _)| p == MANIFEST_NAME) {
            return Err(NeffError::Manifest {
                message: format!("{MANIFEST_NAME} is reserved; name the file differently"),
            });
        }
        let manifest =
            serde_json::to_vec_pretty(&self.program).map_err(|e| NeffError::Manifest {
                message: e.to_string(),
            })?;
        let mut members: Vec<(&str, &[u8])> = vec![(MANIFEST_NAME, &manifest)];
        members.extend(self.files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
        let archive = write_archive(&members)?;
        let name = self.name.as_deref().unwrap_or(&self.program.kernel);
        let header = NeffHeader::for_archive(name, &archive, self.lnc_size);
        Ok(write_container(&header, &archive))
    }

    /// Writes the NEFF to a file.
    ///
    /// # Errors
    /// As [`MockNeff::to_bytes`], or [`NeffError::Io`].
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), NeffError> {
        let bytes = self.to_bytes()?;
        let path = path.as_ref();
        std::fs::File::create(path)
            .and_then(|mut f| f.write_all(&bytes))
            .map_err(|source| NeffError::Io {
                path: path.to_path_buf(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add_neff() -> MockNeff {
        MockNeff::new("add")
            .input("a", DType::F32, &[2, 3])
            .input("b", DType::F32, &[2, 3])
            .output("c", DType::F32, &[2, 3])
    }

    #[test]
    fn round_trip() {
        let bytes = add_neff()
            .name("adder")
            .param("alpha", json!(0.5))
            .file("table.bin", vec![1, 2, 3])
            .lnc_size(2)
            .to_bytes()
            .unwrap();
        let neff = parse(&bytes).unwrap();
        assert_eq!(neff.header.name, "adder");
        assert_eq!(neff.header.lnc_size, 2);
        assert_eq!(neff.header.pkg_version, 2);
        assert_eq!(neff.header.data_size as usize, bytes.len() - HEADER_SIZE);
        assert_eq!(neff.program.kernel, "add");
        assert_eq!(neff.program.params, json!({"alpha": 0.5}));
        assert_eq!(neff.program.inputs().count(), 2);
        assert_eq!(neff.program.outputs().next().unwrap().size_bytes(), 24);
        assert_eq!(neff.files["table.bin"], vec![1, 2, 3]);
        neff.verify_hash().unwrap();
        // Deterministic: the same NEFF twice gives the same bytes.
        assert_eq!(
            bytes,
            add_neff()
                .name("adder")
                .param("alpha", json!(0.5))
                .file("table.bin", vec![1, 2, 3])
                .lnc_size(2)
                .to_bytes()
                .unwrap()
        );
    }

    #[test]
    fn header_layout() {
        let header = NeffHeader::for_archive("m", b"xyz", 1);
        let raw = header.encode();
        assert_eq!(raw.len(), 1024);
        assert_eq!(u64_at(&raw, 0x000), 2);
        assert_eq!(u64_at(&raw, 0x008), 1024);
        assert_eq!(u64_at(&raw, 0x010), 3);
        assert_eq!(u64_at(&raw, 0x018), 2);
        assert_eq!(&raw[0x0DC..0x0DE], b"m\0");
        assert_eq!(u32_at(&raw, 0x228), 1);
        assert_eq!(NeffHeader::decode(&raw).unwrap(), header);
    }

    #[test]
    fn refuses_bad_programs() {
        let dup = add_neff()
            .input("a", DType::F32, &[1])
            .to_bytes()
            .unwrap_err();
        assert!(dup.to_string().contains("declared twice"), "{dup}");
        let long = MockNeff::new("copy")
            .input("x".repeat(256), DType::F32, &[1])
            .to_bytes();
        assert!(matches!(long, Err(NeffError::Tensor { .. })));
        let huge = MockNeff::new("copy")
            .input("x", DType::F32, &[1 << 30, 1 << 30])
            .to_bytes();
        assert!(matches!(huge, Err(NeffError::Tensor { .. })));
        let state = MockNeff::new("copy")
            .input("kv", DType::F32, &[4])
            .output("kv", DType::F16, &[4])
            .to_bytes();
        assert!(matches!(state, Err(NeffError::Tensor { .. })));
        assert!(MockNeff::new(" ").to_bytes().is_err());
        assert!(MockNeff::new("copy").params(json!([1])).to_bytes().is_err());
    }

    #[test]
    fn refuses_compiled_neffs_clearly() {
        let archive = write_archive(&[
            ("neff.json", b"{}"),
            ("kelf-0.json", b"{}"),
            ("sg00/def.json", b"{}"),
        ])
        .unwrap();
        let bytes = write_container(&NeffHeader::for_archive("real", &archive, 0), &archive);
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(err, NeffError::CompiledNeff { .. }), "{err}");
        assert!(
            err.to_string().contains("cannot execute device code"),
            "{err}"
        );
    }

    #[test]
    fn header_checks() {
        let good = add_neff().to_bytes().unwrap();
        let with = |at: usize, v: u64| {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            parse(&b).unwrap_err()
        };
        assert!(matches!(
            with(0x000, 3),
            NeffError::BadHeader {
                field: "pkg_version",
                ..
            }
        ));
        assert!(matches!(
            with(0x008, 10),
            NeffError::BadHeader {
                field: "header_size",
                ..
            }
        ));
        assert!(matches!(with(0x010, 1 << 40), NeffError::Truncated { .. }));
        assert!(matches!(
            with(0x018, 3),
            NeffError::UnsupportedVersion { major: 3, .. }
        ));
        assert!(matches!(
            with(0x220, 0x100000),
            NeffError::UnsupportedFeatures { bits: 0x100000 }
        ));
        assert!(matches!(
            parse(&good[..1000]),
            Err(NeffError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&good[..good.len() - 1]),
            Err(NeffError::Truncated { .. })
        ));
        // A flipped payload byte is caught by the hash check.
        let mut flipped = good.clone();
        let last = flipped.len() - 9; // inside the gzip CRC trailer
        flipped[last] ^= 0xff;
        match parse(&flipped) {
            Ok(neff) => assert!(neff.verify_hash().is_err()),
            Err(e) => assert!(matches!(e, NeffError::Archive { .. }), "{e}"),
        }
    }
}
