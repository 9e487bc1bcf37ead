//! `kpl build-kb` and `kpl fit`: making knowledge embedding bases.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use kpl_core::{Matrix, Method};

use super::kpl_args::KplArgs;
use super::progress::Progress;
use super::{prepare_images, read_file, ModelArgs};
use kpl::classifier::{build_knowledge_base, engine_error};
use kpl::knowledge::base::{FitInfo, KnowledgeBase, StorageDtype};
use kpl::knowledge::folder::load_task;
use kpl::{Pipeline, Error};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    F16,
    F32,
}

#[derive(Debug, Args)]
pub struct BuildKbArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A task folder (knowledge/TASK).
    pub task: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Storage precision of the embeddings.
    #[arg(long, value_enum, default_value = "f16")]
    pub dtype: DtypeArg,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The knowledge base to learn proxies for.
    #[arg(long)]
    pub kb: PathBuf,
    /// A folder of unlabelled images (searched recursively).
    pub images: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Which pseudo-labels the proxies learn from.
    #[arg(long, default_value = "kpl")]
    pub method: String,
    #[command(flatten)]
    pub kpl: KplArgs,
}

pub fn load_base(path: &Path, pipeline: &Pipeline, model_dir: &Path) -> Result<KnowledgeBase, Error> {
    let name = path.display().to_string();
    let base = KnowledgeBase::from_bytes(&read_file(path)?, &name)?;
    base.check_model(&pipeline.model.fingerprint()?, pipeline.family(), &name, &model_dir.display().to_string())?;
    Ok(base)
}

pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    // Write beside and rename, so an interrupted write never leaves half a base.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| Error::io(partial.display(), e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path.display(), e))
}

pub fn build_kb(args: &BuildKbArgs) -> Result<i32, Error> {
    let task = load_task(&args.task)?;
    let pipeline = args.model.load()?;
    let dtype = match args.dtype {
        DtypeArg::F16 => StorageDtype::F16,
        DtypeArg::F32 => StorageDtype::F32,
    };
    let model_name = args.model.model.display().to_string();
    let mut progress: Option<Progress> = None;
    let mut report = |done: usize, total: usize| {
        progress.get_or_insert_with(|| Progress::new("embedding descriptions", total)).set(done);
    };
    let base = build_knowledge_base(&pipeline, &task, &model_name, dtype, &mut report)?;
    drop(progress);
    super::report_backend_notes(&pipeline);
    write_file(&args.output, &base.to_bytes())?;
    eprintln!(
        "kpl: wrote {} ({} classes, {} descriptions, model {})",
        args.output.display(),
        base.classes.len(),
        base.class_of.len(),
        base.model.name
    );
    Ok(0)
}

/// Image files under `dir`, recursively, sorted (hidden entries skipped).
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| Error::io(current.display(), e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub fn fit(args: &FitArgs) -> Result<i32, Error> {
    let method = Method::from_name(&args.method)
        .filter(|m| *m != Method::TextProxy)
        .ok_or_else(|| Error::Input(format!("--method {:?}: use proxy, kpl or inmap", args.method)))?;
    let pipeline = args.model.load()?;
    let mut base = load_base(&args.kb, &pipeline, &args.model.model)?;
    let files = image_files(&args.images)?;
    let mut prepared = prepare_images(&pipeline, &files, args.model.max_file_bytes());
    if prepared.pixels.len() < 2 {
        return Err(Error::Input(format!(
            "{}: fitting needs at least 2 readable images, found {}",
            args.images.display(),
            prepared.pixels.len()
        )));
    }
    let embeddings = prepared.embed(&pipeline)?;
    let matrix = Matrix::from_rows(&embeddings).map_err(|e| engine_error("images", e))?;
    let engine_kb = base.engine_embeddings().map_err(|e| engine_error("knowledge base", e))?;
    let params = args.kpl.params_for(&pipeline.model);
    let outcome = kpl_core::run(&matrix, &engine_kb, &params, method).map_err(|e| engine_error("KPL", e))?;
    base.proxies = Some((
        outcome.proxies.data().to_vec(),
        FitInfo {
            method: method.name().to_string(),
            pool_size: embeddings.len(),
            k: params.k,
            params: serde_json::json!({
                "tau_t": params.tau_t, "tau_i": params.tau_i, "alpha": params.alpha, "gamma": params.gamma,
                "iters_ot": params.iters_ot, "iters_proxy": params.iters_proxy, "lr": params.lr,
            }),
        },
    ));
    write_file(&args.output, &base.to_bytes())?;
    eprintln!("kpl: wrote {} with proxies fitted on {} images", args.output.display(), embeddings.len());
    Ok(super::exit_code(prepared.errors.len()))
}
