//! Seconds per image of an image encoder, natively, on a full-size random model:
//! `--model vit-b16` (default), openai/clip-vit-base-patch16's configuration, or
//! `--model medsiglip-448`, google/medsiglip-448's image tower (SigLIP, 448 px,
//! 27 × 1152-wide layers, MAP head; its text tower, which no row times, is cut
//! to one layer to save disk). Weights normal(0, 0.02).
//!
//!     cargo run --release --example bench_image -- [--model vit-b16] [--dtype f32] [--threads 1] [--kernel int8] [--f32-kernel packed] [--runs 5] [--out bench/out]
//!     cargo run --release --example bench_image -- --list-dtypes
//!
//! Writes (or reuses) the random model under OUT/MODEL-random/, an S×S test
//! image OUT/image-S.png (S the model's input size), its preprocessed pixels
//! OUT/pixels-S.f32 (raw little-endian f32, [1, 3, S, S], for the ONNX Runtime
//! peers) and the unnormalised embedding OUT/embedding-kpl-native-DTYPE.json
//! (-medsiglip-448-DTYPE.json for that model; for cross-engine checks). Times
//! `Pipeline::embed_pixels` on one preprocessed image: a warm-up, then the
//! median of --runs runs. Prints one JSON line:
//! {"engine":"kpl-native","dtype":"f32","model":"vit-b16-image","threads":1,"median_s":...}

use std::path::{Path, PathBuf};
use std::time::Instant;

use kpl::engine::Backend;
use kpl::testing::clip::{is_random_clip, write_random_clip, RandomClipConfig};
use kpl::testing::siglip::{is_random_siglip, write_random_siglip, RandomSiglipConfig};
use kpl::Pipeline;

/// The dtypes this benchmark can run; bench/run.sh loops over `--list-dtypes`.
/// A quantised dtype is added here together with its branch in `load_model`.
const DTYPES: &[&str] = &["f32", "q8", "q4"];
const SEED: u64 = 0;

/// The benchmarked models.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BenchModel {
    VitB16,
    MedSiglip448,
}

impl BenchModel {
    /// `--model` and the prefix of its folders (NAME-random, NAME-q8, …).
    fn name(self) -> &'static str {
        match self {
            BenchModel::VitB16 => "vit-b16",
            BenchModel::MedSiglip448 => "medsiglip-448",
        }
    }

    /// The row's `model`.
    fn row_model(self) -> String {
        format!("{}-image", self.name())
    }

    /// Inserted into the embedding file's name (none for ViT-B/16, whose
    /// names the ONNX Runtime scripts read).
    fn file_tag(self) -> String {
        match self {
            BenchModel::VitB16 => String::new(),
            other => format!("{}-", other.name()),
        }
    }

    /// Writes the random folder unless it is already there.
    fn ensure_folder(self, folder: &Path) -> Result<(), String> {
        let t = Instant::now();
        let reused = match self {
            BenchModel::VitB16 => {
                let config = RandomClipConfig::vit_b16();
                let reused = is_random_clip(folder, &config, SEED);
                if !reused {
                    write_random_clip(folder, &config, SEED).map_err(io(folder))?;
                }
                reused
            }
            BenchModel::MedSiglip448 => {
                let config = RandomSiglipConfig { text_layers: 1, ..RandomSiglipConfig::medsiglip_448() };
                let reused = is_random_siglip(folder, &config, SEED);
                if !reused {
                    write_random_siglip(folder, &config, SEED).map_err(io(folder))?;
                }
                reused
            }
        };
        if reused {
            eprintln!("# reusing {}", folder.display());
        } else {
            eprintln!("# wrote {} in {:.1} s", folder.display(), t.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

struct Args {
    model: BenchModel,
    dtype: String,
    /// cpu, or webgpu (the wgpu engine on the first adapter: lavapipe without a GPU).
    backend: String,
    threads: usize,
    /// How quantised layers compute (`QuantKernel`: int8, blocks, dequantize);
    /// None: the native default.
    kernel: Option<kpl::nn::linear::QuantKernel>,
    /// How dense f32 layers compute (`F32Kernel`: packed, the default, or candle).
    f32_kernel: kpl::nn::linear::F32Kernel,
    /// How attention computes (`AttentionKernel`: fused, the default, or candle).
    attention: kpl::nn::attention::AttentionKernel,
    runs: usize,
    out: PathBuf,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        model: BenchModel::VitB16,
        dtype: "f32".into(),
        backend: "cpu".into(),
        threads: 1,
        kernel: None,
        f32_kernel: kpl::nn::linear::F32Kernel::Packed,
        attention: kpl::nn::attention::AttentionKernel::Fused,
        runs: 5,
        out: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/out"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => {
                args.model = match value()?.as_str() {
                    "vit-b16" => BenchModel::VitB16,
                    "medsiglip-448" => BenchModel::MedSiglip448,
                    other => return Err(format!("--model {other:?}: vit-b16 or medsiglip-448")),
                }
            }
            "--dtype" => args.dtype = value()?,
            "--backend" => args.backend = value()?,
            "--threads" => args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--kernel" => args.kernel = Some(value()?.parse()?),
            "--f32-kernel" => args.f32_kernel = value()?.parse()?,
            "--attention" => args.attention = value()?.parse()?,
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--out" => args.out = PathBuf::from(value()?),
            "--list-dtypes" => {
                println!("{}", DTYPES.join(" "));
                return Ok(None);
            }
            "-h" | "--help" => {
                println!(
                    "bench_image [--model vit-b16|medsiglip-448] [--dtype {}] [--backend cpu|webgpu] [--threads N] [--kernel int8x8|int8|blocks|dequantize] [--f32-kernel packed|candle] [--attention fused|candle] [--runs N] [--out DIR] [--list-dtypes]",
                    DTYPES.join("|")
                );
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if !DTYPES.contains(&args.dtype.as_str()) {
        return Err(format!(
            "--dtype {} is not supported yet: this benchmark runs {} (quantised models need `kpl pack`, not built yet)",
            args.dtype,
            DTYPES.join(", ")
        ));
    }
    if args.runs < 1 || args.threads < 1 {
        return Err("--runs and --threads must be at least 1".into());
    }
    Ok(Some(args))
}

/// The model for a dtype. f32: the random Hugging Face folder itself.
fn load_model(model: BenchModel, dtype: &str, folder: &Path) -> Result<Pipeline, String> {
    match dtype {
        "f32" => kpl::model_dir::load_model_dir(folder).map_err(|e| e.to_string()),
        "q8" | "q4" => {
            // The bundle `kpl pack` would write, made once beside the random folder.
            let bundle = folder.with_file_name(format!("{}-{dtype}", model.name()));
            if !kpl::bundle::is_bundle_dir(&bundle) {
                let options = kpl::bundle::pack::PackOptions {
                    dtype: if dtype == "q8" { kpl::bundle::PackDtype::Q8 } else { kpl::bundle::PackDtype::Q4 },
                    knowledge: Vec::new(),
                    name: None,
                };
                kpl::bundle::pack::pack_model_dir(folder, &bundle, &options, &mut |line| eprintln!("# pack: {line}"))
                    .map_err(|e| e.to_string())?;
            }
            kpl::model_dir::load_model_dir(&bundle).map_err(|e| e.to_string())
        }
        other => Err(format!("no loader for dtype {other}")),
    }
}

/// A deterministic 224×224 RGB test image: gradients, stripes and a disc
/// (`size` 448 gives the same picture at twice the resolution).
fn test_png(size: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(size, size, |x, y| {
        let (x, y) = (x * 224 / size, y * 224 / size);
        let (fx, fy) = (x as f32 - 112.0, y as f32 - 80.0);
        let disc = if fx * fx + fy * fy < 50.0 * 50.0 { 90 } else { 0 };
        image::Rgb([
            (x + y / 3) as u8,
            ((y * 7 + (x / 16) * 40) % 256) as u8,
            (128 + disc + ((x ^ y) & 31)) as u8,
        ])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("PNG encoding into memory");
    bytes
}

/// CPU time of this thread so far (nanoseconds on the CPU, from /proc): on a shared
/// machine the wall clock also counts time spent waiting for a core, this does not.
fn thread_cpu_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let m = sorted.len() / 2;
    if sorted.len() % 2 == 1 { sorted[m] } else { (sorted[m - 1] + sorted[m]) / 2.0 }
}

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Names the path in an I/O error.
fn io(what: &Path) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{}: {e}", what.display())
}

fn run(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.out).map_err(io(&args.out))?;
    let folder = args.out.join(format!("{}-random", args.model.name()));
    args.model.ensure_folder(&folder)?;

    if let Some(kernel) = args.kernel {
        // Before loading: q8_0 weights are held as this kernel reads them.
        kpl::nn::linear::set_quant_kernel(kernel);
    }
    // Before loading too: dense weights are packed at load.
    kpl::nn::linear::set_f32_kernel(args.f32_kernel);
    kpl::nn::attention::set_attention_kernel(args.attention);
    let t = Instant::now();
    let mut pipeline = load_model(args.model, &args.dtype, &folder)?;
    let load_s = t.elapsed().as_secs_f64();
    let size = pipeline.model.image_size();
    let png_name = format!("image-{size}.png");
    let png = test_png(size as u32);
    let png_path = args.out.join(&png_name);
    std::fs::write(&png_path, &png).map_err(io(&png_path))?;
    let backend: Backend = args.backend.parse()?;
    let (engine, adapter) = if backend == Backend::Cpu {
        ("kpl-native", None)
    } else {
        let choice = pipeline.select_backend(backend);
        eprintln!("# backend: {}", choice.note);
        if choice.backend != Backend::WebGpu {
            return Err(choice.note);
        }
        let adapter = pipeline.accelerator.with_gpu(|g| g.adapter().to_string());
        ("kpl-wgpu", adapter)
    };
    let pixels = pipeline.prepare_image(&png, &png_name).map_err(|e| e.to_string())?;
    let pixel_path = args.out.join(format!("pixels-{size}.f32"));
    let raw: Vec<u8> = pixels.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&pixel_path, raw).map_err(io(&pixel_path))?;

    let embed = || pipeline.embed_pixels(std::slice::from_ref(&pixels), false).map_err(|e| e.to_string());
    let warm = Instant::now();
    let embedding = embed()?.remove(0);
    let warmup_s = warm.elapsed().as_secs_f64();
    let emb_path = args.out.join(format!("embedding-{engine}-{}{}.json", args.model.file_tag(), args.dtype));
    std::fs::write(&emb_path, serde_json::to_vec(&embedding).expect("floats serialise")).map_err(io(&emb_path))?;

    let mut times = Vec::with_capacity(args.runs);
    let mut cpu_times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let cpu = thread_cpu_s();
        let t = Instant::now();
        std::hint::black_box(embed()?);
        times.push(t.elapsed().as_secs_f64());
        if let (Some(before), Some(after)) = (cpu, thread_cpu_s()) {
            cpu_times.push(after - before);
        }
    }
    let median_s = median(&times);
    // With one thread all the work is on this thread; with more, its CPU time means little.
    let cpu_median_s =
        (engine == "kpl-native" && args.threads == 1 && cpu_times.len() == times.len()).then(|| median(&cpu_times));
    eprintln!("# {engine} {}: warm-up {warmup_s:.3} s, runs {times:.3?}", args.dtype);
    let weights_bytes = std::fs::metadata(folder.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    let row = serde_json::json!({
        "engine": engine,
        "adapter": adapter,
        "dtype": args.dtype,
        "model": args.model.row_model(),
        "random_weights": true,
        "threads": args.threads,
        "kernel": if args.dtype == "f32" {
            Some(format!("{:?}", args.f32_kernel).to_lowercase())
        } else {
            args.kernel.map(|k| format!("{k:?}").to_lowercase())
        },
        "attention": format!("{:?}", args.attention).to_lowercase(),
        "median_s": (median_s * 1e4).round() / 1e4,
        "cpu_median_s": cpu_median_s.map(|c| (c * 1e4).round() / 1e4),
        "runs_s": times.iter().map(|t| (t * 1e4).round() / 1e4).collect::<Vec<_>>(),
        "load_s": (load_s * 1e3).round() / 1e3,
        "weights_bytes": weights_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
    });
    println!("{row}");
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return,
        Err(message) => {
            eprintln!("bench_image: {message}");
            std::process::exit(2);
        }
    };
    // Before anything touches candle or rayon: both size their pools once.
    if let Err(message) = kpl::engine::threads::set_threads(args.threads) {
        eprintln!("bench_image: {message}");
        std::process::exit(2);
    }
    if let Err(message) = run(&args) {
        eprintln!("bench_image: {message}");
        std::process::exit(1);
    }
}
