//! `kpl classify`: plain zero-shot over `--labels` (CLIP: softmax over the
//! labels; SigLIP: a sigmoid probability per label), or KPL with `--kb`
//! (one image: fitted proxies if the base has them, else single-image retrieval;
//! several images: transductive KPL over the batch).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{exit_code, prepare_images, print_json, FileError, ModelArgs};
use kpl::pipeline::zero_shot_prompt;
use kpl::Error;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated class labels, each prompted as "a photo of a {label}.".
    #[arg(long, required_unless_present = "kb", conflicts_with = "kb")]
    pub labels: Option<String>,
    /// A knowledge base (from `kpl build-kb` or `kpl fit`): classify with KPL.
    #[arg(long)]
    pub kb: Option<PathBuf>,
    /// Evidence descriptions shown per image.
    #[arg(long, default_value_t = 5)]
    pub evidence: usize,
    #[command(flatten)]
    pub kpl: super::kpl_args::KplArgs,
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Serialize)]
struct Classification {
    file: String,
    label: String,
    scores: serde_json::Map<String, serde_json::Value>,
    method: &'static str,
}

#[derive(Serialize)]
struct Output {
    /// Set when the model's weights are random test weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
    /// What the scores are: a softmax over the labels (CLIP) or each label's
    /// own probability, which need not sum to 1 (SigLIP).
    scoring: &'static str,
    results: Vec<Classification>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FileError>,
}

pub const RANDOM_WEIGHTS_WARNING: &str =
    "this model has RANDOM test weights: the labels are meaningless and not a diagnosis";

pub fn parse_labels(labels: &str) -> Result<Vec<String>, Error> {
    let labels: Vec<String> = labels.split(',').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if labels.len() < 2 {
        return Err(Error::Input(format!("--labels needs at least two comma-separated labels, got {labels:?}")));
    }
    Ok(labels)
}

pub fn run(args: &ClassifyArgs) -> Result<i32, Error> {
    if let Some(kb) = &args.kb {
        return run_kpl(args, kb);
    }
    let labels = parse_labels(args.labels.as_deref().unwrap_or_default())?;
    let pipeline = args.model.load()?;
    let label_embeddings =
        labels.iter().map(|l| pipeline.embed_text(&zero_shot_prompt(l))).collect::<Result<Vec<_>, _>>()?;
    let mut prepared = prepare_images(&pipeline, &args.files, args.model.max_file_bytes());
    let embeddings = prepared.embed(&pipeline)?;
    let results = prepared
        .files
        .into_iter()
        .zip(embeddings)
        .map(|(file, embedding)| {
            let probs = pipeline.zero_shot(&embedding, &label_embeddings)?;
            let best = probs
                .iter()
                .enumerate()
                .fold(0, |best, (i, &p)| if p > probs[best] { i } else { best });
            Ok(Classification {
                file,
                label: labels[best].clone(),
                scores: labels.iter().cloned().zip(probs.iter().map(|&p| serde_json::json!(p))).collect(),
                method: pipeline.family().as_str(),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let failures = prepared.errors.len();
    print_json(&Output {
        warning: pipeline.is_random().then_some(RANDOM_WEIGHTS_WARNING),
        scoring: pipeline.model.scoring().describe(),
        results,
        errors: prepared.errors,
    });
    Ok(exit_code(failures))
}

#[derive(Serialize)]
struct KplClassification {
    file: String,
    label: String,
    scores: serde_json::Map<String, serde_json::Value>,
    method: &'static str,
    evidence: Vec<kpl::classifier::EvidenceItem>,
    clip: ClipSide,
}

#[derive(Serialize)]
struct ClipSide {
    label: String,
    scores: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct KplOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'static str>,
    /// What the plain zero-shot side's (`clip`) scores are.
    zero_shot_scoring: &'static str,
    task: String,
    results: Vec<KplClassification>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FileError>,
}

fn by_class(names: &[String], values: &[f32]) -> serde_json::Map<String, serde_json::Value> {
    names.iter().cloned().zip(values.iter().map(|&v| serde_json::json!(v))).collect()
}

fn run_kpl(args: &ClassifyArgs, kb_path: &std::path::Path) -> Result<i32, Error> {
    let pipeline = args.model.load()?;
    let base = super::kb::load_base(kb_path, &pipeline, &args.model.model)?;
    let mut prepared = prepare_images(&pipeline, &args.files, args.model.max_file_bytes());
    let embeddings = prepared.embed(&pipeline)?;
    let results = kpl::classifier::classify_embeddings(
        &base,
        &embeddings,
        &args.kpl.params_for(&pipeline.model),
        pipeline.model.logit_scale_exp(),
        pipeline.model.scoring(),
        args.evidence,
    )?;
    let names = base.class_names();
    let failures = prepared.errors.len();
    print_json(&KplOutput {
        warning: (pipeline.is_random() || base.model.random_weights).then_some(RANDOM_WEIGHTS_WARNING),
        zero_shot_scoring: pipeline.model.scoring().describe(),
        task: base.task.clone(),
        results: prepared
            .files
            .into_iter()
            .zip(results)
            .map(|(file, r)| KplClassification {
                file,
                label: r.label,
                scores: by_class(&names, &r.scores),
                method: r.method,
                evidence: r.evidence,
                clip: ClipSide { label: r.clip_label, scores: by_class(&names, &r.clip_scores) },
            })
            .collect(),
        errors: prepared.errors,
    });
    Ok(exit_code(failures))
}
