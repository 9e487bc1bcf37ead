//! `runKpl`: KPL (greedy OT then proxy learning) on raw embeddings, for the
//! benchmarks.

use wasm_bindgen::prelude::*;

use super::{js_error, rows};

/// Runs KPL (greedy OT then proxy learning) on raw embeddings and returns the
/// predictions; used by the benchmarks and by custom-label mode.
#[wasm_bindgen(js_name = runKpl)]
#[allow(clippy::too_many_arguments)]
pub fn run_kpl(
    images: &[f32],
    n: usize,
    descriptions: &[f32],
    class_of: &[u32],
    num_classes: usize,
    k: usize,
    iters_proxy: usize,
) -> Result<Vec<u32>, JsError> {
    let image_rows = rows(images, n, "images")?;
    let dim = image_rows[0].len();
    let names = (0..num_classes).map(|c| c.to_string()).collect();
    let kb = kpl_core::KnowledgeEmbeddings::new(
        dim,
        names,
        descriptions.to_vec(),
        class_of.iter().map(|&c| c as usize).collect(),
    )
    .map_err(js_error)?;
    let matrix = kpl_core::Matrix::from_rows(&image_rows).map_err(js_error)?;
    let params = kpl_core::KplParams { k, iters_proxy, ..Default::default() };
    let outcome = kpl_core::run(&matrix, &kb, &params, kpl_core::Method::Kpl).map_err(js_error)?;
    Ok(outcome.predictions.iter().map(|&p| p as u32).collect())
}
