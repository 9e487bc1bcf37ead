//! The transformer encoder both towers share, as GPU buffers and a recorded
//! sequence of dispatches; and the per-shape activation buffers it runs on.

use candle_core::{DType, Tensor};
use candle_nn::LayerNorm;

use super::context::GpuContext;
use super::ops::{attention, layer_norm, matmul, Recorder};
use crate::clip::config::Activation;
use crate::clip::encoder::Encoder;
use crate::clip::linear::Linear;
use crate::error::{Error, Result};

pub(crate) fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// A layer norm's parameters on the GPU.
pub(crate) struct GpuNorm {
    gamma: wgpu::Buffer,
    beta: wgpu::Buffer,
    eps: f64,
}

impl GpuNorm {
    pub(crate) fn upload(ctx: &GpuContext, norm: &LayerNorm, label: &str) -> Result<Self> {
        let gamma = to_vec(norm.weight())?;
        let beta = match norm.bias() {
            Some(b) => to_vec(b)?,
            None => vec![0.0; gamma.len()],
        };
        Ok(Self { gamma: ctx.upload(label, &gamma), beta: ctx.upload(label, &beta), eps: norm.eps() })
    }

    pub(crate) fn record(&self, rec: &mut Recorder, input: &wgpu::Buffer, out: &wgpu::Buffer, rows: usize, width: usize) {
        layer_norm::record(rec, input, &self.gamma, &self.beta, out, rows, width, self.eps);
    }
}

/// A linear layer's weight [out, in] (quantised layers are expanded to f32
/// once, here) and bias.
pub(crate) struct GpuLinear {
    weight: wgpu::Buffer,
    bias: Option<wgpu::Buffer>,
    pub(crate) out_dim: usize,
    pub(crate) in_dim: usize,
}

impl GpuLinear {
    pub(crate) fn upload(ctx: &GpuContext, linear: &Linear, label: &str) -> Result<Self> {
        Self::upload_stacked(ctx, &[linear], label)
    }

    /// Several layers reading the same input, stacked along their outputs
    /// (q, k and v become one [3·hidden, hidden] matmul).
    pub(crate) fn upload_stacked(ctx: &GpuContext, linears: &[&Linear], label: &str) -> Result<Self> {
        let weights = linears.iter().map(|l| l.weight()).collect::<candle_core::Result<Vec<_>>>()?;
        let weight = Tensor::cat(&weights, 0)?;
        let (out_dim, in_dim) = weight.dims2()?;
        if in_dim % matmul::K_MULTIPLE != 0 {
            return Err(Error::Gpu(format!(
                "{label}: an input width of {in_dim} is not a multiple of {}, which the matmul kernel needs",
                matmul::K_MULTIPLE
            )));
        }
        let bias = if linears.iter().any(|l| l.bias().is_some()) {
            let mut values = Vec::with_capacity(out_dim);
            for (l, w) in linears.iter().zip(&weights) {
                match l.bias() {
                    Some(b) => values.extend(to_vec(b)?),
                    None => values.extend(std::iter::repeat_n(0.0, w.dim(0)?)),
                }
            }
            Some(ctx.upload(label, &values))
        } else {
            None
        };
        Ok(Self { weight: ctx.upload(label, &to_vec(&weight)?), bias, out_dim, in_dim })
    }

    /// `out = act(input · Wᵀ + b) + residual` for `rows` rows.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        rec: &mut Recorder,
        input: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rows: usize,
        activation: Option<Activation>,
        residual: Option<&wgpu::Buffer>,
    ) {
        let epilogue = matmul::Epilogue { bias: self.bias.as_ref(), activation, residual };
        matmul::record(rec, input, &self.weight, out, (rows, self.out_dim, self.in_dim), epilogue, &self.weight);
    }
}

struct GpuLayer {
    norm1: GpuNorm,
    qkv: GpuLinear,
    out: GpuLinear,
    norm2: GpuNorm,
    fc1: GpuLinear,
    fc2: GpuLinear,
}

pub(crate) struct GpuEncoder {
    layers: Vec<GpuLayer>,
    pub(crate) hidden: usize,
    pub(crate) intermediate: usize,
    heads: usize,
    activation: Activation,
}

impl GpuEncoder {
    pub(crate) fn upload(ctx: &GpuContext, encoder: &Encoder) -> Result<Self> {
        let first = encoder.layers.first().ok_or_else(|| Error::Gpu("the encoder has no layers".into()))?;
        let heads = first.self_attn.heads;
        let hidden = heads * first.self_attn.head_dim;
        let intermediate = first.fc1.weight()?.dim(0)?;
        if hidden / heads > attention::MAX_HEAD_DIM {
            return Err(Error::Gpu(format!(
                "heads of width {} exceed the attention kernel's {}",
                hidden / heads,
                attention::MAX_HEAD_DIM
            )));
        }
        let layers = encoder
            .layers
            .iter()
            .map(|layer| {
                let a = &layer.self_attn;
                Ok(GpuLayer {
                    norm1: GpuNorm::upload(ctx, &layer.layer_norm1, "layer_norm1")?,
                    qkv: GpuLinear::upload_stacked(ctx, &[&a.q_proj, &a.k_proj, &a.v_proj], "qkv")?,
                    out: GpuLinear::upload(ctx, &a.out_proj, "out_proj")?,
                    norm2: GpuNorm::upload(ctx, &layer.layer_norm2, "layer_norm2")?,
                    fc1: GpuLinear::upload(ctx, &layer.fc1, "fc1")?,
                    fc2: GpuLinear::upload(ctx, &layer.fc2, "fc2")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, hidden, intermediate, heads, activation: first.activation })
    }

    /// Sequences up to this length fit the attention kernel's workgroup memory.
    pub(crate) fn check_sequence(seq: usize) -> Result<()> {
        if seq > attention::MAX_SEQ {
            return Err(Error::Gpu(format!("sequences of {seq} tokens exceed the attention kernel's {}", attention::MAX_SEQ)));
        }
        Ok(())
    }

    /// Floats of the widest activation per token (the MLP's or the fused qkv).
    pub(crate) fn widest_per_token(&self) -> usize {
        self.intermediate.max(3 * self.hidden)
    }

    /// The hidden states in `acts.x0` go through every layer and end in `acts.x0`.
    pub(crate) fn record(&self, rec: &mut Recorder, acts: &Activations, batch: usize, seq: usize, causal: bool) {
        let rows = batch * seq;
        for layer in &self.layers {
            layer.norm1.record(rec, &acts.x0, &acts.normed, rows, self.hidden);
            layer.qkv.record(rec, &acts.normed, &acts.qkv, rows, None, None);
            attention::record(rec, &acts.qkv, &acts.context, batch, seq, self.heads, self.hidden, causal);
            layer.out.record(rec, &acts.context, &acts.x1, rows, None, Some(&acts.x0));
            layer.norm2.record(rec, &acts.x1, &acts.normed, rows, self.hidden);
            layer.fc1.record(rec, &acts.normed, &acts.mlp, rows, Some(self.activation), None);
            layer.fc2.record(rec, &acts.mlp, &acts.x0, rows, None, Some(&acts.x1));
        }
    }
}

/// The encoder's working buffers for one (batch, sequence length).
pub(crate) struct Activations {
    pub(crate) x0: wgpu::Buffer,
    pub(crate) x1: wgpu::Buffer,
    pub(crate) normed: wgpu::Buffer,
    qkv: wgpu::Buffer,
    context: wgpu::Buffer,
    mlp: wgpu::Buffer,
}

impl Activations {
    pub(crate) fn new(ctx: &GpuContext, encoder: &GpuEncoder, rows: usize) -> Self {
        let h = encoder.hidden;
        Self {
            x0: ctx.activation(rows * h),
            x1: ctx.activation(rows * h),
            normed: ctx.activation(rows * h),
            qkv: ctx.activation(rows * 3 * h),
            context: ctx.activation(rows * h),
            mlp: ctx.activation(rows * encoder.intermediate),
        }
    }

    pub(crate) fn into_buffers(self) -> [wgpu::Buffer; 6] {
        [self.x0, self.x1, self.normed, self.qkv, self.context, self.mlp]
    }
}
