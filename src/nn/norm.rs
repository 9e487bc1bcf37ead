//! Layer normalisation over the last dimension, our own CPU kernel (one
//! implementation for native and wasm, vectorised by [`super::lanes`]):
//! `y = (x − mean) / sqrt(var + eps) · γ + β` per row, as `torch.nn.LayerNorm`.
//!
//! Two passes in f32: the mean, then the variance of the centred values (as
//! torch's and the GPU engine's kernels; candle's CPU kernel takes
//! `E[x²] − E[x]²` in one pass, which loses the variance of rows far from
//! zero: the residual stream of a deep tower). Each row's sums run in a fixed
//! lane order, so every target gives the same bits, and rows are split
//! across the current rayon pool (the same bits at any thread count).

use candle_core::{Device, Module, Result, Tensor};
use rayon::prelude::*;

use super::lanes;
use super::linear::with_f32_slice;

/// A layer norm's parameters: `weight` (γ) and `bias` (β) `[width]`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Self {
        Self { weight, bias, eps }
    }

    /// γ `[width]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// β `[width]` (always present; an `Option` as candle's `LayerNorm`).
    pub fn bias(&self) -> Option<&Tensor> {
        Some(&self.bias)
    }

    pub fn eps(&self) -> f64 {
        self.eps
    }
}

/// Rows per rayon task: fewer would cost more in scheduling than in work.
const ROWS_PER_TASK: usize = 16;

/// `out[r] = (x[r] − mean) / sqrt(var + eps) · gamma + beta` for each row of
/// `gamma.len()` values of `x` (row-major), `out` as long as `x`.
///
/// Panics if `x` is not whole rows, `beta` and `gamma` differ in length or
/// `out` is not as long as `x` (a caller's bug).
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let width = gamma.len();
    assert!(width > 0 && x.len().is_multiple_of(width) && beta.len() == width && out.len() == x.len());
    let rows = |(x, out): (&[f32], &mut [f32])| {
        for (x, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            row(x, gamma, beta, eps, out);
        }
    };
    let chunk = ROWS_PER_TASK * width;
    if rayon::current_num_threads() > 1 && x.len() > chunk {
        x.par_chunks(chunk).zip(out.par_chunks_mut(chunk)).for_each(rows);
    } else {
        rows((x, out));
    }
}

lanes::vectorised! {
    fn row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
        let n = x.len() as f32;
        let mean = lanes::sum(x) / n;
        let var = lanes::sum_squared_deviations(x, mean) / n;
        let inv_std = 1.0 / (var + eps).sqrt();
        for (((o, &x), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (x - mean) * inv_std * g + b;
        }
    }
}

impl Module for LayerNorm {
    /// `xs` `[.., width]` (CPU: our kernel, in f32; elsewhere candle's).
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if !xs.device().is_cpu() {
            return candle_nn::ops::layer_norm(&xs.contiguous()?, &self.weight, &self.bias, self.eps as f32);
        }
        let width = self.weight.elem_count();
        if xs.dims().last() != Some(&width) || self.bias.elem_count() != width {
            candle_core::bail!("layer norm of width {width}: input {:?}, bias {:?}", xs.dims(), self.bias.dims())
        }
        let y = with_f32_slice(xs, |x| {
            with_f32_slice(&self.weight, |g| {
                with_f32_slice(&self.bias, |b| {
                    let mut y = vec![0f32; x.len()];
                    layer_norm(x, g, b, self.eps as f32, &mut y);
                    y
                })
            })
        })???;
        Tensor::from_vec(y, xs.dims(), &Device::Cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the definition in f64, on rows offset far from zero (where a
    /// one-pass variance in f32 fails: candle's kernel, checked to fail), and
    /// against candle's kernel on ordinary rows.
    #[test]
    fn matches_f64_on_offset_rows() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, width) = (37, 75);
        let x: Vec<f32> = (0..rows * width).map(|i| 300.0 + ((i * 7919) % 1000) as f32 * 1e-3).collect();
        let g: Vec<f32> = (0..width).map(|i| 0.5 + i as f32 * 0.01).collect();
        let b: Vec<f32> = (0..width).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut y = vec![0f32; x.len()];
        layer_norm(&x, &g, &b, 1e-5, &mut y);
        let mut worst = 0f64;
        for (xr, yr) in x.chunks_exact(width).zip(y.chunks_exact(width)) {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / width as f64;
            let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / width as f64;
            for (i, (&xv, &yv)) in xr.iter().zip(yr).enumerate() {
                let want = (xv as f64 - mean) / (var + 1e-5).sqrt() * g[i] as f64 + b[i] as f64;
                worst = worst.max((yv as f64 - want).abs());
            }
        }
        // The mean's f32 rounding (an ulp is 3e-5 at 300) over a deviation of 0.29 bounds this.
        assert!(worst < 1e-3, "{worst}");
        let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, &dev);
        let candle = candle_nn::ops::layer_norm(&t(x.clone(), &[rows, width])?, &t(g.clone(), &[width])?, &t(b.clone(), &[width])?, 1e-5)?;
        let ours = LayerNorm::new(t(g.clone(), &[width])?, t(b.clone(), &[width])?, 1e-5).forward(&t(x.clone(), &[rows, width])?)?;
        let candle_err = (candle - &ours)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(candle_err > 1e-2, "candle's one-pass variance should be off here: {candle_err}");
        // Centred rows: candle's kernel and ours agree closely.
        let x: Vec<f32> = (0..rows * width).map(|i| ((i * 7919) % 1000) as f32 * 2e-3 - 1.0).collect();
        let candle = candle_nn::ops::layer_norm(&t(x.clone(), &[rows, width])?, &t(g.clone(), &[width])?, &t(b.clone(), &[width])?, 1e-5)?;
        let ours = LayerNorm::new(t(g, &[width])?, t(b, &[width])?, 1e-5).forward(&t(x, &[1, rows, width])?)?.squeeze(0)?;
        let diff = (candle - ours)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 5e-6, "{diff}");
        Ok(())
    }
}
