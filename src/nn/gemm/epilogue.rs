//! What the GEMMs do to each output once its sum over k is complete, fused
//! into the pass that stores it (as the GPU engine's matmul does,
//! `gpu::ops::matmul::Epilogue`): `y = act(acc + bias) + residual`, each part
//! optional. Fused, the MLP's activation and the blocks' residual sums cost no
//! pass of their own over `[m, n]` and no tensor in between.
//!
//! The arithmetic is candle's unfused operations', value by value, in the
//! same order (`Linear` adds the bias, then `Activation::apply`, then the
//! residual sum), so fused and unfused give the same bits
//! ([`Activation::at`] follows candle 0.11's `unary_map` formulas).

use crate::nn::Activation;

/// `y[i, j] = act(acc[i, j] + bias[j]) + residual[i, j]`; `None` parts are
/// left out (no bias: `act(acc)`; no activation: the identity).
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// `[n]`.
    pub bias: Option<&'a [f32]>,
    pub activation: Option<Activation>,
    /// `[m, n]` row-major (the block's input, for a residual sum).
    pub residual: Option<&'a [f32]>,
}

impl<'a> Epilogue<'a> {
    /// Only a bias (or nothing).
    pub fn bias(bias: Option<&'a [f32]>) -> Self {
        Self { bias, ..Self::default() }
    }

    /// This epilogue on rows `rows` of the `[m, n]` output alone, rows counted
    /// from `rows.start` (the residual's rows cut out; the bias is per column).
    /// Panics if the residual has fewer rows.
    pub(crate) fn rows(&self, rows: std::ops::Range<usize>, n: usize) -> Self {
        Self { residual: self.residual.map(|r| &r[rows.start * n..rows.end * n]), ..*self }
    }

    /// Panics unless the bias is `[n]` and the residual `[m, n]` (a caller's bug).
    pub(crate) fn check(&self, m: usize, n: usize) {
        assert!(self.bias.is_none_or(|b| b.len() == n), "bias must be [n]");
        assert!(self.residual.is_none_or(|r| r.len() == m * n), "residual must be [m, n]");
    }

    /// `out[j] = y[row, col + j]` from `acc[j]` (the finished sums), for `j <
    /// out.len()`; `n` is the row length of the whole output.
    #[inline]
    pub(crate) fn store(&self, row: usize, col: usize, n: usize, acc: &[f32], out: &mut [f32]) {
        self.finish_best(row, col, n, Some(acc), out)
    }

    /// [`store`](Self::store) of a tile: `acc` holds `acc.len() / cols` rows
    /// of `cols` finished sums (output rows from `row`, columns from `col`),
    /// stored to `out[start + r · ld..][..cols]`; one dispatch for the tile.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn store_rows(&self, row: usize, col: usize, n: usize, acc: &[f32], cols: usize, out: &mut [f32], start: usize, ld: usize) {
        #[cfg(target_arch = "wasm32")]
        // SAFETY: simd128 is a requirement of the wasm build.
        return unsafe { self.store_rows_simd128(row, col, n, acc, cols, out, start, ld) };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F is present (checked just above).
            return unsafe { self.store_rows_avx512(row, col, n, acc, cols, out, start, ld) };
        }
        #[allow(unreachable_code)]
        self.store_rows_inline(row, col, n, acc, cols, out, start, ld)
    }

    #[cfg(target_arch = "wasm32")]
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "simd128")]
    unsafe fn store_rows_simd128(&self, row: usize, col: usize, n: usize, acc: &[f32], cols: usize, out: &mut [f32], start: usize, ld: usize) {
        self.store_rows_inline(row, col, n, acc, cols, out, start, ld)
    }

    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn store_rows_avx512(&self, row: usize, col: usize, n: usize, acc: &[f32], cols: usize, out: &mut [f32], start: usize, ld: usize) {
        self.store_rows_inline(row, col, n, acc, cols, out, start, ld)
    }

    /// Per group of 16 columns, finished in registers and stored once (the
    /// output's lines are not read back while their stores are in flight).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn store_rows_inline(&self, row: usize, col: usize, n: usize, acc: &[f32], cols: usize, out: &mut [f32], start: usize, ld: usize) {
        const GROUP: usize = 16;
        for (r, acc) in acc.chunks_exact(cols).enumerate() {
            let (row, out) = (row + r, &mut out[start + r * ld..][..cols]);
            if !cols.is_multiple_of(GROUP) {
                self.finish(row, col, n, Some(acc), out);
                continue;
            }
            for (g, (acc, out)) in acc.chunks_exact(GROUP).zip(out.chunks_exact_mut(GROUP)).enumerate() {
                let c = col + g * GROUP;
                let group = |v: &[f32]| -> [f32; GROUP] { v.try_into().expect("a group of 16") };
                let mut t = group(acc);
                if let Some(b) = self.bias {
                    let b = group(&b[c..c + GROUP]);
                    t.iter_mut().zip(b).for_each(|(t, b)| *t += b);
                }
                if let Some(act) = self.activation {
                    act.at_all_inline(&mut t);
                }
                if let Some(res) = self.residual {
                    let res = group(&res[row * n + c..][..GROUP]);
                    t.iter_mut().zip(res).for_each(|(t, r)| *t += r);
                }
                out.copy_from_slice(&t);
            }
        }
    }

    /// Asks the CPU to bring the residual's rows `row..row + rows`, columns
    /// `col..col + cols` into the cache (x86-64; a no-op elsewhere), before a
    /// tile's product: by the time [`store_rows`](Self::store_rows) reads
    /// them they are there, where they were evicted by the weights streamed
    /// since the residual was written.
    #[inline]
    pub(crate) fn prefetch_rows(&self, row: usize, rows: usize, col: usize, n: usize, cols: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(res) = self.residual {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            for r in row..row + rows {
                let part = &res[r * n + col..r * n + col + cols];
                // One per 64-byte line, the last value's line included.
                for j in (0..cols).step_by(16).chain(std::iter::once(cols - 1)) {
                    // SAFETY: a prefetch has no effect on memory (and the
                    // address is within `part`).
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(part[j..].as_ptr() as *const i8) };
                }
            }
        }
        let _ = (row, rows, col, n, cols);
    }

    /// [`store`](Self::store) in place: `out` holds the finished sums.
    #[inline]
    pub(crate) fn apply(&self, row: usize, col: usize, n: usize, out: &mut [f32]) {
        self.finish_best(row, col, n, None, out)
    }

    /// [`finish`](Self::finish) compiled for the best instruction set at hand
    /// (simd128 in wasm, AVX-512 F natively where present): the same bits.
    #[inline]
    fn finish_best(&self, row: usize, col: usize, n: usize, acc: Option<&[f32]>, out: &mut [f32]) {
        #[cfg(target_arch = "wasm32")]
        // SAFETY: simd128 is a requirement of the wasm build.
        return unsafe { self.finish_simd128(row, col, n, acc, out) };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F is present (checked just above).
            return unsafe { self.finish_avx512(row, col, n, acc, out) };
        }
        #[allow(unreachable_code)]
        self.finish(row, col, n, acc, out)
    }

    /// [`finish`](Self::finish) compiled with simd128, so that its element-wise
    /// loops are vectorised (pkg/ has no global `+simd128`): the same
    /// operations, the same bits.
    #[cfg(target_arch = "wasm32")]
    #[target_feature(enable = "simd128")]
    unsafe fn finish_simd128(&self, row: usize, col: usize, n: usize, acc: Option<&[f32]>, out: &mut [f32]) {
        self.finish(row, col, n, acc, out)
    }

    /// [`finish`](Self::finish) compiled with AVX-512 F (the native build's
    /// baseline is SSE2; a tile row is 16 or 32 values, one or two registers):
    /// the same operations, the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn finish_avx512(&self, row: usize, col: usize, n: usize, acc: Option<&[f32]>, out: &mut [f32]) {
        self.finish(row, col, n, acc, out)
    }

    /// `out = act(acc + bias) + residual`, `acc` being `out` itself when `None`.
    /// With a bias, `acc + bias` is written straight (no copy first: in wasm a
    /// copy of a run-time length is a `memory.copy` call).
    #[inline(always)]
    fn finish(&self, row: usize, col: usize, n: usize, acc: Option<&[f32]>, out: &mut [f32]) {
        match (acc, self.bias) {
            (Some(acc), Some(b)) => out.iter_mut().zip(acc).zip(&b[col..]).for_each(|((o, &a), &b)| *o = a + b),
            (Some(acc), None) => out.copy_from_slice(&acc[..out.len()]),
            (None, Some(b)) => out.iter_mut().zip(&b[col..]).for_each(|(o, &b)| *o += b),
            (None, None) => {}
        }
        if let Some(act) = self.activation {
            act.at_all_inline(out);
        }
        if let Some(r) = self.residual {
            let r = &r[row * n + col..row * n + col + out.len()];
            out.iter_mut().zip(r).for_each(|(o, &r)| *o += r);
        }
    }

    /// Whether [`apply`](Self::apply) changes nothing.
    pub(crate) fn is_identity(&self) -> bool {
        self.bias.is_none() && self.activation.is_none() && self.residual.is_none()
    }
}
