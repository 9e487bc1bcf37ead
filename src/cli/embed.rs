//! `kpl embed-image` and `kpl embed-text`: L2-normalised embeddings as JSON.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{exit_code, prepare_images, print_json, report, report_backend_notes, FileError, ModelArgs};
use kpl::Error;

#[derive(Debug, Args)]
pub struct EmbedImageArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image files (PNG, JPEG, WebP, BMP, TIFF).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EmbedTextArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(Serialize)]
struct ImageEmbedding {
    file: String,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct ImageEmbeddings {
    embeddings: Vec<ImageEmbedding>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FileError>,
}

#[derive(Serialize)]
struct TextEmbedding {
    text: String,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct TextEmbeddings {
    embeddings: Vec<TextEmbedding>,
}

pub fn embed_image(args: &EmbedImageArgs) -> Result<i32, Error> {
    let pipeline = args.model.load()?;
    let mut prepared = prepare_images(&pipeline, &args.files, args.model.max_file_bytes());
    let embeddings = prepared.embed(&pipeline)?;
    let failures = prepared.errors.len();
    print_json(&ImageEmbeddings {
        embeddings: prepared
            .files
            .into_iter()
            .zip(embeddings)
            .map(|(file, embedding)| ImageEmbedding { file, embedding })
            .collect(),
        errors: prepared.errors,
    });
    Ok(exit_code(failures))
}

pub fn embed_text(args: &EmbedTextArgs) -> Result<i32, Error> {
    let pipeline = args.model.load()?;
    let mut embeddings = Vec::new();
    let mut failures = 0;
    for text in &args.texts {
        match pipeline.embed_text(text) {
            Ok(embedding) => embeddings.push(TextEmbedding { text: text.clone(), embedding }),
            Err(e) => {
                report(&e);
                failures += 1;
            }
        }
    }
    report_backend_notes(&pipeline);
    print_json(&TextEmbeddings { embeddings });
    Ok(exit_code(failures))
}
