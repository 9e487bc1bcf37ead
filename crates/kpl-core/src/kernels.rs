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

/// `out[j] = x · w_j` for the `out.len()` rows of `w` (each of length `x.len()`).
///
/// Classes are taken two at a time so every load of `x` feeds two independent
/// accumulator streams: twice the arithmetic per byte read from the image matrix,
/// which is the one input too large for L1.
#[inline]
pub fn multi_dot<R: Real>(x: &[f32], w: &[R], out: &mut [R]) {
    let d = x.len();
    debug_assert_eq!(w.len(), d * out.len());
    let c = out.len();
    let mut j = 0;
    while j + 2 <= c {
        let (w0, w1) = (&w[j * d..(j + 1) * d], &w[(j + 1) * d..(j + 2) * d]);
        let mut a0 = [R::ZERO; LANES];
        let mut a1 = [R::ZERO; LANES];
        let xc = x.chunks_exact(LANES);
        let xr = xc.remainder();
        for ((xs, ws0), ws1) in xc.zip(w0.chunks_exact(LANES)).zip(w1.chunks_exact(LANES)) {
            for l in 0..LANES {
                let v = R::from_f32(xs[l]);
                a0[l] += v * ws0[l];
                a1[l] += v * ws1[l];
            }
        }
        let (mut t0, mut t1) = (R::ZERO, R::ZERO);
        let base = d - xr.len();
        for (k, &xv) in xr.iter().enumerate() {
            let v = R::from_f32(xv);
            t0 += v * w0[base + k];
            t1 += v * w1[base + k];
        }
        out[j] = reduce(&a0) + t0;
        out[j + 1] = reduce(&a1) + t1;
        j += 2;
    }
    if j < c {
        out[j] = dot(x, &w[j * d..(j + 1) * d]);
    }
}

/// `g_j += coef[j] * x` for every row `g_j` of `g` (each of length `x.len()`),
/// two rows per pass over `x` for the same reason as [`multi_dot`].
#[inline]
pub fn multi_axpy<R: Real>(coef: &[R], x: &[f32], g: &mut [R]) {
    let d = x.len();
    debug_assert_eq!(g.len(), d * coef.len());
    let c = coef.len();
    let mut j = 0;
    while j + 2 <= c {
        let (g0, g1) = g[j * d..(j + 2) * d].split_at_mut(d);
        let (c0, c1) = (coef[j], coef[j + 1]);
        for ((a, b0), b1) in x.iter().zip(g0.iter_mut()).zip(g1.iter_mut()) {
            let v = R::from_f32(*a);
            *b0 += c0 * v;
            *b1 += c1 * v;
        }
        j += 2;
    }
    if j < c {
        axpy(coef[j], x, &mut g[j * d..(j + 1) * d]);
    }
}

/// `y += alpha * x`.
#[inline]
pub fn axpy<R: Real>(alpha: R, x: &[f32], y: &mut [R]) {
    for (a, b) in x.iter().zip(y.iter_mut()) {
        *b += alpha * R::from_f32(*a);
    }
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

/// `x_r · w` for `NR` rows at once (each of length `w.len()`), with `L` lanes per
/// accumulator. Every load of `w` feeds `NR` independent accumulator streams; each
/// row's summation order does not depend on `NR`, so blocking never changes results.
#[inline(always)]
pub fn dot_rows<R: Real, const L: usize, const NR: usize>(xs: &[&[f32]; NR], w: &[R]) -> [R; NR] {
    let d = w.len();
    let xs: [&[f32]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    let mut acc = [[R::ZERO; L]; NR];
    let full = d - d % L;
    let mut base = 0;
    while base < full {
        let wc: &[R; L] = w[base..base + L].try_into().unwrap();
        for r in 0..NR {
            let xc: &[f32; L] = xs[r][base..base + L].try_into().unwrap();
            for l in 0..L {
                acc[r][l] += R::from_f32(xc[l]) * wc[l];
            }
        }
        base += L;
    }
    core::array::from_fn(|r| {
        let mut tail = R::ZERO;
        for k in full..d {
            tail += R::from_f32(xs[r][k]) * w[k];
        }
        tree_sum(acc[r]) + tail
    })
}

/// `g += Σ_r coef[r] · x_r` for `NR` rows at once: `g` is loaded and stored once per
/// block of rows instead of once per row.
#[inline(always)]
pub fn axpy_rows<R: Real, const L: usize, const NR: usize>(coef: &[R; NR], xs: &[&[f32]; NR], g: &mut [R]) {
    let d = g.len();
    let xs: [&[f32]; NR] = core::array::from_fn(|r| &xs[r][..d]);
    let full = d - d % L;
    let mut base = 0;
    while base < full {
        let gc: &mut [R; L] = (&mut g[base..base + L]).try_into().unwrap();
        let mut sum = [[R::ZERO; L]; NR];
        for r in 0..NR {
            let xc: &[f32; L] = xs[r][base..base + L].try_into().unwrap();
            for l in 0..L {
                sum[r][l] = coef[r] * R::from_f32(xc[l]);
            }
        }
        for l in 0..L {
            gc[l] += tree_sum(core::array::from_fn::<R, NR, _>(|r| sum[r][l]));
        }
        base += L;
    }
    for k in full..d {
        gc_tail(g, k, coef, &xs);
    }
}

#[inline(always)]
fn gc_tail<R: Real, const NR: usize>(g: &mut [R], k: usize, coef: &[R; NR], xs: &[&[f32]; NR]) {
    g[k] += tree_sum(core::array::from_fn::<R, NR, _>(|r| coef[r] * R::from_f32(xs[r][k])));
}
