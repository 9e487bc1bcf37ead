//! The vision tower on the GPU: patches → tokens → encoder → class token →
//! post-layernorm → projection, for a batch of preprocessed images.

use super::context::GpuContext;
use super::encoder::{to_vec, Activations, GpuEncoder, GpuLinear, GpuNorm};
use super::ops::{gather_rows, patches, tokens, Recorder};
use super::plan::{Plan, PlanCache};
use crate::models::tower::{VisionPool, VisionTower};
use crate::nn::linear::Linear;
use crate::error::{Error, Result};

pub(crate) struct GpuVision {
    patch_embedding: GpuLinear,
    class_embedding: wgpu::Buffer,
    positions: wgpu::Buffer,
    pre_norm: GpuNorm,
    encoder: GpuEncoder,
    post_norm: GpuNorm,
    projection: GpuLinear,
    channels: usize,
    image: usize,
    patch: usize,
    seq: usize,
    plans: PlanCache,
}

impl GpuVision {
    pub(crate) fn upload(ctx: &GpuContext, tower: &VisionTower) -> Result<Self> {
        if !tower.is_clip_shaped() {
            return Err(Error::Gpu("this vision tower (not CLIP's layout) is not on the GPU yet".into()));
        }
        let (Some(class_embedding), Some(pre_layernorm), VisionPool::ClassToken, Some(projection), None) = (
            &tower.class_embedding,
            &tower.pre_layernorm,
            &tower.pool,
            &tower.projection,
            tower.patch_embedding.bias(),
        ) else {
            return Err(Error::Gpu(
                "this vision tower (no class token, attention-pooling head: SigLIP) is not on the GPU yet".into(),
            ));
        };
        let conv = tower.patch_embedding.weight();
        let (hidden, channels, patch, _) = conv.dims4()?;
        // The convolution is a matmul over flattened patches (no bias in CLIP).
        let patch_linear = Linear::dense(conv.reshape((hidden, channels * patch * patch))?, None);
        let seq = tower.position_embedding.dim(0)?;
        GpuEncoder::check_sequence(seq)?;
        Ok(Self {
            patch_embedding: GpuLinear::upload(ctx, &patch_linear, "patch_embedding")?,
            class_embedding: ctx.upload("class_embedding", &to_vec(class_embedding)?),
            positions: ctx.upload("position_embedding", &to_vec(&tower.position_embedding)?),
            pre_norm: GpuNorm::upload(ctx, pre_layernorm, "pre_layrnorm")?,
            encoder: GpuEncoder::upload(ctx, &tower.encoder)?,
            post_norm: GpuNorm::upload(ctx, &tower.post_layernorm, "post_layernorm")?,
            projection: GpuLinear::upload(ctx, projection, "visual_projection")?,
            channels,
            image: tower.image_size,
            patch,
            seq,
            plans: PlanCache::new(),
        })
    }

    pub(crate) fn pixels_per_image(&self) -> usize {
        self.channels * self.image * self.image
    }

    pub(crate) fn embedding_dim(&self) -> usize {
        self.projection.out_dim
    }

    /// The most images one pass holds within the device's buffer limits.
    pub(crate) fn max_batch(&self, ctx: &GpuContext) -> Result<usize> {
        let per_image = (self.seq * self.encoder.widest_per_token()).max(self.pixels_per_image()) * 4;
        super::max_batch(ctx, per_image, "image")
    }

    /// Projected, unnormalised features of `batch` images ([batch, dim]).
    pub(crate) async fn features(&self, ctx: &GpuContext, pixels: &[f32], batch: usize) -> Result<Vec<f32>> {
        if pixels.len() != batch * self.pixels_per_image() {
            return Err(Error::Input(format!(
                "{} pixel values for {batch} images of {}×{}×{}",
                pixels.len(),
                self.channels,
                self.image,
                self.image
            )));
        }
        let plan = self.plans.get(ctx, (batch, self.seq), || self.plan(ctx, batch))?;
        ctx.write(&plan.input, pixels);
        ctx.run_and_read(|e| plan.program.encode(&ctx.kernels, e), &plan.output, batch * self.embedding_dim()).await
    }

    fn plan(&self, ctx: &GpuContext, batch: usize) -> Result<Plan> {
        let hidden = self.encoder.hidden;
        let cells = (self.image / self.patch).pow(2);
        let rows = batch * self.seq;
        let acts = Activations::new(ctx, &self.encoder, rows);
        let input = ctx.activation(batch * self.pixels_per_image());
        let patch_rows = ctx.activation(batch * self.pixels_per_image());
        let patch_embeddings = ctx.activation(batch * cells * hidden);
        let class_rows: Vec<u32> = (0..batch).map(|b| (b * self.seq) as u32).collect();
        let pooled_rows = ctx.upload_u32("class rows", &class_rows);
        let pooled = ctx.activation(batch * hidden);
        let pooled_normed = ctx.activation(batch * hidden);
        let output = ctx.activation(batch * self.embedding_dim());

        let mut rec = Recorder::new(ctx);
        patches::record(&mut rec, &input, &patch_rows, batch, self.channels, self.image, self.patch);
        self.patch_embedding.record(&mut rec, &patch_rows, &patch_embeddings, batch * cells, None, None);
        tokens::record(&mut rec, &patch_embeddings, &self.class_embedding, &self.positions, &acts.x1, batch, self.seq, hidden);
        self.pre_norm.record(&mut rec, &acts.x1, &acts.x0, rows, hidden);
        self.encoder.record(&mut rec, &acts, batch, self.seq, false);
        gather_rows::record(&mut rec, &acts.x0, &pooled_rows, &pooled, batch, hidden);
        self.post_norm.record(&mut rec, &pooled, &pooled_normed, batch, hidden);
        self.projection.record(&mut rec, &pooled_normed, &output, batch, None, None);

        let mut buffers = acts.into_buffers().to_vec();
        buffers.extend([input.clone(), patch_rows, patch_embeddings, pooled, pooled_normed, output.clone()]);
        Ok(Plan { program: rec.finish(), input, pooled_rows, output, buffers })
    }
}
