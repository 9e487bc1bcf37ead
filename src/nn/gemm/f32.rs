//! f32 GEMM for dense linear layers: `y[m, n] = Σ_k x[m, k] · w[n, k] + b[n]`.
//!
//! **Weights** `[n, k]` (row-major, PyTorch's `nn.Linear` layout) are repacked
//! once, at load, into panels of [`NR`] = 16 output columns: per k, the 16
//! columns' values side by side (one AVX-512 load, two AVX2, four simd128).
//! The panels replace the tensor (4 bytes per weight, plus the zero columns
//! that pad `n` to a multiple of 16).
//!
//! **Product** (the usual register-blocked GEMM, as BLIS and ONNX Runtime's
//! MLAS do it): k is cut into blocks ([`KC`]), each panel's block read by
//! every tile of rows in turn; the activations are
//! packed once per call, k-major per tile of rows (the kernels broadcast them
//! from one pointer at constant offsets); each micro-kernel
//! ([`super::f32_kernel`]) keeps a tile of rows × 16 columns in registers
//! (AVX-512: × 32, two panels, accumulating straight in the output; the last
//! k block of a tile with an epilogue in a tile on the stack, which
//! [`Epilogue::store_rows`] finishes on its way to the output).
//! Every output is one chain over k in order from 0, so the tiles, the k
//! blocks and the threads (column panels, [`super::split`]) do not change its
//! bits; the bias is added last, once, as candle's `Linear` does, then the
//! activation and the residual sum of an [`Epilogue`], in the same pass. Natively
//! the chain uses fused multiply-adds (AVX2+FMA or AVX-512, run-time
//! detection), in wasm `f32x4.mul` then `add` (simd128 has no deterministic
//! FMA): wasm and native differ by the rounding of the products only.

use super::epilogue::Epilogue;
use super::f32_kernel::{self, F32Isa, MAX_ROWS, NR};
use super::pack::pack_rows;
use super::q8::PackError;

/// Values of k per block for the kernels going through [`f32_kernel::tile`]
/// (a 16 KB panel block: L1-resident).
pub const KC: usize = 256;

/// Values of k per block for `isa`: [`KC`], or for AVX-512 (tiles accumulated
/// in the output, [`f32_kernel::tile_into`]) 768, a ViT-B's k in one pass: each
/// pass loads and stores every output once more, and on a Zen 5 core 768
/// measured 10–20 % faster than 256 on the ViT-B/16 shapes, the panel's block
/// streaming from L2 instead of L1.
fn block_k(isa: F32Isa) -> usize {
    #[cfg(target_arch = "x86_64")]
    if isa == F32Isa::Avx512 {
        return 768;
    }
    let _ = isa;
    KC
}

/// A dense f32 weight `[n, k]` in the kernel's panel layout (see the module doc).
#[derive(Clone)]
pub struct PackedF32 {
    n: usize,
    k: usize,
    /// `ceil(n / 16)` panels × k × 16 values.
    panels: Vec<f32>,
}

impl std::fmt::Debug for PackedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedF32 [{}, {}]", self.n, self.k)
    }
}

impl PackedF32 {
    /// Repacks `n` rows of `k` values (row-major). Errors (never panics) when
    /// `n` or `k` is 0 or `w.len() != n · k`.
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> Result<Self, PackError> {
        if n == 0 || k == 0 || n.checked_mul(k) != Some(w.len()) {
            return Err(PackError(format!("f32 weight [{n}, {k}]: {} values, expected a positive n · k", w.len())));
        }
        let mut panels = vec![0f32; n.div_ceil(NR) * k * NR];
        for (row, values) in w.chunks_exact(k).enumerate() {
            let panel = &mut panels[row / NR * k * NR..];
            for (j, &v) in values.iter().enumerate() {
                panel[j * NR + row % NR] = v;
            }
        }
        Ok(Self { n, k, panels })
    }

    /// The weight back as `[n, k]` rows (exact).
    pub fn to_rows(&self) -> Vec<f32> {
        let mut w = Vec::with_capacity(self.n * self.k);
        for row in 0..self.n {
            let panel = &self.panels[row / NR * self.k * NR..];
            w.extend((0..self.k).map(|j| panel[j * NR + row % NR]));
        }
        w
    }

    /// `(n, k)`: output and input features.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.panels.len() * 4
    }

    /// `y = x · Wᵀ (+ bias)`: `x` is `[m, k]` row-major, `bias` `[n]`, the
    /// result `[m, n]`. Uses the best micro-kernel of this machine; the column
    /// panels are split across the current rayon pool's threads (the same
    /// bits at any count).
    ///
    /// Panics if `x.len() != m · k` or the bias is not `[n]` (a caller's bug).
    pub fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
        self.matmul_with(x, m, bias, F32Isa::best())
    }

    /// [`matmul`](Self::matmul) with a chosen micro-kernel.
    pub fn matmul_with(&self, x: &[f32], m: usize, bias: Option<&[f32]>, isa: F32Isa) -> Vec<f32> {
        self.matmul_fused_with(x, m, &Epilogue::bias(bias), isa)
    }

    /// `y = act(x · Wᵀ + bias) + residual` ([`Epilogue`]), each output
    /// finished where its last k block is stored. Panics as
    /// [`matmul`](Self::matmul) does, or if the residual is not `[m, n]`.
    pub fn matmul_fused(&self, x: &[f32], m: usize, epilogue: &Epilogue) -> Vec<f32> {
        self.matmul_fused_with(x, m, epilogue, F32Isa::best())
    }

    /// [`matmul_fused`](Self::matmul_fused) with a chosen micro-kernel.
    pub fn matmul_fused_with(&self, x: &[f32], m: usize, epilogue: &Epilogue, isa: F32Isa) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "x must be [m, k]");
        self.matmul_packed(&PackedRows::new(x, m, self.k, isa), epilogue)
    }

    /// [`matmul_fused_with`](Self::matmul_fused_with) of activations packed
    /// once for several weights of the same k (q, k and v of one input): the
    /// same bits. Panics if `x`'s k is not the weight's, or as
    /// [`matmul_fused`](Self::matmul_fused).
    pub fn matmul_packed(&self, x: &PackedRows, epilogue: &Epilogue) -> Vec<f32> {
        assert_eq!(x.k, self.k, "x must be [m, k]");
        let (m, isa, a) = (x.m, x.isa, &x.a);
        epilogue.check(m, self.n);
        let mr = isa.rows();
        super::split::by_panels(m, self.n, NR, |panels, block| {
            let c0 = panels.start * NR;
            let width = (panels.end * NR).min(self.n) - c0;
            let kcb = block_k(isa);
            for k0 in (0..self.k).step_by(kcb) {
                let kc = kcb.min(self.k - k0);
                let last = k0 + kc == self.k;
                // Panels two at a time where the kernel takes two
                // ([`f32_kernel::tile_into`]), the last one of an odd range alone.
                let mut p = panels.start;
                while p < panels.end {
                    let two = p + 1 < panels.end;
                    let ws = |q: usize| &self.panels[(q * self.k + k0) * NR..(q * self.k + k0 + kc) * NR];
                    let w: &[&[f32]] = if two { &[ws(p), ws(p + 1)] } else { &[ws(p)] };
                    let (col, cols) = (p * NR - c0, (w.len() * NR).min(self.n - p * NR));
                    for r0 in (0..m).step_by(mr) {
                        let rows = mr.min(m - r0);
                        let out = |r: usize| (r0 + r) * width + col..(r0 + r) * width + col + cols;
                        let tile = &a[(r0 * self.k + k0 * mr)..(r0 * self.k + (k0 + kc) * mr)];
                        // Full-width tiles straight in the output, or, in the
                        // last k block with an epilogue, in a contiguous tile
                        // finished on its way to the output.
                        if cols == w.len() * NR && last && !epilogue.is_identity() {
                            let mut local = [0f32; MAX_ROWS * 2 * NR];
                            if k0 > 0 {
                                for r in 0..rows {
                                    local[r * cols..(r + 1) * cols].copy_from_slice(&block[out(r)]);
                                }
                            }
                            epilogue.prefetch_rows(r0, rows, c0 + col, self.n, cols);
                            if f32_kernel::tile_into(isa, rows, kc, tile, w, &mut local, cols, k0 > 0) {
                                epilogue.store_rows(r0, c0 + col, self.n, &local[..rows * cols], cols, block, out(0).start, width);
                                continue;
                            }
                        } else if cols == w.len() * NR && f32_kernel::tile_into(isa, rows, kc, tile, w, &mut block[out(0).start..], width, k0 > 0) {
                            continue;
                        }
                        for (h, w) in w.iter().enumerate() {
                            let (col, cols) = (col + h * NR, NR.min(self.n - (p + h) * NR));
                            let out = |r: usize| (r0 + r) * width + col..(r0 + r) * width + col + cols;
                            let mut acc = [[0f32; NR]; MAX_ROWS];
                            if k0 > 0 {
                                for (r, a) in acc[..rows].iter_mut().enumerate() {
                                    a[..cols].copy_from_slice(&block[out(r)]);
                                }
                            }
                            f32_kernel::tile(isa, rows, kc, tile, w, &mut acc);
                            for (r, a) in acc[..rows].iter().enumerate() {
                                let dst = &mut block[out(r)];
                                if last {
                                    epilogue.store(r0 + r, c0 + col, self.n, a, dst);
                                } else {
                                    dst.copy_from_slice(&a[..cols]);
                                }
                            }
                        }
                    }
                    p += w.len();
                }
            }
        })
    }
}

/// Activations `[m, k]` packed for the f32 GEMM's micro-kernel `isa`: k-major
/// per tile of `isa.rows()` rows ([`super::pack`]), the rows past `m` zero.
#[derive(Debug, Clone)]
pub struct PackedRows {
    m: usize,
    k: usize,
    isa: F32Isa,
    a: Vec<f32>,
}

impl PackedRows {
    /// Packs `x` (`[m, k]` row-major). Panics if `x.len() != m · k`.
    pub fn new(x: &[f32], m: usize, k: usize, isa: F32Isa) -> Self {
        assert_eq!(x.len(), m * k, "x must be [m, k]");
        let mr = isa.rows();
        let mut a = vec![0f32; m.div_ceil(mr) * mr * k];
        pack_rows(x, k, mr, &mut a);
        Self { m, k, isa, a }
    }
}
