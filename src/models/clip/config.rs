//! The checkpoint's own `config.json` (Hugging Face `CLIPConfig`), deserialised.
//!
//! Sizes are required: guessing a width or depth would only turn into a confusing
//! shape error later. Everything else takes the default `transformers` uses, and
//! unknown fields are ignored so newer or older published configs load.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::Activation;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Published OpenAI configs say 2 here (a historical mistake that `transformers`
    /// keeps for compatibility): pooling then takes the position of the largest token
    /// id, which is `<|endoftext|>` for CLIP's vocabulary.
    #[serde(default = "default_eos_token_id")]
    pub eos_token_id: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_num_channels")]
    pub num_channels: usize,
    #[serde(default = "default_activation")]
    pub hidden_act: Activation,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    /// Set by the repository's fixture script: the weights are random and any
    /// output is meaningless, which the app must say plainly.
    #[serde(default)]
    pub kpl_random_weights: bool,
    #[serde(default)]
    pub kpl_fixture_name: Option<String>,
}

fn default_vocab_size() -> usize { 49408 }
fn default_max_position_embeddings() -> usize { 77 }
fn default_activation() -> Activation { Activation::QuickGelu }
fn default_layer_norm_eps() -> f64 { 1e-5 }
fn default_eos_token_id() -> i64 { 49407 }
fn default_num_channels() -> usize { 3 }
fn default_projection_dim() -> usize { 512 }

impl ClipConfig {
    /// Parses and checks a `config.json`; `path` only names the file in errors.
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Self> {
        let config: ClipConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::model(path, format!("not a usable CLIP config.json: {e}")))?;
        config.validate().map_err(|m| Error::model(path, m))?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let v = &self.vision_config;
        let t = &self.text_config;
        for (name, width, heads, layers) in [
            ("vision_config", v.hidden_size, v.num_attention_heads, v.num_hidden_layers),
            ("text_config", t.hidden_size, t.num_attention_heads, t.num_hidden_layers),
        ] {
            if width == 0 || heads == 0 || layers == 0 {
                return Err(format!("{name}: hidden_size, num_attention_heads and num_hidden_layers must be positive"));
            }
            if width % heads != 0 {
                return Err(format!(
                    "{name}: hidden_size {width} is not divisible by num_attention_heads {heads}"
                ));
            }
        }
        if v.patch_size == 0 || v.image_size < v.patch_size {
            return Err(format!(
                "vision_config: image_size {} and patch_size {} do not make a patch grid",
                v.image_size, v.patch_size
            ));
        }
        if v.num_channels != 3 {
            return Err(format!("vision_config: num_channels {} is not supported (CLIP takes 3)", v.num_channels));
        }
        if t.max_position_embeddings < 2 || t.vocab_size == 0 || self.projection_dim == 0 {
            return Err("text_config: max_position_embeddings, vocab_size and projection_dim must be positive".into());
        }
        Ok(())
    }

    pub fn num_patches(&self) -> usize {
        let side = self.vision_config.image_size / self.vision_config.patch_size;
        side * side
    }
}
