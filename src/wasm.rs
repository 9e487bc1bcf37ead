//! The JavaScript API (wasm-bindgen). Every function returns a JS `Error` with a
//! message instead of panicking; `console_error_panic_hook` reports anything left.

use wasm_bindgen::prelude::*;

use crate::pipeline::{ClipPipeline, ModelFiles};

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// A CLIP model loaded from the bytes of a Hugging Face CLIP folder's files.
#[wasm_bindgen]
pub struct ClipModel {
    pipeline: ClipPipeline,
}

#[wasm_bindgen]
impl ClipModel {
    /// `config`, `weights` (model.safetensors), and optionally `tokenizer`
    /// (tokenizer.json) and `preprocessor` (preprocessor_config.json).
    #[wasm_bindgen(js_name = load)]
    pub fn load(
        config: &[u8],
        weights: Vec<u8>,
        tokenizer: Option<Vec<u8>>,
        preprocessor: Option<Vec<u8>>,
    ) -> Result<ClipModel, JsError> {
        let files = ModelFiles {
            config: ("config.json".into(), config.to_vec()),
            weights: ("model.safetensors".into(), weights),
            tokenizer: tokenizer.map(|b| ("tokenizer.json".into(), b)),
            preprocessor: preprocessor.map(|b| ("preprocessor_config.json".into(), b)),
        };
        Ok(ClipModel { pipeline: ClipPipeline::load(files).map_err(js_error)? })
    }

    /// True when the weights are the repository's random test weights: the UI
    /// must then say that no output means anything.
    #[wasm_bindgen(getter, js_name = isRandom)]
    pub fn is_random(&self) -> bool {
        self.pipeline.is_random()
    }

    #[wasm_bindgen(getter, js_name = embeddingDim)]
    pub fn embedding_dim(&self) -> usize {
        self.pipeline.config().projection_dim
    }

    #[wasm_bindgen(getter, js_name = imageSize)]
    pub fn image_size(&self) -> usize {
        self.pipeline.config().vision_config.image_size
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
    /// BMP, TIFF); `name` is used in error messages.
    #[wasm_bindgen(js_name = embedImage)]
    pub fn embed_image(&self, bytes: &[u8], name: &str) -> Result<Vec<f32>, JsError> {
        self.pipeline.embed_image_bytes(bytes, name).map_err(js_error)
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

    /// Plain CLIP zero-shot probabilities of an image embedding over labels,
    /// each prompted as "a photo of a {label}.".
    #[wasm_bindgen(js_name = zeroShot)]
    pub fn zero_shot(&self, image_embedding: &[f32], labels: Vec<String>) -> Result<Vec<f32>, JsError> {
        let texts = labels
            .iter()
            .map(|l| self.pipeline.embed_text(&crate::pipeline::zero_shot_prompt(l)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(js_error)?;
        Ok(self.pipeline.zero_shot(image_embedding, &texts))
    }
}
