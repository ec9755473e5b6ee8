//! Weight matrices in the mock device's layout, and their product with activations.
//!
//! A compiled program chooses how its weights sit in device memory; neuronx-cc does, and so
//! does the mock. The mock's matrices (`[rows][cols]` in the Hugging Face layout) are stored
//! in **panels** of [`PANEL`] rows: panel `p` holds rows `p·PANEL ..` column by column, so
//! element `(r, c)` is at `(r / PANEL)·cols·PANEL + c·PANEL + r % PANEL`, and the last panel is
//! padded with zero rows. The shape of such a tensor is `[panels, cols, PANEL]`
//! ([`packed_shape`]); `parallel-decode`'s compile step writes the weight shards this way
//! with [`pack`].
//!
//! Why: one column step of a panel is one vector of `PANEL` weights, multiplied by one
//! activation broadcast from each token, accumulating into `PANEL`-wide sums that need no
//! horizontal reduction at the end. With a few panels and a few tokens per block every weight
//! loaded is used by every token of the block and every broadcast by every panel, so a verify
//! pass of 16 tokens costs far less than 16 decode steps (the row-major dot-product kernels of
//! [`super::linalg`] spend much of their time on horizontal sums and reloads instead), and a
//! decode step streams each panel's weights contiguously.
//!
//! Exactness: every output is `Σ_c w[r][c]·x[t][c]` accumulated with fused multiply-adds in
//! column order, starting from zero, whatever the block shape, the number of tokens, the
//! thread that computes it and the instruction set (the portable path uses `f32::mul_add`).
//! A token therefore gets bit-identical results in a decode step and in a verify pass, which
//! is what makes greedy parallel decoding reproduce greedy decoding exactly.
//!
//! With `NEURON_MOCK_MATMUL=bf16` ([`Precision`]) the products run in bf16 instead, on AMX
//! tiles (`packed_amx`) or, on a CPU without AMX, with AVX-512 BF16 dot products
//! (`packed_dpbf16`): operands rounded to bf16, sums in f32, each token's row independent of
//! the others, so the same holds there.
//!
//! Matrices can also be stored in bf16 already, in **pair panels** ([`pack_bf16_pairs`]):
//! panel `p` holds rows `p·PANEL ..` as `[column pairs][PANEL][2]`, columns padded with zeros
//! to whole steps of 32 ([`amx_bf16::padded`]), so element `(r, c)` is at
//! `p·k32·PANEL + (c / 2)·2·PANEL + (r % PANEL)·2 + c % 2`: each 32-column step of a panel is
//! then one AMX B tile as it sits in memory. Half the bytes of f32, and nothing to convert:
//! a decode step over SmolLM2-sized weights took 27 ms converting f32 weights as they stream,
//! 17 ms reading pair panels. The values are those the AMX path rounds f32 weights to, so
//! both give the same bits; only the bf16 kernels read them.

use rayon::prelude::*;
use std::sync::OnceLock;

/// Rows per panel: one AVX-512 vector of f32 (two AVX2 vectors).
pub const PANEL: usize = 16;

/// Floats in a packed `[rows][cols]` matrix (rows padded to whole panels).
pub fn packed_len(rows: usize, cols: usize) -> usize {
    rows.div_ceil(PANEL) * cols * PANEL
}

/// Checks that `len` values (of `kind`, e.g. "f16 ", or "" for f32) are exactly a packed
/// `[rows][cols]` matrix.
pub(super) fn check_packed_len(
    len: usize,
    rows: usize,
    cols: usize,
    kind: &str,
) -> Result<(), String> {
    let expected = packed_len(rows, cols);
    if len != expected {
        return Err(format!(
            "a packed {rows} x {cols} {kind}matrix holds {expected} values, this one {len}"
        ));
    }
    Ok(())
}

/// The tensor shape of a packed `[rows][cols]` matrix: `[panels, cols, PANEL]`.
pub fn packed_shape(rows: usize, cols: usize) -> [usize; 3] {
    [rows.div_ceil(PANEL), cols, PANEL]
}

/// Packs a row-major `[rows][cols]` matrix into panels.
///
/// # Panics
/// If `w` holds fewer than `rows · cols` values.
pub fn pack(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert!(w.len() >= rows * cols, "matrix shorter than its shape");
    let mut out = vec![0.0; packed_len(rows, cols)];
    for (r, row) in w[..rows * cols].chunks_exact(cols.max(1)).enumerate() {
        let panel = &mut out[(r / PANEL) * cols * PANEL..][..cols * PANEL];
        for (c, &v) in row.iter().enumerate() {
            panel[c * PANEL + r % PANEL] = v;
        }
    }
    out
}

/// Values in a `[rows][cols]` matrix stored as bf16 pair panels (rows padded to whole
/// panels, columns to whole steps of 32).
pub fn packed_pairs_len(rows: usize, cols: usize) -> usize {
    rows.div_ceil(PANEL) * amx_bf16::padded(cols) * PANEL
}

/// The tensor shape of a `[rows][cols]` matrix in bf16 pair panels:
/// `[panels, padded cols / 2, PANEL, 2]`.
pub fn packed_pairs_shape(rows: usize, cols: usize) -> [usize; 4] {
    [rows.div_ceil(PANEL), amx_bf16::padded(cols) / 2, PANEL, 2]
}

/// Rounds a row-major `[rows][cols]` matrix to bf16 as the AMX path rounds weights (to
/// nearest, ties to even, subnormals to zero, as `VCVTNE2PS2BF16` does) and stores it in pair
/// panels (see the module doc).
///
/// # Panics
/// If `w` holds fewer than `rows · cols` values.
pub fn pack_bf16_pairs(w: &[f32], rows: usize, cols: usize) -> Vec<u16> {
    assert!(w.len() >= rows * cols, "matrix shorter than its shape");
    let k32 = amx_bf16::padded(cols);
    let mut out = vec![0u16; packed_pairs_len(rows, cols)];
    for (r, row) in w[..rows * cols].chunks_exact(cols.max(1)).enumerate() {
        let panel = &mut out[(r / PANEL) * k32 * PANEL..][..k32 * PANEL];
        for (c, &v) in row.iter().enumerate() {
            panel[pair_index(r, c)] = bf16_as_amx_rounds(v);
        }
    }
    out
}

/// Index of element `(r, c)` inside its pair panel.
fn pair_index(r: usize, c: usize) -> usize {
    (c / 2) * 2 * PANEL + (r % PANEL) * 2 + c % 2
}

/// `v` rounded to bf16 bits the way the AMX conversion does: subnormal values become zeros of
/// their sign, the rest round to nearest even.
fn bf16_as_amx_rounds(v: f32) -> u16 {
    let flushed = if v.is_subnormal() {
        f32::from_bits(v.to_bits() & 0x8000_0000)
    } else {
        v
    };
    amx_bf16::to_bf16(flushed)
}

/// The values of a packed matrix, as they are stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum Panels<'a> {
    /// f32 panels ([`pack`]).
    F32(&'a [f32]),
    /// bf16 pair panels ([`pack_bf16_pairs`]).
    Bf16Pairs(&'a [u16]),
}

impl Panels<'_> {
    /// Values in one panel of a matrix with `cols` columns.
    fn panel_len(&self, cols: usize) -> usize {
        match self {
            Panels::F32(_) => cols * PANEL,
            Panels::Bf16Pairs(_) => amx_bf16::padded(cols) * PANEL,
        }
    }
}

/// A view of rows `first..first + rows` of a packed matrix with `cols` columns.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a> {
    data: Panels<'a>,
    first: usize,
    rows: usize,
    cols: usize,
}

impl<'a> Packed<'a> {
    /// Views `data` as a packed `[rows][cols]` matrix.
    ///
    /// # Errors
    /// A sentence when `data` does not hold exactly [`packed_len`] values.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, String> {
        check_packed_len(data.len(), rows, cols, "")?;
        Ok(Packed {
            data: Panels::F32(data),
            first: 0,
            rows,
            cols,
        })
    }

    /// Views `data` as a `[rows][cols]` matrix in bf16 pair panels ([`pack_bf16_pairs`]).
    ///
    /// # Errors
    /// A sentence when `data` does not hold exactly [`packed_pairs_len`] values.
    pub fn bf16_pairs(data: &'a [u16], rows: usize, cols: usize) -> Result<Self, String> {
        let expected = packed_pairs_len(rows, cols);
        if data.len() != expected {
            return Err(format!(
                "a {rows} x {cols} bf16 matrix in pair panels holds {expected} values, this one {}",
                data.len()
            ));
        }
        Ok(Packed {
            data: Panels::Bf16Pairs(data),
            first: 0,
            rows,
            cols,
        })
    }

    /// Rows in the view.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `from..from + n` of this view.
    ///
    /// # Panics
    /// If the range is not inside the view.
    pub fn slice_rows(self, from: usize, n: usize) -> Self {
        assert!(from + n <= self.rows, "row range outside the matrix");
        Packed {
            first: self.first + from,
            rows: n,
            ..self
        }
    }

    /// Copies row `r` of the view into `out` (`cols` values): an embedding lookup.
    ///
    /// # Panics
    /// If `r` is outside the view or `out` is shorter than a row.
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows, "row outside the matrix");
        let r = self.first + r;
        let size = self.data.panel_len(self.cols);
        match self.data {
            Panels::F32(data) => {
                let panel = &data[(r / PANEL) * size..][..size];
                for (o, column) in out[..self.cols].iter_mut().zip(panel.chunks_exact(PANEL)) {
                    *o = column[r % PANEL];
                }
            }
            Panels::Bf16Pairs(data) => {
                let panel = &data[(r / PANEL) * size..][..size];
                for (c, o) in out[..self.cols].iter_mut().enumerate() {
                    *o = amx_bf16::from_bf16(panel[pair_index(r, c)]);
                }
            }
        }
    }

    /// Panels `from..to` of the underlying matrix (absolute panel indices).
    fn panels(&self, from: usize, to: usize) -> Panels<'a> {
        let size = self.data.panel_len(self.cols);
        match self.data {
            Panels::F32(data) => Panels::F32(&data[from * size..to * size]),
            Panels::Bf16Pairs(data) => Panels::Bf16Pairs(&data[from * size..to * size]),
        }
    }

    /// The absolute panels covering the view.
    fn panel_range(&self) -> (usize, usize) {
        (self.first / PANEL, (self.first + self.rows).div_ceil(PANEL))
    }
}

/// One packed weight matrix of a [`matmul_packed`] and where its product goes.
pub struct PackedProduct<'a> {
    /// The weights, `[rows][k]`.
    pub w: Packed<'a>,
    /// `[tokens][rows]` result.
    pub y: &'a mut [f32],
}

/// Products whose total work is below this many multiply-adds run on the calling thread:
/// waking the pool costs more than they do (the key or value projection of one token, say).
pub(super) const SERIAL_WORK: usize = 1 << 17;
/// Tasks per pool thread: enough that a thread slowed by other work on the machine is
/// balanced by the others, few enough that each task streams a long run of weights.
pub(super) const TASKS_PER_THREAD: usize = 4;

/// Scratch space reused across calls so that a step allocates nothing in steady state.
#[derive(Default)]
pub struct PackedScratch {
    /// Activations regrouped by token tile, each tile `[k][tile width]`.
    tiles: Vec<f32>,
    /// Results as `[panel][token][PANEL]`, every product's panels one after another.
    out: Vec<f32>,
    /// Activations rounded to bf16, `[tokens][k padded]`, for the bf16 kernels.
    bf16: Vec<u16>,
}

/// Token tiles: how many tokens a block multiplies at once. As few tiles as the widest
/// allows (each tile reads the weights once more), of widths as even as possible, wider first
/// (16 tokens at 6 a tile are 6 + 5 + 5: a narrow last tile would cost a pass for little).
fn tiles(tokens: usize, widest: usize) -> Vec<(usize, usize)> {
    let count = tokens.div_ceil(widest.max(1));
    let mut out = Vec::with_capacity(count);
    let mut t = 0;
    for i in 0..count {
        let width = tokens / count + usize::from(i < tokens % count);
        out.push((t, width));
        t += width;
    }
    out
}

/// `y[t][r] = Σ_c w[r][c] x[t][c]` for every product, `x` being `[tokens][k]`, in one
/// parallel pass (the query, key and value projections cost one wake-up of the thread pool,
/// not three).
///
/// # Panics
/// If a slice is shorter than its dimensions say or a matrix does not have `k` columns (a
/// kernel bug, caught by the mock's guard).
pub fn matmul_packed(
    products: &mut [PackedProduct<'_>],
    x: &[f32],
    k: usize,
    tokens: usize,
    scratch: &mut PackedScratch,
) {
    assert!(x.len() >= tokens * k);
    for p in products.iter() {
        assert!(p.w.cols == k && p.y.len() >= tokens * p.w.rows);
    }
    if tokens == 0 || products.iter().all(|p| p.w.rows == 0) {
        return;
    }
    let kernel = Kernel::detect();
    let plan = tiles(tokens, kernel.widest_tile(tokens));
    // Activations regrouped per tile as [k][width]: a column step reads one short run. The
    // bf16 kernels read them as bf16 rows instead.
    let tiles_buf = &mut scratch.tiles;
    tiles_buf.clear();
    #[cfg(target_arch = "x86_64")]
    match kernel {
        Kernel::Amx => super::packed_amx::activations(x, tokens, k, &mut scratch.bf16),
        Kernel::Dpbf16 => super::packed_dpbf16::activations(x, tokens, k, &mut scratch.bf16),
        _ => {}
    }
    if kernel.uses_tiles() {
        for &(t0, width) in &plan {
            for c in 0..k {
                tiles_buf.extend((t0..t0 + width).map(|t| x[t * k + c]));
            }
        }
    }
    let tiles_buf = &scratch.tiles[..];
    let bf16_buf = &scratch.bf16[..];
    let panel_counts: Vec<(usize, usize)> = products.iter().map(|p| p.w.panel_range()).collect();
    let total_panels: usize = panel_counts.iter().map(|(a, b)| b - a).sum();
    // Grown, never shrunk: the kernels write every value, and re-filling the LM head's
    // megabytes with zeros after each layer's smaller products shrank it was a serial memset.
    let needed = total_panels * tokens * PANEL;
    if scratch.out.len() < needed {
        scratch.out.resize(needed, 0.0);
    }
    let out = &mut scratch.out[..needed];

    // Work items: a run of panels of one product and its slice of `out`.
    let mut work: Vec<(Packed<'_>, usize, usize, &mut [f32])> = Vec::new();
    let serial = total_panels * PANEL * k * tokens <= SERIAL_WORK;
    let per_task = if serial {
        usize::MAX
    } else {
        let tasks = rayon::current_num_threads().max(1) * TASKS_PER_THREAD;
        total_panels
            .div_ceil(tasks)
            .next_multiple_of(kernel.panels_per_block())
    };
    let mut rest = out;
    for (p, &(from, to)) in products.iter().zip(&panel_counts) {
        let mut first = from;
        while first < to {
            let last = first.saturating_add(per_task).min(to);
            let (part, tail) = rest.split_at_mut((last - first) * tokens * PANEL);
            work.push((p.w, first, last, part));
            rest = tail;
            first = last;
        }
    }
    let run = |(w, from, to, part): (Packed<'_>, usize, usize, &mut [f32])| {
        let activations = Activations {
            tiles: tiles_buf,
            plan: &plan,
            bf16: bf16_buf,
        };
        kernel.panels(w.panels(from, to), k, &activations, tokens, part);
    };
    if serial {
        work.into_iter().for_each(run);
    } else {
        work.into_par_iter().for_each(run);
    }

    // [panel][token][lane] -> [token][row], keeping each view's rows only.
    let mut offset = 0;
    for (p, &(from, to)) in products.iter_mut().zip(&panel_counts) {
        let block = &scratch.out[offset..offset + (to - from) * tokens * PANEL];
        offset += block.len();
        let (skip, rows) = (p.w.first - from * PANEL, p.w.rows);
        if rows == 0 {
            continue;
        }
        let y = &mut p.y[..tokens * rows];
        // Many tokens' rows are megabytes (the LM head of a distillation pass): the pool
        // copies them, as it computed them, a few tokens a task.
        let chunk = match tokens >= PARALLEL_TOKENS {
            true => GATHER_TOKENS,
            false => tokens,
        };
        let copy =
            |(c, y): (usize, &mut [f32])| gather_tokens(block, tokens, skip, rows, c * chunk, y);
        if tokens >= PARALLEL_TOKENS {
            y.par_chunks_mut(chunk * rows).enumerate().for_each(copy);
        } else {
            copy((0, y));
        }
    }
}

/// Passes of at least this many tokens spread their per-token copies and elementwise work
/// over the pool (a distillation pass's 64 rows, a prompt); fewer (a decode step, a tree)
/// are cheaper on the calling thread than the wake-ups of the pool, several a layer.
pub(super) const PARALLEL_TOKENS: usize = 32;

/// Tokens a task copies in [`gather_tokens`] when the pool copies.
const GATHER_TOKENS: usize = 8;

/// The results of tokens `first..` (as many as `y` holds rows of the view's `rows` values a
/// token), `[token][row]`, from `block` (`[panel][token][PANEL]`, `tokens` tokens, the view's
/// first row `skip` lanes into the first panel).
///
/// Panel by panel, each panel's runs for the tokens next to each other, so the block is read
/// once in order: token by token, a 16-token LM head's 3 MB block was read 16 times over at a
/// 1 KiB stride: 2.4 ms of copying in a 24 ms verify pass, 1.2 ms this way.
fn gather_tokens(
    block: &[f32],
    tokens: usize,
    skip: usize,
    rows: usize,
    first: usize,
    y: &mut [f32],
) {
    let count = y.len() / rows;
    for (i, panel) in block.chunks_exact(tokens * PANEL).enumerate() {
        // Panel `i` holds view rows from `i·PANEL - skip`: copy the part of each token's
        // 16-lane run that falls inside the view.
        let start = (i * PANEL).saturating_sub(skip);
        let end = ((i + 1) * PANEL).saturating_sub(skip).min(rows);
        if start >= end {
            continue;
        }
        let lane0 = start + skip - i * PANEL;
        let (runs, _) = panel[first * PANEL..(first + count) * PANEL].as_chunks::<PANEL>();
        let dsts = y.chunks_exact_mut(rows);
        if end - start == PANEL {
            // A whole run: a fixed-size copy, a vector move rather than a call.
            for (dst, run) in dsts.zip(runs) {
                if let Some(dst) = dst[start..].first_chunk_mut::<PANEL>() {
                    *dst = *run;
                }
            }
        } else {
            for (dst, run) in dsts.zip(runs) {
                dst[start..end].copy_from_slice(&run[lane0..lane0 + end - start]);
            }
        }
    }
}

/// The arithmetic of the weight products, `NEURON_MOCK_MATMUL`: `f32` (the default) or
/// `bf16` (operands rounded to bf16, sums in f32, as a NeuronCore's matrix multiplications;
/// needs AMX or AVX-512 BF16, see `packed_amx.rs` and `packed_dpbf16.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// f32 operands, fused multiply-adds in column order.
    F32,
    /// bf16 operands, f32 sums, on AMX tiles or with AVX-512 BF16.
    Bf16,
}

impl Precision {
    /// Reads `NEURON_MOCK_MATMUL`.
    ///
    /// # Errors
    /// A sentence naming the variable when its value is unknown, or when it asks for bf16 on
    /// a machine with neither AMX nor AVX-512 BF16.
    pub fn from_env() -> Result<Self, String> {
        let value = std::env::var("NEURON_MOCK_MATMUL").unwrap_or_default();
        match value.to_ascii_lowercase().as_str() {
            "" | "f32" => Ok(Precision::F32),
            "bf16" if Bf16Kernel::detect().is_some() => Ok(Precision::Bf16),
            "bf16" => Err(
                "NEURON_MOCK_MATMUL=bf16 needs Intel AMX (AMX-TILE and AMX-BF16 with \
                           AVX-512, and Linux 5.16 or later to grant the tile state) or \
                           AVX-512 BF16 (an AMD Zen 4 or later); this machine has neither: \
                           unset it to use f32"
                    .to_string(),
            ),
            _ => Err(format!("NEURON_MOCK_MATMUL={value:?} is not f32 or bf16")),
        }
    }

    /// The variable's value for this precision.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// The arithmetic as the runtime describes it: the precision and, for bf16, the
    /// instructions (AMX and AVX-512 BF16 are both meant to give the definition's bits, but
    /// only the second is tested bit for bit, so a model's outputs are keyed on which ran).
    pub(crate) fn description(self) -> &'static str {
        match (self, Bf16Kernel::detect()) {
            (Precision::F32, _) => "f32",
            (Precision::Bf16, Some(Bf16Kernel::Dpbf16)) => "bf16 (AVX-512 BF16 dot products)",
            (Precision::Bf16, _) => "bf16 (AMX tiles)",
        }
    }

    /// The precision in force in this process (read once; an invalid value, which `nrt_init`
    /// refuses, means f32).
    pub(crate) fn current() -> Self {
        static CURRENT: OnceLock<Precision> = OnceLock::new();
        *CURRENT.get_or_init(|| Precision::from_env().unwrap_or(Precision::F32))
    }
}

/// The instructions the bf16 products run with: AMX tiles where the CPU has them, else
/// AVX-512 BF16 dot products, which give the same bits (`packed_dpbf16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bf16Kernel {
    Amx,
    Dpbf16,
}

impl Bf16Kernel {
    /// The best this machine has, if any (asked once).
    fn detect() -> Option<Self> {
        static DETECTED: OnceLock<Option<Bf16Kernel>> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if super::packed_amx::available() {
                    return Some(Bf16Kernel::Amx);
                }
                if super::packed_dpbf16::available() {
                    return Some(Bf16Kernel::Dpbf16);
                }
            }
            None
        })
    }
}

/// A pass's activations as the kernels read them.
struct Activations<'a> {
    /// Token tiles, each `[k][width]` f32, for the f32 kernels.
    tiles: &'a [f32],
    /// The tiles' `(first token, width)`.
    plan: &'a [(usize, usize)],
    /// `[tokens][k padded]` bf16, for the AMX kernels.
    bf16: &'a [u16],
}

/// The instruction set the products run with.
#[derive(Clone, Copy)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Simd(super::simd::Level),
    /// bf16 on AMX tiles ([`Precision::Bf16`]).
    #[cfg(target_arch = "x86_64")]
    Amx,
    /// bf16 with AVX-512 BF16 dot products ([`Precision::Bf16`] without AMX).
    #[cfg(target_arch = "x86_64")]
    Dpbf16,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if Precision::current() == Precision::Bf16 {
                // `Precision::from_env` accepts bf16 only where a bf16 kernel exists.
                return match Bf16Kernel::detect() {
                    Some(Bf16Kernel::Dpbf16) => Kernel::Dpbf16,
                    _ => Kernel::Amx,
                };
            }
            let level = super::simd::level();
            if level != super::simd::Level::None {
                return Kernel::Simd(level);
            }
        }
        Kernel::Portable
    }

    /// Tokens per block at most in a pass of `tokens` tokens.
    fn widest_tile(self, tokens: usize) -> usize {
        match self {
            Kernel::Portable => 1,
            #[cfg(target_arch = "x86_64")]
            Kernel::Simd(level) => super::packed_simd::widest_tile(level, tokens),
            // The bf16 kernels group the tokens themselves (they read no token tiles).
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx | Kernel::Dpbf16 => super::packed_amx::GROUP,
        }
    }

    /// Whether the kernel reads the activations regrouped in f32 token tiles.
    fn uses_tiles(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx | Kernel::Dpbf16 => false,
            _ => true,
        }
    }

    /// Panels per block; task boundaries are multiples of it.
    fn panels_per_block(self) -> usize {
        match self {
            Kernel::Portable => 1,
            #[cfg(target_arch = "x86_64")]
            Kernel::Simd(level) => super::packed_simd::panels_per_block(level),
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx => super::packed_amx::PANELS_PER_BLOCK,
            #[cfg(target_arch = "x86_64")]
            Kernel::Dpbf16 => super::packed_dpbf16::PANELS_PER_BLOCK,
        }
    }

    /// Multiplies whole panels with every token, writing `[panel][token][PANEL]` into `out`.
    ///
    /// # Panics
    /// For bf16 panels on a kernel other than AMX: a NEFF holding them is refused at load
    /// unless the products are in bf16 (`build_forward`).
    fn panels(
        self,
        panels: Panels<'_>,
        k: usize,
        x: &Activations<'_>,
        tokens: usize,
        out: &mut [f32],
    ) {
        match (self, panels) {
            (Kernel::Portable, Panels::F32(p)) => {
                portable_panels(p, k, x.tiles, x.plan, tokens, out)
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::Simd(level), Panels::F32(p)) => {
                super::packed_simd::panels(level, p, k, x.tiles, x.plan, tokens, out)
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::Amx, Panels::F32(p)) => super::packed_amx::panels(p, k, x.bf16, tokens, out),
            #[cfg(target_arch = "x86_64")]
            (Kernel::Amx, Panels::Bf16Pairs(p)) => {
                super::packed_amx::pair_panels(p, k, x.bf16, tokens, out)
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::Dpbf16, Panels::F32(p)) => {
                super::packed_dpbf16::panels(p, k, x.bf16, tokens, out)
            }
            #[cfg(target_arch = "x86_64")]
            (Kernel::Dpbf16, Panels::Bf16Pairs(p)) => {
                super::packed_dpbf16::pair_panels(p, k, x.bf16, tokens, out)
            }
            (_, Panels::Bf16Pairs(_)) => {
                panic!("bf16 weight matrices need the bf16 products (NEURON_MOCK_MATMUL=bf16)")
            }
        }
    }
}

/// The portable path: one panel and one token at a time, fused multiply-adds in column order
/// (bit-identical to the SIMD paths).
fn portable_panels(
    panels: &[f32],
    k: usize,
    tiles: &[f32],
    plan: &[(usize, usize)],
    tokens: usize,
    out: &mut [f32],
) {
    for (p, panel) in panels.chunks_exact(k * PANEL).enumerate() {
        let mut tile_start = 0;
        for &(t0, width) in plan {
            let tile = &tiles[tile_start..tile_start + k * width];
            for i in 0..width {
                let mut acc = [0.0f32; PANEL];
                for (column, xs) in panel.chunks_exact(PANEL).zip(tile.chunks_exact(width)) {
                    for (a, &w) in acc.iter_mut().zip(column) {
                        *a = w.mul_add(xs[i], *a);
                    }
                }
                out[(p * tokens + t0 + i) * PANEL..][..PANEL].copy_from_slice(&acc);
            }
            tile_start += k * width;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pseudo_random;

    /// The exact definition: fused multiply-adds in column order from zero.
    fn reference(w: &[f32], x: &[f32], rows: usize, k: usize, tokens: usize) -> Vec<f32> {
        let mut y = vec![0.0; tokens * rows];
        for t in 0..tokens {
            for r in 0..rows {
                let mut acc = 0.0f32;
                for c in 0..k {
                    acc = w[r * k + c].mul_add(x[t * k + c], acc);
                }
                y[t * rows + r] = acc;
            }
        }
        y
    }

    #[test]
    fn pack_places_each_element_and_rows_read_back() {
        let (rows, cols) = (19, 5);
        let w = pseudo_random(rows * cols, 1);
        let packed = pack(&w, rows, cols);
        assert_eq!(packed.len(), packed_len(rows, cols));
        assert_eq!(packed_shape(rows, cols), [2, 5, PANEL]);
        // Padding rows are zero.
        assert!(
            packed[cols * PANEL..]
                .chunks_exact(PANEL)
                .all(|c| c[3..] == [0.0; 13])
        );
        let view = Packed::new(&packed, rows, cols).unwrap();
        let mut row = vec![0.0; cols];
        for r in 0..rows {
            view.row_into(r, &mut row);
            assert_eq!(row, &w[r * cols..(r + 1) * cols]);
        }
        let part = view.slice_rows(7, 10);
        part.row_into(2, &mut row);
        assert_eq!(row, &w[9 * cols..10 * cols]);
    }

    #[test]
    fn a_wrong_length_is_refused() {
        let e = Packed::new(&[0.0; 10], 3, 4).unwrap_err();
        assert!(e.contains("64 values, this one 10"), "{e}");
    }

    #[test]
    fn products_equal_the_definition_bit_for_bit() {
        let mut scratch = PackedScratch::default();
        for (rows, k, tokens) in [
            (1, 1, 1),
            (16, 8, 1),
            (37, 24, 3),
            (70, 40, 7),
            (130, 33, 16),
        ] {
            let w = pseudo_random(rows * k, rows as u32);
            let packed = pack(&w, rows, k);
            for t in [1, 2, tokens] {
                let x = pseudo_random(t * k, k as u32 + t as u32);
                let mut y = vec![f32::NAN; t * rows];
                let view = Packed::new(&packed, rows, k).unwrap();
                matmul_packed(
                    &mut [PackedProduct { w: view, y: &mut y }],
                    &x,
                    k,
                    t,
                    &mut scratch,
                );
                assert_eq!(y, reference(&w, &x, rows, k, t), "{rows}x{k}, {t} tokens");
            }
        }
    }

    #[test]
    fn large_products_split_between_threads_agree_with_the_definition() {
        // Above the serial threshold: tasks over panels on the pool, with every tile plan
        // (one tile, a full and a partial one, several with prefetching, tiles of 7 and 8
        // tokens taking the panels two at a time).
        let (rows, k) = (1000, 96);
        let w = pseudo_random(rows * k, 9);
        let packed = pack(&w, rows, k);
        let view = Packed::new(&packed, rows, k).unwrap();
        for tokens in [3, 5, 6, 7, 8, 9, 12, 15, 16] {
            let x = pseudo_random(tokens * k, 10);
            let mut y = vec![0.0; tokens * rows];
            matmul_packed(
                &mut [PackedProduct { w: view, y: &mut y }],
                &x,
                k,
                tokens,
                &mut PackedScratch::default(),
            );
            assert_eq!(y, reference(&w, &x, rows, k, tokens), "{tokens} tokens");
        }
    }

    #[test]
    fn a_token_gets_the_same_bits_alone_and_among_others() {
        let (rows, k) = (300, 64);
        let w = pack(&pseudo_random(rows * k, 5), rows, k);
        let view = Packed::new(&w, rows, k).unwrap();
        let x = pseudo_random(16 * k, 6);
        let mut scratch = PackedScratch::default();
        let mut all = vec![0.0; 16 * rows];
        let products = &mut [PackedProduct {
            w: view,
            y: &mut all,
        }];
        matmul_packed(products, &x, k, 16, &mut scratch);
        for t in [0, 5, 15] {
            let mut one = vec![0.0; rows];
            let x1 = &x[t * k..(t + 1) * k];
            matmul_packed(
                &mut [PackedProduct {
                    w: view,
                    y: &mut one,
                }],
                x1,
                k,
                1,
                &mut scratch,
            );
            assert_eq!(one, &all[t * rows..(t + 1) * rows], "token {t}");
        }
    }

    #[test]
    fn a_group_with_unaligned_views_equals_each_alone() {
        // Small enough to run as one task; then large enough to be split between tasks
        // (each copying its own panels' rows), with few tokens and with many.
        for (n, k, tokens) in [(100, 24, 3), (1000, 64, 5), (1000, 64, 33)] {
            let full = pseudo_random(n * k, 2);
            let packed = pack(&full, n, k);
            let whole = Packed::new(&packed, n, k).unwrap();
            let views = [
                whole.slice_rows(3, n * 2 / 5),
                whole.slice_rows(n / 2, n / 2),
                whole,
            ];
            let x = pseudo_random(tokens * k, 8);
            let mut ys: Vec<Vec<f32>> =
                views.iter().map(|v| vec![0.0; tokens * v.rows()]).collect();
            let mut scratch = PackedScratch::default();
            {
                let mut it = ys.iter_mut();
                let mut group: Vec<PackedProduct<'_>> = views
                    .iter()
                    .map(|&w| PackedProduct {
                        w,
                        y: it.next().unwrap(),
                    })
                    .collect();
                matmul_packed(&mut group, &x, k, tokens, &mut scratch);
            }
            let all = reference(&full, &x, n, k, tokens);
            for (v, y) in views.iter().zip(&ys) {
                for t in 0..tokens {
                    let from = t * n + v.first;
                    assert_eq!(
                        &y[t * v.rows()..(t + 1) * v.rows()],
                        &all[from..from + v.rows()],
                        "{n} rows, {tokens} tokens, view from {}",
                        v.first
                    );
                }
            }
        }
    }

    #[test]
    fn tiles_cover_the_tokens_widest_first() {
        assert_eq!(tiles(7, 4), vec![(0, 4), (4, 3)]);
        assert_eq!(tiles(3, 4), vec![(0, 3)]);
        assert_eq!(tiles(8, 4), vec![(0, 4), (4, 4)]);
        assert_eq!(tiles(3, 1), vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(tiles(16, 6), vec![(0, 6), (6, 5), (11, 5)]);
        assert_eq!(tiles(13, 6), vec![(0, 5), (5, 4), (9, 4)]);
        assert_eq!(tiles(16, 8), vec![(0, 8), (8, 8)]);
        assert_eq!(tiles(15, 8), vec![(0, 8), (8, 7)]);
        assert!(tiles(0, 6).is_empty());
    }
}
