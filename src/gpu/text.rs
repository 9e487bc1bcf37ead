//! The text tower on the GPU. Token and position embeddings are looked up on
//! the CPU (a table of 49408 rows need not occupy GPU memory); texts of a
//! batch are padded to the longest, which the causal mask makes harmless:
//! no position attends to a later one, so padding never reaches the pooled
//! end-of-text token.

use super::context::GpuContext;
use super::encoder::{to_vec, Activations, GpuEncoder, GpuLinear, GpuNorm};
use super::ops::{gather_rows, Recorder};
use super::plan::{Plan, PlanCache};
use crate::models::tower::TextTower;
use crate::nn::transformer::MaskKind;
use crate::error::{Error, Result};

pub(crate) struct GpuText {
    /// The CPU tower, for its embedding tables and pooling rule.
    tower: TextTower,
    encoder: GpuEncoder,
    final_norm: GpuNorm,
    projection: GpuLinear,
    plans: PlanCache,
}

impl GpuText {
    pub(crate) fn upload(ctx: &GpuContext, tower: &TextTower) -> Result<Self> {
        GpuEncoder::check_sequence(tower.max_positions())?;
        if tower.encoder.mask_kind() == MaskKind::KeyPadding {
            return Err(Error::Gpu("key-padding masks are not on the GPU yet".into()));
        }
        let (true, Some(final_layer_norm)) = (tower.is_clip_shaped(), &tower.final_layer_norm) else {
            return Err(Error::Gpu("this text tower (not CLIP's layout) is not on the GPU yet".into()));
        };
        Ok(Self {
            tower: tower.clone(),
            encoder: GpuEncoder::upload(ctx, &tower.encoder)?,
            final_norm: GpuNorm::upload(ctx, final_layer_norm, "final_layer_norm")?,
            projection: GpuLinear::upload(ctx, &tower.projection, "text_projection")?,
            plans: PlanCache::new(),
        })
    }

    pub(crate) fn embedding_dim(&self) -> usize {
        self.projection.out_dim
    }

    pub(crate) fn max_batch(&self, ctx: &GpuContext, seq: usize) -> Result<usize> {
        super::max_batch(ctx, seq * self.encoder.widest_per_token() * 4, "text")
    }

    /// Projected, unnormalised features of each tokenised text ([texts, dim]).
    pub(crate) async fn features(&self, ctx: &GpuContext, texts: &[Vec<u32>]) -> Result<Vec<f32>> {
        let batch = texts.len();
        let seq = texts.iter().map(Vec::len).max().unwrap_or(0);
        if batch == 0 || seq == 0 || texts.iter().any(Vec::is_empty) {
            return Err(Error::Input("every text needs at least one token".into()));
        }
        if seq > self.tower.max_positions() {
            return Err(Error::Input(format!("{seq} tokens exceed the model's {} positions", self.tower.max_positions())));
        }
        let causal = self.tower.encoder.mask_kind() == MaskKind::Causal;
        if !causal && texts.iter().any(|t| t.len() != seq) {
            // Without a causal mask, padding would reach the pooled position.
            return Err(Error::Input("unmasked text towers take texts of one length".into()));
        }
        let hidden = self.encoder.hidden;
        let mut embeddings = vec![0.0f32; batch * seq * hidden];
        let mut pooled = Vec::with_capacity(batch);
        for (b, ids) in texts.iter().enumerate() {
            let rows = to_vec(&self.tower.input_embeddings(ids)?)?;
            let start = b * seq * hidden;
            embeddings[start..start + rows.len()].copy_from_slice(&rows);
            pooled.push((b * seq + self.tower.pooling_position(ids)) as u32);
        }
        let plan = self.plans.get(ctx, (batch, seq), || self.plan(ctx, batch, seq, causal))?;
        ctx.write(&plan.input, &embeddings);
        ctx.write_u32(&plan.pooled_rows, &pooled);
        ctx.run_and_read(|e| plan.program.encode(&ctx.kernels, e), &plan.output, batch * self.embedding_dim()).await
    }

    fn plan(&self, ctx: &GpuContext, batch: usize, seq: usize, causal: bool) -> Result<Plan> {
        let hidden = self.encoder.hidden;
        let acts = Activations::new(ctx, &self.encoder, batch * seq);
        let pooled_rows = ctx.activation(batch);
        let pooled = ctx.activation(batch * hidden);
        let pooled_normed = ctx.activation(batch * hidden);
        let output = ctx.activation(batch * self.embedding_dim());

        let mut rec = Recorder::new(ctx);
        self.encoder.record(&mut rec, &acts, batch, seq, causal);
        gather_rows::record(&mut rec, &acts.x0, &pooled_rows, &pooled, batch, hidden);
        self.final_norm.record(&mut rec, &pooled, &pooled_normed, batch, hidden);
        self.projection.record(&mut rec, &pooled_normed, &output, batch, None, None);

        let input = acts.x0.clone();
        let mut buffers = acts.into_buffers().to_vec();
        buffers.extend([pooled_rows.clone(), pooled, pooled_normed, output.clone()]);
        Ok(Plan { program: rec.finish(), input, pooled_rows, output, buffers })
    }
}
