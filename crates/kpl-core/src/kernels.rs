//! Numeric kernels, written for LLVM's auto-vectoriser rather than with intrinsics, so
//! one source compiles to SSE2 natively and to simd128 (or scalar code) in wasm32.
//!
//! Two styles, both with a summation order fixed by the source and therefore the same
//! bits on every target (Rust never contracts `a * b + c` into an FMA, and never
//! reassociates):
//! - one-off dot products ([`dot`], [`dot_f32_f64`]): `LANES` independent accumulators
//!   over fixed-width chunks, then a fixed reduction tree;
//! - the proxy-learning kernels ([`panel_scores`], [`axpy_rows`]), which run 2000 times
//!   over all images: element-wise loops with no reduction in the innermost loop, the
//!   form the loop vectoriser handles predictably (hand-unrolled lanes are left to the
//!   SLP vectoriser, whose choices changed with the surrounding code and cost up to 4×).
//!   Element-wise arithmetic does not depend on the vector width, which is what lets
//!   the optional `simd-dispatch` feature use AVX2/AVX-512 without changing a bit.

use core::ops::{Add, AddAssign, Mul, Sub};

/// The two floating-point types the proxy loop can run in.
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + AddAssign
{
    const ZERO: Self;
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `src` as a slice of `Self`: borrowed as is for f32, converted into `scratch`
    /// (at least as long) for f64, so that kernels see a single element type.
    fn view_f32<'a>(src: &'a [f32], scratch: &'a mut [Self]) -> &'a [Self];
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn view_f32<'a>(src: &'a [f32], _scratch: &'a mut [Self]) -> &'a [Self] {
        src
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn view_f32<'a>(src: &'a [f32], scratch: &'a mut [Self]) -> &'a [Self] {
        let out = &mut scratch[..src.len()];
        for (o, &v) in out.iter_mut().zip(src) {
            *o = v as f64;
        }
        out
    }
}

/// Lanes per accumulator block: two 128-bit registers of f32, four of f64 per stream.
pub const LANES: usize = 8;

#[inline(always)]
fn reduce<R: Real>(acc: &[R; LANES]) -> R {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// `x · w` accumulated in `R` (float32 inputs are converted exactly to f64).
#[inline]
pub fn dot<R: Real>(x: &[f32], w: &[R]) -> R {
    debug_assert_eq!(x.len(), w.len());
    let n = x.len().min(w.len());
    let (x, w) = (&x[..n], &w[..n]);
    let mut acc = [R::ZERO; LANES];
    let xc = x.chunks_exact(LANES);
    let wc = w.chunks_exact(LANES);
    let (xr, wr) = (xc.remainder(), wc.remainder());
    for (a, b) in xc.zip(wc) {
        for l in 0..LANES {
            acc[l] += R::from_f32(a[l]) * b[l];
        }
    }
    let mut tail = R::ZERO;
    for (a, b) in xr.iter().zip(wr) {
        tail += R::from_f32(*a) * *b;
    }
    reduce(&acc) + tail
}

/// `x · y` of two float32 vectors, in float64 (every product is exact in f64).
#[inline]
pub fn dot_f32_f64(x: &[f32], y: &[f32]) -> f64 {
    debug_assert_eq!(x.len(), y.len());
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [0.0f64; LANES];
    let xc = x.chunks_exact(LANES);
    let yc = y.chunks_exact(LANES);
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for l in 0..LANES {
            acc[l] += a[l] as f64 * b[l] as f64;
        }
    }
    let mut tail = 0.0;
    for (a, b) in xr.iter().zip(yr) {
        tail += *a as f64 * *b as f64;
    }
    reduce(&acc) + tail
}

/// Scores of one panel of images against every proxy:
/// `s[j * nb + i] = Σ_k w[j * d + k] · xt[k * nb + i]` for the `nb` images of the panel
/// (`xt` holds them transposed, `d × nb`) and the `w.len() / d` proxies.
///
/// Dot products are reductions, which LLVM may not vectorise without reassociating
/// (Rust never allows it), and its SLP vectoriser treats hand-unrolled lanes
/// unpredictably. With the panel transposed, the innermost loop is instead an
/// element-wise update across images, which the loop vectoriser handles the same way
/// every time. Four values of k are combined per update (a fixed tree) so each load and
/// store of a score carries eight flops. The order of the sums does not depend on the
/// panel width or on the vector width, so every target gets the same bits.
#[inline(always)]
pub fn panel_scores<R: Real>(xt: &[R], nb: usize, w: &[R], d: usize, s: &mut [R]) {
    let c = w.len() / d;
    let s = &mut s[..c * nb];
    let xt = &xt[..d * nb];
    s.iter_mut().for_each(|v| *v = R::ZERO);
    let full = d - d % 4;
    for k in (0..full).step_by(4) {
        let x0 = &xt[k * nb..(k + 1) * nb];
        let x1 = &xt[(k + 1) * nb..(k + 2) * nb];
        let x2 = &xt[(k + 2) * nb..(k + 3) * nb];
        let x3 = &xt[(k + 3) * nb..(k + 4) * nb];
        for (j, sj) in s.chunks_exact_mut(nb).enumerate() {
            let wj = &w[j * d + k..j * d + k + 4];
            let (w0, w1, w2, w3) = (wj[0], wj[1], wj[2], wj[3]);
            for i in 0..sj.len() {
                sj[i] += (w0 * x0[i] + w1 * x1[i]) + (w2 * x2[i] + w3 * x3[i]);
            }
        }
    }
    for k in full..d {
        let xk = &xt[k * nb..(k + 1) * nb];
        for (j, sj) in s.chunks_exact_mut(nb).enumerate() {
            let wk = w[j * d + k];
            for (a, &x) in sj.iter_mut().zip(xk) {
                *a += wk * x;
            }
        }
    }
}

/// `g += Σ_r coef[r] · x_r` for `NR` rows at once (each at least `g.len()` long): `g`
/// is loaded and stored once per block of rows instead of once per row. Element-wise
/// over `k`, so the loop vectoriser handles it; the row terms are added as a fixed tree.
#[inline(always)]
pub fn axpy_rows<R: Real, const NR: usize>(coef: &[R; NR], xs: &[&[R]; NR], g: &mut [R]) {
    let d = g.len();
    let xs: [&[R]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    for (k, gk) in g.iter_mut().enumerate() {
        let mut s: [R; NR] = core::array::from_fn(|r| coef[r] * xs[r][k]);
        let mut width = NR;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                s[i] += s[i + width];
            }
        }
        *gk += s[0];
    }
}
