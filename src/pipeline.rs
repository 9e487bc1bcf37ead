//! A loaded model ready to embed: the weights of any family, the tokenizer and the image
//! preprocessing, all built from the bytes of a model folder's files so that the
//! CLI (which reads them from disk) and the browser (which fetches them) share
//! every step after I/O.

use candle_core::Device;

use crate::error::{Error, Result};
use crate::io::byte_source::ByteSource;
use crate::models::{Family, Model, ModelConfig, NO_IMAGE_ENCODER, NO_TEXT_ENCODER};
use crate::nn::l2_normalize;
use crate::nn::weights::Weights;
use crate::preprocess::dicom::{VoiChoice, VoiUsed};
use crate::preprocess::{decode_rgb8_with, pil_resize::Image8, DecodeLimits, PixelTensor, Preprocessing};
use crate::models::open_clip::config::{BertConfigJson, TextKind};
use crate::models::open_clip::OpenClipConfig;
use crate::text::wordpiece::WordPieceTokenizer;
use crate::tokenizer::{ClipTokenizer, TextTokenizer, TokenizerFiles};

/// A model folder's files as bytes, each with the name used in error messages;
/// the weights as any [`ByteSource`] (the browser's stay in their JavaScript
/// array: each tensor is copied out once, as the model takes it).
pub struct ModelFiles<W = Vec<u8>> {
    pub config: (String, Vec<u8>),
    pub weights: (String, W),
    pub tokenizer: Option<TokenizerFiles>,
    pub preprocessor: Option<(String, Vec<u8>)>,
}

/// An open_clip folder's files as bytes, each with the name used in errors;
/// the weights as any [`ByteSource`] (as [`ModelFiles`]').
pub struct OpenClipFiles<W = Vec<u8>> {
    /// `open_clip_config.json`.
    pub config: (String, Vec<u8>),
    /// `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`.
    pub weights: (String, W),
    pub tokenizer: Option<TokenizerFiles>,
    /// The BERT text tower's `config.json`, when the folder has one
    /// (BiomedCLIP's repository does not: sizes then come from the tensors).
    pub text_config: Option<(String, Vec<u8>)>,
}

pub struct Pipeline {
    pub model: Model,
    pub tokenizer: Option<TextTokenizer>,
    pub preprocessing: Preprocessing,
    pub limits: DecodeLimits,
    /// The window greyscale DICOM images are rendered with (default: the README's rule).
    pub voi: VoiChoice,
    tokenizer_missing: String,
    /// The GPU engine, when [`Self::select_backend`] attached one.
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    pub accelerator: crate::engine::Accelerator,
}

impl Pipeline {
    /// The family is read from `config.json` (`ModelConfig::from_json`).
    pub fn load<W: ByteSource + 'static>(files: ModelFiles<W>) -> Result<Self> {
        let (config_name, config_bytes) = &files.config;
        let config = ModelConfig::from_json(config_bytes, config_name)?;
        let (weights_name, weights) = files.weights;
        let model = Model::from_safetensors(&config, weights, &weights_name)?;
        Self::assemble(model, config_name, files.tokenizer, files.preprocessor)
    }

    /// Loads an open_clip folder: the configuration is sized from the
    /// checkpoint's tensors ([`OpenClipConfig::resolve`]). A safetensors
    /// file is read a tensor at a time, as [`Self::load`] reads one; a PyTorch
    /// zip archive is read whole first (its unpickler works on bytes in memory).
    pub fn load_open_clip<W: ByteSource + 'static>(files: OpenClipFiles<W>) -> Result<Self> {
        use crate::models::open_clip::checkpoint;
        let (config_name, config_bytes) = &files.config;
        let (weights_name, weights) = files.weights;
        let text_config = files.text_config.as_ref();
        let (config, w) = if checkpoint::is_zip(&weights) {
            let tensors = checkpoint::read_tensors(&checkpoint::read_all(&weights, &weights_name)?, &weights_name)?;
            let shapes = |name: &str| tensors.get(name).map(|t| t.dims().to_vec());
            let config = resolve_open_clip(config_bytes, config_name, &weights_name, &shapes, text_config)?;
            (config, Weights::dense(candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu)))
        } else {
            let source = checkpoint::open_safetensors(weights, &weights_name)?;
            let shapes = |name: &str| source.shape(name).map(<[usize]>::to_vec);
            let config = resolve_open_clip(config_bytes, config_name, &weights_name, &shapes, text_config)?;
            (config, Weights::from_source(std::rc::Rc::new(source)))
        };
        let model = Model::load_towers(&ModelConfig::OpenClip(config), &w, crate::models::Towers::BOTH)
            .map_err(|e| Error::model(&weights_name, crate::nn::describe_load_error(&e)))?;
        drop(w);
        Self::assemble(model, config_name, files.tokenizer, None)
    }

    /// A pipeline around a loaded model, with its tokenizer and preprocessing
    /// read from their JSON files' bytes (each with the name used in errors).
    /// `model_name` names the model in errors.
    pub fn assemble(
        model: Model,
        model_name: &str,
        tokenizer: Option<TokenizerFiles>,
        preprocessor: Option<(String, Vec<u8>)>,
    ) -> Result<Self> {
        let image_size = model.image_size();
        let family = model.family();
        let preprocessing = match (&preprocessor, &model.config) {
            // open_clip's transform is its config's `preprocess_cfg`.
            (_, ModelConfig::OpenClip(c)) => Preprocessing::open_clip(&c.preprocess),
            (Some((name, bytes)), _) => Preprocessing::from_json(bytes, name, image_size, family)?,
            (None, _) => Preprocessing::family_default(family, image_size),
        };
        if let Some((h, w)) = preprocessing.crop {
            if h != image_size || w != image_size {
                let name = preprocessor.as_ref().map(|p| p.0.as_str()).unwrap_or("preprocessor_config.json");
                return Err(Error::model(
                    name,
                    format!("crop size {h}×{w} does not match the model's image_size {image_size}"),
                ));
            }
        }
        let tokenizer = tokenizer.as_ref().map(|files| read_tokenizer(&model, files)).transpose()?;
        Ok(Self {
            model,
            tokenizer,
            preprocessing,
            limits: DecodeLimits::default(),
            voi: VoiChoice::Default,
            tokenizer_missing: format!(
                "{model_name}: the model has no tokenizer (tokenizer.json, spiece.model or, for a BERT text tower, vocab.txt), so it cannot embed text"
            ),
            #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
            accelerator: Default::default(),
        })
    }

    /// Adds the text tower (and its tokenizer) of the same model to a pipeline
    /// loaded without it: a bundle's text encoder, fetched when first needed.
    pub fn attach_text(&mut self, text: Model, tokenizer: Option<TokenizerFiles>, name: &str) -> Result<()> {
        let mine = self.model.fingerprint()?;
        let theirs = text.fingerprint()?;
        if mine != theirs {
            return Err(Error::model(
                name,
                format!("belongs to another model (fingerprint {theirs}, the loaded model has {mine})"),
            ));
        }
        if let Some(files) = &tokenizer {
            self.tokenizer = Some(read_tokenizer(&text, files)?);
        }
        self.model = self.model.clone().merge(text);
        Ok(())
    }

    /// Attaches the GPU engine when `requested` calls for it and it agrees with
    /// the CPU on the probe image ([`crate::engine::select_backend`]); otherwise
    /// the CPU stays in charge, with the reason in the returned note.
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    pub fn select_backend(&mut self, requested: crate::engine::Backend) -> crate::engine::BackendChoice {
        crate::engine::select_backend(&self.model, &self.accelerator, requested)
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    pub fn family(&self) -> Family {
        self.model.family()
    }

    /// The length of the model's embeddings.
    pub fn embedding_dim(&self) -> usize {
        self.model.embedding_dim()
    }

    pub fn is_random(&self) -> bool {
        self.model.config.is_random()
    }

    pub fn tokenizer(&self) -> Result<&TextTokenizer> {
        if !self.model.has_text() {
            return Err(Error::Input(NO_TEXT_ENCODER.into()));
        }
        self.tokenizer.as_ref().ok_or_else(|| Error::Input(self.tokenizer_missing.clone()))
    }

    /// Decodes and preprocesses one image file's bytes.
    pub fn prepare_image(&self, bytes: &[u8], name: &str) -> Result<PixelTensor> {
        self.prepare_image_with(bytes, name, self.voi).map(|(pixels, _)| pixels)
    }

    /// [`Self::prepare_image`] with the window `voi` for a greyscale DICOM file
    /// instead of the pipeline's, and the window it used (`None` for other
    /// images), from the same decode.
    pub fn prepare_image_with(
        &self,
        bytes: &[u8],
        name: &str,
        voi: VoiChoice,
    ) -> Result<(PixelTensor, Option<VoiUsed>)> {
        let (rgb, used) = decode_rgb8_with(bytes, name, self.limits, voi)?;
        Ok((self.prepare_rgb(&rgb, name)?, used))
    }

    pub fn prepare_rgb(&self, rgb: &Image8, name: &str) -> Result<PixelTensor> {
        let pixels = self.preprocessing.pixels(rgb);
        let size = self.model.image_size();
        if pixels.height != size || pixels.width != size {
            return Err(Error::image(
                name,
                format!(
                    "preprocessing gives {}×{} pixels but the model takes {size}×{size}; \
                     check preprocessor_config.json",
                    pixels.width, pixels.height
                ),
            ));
        }
        Ok(pixels)
    }

    /// Projected image embeddings for preprocessed images, L2-normalised when asked.
    pub fn embed_pixels(&self, batch: &[PixelTensor], normalize: bool) -> Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if !self.model.has_vision() {
            return Err(Error::Input(NO_IMAGE_ENCODER.into()));
        }
        #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
        if let Some(rows) = self.accelerator.image_rows(batch, normalize) {
            return Ok(rows);
        }
        crate::engine::cpu::image_rows(&self.model, batch, normalize)
    }

    /// The L2-normalised embedding of one image file.
    pub fn embed_image_bytes(&self, bytes: &[u8], name: &str) -> Result<Vec<f32>> {
        let pixels = self.prepare_image(bytes, name)?;
        Ok(self.embed_pixels(&[pixels], true)?.remove(0))
    }

    /// The embedding of unpadded ids (every id a real token).
    pub fn embed_ids(&self, ids: &[u32], normalize: bool) -> Result<Vec<f32>> {
        self.embed_tokens(ids, ids.len(), normalize)
    }

    /// The embedding of ids whose first `length` are real tokens (the rest
    /// padding; 0 for an empty text, all padding, which then attends to every id).
    pub fn embed_tokens(&self, ids: &[u32], length: usize, normalize: bool) -> Result<Vec<f32>> {
        if !self.model.has_text() {
            return Err(Error::Input(NO_TEXT_ENCODER.into()));
        }
        let vocab = self.model.vocab_size();
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Input(format!(
                "token id {bad} is outside the model's vocabulary of {vocab}: the tokenizer does not belong to this model"
            )));
        }
        if ids.is_empty() || ids.len() > self.model.max_text_positions() {
            return Err(Error::Input(format!(
                "{} tokens do not fit the text context of {}",
                ids.len(),
                self.model.max_text_positions()
            )));
        }
        if length > ids.len() {
            return Err(Error::Input(format!("{length} real tokens among {} ids", ids.len())));
        }
        #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
        if let Some(row) = self.accelerator.text_row(ids, length, normalize) {
            return Ok(row);
        }
        let mut features = self.model.text_features(ids, length)?.unsqueeze(0)?;
        if normalize {
            features = l2_normalize(&features)?;
        }
        Ok(features.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// The L2-normalised embedding of a text.
    pub fn embed_text(&self, text: &str) -> Result<Vec<f32>> {
        let (ids, length) = self.tokenizer()?.encode_with_length(text)?;
        self.embed_tokens(&ids, length, true)
    }

    /// Plain zero-shot scores of one image over labels, as the model's family
    /// scores them ([`crate::models::Scoring`]: CLIP's softmax, SigLIP's sigmoid).
    pub fn zero_shot(&self, image_embedding: &[f32], label_embeddings: &[Vec<f32>]) -> Result<Vec<f32>> {
        let dim = self.embedding_dim();
        if let Some(bad) = std::iter::once(image_embedding).chain(label_embeddings.iter().map(Vec::as_slice)).find(|e| e.len() != dim) {
            return Err(Error::Input(format!(
                "an embedding of {} values where the model's have {dim}: it comes from another model",
                bad.len()
            )));
        }
        let cosines: Vec<f32> =
            label_embeddings.iter().map(|t| t.iter().zip(image_embedding).map(|(a, b)| a * b).sum::<f32>()).collect();
        Ok(self.model.zero_shot_scores(&cosines))
    }
}

fn named(f: &(String, Vec<u8>)) -> (&str, &[u8]) {
    (f.0.as_str(), f.1.as_slice())
}

/// The tokenizer of `model`'s family from its files, checked against its text
/// tower (open_clip's BERT towers: open_clip's `HFTokenizer`; its other towers:
/// CLIP's BPE, checked against the token table).
fn read_tokenizer(model: &Model, files: &TokenizerFiles) -> Result<TextTokenizer> {
    let (context, vocab) = (model.max_text_positions(), model.vocab_size());
    match (&model.config, files) {
        (ModelConfig::OpenClip(c), files) if c.text.kind == TextKind::HfBert => {
            let options = c.text.tokenizer.options(context);
            let tok = match files {
                TokenizerFiles::Json { json, config } => {
                    WordPieceTokenizer::from_files(Some(named(json)), None, config.as_ref().map(named), options)?
                }
                TokenizerFiles::WordPiece { vocab: v, config } => {
                    WordPieceTokenizer::from_files(None, Some(named(v)), config.as_ref().map(named), options)?
                }
                TokenizerFiles::SentencePiece { model: (name, _), .. } => {
                    return Err(Error::model(name, "a BERT text tower's tokenizer is tokenizer.json or vocab.txt, not a SentencePiece model"))
                }
            };
            tok.check_embedding_rows(vocab)?;
            Ok(TextTokenizer::OpenClipHf(tok))
        }
        (ModelConfig::OpenClip(_), TokenizerFiles::Json { json: (name, bytes), config }) => {
            let config = crate::tokenizer::read_config(config.as_ref())?;
            let tokenizer = ClipTokenizer::from_json_with_config(bytes, name, context, config.as_ref())?;
            tokenizer.check_vocabulary(vocab, name)?;
            Ok(TextTokenizer::Clip(tokenizer))
        }
        _ => TextTokenizer::load(files, model.family(), context, vocab),
    }
}

/// `open_clip_config.json` sized from the checkpoint's `tensors` (and the BERT
/// `config.json`, if given); errors name the file at fault.
pub fn resolve_open_clip(
    config: &[u8],
    config_name: &str,
    weights_name: &str,
    shapes: &dyn Fn(&str) -> Option<Vec<usize>>,
    text_config: Option<&(String, Vec<u8>)>,
) -> Result<OpenClipConfig> {
    let bert = match text_config {
        Some((name, bytes)) => Some(
            serde_json::from_slice::<BertConfigJson>(bytes)
                .map_err(|e| Error::model(name, format!("not a usable BERT config.json: {e}")))?,
        ),
        None => None,
    };
    OpenClipConfig::resolve(config, &shapes, bert.as_ref()).map_err(|m| {
        // A missing or misshapen tensor is the checkpoint's fault, not the config's.
        let at = if m.starts_with("missing tensor") || m.starts_with("tensor ") { weights_name } else { config_name };
        Error::model(at, m)
    })
}

/// The prompt plain zero-shot uses for a label.
pub fn zero_shot_prompt(label: &str) -> String {
    format!("a photo of a {label}.")
}
