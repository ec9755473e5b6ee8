//! Matrix products in bf16 on Intel AMX tiles, for the crates that multiply in bf16 on a CPU:
//! the mock device's `NEURON_MOCK_MATMUL=bf16` kernels and the training of Medusa heads.
//!
//! A NeuronCore multiplies matrices in bf16 (operands rounded to bf16, sums in f32); a Xeon
//! with AMX does the same with `TDPBF16PS`, one instruction multiplying a tile of up to 16
//! rows × 32 bf16 values by a tile of 32 × 16 and adding into 16 × 16 f32 sums. This crate
//! holds what every user of the tiles needs once:
//!
//! - [`available`]: whether the CPU has AMX (and the AVX-512 conversions) and Linux granted this
//!   process the tile state (`arch_prctl`, asked once);
//! - [`to_bf16`] and [`rows_to_bf16`]: rounding to bf16, to nearest with ties to even, and
//!   activations as zero-padded bf16 rows (an A operand);
//! - [`Tiles`]: the calling thread's tile configuration, released when dropped, and the macros
//!   [`tile_load!`], [`tile_store!`], [`tile_zero!`] and [`tile_dpbf16ps!`] (inline assembly:
//!   Rust has no stable AMX intrinsics);
//! - [`PackedB`] and [`gemm`]: a general product `a · b` whose right operand is converted once
//!   into the tile layout and reused (a frozen matrix, such as a model's LM head); both
//!   operands are converted from a [`Strided`] view, so a matrix's transpose needs no copy;
//! - `dot`: the same sums on a CPU without AMX but with AVX-512 BF16 (`VDPBF16PS`), which
//!   [`gemm`] falls back to and the mock device's bf16 products use there too;
//! - [`int8`]: beside the bf16 products, sums of 8-bit weights times 16-bit inputs with
//!   AVX-512 VNNI or AVX2, for matrix-vector products bound by reading their weights (a feature
//!   draft's).
//!
//! Layout of a right operand (B tile). `TDPBF16PS` reads B as 16 rows of 16 pairs: row `i`
//! of the tile for columns `j..j + 16` and inner indices `c..c + 32` holds, for each column, the
//! pair `(b[c + 2i][j + col], b[c + 2i + 1][j + col])` (the "VNNI" order). Inner indices past
//! the matrix's are zeros in both operands, so they add nothing.
//!
//! Exactness: each output element is one tile row's sum over the inner index in a fixed
//! order, 32 at a time, whatever the number of rows multiplied at once (AMX rows are
//! independent): results do not depend on how the rows are grouped or split between threads.

use std::sync::OnceLock;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
pub mod dot;
pub mod int8;

/// Inner indices per tile step: 32 bf16 values fill a 64-byte tile row.
pub const COLUMNS: usize = 32;
/// Rows of an A or C tile at most, and columns of a B or C tile.
pub const ROWS: usize = 16;
/// Bytes in one tile row.
pub const ROW_BYTES: usize = 64;
/// u32 values (bf16 pairs) in one B tile: 16 rows of 16.
pub const TILE_WORDS: usize = COLUMNS / 2 * ROWS;

/// Whether [`gemm`] can run here: on AMX tiles ([`available`]) or, without them, with
/// AVX-512 BF16 dot products (`dot`, the same sums).
pub fn products_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available() || dot::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this process can use the AMX kernels: the CPU has AMX-TILE, AMX-BF16 and
/// AVX-512F, BW and BF16 (for the conversions), and Linux granted the process the tile state.
/// Asked once.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    // CPUID leaf 7, sub-leaf 0: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
    let leaf = std::arch::x86_64::__cpuid_count(7, 0);
    let amx = leaf.edx & (1 << 22) != 0 && leaf.edx & (1 << 24) != 0;
    amx && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512bf16")
        && tile_state_granted()
}

/// Other processors have no AMX.
#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

/// Asks Linux (5.16 or later) for this process's permission to use the AMX tile data.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn tile_state_granted() -> bool {
    /// `arch_prctl` request for permission to use an extended state component.
    const ARCH_REQ_XCOMP_PERM: libc::c_ulong = 0x1023;
    /// The extended state component of the AMX tile data.
    const XFEATURE_XTILEDATA: libc::c_ulong = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM takes two integers and touches no memory of
    // ours; on kernels without it, it fails with an error code.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

/// Other systems: not asked (the AMX paths are for Linux, as the Neuron runtime is).
#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn tile_state_granted() -> bool {
    false
}

/// `x` rounded to bf16 (to nearest, ties to even), as its 16 bits.
pub fn to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    let rounded = u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16;
    // A NaN stays a NaN (rounding could carry a small payload into infinity). A select, not a
    // branch, so that loops over many values vectorise.
    let quiet = (u >> 16) | 0x40;
    (if x.is_nan() { quiet } else { rounded }) as u16
}

/// The f32 value of bf16 bits.
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Inner dimension `k` padded to whole tile steps.
pub fn padded(k: usize) -> usize {
    k.next_multiple_of(COLUMNS)
}

/// Rows `[rows][k]` f32 as `[rows][padded(k)]` bf16, zero-padded, into `out` (an A operand).
/// Many rows are converted on the thread pool (a pass of dozens of tokens converts every
/// product's activations: serial, that left the pool idle).
pub fn rows_to_bf16(x: &[f32], rows: usize, k: usize, out: &mut Vec<u16>) {
    /// Rows from which the pool converts them (fewer are cheaper than waking it).
    const PARALLEL_ROWS: usize = 32;
    let k32 = padded(k);
    // Every value is written below, so a buffer of the right length needs no clearing.
    out.resize(rows * k32, 0);
    if k == 0 {
        return;
    }
    let convert = |(row, src): (&mut [u16], &[f32])| row_to_bf16(row, src);
    if rows >= PARALLEL_ROWS {
        out.par_chunks_exact_mut(k32)
            .zip(x.par_chunks_exact(k))
            .for_each(convert);
    } else {
        out.chunks_exact_mut(k32)
            .zip(x.chunks_exact(k))
            .for_each(convert);
    }
}

/// One row of [`rows_to_bf16`]: `src` rounded into the start of `row`, zeros after. With
/// AVX-512 the same code runs 16 values at a time (the baseline build's four a time made the
/// conversions of a 16-token pass of SmolLM2 0.7 ms).
fn row_to_bf16(row: &mut [u16], src: &[f32]) {
    #[inline(always)]
    fn convert(row: &mut [u16], src: &[f32]) {
        for (o, &v) in row.iter_mut().zip(src) {
            *o = to_bf16(v);
        }
        row[src.len()..].fill(0);
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw")]
        fn avx512(row: &mut [u16], src: &[f32]) {
            convert(row, src)
        }
        if is_x86_feature_detected!("avx512bw") {
            // SAFETY: avx512f and avx512bw were detected at run time; the function is safe
            // Rust apart from requiring them.
            unsafe { avx512(row, src) };
            return;
        }
    }
    convert(row, src)
}

/// The AMX tile configuration (the 64-byte operand of `LDTILECFG`, palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    /// Bytes per row of tiles 0-15.
    colsb: [u16; 16],
    /// Rows of tiles 0-15.
    rows: [u8; 16],
    tail: [u8; 16],
}

/// The calling thread's tiles tmm0-7, configured with 64-byte rows and `rows[t]` rows each (0:
/// tile unused); released (so that the thread's context switches stop saving them) when
/// dropped. Hold one while using the tile macros.
#[derive(Debug)]
pub struct Tiles {
    rows: [u8; 8],
}

impl Tiles {
    /// Configures the calling thread's tiles.
    ///
    /// # Panics
    /// If [`available`] is false or a tile has more than 16 rows.
    pub fn configure(rows: [u8; 8]) -> Self {
        assert!(available(), "AMX tiles need a CPU and a kernel with AMX");
        assert!(rows.iter().all(|&r| usize::from(r) <= ROWS));
        let mut config = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
            tail: [0; 16],
        };
        for (t, &r) in rows.iter().enumerate() {
            if r > 0 {
                config.rows[t] = r;
                config.colsb[t] = ROW_BYTES as u16;
            }
        }
        load_config(&config);
        Tiles { rows }
    }

    /// The rows of each tile, as configured.
    pub fn rows(&self) -> [u8; 8] {
        self.rows
    }
}

#[cfg(target_arch = "x86_64")]
fn load_config(config: &TileConfig) {
    // SAFETY: the caller checked `available()` (the process has the tile state); the operand
    // is a valid 64-byte palette-1 configuration (rows ≤ 16, rows of 64 bytes).
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) config, options(nostack, readonly, preserves_flags))
    };
}

#[cfg(not(target_arch = "x86_64"))]
fn load_config(_: &TileConfig) {
    unreachable!("available() is false without x86-64")
}

impl Drop for Tiles {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: releases the tile state this thread configured; touches no memory.
        unsafe {
            std::arch::asm!("tilerelease", options(nostack, nomem, preserves_flags))
        };
    }
}

/// Loads tile `tmm$t` from `$ptr`, rows `$stride` bytes apart. Unsafe: the thread must hold
/// [`Tiles`] configuring the tile, and every row it reads (the configured rows of 64 bytes)
/// must be readable memory.
#[macro_export]
macro_rules! tile_load {
    ($t:literal, $ptr:expr, $stride:expr) => {
        ::core::arch::asm!(
            concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
            p = in(reg) $ptr,
            s = in(reg) $stride,
            options(nostack, readonly, preserves_flags)
        )
    };
}

/// Stores tile `tmm$t` to `$ptr`, rows `$stride` bytes apart. Unsafe: the thread must hold
/// [`Tiles`] configuring the tile, and every row it writes must be writable memory of ours.
#[macro_export]
macro_rules! tile_store {
    ($t:literal, $ptr:expr, $stride:expr) => {
        ::core::arch::asm!(
            concat!("tilestored [{p} + {s}*1], tmm", $t),
            p = in(reg) $ptr,
            s = in(reg) $stride,
            options(nostack, preserves_flags)
        )
    };
}

/// Zeroes tile `tmm$t`. Unsafe: the thread must hold [`Tiles`] configuring it.
#[macro_export]
macro_rules! tile_zero {
    ($t:literal) => {
        ::core::arch::asm!(
            concat!("tilezero tmm", $t),
            options(nostack, nomem, preserves_flags)
        )
    };
}

/// `tmm$c += tmm$a · tmm$b` in bf16 with f32 sums (`TDPBF16PS`). Unsafe: the thread must hold
/// [`Tiles`] configuring the three tiles with matching shapes.
#[macro_export]
macro_rules! tile_dpbf16ps {
    ($c:literal, $a:literal, $b:literal) => {
        ::core::arch::asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem, preserves_flags)
        )
    };
}

/// A matrix of f32 read from a slice with any (non-negative) strides: element `(r, c)` is
/// `data[r * row_stride + c * col_stride]`. A row-major matrix and its transpose are both
/// views of one slice, so an operand that is another matrix's transpose (a weight matrix
/// `[out, in]` applied as `x · Wᵀ`, a gradient `dzᵀ · x`) is converted straight from it,
/// not copied into row-major order first.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    /// The `[rows, cols]` matrix with element `(r, c)` at `data[r * row_stride + c *
    /// col_stride]`.
    ///
    /// # Panics
    /// If the last element is past the end of `data`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            assert!(
                last < data.len(),
                "Strided: a {rows} x {cols} matrix with strides ({row_stride}, {col_stride}) \
                 reaches element {last} of {}",
                data.len()
            );
        }
        Strided {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The row-major `[rows, cols]` matrix `data`.
    ///
    /// # Panics
    /// If `data` does not hold `rows * cols` values.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "Strided: data is not {rows} x {cols}"
        );
        Strided::new(data, rows, cols, cols, 1)
    }

    /// The transpose (the same elements, rows and columns swapped).
    pub fn t(self) -> Self {
        Strided {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Its rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Its columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `range` alone.
    ///
    /// # Panics
    /// If the range is past the last row.
    pub fn row_range(self, range: std::ops::Range<usize>) -> Self {
        assert!(
            range.start <= range.end && range.end <= self.rows,
            "Strided: rows {range:?} of {}",
            self.rows
        );
        let start = (range.start * self.row_stride).min(self.data.len());
        Strided {
            data: &self.data[start..],
            rows: range.len(),
            ..self
        }
    }

    /// Rows `c` and `c + 1` (zero past the last row) of columns `j..j + words.len()` in bf16,
    /// row `c` in the low half of each word: one row of a B tile. The value of each word does
    /// not depend on the layout; the loops do, so that the common ones (a row-major matrix
    /// and a transposed one) index their runs directly: packing a weight matrix at every
    /// training step was a tenth of training's time through [`Strided::at`].
    fn pair_words(&self, c: usize, j: usize, words: &mut [u32]) {
        let half = |v: f32| u32::from(to_bf16(v));
        if c + 1 >= self.rows {
            for (col, word) in words.iter_mut().enumerate() {
                *word = if c < self.rows {
                    half(self.at(c, j + col))
                } else {
                    0
                };
            }
            return;
        }
        let (rs, cs) = (self.row_stride, self.col_stride);
        if cs == 1 {
            // Row-major: both rows' columns are runs.
            let first = &self.data[c * rs + j..][..words.len()];
            let second = &self.data[(c + 1) * rs + j..][..words.len()];
            for ((word, &a), &b) in words.iter_mut().zip(first).zip(second) {
                *word = half(a) | (half(b) << 16);
            }
        } else if rs == 1 {
            // Transposed: each column's two rows are neighbours.
            for (col, word) in words.iter_mut().enumerate() {
                let pair = &self.data[c + (j + col) * cs..][..2];
                *word = half(pair[0]) | (half(pair[1]) << 16);
            }
        } else {
            for (col, word) in words.iter_mut().enumerate() {
                *word = half(self.at(c, j + col)) | (half(self.at(c + 1, j + col)) << 16);
            }
        }
    }

    /// Element `(r, c)`.
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.row_stride + c * self.col_stride]
    }

    /// Row `r`'s columns `cols` as a slice, when rows are contiguous.
    fn row_slice(&self, r: usize, cols: std::ops::Range<usize>) -> Option<&'a [f32]> {
        (self.col_stride == 1).then(|| &self.data[r * self.row_stride + cols.start..][..cols.len()])
    }
}

/// A left operand `a` `[m, k]` in bf16 A tiles: group `g` (rows `16g..16g + 16`, past `m`
/// zeros) holds its `padded(k) / 32` tiles one after the other, each 16 rows × 32 values
/// contiguous. (Tiles loaded straight from a row-major matrix with thousands of columns read
/// 16 rows a multiple of 4 KiB apart, which all fall in one L1 set; 1 KiB tiles do not.)
#[derive(Clone, Default)]
pub struct PackedA {
    m: usize,
    k: usize,
    /// `[group][step][ROWS × COLUMNS]`.
    tiles: Vec<u16>,
}

impl PackedA {
    /// Converts the `[m, k]` matrix `a`, reusing this one's memory.
    pub fn convert(&mut self, a: Strided<'_>) {
        let (m, k) = (a.rows, a.cols);
        let steps = padded(k) / COLUMNS;
        self.m = m;
        self.k = k;
        // Whole tiles are written over below, so only the padding of partial ones is zeroed
        // (not the whole buffer, as clearing it would).
        self.tiles
            .resize(m.div_ceil(ROWS) * steps * ROWS * COLUMNS, 0);
        if k == 0 {
            return;
        }
        for (t, tile) in self.tiles.chunks_exact_mut(ROWS * COLUMNS).enumerate() {
            let (g, s) = (t / steps, t % steps);
            let (rows, cols) = (
                g * ROWS..m.min((g + 1) * ROWS),
                s * COLUMNS..k.min((s + 1) * COLUMNS),
            );
            if rows.len() < ROWS || cols.len() < COLUMNS {
                tile.fill(0);
            }
            if a.col_stride == 1 || a.row_stride != 1 {
                // Row by row (a row-major source reads each row's 32 values in a run).
                for (r, dst) in rows.zip(tile.chunks_exact_mut(COLUMNS)) {
                    match a.row_slice(r, cols.clone()) {
                        Some(values) => {
                            for (d, &v) in dst.iter_mut().zip(values) {
                                *d = to_bf16(v);
                            }
                        }
                        None => {
                            for (d, c) in dst.iter_mut().zip(cols.clone()) {
                                *d = to_bf16(a.at(r, c));
                            }
                        }
                    }
                }
            } else {
                // Column by column: a transposed source holds each column's 16 rows in a run.
                let first = rows.start;
                for (i, c) in cols.enumerate() {
                    for r in rows.clone() {
                        tile[(r - first) * COLUMNS + i] = to_bf16(a.at(r, c));
                    }
                }
            }
        }
    }

    /// Its rows.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Its inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Group `g`'s tiles.
    fn group(&self, g: usize) -> &[u16] {
        let size = padded(self.k) / COLUMNS * ROWS * COLUMNS;
        &self.tiles[g * size..][..size]
    }
}

/// A right operand `b` `[k, n]` in bf16 B tiles, converted once: panel `p` (columns
/// `16p..16p + 16`, past `n` zeros) holds its `padded(k) / 32` tiles one after the other.
#[derive(Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    /// `[panel][step][TILE_WORDS]`.
    tiles: Vec<u32>,
}

impl PackedB {
    /// Converts the `[k, n]` matrix `b`, its panels shared between the thread pool's threads.
    pub fn new(b: Strided<'_>) -> Self {
        let (k, n) = (b.rows, b.cols);
        let steps = padded(k) / COLUMNS;
        let panels = n.div_ceil(ROWS);
        let mut tiles = vec![0u32; panels * steps * TILE_WORDS];
        if steps > 0 {
            tiles
                .par_chunks_mut(steps * TILE_WORDS)
                .enumerate()
                .for_each(|(p, panel)| {
                    let j = p * ROWS;
                    let width = ROWS.min(n - j);
                    for (s, tile) in panel.chunks_exact_mut(TILE_WORDS).enumerate() {
                        for (i, words) in tile.chunks_exact_mut(ROWS).enumerate() {
                            b.pair_words(s * COLUMNS + 2 * i, j, &mut words[..width]);
                        }
                    }
                });
        }
        PackedB { k, n, tiles }
    }

    /// Its inner dimension (rows of `b`).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Its columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Panel `p`'s tiles.
    fn panel(&self, p: usize) -> &[u32] {
        let size = padded(self.k) / COLUMNS * TILE_WORDS;
        &self.tiles[p * size..][..size]
    }
}

// The tiles are megabytes of bits: debug output names the shapes only.
impl std::fmt::Debug for PackedA {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedA {{ m: {}, k: {} }}", self.m, self.k)
    }
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedB {{ k: {}, n: {} }}", self.k, self.n)
    }
}

/// `c = a · b`, or `c += a · b` when `add`: rows `rows` of `a` (a range of whole 16-row
/// groups, or running to `a.m()`) into the same rows of `c`, rows `ldc ≥ b.n()` f32 apart, of
/// which the first `b.n()` are written. Runs on the calling thread; split the groups between
/// threads for more.
///
/// Blocks of 32 rows × 32 columns: two A tiles (tmm4-5) against two B tiles (tmm6-7) into four
/// C tiles (tmm0-3), so that each tile loaded feeds two multiply-adds. Column blocks are the
/// outer loop, so each part of `b` is read from memory once.
///
/// # Panics
/// If the shapes do not match, `rows` does not start on a group, or [`products_available`] is
/// false.
pub fn gemm(
    a: &PackedA,
    rows: std::ops::Range<usize>,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    add: bool,
) {
    assert_eq!(a.k, b.k, "gemm: inner dimensions differ");
    assert!(
        rows.start <= rows.end && rows.end <= a.m,
        "gemm: rows past a's"
    );
    assert!(
        ldc >= b.n && c.len() >= rows.end * ldc,
        "gemm: c is too small"
    );
    if rows.is_empty() || b.n == 0 {
        return;
    }
    assert!(
        rows.start.is_multiple_of(ROWS),
        "gemm: rows start inside a group"
    );
    assert!(
        rows.end == a.m || rows.end.is_multiple_of(ROWS),
        "gemm: rows end inside a group"
    );
    if b.k == 0 {
        if !add {
            for row in c[rows.start * ldc..].chunks_mut(ldc).take(rows.len()) {
                row[..b.n].fill(0.0);
            }
        }
        return;
    }
    let groups = rows.start / ROWS..rows.end.div_ceil(ROWS);
    #[cfg(target_arch = "x86_64")]
    if !available() {
        return gemm_dot(a, groups, b, c, ldc, add);
    }
    let _tiles = Tiles::configure([16; 8]);
    for p in (0..b.n.div_ceil(ROWS)).step_by(2) {
        for g in groups.clone().step_by(2) {
            block(
                a,
                (g, (g + 1 < groups.end).then_some(g + 1)),
                b,
                p,
                (c, ldc, add),
            );
        }
    }
}

/// [`gemm`] on a CPU without AMX, with AVX-512 BF16 dot products ([`dot`]): the same sums,
/// blocks of 4 panels against 6 rows of a group at a time, panels in the outer loop.
///
/// # Panics
/// If [`dot::available`] is false.
#[cfg(target_arch = "x86_64")]
fn gemm_dot(
    a: &PackedA,
    groups: std::ops::Range<usize>,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
    add: bool,
) {
    assert!(
        dot::available(),
        "bf16 products need a CPU with AMX or AVX-512 BF16"
    );
    let pairs = padded(a.k) / 2;
    let panels = b.n.div_ceil(ROWS);
    let steps = COLUMNS / 2;
    let mut sums: dot::Sums = [[[0.0; ROWS]; dot::PANELS]; dot::ROWS];
    for p in (0..panels).step_by(dot::PANELS) {
        let n = dot::PANELS.min(panels - p);
        // Panel `p + j`'s pair row `q` is tile `q / 16`'s row `q % 16`: 16 words (pairs) at
        // 16 q, a tile being 16 rows of 16 words.
        let panel: [&[u32]; dot::PANELS] = std::array::from_fn(|j| b.panel(p + j.min(n - 1)));
        let b_row = move |j: usize, q: usize| -> [u16; dot::PAIR_ROW] {
            let words: [u32; ROWS] = panel[j][q * ROWS..][..ROWS].try_into().unwrap_or([0; ROWS]);
            // SAFETY: [u32; 16] and [u16; 32] are both 64 bytes of plain integers; on x86-64
            // (little-endian) each word's lower half, its even index, comes first.
            unsafe { std::mem::transmute::<[u32; ROWS], [u16; dot::PAIR_ROW]>(words) }
        };
        for g in groups.clone() {
            let group = a.group(g);
            let first = g * ROWS;
            let in_group = ROWS.min(a.m - first);
            for r0 in (0..in_group).step_by(dot::ROWS) {
                let rows = dot::ROWS.min(in_group - r0);
                // Row `r0 + r`'s pair `q`: tile `q / 16`, that row, columns 2(q % 16)...
                let a_pair = move |r: usize, q: usize| {
                    let at = (q / steps) * ROWS * COLUMNS + (r0 + r) * COLUMNS + 2 * (q % steps);
                    let pair = &group[at..][..2];
                    dot::swapped(pair[0], pair[1])
                };
                dot::block(n, rows, pairs, b_row, a_pair, &mut sums);
                for (r, row_sums) in sums.iter().enumerate().take(rows) {
                    let out = &mut c[(first + r0 + r) * ldc..];
                    for (j, panel_sums) in row_sums.iter().enumerate().take(n) {
                        let col = (p + j) * ROWS;
                        let width = ROWS.min(b.n - col);
                        let dst = &mut out[col..col + width];
                        if add {
                            dst.iter_mut().zip(panel_sums).for_each(|(d, s)| *d += s);
                        } else {
                            dst.copy_from_slice(&panel_sums[..width]);
                        }
                    }
                }
            }
        }
    }
}

/// One block of [`gemm`]: groups `g0` and `g1` (if any) of `a` times panels `p` and
/// `p + 1` (if any) of `b`, into (or, when `add`, onto) `c`, rows `ldc` apart. Every tile is
/// configured with 16 rows; rows past `a.m()` are zeros and not stored.
#[cfg(target_arch = "x86_64")]
fn block(
    a: &PackedA,
    (g0, g1): (usize, Option<usize>),
    b: &PackedB,
    p: usize,
    (c, ldc, add): (&mut [f32], usize, bool),
) {
    let second_panel = p + 1 < b.n.div_ceil(ROWS);
    let a0 = a.group(g0);
    let a1 = a.group(g1.unwrap_or(g0));
    let b0 = b.panel(p);
    let b1 = b.panel(if second_panel { p + 1 } else { p });
    // SAFETY: the caller holds `Tiles` configuring tmm0-7 with 16 rows of 64 bytes.
    unsafe {
        tile_zero!("0");
        tile_zero!("1");
        tile_zero!("2");
        tile_zero!("3");
    }
    let tile_a = ROWS * COLUMNS;
    for s in 0..padded(a.k) / COLUMNS {
        let at0 = a0[s * tile_a..][..tile_a].as_ptr();
        let at1 = a1[s * tile_a..][..tile_a].as_ptr();
        let bt0 = b0[s * TILE_WORDS..][..TILE_WORDS].as_ptr();
        let bt1 = b1[s * TILE_WORDS..][..TILE_WORDS].as_ptr();
        // SAFETY: tiles configured as above. Each tile read is 16 rows of 64 bytes, 64 bytes
        // apart: the 1 KiB at `at0`, `at1` (16 × 32 u16) or `bt0`, `bt1` (16 × 16 u32), each
        // inside its operand by the slicing.
        unsafe {
            tile_load!("4", at0, ROW_BYTES);
            tile_load!("6", bt0, ROW_BYTES);
            tile_dpbf16ps!("0", "4", "6");
            if second_panel {
                tile_load!("7", bt1, ROW_BYTES);
                tile_dpbf16ps!("1", "4", "7");
            }
            if g1.is_some() {
                tile_load!("5", at1, ROW_BYTES);
                tile_dpbf16ps!("2", "5", "6");
                if second_panel {
                    tile_dpbf16ps!("3", "5", "7");
                }
            }
        }
    }
    let mut scratch = [0f32; ROWS * ROWS];
    for (h, group) in [(0, Some(g0)), (1, g1)] {
        let Some(group) = group else { continue };
        let first = group * ROWS;
        let rows = ROWS.min(a.m - first);
        for q in 0..if second_panel { 2 } else { 1 } {
            let j = (p + q) * ROWS;
            let width = ROWS.min(b.n - j);
            // Whole tiles written over go straight into `c`; others through `scratch`.
            let direct = rows == ROWS && width == ROWS && !add;
            let (out, stride) = if direct {
                let span = &mut c[first * ldc + j..][..(ROWS - 1) * ldc + ROWS];
                (span.as_mut_ptr(), ldc * 4)
            } else {
                (scratch.as_mut_ptr(), ROW_BYTES)
            };
            // SAFETY: tile 2h + q is configured with 16 rows of 64 bytes (16 f32); the store
            // writes them `stride` bytes apart from `out`: into `scratch` (16 × 16 f32, 64
            // bytes apart), or into `c` rows first..first + 16 (ldc f32 apart), columns
            // j..j + 16, the span the slicing checked.
            unsafe {
                match (h, q) {
                    (0, 0) => tile_store!("0", out, stride),
                    (0, _) => tile_store!("1", out, stride),
                    (_, 0) => tile_store!("2", out, stride),
                    _ => tile_store!("3", out, stride),
                }
            }
            if direct {
                continue;
            }
            for (i, sums) in scratch.chunks_exact(ROWS).take(rows).enumerate() {
                let dst = &mut c[(first + i) * ldc + j..][..width];
                if add {
                    dst.iter_mut().zip(sums).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(&sums[..width]);
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn block(
    _: &PackedA,
    _: (usize, Option<usize>),
    _: &PackedB,
    _: usize,
    _: (&mut [f32], usize, bool),
) {
    unreachable!("available() is false without x86-64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn strided_views_check_their_bounds_and_select_rows() {
        let data: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let m = Strided::row_major(&data, 3, 4);
        assert_eq!((m.t().rows(), m.t().cols()), (4, 3));
        assert_eq!(m.t().at(3, 1), m.at(1, 3));
        let rows = m.row_range(1..3);
        assert_eq!((rows.rows(), rows.at(0, 0), rows.at(1, 2)), (2, 4.0, 10.0));
        assert_eq!(m.row_range(3..3).rows(), 0);
        // A view reaching past its slice is refused when made, not when read.
        let past = std::panic::catch_unwind(|| Strided::new(&data, 3, 4, 4, 2));
        assert!(past.is_err());
        let short = std::panic::catch_unwind(|| Strided::row_major(&data[..11], 3, 4));
        assert!(short.is_err());
    }

    #[test]
    fn rows_convert_alike_however_many_and_pad_with_zeros() {
        // Few rows are converted on the calling thread, many on the pool; a buffer left
        // longer and dirty by an earlier call is cut and written over.
        let k = 45;
        let x = pseudo_random(40 * k, 3);
        let mut out = vec![u16::MAX; 50 * padded(k)];
        for rows in [1, 5, 31, 32, 40] {
            rows_to_bf16(&x, rows, k, &mut out);
            assert_eq!(out.len(), rows * padded(k));
            for (r, row) in out.chunks_exact(padded(k)).enumerate() {
                let want: Vec<u16> = x[r * k..(r + 1) * k].iter().map(|&v| to_bf16(v)).collect();
                assert_eq!(&row[..k], &want[..], "{rows} rows: row {r}");
                assert!(
                    row[k..].iter().all(|&v| v == 0),
                    "{rows} rows: row {r}'s padding"
                );
            }
            out.resize(50 * padded(k), u16::MAX);
        }
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
    }

    #[test]
    fn products_match_bf16_arithmetic_and_do_not_depend_on_the_rows_multiplied() {
        if !products_available() {
            eprintln!("skipped: this CPU has neither AMX nor AVX-512 BF16");
            return;
        }
        // Odd shapes: rows not a multiple of 16 or 32, one group, columns not a multiple of
        // 16 or 32, a single panel, an inner dimension not a multiple of 32, or empty.
        let mut reused = PackedA::default();
        for &(m, k, n) in &[
            (1, 32, 16),
            (3, 45, 40),
            (16, 576, 100),
            (21, 100, 70),
            (32, 64, 16),
            (70, 33, 49),
            (5, 0, 20),
            (40, 256, 17),
        ] {
            let a = pseudo_random(m * k, 7);
            let bm = pseudo_random(k * n, 8);
            let packed = PackedB::new(Strided::row_major(&bm, k, n));
            let mut a16 = PackedA::default();
            a16.convert(Strided::row_major(&a, m, k));
            let ldc = n + 3;
            let mut c = vec![f32::NAN; m * ldc];
            gemm(&a16, 0..m, &packed, &mut c, ldc, false);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|l| {
                            f64::from(from_bf16(to_bf16(a[i * k + l])))
                                * f64::from(from_bf16(to_bf16(bm[l * n + j])))
                        })
                        .sum();
                    let scale: f64 = (0..k)
                        .map(|l| f64::from(a[i * k + l] * bm[l * n + j]).abs())
                        .sum();
                    let got = c[i * ldc + j];
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-5 * scale.max(1.0),
                        "{m}x{k}x{n}: c[{i}][{j}] = {got}, bf16 arithmetic {want}"
                    );
                }
                assert!(
                    c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()),
                    "wrote past n"
                );
            }
            // Each row alone, and the groups split in two, give the same bits.
            for i in 0..m {
                let mut one = PackedA::default();
                one.convert(Strided::row_major(&a[i * k..(i + 1) * k], 1, k));
                let mut alone = vec![0.0; n];
                gemm(&one, 0..1, &packed, &mut alone, n, false);
                for j in 0..n {
                    assert_eq!(
                        alone[j].to_bits(),
                        c[i * ldc + j].to_bits(),
                        "{m}x{k}x{n}: row {i}"
                    );
                }
            }
            let half = (m / 2).next_multiple_of(ROWS).min(m);
            let mut split = vec![f32::NAN; m * ldc];
            gemm(&a16, 0..half, &packed, &mut split, ldc, false);
            gemm(&a16, half..m, &packed, &mut split, ldc, false);
            assert!(
                split
                    .iter()
                    .zip(&c)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
            // Operands converted from their transposes' memory, and from a strided view with
            // gaps (every other element of a wider buffer), give the same bits.
            let transpose = |x: &[f32], rows: usize, cols: usize| -> Vec<f32> {
                (0..cols * rows)
                    .map(|i| x[(i % rows) * cols + i / rows])
                    .collect()
            };
            let (at, bt) = (transpose(&a, m, k), transpose(&bm, k, n));
            let spaced: Vec<f32> = a.iter().flat_map(|&v| [v, f32::NAN]).collect();
            let mut a16t = PackedA::default();
            a16t.convert(Strided::row_major(&at, k, m).t());
            let mut a16s = PackedA::default();
            a16s.convert(Strided::new(&spaced, m, k, 2 * k, 2));
            let packed_t = PackedB::new(Strided::row_major(&bt, n, k).t());
            let spaced_b: Vec<f32> = bm.iter().flat_map(|&v| [v, f32::NAN]).collect();
            let packed_s = PackedB::new(Strided::new(&spaced_b, k, n, 2 * n, 2));
            // A conversion into memory holding another shape's tiles (NaNs) leaves none of them.
            let (m2, k2) = (m + ROWS, k + COLUMNS);
            reused.convert(Strided::row_major(&vec![f32::NAN; m2 * k2], m2, k2));
            reused.convert(Strided::row_major(&a, m, k));
            for (a16, b) in [
                (&a16t, &packed),
                (&a16s, &packed),
                (&a16, &packed_t),
                (&a16, &packed_s),
                (&reused, &packed),
            ] {
                let mut other = vec![f32::NAN; m * ldc];
                gemm(a16, 0..m, b, &mut other, ldc, false);
                assert!(
                    other
                        .iter()
                        .zip(&c)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n}: transposed or strided operands"
                );
            }
            // Adding onto `c` adds the same sums again.
            let before = c.clone();
            gemm(&a16, 0..m, &packed, &mut c, ldc, true);
            for (x, y) in c.iter().zip(&before) {
                assert!(
                    x.is_nan() && y.is_nan() || *x == 2.0 * y,
                    "{m}x{k}x{n}: adding {y} gave {x}"
                );
            }
        }
    }

    /// Checks every sum of [`gemm`] against `dot::definition` bit for bit, on mixed-size
    /// values (so that the order of the additions shows).
    #[cfg(target_arch = "x86_64")]
    fn gemm_gives_the_definitions_bits() {
        for &(m, k, n) in &[(5, 64, 40), (21, 100, 17), (16, 576, 33)] {
            let scaled = |v: Vec<f32>| -> Vec<f32> {
                v.iter()
                    .enumerate()
                    .map(|(i, x)| x * [1.0, 1e3, 1e-3, 37.0][i % 4])
                    .collect()
            };
            let a = scaled(pseudo_random(m * k, 21));
            let bm = scaled(pseudo_random(k * n, 22));
            let mut a16 = PackedA::default();
            a16.convert(Strided::row_major(&a, m, k));
            let packed = PackedB::new(Strided::row_major(&bm, k, n));
            let mut c = vec![f32::NAN; m * n];
            gemm(&a16, 0..m, &packed, &mut c, n, false);
            for i in 0..m {
                let row: Vec<u16> = a[i * k..(i + 1) * k].iter().map(|&v| to_bf16(v)).collect();
                for j in 0..n {
                    let col: Vec<u16> = (0..k).map(|l| to_bf16(bm[l * n + j])).collect();
                    let want = dot::definition(&row, &col);
                    assert_eq!(
                        c[i * n + j].to_bits(),
                        want.to_bits(),
                        "{m}x{k}x{n}: c[{i}][{j}] = {}, the definition {want}",
                        c[i * n + j]
                    );
                }
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn products_without_amx_give_the_definitions_bits() {
        if available() || !dot::available() {
            eprintln!("skipped: this CPU has AMX, or no AVX-512 BF16");
            return;
        }
        gemm_gives_the_definitions_bits();
    }

    /// Whether AMX tiles give the very bits `TDPBF16PS`'s definition does (and so the same as
    /// the AVX-512 BF16 path): not known yet, so not run by default.
    #[test]
    #[cfg(target_arch = "x86_64")]
    #[ignore = "on an AMX machine, run with --ignored to see whether AMX gives the definition's bits"]
    fn amx_products_give_the_definitions_bits() {
        assert!(available(), "this check needs AMX");
        gemm_gives_the_definitions_bits();
    }
}
