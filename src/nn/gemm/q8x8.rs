//! q8_0 × q8_0 GEMM, ggml's semantics: `y[m, n] = Σ_k x[m, k] · w[n, k]`
//! with the activations quantised to q8_0 as ggml's `quantize_row_q8_0`
//! (candle's `BlockQ8_0::from_float`) and every block's integer dot product
//! exactly ggml's `vec_dot_q8_0_q8_0`'s; only the f32 sum over the blocks is
//! ordered differently (candle's AVX kernel sums 8 partial lanes with fused
//! multiply-adds, ggml's x86 kernels fuse per block as here), so the result
//! equals candle's `Blocks` kernel within f32 rounding. Natively the default for q8_0 weights where AVX-512 VNNI is
//! present (`nn::linear::QuantKernel::Int8x8`).
//!
//! **Activations**, per row and 32-value block: `d = max|x| / 127`, `q =
//! round(x · (1/d))` rounded half away from zero (C's `roundf`, Rust's
//! `f32::round`) to int8, `d` then rounded to f16 (the block's stored scale)
//! and used as f32. Besides, per block, `corr = −128 · Σ q`.
//!
//! **Weights** (ggml's `block_q8_0`) are repacked once, at load, into panels
//! of [`NR`] = 16 output columns: per block, per group of 4 consecutive k
//! (a quad), the 16 columns' 4 weights side by side, each stored as `w + 128`
//! (u8: `vpdpbusd` multiplies unsigned bytes by signed ones, and its
//! broadcast operand, the activation, must be the signed one); then the 16
//! columns' scales as f32. 1.125 bytes per weight, as the q8 GEMM's panels.
//! Columns past `n` are zero (stored 128) with scale 0.
//!
//! **Product**: per block `isum = corr + Σ (w + 128) · q = Σ w · q` exactly
//! (i32; `vpdpbusd` sums four u8 × s8 products into an i32 lane, so the
//! correction for the +128 is the accumulator's initial value), then `acc =
//! fma(f32(isum), dx · dw, acc)` (a fused multiply-add, one rounding, as
//! ggml's AVX2/AVX-512 `vec_dot_q8_0_q8_0` accumulates each block), blocks
//! in k order.
//! The scalar kernel (any CPU, and the tests' reference), the AVX-512 VNNI
//! one and the wasm relaxed-SIMD one (where its probes pass,
//! `q8x8_relaxed`) give the same bits, at any thread count.

use std::ops::Range;

use super::epilogue::Epilogue;
use super::quantized::QuantizedGemm;
use super::q8::{PackError, BLOCK, BLOCK_BYTES, GROUP_BYTES};
use super::q8x8_kernel::{self, Q8x8Isa, HALF_ROWS, NR, PANEL_BLOCK, QUADS, ROWS, TILE_BLOCK};

/// The largest quantised activation (ggml's q8_0: `(1 << 7) − 1`).
pub const ACT_MAX: f32 = 127.0;
/// What the panels add to each int8 weight to make it `vpdpbusd`'s unsigned operand.
const OFFSET: i32 = 128;

/// A q8_0 weight `[n, k]` in the kernel's panel layout (see the module doc).
#[derive(Clone)]
pub struct PackedQ8x8 {
    n: usize,
    k: usize,
    /// `ceil(n / 16)` panels × `k / 32` blocks × 512 bytes (`w + 128`).
    quants: Vec<u8>,
    /// `ceil(n / 16)` panels × `k / 32` blocks × 16 scales.
    scales: Vec<f32>,
}

impl std::fmt::Debug for PackedQ8x8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedQ8x8 [{}, {}]", self.n, self.k)
    }
}

impl PackedQ8x8 {
    /// Repacks `n` rows of `k` values stored as ggml `block_q8_0` (`n · k/32 ·
    /// 34` bytes, row-major). Errors (never panics) when `k` is not a positive
    /// multiple of 32 or the byte count does not match.
    pub fn from_blocks(blocks: &[u8], n: usize, k: usize) -> Result<Self, PackError> {
        if k == 0 || !k.is_multiple_of(BLOCK) || n == 0 {
            return Err(PackError(format!("q8_0 weight [{n}, {k}]: rows must be a positive multiple of {BLOCK} long")));
        }
        let kb = k / BLOCK;
        if n.checked_mul(kb * BLOCK_BYTES) != Some(blocks.len()) {
            return Err(PackError(format!(
                "q8_0 weight [{n}, {k}]: {} bytes of blocks, expected {}",
                blocks.len(),
                n.saturating_mul(kb * BLOCK_BYTES)
            )));
        }
        let panels = n.div_ceil(NR);
        let mut quants = vec![OFFSET as u8; panels * kb * PANEL_BLOCK];
        let mut scales = vec![0f32; panels * kb * NR];
        for (row, row_blocks) in blocks.chunks_exact(kb * BLOCK_BYTES).enumerate() {
            let (p, c) = (row / NR, row % NR);
            for (b, block) in row_blocks.chunks_exact(BLOCK_BYTES).enumerate() {
                let pb = p * kb + b;
                scales[pb * NR + c] = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
                let dst = &mut quants[pb * PANEL_BLOCK..(pb + 1) * PANEL_BLOCK];
                for (j, quad) in block[2..].chunks_exact(4).enumerate() {
                    for (t, &q) in quad.iter().enumerate() {
                        dst[(j * NR + c) * 4 + t] = (i32::from(q as i8) + OFFSET) as u8;
                    }
                }
            }
        }
        Ok(Self { n, k, quants, scales })
    }

    /// The weight back as ggml `block_q8_0` bytes (exact: the scales were f16).
    pub fn to_blocks(&self) -> Vec<u8> {
        let kb = self.k / BLOCK;
        let mut out = Vec::with_capacity(self.n * kb * BLOCK_BYTES);
        for row in 0..self.n {
            let (p, c) = (row / NR, row % NR);
            for b in 0..kb {
                let pb = p * kb + b;
                out.extend(half::f16::from_f32(self.scales[pb * NR + c]).to_le_bytes());
                let src = &self.quants[pb * PANEL_BLOCK..(pb + 1) * PANEL_BLOCK];
                for j in 0..QUADS {
                    out.extend(src[(j * NR + c) * 4..(j * NR + c + 1) * 4].iter().map(|&u| (i32::from(u) - OFFSET) as i8 as u8));
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
    /// row-major): the panels in groups of about [`GROUP_BYTES`], each group
    /// over every tile of rows (as the q8 GEMM does, so that the group stays
    /// in L2 while the activations stream once per group). A SIMD kernel
    /// takes the panels two at a time on half a tile of rows
    /// ([`q8x8_kernel::tile_pair`]; a half of rows past `m` is skipped), an
    /// odd panel left over (and the scalar kernel) one at a time on a whole
    /// tile: every value the same bits either way.
    fn panel_range(&self, acts: &Q8Rows, m: usize, isa: Q8x8Isa, epilogue: &Epilogue, panels: Range<usize>, out: &mut [f32]) {
        let kb = self.k / BLOCK;
        let c0 = panels.start * NR;
        let width = (panels.end * NR).min(self.n) - c0;
        let group = (GROUP_BYTES / (kb * PANEL_BLOCK)).max(2) & !1;
        let pairs = isa != Q8x8Isa::Scalar;
        let w = |p: usize| (&self.quants[p * kb * PANEL_BLOCK..(p + 1) * kb * PANEL_BLOCK], &self.scales[p * kb * NR..(p + 1) * kb * NR]);
        let mut store = |i: usize, p: usize, row: &[f32]| {
            if i < m {
                let (col, cols) = (p * NR - c0, (row.len()).min(self.n - p * NR));
                epilogue.store(i, c0 + col, self.n, row, &mut out[i * width + col..i * width + col + cols]);
            }
        };
        for g in panels.clone().step_by(group) {
            let end = (g + group).min(panels.end);
            for t in 0..m.div_ceil(ROWS) {
                let a = &acts.q[t * kb * TILE_BLOCK..(t + 1) * kb * TILE_BLOCK];
                let (da, corr) = (&acts.d[t * kb * ROWS..(t + 1) * kb * ROWS], &acts.corr[t * kb * ROWS..(t + 1) * kb * ROWS]);
                let mut p = g;
                while pairs && p + 2 <= end {
                    let ((w0, dw0), (w1, dw1)) = (w(p), w(p + 1));
                    for half in (0..2).take_while(|h| t * ROWS + h * HALF_ROWS < m) {
                        let mut tile = [[0f32; 2 * NR]; HALF_ROWS];
                        q8x8_kernel::tile_pair(isa, kb, a, da, corr, half, [w0, w1], [dw0, dw1], &mut tile);
                        for (r, row) in tile.iter().enumerate() {
                            store(t * ROWS + half * HALF_ROWS + r, p, row);
                        }
                    }
                    p += 2;
                }
                for p in p..end {
                    let (wp, dw) = w(p);
                    let mut tile = [[0f32; NR]; ROWS];
                    q8x8_kernel::tile(isa, kb, a, da, corr, wp, dw, &mut tile);
                    for (r, row) in tile.iter().enumerate() {
                        store(t * ROWS + r, p, row);
                    }
                }
            }
        }
    }
}

impl QuantizedGemm for PackedQ8x8 {
    type Isa = Q8x8Isa;

    fn best_isa() -> Q8x8Isa {
        Q8x8Isa::best()
    }

    /// [`matmul_fused`](Self::matmul_fused) with a chosen micro-kernel: one
    /// layer of [`PackedQ8x8::matmul_shared_with`]. Every output value is one
    /// [`q8x8_kernel::tile`] over all of k, so the result is the same bits at
    /// any thread count.
    fn matmul_fused_with(&self, x: &[f32], m: usize, epilogue: &Epilogue, isa: Q8x8Isa) -> Vec<f32> {
        Self::matmul_shared_with(&[(self, *epilogue)], x, m, isa).pop().expect("one layer, one output")
    }
}

/// The rows a thread's range is made of (`split::by_rows`): a SIMD kernel
/// computes half a tile of rows at a time, the scalar one a tile.
fn row_unit(isa: Q8x8Isa) -> usize {
    if isa == Q8x8Isa::Scalar {
        ROWS
    } else {
        HALF_ROWS
    }
}

impl PackedQ8x8 {
    /// [`QuantizedGemm::matmul_fused`] of several weights of the same k on one
    /// input `x` `[m, k]` (q, k and v of self-attention), one `[m, n]` output
    /// per `(weight, epilogue)`: each row of `x` is quantised once for all of
    /// them. The same bits as one call each. Panics if a weight's k is not
    /// the others', or as `matmul_fused_with`.
    pub fn matmul_shared(layers: &[(&PackedQ8x8, Epilogue)], x: &[f32], m: usize) -> Vec<Vec<f32>> {
        Self::matmul_shared_with(layers, x, m, Q8x8Isa::best())
    }

    /// [`matmul_shared`](Self::matmul_shared) on the micro-kernel `isa`. The
    /// rows are split across the current rayon pool's threads
    /// ([`split::by_rows`](super::split::by_rows)): each thread quantises its
    /// own rows (in parallel: quantised once for every thread, they were a
    /// serial step before each product) and multiplies them by every panel
    /// of every weight, writing its rows of the outputs in place.
    pub fn matmul_shared_with(layers: &[(&PackedQ8x8, Epilogue)], x: &[f32], m: usize, isa: Q8x8Isa) -> Vec<Vec<f32>> {
        let k = layers.first().map_or(0, |(w, _)| w.k);
        assert!(layers.iter().all(|(w, _)| w.k == k), "every weight must have the same k");
        assert!(x.len() == m * k && k.is_multiple_of(BLOCK), "x must be [m, k], k a multiple of {BLOCK}");
        for (w, epilogue) in layers {
            epilogue.check(m, w.n);
        }
        let ns: Vec<usize> = layers.iter().map(|(w, _)| w.n).collect();
        let unit = row_unit(isa);
        super::split::by_rows(m, &ns, unit, |rows, outs| {
            let acts = Q8Rows::new(&x[rows.start * k..rows.end * k], rows.len(), k, isa);
            for ((w, epilogue), out) in layers.iter().zip(outs.iter_mut()) {
                w.panel_range(&acts, rows.len(), isa, &epilogue.rows(rows.clone(), w.n), 0..w.n.div_ceil(NR), out);
            }
        })
    }

    /// `second(first(x))`, each with its epilogue (an MLP: `residual +
    /// fc2(act(fc1(x)))`), `x` `[m, k]` → `[m, n of second]`, on the
    /// micro-kernel `isa`: the rows split across the current rayon pool's
    /// threads ([`split::by_rows`](super::split::by_rows)), each thread taking
    /// its rows through both products, at most `max_rows` rows of the
    /// intermediate `[rows, n of first]` at a time over all threads together
    /// (its size is part of the peak memory; at least one tile's half each).
    /// The same bits as the two products one after the other: every row is
    /// computed from its own row only. One parallel region instead of one per
    /// product and step: each is a wake-up of the pool and a wait for its
    /// slowest thread. Panics if `second`'s k is not `first`'s n, or as
    /// `matmul_fused_with`.
    pub fn matmul_chain_with(first: (&PackedQ8x8, Epilogue), second: (&PackedQ8x8, Epilogue), x: &[f32], m: usize, max_rows: usize, isa: Q8x8Isa) -> Vec<f32> {
        let ((w1, e1), (w2, e2)) = (first, second);
        assert_eq!(w2.k, w1.n, "the second weight must read the first's outputs");
        assert!(x.len() == m * w1.k, "x must be [m, k]");
        e1.check(m, w1.n);
        e2.check(m, w2.n);
        let unit = row_unit(isa);
        let step = (max_rows / rayon::current_num_threads().max(1) / unit).max(1) * unit;
        let mut ys = super::split::by_rows(m, &[w2.n], unit, |rows, outs| {
            for start in rows.clone().step_by(step) {
                let part = start..(start + step).min(rows.end);
                let (len, out) = (part.len(), &mut outs[0][(start - rows.start) * w2.n..(part.end - rows.start) * w2.n]);
                let acts = Q8Rows::new(&x[start * w1.k..part.end * w1.k], len, w1.k, isa);
                let mut h = vec![0f32; len * w1.n];
                w1.panel_range(&acts, len, isa, &e1.rows(part.clone(), w1.n), 0..w1.n.div_ceil(NR), &mut h);
                let acts = Q8Rows::new(&h, len, w2.k, isa);
                drop(h);
                w2.panel_range(&acts, len, isa, &e2.rows(part, w2.n), 0..w2.n.div_ceil(NR), out);
            }
        });
        ys.pop().expect("one output")
    }
}

/// Activations quantised to q8_0 (see the module doc), each tile of
/// [`ROWS`] rows laid out as the kernels read it (per block, per quad, the
/// rows' 4 values side by side; scales and corrections `[block · ROWS +
/// row]`); rows past `m` are zero with scale 0.
struct Q8Rows {
    q: Vec<i8>,
    d: Vec<f32>,
    corr: Vec<i32>,
}

impl Q8Rows {
    /// The quantiser is `isa`'s ([`quantize_block`]): the same bytes either way.
    fn new(x: &[f32], m: usize, k: usize, isa: Q8x8Isa) -> Self {
        let kb = k / BLOCK;
        let tiles = m.div_ceil(ROWS);
        let mut q = vec![0i8; tiles * kb * TILE_BLOCK];
        let mut d = vec![0f32; tiles * kb * ROWS];
        let mut corr = vec![0i32; tiles * kb * ROWS];
        let mut block = [0i8; BLOCK];
        for (i, row) in x.chunks_exact(k).enumerate() {
            let (t, r) = (i / ROWS, i % ROWS);
            for (b, xb) in row.chunks_exact(BLOCK).enumerate() {
                let tb = t * kb + b;
                let (scale, sum) = quantize_block(xb, &mut block, isa);
                d[tb * ROWS + r] = scale;
                corr[tb * ROWS + r] = -OFFSET * sum;
                let dst = &mut q[tb * TILE_BLOCK..(tb + 1) * TILE_BLOCK];
                for (j, quad) in block.chunks_exact(4).enumerate() {
                    dst[(j * ROWS + r) * 4..(j * ROWS + r + 1) * 4].copy_from_slice(quad);
                }
            }
        }
        Self { q, d, corr }
    }
}

/// One block of activations (32 values) as ggml's `quantize_row_q8_0`:
/// returns the scale (f16-rounded, as f32) and the sum of the quantised
/// values. In AVX-512 for [`Q8x8Isa::Avx512Vnni`] (the same bytes; a fifth of
/// the GEMM's time on fc2's shape in scalar code), in simd128 for
/// [`Q8x8Isa::Relaxed`] (the same bytes), else scalar.
///
/// Panics if `x` is not 32 values long.
pub fn quantize_block(x: &[f32], q: &mut [i8; BLOCK], isa: Q8x8Isa) -> (f32, i32) {
    let x: &[f32; BLOCK] = x.try_into().expect("a block is 32 values");
    match isa {
        Q8x8Isa::Scalar => quantize_block_scalar(x, q),
        #[cfg(target_arch = "x86_64")]
        Q8x8Isa::Avx512Vnni => {
            assert!(isa.supported());
            // SAFETY: AVX-512 F/BW are present (checked above).
            unsafe { quantize_block_avx512(x, q) }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        Q8x8Isa::Relaxed => {
            // SAFETY: simd128 is a requirement of every wasm build.
            unsafe { quantize_block_simd128(x, q) }
        }
    }
}

fn quantize_block_scalar(x: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / ACT_MAX;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0;
    for (q, &v) in q.iter_mut().zip(x) {
        *q = round_half_away(v * id);
        sum += i32::from(*q);
    }
    (half::f16::from_f32(d).to_f32(), sum)
}

/// [`quantize_block_scalar`] on two 512-bit registers: the maximum skips a
/// NaN as `f32::max` does (`vmaxps` returns its second operand, the running
/// maximum, when the first is NaN); each value is clamped to [−128, 127]
/// first (rounding then clamping gives the same integer as clamping then
/// rounding), a NaN product set to 0 (`as` maps NaN to 0), then
/// [`round_half_away`]'s addition and the truncating conversion.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_block_avx512(x: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
    use std::arch::x86_64::*;
    let v = [_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))];
    let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[1]), _mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_setzero_ps())));
    let d = amax / ACT_MAX;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (idv, lo, hi) = (_mm512_set1_ps(id), _mm512_set1_ps(-128.0), _mm512_set1_ps(127.0));
    let (below_half, sign) = (_mm512_set1_ps(BELOW_HALF), _mm512_set1_epi32(i32::MIN));
    let mut sum = _mm512_setzero_si512();
    for (h, &v) in v.iter().enumerate() {
        let p = _mm512_mul_ps(v, idv);
        let p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(p, p), p);
        let p = _mm512_min_ps(_mm512_max_ps(p, lo), hi);
        let half = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(p), sign), _mm512_castps_si512(below_half)));
        let i = _mm512_cvttps_epi32(_mm512_add_ps(p, half));
        sum = _mm512_add_epi32(sum, i);
        _mm_storeu_si128(q.as_mut_ptr().add(16 * h) as *mut __m128i, _mm512_cvtepi32_epi8(i));
    }
    (half::f16::from_f32(d).to_f32(), _mm512_reduce_add_epi32(sum))
}

/// [`quantize_block_scalar`] in simd128 for [`Q8x8Isa::Relaxed`], the same
/// bytes: the maximum as `q8`'s quantiser takes it (`pmax` skips a NaN as
/// `f32::max` does), [`round_half_away`]'s addition lane by lane,
/// `i32x4.trunc_sat_f32x4_s` (`as i32`: saturating, NaN → 0), and the
/// narrowing conversions' signed saturation as the clamp to [−128, 127].
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
#[target_feature(enable = "simd128")]
unsafe fn quantize_block_simd128(x: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
    use core::arch::wasm32::*;
    let (v, amax) = super::q8::block_amax_simd128(x);
    let d = amax / ACT_MAX;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (idv, below_half, sign) = (f32x4_splat(id), f32x4_splat(BELOW_HALF), i32x4_splat(i32::MIN));
    let round = |v: v128| {
        let p = f32x4_mul(v, idv);
        i32x4_trunc_sat_f32x4(f32x4_add(p, v128_or(v128_and(p, sign), below_half)))
    };
    let mut sum = i32x4_splat(0);
    for (h, v) in v.chunks_exact(4).enumerate() {
        let bytes = i8x16_narrow_i16x8(i16x8_narrow_i32x4(round(v[0]), round(v[1])), i16x8_narrow_i32x4(round(v[2]), round(v[3])));
        sum = i32x4_add(sum, i32x4_extadd_pairwise_i16x8(i16x8_extadd_pairwise_i8x16(bytes)));
        v128_store(q.as_mut_ptr().add(16 * h) as *mut v128, bytes);
    }
    let sum = i32x4_extract_lane::<0>(sum) + i32x4_extract_lane::<1>(sum) + i32x4_extract_lane::<2>(sum) + i32x4_extract_lane::<3>(sum);
    (half::f16::from_f32(d).to_f32(), sum)
}

/// The largest f32 below ½: `v + BELOW_HALF · sign(v)` truncates to `v`
/// rounded half away from zero ([`round_half_away`]).
const BELOW_HALF: f32 = 0.499_999_97;

/// `f32::round(v) as i8` (half away from zero, saturating, NaN → 0) without
/// the libm call `round` is on baseline x86-64: adding the largest f32 below
/// ½ with `v`'s sign rounds to the same integer for every f32 (a tie's sum
/// rounds up to the next integer, anything below a tie stays below it),
/// then the truncating, saturating `as`.
#[inline]
pub fn round_half_away(v: f32) -> i8 {
    ((v + BELOW_HALF.copysign(v)) as i32).clamp(-128, 127) as i8
}
