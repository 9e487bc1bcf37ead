//! Random SigLIP checkpoints in Hugging Face layout (`SiglipModel`):
//! `config.json`, `model.safetensors` (f32) and `preprocessor_config.json`
//! (`SiglipImageProcessor`'s defaults at the model's size). No tokenizer: the
//! folder embeds images only (the vocabulary of a published SigLIP,
//! 32000 pieces, is not in the repository). `logit_scale` and `logit_bias`
//! are SigLIP's initial ln(10) and -10.
//!
//! ```no_run
//! use kpl::testing::siglip::{write_random_siglip, RandomSiglipConfig};
//! write_random_siglip("bench/out/medsiglip-448-random".as_ref(), &RandomSiglipConfig::medsiglip_448(), 0).unwrap();
//! ```

use std::io;
use std::path::Path;

use serde_json::{json, Value};

use super::safetensors_len;
use super::tensors::{stamp_random, Init, RandomFolder, Specs, TensorSpec};
use crate::models::siglip::names;
use crate::nn::attention_pool::names as pool;
use crate::nn::transformer::HF_CLIP_LAYER_NAMES;

/// Sizes of a random SigLIP model (the fields of `config.json` that shape
/// weights) and how to fill it.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomSiglipConfig {
    pub vision_hidden: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub vision_intermediate: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub text_hidden: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_intermediate: usize,
    pub vocab_size: usize,
    pub max_positions: usize,
    /// The text head's output size, which must equal `vision_hidden`.
    pub projection_size: usize,
    /// `hidden_act` of both towers (SigLIP's is "gelu_pytorch_tanh").
    pub hidden_act: String,
    /// Standard deviation of every weight except the layer norms.
    pub std: f32,
}

impl RandomSiglipConfig {
    /// google/medsiglip-448 (tests/fixtures/siglip-configs/google--medsiglip-448):
    /// a 448 px, patch-14, 1152-wide, 27-layer image tower with a MAP head, and
    /// its 27-layer text tower.
    pub fn medsiglip_448() -> Self {
        Self {
            vision_hidden: 1152,
            vision_layers: 27,
            vision_heads: 16,
            vision_intermediate: 4304,
            image_size: 448,
            patch_size: 14,
            text_hidden: 1152,
            text_layers: 27,
            text_heads: 16,
            text_intermediate: 4304,
            vocab_size: 32000,
            max_positions: 64,
            projection_size: 1152,
            hidden_act: "gelu_pytorch_tanh".into(),
            std: 0.02,
        }
    }

    /// The Hugging Face `config.json` (SiglipConfig), with `kpl_random_weights`,
    /// the seed and the std recorded so that a folder can be recognised and reused.
    pub fn config_json(&self, seed: u64) -> Value {
        let v = json!({
            "hidden_act": self.hidden_act,
            "hidden_size": self.vision_hidden,
            "image_size": self.image_size,
            "intermediate_size": self.vision_intermediate,
            "layer_norm_eps": 1e-6,
            "model_type": "siglip_vision_model",
            "num_attention_heads": self.vision_heads,
            "num_channels": 3,
            "num_hidden_layers": self.vision_layers,
            "patch_size": self.patch_size,
            "vision_use_head": true,
        });
        let t = json!({
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "hidden_act": self.hidden_act,
            "hidden_size": self.text_hidden,
            "intermediate_size": self.text_intermediate,
            "layer_norm_eps": 1e-6,
            "max_position_embeddings": self.max_positions,
            "model_type": "siglip_text_model",
            "num_attention_heads": self.text_heads,
            "num_hidden_layers": self.text_layers,
            "pad_token_id": 1,
            "projection_size": self.projection_size,
            "vocab_size": self.vocab_size,
        });
        let config = json!({
            "architectures": ["SiglipModel"],
            "model_type": "siglip",
            "dtype": "float32",
            "initializer_factor": 1.0,
            "text_config": t,
            "vision_config": v,
        });
        stamp_random(config, seed, self.std)
    }

    /// `preprocessor_config.json`: `SiglipImageProcessor`'s defaults (bicubic
    /// squash to the model's size, mean and std 0.5) at this image size.
    pub fn preprocessor_json(&self) -> Value {
        let s = self.image_size;
        json!({
            "do_normalize": true,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "SiglipImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "resample": 3,
            "rescale_factor": 1.0 / 255.0,
            "size": {"height": s, "width": s},
        })
    }

    /// Every tensor `Model::load` reads, named by SigLIP's table ([`names`],
    /// the MAP head's [`pool`] names, [`HF_CLIP_LAYER_NAMES`] for the blocks),
    /// sorted by name (the order they are stored in).
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let mut s = Specs::default();
        let grid = self.image_size / self.patch_size;
        let (vh, th) = (self.vision_hidden, self.text_hidden);
        s.add(names::LOGIT_SCALE, vec![1], Init::Constant(LOGIT_SCALE));
        s.add(names::LOGIT_BIAS, vec![1], Init::Constant(LOGIT_BIAS));
        let (vision, text, encoder) = (names::VISION, names::TEXT, names::ENCODER);

        let e = format!("{vision}.{}", names::EMBEDDINGS);
        s.add(format!("{e}.{}.weight", names::PATCH_EMBEDDING), vec![vh, 3, self.patch_size, self.patch_size], Init::Normal);
        s.add(format!("{e}.{}.bias", names::PATCH_EMBEDDING), vec![vh], Init::Normal);
        s.add(format!("{e}.{}", names::POSITION_EMBEDDING), vec![grid * grid, vh], Init::Normal);
        s.encoder(&format!("{vision}.{encoder}"), &HF_CLIP_LAYER_NAMES, vh, self.vision_intermediate, self.vision_layers);
        s.layer_norm(&format!("{vision}.{}", names::POST_LAYERNORM), vh);
        let head = format!("{vision}.{}", names::HEAD);
        s.add(format!("{head}.{}", names::PROBE), vec![1, 1, vh], Init::Normal);
        let attention = format!("{head}.{}", pool::ATTENTION);
        s.add(format!("{attention}.{}", pool::IN_PROJ_WEIGHT), vec![3 * vh, vh], Init::Normal);
        s.add(format!("{attention}.{}", pool::IN_PROJ_BIAS), vec![3 * vh], Init::Normal);
        s.linear(&format!("{attention}.{}", pool::OUT_PROJ), vh, vh, true);
        s.layer_norm(&format!("{head}.{}", pool::LAYER_NORM), vh);
        s.linear(&format!("{head}.{}", pool::FC1), vh, self.vision_intermediate, true);
        s.linear(&format!("{head}.{}", pool::FC2), self.vision_intermediate, vh, true);

        let e = format!("{text}.{}", names::EMBEDDINGS);
        s.add(format!("{e}.{}", names::TOKEN_EMBEDDING), vec![self.vocab_size, th], Init::Normal);
        s.add(format!("{e}.{}", names::POSITION_EMBEDDING), vec![self.max_positions, th], Init::Normal);
        s.encoder(&format!("{text}.{encoder}"), &HF_CLIP_LAYER_NAMES, th, self.text_intermediate, self.text_layers);
        s.layer_norm(&format!("{text}.{}", names::FINAL_LAYER_NORM), th);
        s.linear(names::TEXT_HEAD, th, self.projection_size, true);
        s.sorted()
    }

    /// Size in bytes of the `model.safetensors` this configuration gives.
    pub fn safetensors_len(&self) -> u64 {
        safetensors_len(&self.tensors())
    }

    fn folder<'a>(&self, tensors: &'a [TensorSpec], seed: u64) -> RandomFolder<'a> {
        RandomFolder {
            tensors,
            seed,
            std: self.std,
            config: self.config_json(seed),
            json: vec![("preprocessor_config.json", self.preprocessor_json())],
            copies: Vec::new(),
        }
    }
}

/// SigLIP's initial `logit_scale`, ln(10), and `logit_bias`.
const LOGIT_SCALE: f32 = std::f32::consts::LN_10;
const LOGIT_BIAS: f32 = -10.0;

/// Writes a random SigLIP folder into `dir` (created if needed): `config.json`,
/// `model.safetensors` and `preprocessor_config.json`. Deterministic for a
/// given configuration and seed; the weights are streamed one tensor at a time.
pub fn write_random_siglip(dir: &Path, config: &RandomSiglipConfig, seed: u64) -> io::Result<()> {
    config.folder(&config.tensors(), seed).write(dir)
}

/// True when `dir` already holds exactly what [`write_random_siglip`] would
/// write for this configuration and seed.
pub fn is_random_siglip(dir: &Path, config: &RandomSiglipConfig, seed: u64) -> bool {
    config.folder(&config.tensors(), seed).exists_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::siglip::SiglipConfig;

    #[test]
    fn medsiglip_448_has_the_published_configuration() {
        let published = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip-configs/google--medsiglip-448/config.json"),
        )
        .unwrap();
        let published = SiglipConfig::from_json(&published, "published").unwrap();
        let config = RandomSiglipConfig::medsiglip_448();
        let ours = SiglipConfig::from_json(&serde_json::to_vec(&config.config_json(0)).unwrap(), "random").unwrap();
        assert_eq!(ours.vision_config, published.vision_config);
        assert_eq!(ours.text_config, published.text_config);
        assert!(ours.kpl_random_weights);
    }

    #[test]
    fn small_folder_loads_and_embeds_images() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("kpl-random-siglip-{}-{nanos}", std::process::id()));
        let config = RandomSiglipConfig {
            vision_hidden: 32,
            vision_layers: 2,
            vision_heads: 4,
            vision_intermediate: 48,
            image_size: 28,
            patch_size: 14,
            text_hidden: 16,
            text_layers: 1,
            text_heads: 2,
            text_intermediate: 24,
            vocab_size: 50,
            max_positions: 8,
            projection_size: 32,
            ..RandomSiglipConfig::medsiglip_448()
        };
        write_random_siglip(&dir, &config, 3).unwrap();
        assert!(is_random_siglip(&dir, &config, 3));
        assert!(!is_random_siglip(&dir, &config, 4));
        let pipeline = crate::model_dir::load_model_dir(&dir).unwrap();
        assert!(pipeline.is_random());
        assert_eq!(pipeline.model.family(), crate::models::Family::Siglip);
        let mut png = Vec::new();
        let image = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 128]));
        image.write_to(&mut io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let embedding = pipeline.embed_image_bytes(&png, "test.png").unwrap();
        assert_eq!(embedding.len(), 32);
        assert!(embedding.iter().all(|v| v.is_finite()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
