//! The CPU engine: the encoders as candle runs them, on preprocessed input.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::models::Model;
use crate::nn::l2_normalize;
use crate::preprocess::PixelTensor;

/// Projected image embeddings of `batch` (each `[3, size, size]`, the model's
/// image size), one row per image, L2-normalised when `normalize`.
///
/// Errors: a pixel tensor of another size (candle's shape error), or the
/// model's own (no image tower).
pub fn image_rows(model: &Model, batch: &[PixelTensor], normalize: bool) -> Result<Vec<Vec<f32>>> {
    let size = model.image_size();
    let mut flat = Vec::with_capacity(batch.len() * 3 * size * size);
    for p in batch {
        flat.extend_from_slice(&p.data);
    }
    let pixels = Tensor::from_vec(flat, (batch.len(), 3, size, size), &Device::Cpu)?;
    let mut features = model.image_features(&pixels)?;
    if normalize {
        features = l2_normalize(&features)?;
    }
    Ok(features.to_vec2::<f32>()?)
}
