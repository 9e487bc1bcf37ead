//! Custom labels with descriptions in the page: the user's classes and their
//! descriptions become a knowledge base in memory, classified by the same code as
//! a task's base (`classifier::classify_embeddings`): several images run
//! transductive KPL over the set, one image the single-image retrieval, which with
//! no more texts per class than `k` (8) is the average of the class prompt and all
//! its descriptions (a prompt ensemble).
//!
//! The texts are embedded by the caller (the worker, with `ClipModel.embedText`),
//! so this file needs nothing from the model but its logit scale.

use wasm_bindgen::prelude::*;

use super::js_error;
use super::model::ClipModel;
use crate::knowledge::base::{KnowledgeBase, ModelStamp, StorageDtype};
use crate::knowledge::task::TaskClass;

/// One class as JS gives it: its name and every text that describes it, the class
/// prompt ("a photo of a {name}.") first.
#[derive(serde::Deserialize)]
struct CustomClass {
    name: String,
    texts: Vec<String>,
}

/// Classifies `n` image embeddings (concatenated, L2-normalised) with custom
/// classes.
///
/// - `classes`: `[{name, texts: [prompt, description, …]}]`, at least one, each
///   with at least one text, the class prompt first;
/// - `textEmbeddings`: the L2-normalised embedding of every text, class by class in
///   the order of `classes` (so `Σ texts.length` rows of the image dimension);
/// - `model`: the loaded model, whose scale and scoring are used.
///
/// Returns `[{label, scores, method, clip_scores, clip_label, evidence}]`, one per
/// image, exactly like `KnowledgeBase.classify`: `method` is `kpl` for several
/// images, `single-image` for one; `clip_scores` are plain zero-shot scores on the
/// prompts, as the model's family scores them.
#[wasm_bindgen(js_name = classifyCustom)]
pub fn classify_custom(
    images: &[f32],
    n: usize,
    classes: JsValue,
    text_embeddings: &[f32],
    model: &ClipModel,
    top_evidence: usize,
) -> Result<JsValue, JsError> {
    let m = &model.pipeline.model;
    let classes: Vec<CustomClass> = serde_wasm_bindgen::from_value(classes).map_err(js_error)?;
    if classes.is_empty() {
        return Err(JsError::new("custom labels: enter at least one class"));
    }
    if let Some(c) = classes.iter().find(|c| c.texts.is_empty()) {
        return Err(JsError::new(&format!(
            "custom labels: class {:?} has no text",
            c.name
        )));
    }
    if n == 0 || images.is_empty() || !images.len().is_multiple_of(n) {
        return Err(JsError::new(&format!(
            "images: {} values do not split into {n} rows",
            images.len()
        )));
    }
    let dim = images.len() / n;
    let rows: usize = classes.iter().map(|c| c.texts.len()).sum();
    if text_embeddings.len() != rows * dim {
        return Err(JsError::new(&format!(
            "text embeddings: {} values, expected {rows} texts × {dim}",
            text_embeddings.len()
        )));
    }
    let mut class_of = Vec::with_capacity(rows);
    let mut class_prompts = Vec::with_capacity(classes.len() * dim);
    let mut row = 0;
    for (c, class) in classes.iter().enumerate() {
        class_prompts.extend_from_slice(&text_embeddings[row * dim..(row + 1) * dim]);
        class_of.extend(std::iter::repeat_n(c, class.texts.len()));
        row += class.texts.len();
    }
    let kb = KnowledgeBase {
        task: "custom".into(),
        title: "Custom labels".into(),
        prompt_template: crate::pipeline::zero_shot_prompt("{}"),
        classes: classes
            .into_iter()
            .map(|c| TaskClass {
                name: c.name,
                descriptions: c.texts,
            })
            .collect(),
        dim,
        model: ModelStamp {
            fingerprint: String::new(),
            name: String::new(),
            random_weights: false,
            family: m.family(),
        },
        descriptions: text_embeddings.to_vec(),
        class_of,
        class_prompts,
        proxies: None,
        dtype: StorageDtype::F32,
    };
    let image_rows: Vec<Vec<f32>> = images.chunks(dim).map(<[f32]>::to_vec).collect();
    let results = crate::classifier::classify_embeddings(
        &kb,
        &image_rows,
        &kpl_core::KplParams { tau_t: m.pseudo_label_temperature(), ..Default::default() },
        m.logit_scale_exp(),
        m.scoring(),
        top_evidence,
    )
    .map_err(js_error)?;
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    serde::Serialize::serialize(&results, &serializer).map_err(js_error)
}
