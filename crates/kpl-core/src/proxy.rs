//! Step 5: multimodal proxy learning, projected gradient descent on unit-norm proxies.

use crate::detmath;
use crate::kernels::{axpy_rows, dot_rows, Real};
use crate::matrix::Matrix;
use crate::params::{KplParams, Precision};

/// Result of proxy learning.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyFit {
    /// Learned proxies, C×d row-major, unit rows.
    pub weights: Vec<f64>,
    /// Pseudo-label rows made one-hot because their maximum exceeded alpha.
    pub hardened_rows: usize,
    /// Times the learning rate was halved.
    pub halvings: usize,
    /// Learning rate after the last iteration.
    pub final_lr: f64,
    /// Frobenius norm of the last gradient.
    pub grad_norm: f64,
}

/// Makes every row of `labels` (n×C) whose maximum exceeds `alpha` one-hot at its first
/// maximum; returns how many rows changed.
pub fn harden(labels: &mut [f64], classes: usize, alpha: f64) -> usize {
    let mut count = 0;
    for row in labels.chunks_exact_mut(classes) {
        let mut best = 0;
        for j in 1..classes {
            if row[j] > row[best] {
                best = j;
            }
        }
        if row[best] > alpha {
            row.iter_mut().for_each(|v| *v = 0.0);
            row[best] = 1.0;
            count += 1;
        }
    }
    count
}

/// Learns proxies from images (n×d), initial proxies `w_init` (C×d) and pseudo-labels
/// `labels` (n×C), with `params.tau_i`, `alpha`, `lr`, `iters_proxy` and `precision`.
///
/// Per iteration: Q = softmax(X Wᵀ / tau_i); G = Xᵀ(Q − P); halve the rate if |G|_F
/// grew; W ← normalise_rows(W − rate/(n tau_i) · G). The reference forms G as XᵀQ − XᵀP;
/// summing (Q − P) row by row is the same quantity without the cancellation between two
/// large terms, which matters because the halving rule compares nearly equal norms.
///
/// Both products are fused into one pass over X: for each image, its C scores, its
/// softmax and its gradient contribution are computed while the image is in cache, so
/// the largest input is streamed once per iteration instead of twice.
pub fn fit_proxies(images: &Matrix, w_init: &[f64], labels: &[f64], params: &KplParams) -> ProxyFit {
    let c = w_init.len() / images.cols().max(1);
    let mut p = labels.to_vec();
    let hardened_rows = harden(&mut p, c, params.alpha);
    match params.precision {
        Precision::F64 => {
            let w: Vec<f64> = w_init.to_vec();
            fit_loop::<f64, 4>(images, w, &p, c, params, hardened_rows)
        }
        Precision::F32 => {
            let w: Vec<f32> = w_init.iter().map(|&v| v as f32).collect();
            fit_loop::<f32, 8>(images, w, &p, c, params, hardened_rows)
        }
    }
}

fn fit_loop<R: Real, const L: usize>(
    images: &Matrix,
    mut w: Vec<R>,
    p: &[f64],
    c: usize,
    params: &KplParams,
    hardened_rows: usize,
) -> ProxyFit {
    let (n, d) = (images.rows(), images.cols());
    let tau = params.tau_i;
    let x = images.data();
    // f64 runs convert each block of rows once into this L1-sized buffer, so the kernels
    // see one element type and vectorise cleanly; f32 runs read X in place.
    let mut xbuf = vec![R::ZERO; BLOCK * d];
    let mut g = vec![R::ZERO; c * d];
    let mut sc = Scratch { acc: vec![R::ZERO; BLOCK * L], z: vec![0.0f64; BLOCK * c], coef: vec![R::ZERO; BLOCK * c] };
    let mut lr = params.lr;
    let mut prev = f64::INFINITY;
    let mut halvings = 0;
    let mut grad_norm = 0.0;
    for _ in 0..params.iters_proxy {
        g.iter_mut().for_each(|v| *v = R::ZERO);
        let mut i = 0;
        while i + BLOCK <= n {
            let xb = R::view_f32(&x[i * d..(i + BLOCK) * d], &mut xbuf);
            let xs: [&[R]; BLOCK] = core::array::from_fn(|r| &xb[r * d..(r + 1) * d]);
            block_step::<R, L, BLOCK>(&xs, &w, &p[i * c..(i + BLOCK) * c], &mut g, tau, &mut sc);
            i += BLOCK;
        }
        while i < n {
            let xb = R::view_f32(&x[i * d..(i + 1) * d], &mut xbuf);
            block_step::<R, L, 1>(&[xb], &w, &p[i * c..(i + 1) * c], &mut g, tau, &mut sc);
            i += 1;
        }
        grad_norm = g.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>().sqrt();
        if grad_norm > prev {
            lr /= 2.0;
            halvings += 1;
        }
        prev = grad_norm;
        let step = lr / (n as f64 * params.tau_i);
        for (wr, gr) in w.chunks_exact_mut(d).zip(g.chunks_exact(d)) {
            let mut norm = 0.0f64;
            for (a, &b) in wr.iter_mut().zip(gr) {
                let v = a.to_f64() - step * b.to_f64();
                *a = R::from_f64(v);
                norm += v * v;
            }
            // As torch's F.normalize: never divide by (almost) zero.
            let norm = norm.sqrt().max(1e-12);
            for a in wr.iter_mut() {
                *a = R::from_f64(a.to_f64() / norm);
            }
        }
    }
    ProxyFit {
        weights: w.iter().map(|v| v.to_f64()).collect(),
        hardened_rows,
        halvings,
        final_lr: lr,
        grad_norm,
    }
}

/// Rows per block of the fused pass: four rows' scores share each proxy load, and the
/// gradient is loaded and stored once per four rows.
const BLOCK: usize = 4;

struct Scratch<R> {
    acc: Vec<R>,
    z: Vec<f64>,
    coef: Vec<R>,
}

/// Scores, softmax and gradient contribution of `NR` images (`p`: their NR×C labels).
#[inline(always)]
fn block_step<R: Real, const L: usize, const NR: usize>(
    xs: &[&[R]; NR],
    w: &[R],
    p: &[f64],
    g: &mut [R],
    tau: f64,
    sc: &mut Scratch<R>,
) {
    let d = xs[0].len();
    let c = w.len() / d;
    for j in 0..c {
        let s = dot_rows::<R, L, NR>(xs, &w[j * d..(j + 1) * d], &mut sc.acc);
        for r in 0..NR {
            sc.z[r * c + j] = s[r].to_f64() / tau;
        }
    }
    for r in 0..NR {
        let z = &mut sc.z[r * c..(r + 1) * c];
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for v in z.iter_mut() {
            *v = detmath::exp(*v - m);
            sum += *v;
        }
        for j in 0..c {
            sc.coef[r * c + j] = R::from_f64(z[j] / sum - p[r * c + j]);
        }
    }
    for j in 0..c {
        let coef: [R; NR] = core::array::from_fn(|r| sc.coef[r * c + j]);
        axpy_rows::<R, NR>(&coef, xs, &mut g[j * d..(j + 1) * d]);
    }
}
