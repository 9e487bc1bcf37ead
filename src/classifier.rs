//! From image embeddings and a knowledge base to predictions with evidence:
//! the product's modes on top of the KPL engine (`kpl-core`), shared by the
//! CLI and the browser.
//!
//! - several images: transductive KPL (retrieval, greedy OT, proxy learning) over them;
//! - one image and a base with fitted proxies: inductive, argmax x · w;
//! - one image without proxies: single-image retrieval of its own top-k descriptions.

use kpl_core::{KplParams, Matrix, Method};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::knowledge::base::{KnowledgeBase, ModelStamp, StorageDtype};
use crate::knowledge::task::Task;
use crate::models::scoring::softmax;
use crate::models::Scoring;
use crate::pipeline::{zero_shot_prompt, Pipeline};

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceItem {
    pub description: String,
    pub similarity: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageResult {
    pub label: String,
    /// Probabilities per class, as the KPL method (ARCHITECTURE.md) defines them for the
    /// proxies used: learned proxies (`kpl`, `proxies`) give step 5's
    /// `Q = softmax(x·W / tau_i)`, the distribution proxy learning fits to the
    /// pseudo-labels (`tau_i` of the fit for stored proxies); the text proxies of
    /// `single-image` give `softmax(logit scale × cos)`, step 3's `P0` at the
    /// model's own scale (1/`tau_t` for OpenAI's CLIP and for SigLIP).
    pub scores: Vec<f32>,
    /// `kpl` (transductive over a batch), `proxies` (fitted on a pool) or
    /// `single-image` (per-image retrieval).
    pub method: &'static str,
    /// Plain zero-shot scores ("a photo of a {class}."), as the model's family
    /// scores them (CLIP: softmax over the classes; SigLIP: a sigmoid per class).
    pub clip_scores: Vec<f32>,
    pub clip_label: String,
    /// The predicted class's descriptions most similar to the image.
    pub evidence: Vec<EvidenceItem>,
}

pub fn engine_error(context: &str, e: kpl_core::KplError) -> Error {
    Error::Input(format!("{context}: {e}"))
}

fn cosines(image: &[f32], rows: &[f32], dim: usize) -> Vec<f32> {
    rows.chunks_exact(dim).map(|w| w.iter().zip(image).map(|(a, b)| a * b).sum()).collect()
}

fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

fn scaled_softmax(cos: &[f32], scale: f32) -> Vec<f32> {
    softmax(&cos.iter().map(|c| c * scale).collect::<Vec<_>>())
}

/// Classifies image embeddings (L2-normalised, from the base's model) with a base.
pub fn classify_embeddings(
    kb: &KnowledgeBase,
    images: &[Vec<f32>],
    params: &KplParams,
    logit_scale: f32,
    zero_shot: Scoring,
    top_evidence: usize,
) -> Result<Vec<ImageResult>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let names = kb.class_names();
    let engine_kb = kb.engine_embeddings().map_err(|e| engine_error("knowledge base", e))?;
    // (method, proxies, the factor on cosines of the scores' softmax)
    let (method, proxies, score_scale): (&'static str, Vec<Vec<f32>>, f32) = if images.len() > 1 {
        let matrix = Matrix::from_rows(images).map_err(|e| engine_error("images", e))?;
        let outcome = kpl_core::run(&matrix, &engine_kb, params, Method::Kpl).map_err(|e| engine_error("KPL", e))?;
        ("kpl", outcome.proxies.iter_rows().map(|r| r.to_vec()).collect(), (1.0 / params.tau_i) as f32)
    } else if let Some((fitted, info)) = &kb.proxies {
        let tau_i = info.params.get("tau_i").and_then(serde_json::Value::as_f64).filter(|t| *t > 0.0).unwrap_or(params.tau_i);
        ("proxies", fitted.chunks_exact(kb.dim).map(|r| r.to_vec()).collect(), (1.0 / tau_i) as f32)
    } else {
        let single = kpl_core::classify_single(&images[0], &engine_kb, params.k)
            .map_err(|e| engine_error("single-image retrieval", e))?;
        ("single-image", single.proxies.iter_rows().map(|r| r.to_vec()).collect(), logit_scale)
    };
    let flat: Vec<f32> = proxies.concat();
    images
        .iter()
        .map(|image| {
            let cos = cosines(image, &flat, kb.dim);
            let best = argmax(&cos);
            let clip_cos = cosines(image, &kb.class_prompts, kb.dim);
            let clip_scores = zero_shot.scores(logit_scale, &clip_cos);
            let evidence = kpl_core::evidence(image, &engine_kb, best, top_evidence)
                .map_err(|e| engine_error("evidence", e))?
                .into_iter()
                .map(|ev| EvidenceItem {
                    description: kb.description_text(ev.description).to_string(),
                    similarity: ev.similarity,
                })
                .collect();
            Ok(ImageResult {
                label: names[best].clone(),
                scores: scaled_softmax(&cos, score_scale),
                method,
                clip_label: names[argmax(&clip_scores)].clone(),
                clip_scores,
                evidence,
            })
        })
        .collect()
}

/// What a base records about the model that built it.
pub fn model_stamp(pipeline: &Pipeline, name: &str) -> Result<ModelStamp> {
    Ok(ModelStamp {
        fingerprint: pipeline.model.fingerprint()?,
        name: pipeline.config().fixture_name().map(str::to_string).unwrap_or_else(|| name.to_string()),
        family: pipeline.family(),
        random_weights: pipeline.is_random(),
    })
}

/// Embeds every description of a task (with its prompt template) and every
/// plain class prompt. `progress(done, total)` is called after each text.
pub fn build_knowledge_base(
    pipeline: &Pipeline,
    task: &Task,
    model_name: &str,
    dtype: StorageDtype,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<KnowledgeBase> {
    // CLIP's context is a schema rule (a description must fit 77 tokens);
    // SigLIP's processor truncates at its context, as the reference does.
    let length_rule = if pipeline.family() == crate::models::Family::Clip { pipeline.tokenizer.as_ref() } else { None };
    let problems = task.problems(None, length_rule);
    if let Some(problem) = problems.into_iter().find(|p| p.contains("tokens") || p.contains("at least 2")) {
        return Err(Error::Input(format!("task {}: {problem}", task.name)));
    }
    if let Some(class) = task.classes.iter().find(|c| c.descriptions.is_empty()) {
        return Err(Error::Input(format!("task {}: class {:?} has no descriptions", task.name, class.name)));
    }
    let total: usize = task.classes.iter().map(|c| c.descriptions.len() + 1).sum();
    let mut done = 0;
    let mut descriptions = Vec::new();
    for class in &task.classes {
        for description in &class.descriptions {
            descriptions.extend(pipeline.embed_text(&task.prompt(&class.name, description))?);
            done += 1;
            progress(done, total);
        }
    }
    let mut class_prompts = Vec::new();
    for class in &task.classes {
        class_prompts.extend(pipeline.embed_text(&zero_shot_prompt(&class.name))?);
        done += 1;
        progress(done, total);
    }
    let dim = pipeline.embedding_dim();
    Ok(KnowledgeBase::from_task_embeddings(
        task,
        model_stamp(pipeline, model_name)?,
        dim,
        descriptions,
        class_prompts,
        dtype,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::base::{FitInfo, ModelStamp, StorageDtype};
    use crate::knowledge::task::TaskClass;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    /// Two classes in 3-d, two descriptions each, and fitted proxies.
    fn base(tau_i: Option<f64>) -> KnowledgeBase {
        let rows = [[1.0, 0.2, 0.0], [0.9, 0.0, 0.3], [0.0, 1.0, 0.1], [0.2, 0.8, 0.0]];
        let params = match tau_i {
            Some(t) => serde_json::json!({ "tau_i": t }),
            None => serde_json::json!({}),
        };
        KnowledgeBase {
            task: "t".into(),
            title: "t".into(),
            prompt_template: "{}".into(),
            classes: ["a", "b"].iter().map(|n| TaskClass { name: n.to_string(), descriptions: vec!["x".into(), "y".into()] }).collect(),
            dim: 3,
            model: ModelStamp { fingerprint: String::new(), name: String::new(), random_weights: true, family: crate::models::Family::Clip },
            descriptions: rows.iter().flat_map(|r| unit(r)).collect(),
            class_of: vec![0, 0, 1, 1],
            class_prompts: [unit(&[1.0, 0.1, 0.0]), unit(&[0.1, 1.0, 0.0])].concat(),
            proxies: Some(([unit(&[1.0, 0.1, 0.1]), unit(&[0.0, 1.0, 0.2])].concat(), FitInfo {
                method: "kpl".into(),
                pool_size: 2,
                k: 2,
                params,
            })),
            dtype: StorageDtype::F32,
        }
    }

    /// The method's step 5: learned proxies W model `softmax(x·W / tau_i)`;
    /// the fit's own `tau_i` when it recorded one, never the model's logit scale.
    #[test]
    fn fitted_proxies_score_at_the_fits_tau_i() {
        let image = unit(&[0.7, 0.6, 0.1]);
        for (recorded, expected_tau) in [(Some(0.05), 0.05f64), (None, 0.04)] {
            let kb = base(recorded);
            let params = KplParams { k: 2, ..KplParams::default() };
            let r = classify_embeddings(&kb, &[image.clone()], &params, 100.0, Scoring::Softmax, 1).unwrap().remove(0);
            assert_eq!(r.method, "proxies");
            let (w, _) = kb.proxies.as_ref().unwrap();
            let logits: Vec<f64> = w
                .chunks_exact(3)
                .map(|p| p.iter().zip(&image).map(|(a, b)| f64::from(a * b)).sum::<f64>() / expected_tau)
                .collect();
            let max = logits.iter().cloned().fold(f64::MIN, f64::max);
            let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            for (got, l) in r.scores.iter().zip(&logits) {
                let want = (l - max).exp() / total;
                assert!((f64::from(*got) - want).abs() < 1e-5, "{:?} vs softmax at tau_i {expected_tau}", r.scores);
            }
        }
    }
}
