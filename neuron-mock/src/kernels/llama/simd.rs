//! x86_64 vector code for the attention's arithmetic and the elementwise operations, chosen
//! at run time (the weight products have their own kernels, `packed_simd`).
//!
//! Most of it is the portable code of [`super::linalg`] compiled for the widest instruction
//! set the CPU has, which gives the same bits as the portable path. The attention scores have
//! hand-written kernels for the usual head widths. With AVX-512 (`zmm_scores`) 16 scores at
//! once: each score's 16 partial sums sit in one vector, and the 16 vectors are reduced
//! together by a transposing tree of shuffles and adds (45 instructions for 16 scores, against
//! about 8 a score to sum each vector across), in exactly the order the portable code
//! defines. With AVX2 (`ymm_scores`) 8 at once, a score's partial sums in two vectors: the
//! compiled portable code summed each score across its lanes, and whole verify passes of 8
//! tokens over a context of 768 measured 21% faster with the kernel (4 tokens 15%, a decode
//! step 12%; over 256 positions 9%, 5% and none).
//!
//! Everything here is safe code: the intrinsics are safe inside functions compiled for the
//! features they need, and vectors are built from slices through `bytemuck`. The only unsafe
//! operation is calling such a function, after checking that the CPU has the features.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::linalg::SCORE_LANES;

/// The instruction sets the kernels can use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// Neither: the portable loops.
    None,
    /// AVX2, FMA and F16C (which every CPU with the first two has): 256-bit vectors, 16
    /// registers.
    Avx2,
    /// AVX-512F as well: 512-bit vectors, 32 registers.
    Avx512,
}

/// The widest vector instructions the CPU has, or the narrower ones `NEURON_MOCK_SIMD`
/// (`avx512`, `avx2` or `none`) asks for, to compare the paths on one machine.
pub(super) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let detected = if !(is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"))
        {
            Level::None
        } else if is_x86_feature_detected!("avx512f") {
            Level::Avx512
        } else {
            Level::Avx2
        };
        let asked = match std::env::var("NEURON_MOCK_SIMD").as_deref() {
            Ok("none") => Level::None,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        // Never more than the CPU has.
        match (detected, asked) {
            (Level::None, _) | (_, Level::None) => Level::None,
            (Level::Avx2, _) | (_, Level::Avx2) => Level::Avx2,
            _ => Level::Avx512,
        }
    })
}

/// Defines `pub(super) fn $name(args) -> bool`: runs `$avx2` or `$avx512` (plain Rust, usually
/// a portable kernel) compiled for the widest instruction set the CPU has (see [`level`]), or
/// returns `false` having done nothing when it has neither.
macro_rules! at_widest_level {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) {
        avx2: $avx2:expr,
        avx512: $avx512:expr $(,)?
    }) => {
        $(#[$doc])*
        pub(super) fn $name($($arg: $ty),*) -> bool {
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) {
                $avx2
            }
            #[target_feature(enable = "avx2,fma,avx512f")]
            fn avx512($($arg: $ty),*) {
                $avx512
            }
            match level() {
                Level::None => false,
                Level::Avx2 => {
                    // SAFETY: avx2 and fma were detected at run time (level()); the function
                    // is safe Rust apart from requiring those features.
                    unsafe { avx2($($arg),*) };
                    true
                }
                Level::Avx512 => {
                    // SAFETY: avx2, fma and avx512f were detected at run time (level()); the
                    // function is safe Rust apart from requiring those features.
                    unsafe { avx512($($arg),*) };
                    true
                }
            }
        }
    };
}

at_widest_level! {
    /// [`super::linalg::attention_scores`] in vector instructions, with the same bits.
    fn attention_scores(keys: &[f32], queries: &[f32], out: &mut [f32], width: usize) {
        // The usual head widths have a kernel each (all offsets constant); others, rare, the
        // portable code compiled for the same instructions.
        avx2: match width {
            64 => ymm_scores::<64>(keys, queries, out),
            128 => ymm_scores::<128>(keys, queries, out),
            32 => ymm_scores::<32>(keys, queries, out),
            _ => super::linalg::attention_scores_portable(keys, queries, out, width),
        },
        avx512: match width {
            64 => zmm_scores::<64>(keys, queries, out),
            128 => zmm_scores::<128>(keys, queries, out),
            32 => zmm_scores::<32>(keys, queries, out),
            _ => super::linalg::attention_scores_portable(keys, queries, out, width),
        },
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,avx512f")]
fn load(s: &[f32]) -> __m512 {
    let lanes: [f32; SCORE_LANES] = s.try_into().unwrap_or([0.0; SCORE_LANES]);
    bytemuck::cast(lanes)
}

/// [`super::linalg::attention_scores`] for keys and queries of `W` values (a multiple of 16),
/// 16 keys at a time: accumulator `a` of a block holds the 16 partial sums of key
/// `4·(a % 4) + a / 4`, the order in which [`reduce16`] leaves the scores in key order.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f")]
fn zmm_scores<const W: usize>(keys: &[f32], queries: &[f32], out: &mut [f32]) {
    let (queries, _) = queries.as_chunks::<W>();
    let Some(positions) = out.len().checked_div(queries.len()) else {
        return;
    };
    let keys = &keys.as_chunks::<W>().0[..positions];
    // Zeroed once: only the last block can be short, and it is the only one copied here.
    let mut padded = [[0.0f32; W]; SCORE_LANES];
    let mut first = 0;
    while first < positions {
        let n = (positions - first).min(SCORE_LANES);
        // A whole block as an array (a short last one padded with zero keys, which add
        // nothing): every load below is at a constant offset, with no bounds checks.
        let block: &[[f32; W]; SCORE_LANES] = match keys[first..first + n].try_into() {
            Ok(block) => block,
            Err(_) => {
                padded[..n].copy_from_slice(&keys[first..first + n]);
                &padded
            }
        };
        // Each query against the block: its keys stay in L1 for the next query.
        for (q, query) in queries.iter().enumerate() {
            let mut acc = [_mm512_setzero_ps(); SCORE_LANES];
            for c in (0..W).step_by(SCORE_LANES) {
                let qv = load(&query[c..c + SCORE_LANES]);
                for (a, acc) in acc.iter_mut().enumerate() {
                    let key = &block[4 * (a % 4) + a / 4];
                    *acc = _mm512_fmadd_ps(load(&key[c..c + SCORE_LANES]), qv, *acc);
                }
            }
            let scores: [f32; SCORE_LANES] = bytemuck::cast(reduce16(acc));
            out[q * positions + first..q * positions + first + n].copy_from_slice(&scores[..n]);
        }
        first += n;
    }
}

/// Sums each of 16 vectors across its lanes, all at once, in the order of
/// [`super::linalg::halving_sum`] (lanes `l` and `l + 8`, then `+ 4`, `+ 2`, `+ 1`): the sum of
/// `v[4·r + q]` lands in lane `4·q + r`.
#[inline]
#[target_feature(enable = "avx2,fma,avx512f")]
fn reduce16(v: [__m512; SCORE_LANES]) -> __m512 {
    // Lanes l + 8 (128-bit quarters 0, 1 with 2, 3): two vectors' 8 sums in one.
    let b: [__m512; 8] = std::array::from_fn(|m| {
        let (x, y) = (v[2 * m], v[2 * m + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
        )
    });
    // Lanes l + 4 (quarters 0 with 1, 2 with 3): four vectors' 4 sums, a quarter each.
    let c: [__m512; 4] = std::array::from_fn(|m| {
        let (x, y) = (b[2 * m], b[2 * m + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
        )
    });
    // Lanes l + 2, within each quarter: two sums per vector and quarter.
    let d: [__m512; 2] = std::array::from_fn(|m| {
        let (x, y) = (c[2 * m], c[2 * m + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0b01_00_01_00>(x, y),
            _mm512_shuffle_ps::<0b11_10_11_10>(x, y),
        )
    });
    // Lanes l + 1: one sum per vector.
    _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(d[0], d[1]),
        _mm512_shuffle_ps::<0b11_01_11_01>(d[0], d[1]),
    )
}

/// Keys an AVX2 block scores at once: one score per lane of a 256-bit vector.
const YMM_KEYS: usize = 8;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn load8(s: &[f32]) -> __m256 {
    let lanes: [f32; YMM_KEYS] = s.try_into().unwrap_or([0.0; YMM_KEYS]);
    bytemuck::cast(lanes)
}

/// [`super::linalg::attention_scores`] for keys and queries of `W` values (a multiple of 16),
/// 8 keys at a time with AVX2: a score's 16 partial sums are two vectors (lanes 0-7 and
/// 8-15), so a block takes its keys four at a time ([`ymm_quarter`]: 8 accumulators, the
/// most that leave registers for the query and a key), and [`reduce8`] sums the 8 keys'
/// vectors together.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn ymm_scores<const W: usize>(keys: &[f32], queries: &[f32], out: &mut [f32]) {
    let (queries, _) = queries.as_chunks::<W>();
    let Some(positions) = out.len().checked_div(queries.len()) else {
        return;
    };
    let keys = &keys.as_chunks::<W>().0[..positions];
    // As in zmm_scores: a short last block is padded with zero keys.
    let mut padded = [[0.0f32; W]; YMM_KEYS];
    let mut first = 0;
    while first < positions {
        let n = (positions - first).min(YMM_KEYS);
        let block: &[[f32; W]; YMM_KEYS] = match keys[first..first + n].try_into() {
            Ok(block) => block,
            Err(_) => {
                padded[..n].copy_from_slice(&keys[first..first + n]);
                &padded
            }
        };
        for (q, query) in queries.iter().enumerate() {
            let (low, high) = (ymm_quarter(block, 0, query), ymm_quarter(block, 4, query));
            // Key 4·(j % 2) + j / 2 in vector j: the order reduce8 leaves in key order.
            let sums = std::array::from_fn(|j| if j % 2 == 0 { low[j / 2] } else { high[j / 2] });
            let scores: [f32; YMM_KEYS] = bytemuck::cast(reduce8(sums));
            out[q * positions + first..q * positions + first + n].copy_from_slice(&scores[..n]);
        }
        first += n;
    }
}

/// Keys `first..first + 4` of `block` against `query`: for each key, its 16 partial sums
/// (two vectors) added lane `l` to lane `l + 8`, the first step of the halving sum.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn ymm_quarter<const W: usize>(
    block: &[[f32; W]; YMM_KEYS],
    first: usize,
    query: &[f32; W],
) -> [__m256; 4] {
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    for c in (0..W).step_by(SCORE_LANES) {
        let qv = [load8(&query[c..c + 8]), load8(&query[c + 8..c + 16])];
        for (i, acc) in acc.iter_mut().enumerate() {
            let key = &block[first + i];
            for (v, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(load8(&key[c + 8 * v..c + 8 * v + 8]), qv[v], *acc);
            }
        }
    }
    acc.map(|[low, high]| _mm256_add_ps(low, high))
}

/// Sums each of 8 vectors across its lanes, all at once, in the order of the halving sum's
/// last three steps (lanes `l` and `l + 4`, then `+ 2`, `+ 1`): the sum of `v[2·r + q]` lands
/// in lane `4·q + r`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn reduce8(v: [__m256; YMM_KEYS]) -> __m256 {
    // Lanes l + 4 (the 128-bit halves): two vectors' 4 sums in one.
    let a: [__m256; 4] = std::array::from_fn(|m| {
        let (x, y) = (v[2 * m], v[2 * m + 1]);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(x, y),
            _mm256_permute2f128_ps::<0x31>(x, y),
        )
    });
    // Lanes l + 2, within each half: two sums per vector and half.
    let b: [__m256; 2] = std::array::from_fn(|m| {
        let (x, y) = (a[2 * m], a[2 * m + 1]);
        _mm256_add_ps(
            _mm256_shuffle_ps::<0b01_00_01_00>(x, y),
            _mm256_shuffle_ps::<0b11_10_11_10>(x, y),
        )
    });
    // Lanes l + 1: one sum per vector.
    _mm256_add_ps(
        _mm256_shuffle_ps::<0b10_00_10_00>(b[0], b[1]),
        _mm256_shuffle_ps::<0b11_01_11_01>(b[0], b[1]),
    )
}

at_widest_level! {
    /// [`super::linalg::weighted_sums`] in vector instructions: the same plain code as the
    /// portable path, so the same bits.
    fn weighted_sums(weights: &[f32], rows: &[f32], out: &mut [f32], width: usize) {
        // Three queries' accumulators of 32 floats: 12 of the 16 registers.
        avx2: super::linalg::weighted_sums_portable::<32>(weights, rows, out, width),
        // Three queries' accumulators of 64 floats (a whole head of 64): 12 of the 32.
        avx512: super::linalg::weighted_sums_portable::<64>(weights, rows, out, width),
    }
}

at_widest_level! {
    /// [`super::linalg::swiglu_in_place`] in vector instructions: the same plain code as the
    /// portable path, so the same bits (the baseline build ran it four lanes at a time, 0.7 ms
    /// of a 16-token pass of SmolLM2).
    fn swiglu_in_place(gate: &mut [f32], up: &[f32]) {
        avx2: super::linalg::swiglu_portable(gate, up),
        avx512: super::linalg::swiglu_portable(gate, up),
    }
}

at_widest_level! {
    /// [`super::linalg::exp_in_place`] in vector instructions: the same plain code as the
    /// portable path, so the same bits.
    fn exp_in_place(xs: &mut [f32]) {
        avx2: super::linalg::exp_portable(xs),
        avx512: super::linalg::exp_portable(xs),
    }
}

/// Asks the CPU to bring the cache line holding `v` into the cache level `HINT` names
/// (`_MM_HINT_T0`: L1, `_MM_HINT_T1`: L2); it never faults.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn prefetch<const HINT: i32>(v: &f32) {
    // A prefetch is only a hint: it never faults or changes memory.
    _mm_prefetch::<HINT>((v as *const f32).cast::<i8>());
}

/// Floats per 64-byte cache line.
pub(super) const LINE: usize = 16;
