//! The attention-pooling ("MAP") head on the GPU, uploaded from
//! [`nn::attention_pool::AttentionPool`](crate::nn::attention_pool::AttentionPool)
//! and run in its order: the probe attends to every token, then
//! `x + mlp(layer_norm(x))`. The probe's query projection does not depend on
//! the input, so it is computed once on the CPU at upload (by the CPU's own
//! layer) and only k and v are projected per image.

use candle_core::Module;

use super::context::GpuContext;
use super::encoder::{to_vec, GpuLinear, GpuNorm};
use super::ops::{attention, Recorder};
use crate::error::Result;
use crate::nn::attention_pool::AttentionPool;
use crate::nn::Activation;

pub(crate) struct GpuAttentionPool {
    /// `q_proj(probe)`: [hidden], unscaled (the kernel scales the scores).
    query: wgpu::Buffer,
    /// k and v stacked: [2·hidden, hidden].
    kv: GpuLinear,
    out: GpuLinear,
    norm: GpuNorm,
    fc1: GpuLinear,
    fc2: GpuLinear,
    activation: Activation,
    heads: usize,
    hidden: usize,
}

/// The head's working buffers for one (batch, sequence length).
pub(crate) struct PoolBuffers {
    kv: wgpu::Buffer,
    context: wgpu::Buffer,
    attended: wgpu::Buffer,
    normed: wgpu::Buffer,
    mlp: wgpu::Buffer,
}

impl PoolBuffers {
    pub(crate) fn into_buffers(self) -> [wgpu::Buffer; 5] {
        [self.kv, self.context, self.attended, self.normed, self.mlp]
    }
}

impl GpuAttentionPool {
    pub(crate) fn upload(ctx: &GpuContext, head: &AttentionPool) -> Result<Self> {
        let a = &head.attention;
        let hidden = a.heads * a.head_dim;
        let query = to_vec(&a.q_proj.forward(&head.probe)?)?;
        Ok(Self {
            query: ctx.upload("probe query", &query),
            kv: GpuLinear::upload_stacked(ctx, &[&a.k_proj, &a.v_proj], "pool kv")?,
            out: GpuLinear::upload(ctx, &a.out_proj, "pool out_proj")?,
            norm: GpuNorm::upload(ctx, &head.layer_norm, "pool layernorm")?,
            fc1: GpuLinear::upload(ctx, &head.fc1, "pool fc1")?,
            fc2: GpuLinear::upload(ctx, &head.fc2, "pool fc2")?,
            activation: head.activation,
            heads: a.heads,
            hidden,
        })
    }

    pub(crate) fn buffers(&self, ctx: &GpuContext, batch: usize, seq: usize) -> PoolBuffers {
        let h = self.hidden;
        PoolBuffers {
            kv: ctx.activation(batch * seq * 2 * h),
            context: ctx.activation(batch * h),
            attended: ctx.activation(batch * h),
            normed: ctx.activation(batch * h),
            mlp: ctx.activation(batch * self.fc1.out_dim),
        }
    }

    /// `tokens` [batch·seq, hidden] → `out` [batch, hidden].
    pub(crate) fn record(
        &self,
        rec: &mut Recorder,
        bufs: &PoolBuffers,
        tokens: &wgpu::Buffer,
        out: &wgpu::Buffer,
        batch: usize,
        seq: usize,
    ) {
        let h = self.hidden;
        self.kv.record(rec, tokens, &bufs.kv, batch * seq, None, None);
        attention::record_shared_query(rec, &self.query, &bufs.kv, &bufs.context, batch, seq, 1, self.heads, h);
        self.out.record(rec, &bufs.context, &bufs.attended, batch, None, None);
        self.norm.record(rec, &bufs.attended, &bufs.normed, batch, h);
        self.fc1.record(rec, &bufs.normed, &bufs.mlp, batch, Some(self.activation), None);
        self.fc2.record(rec, &bufs.mlp, out, batch, None, Some(&bufs.attended));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    use super::*;
    use crate::gpu::test_support::{assert_close, context, flat, run, tensor};
    use crate::nn::weights::Weights;

    /// The MAP head against `nn::attention_pool` on the CPU, with
    /// `transformers`' tensor names (`SiglipMultiheadAttentionPoolingHead`).
    #[test]
    fn attention_pool_matches_the_cpu() {
        let Some(ctx) = context() else { return };
        let (batch, seq, hidden, heads, intermediate) = (3, 50, 32, 4, 64);
        let shapes: [(&str, &[usize], f32); 11] = [
            ("probe", &[1, 1, hidden], 1.0),
            ("attention.in_proj_weight", &[3 * hidden, hidden], 0.3),
            ("attention.in_proj_bias", &[3 * hidden], 0.1),
            ("attention.out_proj.weight", &[hidden, hidden], 0.3),
            ("attention.out_proj.bias", &[hidden], 0.1),
            ("layernorm.weight", &[hidden], 1.0),
            ("layernorm.bias", &[hidden], 0.5),
            ("mlp.fc1.weight", &[intermediate, hidden], 0.3),
            ("mlp.fc1.bias", &[intermediate], 0.1),
            ("mlp.fc2.weight", &[hidden, intermediate], 0.3),
            ("mlp.fc2.bias", &[hidden], 0.1),
        ];
        let tensors: HashMap<String, candle_core::Tensor> =
            shapes.iter().enumerate().map(|(i, (name, shape, scale))| (name.to_string(), tensor(shape, 40 + i as u64, *scale))).collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let head = AttentionPool::load(hidden, intermediate, heads, Activation::GeluTanh, 1e-6, Weights::dense(vb)).unwrap();
        let tokens = tensor(&[batch, seq, hidden], 7, 1.0);
        let want = flat(&head.forward(&tokens).unwrap());

        let gpu = GpuAttentionPool::upload(&ctx, &head).unwrap();
        let bufs = gpu.buffers(&ctx, batch, seq);
        let input = ctx.upload("tokens", &flat(&tokens));
        let out = ctx.activation(batch * hidden);
        let got = run(&ctx, |rec| gpu.record(rec, &bufs, &input, &out, batch, seq), &out, batch * hidden);
        assert_close("attention pool", &got, &want, 1e-4);
    }
}
