//! `KnowledgeBase`: a `.kplkb` loaded from its bytes, checked against the
//! model, and the classification of image embeddings with it (KPL's parameters
//! from JS).

use wasm_bindgen::prelude::*;

use super::model::ClipModel;
use super::{js_error, rows};

/// Hyperparameters from JS: any subset of {k, tauT, tauI, alpha, gamma,
/// itersOt, itersProxy, lr}; the rest keep the reference defaults.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsParams {
    k: Option<usize>,
    tau_t: Option<f64>,
    tau_i: Option<f64>,
    alpha: Option<f64>,
    gamma: Option<f64>,
    iters_ot: Option<usize>,
    iters_proxy: Option<usize>,
    lr: Option<f64>,
}

/// `tauT` defaults to the model's own scale ([`crate::models::Model::pseudo_label_temperature`]).
fn params_from_js(value: JsValue, model: &crate::models::Model) -> Result<kpl_core::KplParams, JsError> {
    let js: JsParams = if value.is_undefined() || value.is_null() {
        JsParams::default()
    } else {
        serde_wasm_bindgen::from_value(value).map_err(js_error)?
    };
    let d = kpl_core::KplParams::default();
    Ok(kpl_core::KplParams {
        k: js.k.unwrap_or(d.k),
        tau_t: js.tau_t.unwrap_or_else(|| model.pseudo_label_temperature()),
        tau_i: js.tau_i.unwrap_or(d.tau_i),
        alpha: js.alpha.unwrap_or(d.alpha),
        gamma: js.gamma.unwrap_or(d.gamma),
        iters_ot: js.iters_ot.unwrap_or(d.iters_ot),
        iters_proxy: js.iters_proxy.unwrap_or(d.iters_proxy),
        lr: js.lr.unwrap_or(d.lr),
        ..d
    })
}

/// A knowledge embedding base (`.kplkb`), loaded from its bytes.
#[wasm_bindgen]
pub struct KnowledgeBase {
    base: crate::knowledge::base::KnowledgeBase,
}

#[wasm_bindgen]
impl KnowledgeBase {
    #[wasm_bindgen(js_name = load)]
    pub fn load(bytes: &[u8], name: &str) -> Result<KnowledgeBase, JsError> {
        Ok(KnowledgeBase { base: crate::knowledge::base::KnowledgeBase::from_bytes(bytes, name).map_err(js_error)? })
    }

    #[wasm_bindgen(getter)]
    pub fn task(&self) -> String {
        self.base.task.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn title(&self) -> String {
        self.base.title.clone()
    }

    #[wasm_bindgen(getter, js_name = classNames)]
    pub fn class_names(&self) -> Vec<String> {
        self.base.class_names()
    }

    #[wasm_bindgen(getter, js_name = randomWeights)]
    pub fn random_weights(&self) -> bool {
        self.base.model.random_weights
    }

    #[wasm_bindgen(getter, js_name = hasProxies)]
    pub fn has_proxies(&self) -> bool {
        self.base.proxies.is_some()
    }

    /// Throws unless `model` is the model that built this base.
    #[wasm_bindgen(js_name = checkModel)]
    pub fn check_model(&self, model: &ClipModel, base_name: &str) -> Result<(), JsError> {
        let fingerprint = model.pipeline.model.fingerprint().map_err(js_error)?;
        self.base.check_model(&fingerprint, model.pipeline.family(), base_name, "the loaded model").map_err(js_error)
    }

    /// Classifies `n` image embeddings (concatenated): several run transductive
    /// KPL over the set, one uses fitted proxies or single-image retrieval.
    /// Returns `[{label, scores, method, clip_scores, clip_label, evidence}]`.
    #[wasm_bindgen(js_name = classify)]
    pub fn classify(
        &self,
        embeddings: &[f32],
        n: usize,
        model: &ClipModel,
        params: JsValue,
        top_evidence: usize,
    ) -> Result<JsValue, JsError> {
        let images = rows(embeddings, n, "embeddings")?;
        let m = &model.pipeline.model;
        let params = params_from_js(params, m)?;
        let results =
            crate::classifier::classify_embeddings(&self.base, &images, &params, m.logit_scale_exp(), m.scoring(), top_evidence)
                .map_err(js_error)?;
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        serde::Serialize::serialize(&results, &serializer).map_err(js_error)
    }
}
