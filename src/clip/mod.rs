//! CLIP in candle: a plain struct built from a `VarBuilder`, one file per part.

pub mod config;
pub mod encoder;
pub mod linear;
pub mod text;
pub mod vision;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

pub use config::ClipConfig;
use linear::Linear;
use text::TextTransformer;
use vision::VisionTransformer;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ClipModel {
    pub config: ClipConfig,
    vision: VisionTransformer,
    text: TextTransformer,
    visual_projection: Linear,
    text_projection: Linear,
    logit_scale: f32,
}

impl ClipModel {
    pub fn load(config: &ClipConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let projection = config.projection_dim;
        let logit_scale = vb.get((), "logit_scale")?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        Ok(Self {
            config: config.clone(),
            vision: VisionTransformer::load(&config.vision_config, vb.pp("vision_model"))?,
            text: TextTransformer::load(&config.text_config, vb.pp("text_model"))?,
            visual_projection: Linear::load_no_bias(
                config.vision_config.hidden_size,
                projection,
                vb.pp("visual_projection"),
            )?,
            text_projection: Linear::load_no_bias(
                config.text_config.hidden_size,
                projection,
                vb.pp("text_projection"),
            )?,
            logit_scale,
        })
    }

    /// Loads weights from the bytes of a safetensors file (f32, f16 or bf16;
    /// everything is computed in f32). `path` names the file in errors.
    pub fn from_safetensors(config: &ClipConfig, weights: Vec<u8>, path: &str) -> Result<Self> {
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| Error::model(path, format!("not a readable safetensors file ({e})")))?;
        Self::load(config, vb).map_err(|e| Error::model(path, describe_load_error(&e)))
    }

    pub fn image_size(&self) -> usize {
        self.vision.image_size()
    }

    pub fn max_text_positions(&self) -> usize {
        self.text.max_positions()
    }

    pub fn vocab_size(&self) -> usize {
        self.text.vocab_size()
    }

    /// `exp(logit_scale)`, the factor CLIP multiplies cosine similarities by.
    pub fn logit_scale_exp(&self) -> f32 {
        self.logit_scale.exp()
    }

    /// Identifies the model for knowledge bases: SHA-256 over the architecture
    /// sizes, the logit scale and both projection matrices rounded to f16. The
    /// projections are what maps into the shared embedding space, so two models
    /// that agree on them embed compatibly; rounding to f16 makes an f32 and an
    /// f16 copy of one checkpoint share a fingerprint.
    pub fn fingerprint(&self) -> candle_core::Result<String> {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"kpl-model-fingerprint-v1");
        let c = &self.config;
        for size in [
            c.projection_dim,
            c.text_config.hidden_size,
            c.text_config.num_hidden_layers,
            c.vision_config.hidden_size,
            c.vision_config.num_hidden_layers,
            c.vision_config.image_size,
            c.vision_config.patch_size,
        ] {
            hasher.update((size as u64).to_le_bytes());
        }
        hasher.update(half::f16::from_f32(self.logit_scale).to_bits().to_le_bytes());
        for weight in [self.text_projection.weight(), self.visual_projection.weight()] {
            for value in weight.flatten_all()?.to_vec1::<f32>()? {
                hasher.update(half::f16::from_f32(value).to_bits().to_le_bytes());
            }
        }
        Ok(hex(&hasher.finalize()))
    }

    /// Projected, unnormalised image features for a batch [b, 3, s, s].
    pub fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.visual_projection.forward(&self.vision.forward(pixels)?)
    }

    /// Projected, unnormalised text features for one tokenised text.
    pub fn text_features(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        self.text_projection.forward(&self.text.forward_ids(ids)?.unsqueeze(0)?)?.squeeze(0)
    }
}

fn describe_load_error(e: &candle_core::Error) -> String {
    let text = e.to_string();
    let first_line = text.lines().next().unwrap_or(&text).to_string();
    if first_line.contains("cannot find tensor") || first_line.contains("not found") {
        format!("missing tensor: {first_line}")
    } else if first_line.contains("shape mismatch") {
        format!("wrongly shaped tensor: {first_line}")
    } else {
        first_line
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
