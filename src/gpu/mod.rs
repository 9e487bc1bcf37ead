//! The WebGPU engine: every family's towers as WGSL compute kernels through
//! wgpu, natively (Vulkan, Metal, DX12) and in the browser (WebGPU).
//!
//! The towers are uploaded from the same `nn::` / `models::tower` structures
//! the CPU runs, with their settings (pre- or post-norm, the mask, the
//! activation, a class token or none, class-token or attention pooling, a
//! projection or none, biases), so a family the CPU loads runs here without
//! code of its own.
//!
//! The weights are uploaded once from a loaded [`Model`] (whatever its
//! source: safetensors, or a bundle whose q8 layers stay 8-bit and are expanded
//! inside the matmul kernel, while q4_K layers are expanded to f32 on upload), so the CPU model stays the single loader and the reference the
//! GPU is tested against. A forward pass is recorded once per input shape
//! ([`plan`]) and replayed as one submission with one readback.

mod attention_pool;
mod context;
pub mod microbench;
mod encoder;
mod head;
mod ops;
mod plan;
#[cfg(test)]
mod test_support;
mod text;
mod vision;

use std::rc::Rc;

pub use context::{AdapterSummary, GpuContext};

use crate::models::{Model, NO_IMAGE_ENCODER, NO_TEXT_ENCODER};
use crate::error::{Error, Result};

/// Both towers (either may be absent, as in the CPU model) on one device.
pub struct GpuClip {
    ctx: Rc<GpuContext>,
    vision: Option<vision::GpuVision>,
    text: Option<text::GpuText>,
}

impl GpuClip {
    /// Opens the best adapter and uploads `model`'s weights.
    pub async fn new(model: &Model) -> Result<Self> {
        Self::with_context(GpuContext::new().await?, model).await
    }

    pub async fn with_context(ctx: Rc<GpuContext>, model: &Model) -> Result<Self> {
        let oom = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let vision = match &model.vision {
            Some(v) => Some(vision::GpuVision::upload(&ctx, v)?),
            None => None,
        };
        let text = match &model.text {
            Some(t) => Some(text::GpuText::upload(&ctx, t)?),
            None => None,
        };
        if let Some(e) = oom.pop().await {
            return Err(Error::Gpu(format!("out of GPU memory while uploading the weights ({e})")));
        }
        if let Some(fault) = ctx.take_fault() {
            return Err(Error::Gpu(fault));
        }
        Ok(Self { ctx, vision, text })
    }

    pub fn adapter(&self) -> &AdapterSummary {
        self.ctx.adapter()
    }

    /// Destroys the device, as a driver reset would: for tests of the
    /// fallback to the CPU.
    #[doc(hidden)]
    pub fn lose_device(&self) {
        self.ctx.device.destroy();
    }

    /// Bytes of weights held on the GPU (q8 layers a quarter of f32's).
    pub fn weight_bytes(&self) -> u64 {
        self.ctx.uploaded_bytes()
    }

    /// How many linear layers hold their weights in each format on the GPU
    /// ("f32", "f16" where lossless and supported, "q8" from a q8 bundle).
    pub fn weight_formats(&self) -> std::collections::BTreeMap<&'static str, usize> {
        self.ctx.formats.borrow().clone()
    }

    /// The device reads f16 weights (WebGPU's `shader-f16`).
    pub fn has_f16(&self) -> bool {
        self.ctx.kernels.has(ops::Kernel::MatmulF16)
    }

    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// Projected, unnormalised image features (as [`Model::image_features`])
    /// for `pixels` = [batch, 3, size, size], row-major; batches larger than the
    /// device's buffers allow run in several passes.
    pub async fn image_features(&self, pixels: &[f32], batch: usize) -> Result<Vec<f32>> {
        let vision = self.vision.as_ref().ok_or_else(|| Error::Input(NO_IMAGE_ENCODER.into()))?;
        let per_image = vision.pixels_per_image();
        let chunk = vision.max_batch(&self.ctx)?;
        let mut features = Vec::with_capacity(batch * vision.embedding_dim());
        for start in (0..batch).step_by(chunk) {
            let n = chunk.min(batch - start);
            let slice = pixels
                .get(start * per_image..(start + n) * per_image)
                .ok_or_else(|| Error::Input(format!("{} pixel values for {batch} images", pixels.len())))?;
            features.extend(vision.features(&self.ctx, slice, n).await?);
        }
        Ok(features)
    }

    /// Projected, unnormalised text features, one row per tokenised text, as
    /// [`Model::text_features`] computes them: `lengths[i]` of `texts[i]`'s ids
    /// are real tokens (the tokenizer's `encode_with_length`; read only by a
    /// key-padding mask or mean pooling; open_clip's BERT towers mask their pad
    /// ids instead, as the CPU does: `TextTower::attended`).
    pub async fn text_features(&self, texts: &[Vec<u32>], lengths: &[usize]) -> Result<Vec<f32>> {
        let text = self.text.as_ref().ok_or_else(|| Error::Input(NO_TEXT_ENCODER.into()))?;
        if lengths.len() != texts.len() {
            return Err(Error::Input(format!("{} lengths for {} texts", lengths.len(), texts.len())));
        }
        let longest = texts.iter().map(Vec::len).max().unwrap_or(1);
        let chunk = text.max_batch(&self.ctx, longest)?;
        let mut features = Vec::with_capacity(texts.len() * text.embedding_dim());
        for (group, group_lengths) in texts.chunks(chunk).zip(lengths.chunks(chunk)) {
            features.extend(text.features(&self.ctx, group, group_lengths).await?);
        }
        Ok(features)
    }
}

/// Divides each of `rows` consecutive rows of `values` by its L2 norm.
pub fn l2_normalize_rows(values: &mut [f32], rows: usize) {
    if rows == 0 {
        return;
    }
    let dim = values.len() / rows;
    for row in values.chunks_mut(dim.max(1)) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}
