//! Model bundles made by `kpl pack`: a folder the web app downloads piece by piece.
//!
//! ```text
//! OUT/
//!   manifest.json        what is in the folder, with each file's size and SHA-256
//!   image_encoder.gguf   vision_model.*, visual_projection.weight, logit_scale
//!   text_encoder.gguf    text_model.*, text_projection.weight, logit_scale
//!   TASK.kplkb           knowledge bases built with the full-precision model
//! ```
//!
//! Each encoder is a self-describing GGUF file (the container candle reads and
//! writes): its metadata carries `kpl.format_version`, `kpl.kind`, `kpl.dtype`,
//! `kpl.fingerprint`, `kpl.config_json` (the checkpoint's `config.json`) and
//! either `kpl.preprocessor_json` (image encoder) or the tokenizer as the
//! repository shipped it (text encoder): `kpl.tokenizer_json` (with
//! `kpl.tokenizer_config_json` when the folder had one), or
//! `kpl.spiece_model` (the `spiece.model` bytes, base64) with
//! `kpl.tokenizer_config_json` when the folder had one, or `kpl.vocab_txt`
//! (a BERT WordPiece `vocab.txt`) with `kpl.tokenizer_config_json`. Linear weights are f32, f16, q8_0 or q4_K (see
//! [`PackDtype::linear_type`]); a linear whose input width is not a multiple of
//! 32 stays f16, and a q4 bundle keeps the two projections at q8_0.
//! Embeddings and the patch convolution are f16 (f32 in an f32 pack), norms,
//! biases and the class embedding f32.
//!
//! `manifest.json`:
//!
//! ```json
//! {"format_version": 1,
//!  "model": {"name", "fingerprint", "dtype", "random_weights", "projection_dim", "image_size"},
//!  "files": {"image_encoder": {"path", "bytes", "sha256"}, "text_encoder": {...}},
//!  "knowledge": [{"task", "title", "path", "bytes", "sha256", "classes": [...]}]}
//! ```
//!
//! Loading checks every file it reads against the manifest's size and SHA-256
//! before parsing it, so a truncated download or an altered file is reported by
//! name; a newer `format_version` is refused with a message saying so.

mod gguf_check;
mod gguf_tensors;
mod manifest;
#[cfg(not(target_arch = "wasm32"))]
pub mod pack;

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::rc::Rc;

use candle_core::quantized::{gguf_file, GgmlDType};
use serde::{Deserialize, Serialize};

use crate::io::byte_source::{ByteSource, SourceReader};
use crate::nn::weights::Weights;
use crate::models::{Model, ModelConfig, Towers};
use crate::nn::describe_load_error;
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::tokenizer::TokenizerFiles;
use gguf_tensors::GgufTensors;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use manifest::check_file_name;
pub use manifest::{sha256_of, verify, FileEntry, Files, KnowledgeEntry, Manifest, ModelInfo};

/// The bundle format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
pub const IMAGE_ENCODER: &str = "image_encoder.gguf";
pub const TEXT_ENCODER: &str = "text_encoder.gguf";

/// Precision of the linear layers in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackDtype {
    F32,
    F16,
    Q8,
    Q4,
}

impl PackDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            PackDtype::F32 => "f32",
            PackDtype::F16 => "f16",
            PackDtype::Q8 => "q8",
            PackDtype::Q4 => "q4",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(PackDtype::F32),
            "f16" => Some(PackDtype::F16),
            "q8" => Some(PackDtype::Q8),
            "q4" => Some(PackDtype::Q4),
            _ => None,
        }
    }

    /// The GGUF block type of a linear weight with this input width.
    ///
    /// - q8: q8_0, int8 blocks of 32 with an f16 scale.
    /// - q4: q4_K, 4-bit blocks of 32, each with its own 6-bit scale and minimum,
    ///   grouped by 8 under an f16 scale (4.5 bits a weight, the size of q4_0).
    ///   The asymmetric blocks and a search-based quantiser keep the random
    ///   ViT-B/16 at cosine 0.994 where q4_0 gives 0.985. Every CLIP width is a
    ///   multiple of 256; a narrower layer (test models) falls back to q8_0.
    /// - Rows whose width is not a multiple of 32 stay f16.
    pub fn linear_type(self, in_dim: usize) -> GgmlDType {
        match self {
            PackDtype::F32 => GgmlDType::F32,
            PackDtype::F16 => GgmlDType::F16,
            PackDtype::Q4 if in_dim.is_multiple_of(256) => GgmlDType::Q4K,
            PackDtype::Q8 | PackDtype::Q4 if in_dim.is_multiple_of(32) => GgmlDType::Q8_0,
            PackDtype::Q8 | PackDtype::Q4 => GgmlDType::F16,
        }
    }
}

pub(crate) fn newer_version(name: &str, version: u64) -> Error {
    Error::model(
        name,
        format!(
            "bundle format version {version} is newer than this kpl understands (up to {FORMAT_VERSION}); \
             update kpl or pack the model again with this version"
        ),
    )
}

/// Which tower an encoder file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    Image,
    Text,
}

impl EncoderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EncoderKind::Image => "image_encoder",
            EncoderKind::Text => "text_encoder",
        }
    }

    pub fn towers(self) -> Towers {
        match self {
            EncoderKind::Image => Towers::VISION,
            EncoderKind::Text => Towers::TEXT,
        }
    }
}

/// GGUF metadata keys.
pub mod keys {
    pub const FORMAT_VERSION: &str = "kpl.format_version";
    pub const KIND: &str = "kpl.kind";
    pub const DTYPE: &str = "kpl.dtype";
    pub const FINGERPRINT: &str = "kpl.fingerprint";
    pub const CONFIG_JSON: &str = "kpl.config_json";
    pub const PREPROCESSOR_JSON: &str = "kpl.preprocessor_json";
    pub const TOKENIZER_JSON: &str = "kpl.tokenizer_json";
    /// `spiece.model`, base64 (GGUF strings are read as UTF-8 text).
    pub const SPIECE_MODEL: &str = "kpl.spiece_model";
    pub const TOKENIZER_CONFIG_JSON: &str = "kpl.tokenizer_config_json";
    /// A BERT WordPiece `vocab.txt` (open_clip folders without tokenizer.json).
    pub const VOCAB_TXT: &str = "kpl.vocab_txt";
}

/// One encoder file, parsed: its metadata, and its tensors, read from the
/// file's bytes when the model takes them.
pub struct EncoderFile {
    pub name: String,
    pub kind: EncoderKind,
    pub dtype: String,
    pub fingerprint: String,
    pub config_json: String,
    pub preprocessor_json: Option<String>,
    /// The text encoder's tokenizer files, named `<encoder file> (<file name>)`.
    pub tokenizer: Option<TokenizerFiles>,
    tensors: GgufTensors,
}

/// The tokenizer files an encoder's metadata carries (see the module docs).
fn tokenizer_from_metadata(string: impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<TokenizerFiles>> {
    let named = |file: &str, text: String| (format!("{name} ({file})"), text.into_bytes());
    let config = || string(keys::TOKENIZER_CONFIG_JSON).map(|t| named("tokenizer_config.json", t));
    if let Some(json) = string(keys::TOKENIZER_JSON) {
        return Ok(Some(TokenizerFiles::Json { json: named("tokenizer.json", json), config: config() }));
    }
    if let Some(vocab) = string(keys::VOCAB_TXT) {
        return Ok(Some(TokenizerFiles::WordPiece { vocab: named("vocab.txt", vocab), config: config() }));
    }
    let Some(encoded) = string(keys::SPIECE_MODEL) else { return Ok(None) };
    let bytes = base64::decode(encoded.trim())
        .map_err(|e| Error::model(name, format!("{} is not base64 ({e})", keys::SPIECE_MODEL)))?;
    Ok(Some(TokenizerFiles::SentencePiece {
        model: (format!("{name} (spiece.model)"), bytes),
        config: config(),
    }))
}

impl EncoderFile {
    /// Reads an encoder GGUF (after [`verify`]) into memory; `name` names it
    /// in errors. [`Self::open`] leaves the bytes where they are.
    pub fn read<R: Read + Seek>(reader: &mut R, name: &str) -> Result<Self> {
        let mut bytes = Vec::new();
        reader
            .seek(SeekFrom::Start(0))
            .and_then(|_| reader.read_to_end(&mut bytes))
            .map_err(|e| Error::io(name, e))?;
        Self::open(bytes, name)
    }

    /// Opens an encoder GGUF (after [`verify`]): its header is parsed now, its
    /// tensors are read from `bytes` when the model takes them, each once.
    /// `name` names it in errors.
    pub fn open<S: ByteSource + 'static>(bytes: S, name: &str) -> Result<Self> {
        let unreadable = |e: String| Error::model(name, format!("not a readable GGUF file ({e})"));
        let mut reader = BufReader::with_capacity(1 << 16, SourceReader::new(&bytes));
        // Headers that would make candle's reader panic or over-allocate are
        // refused first (see `gguf_check`).
        gguf_check::check_header(&mut reader).map_err(unreadable)?;
        let content = gguf_file::Content::read(&mut reader).map_err(|e| unreadable(e.to_string()))?;
        drop(reader);
        let meta = &content.metadata;
        let string = |key: &str| -> Option<String> { meta.get(key).and_then(|v| v.to_string().ok()).cloned() };
        let version = meta
            .get(keys::FORMAT_VERSION)
            .and_then(|v| v.to_u32().ok())
            .ok_or_else(|| Error::model(name, format!("not a kpl encoder (no {} in its metadata)", keys::FORMAT_VERSION)))?;
        if version > FORMAT_VERSION {
            return Err(newer_version(name, u64::from(version)));
        }
        let kind = match string(keys::KIND).as_deref() {
            Some("image_encoder") => EncoderKind::Image,
            Some("text_encoder") => EncoderKind::Text,
            other => return Err(Error::model(name, format!("unknown encoder kind {other:?}"))),
        };
        let required = |key: &str| string(key).ok_or_else(|| Error::model(name, format!("{key} missing from its metadata")));
        let dtype = required(keys::DTYPE)?;
        let fingerprint = required(keys::FINGERPRINT)?;
        let config_json = required(keys::CONFIG_JSON)?;
        let preprocessor_json = string(keys::PREPROCESSOR_JSON);
        let tokenizer = tokenizer_from_metadata(string, name)?;
        let tensors = GgufTensors::new(content.tensor_infos, content.tensor_data_offset, Box::new(bytes), name)
            .map_err(|e| Error::model(name, e))?;
        Ok(Self {
            name: name.to_string(),
            kind,
            dtype,
            fingerprint,
            config_json,
            preprocessor_json,
            tokenizer,
            tensors,
        })
    }

    /// Verifies against the manifest entry, then reads.
    pub fn read_verified<R: Read + Seek>(reader: &mut R, name: &str, entry: &FileEntry) -> Result<Self> {
        verify(reader, name, entry)?;
        Self::read(reader, name)
    }

    /// The tower this file holds, as a partial model.
    pub fn model(self) -> Result<(Model, Extras)> {
        let config = ModelConfig::from_json(self.config_json.as_bytes(), &format!("{} (config)", self.name))?;
        let weights = Weights::from_source(Rc::new(self.tensors));
        let model = Model::load_towers(&config, &weights, self.kind.towers())
            .map_err(|e| Error::model(&self.name, describe_load_error(&e)))?
            .with_fingerprint(self.fingerprint);
        let extras = Extras {
            name: self.name,
            preprocessor: self.preprocessor_json.map(String::into_bytes),
            tokenizer: self.tokenizer,
        };
        Ok((model, extras))
    }

    fn check_against(&self, manifest: &Manifest, expected: EncoderKind) -> Result<()> {
        if self.kind != expected {
            return Err(Error::model(
                &self.name,
                format!("holds the {} where the manifest lists the {}", self.kind.as_str(), expected.as_str()),
            ));
        }
        if self.fingerprint != manifest.model.fingerprint {
            return Err(Error::model(
                &self.name,
                format!(
                    "belongs to another model (fingerprint {}, manifest.json says {})",
                    self.fingerprint, manifest.model.fingerprint
                ),
            ));
        }
        Ok(())
    }
}

/// The files an encoder carries in its metadata.
pub struct Extras {
    pub name: String,
    pub preprocessor: Option<Vec<u8>>,
    pub tokenizer: Option<TokenizerFiles>,
}

/// Builds a pipeline from a bundle's encoders, already read (and verified), at
/// least one of them. The manifest ties them together: both must carry its
/// fingerprint.
pub fn load_pipeline(
    manifest: &Manifest,
    manifest_name: &str,
    image: Option<EncoderFile>,
    text: Option<EncoderFile>,
) -> Result<Pipeline> {
    if let Some(f) = &image {
        f.check_against(manifest, EncoderKind::Image)?;
    }
    if let Some(f) = &text {
        f.check_against(manifest, EncoderKind::Text)?;
    }
    let (model, image_extras, text_extras) = match (image, text) {
        (Some(i), Some(t)) => {
            let (im, ie) = i.model()?;
            let (tm, te) = t.model()?;
            if im.config != tm.config {
                return Err(Error::model(&te.name, "its config.json differs from the image encoder's"));
            }
            (im.merge(tm), Some(ie), Some(te))
        }
        (Some(i), None) => {
            let (im, ie) = i.model()?;
            (im, Some(ie), None)
        }
        (None, Some(t)) => {
            let (tm, te) = t.model()?;
            (tm, None, Some(te))
        }
        (None, None) => return Err(Error::model(manifest_name, "no encoder to load")),
    };
    let preprocessor =
        image_extras.and_then(|e| e.preprocessor.map(|b| (format!("{} (preprocessor_config.json)", e.name), b)));
    let tokenizer = text_extras.and_then(|e| e.tokenizer);
    Pipeline::assemble(model, manifest_name, tokenizer, preprocessor)
}

/// Adds a bundle's text encoder (read and verified) to a pipeline loaded from
/// the same bundle without it.
pub fn attach_text_encoder(pipeline: &mut Pipeline, manifest: &Manifest, text: EncoderFile) -> Result<()> {
    text.check_against(manifest, EncoderKind::Text)?;
    let (model, extras) = text.model()?;
    if model.config != pipeline.model.config {
        return Err(Error::model(&extras.name, "its config.json differs from the loaded model's"));
    }
    pipeline.attach_text(model, extras.tokenizer, &extras.name)
}

/// Native: reading a bundle folder from disk.
#[cfg(not(target_arch = "wasm32"))]
mod dir {
    use std::fs::File;
    use std::io::BufReader;
    use std::path::Path;

    use super::*;

    /// True when `dir` is a bundle folder (it has a `manifest.json`).
    pub fn is_bundle_dir(dir: &Path) -> bool {
        dir.join(MANIFEST).is_file()
    }

    pub fn read_manifest(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(path.display(), e))?;
        Manifest::from_json(&bytes, &path.display().to_string())
    }

    /// Verifies one listed file against the manifest, streaming it from disk.
    pub fn verify_file(dir: &Path, entry: &FileEntry) -> Result<()> {
        let path = dir.join(&entry.path);
        let shown = path.display().to_string();
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::model(&shown, "missing: manifest.json lists it")
            } else {
                Error::io(&shown, e)
            }
        })?;
        verify(&mut BufReader::with_capacity(1 << 20, file), &shown, entry)
    }

    /// Verifies every file the manifest lists (encoders and knowledge bases).
    pub fn verify_bundle_dir(dir: &Path) -> Result<Manifest> {
        let manifest = read_manifest(dir)?;
        for entry in manifest.files.image_encoder.iter().chain(&manifest.files.text_encoder) {
            verify_file(dir, entry)?;
        }
        for k in &manifest.knowledge {
            verify_file(dir, &k.file)?;
        }
        Ok(manifest)
    }

    fn read_encoder(dir: &Path, entry: &FileEntry) -> Result<EncoderFile> {
        let path = dir.join(&entry.path);
        let shown = path.display().to_string();
        verify_file(dir, entry)?;
        // Read by position as the model takes each tensor: the file is never
        // held whole in memory (it was hashed as a stream just above).
        let file = crate::io::byte_source::FileBytes::open(&path).map_err(|e| Error::io(&shown, e))?;
        EncoderFile::open(file, &shown)
    }

    /// Loads a bundle folder: the encoders the manifest lists, each checked
    /// against its size and SHA-256 first.
    pub fn load_bundle_dir(dir: &Path) -> Result<Pipeline> {
        let manifest = read_manifest(dir)?;
        let image = manifest.files.image_encoder.as_ref().map(|e| read_encoder(dir, e)).transpose()?;
        let text = manifest.files.text_encoder.as_ref().map(|e| read_encoder(dir, e)).transpose()?;
        load_pipeline(&manifest, &dir.display().to_string(), image, text)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use dir::{is_bundle_dir, load_bundle_dir, read_manifest, verify_bundle_dir, verify_file};
