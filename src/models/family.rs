//! Which model family a checkpoint is, read from its `config.json`'s
//! `model_type` (never from the folder's name), and the family-neutral view of
//! its configuration that the rest of the crate uses.

use serde::{Deserialize, Serialize};

use super::clip::ClipConfig;
use super::open_clip::{config as open_clip_config, OpenClipConfig};
use super::scoring::Scoring;
use super::siglip::SiglipConfig;
use crate::error::{Error, Result};

/// A model family: its config parser and tensor names live in `models/<family>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `CLIPModel` (OpenAI CLIP and its Hugging Face ports).
    Clip,
    /// `SiglipModel` (Google's SigLIP, MedSigLIP).
    Siglip,
    /// An open_clip checkpoint (`open_clip_config.json`: BiomedCLIP, QuiltNet…).
    #[serde(rename = "open_clip")]
    OpenClip,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Clip => "clip",
            Family::Siglip => "siglip",
            Family::OpenClip => "open_clip",
        }
    }

    /// The name people use for it in messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Family::Clip => "CLIP",
            Family::Siglip => "SigLIP",
            Family::OpenClip => "open_clip",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display_name())
    }
}

/// A checkpoint's `config.json`, by family.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Clip(ClipConfig),
    Siglip(SiglipConfig),
    /// Resolved against the checkpoint's tensors ([`OpenClipConfig::resolve`]).
    OpenClip(OpenClipConfig),
}

#[derive(Deserialize)]
struct ModelType {
    #[serde(default)]
    model_type: Option<String>,
}

impl ModelConfig {
    /// Parses a `config.json` of any supported family, chosen by its top-level
    /// `model_type` (`clip`, `siglip`); a file without one is read as CLIP,
    /// as the first CLIP exports had none. `path` names the file in errors.
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Self> {
        if open_clip_config::is_resolved(bytes) {
            return OpenClipConfig::from_resolved_json(bytes).map(Self::OpenClip).map_err(|m| Error::model(path, m));
        }
        if open_clip_config::is_open_clip_config(bytes) {
            return Err(Error::model(
                path,
                "an open_clip_config.json is sized from its checkpoint's tensors: load the whole model folder",
            ));
        }
        // A file that is not even JSON gets CLIP's parser's message, as before SigLIP.
        let model_type = serde_json::from_slice::<ModelType>(bytes).ok().and_then(|k| k.model_type);
        match model_type.as_deref() {
            None | Some("clip") => Ok(Self::Clip(ClipConfig::from_json(bytes, path)?)),
            Some("siglip") => Ok(Self::Siglip(SiglipConfig::from_json(bytes, path)?)),
            Some(other) => Err(Error::model(
                path,
                format!("model_type {other:?} is not supported (supported: \"clip\" for CLIPModel, \"siglip\" for SiglipModel)"),
            )),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Self::Clip(_) => Family::Clip,
            Self::Siglip(_) => Family::Siglip,
            Self::OpenClip(_) => Family::OpenClip,
        }
    }

    /// The side of the square image the vision tower takes.
    pub fn image_size(&self) -> usize {
        match self {
            Self::Clip(c) => c.vision_config.image_size,
            Self::Siglip(c) => c.vision_config.image_size,
            Self::OpenClip(c) => c.vision.image_size,
        }
    }

    /// The length of the shared embedding space.
    pub fn embedding_dim(&self) -> usize {
        match self {
            Self::Clip(c) => c.projection_dim,
            Self::Siglip(c) => c.projection_size(),
            Self::OpenClip(c) => c.embed_dim,
        }
    }

    /// Text positions (CLIP: 77; SigLIP: 64, to which every text is padded;
    /// open_clip: `context_length`, BiomedCLIP's 256).
    pub fn max_text_positions(&self) -> usize {
        match self {
            Self::Clip(c) => c.text_config.max_position_embeddings,
            Self::Siglip(c) => c.text_config.max_position_embeddings,
            Self::OpenClip(c) => c.text.context_length,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Clip(c) => c.text_config.vocab_size,
            Self::Siglip(c) => c.text_config.vocab_size,
            Self::OpenClip(c) => c.text.vocab_size,
        }
    }

    /// `kpl_random_weights`: the fixture script's mark on random models.
    pub fn is_random(&self) -> bool {
        match self {
            Self::Clip(c) => c.kpl_random_weights,
            Self::Siglip(c) => c.kpl_random_weights,
            Self::OpenClip(c) => c.kpl_random_weights,
        }
    }

    pub fn fixture_name(&self) -> Option<&str> {
        match self {
            Self::Clip(c) => c.kpl_fixture_name.as_deref(),
            Self::Siglip(c) => c.kpl_fixture_name.as_deref(),
            Self::OpenClip(c) => c.kpl_fixture_name.as_deref(),
        }
    }

    /// How zero-shot scores are computed, given the checkpoint's `logit_bias`
    /// (SigLIP's; CLIP has none).
    pub fn scoring(&self, logit_bias: f32) -> Scoring {
        match self {
            Self::Clip(_) | Self::OpenClip(_) => Scoring::Softmax,
            Self::Siglip(_) => Scoring::Sigmoid { bias: logit_bias },
        }
    }
}
