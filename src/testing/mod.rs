//! Random checkpoints generated on the fly, in the layout each family's
//! loader reads (the `testing` feature: the CLI's `random-model`, the tests and
//! the benchmarks enable it; the wasm and the library's default build do not).
//!
//! Pretrained weights cannot be downloaded on the build machines and a
//! full-size checkpoint (about 600 MB in f32) must never be committed, so
//! benchmarks and size/fidelity tests build one here. The tensor names come from
//! the family's own table (`models::clip::names`, `models::siglip::names`,
//! `nn::transformer`'s `LayerNames`), the one its loader and `bundle::pack` use, so a checkpoint
//! generated here is exactly what the loader reads.
//!
//! Weights are drawn from normal(0, std) with a tiny seeded xorshift64* and
//! Box–Muller; layer-norm weights are 1 and their biases 0. Each tensor has its
//! own stream, seeded from the seed and the tensor's name, so the values of one
//! tensor do not depend on which others exist. Every folder's `config.json`
//! says `"kpl_random_weights": true`: outputs mean nothing.

pub mod bench;
pub mod clip;
pub mod open_clip;
pub mod siglip;
mod tensors;
pub mod variants;

pub use tensors::{safetensors_len, write_safetensors, Init, TensorSpec};
