//! The linear layer every CLIP projection goes through. It is a separate type so
//! that weight formats (f32 today, quantised blocks later) change here and not in
//! the model code: one model implementation for every dtype.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    pub fn load(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { inner: candle_nn::linear(in_dim, out_dim, vb)? })
    }

    /// The weight as a dense f32 tensor [out, in].
    pub fn weight(&self) -> &candle_core::Tensor {
        self.inner.weight()
    }

    pub fn load_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { inner: candle_nn::linear_no_bias(in_dim, out_dim, vb)? })
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.inner.forward(xs)
    }
}
