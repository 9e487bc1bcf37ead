//! A tower's projection head on the GPU: `projection(activation(hidden(x)))`,
//! `projection(x)` or `x`, as `models::tower` projects (open_clip's two-layer
//! `mlp` heads, CLIP's projections, SigLIP's pooled output as it is).

use super::context::GpuContext;
use super::encoder::GpuLinear;
use super::ops::Recorder;
use crate::error::Result;
use crate::models::tower::HiddenLayer;
use crate::nn::linear::Linear;
use crate::nn::Activation;

pub(crate) struct GpuHead {
    hidden: Option<(GpuLinear, Activation)>,
    projection: Option<GpuLinear>,
    in_dim: usize,
}

impl GpuHead {
    pub(crate) fn upload(ctx: &GpuContext, hidden: Option<&HiddenLayer>, projection: Option<&Linear>, in_dim: usize) -> Result<Self> {
        Ok(Self {
            hidden: hidden.map(|h| Ok::<_, crate::Error>((GpuLinear::upload(ctx, &h.linear, "head hidden")?, h.activation))).transpose()?,
            projection: projection.map(|p| GpuLinear::upload(ctx, p, "projection")).transpose()?,
            in_dim,
        })
    }

    pub(crate) fn out_dim(&self) -> usize {
        match (&self.projection, &self.hidden) {
            (Some(p), _) => p.out_dim,
            (None, Some((h, _))) => h.out_dim,
            (None, None) => self.in_dim,
        }
    }

    /// Records the head over `rows` rows of `input`; returns the buffer that
    /// holds the output (`input` itself for an empty head) and adds the
    /// buffers it made to `made`.
    pub(crate) fn record(
        &self,
        ctx: &GpuContext,
        rec: &mut Recorder,
        input: &wgpu::Buffer,
        rows: usize,
        made: &mut Vec<wgpu::Buffer>,
    ) -> wgpu::Buffer {
        let mut current = input.clone();
        if let Some((linear, activation)) = &self.hidden {
            let out = ctx.activation(rows * linear.out_dim);
            linear.record(rec, &current, &out, rows, Some(*activation), None);
            made.push(out.clone());
            current = out;
        }
        if let Some(projection) = &self.projection {
            let out = ctx.activation(rows * projection.out_dim);
            projection.record(rec, &current, &out, rows, None, None);
            made.push(out.clone());
            current = out;
        }
        current
    }
}
