//! The one transformer encoder every tower runs: CLIP's and SigLIP's
//! pre-norm encoders (`CLIPEncoder`, `SiglipEncoder` in `transformers`) and a
//! post-norm one (BERT's order), with no, causal or key-padding mask. Which of
//! these a tower uses is its family's setting ([`TransformerConfig`]); the
//! tensor names come from the family ([`LayerNames`]).

use candle_core::{DType, Device, Module, Result, Tensor};

use super::attention::{attend_tensors, attention_kernel, AttentionKernel};
use super::linear::{with_f32_slice, Linear};
use super::norm::LayerNorm;
use super::weights::Weights;
use super::Activation;

/// Where each block's layer norms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + attn(ln1(x))`, then `x + mlp(ln2(x))` (CLIP, SigLIP, ViT).
    Pre,
    /// `ln1(x + attn(x))`, then `ln2(x + mlp(x))` (BERT).
    Post,
}

/// Which keys each query may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    /// Every key (the vision towers: every patch is real).
    None,
    /// Keys at or before the query (CLIP's text tower).
    Causal,
    /// Keys before each sequence's length (padding ignored, as BERT's attention mask).
    KeyPadding,
}

/// One tower's encoder settings, from its part of `config.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransformerConfig {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub layers: usize,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    pub norm: NormPlacement,
}

impl TransformerConfig {
    /// A pre-norm encoder (layer norm before attention and before the MLP), as
    /// CLIP's and SigLIP's towers in `transformers` are.
    pub fn pre_norm(
        hidden: usize,
        intermediate: usize,
        heads: usize,
        layers: usize,
        activation: Activation,
        layer_norm_eps: f64,
    ) -> Self {
        Self { hidden, intermediate, heads, layers, activation, layer_norm_eps, norm: NormPlacement::Pre }
    }

    /// A post-norm encoder (layer norm after each residual sum), as BERT's.
    pub fn post_norm(
        hidden: usize,
        intermediate: usize,
        heads: usize,
        layers: usize,
        activation: Activation,
        layer_norm_eps: f64,
    ) -> Self {
        Self { norm: NormPlacement::Post, ..Self::pre_norm(hidden, intermediate, heads, layers, activation, layer_norm_eps) }
    }
}

/// Where a block's query, key and value projections are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkvNames {
    /// Three linear layers, `{q|k|v}.weight` and `.bias` (Hugging Face).
    Separate { q: &'static str, k: &'static str, v: &'static str },
    /// One fused `weight` [3·hidden, hidden] and `bias` [3·hidden], rows in
    /// the order q, k, v (timm's `attn.qkv`, `torch.nn.MultiheadAttention`'s
    /// `in_proj_weight` in open_clip).
    Fused { weight: &'static str, bias: &'static str },
}

/// The checkpoint's names for one block's tensors, relative to the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerNames {
    /// The list of blocks: `{layers}.{i}.…`.
    pub layers: &'static str,
    pub qkv: QkvNames,
    pub out: &'static str,
    pub norm1: &'static str,
    pub norm2: &'static str,
    pub fc1: &'static str,
    pub fc2: &'static str,
}

/// Hugging Face's names in `CLIPEncoderLayer` and `SiglipEncoderLayer`.
pub const HF_CLIP_LAYER_NAMES: LayerNames = LayerNames {
    layers: "layers",
    qkv: QkvNames::Separate { q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj" },
    out: "self_attn.out_proj",
    norm1: "layer_norm1",
    norm2: "layer_norm2",
    fc1: "mlp.fc1",
    fc2: "mlp.fc2",
};

/// Multi-head attention with separate q, k, v and output projections. Also
/// the cross-attention of SigLIP's pooling head (queries from its probe).
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) out_proj: Linear,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) scale: f64,
}

impl Attention {
    pub(crate) fn new(q_proj: Linear, k_proj: Linear, v_proj: Linear, out_proj: Linear, hidden: usize, heads: usize) -> Self {
        let head_dim = hidden / heads;
        Self { q_proj, k_proj, v_proj, out_proj, heads, head_dim, scale: (head_dim as f64).powf(-0.5) }
    }

    fn load(config: &TransformerConfig, names: &LayerNames, w: &Weights) -> Result<Self> {
        let h = config.hidden;
        let (q, k, v) = match names.qkv {
            QkvNames::Separate { q, k, v } => (w.pp(q).linear(h, h)?, w.pp(k).linear(h, h)?, w.pp(v).linear(h, h)?),
            QkvNames::Fused { weight, bias } => {
                let [q, k, v] = w.fused_linears::<3>(weight, bias, h, h)?;
                (q, k, v)
            }
        };
        Ok(Self::new(q, k, v, w.pp(names.out).linear(h, h)?, h, config.heads))
    }

    fn split_heads(&self, xs: &Tensor, batch: usize, seq: usize) -> Result<Tensor> {
        xs.reshape((batch, seq, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
    }

    /// `queries` [b, q, h] attend to `keys_values` [b, k, h]; `mask` is
    /// additive, the same for every head, broadcast to [b, 1, q, k]. On the
    /// CPU under [`AttentionKernel::Fused`] (the default) the projections go
    /// straight to the fused kernel (`nn::attention`); otherwise candle's ops.
    pub(crate) fn attend(&self, queries: &Tensor, keys_values: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        self.attend_residual(queries, keys_values, mask, None)
    }

    /// [`attend`](Self::attend) `+ residual` ([b, q, h]), the sum fused into
    /// the output projection's epilogue.
    pub(crate) fn attend_residual(
        &self,
        queries: &Tensor,
        keys_values: &Tensor,
        mask: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (batch, q_len, hidden) = queries.dims3()?;
        let k_len = keys_values.dim(1)?;
        // One input packed (or quantised) once for the projections that read it.
        let (q, k, v) = if queries.id() == keys_values.id() {
            let [q, k, v] = Linear::forward_shared([&self.q_proj, &self.k_proj, &self.v_proj], queries)?;
            (q, k, v)
        } else {
            let [k, v] = Linear::forward_shared([&self.k_proj, &self.v_proj], keys_values)?;
            (self.q_proj.forward(queries)?, k, v)
        };
        let context = if attention_kernel() == AttentionKernel::Fused && queries.device().is_cpu() {
            attend_tensors(&q, &k, &v, self.heads, self.scale as f32, mask)?
        } else {
            let q = self.split_heads(&(q * self.scale)?, batch, q_len)?;
            let k = self.split_heads(&k, batch, k_len)?;
            let v = self.split_heads(&v, batch, k_len)?;
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(mask) = mask {
                scores = scores.broadcast_add(mask)?;
            }
            let weights = candle_nn::ops::softmax_last_dim(&scores)?;
            weights.matmul(&v)?.transpose(1, 2)?.reshape((batch, q_len, hidden))?
        };
        match residual {
            Some(r) => self.out_proj.forward_residual(&context, r),
            None => self.out_proj.forward(&context),
        }
    }
}

/// Bytes of f32 intermediate activations (`[rows, intermediate]`) one step of
/// [`EncoderLayer::mlp_residual`] computes: 1 MiB, small next to any
/// encoder's weights; a ViT-B/16 image's 197 rows go in three steps.
const MLP_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct EncoderLayer {
    pub(crate) self_attn: Attention,
    pub(crate) layer_norm1: LayerNorm,
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    pub(crate) layer_norm2: LayerNorm,
    pub(crate) activation: Activation,
    pub(crate) norm: NormPlacement,
}

impl EncoderLayer {
    fn load(config: &TransformerConfig, names: &LayerNames, w: Weights) -> Result<Self> {
        let (h, eps) = (config.hidden, config.layer_norm_eps);
        Ok(Self {
            self_attn: Attention::load(config, names, &w)?,
            layer_norm1: w.pp(names.norm1).layer_norm(h, eps)?,
            fc1: w.pp(names.fc1).linear(h, config.intermediate)?,
            fc2: w.pp(names.fc2).linear(config.intermediate, h)?,
            layer_norm2: w.pp(names.norm2).layer_norm(h, eps)?,
            activation: config.activation,
            norm: config.norm,
        })
    }

    /// `residual + fc2(act(fc1(xs)))`: the activation fused into fc1's GEMM
    /// epilogue and the residual sum into fc2's (`Linear::forward_activation`,
    /// `forward_residual`: the same bits as unfused).
    ///
    /// Computed [`MLP_CHUNK_BYTES`] of intermediate activations at a time: the
    /// `[rows, intermediate]` activations (and their int16 copy for the int8
    /// GEMM) are a forward pass's largest, and wasm memory never shrinks, so
    /// their size stays part of the page's peak (issue #14 item 3). Rows are
    /// independent and every GEMM computes each output value from its own row
    /// only: the same bits as in one go. On the q8_0 × q8_0 GEMM both products
    /// run in one parallel pass, each thread taking its own rows through fc1
    /// and fc2 ([`Linear::forward_chain_residual`]; the budget shared by the
    /// threads), instead of a parallel product per layer and chunk.
    fn mlp_residual(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (intermediate, hidden) = self.fc1.dims()?;
        let rows = xs.elem_count() / hidden.max(1);
        let most = (MLP_CHUNK_BYTES / (4 * intermediate).max(1)).max(1);
        if let Some(ys) = Linear::forward_chain_residual(&self.fc1, self.activation, &self.fc2, xs, residual, most) {
            return ys;
        }
        if rows <= most || !xs.device().is_cpu() || residual.dims() != xs.dims() {
            return self.fc2.forward_residual(&self.fc1.forward_activation(xs, self.activation)?, residual);
        }
        let per = rows.div_ceil(rows.div_ceil(most));
        let (xs2, residual2) = (xs.reshape((rows, hidden))?, residual.reshape((rows, hidden))?);
        let mut out = Vec::with_capacity(rows * hidden);
        for start in (0..rows).step_by(per) {
            let len = per.min(rows - start);
            let h = self.fc1.forward_activation(&xs2.narrow(0, start, len)?, self.activation)?;
            let part = self.fc2.forward_residual(&h, &residual2.narrow(0, start, len)?)?;
            drop(h);
            with_f32_slice(&part, |s| out.extend_from_slice(s))?;
        }
        Tensor::from_vec(out, xs.shape(), &Device::Cpu)
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        match self.norm {
            NormPlacement::Pre => {
                let normed = self.layer_norm1.forward(xs)?;
                let xs = self.self_attn.attend_residual(&normed, &normed, mask, Some(xs))?;
                self.mlp_residual(&self.layer_norm2.forward(&xs)?, &xs)
            }
            NormPlacement::Post => {
                let xs = self.layer_norm1.forward(&self.self_attn.attend_residual(xs, xs, mask, Some(xs))?)?;
                self.layer_norm2.forward(&self.mlp_residual(&xs, &xs)?)
            }
        }
    }
}

/// The encoder: a stack of identical blocks.
#[derive(Debug, Clone)]
pub struct Transformer {
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) mask: MaskKind,
}

impl Transformer {
    /// Reads `{names.layers}.{i}.…` for each of `config.layers` blocks.
    pub fn load(config: &TransformerConfig, names: &LayerNames, mask: MaskKind, w: Weights) -> Result<Self> {
        let w = w.pp(names.layers);
        let layers = (0..config.layers)
            .map(|i| EncoderLayer::load(config, names, w.pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, mask })
    }

    pub fn mask_kind(&self) -> MaskKind {
        self.mask
    }

    /// `xs` [batch, seq, hidden] → [batch, seq, hidden]. `lengths` (one per
    /// sequence) is read only under [`MaskKind::KeyPadding`], where it is required.
    pub fn forward(&self, xs: &Tensor, lengths: Option<&[usize]>) -> Result<Tensor> {
        let (batch, seq, _) = xs.dims3()?;
        let mask = match self.mask {
            MaskKind::None => None,
            MaskKind::Causal => Some(causal_mask(seq, xs.device())?),
            MaskKind::KeyPadding => {
                let Some(lengths) = lengths.filter(|l| l.len() == batch) else {
                    candle_core::bail!("a key-padding mask needs one length per sequence")
                };
                Some(key_padding_mask(lengths, seq, xs.device())?)
            }
        };
        self.forward_with_mask(xs, mask.as_ref())
    }

    /// `xs` [batch, seq, hidden] under an explicit additive `mask` broadcast
    /// to [batch, 1, seq, seq] (the same for every head; see [`key_mask`]), whatever the encoder's kind.
    pub fn forward_with_mask(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.layers {
            xs = layer.forward(&xs, mask)?;
        }
        Ok(xs)
    }
}

/// [1, 1, 1, seq]: the keys where `keep` is false masked out as
/// [`key_padding_mask`] masks padding (open_clip's BERT towers mask every
/// key whose id is the pad id, wherever it is).
pub fn key_mask(keep: &[bool], device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = keep.iter().map(|&k| if k { 0.0 } else { f32::MIN }).collect();
    Tensor::from_vec(mask, (1, 1, 1, keep.len()), device)
}

/// [seq, seq]: −∞ above the diagonal.
fn causal_mask(seq: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| (0..seq).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (seq, seq), device)?.to_dtype(DType::F32)
}

/// [batch, 1, 1, seq]: the most negative finite f32 at the keys past each
/// sequence's length, as `transformers`' `_prepare_4d_attention_mask` adds it.
/// Finite rather than −∞ on purpose: a sequence of length 0 (an empty text,
/// all padding) then has every key at that value, which absorbs the scores,
/// and attends uniformly to every key as `transformers` does (−∞ would give NaN).
fn key_padding_mask(lengths: &[usize], seq: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> =
        lengths.iter().flat_map(|&len| (0..seq).map(move |j| if j >= len { f32::MIN } else { 0.0 })).collect();
    Tensor::from_vec(mask, (lengths.len(), 1, 1, seq), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a key-padding mask, padding after a sequence changes none of its
    /// tokens; without the mask it does (so the test can fail).
    #[test]
    fn key_padding_ignores_padding() -> Result<()> {
        let device = Device::Cpu;
        let h = 4;
        let eye = |n| Tensor::eye(n, DType::F32, &device);
        let lin = |seed: f32| -> Result<Linear> {
            let w = (eye(h)? * f64::from(seed))?;
            Linear::dense(w, Some(Tensor::zeros(h, DType::F32, &device)?))
        };
        let ln = || -> Result<LayerNorm> {
            Ok(LayerNorm::new(Tensor::ones(h, DType::F32, &device)?, Tensor::zeros(h, DType::F32, &device)?, 1e-5))
        };
        let layer = EncoderLayer {
            self_attn: Attention::new(lin(0.5)?, lin(0.7)?, lin(1.0)?, lin(1.0)?, h, 2),
            layer_norm1: ln()?,
            fc1: lin(1.0)?,
            fc2: lin(1.0)?,
            layer_norm2: ln()?,
            activation: Activation::Gelu,
            norm: NormPlacement::Post,
        };
        let t = Transformer { layers: vec![layer], mask: MaskKind::KeyPadding };
        let data: Vec<f32> = (0..12).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::from_vec(data, (1, 3, h), &device)?;
        // The first two tokens with a third padding token equal the two alone.
        let padded = t.forward(&x, Some(&[2]))?.narrow(1, 0, 2)?;
        let alone = t.forward(&x.narrow(1, 0, 2)?.contiguous()?, Some(&[2]))?;
        let diff = (padded - alone)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        // And the padding token does matter without the mask.
        let unmasked = Transformer { mask: MaskKind::None, ..t.clone() };
        let diff = (unmasked.forward(&x, None)?.narrow(1, 0, 2)? - t.forward(&x, Some(&[2]))?.narrow(1, 0, 2)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff > 1e-4, "{diff}");
        Ok(())
    }
}
