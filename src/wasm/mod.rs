//! The JavaScript API (wasm-bindgen), one file per part of it. Every function
//! returns a JS `Error` with a message instead of panicking;
//! `console_error_panic_hook` reports anything left.

mod bundle;
mod custom;
mod dicom;
mod engine;
#[cfg(feature = "gpu")]
mod gpu;
mod kb;
mod knowledge;
mod kpl;
mod model;
mod test_hooks;

use wasm_bindgen::prelude::*;

pub use knowledge::KnowledgeBase;
pub use model::ClipModel;

pub(crate) fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// `flat` split into `n` equal rows (`what` names it in the error).
fn rows(flat: &[f32], n: usize, what: &str) -> Result<Vec<Vec<f32>>, JsError> {
    if n == 0 || flat.len() % n != 0 {
        return Err(JsError::new(&format!("{what}: {} values do not split into {n} rows", flat.len())));
    }
    Ok(flat.chunks(flat.len() / n).map(|r| r.to_vec()).collect())
}
