//! The transformer encoder every tower shares (`nn::transformer`: pre- or
//! post-norm, any mask), as GPU buffers and a recorded sequence of
//! dispatches; the layer norms and linear layers every GPU module uploads;
//! and the per-shape activation buffers the encoder runs on.

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Tensor};
use crate::nn::norm::LayerNorm;

use super::context::GpuContext;
use super::ops::attention::{self, KeyMask};
use super::ops::{layer_norm, matmul, Kernel, Recorder};
use crate::nn::Activation;
use crate::nn::transformer::{NormPlacement, Transformer};
use crate::nn::linear::Linear;
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

/// A linear layer's weight on the GPU.
enum GpuWeight {
    F32(wgpu::Buffer),
    /// q8_0 blocks, expanded inside the matmul kernel (`matmul::Rhs::Q8`).
    Q8 { quants: wgpu::Buffer, scales: wgpu::Buffer },
    /// q4_K super-blocks as 4-bit values with a (scale, min) per 32
    /// (`matmul::Rhs::Q4`).
    Q4 { quants: wgpu::Buffer, scales: wgpu::Buffer },
    /// Half precision, used only when every value is an f16 exactly (an f16
    /// checkpoint or bundle) and the device has `shader-f16`: half the memory,
    /// the same numbers.
    F16(wgpu::Buffer),
}

/// The values as f16 bytes, when every one converts exactly.
fn lossless_f16(values: &[f32]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(values.len() * 2);
    for &v in values {
        let h = half::f16::from_f32(v);
        if h.to_f32() != v {
            return None;
        }
        bytes.extend(h.to_le_bytes());
    }
    Some(bytes)
}

/// A linear layer's weight [out, in] and bias. q8_0 and q4_K layers (q8 and
/// q4 bundles) stay quantised on the GPU and are expanded inside the kernel;
/// f16 weights stay f16 where the device can read them.
pub(crate) struct GpuLinear {
    weight: GpuWeight,
    bias: Option<wgpu::Buffer>,
    pub(crate) out_dim: usize,
    pub(crate) in_dim: usize,
}

/// The raw blocks of a quantised layer of `dtype`.
fn blocks(linear: &Linear, dtype: GgmlDType) -> Option<Vec<u8>> {
    linear.quant_blocks(dtype)
}

/// q4_K super-blocks (ggml's `block_q4_K`, 144 bytes per 256 weights: f16 d
/// and dmin, twelve bytes of 6-bit scales and mins, 128 bytes of nibbles)
/// as nibbles in k order, eight to a u32, and one (d·scale, dmin·min) per 32
/// weights: the dequantisation of ggml's `dequantize_row_q4_K`, split so the
/// kernel does the last multiply and subtract.
fn repack_q4k(blocks: &[u8]) -> (Vec<u32>, Vec<f32>) {
    const BLOCK_BYTES: usize = 144;
    let scale_min = |j: usize, q: &[u8]| -> (u8, u8) {
        if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
        }
    };
    let count = blocks.len() / BLOCK_BYTES;
    let mut quants = Vec::with_capacity(count * 32);
    let mut scales = Vec::with_capacity(count * 16);
    for block in blocks.chunks_exact(BLOCK_BYTES) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let dmin = half::f16::from_le_bytes([block[2], block[3]]).to_f32();
        let (packed_scales, qs) = (&block[4..16], &block[16..]);
        for chunk in 0..4 {
            let q = &qs[chunk * 32..chunk * 32 + 32];
            for (half_index, shift) in [(0, 0), (1, 4)] {
                let (sc, m) = scale_min(2 * chunk + half_index, packed_scales);
                scales.extend([d * f32::from(sc), dmin * f32::from(m)]);
                for eight in q.chunks_exact(8) {
                    let word = eight.iter().enumerate().fold(0u32, |w, (i, &b)| w | (u32::from((b >> shift) & 0xF) << (4 * i)));
                    quants.push(word);
                }
            }
        }
    }
    (quants, scales)
}

/// Splits q8_0 blocks into int8 values (four to a u32) and f32 scales.
fn repack_q8(blocks: &[u8]) -> (Vec<u32>, Vec<f32>) {
    const BLOCK_BYTES: usize = 2 + matmul::Q8_BLOCK;
    let count = blocks.len() / BLOCK_BYTES;
    let mut quants = Vec::with_capacity(count * matmul::Q8_BLOCK / 4);
    let mut scales = Vec::with_capacity(count);
    for block in blocks.chunks_exact(BLOCK_BYTES) {
        scales.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
        quants.extend(block[2..].chunks_exact(4).map(|q| u32::from_le_bytes([q[0], q[1], q[2], q[3]])));
    }
    (quants, scales)
}

impl GpuLinear {
    pub(crate) fn upload(ctx: &GpuContext, linear: &Linear, label: &str) -> Result<Self> {
        Self::upload_stacked(ctx, &[linear], label)
    }

    /// Several layers reading the same input, stacked along their outputs
    /// (q, k and v become one [3·hidden, hidden] matmul).
    pub(crate) fn upload_stacked(ctx: &GpuContext, linears: &[&Linear], label: &str) -> Result<Self> {
        let q8: Option<Vec<Vec<u8>>> = linears.iter().map(|l| blocks(l, GgmlDType::Q8_0)).collect();
        let q4: Option<Vec<Vec<u8>>> = linears.iter().map(|l| blocks(l, GgmlDType::Q4K)).collect();
        let dims = linears.iter().map(|l| l.dims()).collect::<candle_core::Result<Vec<_>>>()?;
        let out_dim: usize = dims.iter().map(|&(out, _)| out).sum();
        let in_dim = dims[0].1;
        if in_dim % matmul::K_MULTIPLE != 0 {
            return Err(Error::Gpu(format!(
                "{label}: an input width of {in_dim} is not a multiple of {}, which the matmul kernel needs",
                matmul::K_MULTIPLE
            )));
        }
        let bias = if linears.iter().any(|l| l.bias().is_some()) {
            let mut values = Vec::with_capacity(out_dim);
            for (l, &(out, _)) in linears.iter().zip(&dims) {
                match l.bias() {
                    Some(b) => values.extend(to_vec(b)?),
                    None => values.extend(std::iter::repeat_n(0.0, out)),
                }
            }
            Some(ctx.upload(label, &values))
        } else {
            None
        };
        // Rows are whole blocks, so stacking layers is concatenating their blocks.
        let weight = match (q8, q4) {
            (Some(blocks), _) if in_dim % matmul::Q8_BLOCK == 0 => {
                let (quants, scales) = repack_q8(&blocks.concat());
                GpuWeight::Q8 { quants: ctx.upload_u32(label, &quants), scales: ctx.upload(label, &scales) }
            }
            (_, Some(blocks)) if in_dim % 256 == 0 => {
                let (quants, scales) = repack_q4k(&blocks.concat());
                GpuWeight::Q4 { quants: ctx.upload_u32(label, &quants), scales: ctx.upload(label, &scales) }
            }
            _ => {
                // Only the layers that stay dense are expanded (and only here).
                let weights = linears.iter().map(|l| l.weight()).collect::<candle_core::Result<Vec<_>>>()?;
                let values = to_vec(&Tensor::cat(&weights, 0)?)?;
                match lossless_f16(&values).filter(|_| ctx.kernels.has(Kernel::MatmulF16)) {
                    Some(bytes) => GpuWeight::F16(ctx.upload_bytes(label, &bytes)),
                    None => GpuWeight::F32(ctx.upload(label, &values)),
                }
            }
        };
        let format = match weight {
            GpuWeight::F32(_) => "f32",
            GpuWeight::F16(_) => "f16",
            GpuWeight::Q8 { .. } => "q8",
            GpuWeight::Q4 { .. } => "q4",
        };
        *ctx.formats.borrow_mut().entry(format).or_default() += linears.len();
        Ok(Self { weight, bias, out_dim, in_dim })
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
        let (rhs, unused) = match &self.weight {
            GpuWeight::F32(w) => (matmul::Rhs::F32(w), w),
            GpuWeight::Q8 { quants, scales } => (matmul::Rhs::Q8 { quants, scales }, scales),
            GpuWeight::F16(w) => (matmul::Rhs::F16(w), w),
            GpuWeight::Q4 { quants, scales } => (matmul::Rhs::Q4 { quants, scales }, scales),
        };
        matmul::record(rec, input, rhs, out, (rows, self.out_dim, self.in_dim), epilogue, unused);
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
    norm: NormPlacement,
}

impl GpuEncoder {
    pub(crate) fn upload(ctx: &GpuContext, encoder: &Transformer) -> Result<Self> {
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
        Ok(Self { layers, hidden, intermediate, heads, activation: first.activation, norm: first.norm })
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

    /// The hidden states in `acts.x0` go through every layer and end in
    /// `acts.x0`, in the layer order of `nn::transformer::EncoderLayer::forward`.
    pub(crate) fn record(&self, rec: &mut Recorder, acts: &Activations, batch: usize, seq: usize, mask: KeyMask) {
        let (rows, h) = (batch * seq, self.hidden);
        let act = Some(self.activation);
        for layer in &self.layers {
            match self.norm {
                NormPlacement::Pre => {
                    layer.norm1.record(rec, &acts.x0, &acts.normed, rows, h);
                    layer.qkv.record(rec, &acts.normed, &acts.qkv, rows, None, None);
                    attention::record(rec, &acts.qkv, &acts.context, batch, seq, self.heads, h, mask);
                    layer.out.record(rec, &acts.context, &acts.x1, rows, None, Some(&acts.x0));
                    layer.norm2.record(rec, &acts.x1, &acts.normed, rows, h);
                    layer.fc1.record(rec, &acts.normed, &acts.mlp, rows, act, None);
                    layer.fc2.record(rec, &acts.mlp, &acts.x0, rows, None, Some(&acts.x1));
                }
                NormPlacement::Post => {
                    layer.qkv.record(rec, &acts.x0, &acts.qkv, rows, None, None);
                    attention::record(rec, &acts.qkv, &acts.context, batch, seq, self.heads, h, mask);
                    layer.out.record(rec, &acts.context, &acts.x1, rows, None, Some(&acts.x0));
                    layer.norm1.record(rec, &acts.x1, &acts.normed, rows, h);
                    layer.fc1.record(rec, &acts.normed, &acts.mlp, rows, act, None);
                    layer.fc2.record(rec, &acts.mlp, &acts.x1, rows, None, Some(&acts.normed));
                    layer.norm2.record(rec, &acts.x1, &acts.x0, rows, h);
                }
            }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    use super::*;
    use crate::gpu::test_support::{assert_close, context, flat, run, tensor};
    use crate::nn::transformer::{MaskKind, TransformerConfig, HF_CLIP_LAYER_NAMES};
    use crate::nn::weights::Weights;

    /// Random weights under `HF_CLIP_LAYER_NAMES` for `config`.
    fn random_encoder(config: &TransformerConfig, mask: MaskKind) -> Transformer {
        let (h, i) = (config.hidden, config.intermediate);
        let mut tensors = HashMap::new();
        let mut seed = 10;
        let mut add = |name: String, shape: &[usize], scale: f32| {
            seed += 1;
            tensors.insert(name, tensor(shape, seed, scale));
        };
        for l in 0..config.layers {
            for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                add(format!("layers.{l}.self_attn.{p}.weight"), &[h, h], 0.3);
                add(format!("layers.{l}.self_attn.{p}.bias"), &[h], 0.1);
            }
            for n in ["layer_norm1", "layer_norm2"] {
                add(format!("layers.{l}.{n}.weight"), &[h], 1.0);
                add(format!("layers.{l}.{n}.bias"), &[h], 0.5);
            }
            add(format!("layers.{l}.mlp.fc1.weight"), &[i, h], 0.3);
            add(format!("layers.{l}.mlp.fc1.bias"), &[i], 0.1);
            add(format!("layers.{l}.mlp.fc2.weight"), &[h, i], 0.3);
            add(format!("layers.{l}.mlp.fc2.bias"), &[h], 0.1);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        Transformer::load(config, &HF_CLIP_LAYER_NAMES, mask, Weights::dense(vb)).expect("the weights load")
    }

    /// Pre- and post-norm blocks under every mask, against `nn::transformer`
    /// on the CPU (padded sequences, an all-padding one among them).
    #[test]
    fn encoder_orders_and_masks_match_the_cpu() {
        let Some(ctx) = context() else { return };
        let (batch, seq) = (3, 9);
        let lengths = [9usize, 4, 0];
        for norm in [NormPlacement::Pre, NormPlacement::Post] {
            let config = TransformerConfig { norm, ..TransformerConfig::pre_norm(24, 48, 3, 2, Activation::GeluTanh, 1e-6) };
            for mask in [MaskKind::None, MaskKind::Causal, MaskKind::KeyPadding] {
                let cpu_encoder = random_encoder(&config, mask);
                let input = tensor(&[batch, seq, config.hidden], 99, 1.0);
                let want = flat(&cpu_encoder.forward(&input, Some(&lengths)).unwrap());
                let gpu = GpuEncoder::upload(&ctx, &cpu_encoder).unwrap();
                let acts = Activations::new(&ctx, &gpu, batch * seq);
                let keep: Vec<u32> = lengths.iter().flat_map(|&l| (0..seq).map(move |j| u32::from(j < l))).collect();
                let keep_buffer = ctx.upload_u32("keep", &keep);
                let key_mask = match mask {
                    MaskKind::None => KeyMask::All,
                    MaskKind::Causal => KeyMask::Causal,
                    MaskKind::KeyPadding => KeyMask::Keys(&keep_buffer),
                };
                ctx.write(&acts.x0, &flat(&input));
                let got = run(&ctx, |rec| gpu.record(rec, &acts, batch, seq, key_mask), &acts.x0, want.len());
                assert_close(&format!("encoder {norm:?} {mask:?}"), &got, &want, 1e-4);
            }
        }
    }
}
