//! Step 3: text pseudo-labels P0 = softmax_rows(X W_t / tau_t), in probability and in
//! log space (the greedy transport works on logs so tiny probabilities keep their
//! relative precision).

use crate::detmath;
use crate::kernels::dot;
use crate::matrix::Matrix;

/// `x_i · w_j` for all images and classes (n×C, row-major), in float64.
pub fn logits(images: &Matrix, weights: &[f64], classes: usize) -> Vec<f64> {
    let d = images.cols();
    let mut out = Vec::with_capacity(images.rows() * classes);
    for x in images.iter_rows() {
        for c in 0..classes {
            out.push(dot::<f64>(x, &weights[c * d..(c + 1) * d]));
        }
    }
    out
}

/// Row-wise log-softmax of `z / tau` (z is n×C row-major).
pub fn log_softmax_rows(z: &[f64], classes: usize, tau: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(z.len());
    for row in z.chunks_exact(classes) {
        let scaled: Vec<f64> = row.iter().map(|&v| v / tau).collect();
        let lse = log_sum_exp(&scaled);
        out.extend(scaled.iter().map(|&v| v - lse));
    }
    out
}

/// Row-wise softmax of `z / tau`, as exp of the log-softmax.
pub fn softmax_rows(z: &[f64], classes: usize, tau: f64) -> Vec<f64> {
    log_softmax_rows(z, classes, tau)
        .into_iter()
        .map(detmath::exp)
        .collect()
}

/// log Σ exp(v), shifted by the maximum so nothing overflows.
pub fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    let s: f64 = v.iter().map(|&a| detmath::exp(a - m)).sum();
    m + detmath::ln(s)
}
