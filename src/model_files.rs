//! Reading a model folder's files from disk (native only; the browser fetches
//! the same files): a Hugging Face CLIP or SigLIP folder into [`ModelFiles`],
//! an open_clip folder into [`OpenClipFiles`]. Below both `model_dir` (which
//! also loads bundles) and `bundle::pack` (which reads the folder it packs), so
//! neither depends on the other.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::byte_source::FileBytes;
use crate::pipeline::{ModelFiles, OpenClipFiles};
use crate::tokenizer::TokenizerFiles;

pub use crate::models::open_clip::{OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS};

fn read_required(dir: &Path, name: &str) -> Result<(String, Vec<u8>)> {
    let path = dir.join(name);
    let shown = path.display().to_string();
    match std::fs::read(&path) {
        Ok(bytes) => Ok((shown, bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::model(shown, "missing: a model folder needs config.json and model.safetensors"))
        }
        Err(e) => Err(Error::io(shown, e)),
    }
}

/// `name` opened to be read by position (the weights: each tensor is read
/// from the file as the model takes it); missing is an error, as for
/// [`read_required`].
fn open_required(dir: &Path, name: &str) -> Result<(String, FileBytes)> {
    match open_optional(dir, name)? {
        Some(found) => Ok(found),
        None => Err(Error::model(dir.join(name).display(), "missing: a model folder needs config.json and model.safetensors")),
    }
}

fn open_optional(dir: &Path, name: &str) -> Result<Option<(String, FileBytes)>> {
    let path = dir.join(name);
    match FileBytes::open(&path) {
        Ok(file) => Ok(Some((path.display().to_string(), file))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

fn read_optional(dir: &Path, name: &str) -> Result<Option<(String, Vec<u8>)>> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some((path.display().to_string(), bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

/// The vocabulary file a tokenizer falls back to without `tokenizer.json`.
#[derive(Clone, Copy, Debug)]
enum SlowVocabulary {
    /// `spiece.model` (SigLIP).
    SentencePiece,
    /// `vocab.txt` (open_clip's BERT text towers, as BiomedCLIP-style repositories ship it).
    WordPiece,
}

/// The folder's tokenizer as the repository ships it: `tokenizer.json` when
/// present, else the `slow` vocabulary file, either with `tokenizer_config.json`
/// (as transformers' `AutoTokenizer` prefers the fast file and reads the config
/// with either).
fn read_tokenizer_files(dir: &Path, slow: SlowVocabulary) -> Result<Option<TokenizerFiles>> {
    if let Some(json) = read_optional(dir, "tokenizer.json")? {
        return Ok(Some(TokenizerFiles::Json { json, config: read_optional(dir, "tokenizer_config.json")? }));
    }
    let file = match slow {
        SlowVocabulary::SentencePiece => "spiece.model",
        SlowVocabulary::WordPiece => "vocab.txt",
    };
    let Some(vocabulary) = read_optional(dir, file)? else { return Ok(None) };
    let config = read_optional(dir, "tokenizer_config.json")?;
    Ok(Some(match slow {
        SlowVocabulary::SentencePiece => TokenizerFiles::SentencePiece { model: vocabulary, config },
        SlowVocabulary::WordPiece => TokenizerFiles::WordPiece { vocab: vocabulary, config },
    }))
}

/// Reads the files of a model folder (`config.json`, the tokenizer:
/// `tokenizer.json`, else `spiece.model`, `preprocessor_config.json`) and
/// opens `model.safetensors`, to be read a tensor at a time.
pub fn read_model_dir(dir: &Path) -> Result<ModelFiles<FileBytes>> {
    if !dir.is_dir() {
        return Err(Error::model(dir.display(), "not a folder (expected a CLIP or SigLIP model folder)"));
    }
    Ok(ModelFiles {
        config: read_required(dir, "config.json")?,
        weights: open_required(dir, "model.safetensors")?,
        tokenizer: read_tokenizer_files(dir, SlowVocabulary::SentencePiece)?,
        preprocessor: read_optional(dir, "preprocessor_config.json")?,
    })
}

/// Whether the folder is an open_clip checkpoint (it has `open_clip_config.json`).
pub fn is_open_clip_dir(dir: &Path) -> bool {
    dir.join(OPEN_CLIP_CONFIG).is_file()
}

/// Reads an open_clip folder: `open_clip_config.json`, the first weight file
/// of [`OPEN_CLIP_WEIGHTS`] present (opened, to be read by position), the tokenizer
/// (`tokenizer.json`, else a BERT `vocab.txt` with `tokenizer_config.json`)
/// and a BERT `config.json` when present.
pub fn read_open_clip_dir(dir: &Path) -> Result<OpenClipFiles<FileBytes>> {
    let config = read_required(dir, OPEN_CLIP_CONFIG)?;
    let mut weights = None;
    for name in OPEN_CLIP_WEIGHTS {
        if let Some(found) = open_optional(dir, name)? {
            weights = Some(found);
            break;
        }
    }
    let weights = weights.ok_or_else(|| {
        Error::model(dir.display(), format!("has {OPEN_CLIP_CONFIG} but no weights (one of {})", OPEN_CLIP_WEIGHTS.join(", ")))
    })?;
    Ok(OpenClipFiles {
        config,
        weights,
        tokenizer: read_tokenizer_files(dir, SlowVocabulary::WordPiece)?,
        text_config: read_optional(dir, "config.json")?,
    })
}
