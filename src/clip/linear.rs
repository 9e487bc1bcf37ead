//! The linear layer every CLIP projection goes through. It is a separate type so
//! that weight formats change here and not in the model code: one model
//! implementation for every dtype.
//!
//! - `Dense`: an f32 weight (a safetensors checkpoint, or an f16/f32 layer of a
//!   bundle widened on load), through candle's gemm.
//! - `Quantized`: q8_0 / q4_0 blocks of 32 (a `kpl pack` bundle), multiplied
//!   block by block by candle's quantised kernels (AVX2 natively, simd128 in
//!   wasm when built with `+simd128`): the weight is never expanded in memory.

use candle_core::quantized::QMatMul;
use candle_core::{Device, Module, Result, Tensor};

#[derive(Debug, Clone)]
pub enum Linear {
    Dense(candle_nn::Linear),
    Quantized {
        matmul: QMatMul,
        bias: Option<Tensor>,
        /// [out, in]
        shape: (usize, usize),
    },
}

impl Linear {
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self::Dense(candle_nn::Linear::new(weight, bias))
    }

    pub fn quantized(matmul: QMatMul, bias: Option<Tensor>, shape: (usize, usize)) -> Self {
        Self::Quantized { matmul, bias, shape }
    }

    pub fn with_bias(self, bias: Tensor) -> Self {
        match self {
            Self::Dense(l) => Self::dense(l.weight().clone(), Some(bias)),
            Self::Quantized { matmul, shape, .. } => Self::Quantized { matmul, bias: Some(bias), shape },
        }
    }

    /// The weight as a dense f32 tensor [out, in] (dequantised when quantised).
    pub fn weight(&self) -> Result<Tensor> {
        match self {
            Self::Dense(l) => Ok(l.weight().clone()),
            Self::Quantized { matmul, shape, .. } => match matmul {
                QMatMul::QTensor(t) => t.dequantize(&Device::Cpu),
                QMatMul::Tensor(t) => Ok(t.clone()),
                QMatMul::TensorF16(t) => t.to_dtype(candle_core::DType::F32),
            }
            .and_then(|t| t.reshape(*shape)),
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Self::Quantized { matmul: QMatMul::QTensor(_), .. })
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(l) => l.forward(xs),
            Self::Quantized { matmul, bias, .. } => {
                // The quantised kernel reads its input row by row.
                let ys = matmul.forward(&xs.contiguous()?)?;
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
        }
    }
}
