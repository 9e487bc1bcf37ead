//! The dual encoders: one [`Model`] type for every family. A tower is
//! embed → `nn::transformer` → pool → head ([`tower`]); a family
//! (`clip/`, `siglip/`, `open_clip/`) is its config parser plus the map from its
//! checkpoint's tensor names onto the tower's fields; [`family`] detects it
//! from `config.json`; [`scoring`] turns cosines into zero-shot scores.

pub mod clip;
pub mod family;
pub mod open_clip;
pub mod scoring;
pub mod siglip;
pub mod tower;

use std::rc::Rc;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

pub use family::{Family, ModelConfig};
pub use scoring::Scoring;
use tower::{TextTower, VisionPool, VisionTower};

use crate::error::{Error, Result};
use crate::nn::describe_load_error;
use crate::io::byte_source::ByteSource;
use crate::io::safetensors::SafetensorsSource;
use crate::nn::weights::Weights;

/// The message for a tower that was not loaded.
pub const NO_IMAGE_ENCODER: &str =
    "this model was loaded without its image encoder (image_encoder.gguf), so it cannot embed images";
pub const NO_TEXT_ENCODER: &str = "this bundle has no text encoder loaded (text_encoder.gguf), so it cannot embed \
     text; load the text encoder to use custom labels, or classify with a knowledge base";

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

/// A dual encoder of any family: either tower may be absent (a bundle's page
/// downloads the image encoder alone and fetches the text encoder only for
/// custom labels).
#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub(crate) vision: Option<VisionTower>,
    pub(crate) text: Option<TextTower>,
    pub(crate) logit_scale: f32,
    pub(crate) scoring: Scoring,
    /// A bundle's fingerprint, recorded by `kpl pack` from the full-precision
    /// model (its projections may be quantised, and either may be absent).
    pub(crate) stored_fingerprint: Option<String>,
    /// Bytes of the weights the loaded towers hold, in the form held
    /// ([`Weights::held_bytes`]).
    pub(crate) weight_bytes: u64,
}

impl Model {
    /// Both towers from dense weights (a Hugging Face checkpoint).
    pub fn load(config: &ModelConfig, vb: VarBuilder<'static>) -> candle_core::Result<Self> {
        Self::load_towers(config, &Weights::dense(vb), Towers::BOTH)
    }

    /// The asked towers (and the logit scale, and bias) from any weight source.
    pub fn load_towers(config: &ModelConfig, w: &Weights, towers: Towers) -> candle_core::Result<Self> {
        if !towers.vision && !towers.text {
            candle_core::bail!("a model needs at least one of its towers")
        }
        let held_before = w.held_bytes();
        let (vision, text, logit_scale, logit_bias) = match config {
            ModelConfig::Clip(c) => (
                towers.vision.then(|| clip::load_vision(c, w)).transpose()?,
                towers.text.then(|| clip::load_text(c, w)).transpose()?,
                clip::load_logit_scale(w)?,
                0.0,
            ),
            ModelConfig::OpenClip(c) => (
                towers.vision.then(|| open_clip::load_vision(c, w)).transpose()?,
                towers.text.then(|| open_clip::load_text(c, w)).transpose()?,
                open_clip::load_logit_scale(w)?,
                0.0,
            ),
            ModelConfig::Siglip(c) => {
                let (scale, bias) = siglip::load_logits(w)?;
                (
                    towers.vision.then(|| siglip::load_vision(c, w)).transpose()?,
                    towers.text.then(|| siglip::load_text(c, w)).transpose()?,
                    scale,
                    bias,
                )
            }
        };
        let scoring = config.scoring(logit_bias);
        let weight_bytes = w.held_bytes() - held_before;
        Ok(Self { config: config.clone(), vision, text, logit_scale, scoring, stored_fingerprint: None, weight_bytes })
    }

    /// Loads both towers from a safetensors file (f32, f16 or bf16; computed
    /// in f32, f16/bf16 token tables kept as stored), each tensor copied from
    /// `weights` into the model once (`crate::io::safetensors`). `path` names
    /// the file in errors.
    pub fn from_safetensors<S: ByteSource + 'static>(config: &ModelConfig, weights: S, path: &str) -> Result<Self> {
        let source = SafetensorsSource::open(weights, path)?;
        Self::load_towers(config, &Weights::from_source(Rc::new(source)), Towers::BOTH)
            .map_err(|e| Error::model(path, describe_load_error(&e)))
    }

    /// Bytes of the weights the loaded towers hold, in the form held (f32,
    /// f16 tables, packed q8_0 panels, ggml blocks): the denominator of the
    /// memory figures (`bench/README.md`).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Joins the towers of two partial models of the same checkpoint (a bundle's
    /// image encoder, then its text encoder fetched later).
    pub fn merge(mut self, other: Model) -> Self {
        // Every tower of `other` is one `self` lacks (a bundle's two encoders).
        if (self.vision.is_none() || other.vision.is_none()) && (self.text.is_none() || other.text.is_none()) {
            self.weight_bytes += other.weight_bytes;
        }
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

    pub fn family(&self) -> Family {
        self.config.family()
    }

    pub fn scoring(&self) -> Scoring {
        self.scoring
    }

    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    pub fn has_text(&self) -> bool {
        self.text.is_some()
    }

    /// True when some linear layer runs on quantised blocks.
    pub fn is_quantized(&self) -> bool {
        let v = self
            .vision
            .as_ref()
            .is_some_and(|v| v.encoder.layers.first().is_some_and(|l| l.fc1.is_quantized()));
        let t = self.text.as_ref().is_some_and(|t| t.projection.is_quantized() || t.encoder.layers.first().is_some_and(|l| l.fc1.is_quantized()));
        v || t
    }

    pub fn image_size(&self) -> usize {
        self.config.image_size()
    }

    pub fn embedding_dim(&self) -> usize {
        self.config.embedding_dim()
    }

    pub fn max_text_positions(&self) -> usize {
        self.config.max_text_positions()
    }

    pub fn vocab_size(&self) -> usize {
        match &self.text {
            Some(t) => t.vocab_size(),
            None => self.config.vocab_size(),
        }
    }

    /// `exp(logit_scale)`, the factor cosine similarities are multiplied by.
    pub fn logit_scale_exp(&self) -> f32 {
        self.logit_scale.exp()
    }

    /// `logit_scale` itself (the stored log of the factor).
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// KPL's pseudo-label temperature `tau_t` for this model: its own scale,
    /// `1 / exp(logit_scale)`, so pseudo-labels are the model's zero-shot
    /// softmax. CLIP keeps the reference's 0.01 (= 1/100, OpenAI CLIP's
    /// trained scale), so results stay those of the published method.
    pub fn pseudo_label_temperature(&self) -> f64 {
        match self.family() {
            Family::Clip => kpl_core::KplParams::default().tau_t,
            _ => 1.0 / f64::from(self.logit_scale_exp()),
        }
    }

    /// Zero-shot scores of one image's cosines to the label prompts, as the family scores them.
    pub fn zero_shot_scores(&self, cosines: &[f32]) -> Vec<f32> {
        self.scoring.scores(self.logit_scale_exp(), cosines)
    }

    /// Identifies the model for knowledge bases: SHA-256 over the family, the
    /// architecture sizes, the logit scale (and bias) and the layers that map
    /// into the shared embedding space rounded to f16 (CLIP: both projections;
    /// SigLIP: the text head and the image pooling head's last layer). Two
    /// models that agree on them embed compatibly; rounding to f16 makes an f32
    /// and an f16 copy of one checkpoint share a fingerprint. A bundle returns
    /// the fingerprint `kpl pack` computed from the full-precision model.
    pub fn fingerprint(&self) -> candle_core::Result<String> {
        if let Some(stored) = &self.stored_fingerprint {
            return Ok(stored.clone());
        }
        let (Some(t), Some(v)) = (&self.text, &self.vision) else {
            candle_core::bail!("the fingerprint needs both towers")
        };
        match (&self.config, &v.pool, &v.projection, self.scoring) {
            (ModelConfig::Clip(c), _, Some(p), _) => {
                clip::fingerprint(c, self.logit_scale, &t.projection.weight()?, &p.weight()?)
            }
            (ModelConfig::Siglip(c), VisionPool::AttentionPool(head), _, Scoring::Sigmoid { bias }) => {
                siglip::fingerprint(c, self.logit_scale, bias, &t.projection.weight()?, &head.fc2.weight()?)
            }
            (ModelConfig::OpenClip(c), _, projection, _) => {
                // A head-less image tower's embedding is its final norm's output.
                let vision_last = match projection {
                    Some(p) => p.weight()?,
                    None => v.post_layernorm.weight().clone(),
                };
                open_clip::fingerprint(c, self.logit_scale, &t.projection.weight()?, &vision_last)
            }
            _ => candle_core::bail!("the towers do not match the model's family"),
        }
    }

    /// Unnormalised image embeddings for a batch [b, 3, s, s].
    pub fn image_features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let Some(v) = &self.vision else { candle_core::bail!("{NO_IMAGE_ENCODER}") };
        v.forward(pixels)
    }

    /// The unnormalised embedding of one tokenised text whose first `length`
    /// ids are real tokens (the rest padding).
    pub fn text_features(&self, ids: &[u32], length: usize) -> candle_core::Result<Tensor> {
        let Some(t) = &self.text else { candle_core::bail!("{NO_TEXT_ENCODER}") };
        t.forward_ids(ids, length)
    }
}

/// SHA-256 over `domain`, the sizes (u64 LE), the scalars and every value of
/// the tensors rounded to f16: the fingerprint's bytes for every family.
pub(crate) fn fingerprint_parts(
    domain: &[u8],
    sizes: &[usize],
    scalars: &[f32],
    tensors: &[&Tensor],
) -> candle_core::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(domain);
    for &size in sizes {
        hasher.update((size as u64).to_le_bytes());
    }
    for &s in scalars {
        hasher.update(half::f16::from_f32(s).to_bits().to_le_bytes());
    }
    for weight in tensors {
        for value in weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()? {
            hasher.update(half::f16::from_f32(value).to_bits().to_le_bytes());
        }
    }
    Ok(crate::nn::hex(&hasher.finalize()))
}
