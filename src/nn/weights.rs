//! Where the model's tensors come from, so the model code is the same for every
//! weight format: a dense safetensors checkpoint (read through candle's
//! `VarBuilder`, computed in f32) or the tensors of a GGUF encoder file from a
//! `kpl pack` bundle, where linear weights may be quantised blocks (q8_0, q4_0)
//! that the matmul consumes directly, and everything else (embeddings, norms,
//! biases, the patch convolution) is f16 or f32 and widened to f32 on load.
//!
//! The towers and `nn::transformer` only see [`Weights`]; the choice of
//! format is made once, when the weights are opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, LayerNorm, VarBuilder};

use super::linear::Linear;

/// The tensors of one or more GGUF files, by full name.
pub type QTensors = HashMap<String, Arc<QTensor>>;

#[derive(Clone)]
enum Source {
    Dense(VarBuilder<'static>),
    /// Each tensor is taken out when the model reads it, so a tensor widened to
    /// f32 does not also keep its stored copy alive (wasm memory never shrinks).
    Gguf(Arc<Mutex<QTensors>>),
}

/// A weight source with a name prefix (like `VarBuilder::pp`).
#[derive(Clone)]
pub struct Weights {
    source: Source,
    prefix: String,
}

impl Weights {
    /// Dense weights (a safetensors checkpoint), exactly as `candle_nn` reads them.
    pub fn dense(vb: VarBuilder<'static>) -> Self {
        Self { source: Source::Dense(vb), prefix: String::new() }
    }

    /// Tensors read from GGUF files (see `crate::bundle`).
    pub fn gguf(tensors: QTensors) -> Self {
        Self { source: Source::Gguf(Arc::new(Mutex::new(tensors))), prefix: String::new() }
    }

    /// The same source below `name`.
    pub fn pp(&self, name: impl ToString) -> Self {
        let name = name.to_string();
        let source = match &self.source {
            Source::Dense(vb) => Source::Dense(vb.pp(&name)),
            Source::Gguf(t) => Source::Gguf(t.clone()),
        };
        let prefix = if self.prefix.is_empty() { name } else { format!("{}.{name}", self.prefix) };
        Self { source, prefix }
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Takes a tensor out of the GGUF source (each is read once).
    fn qtensor(&self, name: &str, shape: &Shape) -> Result<Arc<QTensor>> {
        let Source::Gguf(tensors) = &self.source else { unreachable!("qtensor on dense weights") };
        let full = self.full_name(name);
        let mut tensors = tensors.lock().map_err(|_| candle_core::Error::Msg("weights lock poisoned".into()))?;
        let Some(t) = tensors.get(&full) else {
            candle_core::bail!("cannot find tensor {full}")
        };
        // A scalar is stored as [1]: GGUF (and candle's QTensor) have no rank 0.
        let same = t.shape() == shape || (shape.rank() == 0 && t.shape().dims() == [1]);
        if !same {
            candle_core::bail!("shape mismatch for {full}, expected {shape:?}, got {:?}", t.shape())
        }
        Ok(tensors.remove(&full).expect("present"))
    }

    /// A dense tensor in f32.
    pub fn get<S: Into<Shape>>(&self, shape: S, name: &str) -> Result<Tensor> {
        let shape = shape.into();
        match &self.source {
            Source::Dense(vb) => vb.get(shape, name),
            Source::Gguf(_) => self.qtensor(name, &shape)?.dequantize(&Device::Cpu)?.reshape(shape),
        }
    }

    /// A lookup table (token embeddings) as stored: an f16 table stays f16 in
    /// memory (half the size of f32); callers widen the rows they pick.
    pub fn get_table<S: Into<Shape>>(&self, shape: S, name: &str) -> Result<Tensor> {
        let shape = shape.into();
        match &self.source {
            Source::Dense(vb) => vb.get(shape, name),
            Source::Gguf(_) => {
                let t = self.qtensor(name, &shape)?;
                match t.dtype() {
                    // Straight from the stored bytes (candle's `dequantize_f16`
                    // would go through a transient f32 copy of the whole table).
                    GgmlDType::F16 => Tensor::from_raw_buffer(&t.data()?, DType::F16, shape.dims(), &Device::Cpu),
                    _ => t.dequantize(&Device::Cpu)?.reshape(shape),
                }
            }
        }
    }

    fn linear_weight(&self, in_dim: usize, out_dim: usize) -> Result<Linear> {
        match &self.source {
            Source::Dense(_) => unreachable!(),
            Source::Gguf(_) => {
                let t = self.qtensor("weight", &Shape::from((out_dim, in_dim)))?;
                match t.dtype() {
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                        Linear::dense(t.dequantize(&Device::Cpu)?, None)
                    }
                    _ => Linear::from_qtensor(t, None),
                }
            }
        }
    }

    /// A linear layer `weight` [out, in] + `bias` [out].
    pub fn linear(&self, in_dim: usize, out_dim: usize) -> Result<Linear> {
        match &self.source {
            Source::Dense(vb) => {
                let l = candle_nn::linear(in_dim, out_dim, vb.clone())?;
                Linear::dense(l.weight().clone(), l.bias().cloned())
            }
            Source::Gguf(_) => {
                let bias = self.get(out_dim, "bias")?;
                Ok(self.linear_weight(in_dim, out_dim)?.with_bias(bias))
            }
        }
    }

    pub fn linear_no_bias(&self, in_dim: usize, out_dim: usize) -> Result<Linear> {
        match &self.source {
            Source::Dense(vb) => Linear::dense(candle_nn::linear_no_bias(in_dim, out_dim, vb.clone())?.weight().clone(), None),
            Source::Gguf(_) => self.linear_weight(in_dim, out_dim),
        }
    }

    /// `N` linear layers [out, in] stored as one: `weight` [N·out, in] and
    /// `bias` [N·out], split by rows (timm's fused `qkv`, open_clip's
    /// `in_proj_weight`). Quantised blocks are split without expanding them:
    /// each row is a whole number of blocks.
    pub fn fused_linears<const N: usize>(&self, weight: &str, bias: &str, in_dim: usize, out_dim: usize) -> Result<[Linear; N]> {
        let bias = self.get(N * out_dim, bias)?;
        let bias_part = |i: usize| bias.narrow(0, i * out_dim, out_dim)?.contiguous();
        let dense = |w: Tensor| -> Result<[Linear; N]> {
            let parts = (0..N)
                .map(|i| Linear::dense(w.narrow(0, i * out_dim, out_dim)?.contiguous()?, Some(bias_part(i)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(parts.try_into().unwrap_or_else(|_| unreachable!("N parts")))
        };
        match &self.source {
            Source::Dense(_) => dense(self.get((N * out_dim, in_dim), weight)?),
            Source::Gguf(_) => {
                let t = self.qtensor(weight, &Shape::from((N * out_dim, in_dim)))?;
                if matches!(t.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
                    return dense(t.dequantize(&Device::Cpu)?);
                }
                let dtype = t.dtype();
                let row_bytes = in_dim / dtype.block_size() * dtype.type_size();
                let data = t.data()?;
                let parts = (0..N)
                    .map(|i| {
                        let bytes = data[i * out_dim * row_bytes..(i + 1) * out_dim * row_bytes].to_vec();
                        let storage = QStorage::from_data(std::borrow::Cow::Owned(bytes), &Device::Cpu, dtype)?;
                        let part = QTensor::new(storage, (out_dim, in_dim))?;
                        Linear::from_qtensor(Arc::new(part), Some(bias_part(i)?))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(parts.try_into().unwrap_or_else(|_| unreachable!("N parts")))
            }
        }
    }

    /// Whether the source has a tensor of this name (below the prefix).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Dense(vb) => vb.contains_tensor(name),
            Source::Gguf(t) => t.lock().is_ok_and(|t| t.contains_key(&self.full_name(name))),
        }
    }

    pub fn layer_norm(&self, size: usize, eps: f64) -> Result<LayerNorm> {
        match &self.source {
            Source::Dense(vb) => candle_nn::layer_norm(size, eps, vb.clone()),
            Source::Gguf(_) => Ok(LayerNorm::new(self.get(size, "weight")?, self.get(size, "bias")?, eps)),
        }
    }

    /// A convolution `weight` [out, in, k, k] (+ `bias` [out] when `bias`).
    pub fn conv2d(&self, in_c: usize, out_c: usize, kernel: usize, config: Conv2dConfig, bias: bool) -> Result<Conv2d> {
        match (&self.source, bias) {
            (Source::Dense(vb), false) => candle_nn::conv2d_no_bias(in_c, out_c, kernel, config, vb.clone()),
            (Source::Dense(vb), true) => candle_nn::conv2d(in_c, out_c, kernel, config, vb.clone()),
            (Source::Gguf(_), _) => {
                let w = self.get((out_c, in_c / config.groups, kernel, kernel), "weight")?;
                let b = if bias { Some(self.get(out_c, "bias")?) } else { None };
                Ok(Conv2d::new(w, b, config))
            }
        }
    }
}

/// Converts a dense tensor of any float dtype to f32 (the compute dtype).
pub fn to_f32(t: &Tensor) -> Result<Tensor> {
    if t.dtype() == DType::F32 {
        Ok(t.clone())
    } else {
        t.to_dtype(DType::F32)
    }
}
