//! The vision tower on the GPU, uploaded from [`VisionTower`] with its
//! settings: patches → tokens (a class token where the family has one) →
//! optional pre-layernorm → encoder → pooling (the class token, the mean of
//! the patch tokens, or every token through the attention-pooling head) →
//! head (`GpuHead`), for a batch of preprocessed images.

use super::attention_pool::GpuAttentionPool;
use super::context::GpuContext;
use super::encoder::{to_vec, Activations, GpuEncoder, GpuLinear, GpuNorm};
use super::head::GpuHead;
use super::ops::attention::KeyMask;
use super::ops::{gather_rows, masked_mean, patches, tokens};
use super::plan::{Plan, PlanCache};
use crate::models::tower::{VisionPool, VisionTower};
use crate::nn::linear::Linear;
use crate::error::{Error, Result};

enum GpuVisionPool {
    /// The class token (row 0 of each image), after the post-layernorm.
    ClassToken,
    /// Every token through the post-layernorm, then the MAP head.
    AttentionPool(Box<GpuAttentionPool>),
    /// Every token through the post-layernorm, then the mean of the patch
    /// tokens (timm's `avg`), the class token left out.
    MeanPatches,
}

pub(crate) struct GpuVision {
    patch_embedding: GpuLinear,
    class_embedding: Option<wgpu::Buffer>,
    positions: wgpu::Buffer,
    pre_norm: Option<GpuNorm>,
    encoder: GpuEncoder,
    post_norm: GpuNorm,
    pool: GpuVisionPool,
    head: GpuHead,
    channels: usize,
    image: usize,
    patch: usize,
    seq: usize,
    plans: PlanCache,
}

impl GpuVision {
    pub(crate) fn upload(ctx: &GpuContext, tower: &VisionTower) -> Result<Self> {
        let conv = tower.patch_embedding.weight()?;
        let (hidden, channels, patch, _) = conv.dims4()?;
        // The convolution (stride = kernel) is a matmul over flattened patches.
        // candle's Linear: only uploaded, never multiplied on the CPU (no packing).
        let patch_linear = Linear::Dense(candle_nn::Linear::new(
            conv.reshape((hidden, channels * patch * patch))?,
            tower.patch_embedding.bias().cloned(),
        ));
        let seq = tower.position_embedding.dim(0)?;
        let cells = (tower.image_size / patch).pow(2);
        if seq != cells + usize::from(tower.class_embedding.is_some()) {
            return Err(Error::Gpu(format!("{seq} position embeddings for {cells} patches")));
        }
        GpuEncoder::check_sequence(seq)?;
        let pool = match &tower.pool {
            VisionPool::ClassToken if tower.class_embedding.is_some() => GpuVisionPool::ClassToken,
            VisionPool::ClassToken => return Err(Error::Gpu("class-token pooling without a class token".into())),
            VisionPool::AttentionPool(head) => GpuVisionPool::AttentionPool(Box::new(GpuAttentionPool::upload(ctx, head)?)),
            VisionPool::MeanPatches => GpuVisionPool::MeanPatches,
        };
        Ok(Self {
            patch_embedding: GpuLinear::upload(ctx, &patch_linear, "patch_embedding")?,
            class_embedding: tower.class_embedding.as_ref().map(|c| Ok::<_, Error>(ctx.upload("class_embedding", &to_vec(c)?))).transpose()?,
            positions: ctx.upload("position_embedding", &to_vec(&tower.position_embedding)?),
            pre_norm: tower.pre_layernorm.as_ref().map(|n| GpuNorm::upload(ctx, n, "pre_layrnorm")).transpose()?,
            encoder: GpuEncoder::upload(ctx, &tower.encoder)?,
            post_norm: GpuNorm::upload(ctx, &tower.post_layernorm, "post_layernorm")?,
            pool,
            head: GpuHead::upload(ctx, tower.head_hidden.as_ref(), tower.projection.as_ref(), hidden)?,
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
        self.head.out_dim()
    }

    /// The most images one pass holds within the device's buffer limits.
    pub(crate) fn max_batch(&self, ctx: &GpuContext) -> Result<usize> {
        let per_image = (self.seq * self.encoder.widest_per_token()).max(self.pixels_per_image()) * 4;
        ctx.max_batch(per_image, "image")
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
        let pooled = ctx.activation(batch * hidden);
        let mut buffers = vec![input.clone(), patch_rows.clone(), patch_embeddings.clone(), pooled.clone()];

        let mut rec = ctx.recorder();
        patches::record(&mut rec, &input, &patch_rows, batch, self.channels, self.image, self.patch);
        self.patch_embedding.record(&mut rec, &patch_rows, &patch_embeddings, batch * cells, None, None);
        let embedded = if self.pre_norm.is_some() { &acts.x1 } else { &acts.x0 };
        tokens::record(&mut rec, &patch_embeddings, self.class_embedding.as_ref(), &self.positions, embedded, batch, self.seq, hidden);
        if let Some(norm) = &self.pre_norm {
            norm.record(&mut rec, &acts.x1, &acts.x0, rows, hidden);
        }
        self.encoder.record(&mut rec, &acts, batch, self.seq, KeyMask::All);
        match &self.pool {
            GpuVisionPool::ClassToken => {
                let class_rows: Vec<u32> = (0..batch).map(|b| (b * self.seq) as u32).collect();
                let class_rows = ctx.upload_u32("class rows", &class_rows);
                let class_tokens = ctx.activation(batch * hidden);
                gather_rows::record(&mut rec, &acts.x0, &class_rows, &class_tokens, batch, hidden);
                self.post_norm.record(&mut rec, &class_tokens, &pooled, batch, hidden);
                buffers.push(class_tokens);
            }
            GpuVisionPool::AttentionPool(head) => {
                self.post_norm.record(&mut rec, &acts.x0, &acts.normed, rows, hidden);
                let bufs = head.buffers(ctx, batch, self.seq);
                head.record(&mut rec, &bufs, &acts.normed, &pooled, batch, self.seq);
                buffers.extend(bufs.into_buffers());
            }
            GpuVisionPool::MeanPatches => {
                self.post_norm.record(&mut rec, &acts.x0, &acts.normed, rows, hidden);
                let class_tokens = usize::from(self.class_embedding.is_some());
                let patch_rows: Vec<u32> = (0..rows).map(|r| u32::from(r % self.seq >= class_tokens)).collect();
                let patch_rows = ctx.upload_u32("patch rows", &patch_rows);
                masked_mean::record(&mut rec, &acts.normed, &patch_rows, &pooled, batch, self.seq, hidden);
            }
        }
        let output = self.head.record(ctx, &mut rec, &pooled, batch, &mut buffers);
        buffers.extend(acts.into_buffers());
        Ok(Plan { program: rec.finish(), input, output, pooled_rows: None, attended: None, buffers })
    }
}
