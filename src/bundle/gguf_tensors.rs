//! A bundle encoder's tensors, read from its GGUF file one at a time as the
//! model takes them (`crate::nn::weights::TensorSource`): the file's bytes
//! stay where they are (a JavaScript array in the browser), and each tensor is
//! copied once, into the form the model keeps — f16 / f32 tensors decoded
//! straight into their final allocation, quantised blocks read into candle's
//! `QTensor` (q8_0 then packed for the int8 GEMM by `nn::linear`).
//!
//! Sizes come from an untrusted header: every tensor's range is checked against
//! the file when it is opened, and no panic is reachable (clippy denies
//! indexing, unwraps and unchecked arithmetic here).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable
)]

use std::collections::HashMap;

use candle_core::quantized::gguf_file::TensorInfo;
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Result, Shape, Tensor};
use half::{bf16, f16};

use crate::io::byte_source::{decode_le, ByteSource, SourceReader};
use crate::nn::weights::{Keep, Stored, TensorSource};

/// The tensors of one GGUF file and the bytes they are read from.
pub struct GgufTensors {
    infos: HashMap<String, TensorInfo>,
    /// Where the tensor data starts (`gguf_file::Content::tensor_data_offset`).
    data_offset: u64,
    bytes: Box<dyn ByteSource>,
    name: String,
}

impl GgufTensors {
    /// The tensors `infos` of the GGUF file `bytes`, named `name` in errors;
    /// refused when one lies (partly) outside the file.
    pub fn new(infos: HashMap<String, TensorInfo>, data_offset: u64, bytes: Box<dyn ByteSource>, name: &str) -> std::result::Result<Self, String> {
        for (tensor, info) in &infos {
            let end = byte_len(info).and_then(|n| data_offset.checked_add(info.offset)?.checked_add(n));
            match end {
                Some(end) if end <= bytes.len() => {}
                _ => return Err(format!("tensor {tensor} lies outside the file ({} bytes)", bytes.len())),
            }
        }
        Ok(Self { infos, data_offset, bytes, name: name.to_string() })
    }

    fn decode<T, const N: usize>(&self, info: &TensorInfo, out: &mut [T], one: impl Fn([u8; N]) -> T) -> Result<()> {
        let offset = self.data_offset.saturating_add(info.offset);
        decode_le(&*self.bytes, offset, out, one).map_err(|e| candle_core::Error::Msg(format!("{}: {e}", self.name)))
    }

    fn f32(&self, info: &TensorInfo, shape: &Shape) -> Result<Tensor> {
        let dtype = info.ggml_dtype;
        if !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            return self.blocks(info)?.dequantize(&Device::Cpu)?.reshape(shape);
        }
        let mut out = vec![0f32; shape.elem_count()];
        match dtype {
            GgmlDType::F32 => self.decode(info, &mut out, f32::from_le_bytes)?,
            GgmlDType::F16 => self.decode(info, &mut out, |b| f16::from_le_bytes(b).to_f32())?,
            _ => self.decode(info, &mut out, |b| bf16::from_le_bytes(b).to_f32())?,
        }
        Tensor::from_vec(out, shape.clone(), &Device::Cpu)
    }

    fn blocks(&self, info: &TensorInfo) -> Result<candle_core::quantized::QTensor> {
        info.read(&mut SourceReader::new(&*self.bytes), self.data_offset, &Device::Cpu)
    }
}

/// Bytes of a tensor's data; `None` on overflow or a partial block.
fn byte_len(info: &TensorInfo) -> Option<u64> {
    let elems = info.shape.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    let block = info.ggml_dtype.block_size();
    if elems.checked_rem(block)? != 0 {
        return None;
    }
    u64::try_from(elems.checked_div(block)?.checked_mul(info.ggml_dtype.type_size())?).ok()
}

impl TensorSource for GgufTensors {
    fn contains(&self, name: &str) -> bool {
        self.infos.contains_key(name)
    }

    fn take(&self, name: &str, shape: &Shape, keep: Keep) -> Result<Stored> {
        let Some(info) = self.infos.get(name) else { candle_core::bail!("cannot find tensor {name}") };
        // A scalar is stored as [1]: GGUF (and candle's QTensor) have no rank 0.
        let same = info.shape == *shape || (shape.rank() == 0 && info.shape.dims() == [1]);
        if !same {
            candle_core::bail!("shape mismatch for {name}, expected {shape:?}, got {:?}", info.shape)
        }
        let dense = |t: Tensor| Ok(Stored::Dense(t));
        match (info.ggml_dtype, keep) {
            (GgmlDType::F16, Keep::Half) => {
                let mut out = vec![f16::ZERO; shape.elem_count()];
                self.decode(info, &mut out, f16::from_le_bytes)?;
                dense(Tensor::from_vec(out, shape.clone(), &Device::Cpu)?)
            }
            (GgmlDType::BF16, Keep::Half) => {
                let mut out = vec![bf16::ZERO; shape.elem_count()];
                self.decode(info, &mut out, bf16::from_le_bytes)?;
                dense(Tensor::from_vec(out, shape.clone(), &Device::Cpu)?)
            }
            (GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16, _) | (_, Keep::F32 | Keep::Half) => {
                dense(self.f32(info, shape)?)
            }
            (_, Keep::Blocks) => Ok(Stored::Blocks(self.blocks(info)?)),
        }
    }
}
