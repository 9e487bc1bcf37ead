//! `kpl eval-embeddings` (precomputed embeddings in an .npz) and `kpl eval`
//! (a labelled image folder): the reference's comparison of plain CLIP, text
//! proxy, proxy learning, KPL and InMaP, side by side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use kpl_core::{AllOutcomes, KnowledgeEmbeddings, Matrix, Method};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::kb::{image_files, load_base};
use super::kpl_args::{KplArgs, KplHyperArgs};
use super::{prepare_images, print_json, ModelArgs};
use kpl::classifier::engine_error;
use kpl::knowledge::folder::load_task;
use kpl::npz::read_eval_npz;
use kpl::Error;

#[derive(Debug, Args)]
pub struct EvalEmbeddingsArgs {
    /// An .npz with image_embeddings (n×d f32), description_embeddings (m×d f32),
    /// description_class (m, i64) and optionally labels (n, i64).
    pub file: PathBuf,
    /// text_proxy, proxy, kpl, inmap or all.
    #[arg(long, default_value = "all")]
    pub method: String,
    #[command(flatten)]
    pub kpl: KplArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub kb: PathBuf,
    /// A folder with one subfolder of images per class.
    pub dataset: PathBuf,
    /// Values of k to sweep, comma-separated.
    #[arg(long = "k", default_value = "5,8,20", value_delimiter = ',')]
    pub ks: Vec<usize>,
    #[arg(long)]
    pub json: bool,
    /// Where image embeddings are cached (default: $XDG_CACHE_HOME/kpl or ~/.cache/kpl).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Where the task's folder spellings are looked up (knowledge/<task>/task.json).
    #[arg(long, default_value = "knowledge")]
    pub knowledge: PathBuf,
    /// Also write an HTML report with SVG plots to this folder (index.html, the
    /// plots beside it, and eval.json: the same numbers as --json).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub kpl: KplHyperArgs,
}

#[derive(Serialize)]
struct MethodResult {
    predictions: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accuracy: Option<f64>,
}

#[derive(Serialize)]
struct EvalEmbeddingsOutput {
    methods: BTreeMap<&'static str, MethodResult>,
}

fn output_name(method: Method) -> &'static str {
    match method {
        Method::TextProxy => "text_proxy",
        Method::Proxy => "proxy",
        Method::Kpl => "kpl",
        Method::InMaP => "inmap",
    }
}

fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    let correct = predictions.iter().zip(labels).filter(|(p, l)| p == l).count();
    100.0 * correct as f64 / labels.len().max(1) as f64
}

pub fn eval_embeddings(args: &EvalEmbeddingsArgs) -> Result<i32, Error> {
    let file = &args.file;
    let methods: Vec<Method> = if args.method == "all" {
        Method::ALL.to_vec()
    } else {
        vec![Method::from_name(&args.method).ok_or_else(|| {
            Error::Input(format!("--method {:?}: use text_proxy, proxy, kpl, inmap or all", args.method))
        })?]
    };
    let name = file.display().to_string();
    let handle = std::fs::File::open(file).map_err(|e| Error::io(file.display(), e))?;
    let data = read_eval_npz(std::io::BufReader::new(handle), &name)?;
    let labels = data.labels;
    let kb = KnowledgeEmbeddings::new(
        data.dim,
        (0..data.num_classes).map(|c| c.to_string()).collect(),
        data.descriptions.concat(),
        data.description_class,
    )
    .map_err(|e| engine_error(&name, e))?;
    let matrix = Matrix::from_rows(&data.images).map_err(|e| engine_error(&name, e))?;
    let params = args.kpl.params();
    let mut out = BTreeMap::new();
    if methods.len() == 4 {
        let all = kpl_core::run_all(&matrix, &kb, &params).map_err(|e| engine_error(&file.display().to_string(), e))?;
        for outcome in all.iter() {
            out.insert(output_name(outcome.method), method_result(&outcome.predictions, labels.as_deref()));
        }
    } else {
        let outcome = kpl_core::run(&matrix, &kb, &params, methods[0])
            .map_err(|e| engine_error(&file.display().to_string(), e))?;
        out.insert(output_name(methods[0]), method_result(&outcome.predictions, labels.as_deref()));
    }
    print_json(&EvalEmbeddingsOutput { methods: out });
    Ok(0)
}

fn method_result(predictions: &[usize], labels: Option<&[usize]>) -> MethodResult {
    MethodResult { predictions: predictions.to_vec(), accuracy: labels.map(|l| accuracy(predictions, l)) }
}

/// Embeddings cached by model fingerprint and the exact file list (path, size,
/// modification time), so a sweep over k never re-encodes.
struct EmbeddingCache {
    path: PathBuf,
}

impl EmbeddingCache {
    const MAGIC: &'static [u8; 8] = b"KPLEMB\x00\x01";

    fn new(dir: &Path, fingerprint: &str, files: &[PathBuf]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(fingerprint.as_bytes());
        for file in files {
            hasher.update(file.display().to_string().as_bytes());
            if let Ok(meta) = std::fs::metadata(file) {
                hasher.update(meta.len().to_le_bytes());
                if let Ok(modified) = meta.modified() {
                    let secs = modified.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
                    hasher.update(secs.to_le_bytes());
                }
            }
        }
        let key = kpl::nn::hex(&hasher.finalize());
        Self { path: dir.join(format!("{key}.kplemb")) }
    }

    fn load(&self, rows: usize, dim: usize) -> Option<Vec<Vec<f32>>> {
        let bytes = std::fs::read(&self.path).ok()?;
        let expected = 8 + rows * dim * 4;
        if bytes.len() != expected || &bytes[..8] != Self::MAGIC {
            return None;
        }
        let values: Vec<f32> =
            bytes[8..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some(values.chunks(dim).map(|r| r.to_vec()).collect())
    }

    fn store(&self, embeddings: &[Vec<f32>]) {
        let mut bytes = Self::MAGIC.to_vec();
        for v in embeddings.iter().flatten() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        // A cache that cannot be written only costs time: warn and go on.
        let written = self.path.parent().map(std::fs::create_dir_all).transpose().and_then(|_| std::fs::write(&self.path, bytes));
        if let Err(e) = written {
            eprintln!("kpl: warning: cannot write the embedding cache {}: {e}", self.path.display());
        }
    }
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("kpl")
}

/// Accuracy and per-class recall of one method, in percent.
#[derive(Serialize)]
pub(super) struct MethodScore {
    pub accuracy: f64,
    /// Class name → recall (%), for classes with images.
    pub recall: BTreeMap<String, f64>,
}

#[derive(Serialize)]
pub(super) struct KSweep {
    pub k: usize,
    /// text_proxy, proxy, kpl, inmap → score.
    pub methods: BTreeMap<&'static str, MethodScore>,
}

#[derive(Serialize)]
pub(super) struct EvalOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
    pub task: String,
    pub images: usize,
    /// The base's classes, in its order (the rows and columns of `confusion`).
    pub classes: Vec<String>,
    pub per_class_images: BTreeMap<String, usize>,
    pub unmatched_folders: Vec<String>,
    pub classes_without_images: Vec<String>,
    /// The plain zero-shot baseline (the family's own scores, top-1): no k.
    pub zero_shot: MethodScore,
    pub results: Vec<KSweep>,
    /// The k whose row is the figure to quote: fixed before looking at the
    /// labels (the reference's default k when swept, else the first --k value).
    pub quote_k: usize,
    /// The pseudo-labels' temperature the methods ran with: `--tau-t`, else
    /// the model family's ([`kpl::models::Model::pseudo_label_temperature`]).
    pub tau_t: f64,
    /// At `quote_k`, method (zero_shot included) → counts[true class][predicted class].
    pub confusion: BTreeMap<&'static str, Vec<Vec<usize>>>,
}

/// The k to quote: the reference's default k (8) when it is in the sweep, else
/// the first value given — never the best over k, which is chosen on the test
/// labels.
fn quote_k(ks: &[usize]) -> usize {
    let default = kpl_core::KplParams::default().k;
    if ks.contains(&default) {
        default
    } else {
        ks.first().copied().unwrap_or(default)
    }
}

/// counts[true][predicted] over `classes` classes.
fn confusion(predictions: &[usize], labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut counts = vec![vec![0; classes]; classes];
    for (&p, &l) in predictions.iter().zip(labels) {
        if p < classes && l < classes {
            counts[l][p] += 1;
        }
    }
    counts
}

fn score(predictions: &[usize], labels: &[usize], names: &[String]) -> MethodScore {
    let mut recall = BTreeMap::new();
    for (c, name) in names.iter().enumerate() {
        let total = labels.iter().filter(|&&l| l == c).count();
        if total > 0 {
            let hit = predictions.iter().zip(labels).filter(|(&p, &l)| l == c && p == c).count();
            recall.insert(name.clone(), 100.0 * hit as f64 / total as f64);
        }
    }
    MethodScore { accuracy: accuracy(predictions, labels), recall }
}

/// Folder name → class index, by the class name or a dataset's folder spelling,
/// case-insensitively.
fn match_folder(folder: &str, names: &[String], spellings: &BTreeMap<String, usize>) -> Option<usize> {
    let lower = folder.to_lowercase();
    names.iter().position(|n| n.to_lowercase() == lower).or_else(|| spellings.get(&lower).copied())
}

pub fn eval(args: &EvalArgs) -> Result<i32, Error> {
    let pipeline = args.model.load()?;
    let base = load_base(&args.kb, &pipeline, &args.model.model)?;
    let names = base.class_names();
    let mut spellings = BTreeMap::new();
    if let Ok(task) = load_task(&args.knowledge.join(&base.task)) {
        for dataset in task.datasets.iter().filter(|d| d.matched_by == "folder") {
            for (class, spelled) in &dataset.class_names {
                if let Some(c) = names.iter().position(|n| n == class) {
                    spellings.insert(spelled.to_lowercase(), c);
                }
            }
        }
    }
    let entries = std::fs::read_dir(&args.dataset).map_err(|e| Error::io(args.dataset.display(), e))?;
    let mut folders: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    let mut files = Vec::new();
    let mut labels = Vec::new();
    let mut unmatched = Vec::new();
    for folder in folders {
        let name = folder.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        match match_folder(&name, &names, &spellings) {
            Some(c) => {
                for file in image_files(&folder)? {
                    files.push(file);
                    labels.push(c);
                }
            }
            None => unmatched.push(name),
        }
    }
    for name in &unmatched {
        eprintln!("kpl: warning: folder {name:?} matches no class of {} ({})", base.task, names.join(", "));
    }
    let cache = EmbeddingCache::new(
        &args.cache_dir.clone().unwrap_or_else(default_cache_dir),
        &base.model.fingerprint,
        &files,
    );
    let (embeddings, labels) = match cache.load(files.len(), base.dim) {
        Some(e) => {
            eprintln!("kpl: {} image embeddings from the cache {}", e.len(), cache.path.display());
            (e, labels)
        }
        None => {
            let mut prepared = prepare_images(&pipeline, &files, args.model.max_file_bytes());
            let embeddings = prepared.embed(&pipeline)?;
            if prepared.errors.is_empty() {
                cache.store(&embeddings);
            }
            (embeddings, prepared.indices.iter().map(|&i| labels[i]).collect())
        }
    };
    if embeddings.len() < 2 {
        return Err(Error::Input(format!("{}: fewer than 2 readable images in class folders", args.dataset.display())));
    }
    let mut per_class = BTreeMap::new();
    for (c, name) in names.iter().enumerate() {
        per_class.insert(name.clone(), labels.iter().filter(|&&l| l == c).count());
    }
    let without: Vec<String> = per_class.iter().filter(|(_, &n)| n == 0).map(|(k, _)| k.clone()).collect();
    for name in &without {
        eprintln!("kpl: warning: class {name:?} has no images in {}", args.dataset.display());
    }
    let zero_shot_predictions: Vec<usize> = embeddings
        .iter()
        .map(|x| {
            let cos: Vec<f32> =
                base.class_prompts.chunks_exact(base.dim).map(|t| t.iter().zip(x).map(|(a, b)| a * b).sum()).collect();
            cos.iter().enumerate().fold(0, |b, (i, &v)| if v > cos[b] { i } else { b })
        })
        .collect();
    let matrix = Matrix::from_rows(&embeddings).map_err(|e| engine_error("images", e))?;
    let engine_kb = base.engine_embeddings().map_err(|e| engine_error("knowledge base", e))?;
    let quote = quote_k(&args.ks);
    let mut confusions = BTreeMap::from([("zero_shot", confusion(&zero_shot_predictions, &labels, names.len()))]);
    let mut results = Vec::new();
    let mut sweep = super::progress::Progress::new("running the methods over k", args.ks.len());
    let mut tau_t = args.kpl.params_for_k(&pipeline.model, quote).tau_t;
    for (i, &k) in args.ks.iter().enumerate() {
        let params = args.kpl.params_for_k(&pipeline.model, k);
        tau_t = params.tau_t;
        let all: AllOutcomes = kpl_core::run_all(&matrix, &engine_kb, &params)
            .map_err(|e| engine_error(&format!("k = {k}"), e))?;
        let methods = all.iter().map(|o| (output_name(o.method), score(&o.predictions, &labels, &names))).collect();
        if k == quote {
            for o in all.iter() {
                confusions.insert(output_name(o.method), confusion(&o.predictions, &labels, names.len()));
            }
        }
        results.push(KSweep { k, methods });
        sweep.set(i + 1);
    }
    drop(sweep);
    let output = EvalOutput {
        warning: (base.model.random_weights || pipeline.is_random()).then_some(super::classify::RANDOM_WEIGHTS_WARNING),
        task: base.task.clone(),
        images: embeddings.len(),
        classes: names.clone(),
        per_class_images: per_class,
        unmatched_folders: unmatched,
        classes_without_images: without,
        zero_shot: score(&zero_shot_predictions, &labels, &names),
        results,
        quote_k: quote,
        tau_t,
        confusion: confusions,
    };
    if let Some(dir) = &args.report {
        super::eval_report::write(dir, &output)?;
        eprintln!("kpl: wrote the report {}", dir.join("index.html").display());
    }
    if args.json {
        print_json(&output);
    } else {
        print_table(&output);
    }
    Ok(0)
}

fn print_table(output: &EvalOutput) {
    if let Some(w) = output.warning {
        println!("WARNING: {w}");
    }
    println!("task {} — {} images", output.task, output.images);
    println!("{:>4}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}", "k", "zero_shot", "text_proxy", "proxy", "kpl", "inmap");
    for sweep in &output.results {
        let cell = |m: &str| sweep.methods.get(m).map(|s| format!("{:.2}", s.accuracy)).unwrap_or_default();
        println!(
            "{:>4}  {:>10.2}  {:>10}  {:>10}  {:>10}  {:>10}{}",
            sweep.k,
            output.zero_shot.accuracy,
            cell("text_proxy"),
            cell("proxy"),
            cell("kpl"),
            cell("inmap"),
            if sweep.k == output.quote_k { "  <- the figure to quote (k fixed in advance)" } else { "" }
        );
    }
    println!("per-class recall (k = {}):", output.quote_k);
    if let Some(sweep) = output.results.iter().find(|s| s.k == output.quote_k) {
        for class in output.per_class_images.keys() {
            let r = |m: &str| sweep.methods.get(m).and_then(|s| s.recall.get(class)).map(|v| format!("{v:.1}")).unwrap_or("-".into());
            let c = output.zero_shot.recall.get(class).map(|v| format!("{v:.1}")).unwrap_or("-".into());
            println!("  {class:40} zero_shot {c:>6}  text_proxy {:>6}  kpl {:>6}  inmap {:>6}", r("text_proxy"), r("kpl"), r("inmap"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quoted_k_is_fixed_in_advance() {
        assert_eq!(quote_k(&[2, 8, 20]), 8);
        assert_eq!(quote_k(&[20, 2]), 20);
        assert_eq!(quote_k(&[]), kpl_core::KplParams::default().k);
    }

    #[test]
    fn confusion_counts_true_rows_predicted_columns() {
        assert_eq!(confusion(&[0, 1, 1, 0], &[0, 1, 0, 0], 2), vec![vec![2, 1], vec![0, 1]]);
    }
}
