//! PyTorch checkpoints as `torch.save` writes them since PyTorch 1.6 (a zip
//! archive: `<archive>/data.pkl`, the pickled object, and
//! `<archive>/data/<key>`, one entry per storage, stored uncompressed), read
//! in pure Rust so that it also runs in wasm32 — for example BiomedCLIP's
//! `open_clip_pytorch_model.bin`.
//!
//! The pickle goes through the restricted unpickler of [`super::pickle`]
//! (nothing in the file is ever called). The state dict is found as open_clip's
//! `load_state_dict` (open_clip/factory.py) finds it: the object itself, or its
//! `state_dict` entry when it is a dict holding one; when the first key starts
//! with `module`, the first 7 characters of every key are dropped (checkpoints
//! saved from `DistributedDataParallel`).
//!
//! Each tensor is a strided view of a storage (offsets, strides and several
//! views of one storage are honoured, as `_rebuild_tensor_v2` makes them); it
//! is copied out into a contiguous candle tensor of its stored dtype (f32,
//! f16, bf16, f64, i64, i32, i16, u8; bool as u8). Every size is checked
//! before anything is allocated: a storage entry must hold exactly the
//! elements its persistent id declares, a view must lie inside its storage
//! and have no more elements than it, and all tensors together at most
//! [`MAX_EXPANSION`] times the file's size. The legacy formats (a bare pickle,
//! PyTorch < 1.6; a tar archive, < 0.4) are refused with a message saying how
//! to re-save the file.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::cast_possible_truncation
)]

use std::collections::HashMap;
use std::io::Cursor;

use candle_core::{DType, Device, Tensor};
use zip::{CompressionMethod, ZipArchive};

use super::pickle::{self, PResult, StorageDType, TensorRef, Value};
use crate::error::{Error, Result};
use crate::nn::weights::Weights;

/// All tensors together may take at most this many times the file's bytes
/// (views of one storage are each copied out; a state dict rarely has more
/// than a tied embedding twice).
pub const MAX_EXPANSION: usize = 4;

/// The tensors of a checkpoint's state dict, by name, in the file's order.
#[derive(Debug, Clone)]
pub struct StateDict {
    names: Vec<String>,
    tensors: HashMap<String, Tensor>,
}

impl StateDict {
    /// Reads the bytes of a `torch.save` zip checkpoint. `path` names the
    /// file in every error (the browser passes the name it was given).
    ///
    /// Errors: a legacy (non-zip) checkpoint, a zip without one top-level
    /// `data.pkl`, a compressed or missing storage entry, a global other than
    /// those a state dict is made of (named, e.g. `posix.system`), a value
    /// that is not a tensor (named by its key), a view outside its storage,
    /// a big-endian checkpoint.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Self> {
        read(bytes).map_err(|m| Error::model(path, m))
    }

    /// Tensor names in the order the file lists them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.dims())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The tensors by name, in their stored dtypes.
    pub fn into_tensors(self) -> HashMap<String, Tensor> {
        self.tensors
    }

    /// The tensors as the model loaders' weight source: tensors in memory
    /// (candle's `VarBuilder`, widened to f32 as each tensor is read).
    pub fn into_weights(self) -> Weights {
        Weights::dense(candle_nn::VarBuilder::from_tensors(self.tensors, DType::F32, &Device::Cpu))
    }
}

/// Says which old format a non-zip file is in, or that it is no checkpoint.
fn not_zip(bytes: &[u8]) -> String {
    let tar = bytes.get(257..262) == Some(b"ustar".as_slice());
    if bytes.first() == Some(&0x80) || tar {
        "a PyTorch checkpoint in the legacy format (PyTorch < 1.6: a bare pickle or a tar archive, \
         not the zip archive torch.save writes now); load it with PyTorch and save it again \
         (torch.save(torch.load(f, weights_only=True), f2)) or convert it to safetensors"
            .into()
    } else {
        "not a PyTorch checkpoint (torch.save writes a zip archive starting with \"PK\")".into()
    }
}

/// The bytes of a stored (uncompressed) archive entry, without copying.
fn entry<'a>(zip: &mut ZipArchive<Cursor<&'a [u8]>>, bytes: &'a [u8], name: &str) -> PResult<&'a [u8]> {
    let index = zip.index_for_name(name).ok_or_else(|| format!("the archive has no entry {name}"))?;
    let file = zip.by_index_raw(index).map_err(|e| format!("entry {name}: {e}"))?;
    if file.compression() != CompressionMethod::Stored {
        return Err(format!(
            "entry {name} is compressed ({}); torch.save stores entries uncompressed",
            file.compression()
        ));
    }
    if file.encrypted() {
        return Err(format!("entry {name} is encrypted"));
    }
    let (size, stored) = (file.size(), file.compressed_size());
    if size != stored {
        return Err(format!("entry {name} declares {size} bytes but stores {stored}"));
    }
    let start = file.data_start().ok_or_else(|| format!("entry {name}: no data offset"))?;
    let end = start.checked_add(size).ok_or_else(|| format!("entry {name}: size overflows"))?;
    let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
    range
        .and_then(|(s, e)| bytes.get(s..e))
        .ok_or_else(|| format!("entry {name} ({size} bytes at {start}) runs past the end of the file: truncated"))
}

/// The `<archive>/` prefix: the folder of the one top-level `data.pkl`.
fn archive_prefix(zip: &ZipArchive<Cursor<&[u8]>>) -> PResult<String> {
    let mut found: Option<String> = None;
    for name in zip.file_names().flatten() {
        let Some(prefix) = name.strip_suffix("data.pkl") else { continue };
        let top_level = prefix.strip_suffix('/').is_some_and(|dir| !dir.is_empty() && !dir.contains('/'));
        if !top_level {
            continue;
        }
        if found.is_some() {
            return Err("the archive holds more than one data.pkl".into());
        }
        found = Some(prefix.to_string());
    }
    found.ok_or_else(|| "a zip archive without <archive>/data.pkl: not a torch.save checkpoint".into())
}

fn read(bytes: &[u8]) -> PResult<StateDict> {
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(not_zip(bytes));
    }
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a readable zip archive ({e})"))?;
    let prefix = archive_prefix(&zip)?;
    if zip.index_for_name(&format!("{prefix}byteorder")).is_some() {
        let order = entry(&mut zip, bytes, &format!("{prefix}byteorder"))?;
        if order != b"little" {
            return Err(format!(
                "byte order {:?}: only little-endian checkpoints are read",
                String::from_utf8_lossy(order.get(..16).unwrap_or(order))
            ));
        }
    }
    let pkl = entry(&mut zip, bytes, &format!("{prefix}data.pkl"))?;
    let root = pickle::unpickle(pkl).map_err(|e| format!("{prefix}data.pkl {e}"))?;
    let tensors = state_dict(&root)?;

    let budget = bytes.len().saturating_mul(MAX_EXPANSION);
    let mut spent = 0usize;
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut out = StateDict { names: Vec::with_capacity(tensors.len()), tensors: HashMap::with_capacity(tensors.len()) };
    for (name, t) in tensors {
        let key = t.storage.key.as_str();
        let data = match storages.get(key) {
            Some(d) => *d,
            None => {
                let d = entry(&mut zip, bytes, &format!("{prefix}data/{key}")).map_err(|e| format!("tensor {name}: {e}"))?;
                check_storage(&t, d).map_err(|e| format!("tensor {name}: {e}"))?;
                storages.insert(key.to_string(), d);
                d
            }
        };
        let tensor = materialise(&t, data, &mut spent, budget).map_err(|e| format!("tensor {name}: {e}"))?;
        if out.tensors.insert(name.clone(), tensor).is_none() {
            out.names.push(name);
        }
    }
    Ok(out)
}

/// The state dict's tensors, keys as open_clip's `load_state_dict` leaves them.
fn state_dict(root: &Value) -> PResult<Vec<(String, TensorRef)>> {
    let Value::Dict(top) = root else {
        return Err(format!("the checkpoint holds {}, not a state dict", root.kind()));
    };
    let dict = match top.get("state_dict") {
        Some(Value::Dict(inner)) => inner,
        Some(other) => return Err(format!("its state_dict entry is {}, not a dict", other.kind())),
        None => top,
    };
    let mut out = Vec::with_capacity(dict.len());
    for (i, (k, v)) in dict.entries().into_iter().enumerate() {
        let Value::Str(name) = k else {
            return Err(format!("key {i} of the state dict is {}, not a string", k.kind()));
        };
        let Value::Tensor(t) = v else {
            return Err(format!("state dict entry {name:?} is {}, not a tensor", v.kind()));
        };
        out.push((name.to_string(), (**t).clone()));
    }
    let strip = out.first().is_some_and(|(k, _)| k.starts_with("module"));
    if strip {
        for (k, _) in &mut out {
            *k = k.chars().skip(7).collect();
        }
    }
    if out.is_empty() {
        return Err("the state dict holds no tensors".into());
    }
    Ok(out)
}

fn check_storage(t: &TensorRef, data: &[u8]) -> PResult<()> {
    let s = &t.storage;
    let expected = usize::try_from(s.numel)
        .ok()
        .and_then(|n| n.checked_mul(s.dtype.size()))
        .ok_or_else(|| format!("storage {} declares {} elements: too many", s.key, s.numel))?;
    if data.len() != expected {
        return Err(format!(
            "storage {} holds {} bytes but declares {} {} elements ({expected} bytes)",
            s.key,
            data.len(),
            s.numel,
            s.dtype.name()
        ));
    }
    Ok(())
}

fn candle_dtype(d: StorageDType) -> DType {
    match d {
        StorageDType::F64 => DType::F64,
        StorageDType::F32 => DType::F32,
        StorageDType::F16 => DType::F16,
        StorageDType::BF16 => DType::BF16,
        StorageDType::I64 => DType::I64,
        StorageDType::I32 => DType::I32,
        StorageDType::I16 => DType::I16,
        StorageDType::U8 | StorageDType::Bool => DType::U8,
    }
}

/// Copies the view `t` of `data` out into a contiguous tensor.
fn materialise(t: &TensorRef, data: &[u8], spent: &mut usize, budget: usize) -> PResult<Tensor> {
    let elem = t.storage.dtype.size();
    let storage_numel = data.len().checked_div(elem).unwrap_or(0);
    let overflow = || "tensor size overflows".to_string();
    let dims: Vec<usize> = t.size.iter().map(|&d| usize::try_from(d).map_err(|_| overflow())).collect::<PResult<_>>()?;
    let strides: Vec<usize> = t.stride.iter().map(|&d| usize::try_from(d).map_err(|_| overflow())).collect::<PResult<_>>()?;
    let offset = usize::try_from(t.offset).map_err(|_| overflow())?;
    let numel = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
    let view = || format!("view (offset {offset}, size {dims:?}, stride {strides:?})");
    let mut buf: Vec<u8> = Vec::new();
    if numel > 0 {
        if numel > storage_numel {
            return Err(format!("{} has more elements than its storage {} ({storage_numel})", view(), t.storage.key));
        }
        let mut last = offset;
        for (&d, &s) in dims.iter().zip(&strides) {
            let reach = d.checked_sub(1).and_then(|d1| d1.checked_mul(s)).ok_or_else(overflow)?;
            last = last.checked_add(reach).ok_or_else(overflow)?;
        }
        if last >= storage_numel {
            return Err(format!("{} reaches past its storage {} ({storage_numel} elements)", view(), t.storage.key));
        }
        let nbytes = numel.checked_mul(elem).ok_or_else(overflow)?;
        *spent = spent.saturating_add(nbytes);
        if *spent > budget {
            return Err(format!("the tensors would take more than {MAX_EXPANSION} times the file's size"));
        }
        buf = gather(data, elem, offset, &dims, &strides, nbytes).ok_or_else(|| format!("{} is out of bounds", view()))?;
    }
    Tensor::from_raw_buffer(&buf, candle_dtype(t.storage.dtype), &dims, &Device::Cpu).map_err(|e| e.to_string())
}

/// Row-major copy of the strided view (all indices already checked to lie
/// inside `data`; `None` only if that check was wrong).
fn gather(data: &[u8], elem: usize, offset: usize, dims: &[usize], strides: &[usize], nbytes: usize) -> Option<Vec<u8>> {
    // Row-major contiguous: one slice.
    let mut expected = 1usize;
    let mut contiguous = true;
    for (&d, &s) in dims.iter().zip(strides).rev() {
        if d != 1 && s != expected {
            contiguous = false;
        }
        expected = expected.checked_mul(d)?;
    }
    let start = offset.checked_mul(elem)?;
    if contiguous {
        return Some(data.get(start..start.checked_add(nbytes)?)?.to_vec());
    }
    let mut out = Vec::with_capacity(nbytes);
    let mut index = vec![0usize; dims.len()];
    let mut pos = offset;
    loop {
        let at = pos.checked_mul(elem)?;
        out.extend_from_slice(data.get(at..at.checked_add(elem)?)?);
        // Odometer over the indices, last dimension fastest.
        let mut axis = dims.len();
        loop {
            let Some(a) = axis.checked_sub(1) else { return Some(out) };
            axis = a;
            let (i, d, s) = (index.get_mut(a)?, *dims.get(a)?, *strides.get(a)?);
            *i = i.checked_add(1)?;
            pos = pos.checked_add(s)?;
            if *i < d {
                break;
            }
            pos = pos.checked_sub(s.checked_mul(d)?)?;
            *i = 0;
        }
    }
}
