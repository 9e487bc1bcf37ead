//! Step 4: optimal-transport refinement of the pseudo-labels, in the two variants the
//! reference releases use. Both reproduce the reference arithmetic, quirks included.

use crate::detmath;
use crate::pseudo_labels::log_sum_exp;

/// The class marginal q.
#[derive(Debug, Clone, PartialEq)]
pub enum Marginal {
    /// q_j = 1/C (gamma = 0). Kept distinct from `Weights` because the reference's
    /// Sinkhorn divides by C in that case instead of multiplying by q.
    Uniform(usize),
    /// q ∝ (column sums of P0)^gamma, normalised to sum 1.
    Weights(Vec<f64>),
}

impl Marginal {
    /// q_j.
    pub fn get(&self, j: usize) -> f64 {
        match self {
            Marginal::Uniform(c) => 1.0 / *c as f64,
            Marginal::Weights(q) => q[j],
        }
    }
}

/// The class marginal for `gamma` from the pseudo-labels `p0` (n×C).
pub fn class_marginal(p0: &[f64], classes: usize, gamma: f64) -> Marginal {
    if gamma > 0.0 {
        let mut q = vec![0.0; classes];
        for row in p0.chunks_exact(classes) {
            for (a, &v) in q.iter_mut().zip(row) {
                *a += v;
            }
        }
        for a in q.iter_mut() {
            *a = detmath::powf(*a, gamma);
        }
        let s: f64 = q.iter().sum();
        for a in q.iter_mut() {
            *a /= s;
        }
        Marginal::Weights(q)
    } else {
        Marginal::Uniform(classes)
    }
}

/// What one greedy iteration normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtStep {
    Column(usize),
    Row(usize),
}

/// KPL's greedy "stable Greenkhorn" on log-pseudo-labels `log_p0` (n×C), exactly as
/// the reference computes it: each iteration rescales the single row or column with the
/// largest marginal violation (a column only if its violation is strictly larger than
/// every row's; the first index wins ties), and the result is not rescaled by n.
///
/// So with `iters` = 20 the columns are fixed first, then a few rows; with more than 20
/// classes some columns are never normalised; and the plan's total mass is about 1.
/// Returns the plan P = exp(L) (n×C) and the step taken at each iteration.
pub fn greedy_ot(
    log_p0: &[f64],
    classes: usize,
    q: &Marginal,
    iters: usize,
) -> (Vec<f64>, Vec<OtStep>) {
    let c = classes;
    let n = log_p0.len() / c;
    let mut l = log_p0.to_vec();
    let r = 1.0 / n as f64;
    let log_r = detmath::ln(r);
    let mut steps = Vec::with_capacity(iters);
    let mut col_sum = vec![0.0f64; c];
    let mut row_sum = vec![0.0f64; n];
    for _ in 0..iters {
        col_sum.iter_mut().for_each(|s| *s = 0.0);
        for (i, row) in l.chunks_exact(c).enumerate() {
            let mut rs = 0.0;
            for (j, &v) in row.iter().enumerate() {
                let p = detmath::exp(v);
                col_sum[j] += p;
                rs += p;
            }
            row_sum[i] = rs;
        }
        let (jc, col_viol) = first_argmax((0..c).map(|j| (col_sum[j] - q.get(j)).abs()));
        let (ir, row_viol) = first_argmax(row_sum.iter().map(|&s| (s - r).abs()));
        if col_viol > row_viol {
            let column: Vec<f64> = (0..n).map(|i| l[i * c + jc]).collect();
            let shift = detmath::ln(q.get(jc)) - log_sum_exp(&column);
            for i in 0..n {
                l[i * c + jc] += shift;
            }
            steps.push(OtStep::Column(jc));
        } else {
            let row = &mut l[ir * c..(ir + 1) * c];
            let shift = log_r - log_sum_exp(row);
            for v in row.iter_mut() {
                *v += shift;
            }
            steps.push(OtStep::Row(ir));
        }
    }
    (l.into_iter().map(detmath::exp).collect(), steps)
}

/// InMaP's Sinkhorn on pseudo-labels `p0` (n×C): alternate column and row scaling,
/// then multiply by n so every row sums to 1.
pub fn sinkhorn(p0: &[f64], classes: usize, q: &Marginal, iters: usize) -> Vec<f64> {
    let c = classes;
    let n = p0.len() / c;
    let nf = n as f64;
    let mut p: Vec<f64> = p0.iter().map(|&v| v / nf).collect();
    let mut col = vec![0.0f64; c];
    for _ in 0..iters {
        col.iter_mut().for_each(|s| *s = 0.0);
        for row in p.chunks_exact(c) {
            for (a, &v) in col.iter_mut().zip(row) {
                *a += v;
            }
        }
        for row in p.chunks_exact_mut(c) {
            for (j, v) in row.iter_mut().enumerate() {
                *v /= col[j];
                match q {
                    Marginal::Uniform(cc) => *v /= *cc as f64,
                    Marginal::Weights(w) => *v *= w[j],
                }
            }
            let rs: f64 = row.iter().sum();
            for v in row.iter_mut() {
                *v /= rs;
                *v /= nf;
            }
        }
    }
    for v in p.iter_mut() {
        *v *= nf;
    }
    p
}

/// Index and value of the first maximum (NaN never wins).
fn first_argmax(values: impl Iterator<Item = f64>) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}
