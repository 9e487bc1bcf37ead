//! The JavaScript API (wasm-bindgen), one file per part of it. Every function
//! returns a JS `Error` with a message instead of panicking;
//! `console_error_panic_hook` reports anything left, and `crash_note` leaves its
//! message where the crash's reporter reads it.

mod bundle;
mod crash_note;
mod custom;
mod dicom;
mod engine;
#[cfg(feature = "gpu")]
mod gpu;
mod js_bytes;
mod kb;
mod knowledge;
mod kpl;
mod model;
mod test_hooks;

use wasm_bindgen::prelude::*;

pub use knowledge::KnowledgeBase;
pub use model::ClipModel;
/// `initThreadPool(n)` in the threaded build: starts `n` Web Workers sharing this
/// module's memory as rayon's global pool (wasm-bindgen-rayon); call it once, right
/// after `init()`, before any encoding. Absent from the single-threaded build.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// The threads of rayon's global pool, over which our kernels split their work
/// (`nn::gemm`); after `initThreadPool(n)`, `n`. Threaded build only: call it after
/// `initThreadPool` (before, it would try to start a default pool).
#[cfg(feature = "threads")]
#[wasm_bindgen(js_name = rayonThreads)]
pub fn rayon_threads() -> usize {
    rayon::current_num_threads()
}

/// The SIMD this build was compiled for: `"relaxed"` (pkg/relaxed/,
/// pkg/threads-relaxed/: the GEMMs' relaxed-SIMD kernels) or `"simd128"`. The
/// worker reports it with the load result.
#[wasm_bindgen(js_name = simdBuild)]
pub fn simd_build() -> String {
    if cfg!(target_feature = "relaxed-simd") { "relaxed" } else { "simd128" }.into()
}

pub(crate) fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen(start)]
pub fn start() {
    crash_note::install();
}

/// `flat` split into `n` equal rows (`what` names it in the error).
fn rows(flat: &[f32], n: usize, what: &str) -> Result<Vec<Vec<f32>>, JsError> {
    if n == 0 || !flat.len().is_multiple_of(n) {
        return Err(JsError::new(&format!("{what}: {} values do not split into {n} rows", flat.len())));
    }
    Ok(flat.chunks(flat.len() / n).map(|r| r.to_vec()).collect())
}
