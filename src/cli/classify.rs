//! `kpl classify`: plain CLIP zero-shot over `--labels`.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{embed_in_batches, exit_code, prepare_images, print_json, FileError, ModelArgs};
use kpl::pipeline::zero_shot_prompt;
use kpl::Error;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comma-separated class labels, each prompted as "a photo of a {label}.".
    #[arg(long)]
    pub labels: String,
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
    let labels = parse_labels(&args.labels)?;
    let pipeline = args.model.load()?;
    let label_embeddings =
        labels.iter().map(|l| pipeline.embed_text(&zero_shot_prompt(l))).collect::<Result<Vec<_>, _>>()?;
    let prepared = prepare_images(&pipeline, &args.files);
    let embeddings = embed_in_batches(&pipeline, &prepared.pixels)?;
    let results = prepared
        .files
        .into_iter()
        .zip(embeddings)
        .map(|(file, embedding)| {
            let probs = pipeline.zero_shot(&embedding, &label_embeddings);
            let best = probs
                .iter()
                .enumerate()
                .fold(0, |best, (i, &p)| if p > probs[best] { i } else { best });
            Classification {
                file,
                label: labels[best].clone(),
                scores: labels.iter().cloned().zip(probs.iter().map(|&p| serde_json::json!(p))).collect(),
                method: "clip",
            }
        })
        .collect();
    let failures = prepared.errors.len();
    print_json(&Output {
        warning: pipeline.is_random().then_some(RANDOM_WEIGHTS_WARNING),
        results,
        errors: prepared.errors,
    });
    Ok(exit_code(failures))
}
