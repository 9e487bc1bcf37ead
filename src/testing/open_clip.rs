//! Random open_clip checkpoints shaped as BiomedCLIP's repository is
//! (`microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`): a timm ViT image
//! tower (`visual.trunk.*`, linear `visual.head.proj`), a Hugging Face BERT text
//! tower (`text.transformer.*`, `[CLS]` pooling, MLP projection `text.proj.0/2`
//! without biases), `open_clip_config.json` with `kpl_random_weights`,
//! `open_clip_model.safetensors` (f32) and a WordPiece `tokenizer.json`: the
//! committed fixture's (tests/fixtures/tiny-open-clip-bert) with its vocabulary
//! filled up to the model's rows with tokens `w{n}`, so that [`words`] gives texts
//! of an exact token count. No BERT `config.json`, as in BiomedCLIP's repository:
//! the loader sizes the tower from the tensors.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::tensors::{Init, Specs, TensorSpec};
use super::{safetensors_len, write_safetensors};
use crate::models::open_clip::names::{self, BERT_LAYER_NAMES, TIMM_LAYER_NAMES};
use crate::models::open_clip::{OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS};

/// Sizes of a random open_clip model (timm ViT + BERT) and how to fill it.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomOpenClipConfig {
    pub vision_width: usize,
    pub vision_layers: usize,
    pub vision_mlp: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub text_width: usize,
    pub text_layers: usize,
    pub text_mlp: usize,
    pub vocab_size: usize,
    /// BERT's `max_position_embeddings`.
    pub positions: usize,
    /// open_clip's `context_length` (the tokenizer pads and truncates to it).
    pub context_length: usize,
    pub embed_dim: usize,
    /// Standard deviation of every weight except the layer norms.
    pub std: f32,
}

impl RandomOpenClipConfig {
    /// BiomedCLIP's sizes: ViT-B/16 at 224 px; PubMedBERT-base (12 layers,
    /// width 768, vocabulary 30522, 512 positions), context 256; embeddings of 512.
    pub fn biomedclip() -> Self {
        Self {
            vision_width: 768,
            vision_layers: 12,
            vision_mlp: 3072,
            image_size: 224,
            patch_size: 16,
            text_width: 768,
            text_layers: 12,
            text_mlp: 3072,
            vocab_size: 30522,
            positions: 512,
            context_length: 256,
            embed_dim: 512,
            std: 0.02,
        }
    }

    /// `open_clip_config.json` as BiomedCLIP's (`timm_proj` linear, `hf_proj_type`
    /// mlp, `[CLS]` pooling), flagged as random weights.
    pub fn config_json(&self, seed: u64) -> Value {
        json!({
            "model_cfg": {
                "embed_dim": self.embed_dim,
                "vision_cfg": {
                    "timm_model_name": "vit_base_patch16_224",
                    "timm_model_pretrained": false,
                    "timm_pool": "",
                    "timm_proj": "linear",
                    "image_size": self.image_size
                },
                "text_cfg": {
                    "hf_model_name": "kpl-random/biomedbert-sized-NOT-ON-THE-HUB",
                    "hf_tokenizer_name": "kpl-random/biomedbert-sized-NOT-ON-THE-HUB",
                    "hf_proj_type": "mlp",
                    "hf_pooler_type": "cls_last_hidden_state_pooler",
                    "context_length": self.context_length
                }
            },
            "preprocess_cfg": {
                "mean": [0.48145466, 0.4578275, 0.40821073],
                "std": [0.26862954, 0.26130258, 0.27577711]
            },
            "kpl_random_weights": true,
            "kpl_random_seed": seed,
            "kpl_random_std": self.std
        })
    }

    /// Every tensor the loader reads, named by open_clip's table
    /// ([`names`], [`TIMM_LAYER_NAMES`], [`BERT_LAYER_NAMES`]), sorted by name.
    pub fn tensors(&self) -> Vec<TensorSpec> {
        let mut s = Specs::default();
        let (vw, tw) = (self.vision_width, self.text_width);
        let grid = self.image_size / self.patch_size;
        s.add(names::LOGIT_SCALE, vec![], Init::Constant(LOGIT_SCALE));
        s.add(names::timm::CLS_TOKEN, vec![1, 1, vw], Init::Normal);
        s.add(names::timm::POS_EMBED, vec![1, grid * grid + 1, vw], Init::Normal);
        s.add(names::timm::PATCH_WEIGHT, vec![vw, 3, self.patch_size, self.patch_size], Init::Normal);
        s.add(format!("{}.bias", names::timm::PATCH_EMBED), vec![vw], Init::Normal);
        s.encoder(names::timm::TRUNK, &TIMM_LAYER_NAMES, vw, self.vision_mlp, self.vision_layers);
        s.layer_norm(names::timm::NORM, vw);
        s.linear(names::timm::HEAD_PROJ, vw, self.embed_dim, false);
        s.add(names::bert::WORD_EMBEDDINGS, vec![self.vocab_size, tw], Init::Normal);
        s.add(names::bert::POSITION_EMBEDDINGS, vec![self.positions, tw], Init::Normal);
        s.add(names::bert::TOKEN_TYPE_EMBEDDINGS, vec![2, tw], Init::Normal);
        s.layer_norm(names::bert::EMBEDDINGS_LAYER_NORM, tw);
        s.encoder(names::bert::ENCODER, &BERT_LAYER_NAMES, tw, self.text_mlp, self.text_layers);
        // open_clip's `hf_proj_type` mlp: (width + embed_dim) / 2 hidden units.
        let hidden = (tw + self.embed_dim) / 2;
        s.linear(names::bert::PROJ_MLP_FC1, tw, hidden, false);
        s.linear(names::bert::PROJ_MLP_FC2, hidden, self.embed_dim, false);
        s.sorted()
    }

    /// Size in bytes of the weight file this configuration gives.
    pub fn safetensors_len(&self) -> u64 {
        safetensors_len(&self.tensors())
    }
}

/// open_clip's initial logit scale, ln(1 / 0.07).
const LOGIT_SCALE: f32 = 2.6592;

/// The WordPiece `tokenizer.json` of the committed BiomedCLIP-shaped fixture.
pub fn repository_wordpiece() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-open-clip-bert/tokenizer.json")
}

/// The filler token of id `n` in the written vocabulary.
fn filler(n: usize) -> String {
    format!("w{n}")
}

/// A text of `count` filler words, each one token of the written vocabulary
/// (ids from the end of the table): with `[CLS]` and `[SEP]`, `count + 2` tokens.
pub fn words(config: &RandomOpenClipConfig, count: usize) -> String {
    (0..count).map(|i| filler(config.vocab_size - 1 - i % 1000)).collect::<Vec<_>>().join(" ")
}

/// The fixture's tokenizer with its vocabulary filled up to `vocab_size` rows.
fn tokenizer_json(vocab_size: usize) -> io::Result<Value> {
    let src = repository_wordpiece();
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {m}", src.display()));
    let mut tokenizer: Value =
        serde_json::from_slice(&std::fs::read(&src)?).map_err(|e| bad(e.to_string()))?;
    let vocab = tokenizer
        .pointer_mut("/model/vocab")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| bad("no model.vocab".into()))?;
    for id in vocab.len()..vocab_size {
        vocab.insert(filler(id), json!(id));
    }
    Ok(tokenizer)
}

/// Writes a random open_clip folder into `dir`; `open_clip_config.json` last, so a
/// folder with it is complete ([`is_random_open_clip`]). Deterministic per seed.
pub fn write_random_open_clip(dir: &Path, config: &RandomOpenClipConfig, seed: u64) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).expect("JSON values serialise");
    std::fs::write(dir.join("tokenizer.json"), pretty(&tokenizer_json(config.vocab_size)?))?;
    let weights = dir.join(OPEN_CLIP_WEIGHTS[0]);
    let mut file = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&weights)?);
    write_safetensors(&mut file, &config.tensors(), seed, config.std)?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::write(dir.join(OPEN_CLIP_CONFIG), pretty(&config.config_json(seed)))
}

/// True when `dir` already holds what [`write_random_open_clip`] writes for this
/// configuration and seed.
pub fn is_random_open_clip(dir: &Path, config: &RandomOpenClipConfig, seed: u64) -> bool {
    let Ok(existing) = std::fs::read(dir.join(OPEN_CLIP_CONFIG)) else { return false };
    let expected = serde_json::to_vec_pretty(&config.config_json(seed)).expect("JSON values serialise");
    let weights_ok = std::fs::metadata(dir.join(OPEN_CLIP_WEIGHTS[0])).is_ok_and(|m| m.len() == config.safetensors_len());
    existing == expected && weights_ok && dir.join("tokenizer.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small configuration of the same layout loads through the open_clip
    /// loader, and a text of `words(n)` is `n + 2` tokens.
    #[test]
    fn a_small_random_open_clip_folder_loads_and_tokenizes_exactly() {
        let config = RandomOpenClipConfig {
            vision_width: 64,
            vision_layers: 1,
            vision_mlp: 128,
            image_size: 32,
            text_width: 64,
            text_layers: 1,
            text_mlp: 128,
            vocab_size: 400,
            positions: 64,
            context_length: 32,
            embed_dim: 16,
            ..RandomOpenClipConfig::biomedclip()
        };
        let dir = std::env::temp_dir().join(format!("kpl-random-open-clip-{}", std::process::id()));
        write_random_open_clip(&dir, &config, 0).unwrap();
        assert!(is_random_open_clip(&dir, &config, 0));
        let pipeline = crate::model_dir::load_model_dir(&dir).unwrap();
        assert!(pipeline.is_random());
        assert_eq!(pipeline.embedding_dim(), 16);
        let ids = pipeline.tokenizer().unwrap().encode(&words(&config, 20)).unwrap();
        assert_eq!(ids.iter().filter(|&&id| id != 0).count(), 22);
        assert_eq!(ids.len(), 32);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
