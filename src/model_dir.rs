//! Loading a model folder from disk, whichever it is: a Hugging Face CLIP or
//! SigLIP folder, an open_clip folder ([`crate::model_files`]) or a `kpl pack` bundle (native only;
//! the browser fetches the same files and hands their bytes to `Pipeline::load`).

use std::path::Path;

use crate::error::Result;
use crate::model_files::{is_open_clip_dir, read_model_dir, read_open_clip_dir};
use crate::pipeline::Pipeline;

/// Loads a Hugging Face CLIP or SigLIP folder, an open_clip folder, or a bundle folder made by `kpl pack`
/// (recognised by its `manifest.json`; every file is checked against it).
pub fn load_model_dir(dir: &Path) -> Result<Pipeline> {
    if crate::bundle::is_bundle_dir(dir) {
        return crate::bundle::load_bundle_dir(dir);
    }
    if is_open_clip_dir(dir) {
        return Pipeline::load_open_clip(read_open_clip_dir(dir)?);
    }
    Pipeline::load(read_model_dir(dir)?)
}
