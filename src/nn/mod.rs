//! The layers every model family is built from: one linear layer for every
//! weight format (`linear`), the weight source (`weights`), one transformer
//! encoder configured by settings (`transformer`: pre- or post-norm, no /
//! causal / key-padding mask, the activation the config names) and SigLIP's
//! attention-pooling head (`attention_pool`). A family (`crate::models`) only
//! maps its checkpoint's tensor names onto these; the GPU engine uploads the
//! same structures, so a family gets the GPU path by construction.

pub mod attention;
pub mod attention_pool;
pub mod dtype;
#[cfg(not(target_arch = "wasm32"))]
mod expf_lanes;
#[cfg(target_arch = "wasm32")]
mod expf_simd128;
pub mod gemm;
mod lanes;
pub mod linear;
pub mod norm;
pub mod patch;
pub mod transformer;
pub mod weights;

use candle_core::{Result, Tensor, D};
use serde::Deserialize;

/// The MLP's activation, by the name `config.json` gives it (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Activation {
    /// `x · sigmoid(1.702 x)`, as OpenAI's CLIP was trained.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// The exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`: the same function).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
}

impl Activation {
    /// The activation of every value of `xs`: candle's tensor operations,
    /// except `QuickGelu` on an f32 CPU tensor natively, which is
    /// [`at_all`](Self::at_all) (candle's `sigmoid` there calls the platform's
    /// `expf`, whose bits differ by platform; ours are libm's, as in wasm).
    pub fn apply(self, xs: &Tensor) -> Result<Tensor> {
        #[cfg(not(target_arch = "wasm32"))]
        if self == Activation::QuickGelu && xs.device().is_cpu() && xs.dtype() == candle_core::DType::F32 {
            let mut values = xs.flatten_all()?.to_vec1::<f32>()?;
            self.at_all(&mut values);
            return Tensor::from_vec(values, xs.shape(), xs.device());
        }
        match self {
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702f64)?)?,
            Activation::Gelu => xs.gelu_erf(),
            Activation::GeluTanh => xs.gelu(),
        }
    }

    /// [`at`](Self::at) of every value in place, the same bits; `QuickGelu`
    /// several values at a time (libm's `expf` vectorised: `expf_lanes`
    /// natively, `expf_simd128` in wasm).
    #[inline]
    pub fn at_all(self, values: &mut [f32]) {
        #[cfg(not(target_arch = "wasm32"))]
        if self == Activation::QuickGelu {
            expf_lanes::quick_gelu_all(values);
            return;
        }
        #[cfg(target_arch = "wasm32")]
        if self == Activation::QuickGelu {
            // SAFETY: simd128 is a requirement of the wasm build.
            unsafe { expf_simd128::quick_gelu_all(values) };
            return;
        }
        values.iter_mut().for_each(|v| *v = self.at(*v));
    }

    /// [`at_all`](Self::at_all) inlined into its caller: the epilogue of the
    /// GEMMs (`gemm::epilogue`), compiled for the vector instruction set at
    /// hand, runs it on a whole tile after one dispatch. The same bits.
    #[inline(always)]
    pub(crate) fn at_all_inline(self, values: &mut [f32]) {
        #[cfg(not(target_arch = "wasm32"))]
        if self == Activation::QuickGelu {
            expf_lanes::quick_gelu_inline(values);
            return;
        }
        self.at_all(values)
    }

    /// The activation of one value, bit for bit what [`apply`](Self::apply)
    /// gives on CPU: candle 0.11's f32 formulas in their order (`affine` then
    /// candle_nn's `sigmoid` then `mul`, with libm's `expf` on every target;
    /// `GeluErf::f32` with libm's `erff`; `Gelu::f32`). For the GEMMs' fused
    /// epilogue (`gemm::epilogue`).
    #[inline]
    pub fn at(self, v: f32) -> f32 {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Activation::QuickGelu => expf_lanes::quick_gelu(v),
            // `f32::exp` is libm's `expf` in wasm.
            #[cfg(target_arch = "wasm32")]
            Activation::QuickGelu => v * ((-(v * 1.702f32)).exp() + 1.0).recip(),
            Activation::Gelu => (candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v,
            Activation::GeluTanh => 0.5 * v * (1.0 + (SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh()),
        }
    }
}

/// √(2/π) as candle's `Gelu` spells it (`SQRT_TWO_OVER_PI_F32`).
#[allow(clippy::excessive_precision)]
const SQRT_TWO_OVER_PI: f32 = 0.79788456080286535587989211986876373;

/// Divides each row by its L2 norm.
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    xs.broadcast_div(&norm)
}

/// The first line of a candle load error, said in the words a user needs
/// (a missing or misshapen tensor).
pub fn describe_load_error(e: &candle_core::Error) -> String {
    let text = e.to_string();
    let first_line = text.lines().next().unwrap_or(&text).to_string();
    if first_line.contains("cannot find tensor") || first_line.contains("not found") {
        format!("missing tensor: {first_line}")
    } else if first_line.contains("shape mismatch") {
        format!("wrongly shaped tensor: {first_line}")
    } else {
        first_line
    }
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
