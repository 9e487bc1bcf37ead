//! The linear layer every CLIP projection goes through. It is a separate type so
//! that weight formats change here and not in the model code: one model
//! implementation for every dtype.
//!
//! - `Packed`: an f32 weight (a safetensors checkpoint, or an f16/f32 layer of a
//!   bundle widened on load), repacked at load into the panels of our f32 GEMM
//!   ([`super::gemm::f32`]), which replace the tensor; the bias is added in the
//!   GEMM's epilogue. What [`Linear::dense`] makes under the default
//!   [`F32Kernel::Packed`].
//! - `Dense`: an f32 weight through candle's gemm ([`F32Kernel::Candle`], and
//!   the GPU engine's own patch-embedding matmul).
//! - `Quantized`: a `kpl pack` bundle's blocks. q8_0 weights are repacked at
//!   load into the panels of our int8 GEMM ([`super::gemm::q8`]), which replace
//!   the blocks; q4_K likewise into the 4-bit panels of [`super::gemm::q4`];
//!   under `Int8x8`, q8_0 into the panels of [`super::gemm::q8x8`].
//!   How they are multiplied is [`QuantKernel`].

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Result, Tensor};

use super::gemm::f32::{PackedF32, PackedRows};
use super::gemm::q4::PackedQ4;
use super::gemm::q8::PackedQ8;
use super::gemm::q8x8::PackedQ8x8;
use super::gemm::Q8x8Isa;
use super::gemm::{Epilogue, F32Isa, QuantizedGemm};
use super::Activation;

/// How a quantised linear layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantKernel {
    /// Our int8 GEMMs for q8_0 (`nn::gemm::q8`) and q4_K (`nn::gemm::q4`)
    /// layers: panels packed at load, activations quantised per 32-value
    /// block, AVX2 natively / simd128 in wasm, the same bits on both. Other
    /// quantised dtypes compute as the platform's other default (`Blocks`
    /// natively, `Dequantize` in wasm).
    Int8,
    /// Our q8_0 × q8_0 GEMM for q8_0 layers (`nn::gemm::q8x8`): ggml's
    /// semantics (the activations quantised to q8_0, the block sums exactly
    /// candle's `Blocks` kernel's) on AVX-512 VNNI `vpdpbusd`, panels packed
    /// at load, or in the relaxed-SIMD wasm build on the relaxed dot where the
    /// engine lowers it to `vpdpbusd` (probed); a scalar kernel of the same
    /// bits elsewhere. q4_K layers run as under `Int8` in wasm, on candle's
    /// blocks natively; other quantised dtypes as under `Int8`'s fallback.
    Int8x8,
    /// candle's quantised matmul: the activations are quantised to 8-bit blocks
    /// and multiplied block by block with the weight blocks (AVX2/AVX-512 VNNI
    /// natively, scalar in our wasm build). The weight is never expanded. On a
    /// packed q8_0 layer the blocks are rebuilt for each call (for comparisons).
    Blocks,
    /// The weight is expanded to f32 a few hundred rows at a time (at most 4 MB,
    /// freed after) and multiplied by candle's f32 gemm; the activations stay
    /// f32. Memory stays that of the blocks plus one chunk.
    Dequantize,
}

impl std::str::FromStr for QuantKernel {
    type Err = String;
    /// `int8`, `int8x8`, `blocks` or `dequantize`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "int8" => Ok(Self::Int8),
            "int8x8" => Ok(Self::Int8x8),
            "blocks" => Ok(Self::Blocks),
            "dequantize" => Ok(Self::Dequantize),
            other => Err(format!("unknown kernel {other:?} (int8, int8x8, dequantize or blocks)")),
        }
    }
}

impl std::fmt::Display for QuantKernel {
    /// The name [`FromStr`](std::str::FromStr) reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Int8 => "int8",
            Self::Int8x8 => "int8x8",
            Self::Blocks => "blocks",
            Self::Dequantize => "dequantize",
        })
    }
}

/// Measured per target (`make bench`, `examples/bench_gemm.rs`): in wasm the
/// q8_0 × q8_0 GEMM where its relaxed-SIMD kernel is offered (the relaxed
/// build, an engine whose relaxed dot is `vpdpbusd`'s), else the int8 GEMM;
/// natively the q8_0 × q8_0 GEMM on AVX-512 VNNI, else candle's block kernel.
fn default_kernel() -> QuantKernel {
    if cfg!(target_arch = "wasm32") && Q8x8Isa::best() == Q8x8Isa::Scalar {
        QuantKernel::Int8
    } else if Q8x8Isa::best() != Q8x8Isa::Scalar {
        QuantKernel::Int8x8
    } else {
        QuantKernel::Blocks
    }
}

/// Whether `Int8x8` runs q4_K layers on the int8 GEMM for q4_K, as `Int8`
/// does: in wasm (where the alternative, `Dequantize`, is slower), not
/// natively (where candle's block kernel is the faster, measured).
const INT8X8_Q4: bool = cfg!(target_arch = "wasm32");

/// What `Int8` does on a layer that is neither q8_0 nor q4_K.
const FALLBACK_KERNEL: QuantKernel =
    if cfg!(target_arch = "wasm32") { QuantKernel::Dequantize } else { QuantKernel::Blocks };

/// How a dense f32 linear layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32Kernel {
    /// Our f32 GEMM (`nn::gemm::f32`): the weight packed at load, AVX-512 or
    /// AVX2+FMA natively, simd128 in wasm, the bias in the epilogue.
    Packed,
    /// candle's f32 gemm on the weight as loaded (for comparisons).
    Candle,
}

impl std::str::FromStr for F32Kernel {
    type Err = String;
    /// `packed` or `candle`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "packed" => Ok(Self::Packed),
            "candle" => Ok(Self::Candle),
            other => Err(format!("unknown f32 kernel {other:?} (packed or candle)")),
        }
    }
}

thread_local! {
    static KERNEL: Cell<QuantKernel> = Cell::new(default_kernel());
    static F32_KERNEL: Cell<F32Kernel> = const { Cell::new(F32Kernel::Packed) };
}

/// Chooses how dense f32 layers loaded afterwards on this thread are held and
/// computed (default `Packed`: faster on every target, measured in `make
/// bench`). Thread-local, so tests can compare them.
pub fn set_f32_kernel(kernel: F32Kernel) {
    F32_KERNEL.with(|k| k.set(kernel));
}

pub fn f32_kernel() -> F32Kernel {
    F32_KERNEL.with(|k| k.get())
}

/// Chooses the kernel of the quantised layers for the forward passes started
/// on this thread (default: in wasm `Int8x8` where its relaxed-SIMD kernel is
/// offered, else `Int8`; natively `Int8x8` with AVX-512 VNNI and `Blocks`
/// without: the faster on each, measured), and how q8_0 and
/// q4_K weights loaded afterwards on this thread are held (packed for `Int8`
/// and, q8_0 only, `Int8x8`, candle's blocks otherwise: every kernel runs on
/// either, the other form rebuilt per call). Thread-local, so tests can
/// compare them.
pub fn set_quant_kernel(kernel: QuantKernel) {
    KERNEL.with(|k| k.set(kernel));
}

pub fn quant_kernel() -> QuantKernel {
    KERNEL.with(|k| k.get())
}

/// A quantised weight as held in memory.
#[derive(Debug, Clone)]
pub enum QWeight {
    /// candle's blocks (any ggml dtype).
    Blocks(QMatMul),
    /// q8_0, repacked for the int8 GEMM.
    Q8(Arc<PackedQ8>),
    /// q4_K, repacked for the int8 GEMM (still 4-bit).
    Q4(Arc<PackedQ4>),
    /// q8_0, repacked for the q8_0 × q8_0 GEMM.
    Q8x8(Arc<PackedQ8x8>),
}

impl QWeight {
    /// A packed weight as candle's blocks again (for candle's kernels).
    fn packed_qtensor(&self, shape: (usize, usize)) -> Result<QTensor> {
        let (blocks, dtype) = match self {
            Self::Q8(p) => (p.to_blocks(), GgmlDType::Q8_0),
            Self::Q8x8(p) => (p.to_blocks(), GgmlDType::Q8_0),
            Self::Q4(p) => (p.to_blocks(), GgmlDType::Q4K),
            Self::Blocks(_) => candle_core::bail!("the weight is not packed"),
        };
        QTensor::new(QStorage::from_data(Cow::Owned(blocks), &Device::Cpu, dtype)?, shape)
    }

    /// Packs ggml blocks of `dtype` for `kernel`'s GEMM, when it has one for it.
    fn pack(blocks: &[u8], dtype: GgmlDType, (n, k): (usize, usize), kernel: QuantKernel) -> Option<Result<Self>> {
        let packed = match (kernel, dtype) {
            (QuantKernel::Int8, GgmlDType::Q8_0) => PackedQ8::from_blocks(blocks, n, k).map(|p| Self::Q8(Arc::new(p))),
            (QuantKernel::Int8, GgmlDType::Q4K) => PackedQ4::from_blocks(blocks, n, k).map(|p| Self::Q4(Arc::new(p))),
            (QuantKernel::Int8x8, GgmlDType::Q8_0) => PackedQ8x8::from_blocks(blocks, n, k).map(|p| Self::Q8x8(Arc::new(p))),
            (QuantKernel::Int8x8, GgmlDType::Q4K) if INT8X8_Q4 => PackedQ4::from_blocks(blocks, n, k).map(|p| Self::Q4(Arc::new(p))),
            _ => return None,
        };
        Some(packed.map_err(|e| candle_core::Error::Msg(e.0)))
    }
}

#[derive(Debug, Clone)]
pub enum Linear {
    Dense(candle_nn::Linear),
    Packed {
        weight: Arc<PackedF32>,
        bias: Option<Tensor>,
    },
    Quantized {
        weight: QWeight,
        bias: Option<Tensor>,
        /// [out, in]
        shape: (usize, usize),
    },
}

impl Linear {
    /// A dense layer from `weight` [out, in] (any float dtype) and `bias`
    /// [out]: while this thread's f32 kernel is `Packed`, the weight is
    /// repacked for our f32 GEMM in f32 (the tensor is dropped when `weight` is
    /// the last reference); otherwise candle's `Linear` keeps it as given.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if f32_kernel() == F32Kernel::Candle || !weight.device().is_cpu() {
            return Ok(Self::Dense(candle_nn::Linear::new(weight, bias)));
        }
        let (n, k) = weight.dims2()?;
        if let Some(b) = &bias {
            if b.dims() != [n] {
                candle_core::bail!("linear layer [{n}, {k}]: bias of shape {:?}, expected [{n}]", b.dims())
            }
        }
        let packed = with_f32_slice(&weight, |w| PackedF32::from_rows(w, n, k))?.map_err(|e| candle_core::Error::Msg(e.0))?;
        let bias = bias.map(|b| super::dtype::to_f32(&b)?.contiguous()).transpose()?;
        Ok(Self::Packed { weight: Arc::new(packed), bias })
    }

    /// A quantised layer from a GGUF tensor `[out, in]`: while this thread's
    /// kernel is `Int8`, q8_0 and q4_K are repacked for the int8 GEMM, while
    /// it is `Int8x8`, q8_0 for the q8_0 × q8_0 GEMM (the blocks are dropped
    /// when `t` is the last reference); other dtypes, and all under the other
    /// kernels, stay candle's blocks.
    pub fn from_qtensor(t: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = t.shape().dims2()?;
        let packed = match quant_kernel() {
            kernel @ (QuantKernel::Int8 | QuantKernel::Int8x8) => {
                QWeight::pack(&t.data()?, t.dtype(), (out_dim, in_dim), kernel).transpose()?
            }
            _ => None,
        };
        let weight = match packed {
            Some(p) => p,
            None => QWeight::Blocks(QMatMul::from_arc(t)?),
        };
        Ok(Self::Quantized { weight, bias, shape: (out_dim, in_dim) })
    }

    pub fn with_bias(self, bias: Tensor) -> Self {
        match self {
            Self::Dense(l) => Self::Dense(candle_nn::Linear::new(l.weight().clone(), Some(bias))),
            Self::Packed { weight, .. } => Self::Packed { weight, bias: Some(bias) },
            Self::Quantized { weight, shape, .. } => Self::Quantized { weight, bias: Some(bias), shape },
        }
    }

    /// (out, in) features, without expanding a quantised weight.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Dense(l) => l.weight().dims2(),
            Self::Packed { weight, .. } => Ok(weight.dims()),
            Self::Quantized { shape, .. } => Ok(*shape),
        }
    }

    /// The weight as a dense f32 tensor [out, in] (dequantised when quantised,
    /// unpacked, a new copy, when packed).
    pub fn weight(&self) -> Result<Tensor> {
        match self {
            Self::Dense(l) => Ok(l.weight().clone()),
            Self::Packed { weight, .. } => Tensor::from_vec(weight.to_rows(), weight.dims(), &Device::Cpu),
            Self::Quantized { weight: QWeight::Q4(p), shape, .. } => Tensor::from_vec(p.to_rows(), *shape, &Device::Cpu),
            Self::Quantized { weight: w @ (QWeight::Q8(_) | QWeight::Q8x8(_)), shape, .. } => {
                w.packed_qtensor(*shape)?.dequantize(&Device::Cpu)
            }
            Self::Quantized { weight: QWeight::Blocks(matmul), shape, .. } => match matmul {
                QMatMul::QTensor(t) => t.dequantize(&Device::Cpu),
                QMatMul::Tensor(t) => Ok(t.clone()),
                QMatMul::TensorF16(t) => t.to_dtype(candle_core::DType::F32),
            }
            .and_then(|t| t.reshape(*shape)),
        }
    }

    /// The weight as ggml blocks of `dtype` (row-major, `[out, in]`), when it is
    /// stored as that dtype; a packed q8_0 weight is turned back into blocks.
    pub fn quant_blocks(&self, dtype: GgmlDType) -> Option<Vec<u8>> {
        match self {
            Self::Quantized { weight: QWeight::Q8(p), .. } if dtype == GgmlDType::Q8_0 => Some(p.to_blocks()),
            Self::Quantized { weight: QWeight::Q8x8(p), .. } if dtype == GgmlDType::Q8_0 => Some(p.to_blocks()),
            Self::Quantized { weight: QWeight::Q4(p), .. } if dtype == GgmlDType::Q4K => Some(p.to_blocks()),
            Self::Quantized { weight: QWeight::Blocks(QMatMul::QTensor(t)), .. } if t.dtype() == dtype => {
                t.data().ok().map(|d| d.into_owned())
            }
            _ => None,
        }
    }

    pub fn bias(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(l) => l.bias(),
            Self::Packed { bias, .. } | Self::Quantized { bias, .. } => bias.as_ref(),
        }
    }

    /// Bytes the layer holds: its weight as its kernel reads it (f32 tensor or
    /// packed f32 panels, packed q8_0 or q4_K panels, ggml blocks) and its bias.
    pub fn held_bytes(&self) -> u64 {
        let bias = self.bias().map_or(0, tensor_bytes);
        let weight = match self {
            Self::Dense(l) => tensor_bytes(l.weight()),
            Self::Packed { weight, .. } => weight.bytes() as u64,
            Self::Quantized { weight: QWeight::Q8(p), .. } => p.bytes() as u64,
            Self::Quantized { weight: QWeight::Q8x8(p), .. } => p.bytes() as u64,
            Self::Quantized { weight: QWeight::Q4(p), .. } => p.bytes() as u64,
            Self::Quantized { weight: QWeight::Blocks(m), .. } => match m {
                QMatMul::QTensor(t) => t.storage_size_in_bytes() as u64,
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => tensor_bytes(t),
            },
        };
        weight + bias
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Self::Quantized { weight: QWeight::Q8(_) | QWeight::Q4(_) | QWeight::Q8x8(_) | QWeight::Blocks(QMatMul::QTensor(_)), .. })
    }
}

/// Bytes of a dense tensor's elements.
pub fn tensor_bytes(t: &Tensor) -> u64 {
    (t.elem_count() * t.dtype().size_in_bytes()) as u64
}

/// At most this many weights are expanded to f32 at a time (4 MB).
const DEQUANTIZE_CHUNK: usize = 1 << 20;

/// `xs` [.., k] × `t`ᵀ ([n, k] blocks) through the f32 gemm, expanding a few
/// hundred weight rows at a time so that memory grows by one chunk, not a layer.
fn dequantized_matmul(t: &QTensor, xs: &Tensor) -> Result<Tensor> {
    let (n, k) = t.shape().dims2()?;
    let mut out_dims = xs.dims().to_vec();
    let m = xs.elem_count() / k;
    let x2 = xs.reshape((m, k))?;
    let dtype = t.dtype();
    let row_bytes = k / dtype.block_size() * dtype.type_size();
    let data = t.data()?;
    let rows_per_chunk = (DEQUANTIZE_CHUNK / k).max(1);
    let mut parts = Vec::with_capacity(n.div_ceil(rows_per_chunk));
    for start in (0..n).step_by(rows_per_chunk) {
        let rows = rows_per_chunk.min(n - start);
        let bytes = &data[start * row_bytes..(start + rows) * row_bytes];
        let chunk = QTensor::new(QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, dtype)?, (rows, k))?;
        parts.push(x2.matmul(&chunk.dequantize(&Device::Cpu)?.t()?)?);
    }
    let ys = if parts.len() == 1 { parts.pop().expect("one part") } else { Tensor::cat(&parts, 1)? };
    *out_dims.last_mut().expect("xs has a last dim") = n;
    ys.reshape(out_dims)
}

/// `t`'s values in f32, row-major, passed to `f` (borrowed when `t` is a
/// contiguous f32 CPU tensor, else copied once).
pub(crate) fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = super::dtype::to_f32(t)?;
    let offsets = t.layout().contiguous_offsets();
    if let Some((start, end)) = offsets {
        let (storage, _) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(cpu) = &*storage {
            return Ok(f(&cpu.as_slice::<f32>()?[start..end]));
        }
    }
    Ok(f(&t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?))
}

/// `xs` [.., k] through one of our GEMMs: `product(x, m)` gets `x` [m, k]
/// row-major and returns [m, n]; the result is [.., n].
fn own_matmul(xs: &Tensor, (n, k): (usize, usize), product: impl FnOnce(&[f32], usize) -> Result<Vec<f32>>) -> Result<Tensor> {
    if xs.dims().last() != Some(&k) {
        candle_core::bail!("matmul: input {:?} does not end in {k}", xs.dims())
    }
    let m = xs.elem_count() / k;
    let y = with_f32_slice(xs, |x| product(x, m))??;
    output_of(xs, n, y)
}

/// `y` ([m, n] row-major) as the tensor of `xs`'s shape with its last
/// dimension `n`.
fn output_of(xs: &Tensor, n: usize, y: Vec<f32>) -> Result<Tensor> {
    let mut dims = xs.dims().to_vec();
    *dims.last_mut().expect("xs has a last dim") = n;
    Tensor::from_vec(y, dims, &Device::Cpu)
}

/// One of our packed weights.
#[derive(Clone, Copy)]
enum Own<'a> {
    F32(&'a PackedF32),
    Q8(&'a PackedQ8),
    Q4(&'a PackedQ4),
    Q8x8(&'a PackedQ8x8),
}

impl<'a> Own<'a> {
    /// `kernel`'s GEMM of a packed quantised weight, when `w` is packed for it
    /// (none for candle's blocks or another kernel's panels).
    fn quantized(w: &'a QWeight, kernel: QuantKernel) -> Option<Self> {
        match (kernel, w) {
            (QuantKernel::Int8, QWeight::Q8(p)) => Some(Own::Q8(p)),
            (QuantKernel::Int8, QWeight::Q4(p)) => Some(Own::Q4(p)),
            (QuantKernel::Int8x8, QWeight::Q8x8(p)) => Some(Own::Q8x8(p)),
            (QuantKernel::Int8x8, QWeight::Q4(p)) if INT8X8_Q4 => Some(Own::Q4(p)),
            _ => None,
        }
    }
}

/// `xs` [.., k] through one of our GEMMs with its epilogue: `act(xs · Wᵀ +
/// bias) + residual` (`residual` of the output's shape).
fn own_fused(w: Own, bias: Option<&Tensor>, activation: Option<Activation>, residual: Option<&Tensor>, xs: &Tensor) -> Result<Tensor> {
    let (n, k) = match w {
        Own::F32(p) => p.dims(),
        Own::Q8(p) => p.dims(),
        Own::Q4(p) => p.dims(),
        Own::Q8x8(p) => p.dims(),
    };
    if let Some(r) = residual {
        if r.elem_count() != xs.elem_count() / k * n {
            candle_core::bail!("linear layer [{n}, {k}]: residual {:?} for input {:?}", r.dims(), xs.dims())
        }
    }
    own_matmul(xs, (n, k), |x, m| {
        let with_bias = |b: Option<&[f32]>| {
            with_opt_f32_slice(residual, |residual| {
                let epilogue = Epilogue { bias: b, activation, residual };
                match w {
                    Own::F32(p) => p.matmul_fused(x, m, &epilogue),
                    Own::Q8(p) => p.matmul_fused(x, m, &epilogue),
                    Own::Q4(p) => p.matmul_fused(x, m, &epilogue),
                    Own::Q8x8(p) => p.matmul_fused(x, m, &epilogue),
                }
            })
        };
        with_opt_f32_slice(bias, with_bias)?
    })
}

/// [`with_f32_slice`] of an optional tensor.
fn with_opt_f32_slice<R>(t: Option<&Tensor>, f: impl FnOnce(Option<&[f32]>) -> R) -> Result<R> {
    match t {
        Some(t) => with_f32_slice(t, |s| f(Some(s))),
        None => Ok(f(None)),
    }
}

impl Linear {
    /// `activation(xs · Wᵀ + b)`: fused into the GEMM's epilogue on our
    /// GEMMs (a packed f32 layer, a quantised one packed for this thread's kernel),
    /// else the layer then [`Activation::apply`]; the same bits either way.
    pub fn forward_activation(&self, xs: &Tensor, activation: Activation) -> Result<Tensor> {
        match self.own() {
            Some(w) => own_fused(w, self.bias(), Some(activation), None, xs),
            None => self.candle_fused(xs, Some(activation), None),
        }
    }

    /// `residual + (xs · Wᵀ + b)` (`residual` of the output's shape): fused
    /// into the GEMM's epilogue on our GEMMs, else the layer then the sum; the
    /// same bits either way.
    pub fn forward_residual(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        match self.own() {
            Some(w) => own_fused(w, self.bias(), None, Some(residual), xs),
            None => self.candle_fused(xs, None, Some(residual)),
        }
    }

    /// `act(xs · Wᵀ + b) + residual` off our GEMMs: a quantised layer on
    /// candle's kernels ([`Linear::quantized_forward`]: the epilogue in one
    /// pass), a `Dense` one as candle's operations one after the other.
    fn candle_fused(&self, xs: &Tensor, activation: Option<Activation>, residual: Option<&Tensor>) -> Result<Tensor> {
        if let Self::Quantized { weight, bias, shape } = self {
            return quantized_forward(weight, bias.as_ref(), *shape, xs, activation, residual);
        }
        let ys = self.forward(xs)?;
        let ys = match activation {
            Some(a) => a.apply(&ys)?,
            None => ys,
        };
        match residual {
            Some(r) => r + ys,
            None => Ok(ys),
        }
    }

    /// `[xs · Wᵢᵀ + bᵢ]` for `N` layers of the same input (q, k and v of
    /// self-attention): on our f32 GEMM, or our q8_0 × q8_0 GEMM, with every
    /// layer on the same one, `xs` is packed (quantised) once for all of them
    /// instead of once per layer (two of the six products' inputs of a
    /// ViT-B/16 layer: q, k, v, the output projection, fc1, fc2); otherwise
    /// one [`Module::forward`] each. The same bits either way.
    ///
    /// Errors as [`Module::forward`].
    pub fn forward_shared<const N: usize>(layers: [&Linear; N], xs: &Tensor) -> Result<[Tensor; N]> {
        let owns: Vec<Option<Own>> = layers.iter().map(|l| l.own()).collect();
        let k = *xs.dims().last().unwrap_or(&0);
        let same_k = |d: (usize, usize)| d.1 == k;
        let all_f32 = owns.iter().all(|o| matches!(o, Some(Own::F32(p)) if same_k(p.dims())));
        let all_q8x8 = owns.iter().all(|o| matches!(o, Some(Own::Q8x8(p)) if same_k(p.dims())));
        if N < 2 || !(all_f32 || all_q8x8) || k == 0 {
            let ys = layers.iter().map(|l| l.forward(xs)).collect::<Result<Vec<_>>>()?;
            return Ok(ys.try_into().unwrap_or_else(|_| unreachable!("N outputs")));
        }
        let m = xs.elem_count() / k;
        let biases = layers
            .iter()
            .map(|l| l.bias().map(|b| super::dtype::to_f32(b)?.flatten_all()?.to_vec1::<f32>()).transpose())
            .collect::<Result<Vec<_>>>()?;
        let ys: Vec<(usize, Vec<f32>)> = with_f32_slice(xs, |x| {
            if all_f32 {
                // The input packed once; the layers one after the other.
                let a = PackedRows::new(x, m, k, F32Isa::best());
                owns.iter()
                    .zip(&biases)
                    .map(|(o, bias)| match o {
                        Some(Own::F32(p)) => (p.dims().0, p.matmul_packed(&a, &Epilogue::bias(bias.as_deref()))),
                        _ => unreachable!("every layer on the f32 GEMM"),
                    })
                    .collect()
            } else {
                // Every layer in one product: each thread quantises its rows once.
                let layers: Vec<(&PackedQ8x8, Epilogue)> = owns
                    .iter()
                    .zip(&biases)
                    .map(|(o, bias)| match o {
                        Some(Own::Q8x8(p)) => (*p, Epilogue::bias(bias.as_deref())),
                        _ => unreachable!("every layer on the q8_0 × q8_0 GEMM"),
                    })
                    .collect();
                PackedQ8x8::matmul_shared(&layers, x, m).into_iter().zip(&layers).map(|(y, (p, _))| (p.dims().0, y)).collect()
            }
        })?;
        let ys = ys.into_iter().map(|(n, y)| output_of(xs, n, y)).collect::<Result<Vec<_>>>()?;
        Ok(ys.try_into().unwrap_or_else(|_| unreachable!("N outputs")))
    }

    /// `residual + second(activation(first(xs)))` (`residual` of the
    /// output's shape; an MLP block) when both layers run on the q8_0 × q8_0
    /// GEMM: one product per thread's rows through both layers
    /// ([`PackedQ8x8::matmul_chain_with`]), at most `max_rows` rows of the
    /// intermediate at a time. The same bits as
    /// [`forward_activation`](Self::forward_activation) then
    /// [`forward_residual`](Self::forward_residual); `None` when the layers are
    /// on other kernels or their shapes do not chain (the caller runs them
    /// one after the other).
    pub fn forward_chain_residual(
        first: &Linear,
        activation: Activation,
        second: &Linear,
        xs: &Tensor,
        residual: &Tensor,
        max_rows: usize,
    ) -> Option<Result<Tensor>> {
        let (Some(Own::Q8x8(w1)), Some(Own::Q8x8(w2))) = (first.own(), second.own()) else {
            return None;
        };
        let ((n1, k), (n2, k2)) = (w1.dims(), w2.dims());
        if k2 != n1 || xs.dims().last() != Some(&k) || residual.elem_count() != xs.elem_count() / k * n2 {
            return None;
        }
        Some(own_matmul(xs, (n2, k), |x, m| {
            let y = with_opt_f32_slice(first.bias(), |b1| {
                with_opt_f32_slice(second.bias(), |b2| {
                    with_f32_slice(residual, |r| {
                        let e1 = Epilogue { bias: b1, activation: Some(activation), residual: None };
                        let e2 = Epilogue { bias: b2, activation: None, residual: Some(r) };
                        PackedQ8x8::matmul_chain_with((w1, e1), (w2, e2), x, m, max_rows, Q8x8Isa::best())
                    })
                })
            })???;
            Ok(y)
        }))
    }

    /// The packed weight our GEMM reads, when the layer computes on one now.
    fn own(&self) -> Option<Own<'_>> {
        match self {
            Self::Packed { weight, .. } => Some(Own::F32(weight)),
            Self::Quantized { weight, .. } => Own::quantized(weight, quant_kernel()),
            _ => None,
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if let Some(w) = self.own() {
            return own_fused(w, self.bias(), None, None, xs);
        }
        match self {
            Self::Dense(l) => l.forward(xs),
            Self::Packed { .. } => unreachable!("packed layers run on our GEMM (Linear::own)"),
            Self::Quantized { weight, bias, shape } => quantized_forward(weight, bias.as_ref(), *shape, xs, None, None),
        }
    }
}

/// `act(xs · Wᵀ + bias) + residual` of a quantised layer under this thread's
/// [`QuantKernel`]. On candle's kernels (`Blocks`, `Dequantize`) the bias,
/// activation and residual sum are the [`Epilogue`] applied in one pass over
/// the product (on the CPU; candle's operations elsewhere): the same bits as
/// a tensor operation per part, as the GEMMs' fused epilogues, without a
/// tensor and a pass each.
fn quantized_forward(
    weight: &QWeight,
    bias: Option<&Tensor>,
    shape: (usize, usize),
    xs: &Tensor,
    activation: Option<Activation>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    // A weight held in another form than this kernel's is packed for this
    // call (a comparison's path: weights loaded under `Int8` or `Int8x8` are
    // packed at load for it).
    let kernel = quant_kernel();
    let repacked = match (kernel, weight) {
        (QuantKernel::Int8 | QuantKernel::Int8x8, QWeight::Blocks(QMatMul::QTensor(t))) => {
            QWeight::pack(&t.data()?, t.dtype(), shape, kernel).transpose()?
        }
        (QuantKernel::Int8 | QuantKernel::Int8x8, w @ (QWeight::Q8(_) | QWeight::Q4(_) | QWeight::Q8x8(_))) => {
            let t = w.packed_qtensor(shape)?;
            QWeight::pack(&t.data()?, t.dtype(), shape, kernel).transpose()?
        }
        _ => None,
    };
    let weight = repacked.as_ref().unwrap_or(weight);
    let kernel = match (kernel, weight) {
        (QuantKernel::Int8 | QuantKernel::Int8x8, w) if Own::quantized(w, kernel).is_none() => FALLBACK_KERNEL,
        (kernel, _) => kernel,
    };
    let ys = match (kernel, weight) {
        (QuantKernel::Int8 | QuantKernel::Int8x8, w) => match Own::quantized(w, kernel) {
            Some(own) => return own_fused(own, bias, activation, residual, xs),
            None => candle_core::bail!("int8 matmul: the weight is not packed"),
        },
        (QuantKernel::Dequantize, QWeight::Blocks(QMatMul::QTensor(t))) => dequantized_matmul(t, xs)?,
        // The block kernel reads its input row by row.
        (_, QWeight::Blocks(matmul)) => matmul.forward(&xs.contiguous()?)?,
        (QuantKernel::Dequantize, w) => dequantized_matmul(&w.packed_qtensor(shape)?, xs)?,
        (_, w) => QMatMul::from_qtensor(w.packed_qtensor(shape)?)?.forward(&xs.contiguous()?)?,
    };
    if activation.is_none() && residual.is_none() || !ys.device().is_cpu() {
        let ys = match bias {
            Some(b) => ys.broadcast_add(b)?,
            None => ys,
        };
        let ys = match activation {
            Some(a) => a.apply(&ys)?,
            None => ys,
        };
        return match residual {
            Some(r) => r + ys,
            None => Ok(ys),
        };
    }
    let n = shape.0;
    if let Some(r) = residual {
        if r.dims() != ys.dims() {
            candle_core::bail!("linear layer [{n}, {}]: residual {:?} for output {:?}", shape.1, r.dims(), ys.dims())
        }
    }
    let mut out = with_f32_slice(&ys, <[f32]>::to_vec)?;
    with_opt_f32_slice(bias, |bias| {
        with_opt_f32_slice(residual, |residual| {
            let epilogue = Epilogue { bias, activation, residual };
            for (row, values) in out.chunks_exact_mut(n).enumerate() {
                epilogue.apply(row, 0, n, values);
            }
        })
    })??;
    Tensor::from_vec(out, ys.shape(), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::QuantKernel;

    /// The names a load request and `--quant-kernel` accept are the names
    /// `quantKernel()` reports.
    #[test]
    fn quant_kernel_names_round_trip() {
        for name in ["int8", "int8x8", "blocks", "dequantize"] {
            let kernel: QuantKernel = name.parse().unwrap();
            assert_eq!(kernel.to_string(), name);
        }
        assert!("int4".parse::<QuantKernel>().is_err());
    }
}
