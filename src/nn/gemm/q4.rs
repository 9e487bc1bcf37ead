//! int8 GEMM for q4_K weights: `y[m, n] = Σ_k x[m, k] · w[n, k]`, the weight
//! kept 4-bit.
//!
//! **Weights** are ggml's `block_q4_K` (ggml-quants.c `dequantize_row_q4_K`):
//! per 256 values of a row, an f16 `d` and `dmin`, twelve bytes holding eight
//! 6-bit scales `sc` and mins `m` (`get_scale_min_k4`), and 256 4-bit `q`;
//! value `l` of 32-value sub-block `s` is `(d·sc_s) · q − (dmin·m_s)`, each
//! product rounded to f32 as ggml does. They are repacked once, at load, into
//! panels of [`NR`] = 8 output columns: per 32-value sub-block, 128 bytes of
//! nibbles (8 groups of 16 bytes; byte `2c + t` of group `g` holds column
//! `c`'s value `4g + t` in its low nibble and `4g + 2 + t` in its high one:
//! one AND and one shift give two k-pairs of the 8 columns, the layout of
//! the q8 panels), then the 8 columns' `sc` and `m` as bytes; per 256
//! values the 8 columns' `d` and `dmin` as f32 (f16 → f32 is exact). 152
//! bytes per 256 weights of a row against the blocks' 144: the weight stays
//! 4-bit, and the nibbles are widened to 16 bits in registers only.
//!
//! **Activations** are quantised per row and 32-value block by the q8 GEMM's
//! quantiser ([`QuantizedRows`]: int16, `dx = max|x| / 32767`), whose blocks
//! are the q4_K sub-blocks.
//!
//! **Product**, per sub-block `b`: the exact integer sums `isum = Σ a·q`
//! (at most 32 · 32767 · 15 < 2²⁴, so also exact in f32) and `asum = Σ a`
//! (per row), then, in f32 with each operation rounded (no fused
//! multiply-add), `d1 = d · f32(sc)`, `m1 = dmin · f32(m)` (ggml's
//! products) and `acc = acc + (f32(isum) · d1 − f32(asum) · m1) · dx`,
//! sub-blocks in k order. Every micro-kernel (scalar, AVX2, simd128) does
//! exactly that: native and wasm give the same bits.

use std::ops::Range;

use super::epilogue::Epilogue;
use super::quantized::QuantizedGemm;
use super::q4_kernel;
use super::q8::{PackError, QuantizedRows, BLOCK, GROUP_BYTES};
use super::q8_kernel::{Isa, MR, NR};

/// Values per q4_K super-block (ggml's `QK_K`).
pub const SUPER: usize = 256;
/// Bytes of one ggml `block_q4_K`: f16 `d`, f16 `dmin`, 12 scale bytes, 128 nibble bytes.
pub const SUPER_BYTES: usize = 144;
/// 32-value sub-blocks per super-block.
const SUBS: usize = SUPER / BLOCK;
/// Bytes of one sub-block of one panel: 32 values × 8 columns, two per byte.
pub(crate) const PANEL_SUB: usize = BLOCK * NR / 2;
/// Scale bytes of one sub-block of one panel: 8 `sc`, then 8 `m`.
pub(crate) const PANEL_SCALES: usize = 2 * NR;
/// f32 of one super-block of one panel: 8 `d`, then 8 `dmin`.
pub(crate) const PANEL_SUPER: usize = 2 * NR;

/// A q4_K weight `[n, k]` in the kernel's panel layout (see the module doc).
#[derive(Clone)]
pub struct PackedQ4 {
    n: usize,
    k: usize,
    /// `ceil(n / 8)` panels × `k / 32` sub-blocks × 128 bytes of nibbles.
    quants: Vec<u8>,
    /// `ceil(n / 8)` panels × `k / 32` sub-blocks × (8 `sc`, 8 `m`).
    scales: Vec<u8>,
    /// `ceil(n / 8)` panels × `k / 256` super-blocks × (8 `d`, 8 `dmin`).
    supers: Vec<f32>,
}

impl std::fmt::Debug for PackedQ4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedQ4 [{}, {}]", self.n, self.k)
    }
}

/// Sub-block `j`'s 6-bit scale and min from a block's 12 scale bytes (ggml's
/// `get_scale_min_k4`).
fn scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 12 scale bytes of eight 6-bit scales and mins: the inverse of [`scale_min`].
fn pack_scale_min(sc: &[u8; SUBS], m: &[u8; SUBS]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    q
}

/// Where value `l` (0–31) of a sub-block's column `c` lies in its 128 panel
/// bytes: (byte, shift of its nibble).
fn nibble_at(c: usize, l: usize) -> (usize, u32) {
    let (pair, t) = (l / 2, l % 2);
    ((pair / 2) * 16 + c * 2 + t, 4 * (pair % 2) as u32)
}

impl PackedQ4 {
    /// Repacks `n` rows of `k` values stored as ggml `block_q4_K` (`n · k/256 ·
    /// 144` bytes, row-major). Errors (never panics) when `k` is not a positive
    /// multiple of 256 or the byte count does not match.
    pub fn from_blocks(blocks: &[u8], n: usize, k: usize) -> Result<Self, PackError> {
        if k == 0 || !k.is_multiple_of(SUPER) || n == 0 {
            return Err(PackError(format!("q4_K weight [{n}, {k}]: rows must be a positive multiple of {SUPER} long")));
        }
        let (ks, kb) = (k / SUPER, k / BLOCK);
        let expected = n.checked_mul(ks * SUPER_BYTES);
        if expected != Some(blocks.len()) {
            return Err(PackError(format!(
                "q4_K weight [{n}, {k}]: {} bytes of blocks, expected {}",
                blocks.len(),
                n.saturating_mul(ks * SUPER_BYTES)
            )));
        }
        let panels = n.div_ceil(NR);
        let mut quants = vec![0u8; panels * kb * PANEL_SUB];
        let mut scales = vec![0u8; panels * kb * PANEL_SCALES];
        let mut supers = vec![0f32; panels * ks * PANEL_SUPER];
        for (row, row_blocks) in blocks.chunks_exact(ks * SUPER_BYTES).enumerate() {
            let (p, c) = (row / NR, row % NR);
            for (sb, block) in row_blocks.chunks_exact(SUPER_BYTES).enumerate() {
                let ps = (p * ks + sb) * PANEL_SUPER;
                supers[ps + c] = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
                supers[ps + NR + c] = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
                let sm: &[u8; 12] = block[4..16].try_into().expect("12 scale bytes");
                let qs = &block[16..];
                for s in 0..SUBS {
                    let pb = p * kb + sb * SUBS + s;
                    let (sc, m) = scale_min(s, sm);
                    scales[pb * PANEL_SCALES + c] = sc;
                    scales[pb * PANEL_SCALES + NR + c] = m;
                    let dst = &mut quants[pb * PANEL_SUB..(pb + 1) * PANEL_SUB];
                    for (l, &byte) in qs[(s / 2) * BLOCK..(s / 2 + 1) * BLOCK].iter().enumerate() {
                        let q = if s % 2 == 0 { byte & 0xF } else { byte >> 4 };
                        let (at, shift) = nibble_at(c, l);
                        dst[at] |= q << shift;
                    }
                }
            }
        }
        Ok(Self { n, k, quants, scales, supers })
    }

    /// The weight back as ggml `block_q4_K` bytes, exactly as loaded. For the
    /// GPU upload and for candle's kernels, compared in tests.
    pub fn to_blocks(&self) -> Vec<u8> {
        let (ks, kb) = (self.k / SUPER, self.k / BLOCK);
        let mut out = Vec::with_capacity(self.n * ks * SUPER_BYTES);
        for row in 0..self.n {
            let (p, c) = (row / NR, row % NR);
            for sb in 0..ks {
                let ps = (p * ks + sb) * PANEL_SUPER;
                out.extend(half::f16::from_f32(self.supers[ps + c]).to_le_bytes());
                out.extend(half::f16::from_f32(self.supers[ps + NR + c]).to_le_bytes());
                let (mut sc, mut m) = ([0u8; SUBS], [0u8; SUBS]);
                let mut qs = [0u8; SUPER / 2];
                for s in 0..SUBS {
                    let pb = p * kb + sb * SUBS + s;
                    sc[s] = self.scales[pb * PANEL_SCALES + c];
                    m[s] = self.scales[pb * PANEL_SCALES + NR + c];
                    for l in 0..BLOCK {
                        let (at, shift) = nibble_at(c, l);
                        let q = (self.quants[pb * PANEL_SUB + at] >> shift) & 0xF;
                        qs[(s / 2) * BLOCK + l] |= q << (4 * (s % 2));
                    }
                }
                out.extend(pack_scale_min(&sc, &m));
                out.extend(qs);
            }
        }
        out
    }

    /// The weight as f32 rows `[n, k]`, row-major: ggml's dequantisation,
    /// `(d · sc) · q − (dmin · m)` rounded as ggml rounds it.
    pub fn to_rows(&self) -> Vec<f32> {
        let (ks, kb) = (self.k / SUPER, self.k / BLOCK);
        let mut out = vec![0f32; self.n * self.k];
        for (row, values) in out.chunks_exact_mut(self.k).enumerate() {
            let (p, c) = (row / NR, row % NR);
            for (b, sub) in values.chunks_exact_mut(BLOCK).enumerate() {
                let ps = (p * ks + b / SUBS) * PANEL_SUPER;
                let pb = p * kb + b;
                let d1 = self.supers[ps + c] * f32::from(self.scales[pb * PANEL_SCALES + c]);
                let m1 = self.supers[ps + NR + c] * f32::from(self.scales[pb * PANEL_SCALES + NR + c]);
                for (l, v) in sub.iter_mut().enumerate() {
                    let (at, shift) = nibble_at(c, l);
                    *v = d1 * f32::from((self.quants[pb * PANEL_SUB + at] >> shift) & 0xF) - m1;
                }
            }
        }
        out
    }

    /// `(n, k)`: output and input features.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Bytes held (nibbles, scale bytes, super-block scales).
    pub fn bytes(&self) -> usize {
        self.quants.len() + self.scales.len() + self.supers.len() * 4
    }

    /// The columns of `panels` for every row, into `out` ([m, those columns],
    /// row-major), the panels in groups that stay in L2 over every tile of
    /// rows in turn (as the q8 GEMM's).
    #[allow(clippy::too_many_arguments)]
    fn panel_range(
        &self,
        acts: &QuantizedRows,
        sums: &[i32],
        m: usize,
        isa: Isa,
        epilogue: &Epilogue,
        panels: Range<usize>,
        out: &mut [f32],
    ) {
        let (ks, kb) = (self.k / SUPER, self.k / BLOCK);
        let c0 = panels.start * NR;
        let width = (panels.end * NR).min(self.n) - c0;
        let group = (GROUP_BYTES / (kb * PANEL_SUB)).max(1);
        for g in panels.clone().step_by(group) {
            for t in 0..acts.rows_padded / MR {
                let rows = q4_kernel::Rows {
                    q: &acts.q[t * MR * self.k..(t + 1) * MR * self.k],
                    d: &acts.d[t * MR * kb..(t + 1) * MR * kb],
                    sums: &sums[t * MR * kb..(t + 1) * MR * kb],
                };
                for p in g..(g + group).min(panels.end) {
                    let w = q4_kernel::Panel {
                        quants: &self.quants[p * kb * PANEL_SUB..(p + 1) * kb * PANEL_SUB],
                        scales: &self.scales[p * kb * PANEL_SCALES..(p + 1) * kb * PANEL_SCALES],
                        supers: &self.supers[p * ks * PANEL_SUPER..(p + 1) * ks * PANEL_SUPER],
                    };
                    let (col, cols) = (p * NR - c0, NR.min(self.n - p * NR));
                    let mut tile = [[0f32; NR]; MR];
                    q4_kernel::tile(isa, kb, &rows, &w, &mut tile);
                    for (r, row) in tile.iter().enumerate() {
                        let i = t * MR + r;
                        if i < m {
                            epilogue.store(i, c0 + col, self.n, row, &mut out[i * width + col..i * width + col + cols]);
                        }
                    }
                }
            }
        }
    }
}

impl QuantizedGemm for PackedQ4 {
    type Isa = Isa;

    fn best_isa() -> Isa {
        Isa::best()
    }

    /// [`matmul_fused`](Self::matmul_fused) with a chosen micro-kernel
    /// ([`kernel_isa`]): one contiguous range of panels per thread of the
    /// current rayon pool, every output one [`q4_kernel::tile`] over all of k.
    fn matmul_fused_with(&self, x: &[f32], m: usize, epilogue: &Epilogue, isa: Isa) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "x must be [m, k]");
        epilogue.check(m, self.n);
        let isa = kernel_isa(isa);
        let acts = QuantizedRows::new(x, m, self.k, MR);
        // Σ a per row and block: the min term of every column of the block.
        let sums: Vec<i32> = acts.q.chunks_exact(BLOCK).map(|b| b.iter().map(|&a| i32::from(a)).sum()).collect();
        super::split::by_panels(m, self.n, NR, |panels, block| self.panel_range(&acts, &sums, m, isa, epilogue, panels, block))
    }
}

/// The micro-kernel the q4 GEMM runs for `isa`: its own are scalar, AVX2 and
/// simd128; the VNNI instruction sets (q8's 6- and 12-row kernels) run AVX2,
/// and q8's relaxed-SIMD kernel simd128 (its 7-bit pieces would cost q4 as
/// they cost q8: bench/README.md).
pub fn kernel_isa(isa: Isa) -> Isa {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni | Isa::Avx512Vnni => Isa::Avx2,
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        Isa::Relaxed => Isa::Simd128,
        other => other,
    }
}
