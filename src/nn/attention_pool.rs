//! Multihead attention pooling (the "MAP" head): a learned probe attends to
//! every token, then a layer norm and an MLP with a residual, and the probe's
//! row is the pooled output. As `SiglipMultiheadAttentionPoolingHead` in
//! `transformers` (its attention is `torch.nn.MultiheadAttention`, whose q, k
//! and v projections are stored as one `in_proj_weight` [3h, h]).

use candle_core::{Module, Result, Tensor};

use super::linear::Linear;
use super::norm::LayerNorm;
use super::transformer::Attention;
use super::weights::Weights;
use super::Activation;

/// The head's tensor names below its prefix, as `transformers` stores them.
pub mod names {
    pub const PROBE: &str = "probe";
    pub const ATTENTION: &str = "attention";
    /// q, k and v stacked, [3h, h] and [3h].
    pub const IN_PROJ_WEIGHT: &str = "in_proj_weight";
    pub const IN_PROJ_BIAS: &str = "in_proj_bias";
    pub const OUT_PROJ: &str = "out_proj";
    pub const LAYER_NORM: &str = "layernorm";
    pub const FC1: &str = "mlp.fc1";
    pub const FC2: &str = "mlp.fc2";
}

#[derive(Debug, Clone)]
pub struct AttentionPool {
    /// [1, 1, hidden]
    pub(crate) probe: Tensor,
    pub(crate) attention: Attention,
    pub(crate) layer_norm: LayerNorm,
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    pub(crate) activation: Activation,
}

impl AttentionPool {
    /// Reads `probe`, `attention.{in_proj_weight, in_proj_bias, out_proj}`,
    /// `layernorm` and `mlp.{fc1, fc2}` below `w` (transformers' names).
    pub fn load(
        hidden: usize,
        intermediate: usize,
        heads: usize,
        activation: Activation,
        eps: f64,
        w: Weights,
    ) -> Result<Self> {
        let a = w.pp(names::ATTENTION);
        let in_weight = a.get((3 * hidden, hidden), names::IN_PROJ_WEIGHT)?;
        let in_bias = a.get(3 * hidden, names::IN_PROJ_BIAS)?;
        let part = |i: usize| -> Result<Linear> {
            Linear::dense(
                in_weight.narrow(0, i * hidden, hidden)?.contiguous()?,
                Some(in_bias.narrow(0, i * hidden, hidden)?.contiguous()?),
            )
        };
        Ok(Self {
            probe: w.get((1, 1, hidden), names::PROBE)?,
            attention: Attention::new(part(0)?, part(1)?, part(2)?, a.pp(names::OUT_PROJ).linear(hidden, hidden)?, hidden, heads),
            layer_norm: w.pp(names::LAYER_NORM).layer_norm(hidden, eps)?,
            fc1: w.pp(names::FC1).linear(hidden, intermediate)?,
            fc2: w.pp(names::FC2).linear(intermediate, hidden)?,
            activation,
        })
    }

    /// `hidden` [batch, seq, h] → [batch, h].
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let (batch, _, h) = hidden.dims3()?;
        let probe = self.probe.broadcast_as((batch, 1, h))?.contiguous()?;
        let xs = self.attention.attend(&probe, hidden, None)?;
        let mlp = self.fc2.forward(&self.activation.apply(&self.fc1.forward(&self.layer_norm.forward(&xs)?)?)?)?;
        (xs + mlp)?.squeeze(1)
    }
}
