//! int8 GEMM for q8_0 weights: `y[m, n] = Σ_k x[m, k] · w[n, k]`.
//!
//! **Weights** (ggml's `block_q8_0`: an f16 scale `d` and 32 int8 `q` per 32
//! consecutive values of a row, `w = d · q`) are repacked once, at load, into
//! panels of [`NR`] = 8 output columns: per 32-value block, 16 pairs of k, and
//! per pair the 8 columns' two int8 values side by side (16 bytes: what two
//! `v128.load8x8_s` or one `vpmovsxbw` load widens to i16), then the
//! 8 columns' scales as f32 (f16 → f32 is exact). The panel replaces the
//! blocks: 1.125 bytes per weight against the blocks' 1.0625. Columns past `n`
//! are zero with scale 0.
//!
//! **Activations** are quantised at each call, per row and per 32-value block
//! (the blocks of the weight, as ggml's q8_0 activations, so an outlier costs
//! precision only in its own block), to **int16**: `d = max|x| / 32767`,
//! `q = round_ties_even(x · (1/d))` clamped to ±32767 (round half to even, as
//! ONNX Runtime's `DynamicQuantizeLinear`), `d` kept in f32. The kernels
//! multiply in 16 bits anyway (`i32x4.dot_i16x8_s`, `vpmaddwd`), so 16-bit
//! activations cost nothing over 8-bit ones, and their error is 256 times
//! smaller: with 8-bit activations (ONNX Runtime's and candle's), the q8 tiny
//! fixture fell below the 0.999 cosine to f32 that q8 must keep.
//!
//! **Product**: per block the integer dot products are exact (i32; at most
//! 32 · 128 · 32767 < 2³¹ in magnitude), then `acc = acc + f32(isum) · (dx ·
//! dw)`, in that order (round-to-nearest-even conversion, two roundings, no
//! fused multiply-add), blocks in k order. Every micro-kernel (scalar, AVX2,
//! AVX-VNNI and AVX-512 VNNI `vpdpwssd`, simd128) does exactly that, so all
//! give the same bits, natively and in wasm.

use std::ops::Range;

use super::epilogue::Epilogue;
use super::quantized::QuantizedGemm;
use super::q8_kernel::{self, Isa, MAX_ROWS, NR, PAIRS};
use super::q8_relaxed;

/// Values per q8_0 block (ggml's `QK8_0`).
pub const BLOCK: usize = 32;
/// Bytes of one ggml `block_q8_0`: f16 scale + 32 int8.
pub const BLOCK_BYTES: usize = 34;
/// The largest quantised activation (int16, symmetric).
pub const ACT_MAX: f32 = 32767.0;
/// Bytes of one block of one panel: 16 k-pairs × 8 columns × 2.
const PANEL_BLOCK: usize = PAIRS * NR * 2;

/// A q8_0 weight `[n, k]` in the kernel's panel layout (see the module doc).
#[derive(Clone)]
pub struct PackedQ8 {
    n: usize,
    k: usize,
    /// `ceil(n / 8)` panels × `k / 32` blocks × 256 int8.
    quants: Vec<i8>,
    /// `ceil(n / 8)` panels × `k / 32` blocks × 8 scales.
    scales: Vec<f32>,
}

impl std::fmt::Debug for PackedQ8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedQ8 [{}, {}]", self.n, self.k)
    }
}

/// Why a weight cannot be packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackError(pub String);

impl std::fmt::Display for PackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PackedQ8 {
    /// Repacks `n` rows of `k` values stored as ggml `block_q8_0` (`n · k/32 ·
    /// 34` bytes, row-major). Errors (never panics) when `k` is not a positive
    /// multiple of 32 or the byte count does not match.
    pub fn from_blocks(blocks: &[u8], n: usize, k: usize) -> Result<Self, PackError> {
        if k == 0 || !k.is_multiple_of(BLOCK) || n == 0 {
            return Err(PackError(format!("q8_0 weight [{n}, {k}]: rows must be a positive multiple of {BLOCK} long")));
        }
        let kb = k / BLOCK;
        let expected = n.checked_mul(kb * BLOCK_BYTES);
        if expected != Some(blocks.len()) {
            return Err(PackError(format!(
                "q8_0 weight [{n}, {k}]: {} bytes of blocks, expected {}",
                blocks.len(),
                n.saturating_mul(kb * BLOCK_BYTES)
            )));
        }
        let panels = n.div_ceil(NR);
        let mut quants = vec![0i8; panels * kb * PANEL_BLOCK];
        let mut scales = vec![0f32; panels * kb * NR];
        for (row, row_blocks) in blocks.chunks_exact(kb * BLOCK_BYTES).enumerate() {
            let (p, c) = (row / NR, row % NR);
            for (b, block) in row_blocks.chunks_exact(BLOCK_BYTES).enumerate() {
                let pb = p * kb + b;
                scales[pb * NR + c] = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
                let dst = &mut quants[pb * PANEL_BLOCK..(pb + 1) * PANEL_BLOCK];
                for (j, pair) in block[2..].chunks_exact(2).enumerate() {
                    dst[j * NR * 2 + c * 2] = pair[0] as i8;
                    dst[j * NR * 2 + c * 2 + 1] = pair[1] as i8;
                }
            }
        }
        Ok(Self { n, k, quants, scales })
    }

    /// The weight back as ggml `block_q8_0` bytes (exact: the scales were f16).
    /// For the GPU upload and for candle's kernels, compared in tests.
    pub fn to_blocks(&self) -> Vec<u8> {
        let kb = self.k / BLOCK;
        let mut out = Vec::with_capacity(self.n * kb * BLOCK_BYTES);
        for row in 0..self.n {
            let (p, c) = (row / NR, row % NR);
            for b in 0..kb {
                let pb = p * kb + b;
                out.extend(half::f16::from_f32(self.scales[pb * NR + c]).to_le_bytes());
                let src = &self.quants[pb * PANEL_BLOCK..(pb + 1) * PANEL_BLOCK];
                for j in 0..PAIRS {
                    out.push(src[j * NR * 2 + c * 2] as u8);
                    out.push(src[j * NR * 2 + c * 2 + 1] as u8);
                }
            }
        }
        out
    }

    /// `(n, k)`: output and input features.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Bytes held (panels and scales).
    pub fn bytes(&self) -> usize {
        self.quants.len() + self.scales.len() * 4
    }

    /// The columns of `panels` for every row, into `out` ([m, those columns],
    /// row-major). The panels go in groups of about [`GROUP_BYTES`] of
    /// weights, each group over every tile of rows in turn: a tile's
    /// activations are read from the L1/L2 cache by every panel of the group,
    /// and the group's panels stay in L2 (fc2's activations, 197 × 3072 int16
    /// = 1.2 MB, would otherwise stream from L3 once per panel).
    fn panel_range(&self, acts: &QuantizedRows, m: usize, isa: Isa, epilogue: &Epilogue, panels: Range<usize>, out: &mut [f32]) {
        let kb = self.k / BLOCK;
        let mr = isa.rows();
        let c0 = panels.start * NR;
        let width = (panels.end * NR).min(self.n) - c0;
        let group = (GROUP_BYTES / (kb * PANEL_BLOCK)).max(1);
        for g in panels.clone().step_by(group) {
            for t in 0..acts.rows_padded / mr {
                let a = &acts.q[t * mr * self.k..(t + 1) * mr * self.k];
                let da = &acts.d[t * mr * kb..(t + 1) * mr * kb];
                // Panels two at a time ([`q8_kernel::tile2`]), the last one of
                // an odd group alone.
                let pieces = acts.pieces.get(t * mr * kb * q8_relaxed::BLOCK_BYTES..).unwrap_or_default();
                let end = (g + group).min(panels.end);
                let mut p = g;
                while p < end {
                    let w = |q: usize| &self.quants[q * kb * PANEL_BLOCK..(q + 1) * kb * PANEL_BLOCK];
                    let dw = |q: usize| &self.scales[q * kb * NR..(q + 1) * kb * NR];
                    let mut tiles = [[[0f32; NR]; MAX_ROWS]; 2];
                    let two = p + 1 < end;
                    if two {
                        let [t0, t1] = &mut tiles;
                        q8_kernel::tile2(isa, kb, a, pieces, da, [w(p), w(p + 1)], [dw(p), dw(p + 1)], [t0, t1]);
                    } else {
                        q8_kernel::tile(isa, kb, a, pieces, da, w(p), dw(p), &mut tiles[0]);
                    }
                    for (h, tile) in tiles[..1 + two as usize].iter().enumerate() {
                        let (col, cols) = ((p + h) * NR - c0, NR.min(self.n - (p + h) * NR));
                        for (r, row) in tile[..mr.min(m - t * mr)].iter().enumerate() {
                            let at = (t * mr + r) * width + col;
                            match <&mut [f32; NR]>::try_from(&mut out[at..at + cols]) {
                                // A constant length: inline stores, no `memcpy` call (wasm).
                                Ok(dst) => *dst = *row,
                                Err(_) => out[at..at + cols].copy_from_slice(&row[..cols]),
                            }
                        }
                    }
                    p += 1 + two as usize;
                }
                // The epilogue once per row over the group's columns, while
                // they are in the L1 cache: per tile it was a call per 8
                // values, 7% of the wasm q8 image (bench/README.md).
                if !epilogue.is_identity() {
                    let (col, cols) = (g * NR - c0, (end * NR).min(self.n) - g * NR);
                    for i in t * mr..(t * mr + mr).min(m) {
                        epilogue.apply(i, c0 + col, self.n, &mut out[i * width + col..i * width + col + cols]);
                    }
                }
            }
        }
    }
}

impl QuantizedGemm for PackedQ8 {
    type Isa = Isa;

    fn best_isa() -> Isa {
        Isa::best()
    }

    /// [`matmul_fused`](Self::matmul_fused) with a chosen micro-kernel. The
    /// panels are split into one contiguous range per thread of the current
    /// rayon pool (`rayon::current_num_threads`; in a single-threaded wasm
    /// build, one); every output value is still one [`q8_kernel::tile`] over
    /// all of k, so the result is the same bits at any thread count.
    fn matmul_fused_with(&self, x: &[f32], m: usize, epilogue: &Epilogue, isa: Isa) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "x must be [m, k]");
        epilogue.check(m, self.n);
        let acts = if isa.interleaved() {
            QuantizedRows::interleaved(x, m, self.k, isa.rows())
        } else {
            QuantizedRows::new(x, m, self.k, isa.rows()).with_pieces_for(isa)
        };
        super::split::by_panels(m, self.n, NR, |panels, block| self.panel_range(&acts, m, isa, epilogue, panels, block))
    }
}

/// Bytes of weight panels per group in [`PackedQ8::panel_range`] (half of a
/// 512 KB–1 MB L2 cache).
pub(crate) const GROUP_BYTES: usize = 256 << 10;

/// Activations quantised to int16 per row and 32-value block, rows padded to
/// a multiple of the kernel's rows with zeros (scale 0). Row by row
/// ([`new`](Self::new), also the q4 GEMM's activations) or each tile of rows
/// contiguous and within it as the VNNI kernels read them
/// ([`interleaved`](Self::interleaved), [`Isa::interleaved`]). The kernels read them two at a
/// time (one k-pair) as one 32-bit lane.
pub(crate) struct QuantizedRows {
    pub(crate) q: Vec<i16>,
    pub(crate) d: Vec<f32>,
    /// `q` split into 7-bit pieces for the relaxed-SIMD kernel ([`q8_relaxed::split`],
    /// [`Self::with_pieces_for`]); empty for the others.
    pieces: Vec<u8>,
    pub(crate) rows_padded: usize,
}

impl QuantizedRows {
    /// Row by row, rows padded to a multiple of `mr`.
    pub(crate) fn new(x: &[f32], m: usize, k: usize, mr: usize) -> Self {
        let kb = k / BLOCK;
        let rows_padded = m.div_ceil(mr) * mr;
        let mut q = vec![0i16; rows_padded * k];
        let mut d = vec![0f32; rows_padded * kb];
        for (i, (xb, qb)) in x.chunks_exact(BLOCK).zip(q.chunks_exact_mut(BLOCK)).enumerate() {
            let (scale, _) = quantize_block(xb, qb);
            d[i] = scale;
        }
        Self { q, d, pieces: Vec::new(), rows_padded }
    }

    /// The same rows, with the pieces the relaxed int8 kernel reads when `isa` is it.
    fn with_pieces_for(mut self, isa: Isa) -> Self {
        if q8_relaxed::reads_pieces(isa) {
            self.pieces = q8_relaxed::split(&self.q);
        }
        self
    }
}

impl QuantizedRows {
    /// The interleaved layout of the VNNI kernels for tiles of `mr` rows (see
    /// [`Isa::interleaved`]); the same values as [`new`](Self::new).
    fn interleaved(x: &[f32], m: usize, k: usize, mr: usize) -> Self {
        let kb = k / BLOCK;
        let rows_padded = m.div_ceil(mr) * mr;
        let mut q = vec![0i16; rows_padded * k];
        let mut d = vec![0f32; rows_padded * kb];
        let mut block = [0i16; BLOCK];
        for (i, row) in x.chunks_exact(k).enumerate() {
            let (t, r) = (i / mr, i % mr);
            let tile = &mut q[t * mr * k..(t + 1) * mr * k];
            for (b, xb) in row.chunks_exact(BLOCK).enumerate() {
                d[(t * kb + b) * mr + r] = quantize_block(xb, &mut block).0;
                for (j, pair) in block.chunks_exact(2).enumerate() {
                    let at = ((b * PAIRS + j) * mr + r) * 2;
                    tile[at..at + 2].copy_from_slice(pair);
                }
            }
        }
        Self { q, d, pieces: Vec::new(), rows_padded }
    }
}

/// A block's 32 values as 8 v128s and their largest |x| folded from 0 as
/// `f32::max` folds it (a NaN skipped: `pmax(m, v)` keeps `m` when `v` is
/// NaN; a maximum does not depend on the order). For the wasm activation
/// quantisers (this GEMM's and q8x8's).
///
/// Panics if `x` is shorter than a block.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
pub(crate) fn block_amax_simd128(x: &[f32]) -> ([core::arch::wasm32::v128; BLOCK / 4], f32) {
    use core::arch::wasm32::*;
    let x = &x[..BLOCK];
    // SAFETY: each load reads 4 of the block's 32 values.
    let v: [v128; BLOCK / 4] = std::array::from_fn(|c| unsafe { v128_load(x.as_ptr().add(4 * c) as *const v128) });
    let mut m = f32x4_splat(0.0);
    for &v in &v {
        m = f32x4_pmax(m, f32x4_abs(v));
    }
    let m = f32x4_pmax(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
    let m = f32x4_pmax(m, i32x4_shuffle::<1, 0, 3, 2>(m, m));
    (v, f32x4_extract_lane::<0>(m))
}

/// [`quantize_block_scalar`] in simd128, the same bits: the maximum as
/// [`block_amax_simd128`], `f32x4.nearest` (ties to even), then
/// `i32x4.trunc_sat_f32x4_s` and an integer clamp, which is `as i16` of the
/// f32 clamp for every input (NaN → 0, ±∞ → ±32767). In scalar wasm,
/// `f32::max` and the saturating `as` are a libm call and a branch per value.
#[cfg(target_arch = "wasm32")]
#[target_feature(enable = "simd128")]
unsafe fn quantize_block_simd128(x: &[f32], q: &mut [i16]) -> (f32, f32) {
    use core::arch::wasm32::*;
    let q = &mut q[..BLOCK];
    let (v, amax) = block_amax_simd128(x);
    let d = amax / ACT_MAX;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (idv, lo, hi) = (f32x4_splat(id), i32x4_splat(-(ACT_MAX as i32)), i32x4_splat(ACT_MAX as i32));
    let quantize = |v: v128| i32x4_min(i32x4_max(i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(v, idv))), lo), hi);
    for (c, pair) in v.chunks_exact(2).enumerate() {
        v128_store(q.as_mut_ptr().add(8 * c) as *mut v128, i16x8_narrow_i32x4(quantize(pair[0]), quantize(pair[1])));
    }
    (d, id)
}

/// One block of activations: returns `(d, 1/d)`; see the module doc.
pub(crate) fn quantize_block(x: &[f32], q: &mut [i16]) -> (f32, f32) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: simd128 is a requirement of the wasm build.
    return unsafe { quantize_block_simd128(x, q) };
    #[allow(unreachable_code)]
    quantize_block_scalar(x, q)
}

fn quantize_block_scalar(x: &[f32], q: &mut [i16]) -> (f32, f32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / ACT_MAX;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        // Clamped first, then rounded half to even by adding and subtracting
        // 1.5 · 2²³ (exact below 2²²; `round_ties_even` is a libm call on
        // baseline x86-64, a third of the int8 GEMM's time outside its
        // kernel). `as` maps NaN to 0: no panic on any input.
        const ROUND: f32 = 12_582_912.0;
        *q = (((v * id).clamp(-ACT_MAX, ACT_MAX) + ROUND) - ROUND) as i16;
    }
    (d, id)
}
