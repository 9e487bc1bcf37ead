//! Random CLIP checkpoints in Hugging Face layout (`CLIPModel`):
//! `config.json`, `model.safetensors` (f32), `preprocessor_config.json` and a
//! copy of the repository's `tokenizer.json`. `std` defaults to 0.02, CLIP's
//! initializer range; `logit_scale` is CLIP's initial ln(1/0.07).
//!
//! ```no_run
//! use kpl::testing::clip::{write_random_clip, RandomClipConfig};
//! write_random_clip("bench/out/vit-b16-random".as_ref(), &RandomClipConfig::vit_b16(), 0).unwrap();
//! ```

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::tensors::{stamp_random, Init, RandomFolder, Specs, TensorSpec};
use super::safetensors_len;
use crate::models::clip::names;
use crate::nn::transformer::HF_CLIP_LAYER_NAMES;

/// Sizes of a random CLIP model (the fields of `config.json` that shape weights)
/// and how to fill it.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomClipConfig {
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
    pub projection_dim: usize,
    /// `hidden_act` of both towers: "quick_gelu" (OpenAI) or "gelu".
    pub hidden_act: String,
    /// Standard deviation of every weight except the layer norms.
    pub std: f32,
    /// `tokenizer.json` to copy into the folder; `None` writes a folder without one
    /// (it then embeds images only).
    pub tokenizer: Option<PathBuf>,
}

impl RandomClipConfig {
    /// openai/clip-vit-base-patch16: ViT-B/16 at 224 px, 512-wide text tower.
    pub fn vit_b16() -> Self {
        Self {
            vision_hidden: 768,
            vision_layers: 12,
            vision_heads: 12,
            vision_intermediate: 3072,
            image_size: 224,
            patch_size: 16,
            text_hidden: 512,
            text_layers: 12,
            text_heads: 8,
            text_intermediate: 2048,
            vocab_size: 49408,
            max_positions: 77,
            projection_dim: 512,
            hidden_act: "quick_gelu".into(),
            std: 0.02,
            tokenizer: Some(repository_tokenizer()),
        }
    }

    /// A tiny model for tests (about 3.5 MB, most of it the 49408-row token table
    /// the tokenizer needs).
    pub fn tiny() -> Self {
        Self {
            vision_hidden: 32,
            vision_layers: 2,
            vision_heads: 4,
            vision_intermediate: 64,
            image_size: 32,
            patch_size: 8,
            text_hidden: 16,
            text_layers: 2,
            text_heads: 2,
            text_intermediate: 32,
            projection_dim: 24,
            ..Self::vit_b16()
        }
    }

    /// The Hugging Face `config.json` (CLIPConfig), with `kpl_random_weights`,
    /// the seed and the std recorded so that a folder can be recognised and reused.
    pub fn config_json(&self, seed: u64) -> Value {
        let v = json!({
            "hidden_act": self.hidden_act,
            "hidden_size": self.vision_hidden,
            "image_size": self.image_size,
            "initializer_factor": 1.0,
            "initializer_range": self.std,
            "intermediate_size": self.vision_intermediate,
            "layer_norm_eps": 1e-5,
            "model_type": "clip_vision_model",
            "num_attention_heads": self.vision_heads,
            "num_channels": 3,
            "num_hidden_layers": self.vision_layers,
            "patch_size": self.patch_size,
            "projection_dim": self.projection_dim,
        });
        let t = json!({
            "bos_token_id": 0,
            "eos_token_id": 2,
            "pad_token_id": 1,
            "hidden_act": self.hidden_act,
            "hidden_size": self.text_hidden,
            "initializer_factor": 1.0,
            "initializer_range": self.std,
            "intermediate_size": self.text_intermediate,
            "layer_norm_eps": 1e-5,
            "max_position_embeddings": self.max_positions,
            "model_type": "clip_text_model",
            "num_attention_heads": self.text_heads,
            "num_hidden_layers": self.text_layers,
            "projection_dim": self.projection_dim,
            "vocab_size": self.vocab_size,
        });
        let config = json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "dtype": "float32",
            "initializer_factor": 1.0,
            "logit_scale_init_value": LOGIT_SCALE,
            "projection_dim": self.projection_dim,
            "text_config": t,
            "vision_config": v,
        });
        stamp_random(config, seed, self.std)
    }

    /// `preprocessor_config.json`: CLIP's standard preprocessing at this image size.
    pub fn preprocessor_json(&self) -> Value {
        let s = self.image_size;
        json!({
            "crop_size": {"height": s, "width": s},
            "do_center_crop": true,
            "do_convert_rgb": true,
            "do_normalize": true,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "resample": 3,
            "rescale_factor": 1.0 / 255.0,
            "size": {"shortest_edge": s},
        })
    }

    /// Every tensor `Model::load` reads, named by CLIP's table
    /// ([`names`], [`HF_CLIP_LAYER_NAMES`]): name, shape and how it is
    /// filled, sorted by name (the order they are stored in).
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let mut s = Specs::default();
        let grid = self.image_size / self.patch_size;
        let (vh, th) = (self.vision_hidden, self.text_hidden);
        s.add(names::LOGIT_SCALE, vec![], Init::Constant(LOGIT_SCALE));
        s.linear(names::VISUAL_PROJECTION, vh, self.projection_dim, false);
        s.linear(names::TEXT_PROJECTION, th, self.projection_dim, false);
        let (vision, text) = (names::VISION, names::TEXT);
        let e = format!("{vision}.{}", names::EMBEDDINGS);
        s.add(format!("{e}.{}.weight", names::PATCH_EMBEDDING), vec![vh, 3, self.patch_size, self.patch_size], Init::Normal);
        s.add(format!("{e}.{}", names::CLASS_EMBEDDING), vec![vh], Init::Normal);
        s.add(format!("{e}.{}", names::POSITION_EMBEDDING), vec![grid * grid + 1, vh], Init::Normal);
        let e = format!("{text}.{}", names::EMBEDDINGS);
        s.add(format!("{e}.{}", names::TOKEN_EMBEDDING), vec![self.vocab_size, th], Init::Normal);
        s.add(format!("{e}.{}", names::POSITION_EMBEDDING), vec![self.max_positions, th], Init::Normal);
        s.layer_norm(&format!("{vision}.{}", names::PRE_LAYERNORM), vh);
        s.layer_norm(&format!("{vision}.{}", names::POST_LAYERNORM), vh);
        s.layer_norm(&format!("{text}.{}", names::FINAL_LAYER_NORM), th);
        let encoder = names::ENCODER;
        s.encoder(&format!("{vision}.{encoder}"), &HF_CLIP_LAYER_NAMES, vh, self.vision_intermediate, self.vision_layers);
        s.encoder(&format!("{text}.{encoder}"), &HF_CLIP_LAYER_NAMES, th, self.text_intermediate, self.text_layers);
        s.sorted()
    }

    /// Size in bytes of the `model.safetensors` this configuration gives.
    pub fn safetensors_len(&self) -> u64 {
        safetensors_len(&self.tensors())
    }
}

/// CLIP's initial logit scale, ln(1 / 0.07).
const LOGIT_SCALE: f32 = 2.6592;

/// The `tokenizer.json` committed with the test fixtures (OpenAI's CLIP BPE).
pub fn repository_tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer.json")
}

/// The folder [`write_random_clip`] writes.
fn folder<'a>(config: &RandomClipConfig, tensors: &'a [TensorSpec], seed: u64) -> RandomFolder<'a> {
    RandomFolder {
        tensors,
        seed,
        std: config.std,
        config: config.config_json(seed),
        json: vec![("preprocessor_config.json", config.preprocessor_json())],
        copies: config.tokenizer.iter().map(|t| (t.clone(), "tokenizer.json")).collect(),
    }
}

/// Writes a random CLIP folder into `dir` (created if needed): `config.json`,
/// `model.safetensors`, `preprocessor_config.json` and, when the configuration
/// names one, `tokenizer.json`. Deterministic for a given configuration and seed.
/// The weights are streamed to disk one tensor at a time.
pub fn write_random_clip(dir: &Path, config: &RandomClipConfig, seed: u64) -> io::Result<()> {
    folder(config, &config.tensors(), seed).write(dir)
}

/// True when `dir` already holds exactly what `write_random_clip` would write for
/// this configuration and seed (same `config.json`, weights of the right size), so
/// callers can reuse it instead of regenerating hundreds of megabytes.
pub fn is_random_clip(dir: &Path, config: &RandomClipConfig, seed: u64) -> bool {
    folder(config, &config.tensors(), seed).exists_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        std::env::temp_dir().join(format!("kpl-random-{tag}-{}-{nanos}", std::process::id()))
    }

    #[test]
    fn vit_b16_has_the_published_sizes() {
        let config = RandomClipConfig::vit_b16();
        let params: usize = config.tensors().iter().map(TensorSpec::numel).sum();
        // openai/clip-vit-base-patch16 has 149,620,737 parameters.
        assert_eq!(params, 149_620_737);
        let parsed = crate::models::clip::ClipConfig::from_json(&serde_json::to_vec(&config.config_json(0)).unwrap(), "x")
            .unwrap();
        assert!(parsed.kpl_random_weights);
        assert_eq!(parsed.num_patches(), 196);
        assert_eq!(parsed.text_config.eos_token_id, 2);
    }

    #[test]
    fn tiny_folder_loads_and_embeds() {
        let dir = temp_dir("tiny");
        let config = RandomClipConfig::tiny();
        write_random_clip(&dir, &config, 42).unwrap();
        assert!(is_random_clip(&dir, &config, 42));
        assert!(!is_random_clip(&dir, &config, 43));
        assert_eq!(std::fs::metadata(dir.join("model.safetensors")).unwrap().len(), config.safetensors_len());

        let pipeline = crate::model_dir::load_model_dir(&dir).unwrap();
        assert!(pipeline.is_random());
        let mut png = Vec::new();
        let image = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 128]));
        image.write_to(&mut io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let embedding = pipeline.embed_image_bytes(&png, "test.png").unwrap();
        assert_eq!(embedding.len(), 24);
        let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4 && embedding.iter().all(|v| v.is_finite()));
        let text = pipeline.embed_text("a photo of a cat.").unwrap();
        assert_eq!(text.len(), 24);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
