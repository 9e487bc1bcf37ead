//! An open_clip checkpoint's tensors, from either file open_clip writes:
//! `open_clip_model.safetensors` or `open_clip_pytorch_model.bin` (a
//! `torch.save` zip archive), told apart by their bytes rather than their
//! names. Everything is read in pure Rust (also in wasm32).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// A zip archive's local-file-header signature (`torch.save` since PyTorch 1.6).
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// The tensors of a checkpoint file's bytes, by name; `path` names the file in errors.
pub fn read_tensors(bytes: &[u8], path: &str) -> Result<HashMap<String, Tensor>> {
    if bytes.starts_with(ZIP_MAGIC) {
        return read_pytorch(bytes, path);
    }
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| Error::model(path, format!("neither a PyTorch zip archive nor a readable safetensors file ({e})")))
}

/// `torch.save`'s zip archive through the restricted unpickler of `crate::io::pytorch`.
fn read_pytorch(bytes: &[u8], path: &str) -> Result<HashMap<String, Tensor>> {
    Ok(crate::io::pytorch::StateDict::from_bytes(bytes, path)?.into_tensors())
}
