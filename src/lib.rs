//! KPL in the browser: dual image–text encoders (CLIP, SigLIP) in candle, their
//! exact preprocessing and tokenisation, and the Knowledge Proxy Learning method
//! (in the `kpl-core` crate), shared by the native CLI and the wasm bindings.

// The threaded wasm build is nightly-only already (`-Z build-std`, atomics); there an
// allocation failure names itself before it aborts (`wasm::crash_note`).
#![cfg_attr(all(feature = "threads", target_arch = "wasm32"), feature(alloc_error_hook))]

pub mod bundle;
pub mod classifier;
pub mod engine;
pub mod error;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod io;
pub mod isolate;
pub mod knowledge;
pub mod models;
pub mod nn;
/// The embeddings `.npz` of `kpl eval-embeddings` (needs the `cli` feature's ndarray-npy).
#[cfg(feature = "cli")]
pub mod npz;
pub mod pipeline;
pub mod preprocess;
pub mod text;
pub mod text_clean;
/// Random checkpoints for tests and benchmarks (not in the wasm nor the default build).
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;
pub mod tokenizer;

#[cfg(not(target_arch = "wasm32"))]
pub mod model_dir;
#[cfg(not(target_arch = "wasm32"))]
pub mod model_files;
/// The static site of `kpl site`: its header table and server configurations.
#[cfg(not(target_arch = "wasm32"))]
pub mod site;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
pub use pipeline::{ModelFiles, Pipeline};
