//! The `kpl` command line. Each subcommand lives in its own module; this one
//! holds what they share: model options, output, and per-file error reporting.

pub mod classify;
pub mod decode;
pub mod embed;
pub mod eval;
pub mod kb;
pub mod knowledge;
pub mod kpl_args;
pub mod pack;

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use kpl::model_dir::load_model_dir;
use kpl::preprocess::PixelTensor;
use kpl::{ClipPipeline, Error};

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A Hugging Face CLIP folder (config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json), or a bundle folder made by `kpl pack`.
    /// Defaults to $KPL_MODEL.
    #[arg(long, env = "KPL_MODEL")]
    pub model: PathBuf,
    /// Refuse images with more decoded pixels than this (protects memory).
    #[arg(long, default_value_t = 100.0)]
    pub max_megapixels: f64,
}

impl ModelArgs {
    pub fn load(&self) -> Result<ClipPipeline, Error> {
        let mut pipeline = load_model_dir(&self.model)?;
        pipeline.limits.max_pixels = (self.max_megapixels * 1e6).max(1.0) as u64;
        Ok(pipeline)
    }
}

/// Prints a JSON value on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).expect("serialisable output"));
}

/// Reports an error on stderr in the CLI's one format.
pub fn report(error: &Error) {
    eprintln!("kpl: error: {error}");
}

#[derive(Debug, Serialize)]
pub struct FileError {
    pub file: String,
    pub error: String,
}

/// Images that were read, decoded and preprocessed, in input order, and the
/// ones that failed (already reported on stderr).
pub struct PreparedImages {
    pub files: Vec<String>,
    /// The position in the input list of each prepared image.
    pub indices: Vec<usize>,
    pub pixels: Vec<PixelTensor>,
    pub errors: Vec<FileError>,
}

pub fn prepare_images(pipeline: &ClipPipeline, files: &[PathBuf]) -> PreparedImages {
    let mut prepared = PreparedImages { files: Vec::new(), indices: Vec::new(), pixels: Vec::new(), errors: Vec::new() };
    for (index, path) in files.iter().enumerate() {
        let name = path.display().to_string();
        let result = read_file(path).and_then(|bytes| pipeline.prepare_image(&bytes, &name));
        match result {
            Ok(pixels) => {
                prepared.files.push(name);
                prepared.indices.push(index);
                prepared.pixels.push(pixels);
            }
            Err(e) => {
                report(&e);
                prepared.errors.push(FileError { file: name, error: e.to_string() });
            }
        }
    }
    prepared
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_string() } else { e.to_string() };
        Error::io(path.display(), message)
    })
}

/// Embeds preprocessed images a few at a time (batching amortises the weight
/// reads; small batches bound memory for large folders).
pub fn embed_in_batches(pipeline: &ClipPipeline, pixels: &[PixelTensor]) -> Result<Vec<Vec<f32>>, Error> {
    const BATCH: usize = 8;
    let mut out = Vec::with_capacity(pixels.len());
    for chunk in pixels.chunks(BATCH) {
        out.extend(pipeline.embed_pixels(chunk, true)?);
    }
    Ok(out)
}

/// The process exit code: 0 when everything succeeded, 1 when some input failed.
pub fn exit_code(failures: usize) -> i32 {
    i32::from(failures > 0)
}
