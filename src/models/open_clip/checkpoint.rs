//! An open_clip checkpoint's tensors, from either file open_clip writes:
//! `open_clip_model.safetensors` or `open_clip_pytorch_model.bin` (a
//! `torch.save` zip archive), told apart by their bytes rather than their
//! names. Everything is read in pure Rust (also in wasm32). A safetensors
//! file is read a tensor at a time from wherever its bytes lie
//! ([`open_safetensors`]); a PyTorch archive is read from memory.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::io::byte_source::ByteSource;
use crate::io::safetensors::SafetensorsSource;

/// A zip archive's local-file-header signature (`torch.save` since PyTorch 1.6).
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Whether the file starts as a zip archive (a `torch.save` checkpoint)
/// rather than a safetensors file.
pub fn is_zip<S: ByteSource + ?Sized>(bytes: &S) -> bool {
    let mut magic = [0u8; 4];
    bytes.read_at(0, &mut magic).is_ok() && magic == ZIP_MAGIC
}

/// The whole file in memory (a PyTorch archive, for its unpickler).
pub fn read_all<S: ByteSource + ?Sized>(bytes: &S, path: &str) -> Result<Vec<u8>> {
    let len = usize::try_from(bytes.len()).map_err(|_| Error::model(path, "too large for this platform"))?;
    let mut out = vec![0u8; len];
    bytes.read_at(0, &mut out).map_err(|e| Error::io(path, e))?;
    Ok(out)
}

/// A checkpoint that is not a zip archive, opened as a safetensors file to be
/// read a tensor at a time; the error says it is neither.
pub fn open_safetensors<S: ByteSource>(bytes: S, path: &str) -> Result<SafetensorsSource<S>> {
    SafetensorsSource::open(bytes, path).map_err(|e| match e {
        Error::Model { message, .. } => Error::model(path, format!("not a PyTorch zip archive, and {message}")),
        other => other,
    })
}

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
