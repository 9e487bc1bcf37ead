//! Step 5: multimodal proxy learning, projected gradient descent on unit-norm proxies.

use crate::detmath;
use crate::kernels::{self, Real};
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
    /// Iterations run: `params.iters_proxy`, or fewer when the iterates reached a fixed
    /// point (see [`fit_proxies`]); the result is the same either way.
    pub iterations: usize,
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
/// Both products are fused into one pass over X: for each panel of images, their C
/// scores, softmaxes and gradient contributions are computed while the panel is in
/// cache, so the largest input is streamed from memory once per iteration, not twice.
///
/// The loop stops early, with the same bits, when an iteration leaves W exactly as it
/// was: the next one then sees the same W, hence the same gradient and the same norm
/// (no halving), the same step and again the same W, so every remaining iteration would
/// reproduce it. After the greedy transport (pseudo-labels of order 1/n, a weak pull)
/// this happens within a few hundred of the 2000 iterations, once the halvings have
/// made the step smaller than the last bit of W.
pub fn fit_proxies(
    images: &Matrix,
    w_init: &[f64],
    labels: &[f64],
    params: &KplParams,
) -> ProxyFit {
    let c = w_init.len() / images.cols().max(1);
    let mut p = labels.to_vec();
    let hardened_rows = harden(&mut p, c, params.alpha);
    match params.precision {
        Precision::F64 => {
            let w: Vec<f64> = w_init.to_vec();
            fit_loop::<f64>(images, w, &p, c, params, hardened_rows, true)
        }
        Precision::F32 => {
            let w: Vec<f32> = w_init.iter().map(|&v| v as f32).collect();
            fit_loop::<f32>(images, w, &p, c, params, hardened_rows, true)
        }
    }
}

fn fit_loop<R: Real>(
    images: &Matrix,
    mut w: Vec<R>,
    p: &[f64],
    c: usize,
    params: &KplParams,
    hardened_rows: usize,
    stop_when_stationary: bool,
) -> ProxyFit {
    let (n, d) = (images.rows(), images.cols());
    let fixed = Fixed {
        images,
        p,
        tau: params.tau_i,
    };
    let mut ws = Workspace::new(images, c);
    let mut g = vec![R::ZERO; c * d];
    let mut lr = params.lr;
    let mut prev = f64::INFINITY;
    let mut halvings = 0;
    let mut grad_norm = 0.0;
    let mut before = w.clone();
    let mut iterations = 0;
    for _ in 0..params.iters_proxy {
        iterations += 1;
        dispatch::gradient_pass(&fixed, &w, &mut ws, &mut g);
        grad_norm = g
            .iter()
            .map(|v| v.to_f64() * v.to_f64())
            .sum::<f64>()
            .sqrt();
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
        if stop_when_stationary && same_bits(&w, &before) {
            break;
        }
        before.copy_from_slice(&w);
    }
    ProxyFit {
        weights: w.iter().map(|v| v.to_f64()).collect(),
        hardened_rows,
        halvings,
        final_lr: lr,
        grad_norm,
        iterations,
    }
}

/// Bitwise equality (`==` would take -0.0 for 0.0, which a later step can tell apart).
fn same_bits<R: Real>(a: &[R], b: &[R]) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits())
}

/// Images per panel. A panel (PANEL × d values) is read once per iteration for the
/// scores, then its rows are read again, still in cache, for the gradient.
const PANEL: usize = 64;

/// What stays the same in every gradient pass of one fit: the images (n×d), the
/// hardened pseudo-labels (n×C) and the temperature.
pub(crate) struct Fixed<'a> {
    images: &'a Matrix,
    p: &'a [f64],
    tau: f64,
}

/// Buffers reused across iterations.
pub(crate) struct Workspace<R> {
    /// X repacked as consecutive panels of PANEL images (the last may be narrower),
    /// each stored transposed: the panel starting at image i0 with width nb holds
    /// x_{i0+r}[k] at i0·d + k·nb + r. Packed once per fit: X does not change.
    panels: Vec<R>,
    rows: Vec<R>,
    scores: Vec<R>,
    coef: Vec<R>,
    z: Vec<f64>,
}

impl<R: Real> Workspace<R> {
    fn new(images: &Matrix, classes: usize) -> Self {
        Workspace {
            panels: pack_panels(images),
            rows: vec![R::ZERO; 4 * images.cols()],
            scores: vec![R::ZERO; classes * PANEL],
            coef: vec![R::ZERO; PANEL * classes],
            z: vec![0.0f64; classes],
        }
    }
}

fn pack_panels<R: Real>(images: &Matrix) -> Vec<R> {
    let (n, d) = (images.rows(), images.cols());
    let mut out = vec![R::ZERO; n * d];
    for (i, x) in images.iter_rows().enumerate() {
        let i0 = i - i % PANEL;
        let nb = PANEL.min(n - i0);
        let r = i - i0;
        for (k, &v) in x.iter().enumerate() {
            out[i0 * d + k * nb + r] = R::from_f32(v);
        }
    }
    out
}

/// One pass over X: `g = Xᵀ (softmax_rows(X Wᵀ / tau) − P)`, panel by panel.
#[inline(always)]
pub(crate) fn gradient_pass<R: Real>(fixed: &Fixed, w: &[R], ws: &mut Workspace<R>, g: &mut [R]) {
    let Fixed { images, p, tau } = *fixed;
    let (n, d) = (images.rows(), images.cols());
    let c = w.len() / d;
    g.iter_mut().for_each(|v| *v = R::ZERO);
    let mut i0 = 0;
    while i0 < n {
        let nb = PANEL.min(n - i0);
        kernels::panel_scores(&ws.panels[i0 * d..(i0 + nb) * d], nb, w, d, &mut ws.scores);
        panel_coefficients(
            &ws.scores,
            nb,
            &p[i0 * c..(i0 + nb) * c],
            tau,
            &mut ws.z,
            &mut ws.coef,
        );
        gradient_of_panel(images, i0, nb, &ws.coef, g, &mut ws.rows);
        i0 += nb;
    }
}

/// `coef[r, j] = softmax_j(scores[·, r] / tau) − p[r, j]` for the `nb` images of a
/// panel (`scores` is C × nb, `p` and `coef` are nb × C). Scalar code; kept out of line
/// so the vectorised kernels around it are compiled in a small, predictable context.
#[inline(never)]
fn panel_coefficients<R: Real>(
    scores: &[R],
    nb: usize,
    p: &[f64],
    tau: f64,
    z: &mut [f64],
    coef: &mut [R],
) {
    let c = z.len();
    for r in 0..nb {
        let mut m = f64::NEG_INFINITY;
        for (j, zj) in z.iter_mut().enumerate() {
            *zj = scores[j * nb + r].to_f64() / tau;
            m = m.max(*zj);
        }
        let mut sum = 0.0;
        for zj in z.iter_mut() {
            *zj = detmath::exp(*zj - m);
            sum += *zj;
        }
        for j in 0..c {
            coef[r * c + j] = R::from_f64(z[j] / sum - p[r * c + j]);
        }
    }
}

/// `g_j += Σ_r coef[r, j] · x_{i0 + r}` over the `nb` images of a panel, read from the
/// row-major matrix (their gradient terms are element-wise along d there), four rows
/// per kernel call. In f64 runs each block of four rows is converted once into `rows`
/// and reused for every class.
#[inline(always)]
fn gradient_of_panel<R: Real>(
    images: &Matrix,
    i0: usize,
    nb: usize,
    coef: &[R],
    g: &mut [R],
    rows: &mut [R],
) {
    let d = images.cols();
    let c = g.len() / d;
    let x = images.data();
    let mut r = 0;
    while r + 4 <= nb {
        let block = R::view_f32(&x[(i0 + r) * d..(i0 + r + 4) * d], rows);
        let xs: [&[R]; 4] = core::array::from_fn(|q| &block[q * d..(q + 1) * d]);
        for j in 0..c {
            let cf: [R; 4] = core::array::from_fn(|q| coef[(r + q) * c + j]);
            kernels::axpy_rows(&cf, &xs, &mut g[j * d..(j + 1) * d]);
        }
        r += 4;
    }
    while r < nb {
        let row = R::view_f32(images.row(i0 + r), rows);
        for j in 0..c {
            kernels::axpy_rows(&[coef[r * c + j]], &[row], &mut g[j * d..(j + 1) * d]);
        }
        r += 1;
    }
}

/// Where the gradient pass runs. The default build has one portable version. With the
/// optional `simd-dispatch` feature, the same source is also compiled for wider vector
/// instructions: on x86_64 for AVX2 and AVX-512, picked at run time; on wasm32 for
/// simd128 (wasm has no run-time detection: the module then needs an engine with
/// SIMD, as every current browser has; the encoders' kernels need it too). That cannot
/// change a result: the kernels' arithmetic is element-wise with a fixed order, so
/// vector width only changes how many elements go per instruction, and Rust never
/// fuses a multiply and an add.
mod dispatch {
    use super::*;

    /// `unsafe fn $name`: [`super::gradient_pass`] compiled with `$feature` enabled.
    /// Callers must know the CPU or engine has the feature.
    #[allow(unused_macros)]
    macro_rules! compiled_for {
        ($($feature:literal => $name:ident),+ $(,)?) => {$(
            #[target_feature(enable = $feature)]
            unsafe fn $name<R: Real>(fixed: &Fixed, w: &[R], ws: &mut Workspace<R>, g: &mut [R]) {
                super::gradient_pass(fixed, w, ws, g)
            }
        )+};
    }

    #[cfg(all(feature = "simd-dispatch", target_arch = "x86_64"))]
    compiled_for!("avx2" => avx2, "avx512f" => avx512);
    #[cfg(all(feature = "simd-dispatch", target_arch = "wasm32"))]
    compiled_for!("simd128" => simd128);

    pub(super) fn gradient_pass<R: Real>(
        fixed: &Fixed,
        w: &[R],
        ws: &mut Workspace<R>,
        g: &mut [R],
    ) {
        #[cfg(all(feature = "simd-dispatch", target_arch = "x86_64"))]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports the feature the function is compiled for.
                return unsafe { avx512(fixed, w, ws, g) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { avx2(fixed, w, ws, g) };
            }
        }
        // SAFETY: a module with simd128 code only instantiates on an engine that has it.
        #[cfg(all(feature = "simd-dispatch", target_arch = "wasm32"))]
        return unsafe { simd128(fixed, w, ws, g) };
        #[cfg(not(all(feature = "simd-dispatch", target_arch = "wasm32")))]
        super::gradient_pass(fixed, w, ws, g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, d: usize, c: usize) -> (Matrix, Vec<f64>, Vec<f64>) {
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let x: Vec<f32> = (0..n * d).map(|_| next() as f32).collect();
        let w: Vec<f64> = (0..c * d).map(|_| next()).collect();
        let p: Vec<f64> = (0..n * c).map(|_| next().abs()).collect();
        (Matrix::new(n, d, x).unwrap(), w, p)
    }

    fn pass<R: Real>(images: &Matrix, w: &[f64], p: &[f64], dispatched: bool) -> Vec<f64> {
        let (n, d) = (images.rows(), images.cols());
        let c = w.len() / d;
        let w: Vec<R> = w.iter().map(|&v| R::from_f64(v)).collect();
        let fixed = Fixed {
            images,
            p: &p[..n * c],
            tau: 0.04,
        };
        let mut ws = Workspace::new(images, c);
        let mut g = vec![R::ZERO; c * d];
        if dispatched {
            dispatch::gradient_pass(&fixed, &w, &mut ws, &mut g);
        } else {
            gradient_pass(&fixed, &w, &mut ws, &mut g);
        }
        g.iter().map(|v| v.to_f64()).collect()
    }

    #[test]
    fn gradient_pass_matches_a_plain_computation() {
        // Odd sizes: a narrow last panel, a row block tail, a d not divisible by 4.
        let (n, d, c) = (PANEL + 7, 37, 3);
        let (images, w, p) = data(n, d, c);
        let got = pass::<f64>(&images, &w, &p, false);
        let mut want = vec![0.0f64; c * d];
        for i in 0..n {
            let x = images.row(i);
            let s: Vec<f64> = (0..c)
                .map(|j| (0..d).map(|k| x[k] as f64 * w[j * d + k]).sum::<f64>() / 0.04)
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for j in 0..c {
                for k in 0..d {
                    want[j * d + k] += (e[j] / z - p[i * c + j]) * x[k] as f64;
                }
            }
        }
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-10, "max diff {diff}");
        let got32 = pass::<f32>(&images, &w, &p, false);
        let diff = got32
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-4, "f32 max diff {diff}");
    }

    /// Unit rows of X and W, and pseudo-labels of order 1/n as the greedy transport
    /// leaves them (the weak pull under which the iterates settle early).
    fn settling_case(n: usize, d: usize, c: usize) -> (Matrix, Vec<f64>, Vec<f64>) {
        let (images, w, p) = data(n, d, c);
        let rows = images.iter_rows().map(|x| {
            let norm = x.iter().map(|&v| (v * v) as f64).sum::<f64>().sqrt();
            x.iter().map(move |&v| (v as f64 / norm) as f32)
        });
        let x: Vec<f32> = rows.flatten().collect();
        let mut w = w;
        for r in w.chunks_exact_mut(d) {
            let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
            r.iter_mut().for_each(|v| *v /= norm);
        }
        let p = p.iter().map(|v| v / (n as f64 * 0.5 * c as f64)).collect();
        (Matrix::new(n, d, x).unwrap(), w, p)
    }

    #[test]
    fn stopping_at_a_fixed_point_gives_the_bits_of_the_full_run() {
        let params = KplParams {
            iters_proxy: 800,
            ..KplParams::default()
        };
        for (n, d, c) in [(PANEL + 9, 48, 3), (40, 33, 5)] {
            let (images, w, p) = settling_case(n, d, c);
            let run = |precision: Precision, stop: bool| match precision {
                Precision::F64 => fit_loop::<f64>(&images, w.clone(), &p, c, &params, 0, stop),
                Precision::F32 => {
                    let w32 = w.iter().map(|&v| v as f32).collect();
                    fit_loop::<f32>(&images, w32, &p, c, &params, 0, stop)
                }
            };
            for precision in [Precision::F64, Precision::F32] {
                let early = run(precision, true);
                let full = run(precision, false);
                assert!(
                    early.iterations < params.iters_proxy,
                    "{n}x{d}x{c} {precision:?}: never reached a fixed point"
                );
                assert_eq!(full.iterations, params.iters_proxy);
                assert_eq!(
                    ProxyFit {
                        iterations: 0,
                        ..early
                    },
                    ProxyFit {
                        iterations: 0,
                        ..full
                    },
                    "{n}x{d}x{c} {precision:?}"
                );
            }
        }
    }

    #[test]
    fn dispatched_pass_is_bit_identical_to_the_portable_one() {
        // Without the simd-dispatch feature both calls run the same code; with it, this
        // is the guarantee that wider vectors never change a result.
        for (n, d, c) in [(PANEL * 2 + 5, 768, 5), (9, 33, 24), (1, 8, 2)] {
            let (images, w, p) = data(n, d, c);
            assert_eq!(
                pass::<f64>(&images, &w, &p, true),
                pass::<f64>(&images, &w, &p, false)
            );
            assert_eq!(
                pass::<f32>(&images, &w, &p, true),
                pass::<f32>(&images, &w, &p, false)
            );
        }
    }
}
