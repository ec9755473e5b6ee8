//! Readable names for the integer newtypes that libnrt returns, the runtime version, and the
//! two dtype encodings.
//!
//! The newtypes themselves (`NRT_STATUS`, `nrt_dtype_t`, ...) are generated into
//! [`crate::bindings`]; they wrap a plain integer so that a value this crate does not know is
//! still a valid value, never undefined behaviour.

use std::fmt;

use crate::bindings::{
    NRT_STATUS, nrt_dtype_legacy_t, nrt_dtype_t, nrt_framework_type_t, nrt_instance_family_t,
    nrt_instance_size_t, nrt_tensor_placement_t, nrt_tensor_usage_t, nrt_version_t,
};

/// Gives a newtype a `name()` for each listed constant and a `Display` that falls back to
/// "unknown <what> N". Listing the constants by path makes a typo a compile error.
macro_rules! named_values {
    ($ty:ident, $what:literal, [$($name:ident),+ $(,)?]) => {
        impl $ty {
            /// The constant's name for a known value, `None` for a value this crate does not
            /// know.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(v if v == $ty::$name.0 => Some(stringify!($name)),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{name} ({})", self.0),
                    None => write!(f, concat!("unknown ", $what, " {}"), self.0),
                }
            }
        }
    };
}

named_values!(
    NRT_STATUS,
    "status",
    [
        NRT_SUCCESS,
        NRT_FAILURE,
        NRT_INVALID,
        NRT_INVALID_HANDLE,
        NRT_RESOURCE,
        NRT_TIMEOUT,
        NRT_HW_ERROR,
        NRT_QUEUE_FULL,
        NRT_LOAD_NOT_ENOUGH_NC,
        NRT_UNSUPPORTED_NEFF_VERSION,
        NRT_FAIL_HOST_MEM_ALLOC,
        NRT_UNINITIALIZED,
        NRT_CLOSED,
        NRT_QUEUE_EMPTY,
        NRT_EXEC_UNIT_UNRECOVERABLE,
        NRT_EXEC_BAD_INPUT,
        NRT_EXEC_COMPLETED_WITH_NUM_ERR,
        NRT_EXEC_COMPLETED_WITH_ERR,
        NRT_EXEC_NC_BUSY,
        NRT_EXEC_OOB,
        NRT_COLL_PENDING,
        NRT_EXEC_HW_ERR_COLLECTIVES,
        NRT_EXEC_HW_ERR_HBM_UE,
        NRT_EXEC_HW_ERR_NC_UE,
        NRT_EXEC_HW_ERR_DMA_ABORT,
        NRT_EXEC_SW_NQ_OVERFLOW,
        NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE,
        NRT_NETWORK_PROXY_FAILURE,
    ]
);

impl NRT_STATUS {
    /// Whether this is `NRT_SUCCESS`.
    pub const fn is_success(self) -> bool {
        self.0 == NRT_STATUS::NRT_SUCCESS.0
    }
}

named_values!(
    nrt_tensor_placement_t,
    "placement",
    [
        NRT_TENSOR_PLACEMENT_DEVICE,
        NRT_TENSOR_PLACEMENT_HOST,
        NRT_TENSOR_PLACEMENT_VIRTUAL,
    ]
);

named_values!(
    nrt_framework_type_t,
    "framework type",
    [
        NRT_FRAMEWORK_TYPE_INVALID,
        NRT_FRAMEWORK_TYPE_NO_FW,
        NRT_FRAMEWORK_TYPE_TENSORFLOW,
        NRT_FRAMEWORK_TYPE_PYTORCH,
        NRT_FRAMEWORK_TYPE_MXNET,
        NRT_FRAMEWORK_TYPE_PRECHECK,
    ]
);

named_values!(
    nrt_tensor_usage_t,
    "tensor usage",
    [NRT_TENSOR_USAGE_INPUT, NRT_TENSOR_USAGE_OUTPUT]
);

named_values!(
    nrt_dtype_t,
    "dtype",
    [
        NRT_DTYPE_UNKNOWN,
        NRT_DTYPE_UINT64,
        NRT_DTYPE_INT8,
        NRT_DTYPE_UINT8,
        NRT_DTYPE_INT16,
        NRT_DTYPE_UINT16,
        NRT_DTYPE_BFLOAT16,
        NRT_DTYPE_FLOAT16,
        NRT_DTYPE_INT32,
        NRT_DTYPE_UINT32,
        NRT_DTYPE_FLOAT32,
        NRT_DTYPE_FP32R,
        NRT_DTYPE_INT64,
        NRT_DTYPE_FP8_E3,
        NRT_DTYPE_FP8_E4,
        NRT_DTYPE_FP8_E5,
    ]
);

named_values!(
    nrt_dtype_legacy_t,
    "legacy dtype",
    [
        NRT_DTYPE_LEGACY_UNKNOWN,
        NRT_DTYPE_LEGACY_FLOAT32,
        NRT_DTYPE_LEGACY_FLOAT16,
        NRT_DTYPE_LEGACY_BFLOAT16,
        NRT_DTYPE_LEGACY_INT8,
        NRT_DTYPE_LEGACY_UINT8,
        NRT_DTYPE_LEGACY_INT16,
        NRT_DTYPE_LEGACY_UINT16,
        NRT_DTYPE_LEGACY_INT32,
        NRT_DTYPE_LEGACY_UINT32,
        NRT_DTYPE_LEGACY_INT64,
        NRT_DTYPE_LEGACY_UINT64,
    ]
);

named_values!(
    nrt_instance_family_t,
    "instance family",
    [
        NRT_INSTANCE_UNKNOWN,
        NRT_INSTANCE_INF1,
        NRT_INSTANCE_TRN1,
        NRT_INSTANCE_TRN1N,
        NRT_INSTANCE_INF2,
        NRT_INSTANCE_TRN2,
        NRT_INSTANCE_TRN2N,
        NRT_INSTANCE_INF2E,
        NRT_INSTANCE_TRN2P,
        NRT_INSTANCE_TRN2U,
        NRT_INSTANCE_TRN2E,
        NRT_INSTANCE_TRN2EU,
        NRT_INSTANCE_TRN2AC,
        NRT_INSTANCE_TRN2UAC,
        NRT_INSTANCE_TRN3,
        NRT_INSTANCE_TRN3PDS98,
    ]
);

named_values!(
    nrt_instance_size_t,
    "instance size",
    [
        NRT_INSTANCE_SIZE_1XL,
        NRT_INSTANCE_SIZE_2XL,
        NRT_INSTANCE_SIZE_4XL,
        NRT_INSTANCE_SIZE_6XL,
        NRT_INSTANCE_SIZE_8XL,
        NRT_INSTANCE_SIZE_24XL,
        NRT_INSTANCE_SIZE_32XL,
        NRT_INSTANCE_SIZE_48XL,
        NRT_INSTANCE_SIZE_3XL,
        NRT_INSTANCE_SIZE_UNKNOWN,
    ]
);

/// An element type, independent of how a given runtime numbers it.
///
/// Raw codes from the library are decoded into this with [`DTypeEncoding::decode`], which
/// returns `None` for a code it does not know rather than guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
    /// 16-bit signed integer.
    I16,
    /// 16-bit unsigned integer.
    U16,
    /// 32-bit signed integer.
    I32,
    /// 32-bit unsigned integer.
    U32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit unsigned integer.
    U64,
    /// Single precision with reduced-precision arithmetic (current encoding only).
    F32R,
    /// 8-bit float, E3 variant (current encoding only).
    Fp8E3,
    /// 8-bit float, E4 variant (current encoding only).
    Fp8E4,
    /// 8-bit float, E5 variant (current encoding only).
    Fp8E5,
}

impl DType {
    /// Every element type, in declaration order.
    pub const ALL: [DType; 15] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I8,
        DType::U8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
        DType::F32R,
        DType::Fp8E3,
        DType::Fp8E4,
        DType::Fp8E5,
    ];

    /// Size of one element in bytes.
    pub const fn size_in_bytes(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Fp8E3 | DType::Fp8E4 | DType::Fp8E5 => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::F32R | DType::I32 | DType::U32 => 4,
            DType::I64 | DType::U64 => 8,
        }
    }

    /// A short lowercase name (`f32`, `bf16`, `i32`, ...), as used in mock NEFFs and manifests.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::U16 => "u16",
            DType::I32 => "i32",
            DType::U32 => "u32",
            DType::I64 => "i64",
            DType::U64 => "u64",
            DType::F32R => "f32r",
            DType::Fp8E3 => "fp8e3",
            DType::Fp8E4 => "fp8e4",
            DType::Fp8E5 => "fp8e5",
        }
    }

    /// The inverse of [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a runtime numbers element types in `nrt_tensor_info_t.dtype`.
///
/// The numbering changed between runtime 2.29 and 2.30; only INT32 (8) and UINT32 (9) agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DTypeEncoding {
    /// Runtimes up to 2.29 (and any runtime too old to report its version).
    Legacy,
    /// Runtimes 2.30 and later.
    Current,
}

/// (element type, current code, legacy code): the one table both directions are read from.
const DTYPE_CODES: [(DType, nrt_dtype_t, Option<nrt_dtype_legacy_t>); 15] = [
    (
        DType::F32,
        nrt_dtype_t::NRT_DTYPE_FLOAT32,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_FLOAT32),
    ),
    (
        DType::F16,
        nrt_dtype_t::NRT_DTYPE_FLOAT16,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_FLOAT16),
    ),
    (
        DType::BF16,
        nrt_dtype_t::NRT_DTYPE_BFLOAT16,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_BFLOAT16),
    ),
    (
        DType::I8,
        nrt_dtype_t::NRT_DTYPE_INT8,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_INT8),
    ),
    (
        DType::U8,
        nrt_dtype_t::NRT_DTYPE_UINT8,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_UINT8),
    ),
    (
        DType::I16,
        nrt_dtype_t::NRT_DTYPE_INT16,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_INT16),
    ),
    (
        DType::U16,
        nrt_dtype_t::NRT_DTYPE_UINT16,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_UINT16),
    ),
    (
        DType::I32,
        nrt_dtype_t::NRT_DTYPE_INT32,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_INT32),
    ),
    (
        DType::U32,
        nrt_dtype_t::NRT_DTYPE_UINT32,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_UINT32),
    ),
    (
        DType::I64,
        nrt_dtype_t::NRT_DTYPE_INT64,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_INT64),
    ),
    (
        DType::U64,
        nrt_dtype_t::NRT_DTYPE_UINT64,
        Some(nrt_dtype_legacy_t::NRT_DTYPE_LEGACY_UINT64),
    ),
    (DType::F32R, nrt_dtype_t::NRT_DTYPE_FP32R, None),
    (DType::Fp8E3, nrt_dtype_t::NRT_DTYPE_FP8_E3, None),
    (DType::Fp8E4, nrt_dtype_t::NRT_DTYPE_FP8_E4, None),
    (DType::Fp8E5, nrt_dtype_t::NRT_DTYPE_FP8_E5, None),
];

impl DTypeEncoding {
    /// The encoding used by a runtime of the given version (`None`: the library has no
    /// `nrt_get_version`, so it predates 2.30).
    pub fn for_version(version: Option<&RuntimeVersion>) -> DTypeEncoding {
        match version {
            Some(v) if v.major > 2 || (v.major == 2 && v.minor >= 30) => DTypeEncoding::Current,
            _ => DTypeEncoding::Legacy,
        }
    }

    /// Decodes a raw dtype code; `None` for UNKNOWN and for codes this crate does not know.
    pub fn decode(self, code: u32) -> Option<DType> {
        DTYPE_CODES.iter().find_map(|&(dtype, current, legacy)| {
            let matches = match self {
                DTypeEncoding::Current => current.0 == code,
                DTypeEncoding::Legacy => legacy.is_some_and(|l| l.0 == code),
            };
            matches.then_some(dtype)
        })
    }

    /// Encodes an element type; `None` when this encoding has no code for it.
    pub fn encode(self, dtype: DType) -> Option<u32> {
        let &(_, current, legacy) = DTYPE_CODES.iter().find(|(d, _, _)| *d == dtype)?;
        match self {
            DTypeEncoding::Current => Some(current.0),
            DTypeEncoding::Legacy => legacy.map(|l| l.0),
        }
    }
}

/// The version a loaded runtime reports through `nrt_get_version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuntimeVersion {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
    /// Maintenance version.
    pub maintenance: u64,
    /// Free-form detail string.
    pub detail: String,
    /// Git hash of the build.
    pub git_hash: String,
}

impl RuntimeVersion {
    /// Converts the C struct, reading the strings up to their NUL (or the end of the field).
    pub fn from_raw(raw: &nrt_version_t) -> RuntimeVersion {
        RuntimeVersion {
            major: raw.rt_major,
            minor: raw.rt_minor,
            patch: raw.rt_patch,
            maintenance: raw.rt_maintenance,
            detail: c_chars_to_string(&raw.rt_detail),
            git_hash: c_chars_to_string(&raw.git_hash),
        }
    }
}

impl fmt::Display for RuntimeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.patch, self.maintenance
        )
    }
}

/// Reads a fixed-size C `char` array as text: up to the first NUL, lossily decoded.
pub fn c_chars_to_string(chars: &[std::os::raw::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_status_has_a_name() {
        let documented = [
            0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 14, 15, 101, 1002, 1003, 1004, 1005, 1006, 1100,
            1200, 1201, 1202, 1203, 1204, 1205, 1206,
        ];
        for code in documented {
            assert!(
                NRT_STATUS(code).name().is_some(),
                "status {code} has no name"
            );
        }
        assert_eq!(
            NRT_STATUS::NRT_EXEC_BAD_INPUT.to_string(),
            "NRT_EXEC_BAD_INPUT (1002)"
        );
        assert_eq!(
            NRT_STATUS(1003).name(),
            Some("NRT_EXEC_COMPLETED_WITH_NUM_ERR")
        );
    }

    #[test]
    fn unknown_status_is_named_as_such() {
        for code in [8, 12, 16, 100, 1001, 1207, u32::MAX] {
            assert_eq!(NRT_STATUS(code).name(), None);
            assert_eq!(
                NRT_STATUS(code).to_string(),
                format!("unknown status {code}")
            );
        }
    }

    #[test]
    fn other_newtypes_have_names() {
        assert_eq!(
            nrt_tensor_placement_t(1).to_string(),
            "NRT_TENSOR_PLACEMENT_HOST (1)"
        );
        assert_eq!(
            nrt_tensor_usage_t(1).name(),
            Some("NRT_TENSOR_USAGE_OUTPUT")
        );
        assert_eq!(nrt_tensor_usage_t(7).to_string(), "unknown tensor usage 7");
        assert_eq!(nrt_instance_family_t(4).name(), Some("NRT_INSTANCE_INF2"));
        assert_eq!(
            nrt_instance_size_t(6).name(),
            Some("NRT_INSTANCE_SIZE_32XL")
        );
        assert_eq!(
            nrt_framework_type_t(1).name(),
            Some("NRT_FRAMEWORK_TYPE_NO_FW")
        );
        assert_eq!(nrt_dtype_t(0xA).name(), Some("NRT_DTYPE_FLOAT32"));
    }

    #[test]
    fn current_dtype_codes_match_the_documented_table() {
        let enc = DTypeEncoding::Current;
        let expected = [
            (0x1, DType::U64),
            (0x2, DType::I8),
            (0x3, DType::U8),
            (0x4, DType::I16),
            (0x5, DType::U16),
            (0x6, DType::BF16),
            (0x7, DType::F16),
            (0x8, DType::I32),
            (0x9, DType::U32),
            (0xA, DType::F32),
            (0xB, DType::F32R),
            (0xC, DType::I64),
            (0xD, DType::Fp8E3),
            (0xE, DType::Fp8E4),
            (0xF, DType::Fp8E5),
        ];
        for (code, dtype) in expected {
            assert_eq!(enc.decode(code), Some(dtype), "code {code:#x}");
            assert_eq!(enc.encode(dtype), Some(code));
        }
        assert_eq!(enc.decode(0), None);
        assert_eq!(enc.decode(0x10), None);
    }

    #[test]
    fn legacy_dtype_codes_match_the_documented_table() {
        let enc = DTypeEncoding::Legacy;
        let expected = [
            (1, DType::F32),
            (2, DType::F16),
            (3, DType::BF16),
            (4, DType::I8),
            (5, DType::U8),
            (6, DType::I16),
            (7, DType::U16),
            (8, DType::I32),
            (9, DType::U32),
            (10, DType::I64),
            (11, DType::U64),
        ];
        for (code, dtype) in expected {
            assert_eq!(enc.decode(code), Some(dtype), "code {code}");
            assert_eq!(enc.encode(dtype), Some(code));
        }
        assert_eq!(enc.decode(0), None);
        assert_eq!(enc.decode(12), None);
        assert_eq!(enc.encode(DType::Fp8E4), None);
    }

    #[test]
    fn only_int32_and_uint32_agree_between_encodings() {
        for code in 0..=16 {
            let (legacy, current) = (
                DTypeEncoding::Legacy.decode(code),
                DTypeEncoding::Current.decode(code),
            );
            if legacy.is_some() && legacy == current {
                assert!(code == 8 || code == 9, "code {code} agrees unexpectedly");
            }
        }
    }

    #[test]
    fn encoding_follows_the_runtime_version() {
        let v = |major, minor| RuntimeVersion {
            major,
            minor,
            patch: 0,
            maintenance: 0,
            detail: String::new(),
            git_hash: String::new(),
        };
        assert_eq!(DTypeEncoding::for_version(None), DTypeEncoding::Legacy);
        assert_eq!(
            DTypeEncoding::for_version(Some(&v(2, 29))),
            DTypeEncoding::Legacy
        );
        assert_eq!(
            DTypeEncoding::for_version(Some(&v(2, 30))),
            DTypeEncoding::Current
        );
        assert_eq!(
            DTypeEncoding::for_version(Some(&v(2, 34))),
            DTypeEncoding::Current
        );
        assert_eq!(
            DTypeEncoding::for_version(Some(&v(3, 0))),
            DTypeEncoding::Current
        );
    }

    #[test]
    fn dtype_names_round_trip() {
        for dtype in DType::ALL {
            assert_eq!(DType::from_name(dtype.name()), Some(dtype));
        }
        assert_eq!(DType::from_name("f128"), None);
    }
}
