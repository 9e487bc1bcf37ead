//! BiomedCLIP-sized open_clip encoders, natively: seconds per image of the timm
//! ViT-B/16 image tower (224 px) and milliseconds per description of 256 and of 32
//! tokens for the PubMedBERT-base-sized BERT text tower (12 layers, width 768,
//! vocabulary 30522), random weights (`kpl::testing::open_clip`, BiomedCLIP's layout).
//! 32 tokens is a long knowledge-base prompt: the prompts of knowledge/ have 12 to 26
//! words and punctuation marks (median 17) before WordPiece splits them; the tokenizer
//! pads every text to 256.
//!
//!     cargo run --release --example bench_open_clip --features kpl/testing -- [--dtype q8] [--threads 1] [--runs 5] [--out bench/out]
//!
//! Writes (or reuses) OUT/biomedclip-random/ (about 790 MB of f32), packs it to
//! OUT/biomedclip-DTYPE/ as `kpl pack` does, and writes the descriptions it times to
//! OUT/biomedclip-text-256.txt and -32.txt (words of one token each, + [CLS] and
//! [SEP]) for bench/wasm_open_clip.mjs. The image is OUT/image-224.png (bench_image writes it).
//! Times `embed_pixels` on the preprocessed image and `embed_text` on the
//! description (tokenizer included): a warm-up, then the median of --runs runs.
//! Prints three JSON lines, models "biomedclip-image", "biomedclip-text-256" and
//! "biomedclip-text-32", with `median_s` (seconds per image, per description).

use std::path::{Path, PathBuf};
use std::time::Instant;

use kpl::testing::bench::{median, time_runs};
use kpl::testing::open_clip::{is_random_open_clip, words, write_random_open_clip, RandomOpenClipConfig};

const SEED: u64 = 0;

struct Args {
    dtype: String,
    threads: usize,
    runs: usize,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { dtype: "q8".into(), threads: 1, runs: 5, out: Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/out") };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dtype" => args.dtype = value()?,
            "--threads" => args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--out" => args.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other:?} (--dtype f32|f16|q8|q4, --threads, --runs, --out)")),
        }
    }
    if args.runs < 1 || args.threads < 1 {
        return Err("--runs and --threads must be at least 1".into());
    }
    Ok(args)
}

fn run(args: &Args) -> Result<(), String> {
    let shown = |p: &Path| p.display().to_string();
    let folder = args.out.join("biomedclip-random");
    let config = RandomOpenClipConfig::biomedclip();
    if !is_random_open_clip(&folder, &config, SEED) {
        let t = Instant::now();
        write_random_open_clip(&folder, &config, SEED).map_err(|e| format!("{}: {e}", shown(&folder)))?;
        eprintln!("# wrote {} in {:.1} s", shown(&folder), t.elapsed().as_secs_f64());
    }
    let dtype = kpl::bundle::PackDtype::parse(&args.dtype).ok_or_else(|| format!("--dtype {}: f32, f16, q8 or q4", args.dtype))?;
    let bundle = args.out.join(format!("biomedclip-{}", args.dtype));
    if !kpl::bundle::is_bundle_dir(&bundle) {
        let options = kpl::bundle::pack::PackOptions { dtype, knowledge: Vec::new(), name: None };
        kpl::bundle::pack::pack_model_dir(&folder, &bundle, &options, &mut |line| eprintln!("# pack: {line}"))
            .map_err(|e| e.to_string())?;
    }
    let t = Instant::now();
    let pipeline = kpl::model_dir::load_model_dir(&bundle).map_err(|e| e.to_string())?;
    let load_s = t.elapsed().as_secs_f64();

    let png_path = args.out.join("image-224.png");
    let png = std::fs::read(&png_path).map_err(|e| format!("{}: {e} (bench_image writes it)", shown(&png_path)))?;
    let pixels = pipeline.prepare_image(&png, "image-224.png").map_err(|e| e.to_string())?;
    let image_runs = time_runs(args.runs, || -> Result<(), String> {
        std::hint::black_box(pipeline.embed_pixels(std::slice::from_ref(&pixels), false).map_err(|e| e.to_string())?);
        Ok(())
    })?;

    // One-token words between [CLS] and [SEP]: 254 fill BiomedCLIP's context of 256.
    let time_text = |tokens: usize| -> Result<_, String> {
        let text = words(&config, tokens - 2);
        let ids = pipeline.tokenizer().and_then(|t| t.encode(&text)).map_err(|e| e.to_string())?;
        let real = ids.iter().filter(|&&id| id != 0).count();
        if real != tokens {
            return Err(format!("the description is {real} tokens, not {tokens}"));
        }
        let path = args.out.join(format!("biomedclip-text-{tokens}.txt"));
        std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", shown(&path)))?;
        let runs = time_runs(args.runs, || -> Result<(), String> {
            std::hint::black_box(pipeline.embed_text(&text).map_err(|e| e.to_string())?);
            Ok(())
        })?;
        Ok(runs)
    };
    let text_runs = time_text(config.context_length)?;
    let short_runs = time_text(32)?;

    let round = |t: f64| (t * 1e4).round() / 1e4;
    let rows = [("biomedclip-image", &image_runs), ("biomedclip-text-256", &text_runs), ("biomedclip-text-32", &short_runs)];
    for (model, (runs, cpu)) in rows {
        eprintln!("# kpl-native {} {model}: runs {runs:.3?}", args.dtype);
        // With one thread all the work is on this thread; with more, its CPU time means little.
        let cpu_median_s = (args.threads == 1 && cpu.len() == runs.len()).then(|| round(median(cpu)));
        let row = serde_json::json!({
            "engine": "kpl-native",
            "dtype": args.dtype,
            "model": model,
            "threads": args.threads,
            "median_s": round(median(runs)),
            "cpu_median_s": cpu_median_s,
            "runs_s": runs.iter().map(|&t| round(t)).collect::<Vec<_>>(),
            "load_s": (load_s * 1e3).round() / 1e3,
        });
        println!("{row}");
    }
    Ok(())
}

fn main() {
    // Before anything touches candle or rayon: both size their pools once.
    let result = parse_args().and_then(|args| kpl::engine::threads::set_threads(args.threads).and_then(|()| run(&args)));
    if let Err(message) = result {
        eprintln!("bench_open_clip: {message}");
        std::process::exit(1);
    }
}
