//! The `kpl` command line. Each subcommand lives in its own module; this one
//! holds what they share: model options, output, and per-file error reporting.

pub mod classify;
pub mod decode;
pub mod embed;
pub mod eval;
pub mod eval_report;
pub mod kb;
pub mod knowledge;
pub mod kpl_args;
pub mod pack;
pub mod progress;
#[cfg(feature = "testing")]
pub mod random_model;
pub mod site;

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use kpl::isolate::isolate;
use kpl::model_dir::load_model_dir;
use kpl::preprocess::dicom::VoiChoice;
use kpl::preprocess::PixelTensor;
use kpl::{Pipeline, Error};

#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A Hugging Face CLIP or SigLIP folder (config.json, model.safetensors, tokenizer.json,
    /// preprocessor_config.json), an open_clip folder (open_clip_config.json,
    /// open_clip_model.safetensors or open_clip_pytorch_model.bin, tokenizer.json),
    /// or a bundle folder made by `kpl pack`.
    /// Defaults to $KPL_MODEL.
    #[arg(long, env = "KPL_MODEL")]
    pub model: PathBuf,
    /// Refuse images with more decoded pixels than this (protects memory).
    #[arg(long, default_value_t = 100.0)]
    pub max_megapixels: f64,
    #[command(flatten)]
    pub file_limit: FileLimitArgs,
    /// The engine that runs the encoders: cpu, webgpu (the GPU through wgpu:
    /// Vulkan, Metal or DX12; checked against the CPU on a probe image first),
    /// or auto (the faster of the two on that probe; software GPU adapters are
    /// not tried). Any GPU failure falls back to the CPU with a note on stderr.
    #[arg(long, env = "KPL_BACKEND", default_value = "cpu")]
    pub backend: kpl::engine::Backend,
    #[command(flatten)]
    pub voi: VoiArgs,
}

/// The window greyscale DICOM images are rendered with, on every command that
/// reads images (default: the README's rule, the file's first window, else the
/// frame's minimum to maximum).
#[derive(Debug, Clone, Args)]
pub struct VoiArgs {
    /// Render greyscale DICOM with the file's window N, counting from 0 in the
    /// order of its Window Center / Width values (`kpl decode` lists them as
    /// "windows"). A file with fewer windows is an error for that file.
    #[arg(long, value_name = "N", conflicts_with = "window")]
    pub voi: Option<u32>,
    /// Render greyscale DICOM with this window, in modality units (Hounsfield
    /// units for CT), width at least 1: e.g. `--window=-600,1500` (lung).
    #[arg(long, value_name = "CENTER,WIDTH", allow_hyphen_values = true, value_parser = parse_window)]
    pub window: Option<VoiChoice>,
}

impl VoiArgs {
    pub fn choice(&self) -> VoiChoice {
        match (self.voi, self.window) {
            (Some(n), _) => VoiChoice::Index(n),
            (None, Some(window)) => window,
            (None, None) => VoiChoice::Default,
        }
    }
}

/// `CENTER,WIDTH` (two decimal numbers, width at least 1).
fn parse_window(s: &str) -> Result<VoiChoice, String> {
    let (c, w) = s.split_once(',').ok_or_else(|| format!("{s:?}: expected CENTER,WIDTH (e.g. -600,1500)"))?;
    let number = |v: &str| v.trim().parse::<f64>().map_err(|_| format!("{v:?} is not a number"));
    VoiChoice::window(number(c)?, number(w)?)
}

/// Default of `--max-file-mb`: the largest image or DICOM file read, in MB (10^6 bytes).
pub const DEFAULT_MAX_FILE_MB: f64 = 512.0;

#[derive(Debug, Clone, Args)]
pub struct FileLimitArgs {
    /// Refuse image and DICOM files larger than this many MB (10^6 bytes), checked
    /// from the file's size before it is read (protects memory). Defaults to
    /// $KPL_MAX_FILE_MB, else 512.
    #[arg(long, env = "KPL_MAX_FILE_MB", default_value_t = DEFAULT_MAX_FILE_MB)]
    pub max_file_mb: f64,
}

impl FileLimitArgs {
    pub fn bytes(&self) -> u64 {
        max_file_bytes(self.max_file_mb)
    }
}

/// `--max-file-mb` in bytes (at least 1; NaN means the default).
pub fn max_file_bytes(megabytes: f64) -> u64 {
    let mb = if megabytes.is_nan() { DEFAULT_MAX_FILE_MB } else { megabytes };
    (mb * 1e6).clamp(1.0, u64::MAX as f64) as u64
}

impl ModelArgs {
    pub fn max_file_bytes(&self) -> u64 {
        self.file_limit.bytes()
    }

    pub fn load(&self) -> Result<Pipeline, Error> {
        let mut pipeline = load_model_dir(&self.model)?;
        pipeline.limits.max_pixels = (self.max_megapixels * 1e6).max(1.0) as u64;
        pipeline.voi = self.voi.choice();
        let choice = pipeline.select_backend(self.backend);
        if !choice.note.is_empty() {
            eprintln!("kpl: backend: {}", choice.note);
        }
        Ok(pipeline)
    }
}

/// Says on stderr why the GPU was left (the work went on on the CPU).
pub fn report_backend_notes(pipeline: &Pipeline) {
    for note in pipeline.accelerator.take_notes() {
        progress::note(&format!("kpl: backend: {note}"));
    }
}

/// Prints a JSON value on stdout.
pub fn print_json<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).expect("serialisable output"));
}

/// Reports an error on stderr in the CLI's one format.
pub fn report(error: &Error) {
    progress::note(&format!("kpl: error: {error}"));
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

/// Reads, decodes and preprocesses each file on its own: a failure, even a panic
/// (see [`kpl::isolate`]), costs only that file. Progress: "reading images".
pub fn prepare_images(pipeline: &Pipeline, files: &[PathBuf], max_file_bytes: u64) -> PreparedImages {
    let mut prepared = PreparedImages { files: Vec::new(), indices: Vec::new(), pixels: Vec::new(), errors: Vec::new() };
    let mut progress = progress::Progress::new("reading images", files.len());
    for (index, path) in files.iter().enumerate() {
        let name = path.display().to_string();
        let result = isolate(&name, "decoding", || {
            kpl::isolate::test_panic_hook(&name);
            read_input(path, max_file_bytes).and_then(|bytes| pipeline.prepare_image(&bytes, &name))
        });
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
        progress.set(index + 1);
    }
    prepared
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    let message = if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_string() } else { e.to_string() };
    Error::io(path.display(), message)
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| io_error(path, e))
}

fn too_large(path: &Path, size: &str, max_bytes: u64) -> Error {
    Error::io(
        path.display(),
        format!(
            "the file is {size} MB, above the limit of {} MB for one input file \
             (raise it with --max-file-mb or the KPL_MAX_FILE_MB environment variable)",
            max_bytes as f64 / 1e6
        ),
    )
}

/// Reads an input image or DICOM file of at most `max_bytes`: the size on disk is
/// checked before anything is read, and the read itself stops one byte past the
/// limit (a file that grows, or a device or pipe whose size is not known).
pub fn read_input(path: &Path, max_bytes: u64) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if meta.is_dir() {
        return Err(Error::io(path.display(), "is a folder, not a file"));
    }
    if meta.len() > max_bytes {
        return Err(too_large(path, &format!("{:.1}", meta.len() as f64 / 1e6), max_bytes));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(path, &format!("more than {:.1}", max_bytes as f64 / 1e6), max_bytes));
    }
    Ok(bytes)
}

impl PreparedImages {
    /// Embeds the prepared images a few at a time (batching amortises the weight
    /// reads; small batches bound memory for large folders), showing the
    /// progress ("encoding images") after each batch. A batch that panics is run again
    /// one image at a time, each isolated: an image that still panics moves to
    /// `errors` (reported on stderr), so `files`, `indices` and the returned
    /// embeddings stay parallel and every other image keeps its result.
    ///
    /// Errors: an encoder error that is not a panic (it concerns the model, not
    /// one image) stops the batch as before.
    pub fn embed(&mut self, pipeline: &Pipeline) -> Result<Vec<Vec<f32>>, Error> {
        const BATCH: usize = 8;
        let total = self.pixels.len();
        let mut progress = progress::Progress::new("encoding images", total);
        let mut embeddings = Vec::with_capacity(total);
        let mut failed = Vec::new();
        for (b, chunk) in self.pixels.chunks(BATCH).enumerate() {
            let first = b * BATCH;
            let label = format!("{} (a batch of {})", self.files[first], chunk.len());
            match isolate(&label, "encoding", || pipeline.embed_pixels(chunk, true)) {
                Ok(batch) => embeddings.extend(batch.into_iter().map(Some)),
                Err(Error::Internal { .. }) => {
                    for (i, pixels) in chunk.iter().enumerate() {
                        let name = &self.files[first + i];
                        match isolate(name, "encoding", || pipeline.embed_pixels(std::slice::from_ref(pixels), true)) {
                            Ok(mut one) => embeddings.push(one.pop()),
                            Err(e @ Error::Internal { .. }) => {
                                report(&e);
                                failed.push(FileError { file: name.clone(), error: e.to_string() });
                                embeddings.push(None);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => return Err(e),
            }
            report_backend_notes(pipeline);
            progress.set(embeddings.len());
        }
        let mut kept = Vec::with_capacity(total);
        let (files, indices, pixels) = (std::mem::take(&mut self.files), std::mem::take(&mut self.indices), std::mem::take(&mut self.pixels));
        for (((file, index), pixel), embedding) in files.into_iter().zip(indices).zip(pixels).zip(embeddings) {
            if let Some(e) = embedding {
                self.files.push(file);
                self.indices.push(index);
                self.pixels.push(pixel);
                kept.push(e);
            }
        }
        self.errors.extend(failed);
        Ok(kept)
    }
}

/// The process exit code: 0 when everything succeeded, 1 when some input failed.
pub fn exit_code(failures: usize) -> i32 {
    i32::from(failures > 0)
}
