//! Reading a Hugging Face CLIP or SigLIP folder (or a `kpl pack` bundle) from disk (native only; the browser
//! fetches the same files and hands their bytes to `Pipeline::load`).

use std::path::Path;

use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, ModelFiles};

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

fn read_optional(dir: &Path, name: &str) -> Result<Option<(String, Vec<u8>)>> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some((path.display().to_string(), bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

/// Reads the files of a model folder (`config.json`, `model.safetensors`,
/// `tokenizer.json`, `preprocessor_config.json`).
pub fn read_model_dir(dir: &Path) -> Result<ModelFiles> {
    if !dir.is_dir() {
        return Err(Error::model(dir.display(), "not a folder (expected a CLIP or SigLIP model folder)"));
    }
    Ok(ModelFiles {
        config: read_required(dir, "config.json")?,
        weights: read_required(dir, "model.safetensors")?,
        tokenizer: read_optional(dir, "tokenizer.json")?,
        preprocessor: read_optional(dir, "preprocessor_config.json")?,
    })
}

/// Loads a Hugging Face CLIP or SigLIP folder, or a bundle folder made by `kpl pack`
/// (recognised by its `manifest.json`; every file is checked against it).
pub fn load_model_dir(dir: &Path) -> Result<Pipeline> {
    if crate::bundle::is_bundle_dir(dir) {
        return crate::bundle::load_bundle_dir(dir);
    }
    Pipeline::load(read_model_dir(dir)?)
}
