//! CLIP in candle: a plain struct built from a weight source (`weights::Weights`:
//! a dense checkpoint or a quantised bundle), one file per part.

pub mod config;
pub mod encoder;
pub mod linear;
pub mod random;
pub mod text;
pub mod vision;
pub mod weights;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

pub use config::ClipConfig;
use linear::Linear;
use text::TextTransformer;
use vision::VisionTransformer;
use weights::Weights;

use crate::error::{Error, Result};

/// The message for a tower that was not loaded.
pub const NO_IMAGE_ENCODER: &str =
    "this model was loaded without its image encoder (image_encoder.gguf), so it cannot embed images";
pub const NO_TEXT_ENCODER: &str = "this bundle has no text encoder loaded (text_encoder.gguf), so it cannot embed \
     text; load the text encoder to use custom labels, or classify with a knowledge base";

#[derive(Debug, Clone)]
pub(crate) struct VisionTower {
    pub(crate) transformer: VisionTransformer,
    pub(crate) projection: Linear,
}

#[derive(Debug, Clone)]
pub(crate) struct TextTower {
    pub(crate) transformer: TextTransformer,
    pub(crate) projection: Linear,
}

/// Which towers to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Towers {
    pub vision: bool,
    pub text: bool,
}

impl Towers {
    pub const BOTH: Towers = Towers { vision: true, text: true };
    pub const VISION: Towers = Towers { vision: true, text: false };
    pub const TEXT: Towers = Towers { vision: false, text: true };
}

/// CLIP: either tower may be absent (a bundle's page downloads the image encoder
/// alone and fetches the text encoder only for custom labels).
#[derive(Debug, Clone)]
pub struct ClipModel {
    pub config: ClipConfig,
    pub(crate) vision: Option<VisionTower>,
    pub(crate) text: Option<TextTower>,
    pub(crate) logit_scale: f32,
    /// A bundle's fingerprint, recorded by `kpl pack` from the full-precision
    /// model (its projections may be quantised, and either may be absent).
    pub(crate) stored_fingerprint: Option<String>,
}

impl ClipModel {
    /// Both towers from dense weights (a Hugging Face checkpoint).
    pub fn load(config: &ClipConfig, vb: VarBuilder<'static>) -> candle_core::Result<Self> {
        Self::load_towers(config, &Weights::dense(vb), Towers::BOTH)
    }

    /// The asked towers (and `logit_scale`) from any weight source.
    pub fn load_towers(config: &ClipConfig, w: &Weights, towers: Towers) -> candle_core::Result<Self> {
        if !towers.vision && !towers.text {
            candle_core::bail!("a model needs at least one of its towers")
        }
        let projection = config.projection_dim;
        let logit_scale = w.get((), "logit_scale")?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let vision = if towers.vision {
            Some(VisionTower {
                transformer: VisionTransformer::load(&config.vision_config, w.pp("vision_model"))?,
                projection: w.pp("visual_projection").linear_no_bias(config.vision_config.hidden_size, projection)?,
            })
        } else {
            None
        };
        let text = if towers.text {
            Some(TextTower {
                transformer: TextTransformer::load(&config.text_config, w.pp("text_model"))?,
                projection: w.pp("text_projection").linear_no_bias(config.text_config.hidden_size, projection)?,
            })
        } else {
            None
        };
        Ok(Self { config: config.clone(), vision, text, logit_scale, stored_fingerprint: None })
    }

    /// Loads weights from the bytes of a safetensors file (f32, f16 or bf16;
    /// everything is computed in f32). `path` names the file in errors.
    pub fn from_safetensors(config: &ClipConfig, weights: Vec<u8>, path: &str) -> Result<Self> {
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| Error::model(path, format!("not a readable safetensors file ({e})")))?;
        Self::load(config, vb).map_err(|e| Error::model(path, describe_load_error(&e)))
    }

    /// Joins the towers of two partial models of the same checkpoint (a bundle's
    /// image encoder, then its text encoder fetched later).
    pub fn merge(mut self, other: ClipModel) -> Self {
        if self.vision.is_none() {
            self.vision = other.vision;
        }
        if self.text.is_none() {
            self.text = other.text;
        }
        if self.stored_fingerprint.is_none() {
            self.stored_fingerprint = other.stored_fingerprint;
        }
        self
    }

    /// Records the fingerprint a bundle carries.
    pub fn with_fingerprint(mut self, fingerprint: String) -> Self {
        self.stored_fingerprint = Some(fingerprint);
        self
    }

    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// True when some linear layer runs on quantised blocks.
    pub fn is_quantized(&self) -> bool {
        let v = self.vision.as_ref().is_some_and(|v| v.projection.is_quantized());
        let t = self.text.as_ref().is_some_and(|t| t.projection.is_quantized());
        v || t
    }

    pub fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    pub fn max_text_positions(&self) -> usize {
        self.config.text_config.max_position_embeddings
    }

    pub fn vocab_size(&self) -> usize {
        match &self.text {
            Some(t) => t.transformer.vocab_size(),
            None => self.config.text_config.vocab_size,
        }
    }

    /// `exp(logit_scale)`, the factor CLIP multiplies cosine similarities by.
    pub fn logit_scale_exp(&self) -> f32 {
        self.logit_scale.exp()
    }

    /// `logit_scale` itself (the stored log of the factor).
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Identifies the model for knowledge bases: SHA-256 over the architecture
    /// sizes, the logit scale and both projection matrices rounded to f16. The
    /// projections are what maps into the shared embedding space, so two models
    /// that agree on them embed compatibly; rounding to f16 makes an f32 and an
    /// f16 copy of one checkpoint share a fingerprint. A bundle returns the
    /// fingerprint `kpl pack` computed from the full-precision model.
    pub fn fingerprint(&self) -> candle_core::Result<String> {
        if let Some(stored) = &self.stored_fingerprint {
            return Ok(stored.clone());
        }
        match (&self.text, &self.vision) {
            (Some(t), Some(v)) => fingerprint(
                &self.config,
                self.logit_scale,
                &t.projection.weight()?,
                &v.projection.weight()?,
            ),
            _ => candle_core::bail!("the fingerprint needs both towers' projections"),
        }
    }

    /// Projected, unnormalised image features for a batch [b, 3, s, s].
    pub fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let Some(v) = &self.vision else { candle_core::bail!("{NO_IMAGE_ENCODER}") };
        v.projection.forward(&v.transformer.forward(pixels)?)
    }

    /// Projected, unnormalised text features for one tokenised text.
    pub fn text_features(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let Some(t) = &self.text else { candle_core::bail!("{NO_TEXT_ENCODER}") };
        t.projection.forward(&t.transformer.forward_ids(ids)?.unsqueeze(0)?)?.squeeze(0)
    }
}

/// The model fingerprint (see [`ClipModel::fingerprint`]) from its parts.
pub fn fingerprint(
    config: &ClipConfig,
    logit_scale: f32,
    text_projection: &Tensor,
    visual_projection: &Tensor,
) -> candle_core::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"kpl-model-fingerprint-v1");
    let c = config;
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
    hasher.update(half::f16::from_f32(logit_scale).to_bits().to_le_bytes());
    for weight in [text_projection, visual_projection] {
        for value in weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()? {
            hasher.update(half::f16::from_f32(value).to_bits().to_le_bytes());
        }
    }
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn describe_load_error(e: &candle_core::Error) -> String {
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
