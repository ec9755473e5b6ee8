//! Element types of stored tensors and their conversion to `f32`.

use std::fmt;

/// The element type of a tensor in a safetensors file (the names the format uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // Each variant is the safetensors dtype of the same name.
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl Dtype {
    /// Parses the safetensors name (`"F32"`, `"BF16"`, ...).
    pub fn from_safetensors_name(name: &str) -> Option<Self> {
        Some(match name {
            "BOOL" => Self::Bool,
            "U8" => Self::U8,
            "I8" => Self::I8,
            "F8_E5M2" => Self::F8E5M2,
            "F8_E4M3" => Self::F8E4M3,
            "I16" => Self::I16,
            "U16" => Self::U16,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I32" => Self::I32,
            "U32" => Self::U32,
            "F32" => Self::F32,
            "F64" => Self::F64,
            "I64" => Self::I64,
            "U64" => Self::U64,
            _ => return None,
        })
    }

    /// The safetensors name of this type.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "U8",
            Self::I8 => "I8",
            Self::F8E5M2 => "F8_E5M2",
            Self::F8E4M3 => "F8_E4M3",
            Self::I16 => "I16",
            Self::U16 => "U16",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I32 => "I32",
            Self::U32 => "U32",
            Self::F32 => "F32",
            Self::F64 => "F64",
            Self::I64 => "I64",
            Self::U64 => "U64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::Bool | Self::U8 | Self::I8 | Self::F8E5M2 | Self::F8E4M3 => 1,
            Self::I16 | Self::U16 | Self::F16 | Self::BF16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::F64 | Self::I64 | Self::U64 => 8,
        }
    }

    /// Whether [`decode_f32`] can read this type (the floating-point types models store
    /// weights in).
    pub fn is_float(self) -> bool {
        matches!(self, Self::F16 | Self::BF16 | Self::F32 | Self::F64)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// Converts little-endian elements of a floating-point `dtype` to `f32`, writing into `out`.
///
/// Returns `false` (writing nothing) if `dtype` is not a floating-point type or the lengths do
/// not match (`bytes.len() != out.len() * dtype.size()`); callers turn that into an error that
/// names the tensor.
pub fn decode_f32(dtype: Dtype, bytes: &[u8], out: &mut [f32]) -> bool {
    if !dtype.is_float() || bytes.len() != out.len() * dtype.size() {
        return false;
    }
    match dtype {
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *o = f64::from_le_bytes(a) as f32;
            }
        }
        _ => return false,
    }
    true
}

/// Appends `values` to `out` as little-endian elements of `dtype` (`F32`, `F16` or `BF16`,
/// rounding to nearest even). Returns `false` for other types.
pub fn encode_f32(dtype: Dtype, values: &[f32], out: &mut Vec<u8>) -> bool {
    match dtype {
        Dtype::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
        Dtype::F16 => out.extend(
            values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes()),
        ),
        Dtype::BF16 => out.extend(
            values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()),
        ),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in [
            Dtype::Bool,
            Dtype::U8,
            Dtype::I8,
            Dtype::F8E5M2,
            Dtype::F8E4M3,
            Dtype::I16,
            Dtype::U16,
            Dtype::F16,
            Dtype::BF16,
            Dtype::I32,
            Dtype::U32,
            Dtype::F32,
            Dtype::F64,
            Dtype::I64,
            Dtype::U64,
        ] {
            assert_eq!(Dtype::from_safetensors_name(d.safetensors_name()), Some(d));
        }
        assert_eq!(Dtype::from_safetensors_name("f32"), None);
    }

    #[test]
    fn decodes_hand_written_bit_patterns() {
        let mut out = [0f32; 2];
        // bf16 0x3FC0 = 1.5, 0xC000 = -2.0
        assert!(decode_f32(Dtype::BF16, &[0xC0, 0x3F, 0x00, 0xC0], &mut out));
        assert_eq!(out, [1.5, -2.0]);
        // f16 0x3C00 = 1.0, 0x3555 = 0.333251953125
        assert!(decode_f32(Dtype::F16, &[0x00, 0x3C, 0x55, 0x35], &mut out));
        assert_eq!(out, [1.0, 0.333_251_95]);
        let mut one = [0f32; 1];
        assert!(decode_f32(Dtype::F64, &0.25f64.to_le_bytes(), &mut one));
        assert_eq!(one, [0.25]);
        assert!(!decode_f32(Dtype::I32, &[0; 4], &mut one));
        assert!(!decode_f32(Dtype::F32, &[0; 3], &mut one));
    }

    #[test]
    fn encodes_and_decodes_back() {
        let v = [1.0f32, -0.5, 3.25];
        for d in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let mut bytes = Vec::new();
            assert!(encode_f32(d, &v, &mut bytes));
            let mut back = [0f32; 3];
            assert!(decode_f32(d, &bytes, &mut back));
            assert_eq!(back, v, "{d}");
        }
        assert!(!encode_f32(Dtype::I8, &v, &mut Vec::new()));
    }
}
