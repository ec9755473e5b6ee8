//! Dequantization of GGML blocks to `f32`.
//!
//! Each quantized type stores a run of elements as one block: a scale (and for the `_1` and
//! `_K` types a minimum) in half precision, then small integers. The formulas are those of the
//! GGML block layouts; arithmetic is done in `f32` in the same order as GGML's reference
//! dequantization, so results are bit-identical to it.

use half::f16;

use super::ggml_type::GgmlType;

/// Why a buffer could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DequantError {
    /// No dequantizer for this type.
    Unsupported(GgmlType),
    /// `bytes` does not hold exactly `out.len()` elements of the type.
    Length {
        /// Bytes given.
        bytes: usize,
        /// Elements requested.
        elements: usize,
    },
}

/// The types [`dequantize`] supports.
pub const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F64,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// Dequantizes `bytes`, holding `out.len()` elements of type `ty`, into `out`.
///
/// # Errors
///
/// [`DequantError::Unsupported`] for types outside [`SUPPORTED`], [`DequantError::Length`] if
/// the sizes disagree (including a partial block).
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    if !SUPPORTED.contains(&ty) {
        return Err(DequantError::Unsupported(ty));
    }
    let expected = ty.bytes_for(out.len() as u64);
    if expected != Some(bytes.len() as u64) {
        return Err(DequantError::Length {
            bytes: bytes.len(),
            elements: out.len(),
        });
    }
    let layout = match ty.layout() {
        Some(l) => l,
        None => return Err(DequantError::Unsupported(ty)),
    };
    let block: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, o| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, o| o[0] = half_at(b, 0),
        GgmlType::BF16 => |b, o| o[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::F64 => |b, o| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            o[0] = f64::from_le_bytes(a) as f32;
        },
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        _ => return Err(DequantError::Unsupported(ty)),
    };
    for (b, o) in bytes
        .chunks_exact(layout.block_bytes)
        .zip(out.chunks_exact_mut(layout.block_elems))
    {
        block(b, o);
    }
    Ok(())
}

/// The little-endian `f16` at `b[i..i + 2]`, as `f32`.
fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Q8_0: `d: f16, qs: [i8; 32]`; `y = qs * d`.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = (q as i8) as f32 * d;
    }
}

/// Q4_0: `d: f16, qs: [u8; 16]`; low nibbles are elements 0..16, high nibbles 16..32,
/// each `(nibble - 8) * d`.
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `d: f16, m: f16, qs: [u8; 16]`; nibbles as in Q4_0, each `nibble * d + m`.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0x0F) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The fifth bits of a Q5 block: bit `j` of the little-endian `u32` is element `j`'s.
fn fifth_bits(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Q5_0: `d: f16, qh: u32, qs: [u8; 16]`; element `j` is `(nibble | bit_j << 4) - 16`, times `d`.
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qh = fifth_bits(&b[2..6]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((q as u32 & 0x0F) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q as u32 >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; as Q5_0 without the offset, `q * d + m`.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qh = fifth_bits(&b[4..8]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((q as u32 & 0x0F) | h0) as f32 * d + m;
        y[j + 16] = ((q as u32 >> 4) | h1) as f32 * d + m;
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K or
/// Q5_K block: sub-blocks 0..4 use the low 6 bits of bytes `j` and `j + 4`; 4..8 combine a
/// nibble of byte `j + 4` with the top 2 bits of bytes `j - 4` and `j`.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        let sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (sc as f32, m as f32)
    }
}

/// Q4_K: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]` for 256 elements in 8 sub-blocks
/// of 32; sub-block `s` is `d * scale_s * nibble - dmin * min_s`. Each 32 bytes of `qs` hold
/// two sub-blocks: low nibbles first, then high nibbles.
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Q5_K: `d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]`; as Q4_K with a
/// fifth bit per element: for chunk `c`, bit `2c` of `qh[l]` goes with the low nibble and bit
/// `2c + 1` with the high nibble.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let hi1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let hi2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((q[l] & 0x0F) + hi1) as f32 - m1;
            y[l + 32] = d2 * ((q[l] >> 4) + hi2) as f32 - m2;
        }
    }
}

/// Q6_K: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16` for 256 elements in 16
/// sub-blocks of 16, each `d * scale * (q - 32)` with 6-bit `q` = 4 bits from `ql` and 2 from
/// `qh`. Each half (128 elements) uses 64 bytes of `ql`, 32 of `qh` and 8 scales.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let scale = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = scale(0) * q1 as f32;
            y[l + 32] = scale(2) * q2 as f32;
            y[l + 64] = scale(4) * q3 as f32;
            y[l + 96] = scale(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Blocks built by hand, with expected values worked out from the layout descriptions.

    use super::*;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    fn deq(ty: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; n];
        dequantize(ty, bytes, &mut out).unwrap();
        out
    }

    #[test]
    fn plain_types() {
        assert_eq!(deq(GgmlType::F32, &1.5f32.to_le_bytes(), 1), vec![1.5]);
        assert_eq!(deq(GgmlType::F16, &h(-0.25), 1), vec![-0.25]);
        assert_eq!(deq(GgmlType::BF16, &[0x80, 0x3F], 1), vec![1.0]);
        assert_eq!(deq(GgmlType::F64, &2.5f64.to_le_bytes(), 1), vec![2.5]);
    }

    #[test]
    fn q8_0_block() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let expected: Vec<f32> = (0..32).map(|i| (i - 16) as f32 * 0.5).collect();
        assert_eq!(deq(GgmlType::Q8_0, &b, 32), expected);
    }

    #[test]
    fn q4_0_block() {
        // Byte j = (high << 4) | low with low = j, high = 15 - j.
        let mut b = h(2.0).to_vec();
        b.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let mut expected = vec![0f32; 32];
        for j in 0..16 {
            expected[j] = (j as f32 - 8.0) * 2.0;
            expected[j + 16] = ((15 - j) as f32 - 8.0) * 2.0;
        }
        assert_eq!(deq(GgmlType::Q4_0, &b, 32), expected);
    }

    #[test]
    fn q4_1_block() {
        // d = 0.25, m = -1: element = nibble / 4 - 1. Byte 0x3A: low 10, high 3.
        let mut b = h(0.25).to_vec();
        b.extend(h(-1.0));
        b.extend([0x3A; 16]);
        let mut expected = vec![10.0 * 0.25 - 1.0; 16];
        expected.extend(vec![3.0 * 0.25 - 1.0; 16]);
        assert_eq!(deq(GgmlType::Q4_1, &b, 32), expected);
    }

    #[test]
    fn q5_0_block() {
        // qh has bit 0 (element 0) and bit 17 (element 17) set; all nibbles 0x21 (low 1, high 2).
        let mut b = h(1.0).to_vec();
        b.extend(((1u32 << 0) | (1u32 << 17)).to_le_bytes());
        b.extend([0x21; 16]);
        let mut expected = vec![1.0 - 16.0; 16];
        expected.extend(vec![2.0 - 16.0; 16]);
        expected[0] = (1 + 16) as f32 - 16.0;
        expected[17] = (2 + 16) as f32 - 16.0;
        assert_eq!(deq(GgmlType::Q5_0, &b, 32), expected);
    }

    #[test]
    fn q5_1_block() {
        let mut b = h(0.5).to_vec();
        b.extend(h(3.0));
        b.extend((1u32 << 31).to_le_bytes()); // element 31 gets the fifth bit
        b.extend([0xF0; 16]); // low 0, high 15
        let mut expected = vec![3.0; 16];
        expected.extend(vec![15.0 * 0.5 + 3.0; 16]);
        expected[31] = 31.0 * 0.5 + 3.0;
        assert_eq!(deq(GgmlType::Q5_1, &b, 32), expected);
    }

    /// Packs 8 six-bit scales and mins the way Q4_K/Q5_K store them (inverse of
    /// `scale_min_k4`, written from the layout description).
    fn pack_k4(sc: [u8; 8], mn: [u8; 8]) -> [u8; 12] {
        let mut q = [0u8; 12];
        for j in 0..4 {
            q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
            q[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6);
            q[j + 8] = (sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4);
        }
        q
    }

    #[test]
    fn k4_scale_packing() {
        let sc = [1, 2, 3, 63, 17, 33, 48, 62];
        let mn = [0, 5, 60, 7, 40, 9, 31, 63];
        let q = pack_k4(sc, mn);
        for j in 0..8 {
            assert_eq!(
                scale_min_k4(j, &q),
                (sc[j] as f32, mn[j] as f32),
                "sub-block {j}"
            );
        }
    }

    #[test]
    fn q4_k_block() {
        let sc = [1, 2, 3, 4, 5, 6, 7, 8];
        let mn = [0, 1, 0, 1, 0, 1, 0, 40];
        let mut b = h(0.5).to_vec();
        b.extend(h(0.25));
        b.extend(pack_k4(sc, mn));
        // qs: byte l of chunk c = (high << 4) | low with low = l % 16, high = 15 - l % 16.
        for _ in 0..4 {
            b.extend((0..32u8).map(|l| ((15 - l % 16) << 4) | (l % 16)));
        }
        let y = deq(GgmlType::Q4_K, &b, 256);
        for c in 0..4 {
            for l in 0..32 {
                let (s1, m1) = (sc[2 * c] as f32, mn[2 * c] as f32);
                let (s2, m2) = (sc[2 * c + 1] as f32, mn[2 * c + 1] as f32);
                assert_eq!(y[64 * c + l], 0.5 * s1 * (l % 16) as f32 - 0.25 * m1);
                assert_eq!(
                    y[64 * c + 32 + l],
                    0.5 * s2 * (15 - l % 16) as f32 - 0.25 * m2
                );
            }
        }
        assert_eq!(y[255], 0.5 * 8.0 * 0.0 - 0.25 * 40.0);
    }

    #[test]
    fn q5_k_block() {
        let sc = [2; 8];
        let mn = [1; 8];
        let mut b = h(1.0).to_vec();
        b.extend(h(0.5));
        b.extend(pack_k4(sc, mn));
        // qh[l]: bit 0 set for even l (chunk 0 low nibbles), bit 7 set for all (chunk 3 high).
        b.extend((0..32u8).map(|l| if l % 2 == 0 { 0x81 } else { 0x80 }));
        b.extend([0x53; 128]); // low 3, high 5
        let y = deq(GgmlType::Q5_K, &b, 256);
        for c in 0..4 {
            for l in 0..32 {
                let lo = 3 + if c == 0 && l % 2 == 0 { 16 } else { 0 };
                let hi = 5 + if c == 3 { 16 } else { 0 };
                assert_eq!(y[64 * c + l], 2.0 * lo as f32 - 0.5, "chunk {c} low {l}");
                assert_eq!(
                    y[64 * c + 32 + l],
                    2.0 * hi as f32 - 0.5,
                    "chunk {c} high {l}"
                );
            }
        }
    }

    #[test]
    fn q6_k_block() {
        // ql low nibbles 1, high nibbles 2; qh = 0b11_10_01_00 so the four 2-bit fields are
        // 0, 1, 2, 3; scales 1..=16 (scale 16 negative: -16); d = 0.5.
        let mut b = vec![0x21u8; 128];
        b.extend([0b1110_0100u8; 64]);
        let scales: Vec<i8> = (1..=15).chain([-16]).collect();
        b.extend(scales.iter().map(|&s| s as u8));
        b.extend(h(0.5));
        let y = deq(GgmlType::Q6_K, &b, 256);
        for half in 0..2 {
            for l in 0..32 {
                let is = l / 16;
                let s = |k: usize| scales[8 * half + is + k] as f32 * 0.5;
                let base = 128 * half;
                assert_eq!(y[base + l], s(0) * (1 - 32) as f32);
                assert_eq!(y[base + l + 32], s(2) * ((1 | (1 << 4)) - 32) as f32);
                assert_eq!(y[base + l + 64], s(4) * ((2 | (2 << 4)) - 32) as f32);
                assert_eq!(y[base + l + 96], s(6) * ((2 | (3 << 4)) - 32) as f32);
            }
        }
    }

    #[test]
    fn multiple_blocks_and_errors() {
        let mut b = h(1.0).to_vec();
        b.extend([1u8; 32]);
        b.extend(h(2.0));
        b.extend([1u8; 32]);
        let y = deq(GgmlType::Q8_0, &b, 64);
        assert_eq!((y[0], y[63]), (1.0, 2.0));
        let mut out = vec![0f32; 32];
        assert_eq!(
            dequantize(GgmlType::Q8_0, &b, &mut out),
            Err(DequantError::Length {
                bytes: 68,
                elements: 32
            })
        );
        assert_eq!(
            dequantize(GgmlType::Q2_K, &[0; 84], &mut vec![0f32; 256]),
            Err(DequantError::Unsupported(GgmlType::Q2_K))
        );
        assert_eq!(
            dequantize(GgmlType(77), &[], &mut []),
            Err(DequantError::Unsupported(GgmlType(77)))
        );
    }
}
