//! The JavaScript API (wasm-bindgen). Every function returns a JS `Error` with a
//! message instead of panicking; `console_error_panic_hook` reports anything left.

use wasm_bindgen::prelude::*;

use crate::pipeline::{Pipeline, ModelFiles};

pub(crate) fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// A CLIP model loaded from the bytes of a Hugging Face CLIP folder's files.
#[wasm_bindgen]
pub struct ClipModel {
    pub(crate) pipeline: Pipeline,
    /// The window the last image decode used (`dicomWindowUsed`; src/wasm_dicom.rs).
    pub(crate) dicom_window_used: std::cell::RefCell<Option<crate::preprocess::dicom::VoiUsed>>,
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
        Ok(ClipModel::new(Pipeline::load(files).map_err(js_error)?))
    }

    /// True when the weights are the repository's random test weights: the UI
    /// must then say that no output means anything.
    #[wasm_bindgen(getter, js_name = isRandom)]
    pub fn is_random(&self) -> bool {
        self.pipeline.is_random()
    }

    #[wasm_bindgen(getter, js_name = embeddingDim)]
    pub fn embedding_dim(&self) -> usize {
        self.pipeline.embedding_dim()
    }

    #[wasm_bindgen(getter, js_name = imageSize)]
    pub fn image_size(&self) -> usize {
        self.pipeline.model.image_size()
    }

    /// The model family, `"clip"` or `"siglip"` (from its config.json).
    #[wasm_bindgen(getter)]
    pub fn family(&self) -> String {
        self.pipeline.family().as_str().into()
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
        if dim == 0 || prompts.len() % dim != 0 {
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

/// `Read + Seek` over a JS `Uint8Array`, copying only the pieces read: a
/// bundle's encoder is hashed and parsed without a second whole copy of the file
/// in wasm memory (which never shrinks).
struct JsBytes {
    array: js_sys::Uint8Array,
    len: u64,
    pos: u64,
}

impl JsBytes {
    fn new(array: &js_sys::Uint8Array) -> Self {
        Self { array: array.clone(), len: u64::from(array.length()), pos: 0 }
    }
}

impl std::io::Read for JsBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        if n > 0 {
            let start = self.pos as u32;
            self.array.subarray(start, start + n as u32).copy_to(&mut buf[..n]);
            self.pos += n as u64;
        }
        Ok(n)
    }
}

impl std::io::Seek for JsBytes {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let target = match pos {
            std::io::SeekFrom::Start(p) => p as i128,
            std::io::SeekFrom::End(d) => self.len as i128 + d as i128,
            std::io::SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start"));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

fn read_encoder(
    entry: Option<&crate::bundle::FileEntry>,
    bytes: &js_sys::Uint8Array,
    what: &str,
) -> Result<crate::bundle::EncoderFile, JsError> {
    let entry = entry.ok_or_else(|| JsError::new(&format!("manifest.json lists no {what}")))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, JsBytes::new(bytes));
    crate::bundle::EncoderFile::read_verified(&mut reader, &entry.path, entry).map_err(js_error)
}

#[wasm_bindgen]
impl ClipModel {
    /// Loads a `kpl pack` bundle: `manifest` is the text of its manifest.json,
    /// `imageEncoder` the bytes of image_encoder.gguf and `textEncoder` (optional:
    /// fetch it only for custom labels, then call `addTextEncoder`) those of
    /// text_encoder.gguf. Each file is checked against the manifest's size and
    /// SHA-256 first; an altered or truncated file throws an error naming it.
    #[wasm_bindgen(js_name = loadBundle)]
    pub fn load_bundle(
        manifest: &str,
        image_encoder: Option<js_sys::Uint8Array>,
        text_encoder: Option<js_sys::Uint8Array>,
    ) -> Result<ClipModel, JsError> {
        let m = crate::bundle::Manifest::from_json(manifest.as_bytes(), "manifest.json").map_err(js_error)?;
        let image = image_encoder
            .map(|b| read_encoder(m.files.image_encoder.as_ref(), &b, "image encoder"))
            .transpose()?;
        let text = text_encoder
            .map(|b| read_encoder(m.files.text_encoder.as_ref(), &b, "text encoder"))
            .transpose()?;
        let pipeline = crate::bundle::load_pipeline(&m, &m.model.name, image, text).map_err(js_error)?;
        Ok(ClipModel::new(pipeline))
    }

    /// Adds the bundle's text encoder (text_encoder.gguf) to a model loaded
    /// with `loadBundle` without it.
    #[wasm_bindgen(js_name = addTextEncoder)]
    pub fn add_text_encoder(&mut self, manifest: &str, text_encoder: js_sys::Uint8Array) -> Result<(), JsError> {
        let m = crate::bundle::Manifest::from_json(manifest.as_bytes(), "manifest.json").map_err(js_error)?;
        let text = read_encoder(m.files.text_encoder.as_ref(), &text_encoder, "text encoder")?;
        crate::bundle::attach_text_encoder(&mut self.pipeline, &m, text).map_err(js_error)
    }

    #[wasm_bindgen(getter, js_name = hasImageEncoder)]
    pub fn has_image_encoder(&self) -> bool {
        self.pipeline.model.has_vision()
    }

    #[wasm_bindgen(getter, js_name = hasTextEncoder)]
    pub fn has_text_encoder(&self) -> bool {
        self.pipeline.model.has_text()
    }
}

/// How quantised layers compute: "dequantize" (default in wasm: each layer's
/// weight expanded to f32 for the call, then the f32 gemm) or "blocks" (candle's
/// block-by-block simd128 kernels). For benchmarks.
#[wasm_bindgen(js_name = setQuantKernel)]
pub fn set_quant_kernel(kernel: &str) -> Result<(), JsError> {
    use crate::nn::linear::{set_quant_kernel, QuantKernel};
    match kernel {
        "dequantize" => set_quant_kernel(QuantKernel::Dequantize),
        "blocks" => set_quant_kernel(QuantKernel::Blocks),
        other => return Err(JsError::new(&format!("unknown kernel {other:?} (dequantize or blocks)"))),
    }
    Ok(())
}

/// Throws unless `bytes` match the size and SHA-256 that the bundle manifest
/// (`manifest`, its JSON text) lists for `path` (e.g. a knowledge base).
#[wasm_bindgen(js_name = verifyBundleFile)]
pub fn verify_bundle_file(manifest: &str, path: &str, bytes: &js_sys::Uint8Array) -> Result<(), JsError> {
    let m = crate::bundle::Manifest::from_json(manifest.as_bytes(), "manifest.json").map_err(js_error)?;
    let entry = m.entry(path).ok_or_else(|| JsError::new(&format!("manifest.json does not list {path}")))?;
    crate::bundle::verify(&mut JsBytes::new(bytes), path, entry).map_err(js_error)
}

#[wasm_bindgen]
impl ClipModel {
    /// The model's fingerprint, as recorded in knowledge bases it builds.
    #[wasm_bindgen(js_name = fingerprint)]
    pub fn fingerprint(&self) -> Result<String, JsError> {
        self.pipeline.model.fingerprint().map_err(js_error)
    }
}

/// Hyperparameters from JS: any subset of {k, tauT, tauI, alpha, gamma,
/// itersOt, itersProxy, lr}; the rest keep the reference defaults.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsParams {
    k: Option<usize>,
    tau_t: Option<f64>,
    tau_i: Option<f64>,
    alpha: Option<f64>,
    gamma: Option<f64>,
    iters_ot: Option<usize>,
    iters_proxy: Option<usize>,
    lr: Option<f64>,
}

/// `tauT` defaults to the model's own scale ([`crate::models::Model::pseudo_label_temperature`]).
fn params_from_js(value: JsValue, model: &crate::models::Model) -> Result<kpl_core::KplParams, JsError> {
    let js: JsParams = if value.is_undefined() || value.is_null() {
        JsParams::default()
    } else {
        serde_wasm_bindgen::from_value(value).map_err(js_error)?
    };
    let d = kpl_core::KplParams::default();
    Ok(kpl_core::KplParams {
        k: js.k.unwrap_or(d.k),
        tau_t: js.tau_t.unwrap_or_else(|| model.pseudo_label_temperature()),
        tau_i: js.tau_i.unwrap_or(d.tau_i),
        alpha: js.alpha.unwrap_or(d.alpha),
        gamma: js.gamma.unwrap_or(d.gamma),
        iters_ot: js.iters_ot.unwrap_or(d.iters_ot),
        iters_proxy: js.iters_proxy.unwrap_or(d.iters_proxy),
        lr: js.lr.unwrap_or(d.lr),
        ..d
    })
}

fn rows(flat: &[f32], n: usize, what: &str) -> Result<Vec<Vec<f32>>, JsError> {
    if n == 0 || flat.len() % n != 0 {
        return Err(JsError::new(&format!("{what}: {} values do not split into {n} rows", flat.len())));
    }
    Ok(flat.chunks(flat.len() / n).map(|r| r.to_vec()).collect())
}

/// A knowledge embedding base (`.kplkb`), loaded from its bytes.
#[wasm_bindgen]
pub struct KnowledgeBase {
    base: crate::knowledge::base::KnowledgeBase,
}

#[wasm_bindgen]
impl KnowledgeBase {
    #[wasm_bindgen(js_name = load)]
    pub fn load(bytes: &[u8], name: &str) -> Result<KnowledgeBase, JsError> {
        Ok(KnowledgeBase { base: crate::knowledge::base::KnowledgeBase::from_bytes(bytes, name).map_err(js_error)? })
    }

    #[wasm_bindgen(getter)]
    pub fn task(&self) -> String {
        self.base.task.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn title(&self) -> String {
        self.base.title.clone()
    }

    #[wasm_bindgen(getter, js_name = classNames)]
    pub fn class_names(&self) -> Vec<String> {
        self.base.class_names()
    }

    #[wasm_bindgen(getter, js_name = randomWeights)]
    pub fn random_weights(&self) -> bool {
        self.base.model.random_weights
    }

    #[wasm_bindgen(getter, js_name = hasProxies)]
    pub fn has_proxies(&self) -> bool {
        self.base.proxies.is_some()
    }

    /// Throws unless `model` is the model that built this base.
    #[wasm_bindgen(js_name = checkModel)]
    pub fn check_model(&self, model: &ClipModel, base_name: &str) -> Result<(), JsError> {
        let fingerprint = model.pipeline.model.fingerprint().map_err(js_error)?;
        self.base.check_model(&fingerprint, model.pipeline.family(), base_name, "the loaded model").map_err(js_error)
    }

    /// Classifies `n` image embeddings (concatenated): several run transductive
    /// KPL over the set, one uses fitted proxies or single-image retrieval.
    /// Returns `[{label, scores, method, clip_scores, clip_label, evidence}]`.
    #[wasm_bindgen(js_name = classify)]
    pub fn classify(
        &self,
        embeddings: &[f32],
        n: usize,
        model: &ClipModel,
        params: JsValue,
        top_evidence: usize,
    ) -> Result<JsValue, JsError> {
        let images = rows(embeddings, n, "embeddings")?;
        let m = &model.pipeline.model;
        let params = params_from_js(params, m)?;
        let results =
            crate::classifier::classify_embeddings(&self.base, &images, &params, m.logit_scale_exp(), m.scoring(), top_evidence)
                .map_err(js_error)?;
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        serde::Serialize::serialize(&results, &serializer).map_err(js_error)
    }
}

/// The cosine between the CPU's and the GPU's embedding of the probe image.
#[wasm_bindgen(js_name = probeCosine)]
pub fn probe_cosine(on_cpu: &[f32], on_gpu: &[f32]) -> f32 {
    on_cpu.iter().zip(on_gpu).map(|(a, b)| a * b).sum()
}

/// Whether the GPU agrees with the CPU closely enough to be used
/// (`backend::MIN_PROBE_COSINE`, the native rule).
#[wasm_bindgen(js_name = probeAccepts)]
pub fn probe_accepts(cosine: f32) -> bool {
    cosine >= crate::backend::MIN_PROBE_COSINE
}

/// Runs KPL (greedy OT then proxy learning) on raw embeddings and returns the
/// predictions; used by the benchmarks and by custom-label mode.
#[wasm_bindgen(js_name = runKpl)]
#[allow(clippy::too_many_arguments)]
pub fn run_kpl(
    images: &[f32],
    n: usize,
    descriptions: &[f32],
    class_of: &[u32],
    num_classes: usize,
    k: usize,
    iters_proxy: usize,
) -> Result<Vec<u32>, JsError> {
    let image_rows = rows(images, n, "images")?;
    let dim = image_rows[0].len();
    let names = (0..num_classes).map(|c| c.to_string()).collect();
    let kb = kpl_core::KnowledgeEmbeddings::new(
        dim,
        names,
        descriptions.to_vec(),
        class_of.iter().map(|&c| c as usize).collect(),
    )
    .map_err(js_error)?;
    let matrix = kpl_core::Matrix::from_rows(&image_rows).map_err(js_error)?;
    let params = kpl_core::KplParams { k, iters_proxy, ..Default::default() };
    let outcome = kpl_core::run(&matrix, &kb, &params, kpl_core::Method::Kpl).map_err(js_error)?;
    Ok(outcome.predictions.iter().map(|&p| p as u32).collect())
}
