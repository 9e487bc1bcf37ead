//! SigLIP's `config.json` (`SiglipConfig`, `SiglipTextConfig`,
//! `SiglipVisionConfig` in `transformers`), deserialised with `transformers`'
//! defaults: published SigLIP configs leave out fields that equal them (the
//! base model's text config has no `num_hidden_layers`). `text_config` and
//! `vision_config` themselves are required: a SigLIP file without them
//! describes no published checkpoint.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::Activation;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SiglipTextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_text_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_act")]
    pub hidden_act: Activation,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_pad")]
    pub pad_token_id: i64,
    #[serde(default = "d_eos")]
    pub eos_token_id: i64,
    /// The `head`'s output size; `None` means `hidden_size`, as in `transformers`.
    #[serde(default)]
    pub projection_size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SiglipVisionConfig {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_channels")]
    pub num_channels: usize,
    #[serde(default = "d_image")]
    pub image_size: usize,
    #[serde(default = "d_patch")]
    pub patch_size: usize,
    #[serde(default = "d_act")]
    pub hidden_act: Activation,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_true")]
    pub vision_use_head: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SiglipConfig {
    pub text_config: SiglipTextConfig,
    pub vision_config: SiglipVisionConfig,
    /// Set by the repository's fixture script: the weights are random.
    #[serde(default)]
    pub kpl_random_weights: bool,
    #[serde(default)]
    pub kpl_fixture_name: Option<String>,
}

fn d_vocab() -> usize { 32000 }
fn d_hidden() -> usize { 768 }
fn d_intermediate() -> usize { 3072 }
fn d_layers() -> usize { 12 }
fn d_heads() -> usize { 12 }
fn d_text_positions() -> usize { 64 }
fn d_act() -> Activation { Activation::GeluTanh }
fn d_eps() -> f64 { 1e-6 }
fn d_pad() -> i64 { 1 }
fn d_eos() -> i64 { 49407 }
fn d_channels() -> usize { 3 }
fn d_image() -> usize { 224 }
fn d_patch() -> usize { 16 }
fn d_true() -> bool { true }

impl SiglipConfig {
    /// Parses and checks a SigLIP `config.json`; `path` names the file in errors.
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Self> {
        let config: SiglipConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::model(path, format!("not a usable SigLIP config.json: {e}")))?;
        config.validate().map_err(|m| Error::model(path, m))?;
        Ok(config)
    }

    /// The text `head`'s output size, which is the embedding size.
    pub fn projection_size(&self) -> usize {
        self.text_config.projection_size.unwrap_or(self.text_config.hidden_size)
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
                return Err(format!("{name}: hidden_size {width} is not divisible by num_attention_heads {heads}"));
            }
        }
        if v.patch_size == 0 || v.image_size < v.patch_size {
            return Err(format!(
                "vision_config: image_size {} and patch_size {} do not make a patch grid",
                v.image_size, v.patch_size
            ));
        }
        if v.num_channels != 3 {
            return Err(format!("vision_config: num_channels {} is not supported (the model takes RGB)", v.num_channels));
        }
        if !v.vision_use_head {
            return Err("vision_config: vision_use_head is false, so the model has no pooled image embedding".into());
        }
        if t.max_position_embeddings == 0 || t.vocab_size == 0 {
            return Err("text_config: max_position_embeddings and vocab_size must be positive".into());
        }
        if self.projection_size() != v.hidden_size {
            return Err(format!(
                "text_config: projection_size {} differs from vision_config.hidden_size {}: the embeddings could not be compared",
                self.projection_size(),
                v.hidden_size
            ));
        }
        Ok(())
    }
}
