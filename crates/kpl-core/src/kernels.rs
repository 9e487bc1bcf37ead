//! The inner-product kernels. They are written for LLVM's auto-vectoriser rather than
//! with intrinsics, so the same source compiles to SSE2 natively and to simd128 (or
//! scalar code) in wasm32: fixed-width chunks with one independent accumulator per
//! lane break the serial dependency of a naive sum, and a fixed reduction tree at the
//! end keeps the summation order, hence the result, identical on every target.
//! (Rust never contracts `a * b + c` into an FMA, so no target can round differently.)

use core::ops::{Add, AddAssign, Mul, Sub};

/// The two floating-point types the proxy loop can run in.
pub trait Real:
    Copy + Default + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + AddAssign
{
    const ZERO: Self;
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `src` as a slice of `Self`: borrowed as is for f32, converted into `scratch`
    /// (which must be at least as long) for f64.
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

/// Sums `acc` pairwise (lane i with lane i + L/2, repeatedly): a fixed tree, so the
/// rounding is the same on every target.
#[inline(always)]
fn tree_sum<R: Real, const L: usize>(mut acc: [R; L]) -> R {
    let mut width = L;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            acc[i] = acc[i] + acc[i + width];
        }
    }
    acc[0]
}

/// `x_r · w` for `NR` rows at once (each at least `w.len()` long), with `L` lanes per
/// row; `acc` is scratch of at least `NR * L` elements.
///
/// Every load of `w` feeds `NR` independent accumulator streams, so the loop is bound
/// by arithmetic rather than loads. The accumulators are updated through the `acc`
/// slice rather than a local array on purpose: LLVM's SLP vectoriser reliably groups
/// consecutive stores (lanes of one row) into vectors, whereas with a local array it
/// often groups across rows and drowns the loop in shuffles. LLVM still keeps them in
/// registers. Each row's summation order does not depend on `NR` (lane l sums
/// elements l, l+L, ..., then a fixed tree), so blocking never changes a result.
#[inline(never)]
pub fn dot_rows<R: Real, const L: usize, const NR: usize>(xs: &[&[R]; NR], w: &[R], acc: &mut [R]) -> [R; NR] {
    let d = w.len();
    let xs: [&[R]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    let acc = &mut acc[..NR * L];
    acc.iter_mut().for_each(|a| *a = R::ZERO);
    let chunks = w.chunks_exact(L);
    let tail_w = chunks.remainder();
    for (k, wc) in chunks.enumerate() {
        for (r, a) in acc.chunks_exact_mut(L).enumerate() {
            let xc = &xs[r][k * L..k * L + L];
            for l in 0..L {
                a[l] += xc[l] * wc[l];
            }
        }
    }
    let full = d - tail_w.len();
    core::array::from_fn(|r| {
        let lanes: [R; L] = core::array::from_fn(|l| acc[r * L + l]);
        let mut tail = R::ZERO;
        for (a, &b) in xs[r][full..].iter().zip(tail_w) {
            tail += *a * b;
        }
        tree_sum(lanes) + tail
    })
}

/// `g += Σ_r coef[r] · x_r` for `NR` rows at once (each at least `g.len()` long): `g`
/// is loaded and stored once per block of rows instead of once per row. Element-wise
/// over `k` with no reduction, so LLVM's loop vectoriser handles it robustly; the row
/// terms are added as a fixed tree.
#[inline(never)]
pub fn axpy_rows<R: Real, const NR: usize>(coef: &[R; NR], xs: &[&[R]; NR], g: &mut [R]) {
    let d = g.len();
    let xs: [&[R]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    for (k, gk) in g.iter_mut().enumerate() {
        let mut s: [R; NR] = core::array::from_fn(|r| coef[r] * xs[r][k]);
        let mut width = NR;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                s[i] = s[i] + s[i + width];
            }
        }
        *gk += s[0];
    }
}
