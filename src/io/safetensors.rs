//! A safetensors checkpoint read tensor by tensor from a [`ByteSource`]: the
//! header is parsed and checked by the `safetensors` crate (its `Metadata`:
//! offsets contiguous, sizes matching dtype × shape, no overflow), then each
//! tensor the model takes is decoded from the file into its final allocation,
//! a chunk at a time, so the file itself is never copied whole.
//! Format: <https://github.com/huggingface/safetensors#format>.
//!
//! The header and the offsets come from untrusted files: no panics (clippy
//! denies indexing, unwraps and unchecked arithmetic here).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable
)]

use candle_core::{Device, Result, Shape, Tensor};
use half::{bf16, f16};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;

use super::byte_source::{decode_le, ByteSource};
use crate::error::{Error, Result as KplResult};
use crate::nn::weights::{Keep, Stored, TensorSource};

/// The `safetensors` crate's cap on the header (`MAX_HEADER_SIZE`).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A safetensors file's header, and the bytes to read its tensors from.
pub struct SafetensorsSource<S> {
    bytes: S,
    metadata: Metadata,
    /// Where the tensor data starts (after the 8-byte length and the header).
    data_start: u64,
    name: String,
}

impl<S: ByteSource> SafetensorsSource<S> {
    /// Reads and checks the header of `bytes`; `name` names the file in errors.
    pub fn open(bytes: S, name: &str) -> KplResult<Self> {
        let bad = |why: String| Error::model(name, format!("not a readable safetensors file ({why})"));
        let mut len = [0u8; 8];
        bytes.read_at(0, &mut len).map_err(|_| bad(format!("{} bytes, too short for a header", bytes.len())))?;
        let n = u64::from_le_bytes(len);
        let data_start = n.checked_add(8).filter(|&s| n <= MAX_HEADER_BYTES && s <= bytes.len());
        let Some(data_start) = data_start else {
            return Err(bad(format!("a header of {n} bytes in a file of {} bytes", bytes.len())));
        };
        // n ≤ 100 MB: the header (JSON) is read whole.
        let mut header = vec![0u8; usize::try_from(n).map_err(|_| bad("header too large".into()))?];
        bytes.read_at(8, &mut header).map_err(|e| bad(e.to_string()))?;
        let text = std::str::from_utf8(&header).map_err(|e| bad(format!("the header is not UTF-8: {e}")))?;
        let metadata: Metadata = serde_json::from_str(text).map_err(|e| bad(format!("header: {e}")))?;
        let data_len = bytes.len().saturating_sub(data_start);
        if metadata.data_len() as u64 != data_len {
            return Err(bad(format!("the header lists {} bytes of tensors, the file holds {data_len}", metadata.data_len())));
        }
        Ok(Self { bytes, metadata, data_start, name: name.to_string() })
    }

    /// The names of the tensors, in file order.
    pub fn names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    /// The shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.metadata.info(name).map(|i| i.shape.as_slice())
    }

    /// Decodes the tensor of `info` into `out` (allocated by the caller first).
    fn decode<T, const N: usize>(&self, info: &TensorInfo, out: &mut [T], one: impl Fn([u8; N]) -> T) -> Result<()> {
        // The header's check bounds every tensor inside the file.
        let offset = self.data_start.saturating_add(info.data_offsets.0 as u64);
        decode_le(&self.bytes, offset, out, one).map_err(|e| candle_core::Error::Msg(format!("{}: {e}", self.name)))
    }

    fn read(&self, info: &TensorInfo, shape: &Shape, keep: Keep) -> Result<Tensor> {
        let n = shape.elem_count();
        let dev = &Device::Cpu;
        match (info.dtype, keep) {
            (Dtype::F16, Keep::Half) => {
                let mut out = vec![f16::ZERO; n];
                self.decode(info, &mut out, f16::from_le_bytes)?;
                Tensor::from_vec(out, shape.clone(), dev)
            }
            (Dtype::BF16, Keep::Half) => {
                let mut out = vec![bf16::ZERO; n];
                self.decode(info, &mut out, bf16::from_le_bytes)?;
                Tensor::from_vec(out, shape.clone(), dev)
            }
            (dtype, _) => {
                let mut out = vec![0f32; n];
                match dtype {
                    Dtype::F32 => self.decode(info, &mut out, f32::from_le_bytes)?,
                    Dtype::F16 => self.decode(info, &mut out, |b| f16::from_le_bytes(b).to_f32())?,
                    Dtype::BF16 => self.decode(info, &mut out, |b| bf16::from_le_bytes(b).to_f32())?,
                    Dtype::F64 => self.decode(info, &mut out, |b| f64::from_le_bytes(b) as f32)?,
                    other => candle_core::bail!("{}: tensor stored as {other:?}, not a float type", self.name),
                }
                Tensor::from_vec(out, shape.clone(), dev)
            }
        }
    }
}

impl<S: ByteSource> TensorSource for SafetensorsSource<S> {
    fn contains(&self, name: &str) -> bool {
        self.metadata.info(name).is_some()
    }

    fn take(&self, name: &str, shape: &Shape, keep: Keep) -> Result<Stored> {
        let Some(info) = self.metadata.info(name) else { candle_core::bail!("cannot find tensor {name}") };
        // A scalar may be stored as [1].
        let same = info.shape == shape.dims() || (shape.rank() == 0 && info.shape == [1]);
        if !same {
            candle_core::bail!("shape mismatch for {name}, expected {shape:?}, got {:?}", info.shape)
        }
        Ok(Stored::Dense(self.read(info, shape, keep)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use std::collections::HashMap;

    use candle_core::DType;

    use super::*;

    /// The bytes candle writes for `tensors`. Each call has its own file: the tests
    /// run in parallel threads of one process (one shared name made one test read
    /// a file the other had just removed).
    fn file(tensors: &[(&str, Tensor)]) -> Vec<u8> {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
        let path = std::env::temp_dir().join(format!("kpl-safetensors-{}-{call}.safetensors", std::process::id()));
        candle_core::safetensors::save(&map, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(path).unwrap();
        bytes
    }

    #[test]
    fn tensors_read_as_candle_reads_them() {
        let values: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.37).sin()).collect();
        let a = Tensor::from_vec(values.clone(), (30, 100), &Device::Cpu).unwrap();
        let h = a.to_dtype(DType::F16).unwrap();
        let b = a.to_dtype(DType::BF16).unwrap();
        let bytes = file(&[("a", a.clone()), ("h", h.clone()), ("b", b.clone()), ("s", Tensor::new(&[2.5f32], &Device::Cpu).unwrap())]);
        let source = SafetensorsSource::open(bytes, "m.safetensors").unwrap();
        let dense = |name: &str, shape: &Shape, keep| match source.take(name, shape, keep).unwrap() {
            Stored::Dense(t) => t,
            Stored::Blocks(_) => panic!("dense"),
        };
        let shape = Shape::from((30, 100));
        let expect = |t: &Tensor| t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(expect(&dense("a", &shape, Keep::F32)), values);
        assert_eq!(expect(&dense("h", &shape, Keep::F32)), expect(&h));
        assert_eq!(expect(&dense("b", &shape, Keep::F32)), expect(&b));
        assert_eq!(dense("h", &shape, Keep::Half).dtype(), DType::F16);
        assert_eq!(expect(&dense("h", &shape, Keep::Half)), expect(&h));
        assert_eq!(dense("b", &shape, Keep::Blocks).dtype(), DType::F32);
        assert_eq!(dense("s", &Shape::from(()), Keep::F32).to_scalar::<f32>().unwrap(), 2.5);
        let e = source.take("a", &Shape::from((100, 30)), Keep::F32).err().unwrap().to_string();
        assert!(e.contains("shape mismatch"), "{e}");
        let e = source.take("zz", &shape, Keep::F32).err().unwrap().to_string();
        assert!(e.contains("cannot find tensor zz"), "{e}");
        let mut names = source.names();
        names.sort();
        assert_eq!(names, ["a", "b", "h", "s"]);
    }

    #[test]
    fn broken_files_are_refused_by_name() {
        let good = file(&[("a", Tensor::zeros((4, 4), DType::F32, &Device::Cpu).unwrap())]);
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("truncated", good[..good.len() - 1].to_vec()),
            ("header length past the end", huge),
            ("garbage header", [&8u64.to_le_bytes()[..], b"not json"].concat()),
        ];
        for (what, bytes) in cases {
            let e = SafetensorsSource::open(bytes, "m.safetensors").err().unwrap().to_string();
            assert!(e.contains("m.safetensors") && e.contains("not a readable safetensors file"), "{what}: {e}");
        }
    }
}
