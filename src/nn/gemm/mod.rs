//! Our own CPU matrix products for the encoders' linear layers, one algorithm
//! for native and wasm: the same integer sums and the same f32 operations in
//! the same order on every instruction set, so native (AVX2, or the scalar
//! fallback) and wasm (simd128) give bit-identical results.
//!
//! - [`q8`]: `y = x · Wᵀ` for a q8_0 weight, repacked once at load into
//!   8-column panels, the activations quantised to int16 per 32-value block at
//!   each call; the weight is never expanded to f32.

pub mod q8;
mod q8_kernel;
pub mod rates;

pub use q8_kernel::Isa;
