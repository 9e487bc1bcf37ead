//! The linear layer every CLIP projection goes through. It is a separate type so
//! that weight formats change here and not in the model code: one model
//! implementation for every dtype.
//!
//! - `Dense`: an f32 weight (a safetensors checkpoint, or an f16/f32 layer of a
//!   bundle widened on load), through candle's gemm.
//! - `Quantized`: q8_0 / q4_K blocks (a `kpl pack` bundle), stored as blocks;
//!   how they are multiplied is [`QuantKernel`].

use std::borrow::Cow;
use std::cell::Cell;

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Result, Tensor};

/// How a quantised linear layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantKernel {
    /// candle's quantised matmul: the activations are quantised to 8-bit blocks
    /// and multiplied block by block with the weight blocks (AVX2/AVX-512 VNNI
    /// natively, simd128 in wasm). The weight is never expanded.
    Blocks,
    /// The weight is expanded to f32 a few hundred rows at a time (at most 4 MB,
    /// freed after) and multiplied by candle's f32 gemm; the activations stay
    /// f32. In wasm the register-blocked f32 gemm is about twice as fast as the
    /// block kernels, which do one dot product at a time and convert two f16
    /// scales per block; memory stays that of the blocks plus one chunk.
    Dequantize,
}

const DEFAULT_KERNEL: QuantKernel =
    if cfg!(target_arch = "wasm32") { QuantKernel::Dequantize } else { QuantKernel::Blocks };

thread_local! {
    static KERNEL: Cell<QuantKernel> = const { Cell::new(DEFAULT_KERNEL) };
}

/// Chooses the kernel of the quantised layers for the forward passes started
/// on this thread (default: `Blocks` natively, `Dequantize` in wasm, the faster
/// of the two on each, measured). Thread-local, so tests can compare both.
pub fn set_quant_kernel(kernel: QuantKernel) {
    KERNEL.with(|k| k.set(kernel));
}

pub fn quant_kernel() -> QuantKernel {
    KERNEL.with(|k| k.get())
}

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

    /// (out, in) features, without expanding a quantised weight.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Dense(l) => l.weight().dims2(),
            Self::Quantized { shape, .. } => Ok(*shape),
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

    pub fn bias(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(l) => l.bias(),
            Self::Quantized { bias, .. } => bias.as_ref(),
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Self::Quantized { matmul: QMatMul::QTensor(_), .. })
    }
}

/// At most this many weights are expanded to f32 at a time (4 MB).
const DEQUANTIZE_CHUNK: usize = 1 << 20;

/// `xs` [.., k] × `t`ᵀ ([n, k] blocks) through the f32 gemm, expanding a few
/// hundred weight rows at a time so that memory grows by one chunk, not a layer.
fn dequantized_matmul(t: &QTensor, xs: &Tensor) -> Result<Tensor> {
    let (n, k) = t.shape().dims2()?;
    let mut out_dims = xs.dims().to_vec();
    let m = xs.elem_count() / k;
    let x2 = xs.reshape((m, k))?;
    let dtype = t.dtype();
    let row_bytes = k / dtype.block_size() * dtype.type_size();
    let data = t.data()?;
    let rows_per_chunk = (DEQUANTIZE_CHUNK / k).max(1);
    let mut parts = Vec::with_capacity(n.div_ceil(rows_per_chunk));
    for start in (0..n).step_by(rows_per_chunk) {
        let rows = rows_per_chunk.min(n - start);
        let bytes = &data[start * row_bytes..(start + rows) * row_bytes];
        let chunk = QTensor::new(QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, dtype)?, (rows, k))?;
        parts.push(x2.matmul(&chunk.dequantize(&Device::Cpu)?.t()?)?);
    }
    let ys = if parts.len() == 1 { parts.pop().expect("one part") } else { Tensor::cat(&parts, 1)? };
    *out_dims.last_mut().expect("xs has a last dim") = n;
    ys.reshape(out_dims)
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(l) => l.forward(xs),
            Self::Quantized { matmul, bias, .. } => {
                let ys = match (quant_kernel(), matmul) {
                    (QuantKernel::Dequantize, QMatMul::QTensor(t)) => dequantized_matmul(t, xs)?,
                    // The block kernel reads its input row by row.
                    _ => matmul.forward(&xs.contiguous()?)?,
                };
                match bias {
                    Some(b) => ys.broadcast_add(b),
                    None => Ok(ys),
                }
            }
        }
    }
}
