//! `buildKnowledgeBase`: a task's knowledge base embedded in the browser by the
//! loaded model's text encoder. The page builds one for a model opened from disk
//! that has no base for the chosen task; the bytes are those `kpl build-kb`
//! writes (`classifier::build_knowledge_base`, f16 storage).

use wasm_bindgen::prelude::*;

use crate::classifier::build_knowledge_base;
use crate::knowledge::base::StorageDtype;
use crate::knowledge::Task;
use super::js_error;
use super::model::ClipModel;

/// Builds the knowledge base of `taskJson` (the bytes of a task's `task.json`,
/// named `taskName` in errors) with `model`'s text encoder; `modelName` is
/// recorded in the base. `onProgress(done, total)` is called after each text
/// embedded. Returns the `.kplkb` bytes.
///
/// Errors: an invalid task.json, a task whose prompts exceed CLIP's 77 tokens,
/// a model without a text encoder or tokenizer.
#[wasm_bindgen(js_name = buildKnowledgeBase)]
pub fn build_kb(
    model: &ClipModel,
    task_json: &[u8],
    task_name: &str,
    model_name: &str,
    on_progress: Option<js_sys::Function>,
) -> Result<Vec<u8>, JsError> {
    let task = Task::from_json(task_json, task_name).map_err(js_error)?;
    let mut progress = |done: usize, total: usize| {
        if let Some(f) = &on_progress {
            // A throwing callback only loses a progress report.
            let _ = f.call2(&JsValue::NULL, &JsValue::from(done as f64), &JsValue::from(total as f64));
        }
    };
    let base = build_knowledge_base(&model.pipeline, &task, model_name, StorageDtype::F16, &mut progress).map_err(js_error)?;
    Ok(base.to_bytes())
}
