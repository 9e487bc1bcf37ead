//! The pre-layernorm transformer encoder shared by CLIP's two towers
//! (`CLIPEncoder` in `transformers`).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::LayerNorm;

use super::config::Activation;
use super::linear::Linear;
use super::weights::Weights;

/// Sizes of one tower's encoder, taken from its part of `config.json`.
#[derive(Debug, Clone, Copy)]
pub struct EncoderSizes {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub layers: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
}

pub fn layer_norm(size: usize, eps: f64, w: Weights) -> Result<LayerNorm> {
    w.layer_norm(size, eps)
}

fn activate(xs: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        // x * sigmoid(1.702 x), as CLIP was trained.
        Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702f64)?)?,
        Activation::Gelu => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SelfAttention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) out_proj: Linear,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) scale: f64,
}

impl SelfAttention {
    fn load(sizes: &EncoderSizes, w: Weights) -> Result<Self> {
        let h = sizes.hidden;
        let head_dim = h / sizes.heads;
        Ok(Self {
            q_proj: w.pp("q_proj").linear(h, h)?,
            k_proj: w.pp("k_proj").linear(h, h)?,
            v_proj: w.pp("v_proj").linear(h, h)?,
            out_proj: w.pp("out_proj").linear(h, h)?,
            heads: sizes.heads,
            head_dim,
            scale: (head_dim as f64).powf(-0.5),
        })
    }

    fn split_heads(&self, xs: &Tensor, batch: usize, seq: usize) -> Result<Tensor> {
        xs.reshape((batch, seq, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (batch, seq, hidden) = xs.dims3()?;
        let q = self.split_heads(&(self.q_proj.forward(xs)? * self.scale)?, batch, seq)?;
        let k = self.split_heads(&self.k_proj.forward(xs)?, batch, seq)?;
        let v = self.split_heads(&self.v_proj.forward(xs)?, batch, seq)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&v)?.transpose(1, 2)?.reshape((batch, seq, hidden))?;
        self.out_proj.forward(&context)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct EncoderLayer {
    pub(crate) self_attn: SelfAttention,
    pub(crate) layer_norm1: LayerNorm,
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    pub(crate) layer_norm2: LayerNorm,
    pub(crate) activation: Activation,
}

impl EncoderLayer {
    fn load(sizes: &EncoderSizes, w: Weights) -> Result<Self> {
        Ok(Self {
            self_attn: SelfAttention::load(sizes, w.pp("self_attn"))?,
            layer_norm1: layer_norm(sizes.hidden, sizes.layer_norm_eps, w.pp("layer_norm1"))?,
            fc1: w.pp("mlp").pp("fc1").linear(sizes.hidden, sizes.intermediate)?,
            fc2: w.pp("mlp").pp("fc2").linear(sizes.intermediate, sizes.hidden)?,
            layer_norm2: layer_norm(sizes.hidden, sizes.layer_norm_eps, w.pp("layer_norm2"))?,
            activation: sizes.activation,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let attended = self.self_attn.forward(&self.layer_norm1.forward(xs)?, mask)?;
        let xs = (xs + attended)?;
        let hidden = activate(&self.fc1.forward(&self.layer_norm2.forward(&xs)?)?, self.activation)?;
        xs + self.fc2.forward(&hidden)?
    }
}

#[derive(Debug, Clone)]
pub struct Encoder {
    pub(crate) layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn load(sizes: &EncoderSizes, w: Weights) -> Result<Self> {
        let w = w.pp("layers");
        let layers = (0..sizes.layers)
            .map(|i| EncoderLayer::load(sizes, w.pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    pub fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.layers {
            xs = layer.forward(&xs, mask)?;
        }
        Ok(xs)
    }
}

/// Divides each row by its L2 norm.
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    xs.broadcast_div(&norm)
}
