//! Step 6: class scores, predictions and accuracy.

use crate::error::{KplError, Result};
use crate::kernels::dot;
use crate::matrix::Matrix;

/// Cosine scores x_i · w_c (n×C) and the argmax class of each image. The argmax is
/// taken on the float64 scores, before rounding them to the float32 output, so it
/// agrees with a float64 reference on near ties.
pub(crate) fn scores_and_predictions(
    images: &Matrix,
    weights: &[f64],
    classes: usize,
) -> (Matrix, Vec<usize>) {
    let d = images.cols();
    let mut scores = Vec::with_capacity(images.rows() * classes);
    let mut preds = Vec::with_capacity(images.rows());
    let mut row = vec![0.0f64; classes];
    for x in images.iter_rows() {
        for (c, r) in row.iter_mut().enumerate() {
            *r = dot::<f64>(x, &weights[c * d..(c + 1) * d]);
        }
        preds.push(argmax_f64(&row));
        scores.extend(row.iter().map(|&v| v as f32));
    }
    (Matrix::from_parts(images.rows(), classes, scores), preds)
}

/// Index of the first maximum of `v` (0 for an empty slice).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &a) in v.iter().enumerate() {
        if a > v[best] {
            best = i;
        }
    }
    best
}

pub(crate) fn argmax_f64(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &a) in v.iter().enumerate() {
        if a > v[best] {
            best = i;
        }
    }
    best
}

/// Argmax of every row of a score matrix.
pub fn predict(scores: &Matrix) -> Vec<usize> {
    scores.iter_rows().map(argmax).collect()
}

/// Fraction of `predictions` equal to `labels`.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> Result<f64> {
    if predictions.len() != labels.len() {
        return Err(KplError::DimensionMismatch {
            what: "labels",
            expected: predictions.len(),
            found: labels.len(),
        });
    }
    if labels.is_empty() {
        return Err(KplError::Empty { what: "labels" });
    }
    let hits = predictions
        .iter()
        .zip(labels)
        .filter(|(a, b)| a == b)
        .count();
    Ok(hits as f64 / labels.len() as f64)
}
