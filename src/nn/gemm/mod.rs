//! Our own CPU matrix products for the encoders' linear layers.
//!
//! - [`q8`]: `y = x · Wᵀ` for a q8_0 weight, repacked once at load into
//!   8-column panels, the activations quantised to int16 per 32-value block at
//!   each call; the weight is never expanded to f32. One algorithm for native
//!   and wasm: the same integer sums and the same f32 operations in the same
//!   order on every instruction set, so native (AVX2, or the scalar fallback)
//!   and wasm (simd128) give bit-identical results.
//! - [`f32`]: `y = x · Wᵀ + b` for a dense f32 weight, repacked once at load
//!   into 16-column panels, register-blocked micro-kernels (AVX-512 or
//!   AVX2+FMA natively, simd128 in wasm); native (fused multiply-adds) and
//!   wasm (multiply, then add) differ by the rounding of the products.
//!
//! - [`q4`]: `y = x · Wᵀ` for a q4_K weight, kept 4-bit in 8-column panels
//!   (nibbles widened in registers), the activations quantised as for q8;
//!   the same bits natively and in wasm.
//!
//! - [`q8x8`]: `y = x · Wᵀ` for a q8_0 weight with ggml's semantics (the
//!   activations quantised to q8_0 too, each block's integer dot product
//!   exactly ggml's), on AVX-512 VNNI `vpdpbusd` (4 products per 32-bit
//!   lane) in 16-column panels; natively the default for q8_0 where that
//!   instruction is present; in the relaxed-SIMD wasm build, on the relaxed
//!   dot where the engine lowers it to `vpdpbusd` (probed, [`q8x8_relaxed`]).
//!   The wasm default for q8_0 where that kernel is offered, [`q8`] elsewhere.
//!
//! All split their column panels across threads ([`split`]): the same bits
//! at any thread count; all finish each output in an [`epilogue`] (bias,
//! the MLP's activation, the residual sum) as they store it.

pub mod epilogue;
pub mod f32;
mod f32_kernel;
pub(crate) mod pack;
pub mod f32_relaxed;
pub mod q4;
mod q4_kernel;
pub mod q8;
mod q8_kernel;
pub mod q8x8;
mod q8x8_kernel;
pub mod q8x8_relaxed;
mod q8_relaxed;
pub mod quantized;
pub mod rates;
mod split;

pub use epilogue::Epilogue;
pub use f32_kernel::F32Isa;
/// The f32 micro-kernel and its tile sizes, for the fused attention's products (`nn::attention`).
pub(crate) use f32_kernel::{tile as f32_tile, tile_into as f32_tile_into, MAX_ROWS as F32_MAX_ROWS, NR as F32_NR};
pub use q8_kernel::Isa;
pub use q8x8_kernel::Q8x8Isa;
pub use quantized::QuantizedGemm;
