//! A minimal row-major float32 matrix: the exchange format of the public API (CLIP
//! embeddings are float32, and wasm memory is scarce). Computation that needs more
//! precision converts internally.

use crate::error::{check_finite, KplError, Result};

/// Row-major `rows × cols` matrix of `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// Wraps a flat row-major buffer; fails unless `data.len() == rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(KplError::BadShape {
                what: "matrix",
                len: data.len(),
                rows,
                cols,
            });
        }
        Ok(Matrix { rows, cols, data })
    }

    /// A matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Stacks equally long rows; fails on ragged input.
    pub fn from_rows(rows: &[Vec<f32>]) -> Result<Self> {
        let cols = rows.first().map_or(0, Vec::len);
        let mut data = Vec::with_capacity(rows.len() * cols);
        for r in rows {
            if r.len() != cols {
                return Err(KplError::DimensionMismatch {
                    what: "matrix row",
                    expected: cols,
                    found: r.len(),
                });
            }
            data.extend_from_slice(r);
        }
        Ok(Matrix {
            rows: rows.len(),
            cols,
            data,
        })
    }

    /// For buffers whose shape holds by construction.
    pub(crate) fn from_parts(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Matrix { rows, cols, data }
    }

    /// Converts from float64 (rounding to nearest).
    pub(crate) fn from_f64(rows: usize, cols: usize, data: &[f64]) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Matrix {
            rows,
            cols,
            data: data.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The flat row-major buffer.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Consumes the matrix, returning its flat row-major buffer.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Row `i` (panics if out of range, like slice indexing).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Mutable row `i`.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Entry `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// Iterator over the rows.
    pub fn iter_rows(&self) -> impl Iterator<Item = &[f32]> + '_ {
        // chunks_exact(0) would panic; a matrix without columns has no row content.
        self.data.chunks_exact(self.cols.max(1)).take(self.rows)
    }

    /// Fails with [`KplError::NonFinite`] if any entry is NaN or infinite.
    pub fn check_finite(&self, what: &'static str) -> Result<()> {
        check_finite(what, &self.data)
    }
}

/// Scales `v` to unit L2 norm (norm computed in float64). A zero vector is left as is,
/// because there is no direction to keep and NaNs would poison every later step.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|&a| (a as f64) * (a as f64))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for a in v.iter_mut() {
            *a = ((*a as f64) / norm) as f32;
        }
    }
}

/// L2-normalises every row in place (see [`l2_normalize`]).
pub fn normalize_rows(m: &mut Matrix) {
    let cols = m.cols;
    if cols == 0 {
        return;
    }
    for r in m.data.chunks_exact_mut(cols) {
        l2_normalize(r);
    }
}

/// float64 version used for proxies and text prototypes.
pub(crate) fn l2_normalize_f64(v: &mut [f64]) {
    let norm = v.iter().map(|&a| a * a).sum::<f64>().sqrt();
    if norm > 0.0 {
        for a in v.iter_mut() {
            *a /= norm;
        }
    }
}
