//! `ClipModel`: a model of any family loaded from a Hugging Face folder's
//! files, its getters, and the image and text embeddings and zero-shot scores.

use wasm_bindgen::prelude::*;

use super::js_bytes::JsBytes;
use super::js_error;
use crate::pipeline::{ModelFiles, OpenClipFiles, Pipeline};
use crate::tokenizer::TokenizerFiles;

/// The tokenizer as a folder ships it: `tokenizer.json` when given, else the
/// family's fallback file (`spiece.model`, `vocab.txt`, built by
/// `fallback_files`), either with `tokenizer_config.json`; the order the native
/// `model_files` reads them in.
fn tokenizer_files(
    json: Option<Vec<u8>>,
    fallback: Option<Vec<u8>>,
    config: Option<Vec<u8>>,
    fallback_files: impl FnOnce(Vec<u8>, Option<(String, Vec<u8>)>) -> TokenizerFiles,
) -> Option<TokenizerFiles> {
    let config = config.map(|b| ("tokenizer_config.json".to_owned(), b));
    match (json, fallback) {
        (Some(json), _) => Some(TokenizerFiles::Json { json: ("tokenizer.json".into(), json), config }),
        (None, Some(bytes)) => Some(fallback_files(bytes, config)),
        (None, None) => None,
    }
}

/// A model of any family loaded from the bytes of its folder's files (`load`,
/// `loadOpenClip`) or of a `kpl pack` bundle (`loadBundle`).
#[wasm_bindgen]
pub struct ClipModel {
    pub(crate) pipeline: Pipeline,
    /// The window the last image decode used (`dicomWindowUsed`; src/wasm/dicom.rs).
    pub(crate) dicom_window_used: std::cell::RefCell<Option<crate::preprocess::dicom::VoiUsed>>,
}

#[wasm_bindgen]
impl ClipModel {
    /// `config`, `weights` (model.safetensors, a `Uint8Array`), and optionally
    /// `tokenizer` (tokenizer.json), `preprocessor` (preprocessor_config.json),
    /// for a folder without tokenizer.json `spiece` (spiece.model), and
    /// `tokenizerConfig` (tokenizer_config.json, read with either). Works for every family.
    /// The weights are not copied whole into wasm memory: each tensor is copied
    /// out of `weights` once, into the model (so the caller may drop the array
    /// afterwards).
    #[wasm_bindgen(js_name = load)]
    pub fn load(
        config: &[u8],
        weights: &js_sys::Uint8Array,
        tokenizer: Option<Vec<u8>>,
        preprocessor: Option<Vec<u8>>,
        spiece: Option<Vec<u8>>,
        tokenizer_config: Option<Vec<u8>>,
    ) -> Result<ClipModel, JsError> {
        let tokenizer = tokenizer_files(tokenizer, spiece, tokenizer_config, |model, config| {
            TokenizerFiles::SentencePiece { model: ("spiece.model".into(), model), config }
        });
        let files = ModelFiles {
            config: ("config.json".into(), config.to_vec()),
            weights: ("model.safetensors".into(), JsBytes::new(weights)),
            tokenizer,
            preprocessor: preprocessor.map(|b| ("preprocessor_config.json".into(), b)),
        };
        Ok(ClipModel::new(Pipeline::load(files).map_err(js_error)?))
    }

    /// An open_clip folder (BiomedCLIP, QuiltNet…): `config` the bytes of
    /// open_clip_config.json, `weights` those of the weight file named
    /// `weightsName` (`open_clip_model.safetensors` or the PyTorch pickle
    /// `open_clip_pytorch_model.bin`, told apart by content), and optionally the
    /// tokenizer — `tokenizer` (tokenizer.json), else `vocab` (vocab.txt), either with
    /// `tokenizerConfig` (tokenizer_config.json), as the native loader reads them —
    /// and `textConfig` (the BERT tower's config.json; without it BERT is sized from
    /// the tensors). Errors name the file. A safetensors file is not copied
    /// whole into wasm memory (each tensor is copied out once, as `load`
    /// does); a PyTorch pickle is.
    #[wasm_bindgen(js_name = loadOpenClip)]
    pub fn load_open_clip(
        config: &[u8],
        weights: &js_sys::Uint8Array,
        weights_name: &str,
        tokenizer: Option<Vec<u8>>,
        text_config: Option<Vec<u8>>,
        vocab: Option<Vec<u8>>,
        tokenizer_config: Option<Vec<u8>>,
    ) -> Result<ClipModel, JsError> {
        let tokenizer = tokenizer_files(tokenizer, vocab, tokenizer_config, |vocab, config| {
            TokenizerFiles::WordPiece { vocab: ("vocab.txt".into(), vocab), config }
        });
        let files = OpenClipFiles {
            config: (crate::models::open_clip::OPEN_CLIP_CONFIG.into(), config.to_vec()),
            weights: (weights_name.into(), JsBytes::new(weights)),
            tokenizer,
            text_config: text_config.map(|b| ("config.json".into(), b)),
        };
        Ok(ClipModel::new(Pipeline::load_open_clip(files).map_err(js_error)?))
    }

    /// True when the weights are the repository's random test weights: the UI
    /// must then say that no output means anything.
    #[wasm_bindgen(getter, js_name = isRandom)]
    pub fn is_random(&self) -> bool {
        self.pipeline.is_random()
    }

    /// Bytes of the weights the loaded towers hold in wasm memory, in the
    /// form held (f32, f16 token tables, packed q8_0 panels, ggml blocks): the
    /// denominator of the memory figures (`bench/README.md`).
    #[wasm_bindgen(getter, js_name = weightBytes)]
    pub fn weight_bytes(&self) -> f64 {
        self.pipeline.model.weight_bytes() as f64
    }

    #[wasm_bindgen(getter, js_name = embeddingDim)]
    pub fn embedding_dim(&self) -> usize {
        self.pipeline.embedding_dim()
    }

    #[wasm_bindgen(getter, js_name = imageSize)]
    pub fn image_size(&self) -> usize {
        self.pipeline.model.image_size()
    }

    /// The model family, `"clip"`, `"siglip"` or `"open_clip"`.
    #[wasm_bindgen(getter)]
    pub fn family(&self) -> String {
        self.pipeline.family().as_str().into()
    }

    /// The family's name as people write it (`"CLIP"`, `"SigLIP"`, `"open_clip"`), for the page's captions.
    #[wasm_bindgen(getter, js_name = familyName)]
    pub fn family_name(&self) -> String {
        self.pipeline.family().display_name().into()
    }

    /// What the zero-shot scores are, as a sentence for the page (CLIP: a
    /// softmax over the labels; SigLIP: a probability per label).
    #[wasm_bindgen(getter, js_name = scoringNote)]
    pub fn scoring_note(&self) -> String {
        self.pipeline.model.scoring().describe().into()
    }

    /// Whether one image's zero-shot scores sum to 1 (CLIP) or not (SigLIP).
    #[wasm_bindgen(getter, js_name = scoresSumToOne)]
    pub fn scores_sum_to_one(&self) -> bool {
        self.pipeline.model.scoring().sums_to_one()
    }

    #[wasm_bindgen(getter, js_name = logitScale)]
    pub fn logit_scale(&self) -> f32 {
        self.pipeline.model.logit_scale_exp()
    }

    #[wasm_bindgen(getter, js_name = hasTokenizer)]
    pub fn has_tokenizer(&self) -> bool {
        self.pipeline.tokenizer.is_some()
    }

    /// Limits decoded images to this many megapixels (default 100).
    #[wasm_bindgen(js_name = setMaxMegapixels)]
    pub fn set_max_megapixels(&mut self, megapixels: f64) {
        self.pipeline.limits.max_pixels = (megapixels * 1e6).max(1.0) as u64;
    }

    /// The L2-normalised embedding of an image file's bytes (PNG, JPEG, WebP,
    /// BMP, TIFF, DICOM); `name` is used in error messages. `voi` (optional): the
    /// window a greyscale DICOM file is rendered with, `{index}` or `{center,
    /// width}` (default: the README's rule); `dicomWindowUsed` then says which.
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(&self, bytes: &[u8], name: &str, voi: JsValue) -> Result<Vec<f32>, JsError> {
        let pixels = self.prepare(bytes, name, &voi)?;
        Ok(self.pipeline.embed_pixels(&[pixels], true).map_err(js_error)?.remove(0))
    }

    /// The L2-normalised embedding of a text.
    #[wasm_bindgen(js_name = embedText)]
    pub fn embed_text(&self, text: &str) -> Result<Vec<f32>, JsError> {
        self.pipeline.embed_text(text).map_err(js_error)
    }

    /// Token ids as the model sees them (start and end tokens, truncated).
    #[wasm_bindgen(js_name = tokenize)]
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsError> {
        self.pipeline.tokenizer().and_then(|t| t.encode(text)).map_err(js_error)
    }

    /// Zero-shot scores of an image embedding over `prompts` (their embeddings,
    /// concatenated), as the model's family scores them.
    #[wasm_bindgen(js_name = zeroShotScores)]
    pub fn zero_shot_scores(&self, image_embedding: &[f32], prompts: &[f32]) -> Result<Vec<f32>, JsError> {
        let dim = self.pipeline.embedding_dim();
        if dim == 0 || !prompts.len().is_multiple_of(dim) {
            return Err(JsError::new(&format!("prompt embeddings: {} values are not rows of {dim}", prompts.len())));
        }
        let rows: Vec<Vec<f32>> = prompts.chunks(dim).map(<[f32]>::to_vec).collect();
        self.pipeline.zero_shot(image_embedding, &rows).map_err(js_error)
    }

    /// Plain zero-shot scores of an image embedding over labels, each prompted
    /// as "a photo of a {label}."
    #[wasm_bindgen(js_name = zeroShot)]
    pub fn zero_shot(&self, image_embedding: &[f32], labels: Vec<String>) -> Result<Vec<f32>, JsError> {
        let texts = labels
            .iter()
            .map(|l| self.pipeline.embed_text(&crate::pipeline::zero_shot_prompt(l)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(js_error)?;
        self.pipeline.zero_shot(image_embedding, &texts).map_err(js_error)
    }
}

#[wasm_bindgen]
impl ClipModel {
    /// The model's fingerprint, as recorded in knowledge bases it builds.
    #[wasm_bindgen(js_name = fingerprint)]
    pub fn fingerprint(&self) -> Result<String, JsError> {
        self.pipeline.model.fingerprint().map_err(js_error)
    }
}
