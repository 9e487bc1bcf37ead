//! `kpl site`: a self-contained static folder of the web app with a model
//! bundle, and the web server configurations for it (see `kpl::site`).
//!
//! ```text
//! SITE/                     serve this folder, at any path
//!   index.html, app.js, …   www/ (the page, the widget and its example, the worker, the service worker)
//!   pkg/                    the wasm build(s) (`make wasm`)
//!   model/                  the bundle: manifest.json, image_encoder.<hash>.gguf, text_encoder.<hash>.gguf,
//!                           TASK.<hash>.kplkb (content-hashed names: cached as immutable)
//!   knowledge/TASK/task.json  the tasks' descriptions (the page builds a base from them for a model opened from disk)
//!   .htaccess, web.config, _headers   Apache, IIS, static hosts
//! SITE.server/
//!   nginx.conf, Caddyfile   snippets to include in the block that serves SITE/
//! ```
//!
//! The folder is written as `SITE.partial` and renamed at the end, so an
//! interrupted run never leaves a half site in place; an existing SITE is
//! replaced only when it is itself a site (it has index.html, sw.js and
//! model/manifest.json).

use std::path::{Path, PathBuf};

use clap::Args;

use super::pack::PackDtypeArg;
use kpl::bundle::pack::{file_entry, pack_model_dir, PackOptions};
use kpl::bundle::{is_bundle_dir, load_bundle_dir, verify_bundle_dir, KnowledgeEntry, Manifest, MANIFEST};
use kpl::classifier::build_knowledge_base;
use kpl::knowledge::base::StorageDtype;
use kpl::knowledge::folder::{load_task, task_dirs};
use kpl::site::configs::{self, SiteFiles};
use kpl::site::headers::HASH_DIGITS;
use kpl::Error;

#[derive(Debug, Args)]
pub struct SiteArgs {
    /// A Hugging Face CLIP folder (packed into a bundle here) or a bundle made by
    /// `kpl pack` (copied, checked against its manifest). Defaults to $KPL_MODEL.
    #[arg(long, env = "KPL_MODEL")]
    pub model: PathBuf,
    /// Precision of the packed linear layers (a Hugging Face folder only). Default q8.
    #[arg(long, value_enum)]
    pub dtype: Option<PackDtypeArg>,
    /// Tasks whose knowledge bases go into the site: names in --knowledge-root or
    /// task folders. Default: every task of --knowledge-root.
    #[arg(long, num_args = 1..)]
    pub knowledge: Vec<String>,
    /// The site folder to write. Server snippets go to SITE.server beside it.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Where static hosts serve the folder (used in `_headers` only; the other
    /// configurations work at any path).
    #[arg(long, default_value = "/")]
    pub base_path: String,
    /// The web app's files (default: this source tree's www/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/www"))]
    pub app: PathBuf,
    /// The wasm-bindgen output (`make wasm`; default: this source tree's pkg/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/pkg"))]
    pub pkg: PathBuf,
    /// The knowledge task folders (default: this source tree's knowledge/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/knowledge"))]
    pub knowledge_root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path.display(), e)
}

/// Copies the plain files under `from` into `to` (dotfiles and links to folders skipped).
fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<(), Error> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut entries: Vec<_> = std::fs::read_dir(from).map_err(io(from))?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(&name), keep)?;
        } else if path.is_file() && keep(&path) {
            std::fs::copy(&path, to.join(&name)).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// The task folders asked for: names in the root, or folders; all by default.
fn task_folders(args: &SiteArgs) -> Result<Vec<PathBuf>, Error> {
    if args.knowledge.is_empty() {
        return task_dirs(&args.knowledge_root);
    }
    args.knowledge
        .iter()
        .map(|t| {
            let as_path = PathBuf::from(t);
            let dir = if as_path.join("task.json").is_file() { as_path } else { args.knowledge_root.join(t) };
            if dir.join("task.json").is_file() {
                Ok(dir)
            } else {
                Err(Error::io(dir.display(), "no task.json: --knowledge takes task names of --knowledge-root or task folders"))
            }
        })
        .collect()
}

/// Copies a bundle (checked against its manifest) and adds the bases of the
/// tasks it lacks, embedded by its own text encoder.
fn copy_bundle(from: &Path, to: &Path, tasks: &[PathBuf]) -> Result<Manifest, Error> {
    let mut manifest = verify_bundle_dir(from)?;
    std::fs::create_dir_all(to).map_err(io(to))?;
    let entries = manifest.files.image_encoder.iter().chain(&manifest.files.text_encoder);
    for entry in entries.chain(manifest.knowledge.iter().map(|k| &k.file)) {
        let src = from.join(&entry.path);
        std::fs::copy(&src, to.join(&entry.path)).map_err(io(&src))?;
    }
    let mut pipeline = None;
    for dir in tasks {
        let task = load_task(dir)?;
        if manifest.knowledge.iter().any(|k| k.task == task.name) {
            continue;
        }
        let pipeline = match &mut pipeline {
            Some(p) => p,
            None => pipeline.insert(load_bundle_dir(from)?),
        };
        eprintln!("kpl: embedding the knowledge of {} (with the bundle's text encoder)", task.name);
        let base = build_knowledge_base(pipeline, &task, &manifest.model.name, StorageDtype::F16, &mut |_, _| {})?;
        let file_name = format!("{}.kplkb", task.name);
        super::kb::write_file(&to.join(&file_name), &base.to_bytes())?;
        manifest.knowledge.push(KnowledgeEntry {
            task: base.task.clone(),
            title: base.title.clone(),
            file: file_entry(to, &file_name)?,
            classes: base.class_names(),
        });
    }
    Ok(manifest)
}

/// `name.ext` → `name.<first HASH_DIGITS hex digits of the SHA-256>.ext`.
fn hashed_name(path: &str, sha256: &str) -> String {
    let hash = sha256.get(..HASH_DIGITS).unwrap_or(sha256);
    match path.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
        None => format!("{path}.{hash}"),
    }
}

/// Renames every file the manifest lists to its content-hashed name and
/// rewrites the manifest.
fn hash_names(dir: &Path, manifest: &mut Manifest) -> Result<(), Error> {
    let files = &mut manifest.files;
    let entries = files.image_encoder.iter_mut().chain(files.text_encoder.iter_mut());
    for entry in entries.chain(manifest.knowledge.iter_mut().map(|k| &mut k.file)) {
        let new = hashed_name(&entry.path, &entry.sha256);
        let from = dir.join(&entry.path);
        std::fs::rename(&from, dir.join(&new)).map_err(io(&from))?;
        entry.path = new;
    }
    let path = dir.join(MANIFEST);
    std::fs::write(&path, manifest.to_json()).map_err(io(&path))
}

/// Every file under `root`, relative and `/`-separated, sorted.
fn list_files(root: &Path, under: &str, out: &mut Vec<String>) -> Result<(), Error> {
    for entry in std::fs::read_dir(root).map_err(io(root))?.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if under.is_empty() { name.clone() } else { format!("{under}/{name}") };
        if entry.path().is_dir() {
            list_files(&entry.path(), &rel, out)?;
        } else if !name.starts_with('.') {
            out.push(rel);
        }
    }
    out.sort();
    Ok(())
}

fn is_site(dir: &Path) -> bool {
    dir.join("index.html").is_file() && dir.join("sw.js").is_file() && dir.join("model").join(MANIFEST).is_file()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn run(args: &SiteArgs) -> Result<i32, Error> {
    let out = args.output.components().collect::<PathBuf>();
    if out.exists() && !is_site(&out) && std::fs::read_dir(&out).map_err(io(&out))?.next().is_some() {
        return Err(Error::io(out.display(), "exists and is not a site written by kpl site: choose an empty or new folder"));
    }
    for needed in [args.app.join("index.html"), args.app.join("sw.js"), args.pkg.join("kpl.js"), args.pkg.join("kpl_bg.wasm")] {
        if !needed.is_file() {
            return Err(Error::io(needed.display(), "missing (run `make wasm` for pkg/, or pass --app / --pkg)"));
        }
    }
    let bundle = is_bundle_dir(&args.model);
    if bundle && args.dtype.is_some() {
        return Err(Error::model(args.model.display(), "is a bundle, already packed: --dtype applies to a Hugging Face folder"));
    }
    let tasks = task_folders(args)?;

    let partial = with_suffix(&out, ".partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    copy_tree(&args.app, &partial, &|_| true)?;
    copy_tree(&args.pkg, &partial.join("pkg"), &|p| p.extension().is_some_and(|e| e == "js" || e == "wasm"))?;
    let model_dir = partial.join("model");
    let mut manifest = if bundle {
        copy_bundle(&args.model, &model_dir, &tasks)?
    } else {
        let dtype = args.dtype.unwrap_or(PackDtypeArg::Q8).into();
        let options = PackOptions { dtype, knowledge: tasks.clone(), name: None };
        pack_model_dir(&args.model, &model_dir, &options, &mut |line| eprintln!("kpl: {line}"))?
    };
    hash_names(&model_dir, &mut manifest)?;
    for dir in task_dirs(&args.knowledge_root)? {
        let name = dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let to = partial.join("knowledge").join(name);
        std::fs::create_dir_all(&to).map_err(io(&to))?;
        std::fs::copy(dir.join("task.json"), to.join("task.json")).map_err(io(&dir))?;
    }

    let mut files = Vec::new();
    list_files(&partial, "", &mut files)?;
    let site = SiteFiles { files };
    let server_dir = with_suffix(&out, ".server");
    std::fs::create_dir_all(&server_dir).map_err(io(&server_dir))?;
    for (name, text) in configs::all(&site, &args.base_path) {
        let dir = if matches!(name, "nginx.conf" | "Caddyfile") { &server_dir } else { &partial };
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(io(&out))?;
    }
    std::fs::rename(&partial, &out).map_err(io(&out))?;
    eprintln!(
        "kpl: wrote {} ({} files, model {}{}) and {}",
        out.display(),
        site.files.len(),
        manifest.model.name,
        if manifest.model.random_weights { ", RANDOM test weights" } else { "" },
        server_dir.display()
    );
    super::print_json(&serde_json::json!({
        "site": out.display().to_string(),
        "server": server_dir.display().to_string(),
        "files": site.files,
        "knowledge": manifest.knowledge.iter().map(|k| &k.task).collect::<Vec<_>>(),
    }));
    Ok(0)
}
