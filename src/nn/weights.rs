//! Where the model's tensors come from, so the model code is the same for every
//! weight format: tensors already in memory (candle's `VarBuilder`: a PyTorch
//! pickle, the tests), or a [`TensorSource`] that reads each tensor from the
//! file when the model takes it — a safetensors checkpoint
//! (`crate::io::safetensors`) or the GGUF encoder of a `kpl pack` bundle
//! (`crate::bundle`), where linear weights may be quantised blocks (q8_0,
//! q4_K) that the matmul consumes directly. Everything else (embeddings,
//! norms, biases, the patch convolution) is computed in f32; lookup tables keep
//! f16 as stored.
//!
//! Each tensor is copied from its file once, into the allocation the model
//! keeps (the sources convert while copying), and nothing keeps the file's
//! bytes: wasm memory never shrinks, so the load's peak is the page's for good.
//! [`Weights::held_bytes`] counts what the model keeps, the denominator of the
//! memory figures in `bench/`.
//!
//! The towers and `nn::transformer` only see [`Weights`]; the choice of
//! format is made once, when the weights are opened.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Result, Shape, Tensor};
use candle_nn::VarBuilder;

use super::norm::LayerNorm;
use super::patch::PatchEmbedding;

use super::linear::{tensor_bytes, Linear};

/// The form a [`TensorSource`] hands a tensor out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Dense f32, whatever the stored dtype (quantised blocks expanded).
    F32,
    /// f16 and bf16 as stored (lookup tables: the rows picked are widened);
    /// anything else as f32.
    Half,
    /// Quantised blocks as stored (linear weights); floats as f32.
    Blocks,
}

/// A tensor as a [`TensorSource`] hands it out.
pub enum Stored {
    Dense(Tensor),
    Blocks(QTensor),
}

/// Tensors read from their file one at a time, when the model takes them.
/// Not `Send`: the browser's source is a JavaScript array, read on the thread
/// that loads.
pub trait TensorSource {
    /// Whether the file has a tensor of this full name.
    fn contains(&self, name: &str) -> bool;

    /// The tensor `name` (full name) in the form `keep` asks for, after checking
    /// its shape is `shape` (a scalar may be stored as `[1]`). Errors say
    /// "cannot find tensor" / "shape mismatch" as candle's `VarBuilder` does
    /// (`crate::nn::describe_load_error` reads them).
    fn take(&self, name: &str, shape: &Shape, keep: Keep) -> Result<Stored>;
}

#[derive(Clone)]
enum Source {
    Dense(VarBuilder<'static>),
    Stored(Rc<dyn TensorSource>),
}

/// A weight source with a name prefix (like `VarBuilder::pp`).
#[derive(Clone)]
pub struct Weights {
    source: Source,
    prefix: String,
    /// Bytes of the tensors handed out, in the form the model holds them,
    /// shared by every `pp` of one source.
    held: Rc<Cell<u64>>,
}

impl Weights {
    /// Tensors in memory (a PyTorch pickle's, the tests'), read as candle's
    /// `VarBuilder` reads them, in f32.
    pub fn dense(vb: VarBuilder<'static>) -> Self {
        Self { source: Source::Dense(vb), prefix: String::new(), held: Rc::default() }
    }

    /// Tensors read from a file as the model takes them (a safetensors
    /// checkpoint, a bundle's GGUF encoder).
    pub fn from_source(source: Rc<dyn TensorSource>) -> Self {
        Self { source: Source::Stored(source), prefix: String::new(), held: Rc::default() }
    }

    /// Bytes of every tensor handed out so far by this source (any `pp` of
    /// it), in the form the model holds them: f32, f16 tables, packed q8_0
    /// panels, q4_K blocks.
    pub fn held_bytes(&self) -> u64 {
        self.held.get()
    }

    fn count(&self, bytes: u64) {
        self.held.set(self.held.get() + bytes);
    }

    fn counted(&self, t: Tensor) -> Tensor {
        self.count(tensor_bytes(&t));
        t
    }

    /// The same source below `name`.
    pub fn pp(&self, name: impl ToString) -> Self {
        let name = name.to_string();
        let source = match &self.source {
            Source::Dense(vb) => Source::Dense(vb.pp(&name)),
            Source::Stored(s) => Source::Stored(s.clone()),
        };
        let prefix = if self.prefix.is_empty() { name } else { format!("{}.{name}", self.prefix) };
        Self { source, prefix, held: self.held.clone() }
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn take(&self, source: &dyn TensorSource, name: &str, shape: &Shape, keep: Keep) -> Result<Stored> {
        source.take(&self.full_name(name), shape, keep)
    }

    /// A dense tensor in the form `keep` asks for (`F32` or `Half`), counted.
    fn dense_tensor(&self, shape: Shape, name: &str, keep: Keep) -> Result<Tensor> {
        let t = match &self.source {
            Source::Dense(vb) => vb.get(shape, name)?,
            Source::Stored(s) => match self.take(s.as_ref(), name, &shape, keep)? {
                Stored::Dense(t) => t.reshape(shape)?,
                Stored::Blocks(q) => q.dequantize(&Device::Cpu)?.reshape(shape)?,
            },
        };
        Ok(self.counted(t))
    }

    /// A dense tensor in f32.
    pub fn get<S: Into<Shape>>(&self, shape: S, name: &str) -> Result<Tensor> {
        self.dense_tensor(shape.into(), name, Keep::F32)
    }

    /// A lookup table (token embeddings) as stored: an f16 table stays f16 in
    /// memory (half the size of f32); callers widen the rows they pick.
    pub fn get_table<S: Into<Shape>>(&self, shape: S, name: &str) -> Result<Tensor> {
        self.dense_tensor(shape.into(), name, Keep::Half)
    }

    /// A linear weight [out, in] in the form its kernel reads.
    fn linear_weight(&self, source: &dyn TensorSource, in_dim: usize, out_dim: usize) -> Result<Linear> {
        match self.take(source, "weight", &Shape::from((out_dim, in_dim)), Keep::Blocks)? {
            Stored::Dense(t) => Linear::dense(t, None),
            Stored::Blocks(q) => Linear::from_qtensor(Arc::new(q), None),
        }
    }

    fn counted_linear(&self, l: Linear) -> Linear {
        self.count(l.held_bytes());
        l
    }

    /// A linear layer `weight` [out, in] + `bias` [out].
    pub fn linear(&self, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let l = match &self.source {
            Source::Dense(vb) => {
                let l = candle_nn::linear(in_dim, out_dim, vb.clone())?;
                Linear::dense(l.weight().clone(), l.bias().cloned())?
            }
            Source::Stored(s) => {
                let bias = self.take(s.as_ref(), "bias", &Shape::from(out_dim), Keep::F32)?;
                let Stored::Dense(bias) = bias else { unreachable!("Keep::F32 is dense") };
                self.linear_weight(s.as_ref(), in_dim, out_dim)?.with_bias(bias)
            }
        };
        Ok(self.counted_linear(l))
    }

    pub fn linear_no_bias(&self, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let l = match &self.source {
            Source::Dense(vb) => Linear::dense(candle_nn::linear_no_bias(in_dim, out_dim, vb.clone())?.weight().clone(), None)?,
            Source::Stored(s) => self.linear_weight(s.as_ref(), in_dim, out_dim)?,
        };
        Ok(self.counted_linear(l))
    }

    /// `N` linear layers [out, in] stored as one: `weight` [N·out, in] and
    /// `bias` [N·out], split by rows (timm's fused `qkv`, open_clip's
    /// `in_proj_weight`). Quantised blocks are split without expanding them:
    /// each row is a whole number of blocks.
    pub fn fused_linears<const N: usize>(&self, weight: &str, bias: &str, in_dim: usize, out_dim: usize) -> Result<[Linear; N]> {
        let bias = self.get(N * out_dim, bias)?;
        // Counted again below, as each part's.
        self.held.set(self.held.get() - tensor_bytes(&bias));
        let bias_part = |i: usize| bias.narrow(0, i * out_dim, out_dim)?.contiguous();
        let dense = |w: Tensor| -> Result<[Linear; N]> {
            let parts = (0..N)
                .map(|i| {
                    let part = Linear::dense(w.narrow(0, i * out_dim, out_dim)?.contiguous()?, Some(bias_part(i)?))?;
                    Ok(self.counted_linear(part))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(parts.try_into().unwrap_or_else(|_| unreachable!("N parts")))
        };
        let shape = Shape::from((N * out_dim, in_dim));
        let t = match &self.source {
            Source::Dense(vb) => return dense(vb.get(shape, weight)?),
            Source::Stored(s) => match self.take(s.as_ref(), weight, &shape, Keep::Blocks)? {
                Stored::Dense(w) => return dense(w),
                Stored::Blocks(t) => t,
            },
        };
        let dtype = t.dtype();
        let row_bytes = in_dim / dtype.block_size() * dtype.type_size();
        let data = t.data()?;
        let parts = (0..N)
            .map(|i| {
                let bytes = data[i * out_dim * row_bytes..(i + 1) * out_dim * row_bytes].to_vec();
                let storage = QStorage::from_data(std::borrow::Cow::Owned(bytes), &Device::Cpu, dtype)?;
                let part = QTensor::new(storage, (out_dim, in_dim))?;
                Ok(self.counted_linear(Linear::from_qtensor(Arc::new(part), Some(bias_part(i)?))?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(parts.try_into().unwrap_or_else(|_| unreachable!("N parts")))
    }

    /// Whether the source has a tensor of this name (below the prefix).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Dense(vb) => vb.contains_tensor(name),
            Source::Stored(s) => s.contains(&self.full_name(name)),
        }
    }

    pub fn layer_norm(&self, size: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm::new(self.get(size, "weight")?, self.get(size, "bias")?, eps))
    }

    /// The patch convolution `weight` [out, in, k, k] (+ `bias` [out] when
    /// `bias`), stride k, held as its GEMM reads it.
    pub fn patch_embedding(&self, in_c: usize, out_c: usize, kernel: usize, bias: bool) -> Result<PatchEmbedding> {
        let held = self.held.get();
        let w = self.get((out_c, in_c, kernel, kernel), "weight")?;
        let b = if bias { Some(self.get(out_c, "bias")?) } else { None };
        // Counted below in the form held.
        self.held.set(held);
        let patches = PatchEmbedding::new(w, b)?;
        self.count(patches.held_bytes());
        Ok(patches)
    }
}
