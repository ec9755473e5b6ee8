//! GGML tensor element types: their codes, block sizes and names.
//!
//! The code comes from the file, so it is a newtype over the integer (an unknown code is a
//! value, not undefined behaviour); [`GgmlType::layout`] knows the block geometry of the types
//! whose layout is fixed by the GGUF specification, which lets the reader validate every
//! tensor's byte range even for types [`super::quant`] cannot dequantize.

use std::fmt;

/// A GGML element type code as stored in a GGUF tensor info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

/// How a type packs elements: `block_elems` elements take `block_bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// Elements per block (1 for plain types).
    pub block_elems: usize,
    /// Bytes per block.
    pub block_bytes: usize,
}

#[allow(missing_docs)] // Each constant is the GGML type of the same name.
impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q5_0: Self = Self(6);
    pub const Q5_1: Self = Self(7);
    pub const Q8_0: Self = Self(8);
    pub const Q8_1: Self = Self(9);
    pub const Q2_K: Self = Self(10);
    pub const Q3_K: Self = Self(11);
    pub const Q4_K: Self = Self(12);
    pub const Q5_K: Self = Self(13);
    pub const Q6_K: Self = Self(14);
    pub const Q8_K: Self = Self(15);
    pub const I8: Self = Self(24);
    pub const I16: Self = Self(25);
    pub const I32: Self = Self(26);
    pub const I64: Self = Self(27);
    pub const F64: Self = Self(28);
    pub const BF16: Self = Self(30);
}

/// Name, elements per block and bytes per block of every type with a known layout.
const TABLE: &[(GgmlType, &str, usize, usize)] = &[
    (GgmlType::F32, "F32", 1, 4),
    (GgmlType::F16, "F16", 1, 2),
    (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20),
    (GgmlType::Q5_0, "Q5_0", 32, 22),
    (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34),
    (GgmlType::Q8_1, "Q8_1", 32, 36),
    (GgmlType::Q2_K, "Q2_K", 256, 84),
    (GgmlType::Q3_K, "Q3_K", 256, 110),
    (GgmlType::Q4_K, "Q4_K", 256, 144),
    (GgmlType::Q5_K, "Q5_K", 256, 176),
    (GgmlType::Q6_K, "Q6_K", 256, 210),
    (GgmlType::Q8_K, "Q8_K", 256, 292),
    (GgmlType::I8, "I8", 1, 1),
    (GgmlType::I16, "I16", 1, 2),
    (GgmlType::I32, "I32", 1, 4),
    (GgmlType::I64, "I64", 1, 8),
    (GgmlType::F64, "F64", 1, 8),
    (GgmlType::BF16, "BF16", 1, 2),
];

impl GgmlType {
    fn entry(self) -> Option<&'static (GgmlType, &'static str, usize, usize)> {
        TABLE.iter().find(|e| e.0 == self)
    }

    /// The block layout, if this type's layout is known.
    pub fn layout(self) -> Option<BlockLayout> {
        self.entry()
            .map(|&(_, _, block_elems, block_bytes)| BlockLayout {
                block_elems,
                block_bytes,
            })
    }

    /// The GGML name (`"Q4_1"`), if known.
    pub fn name(self) -> Option<&'static str> {
        self.entry().map(|e| e.1)
    }

    /// Bytes taken by `elements` elements, or `None` if the layout is unknown, `elements` is
    /// not a whole number of blocks, or the size overflows.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        let l = self.layout()?;
        let (be, bb) = (l.block_elems as u64, l.block_bytes as u64);
        if !elements.is_multiple_of(be) {
            return None;
        }
        (elements / be).checked_mul(bb)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "unknown type {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_block_layouts() {
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q8_0.bytes_for(32), Some(34));
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::F32.bytes_for(3), Some(12));
        assert_eq!(GgmlType::Q4_0.bytes_for(33), None);
        assert_eq!(GgmlType(99).bytes_for(32), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(u64::MAX - 31), None);
        assert_eq!(GgmlType(99).to_string(), "unknown type 99");
        assert_eq!(GgmlType::BF16.to_string(), "BF16");
    }
}
