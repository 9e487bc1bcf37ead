//! The `kpl` command line end to end: output contracts, batches that keep the
//! good files' results, and clear errors (naming the file) for hostile input.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MODEL: &str = "tiny-quickgelu-f32";

fn kpl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kpl")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), stderr(out))
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn model_dir() -> String {
    fixtures().join(MODEL).display().to_string()
}

fn image(name: &str) -> String {
    fixtures().join("images").join(name).display().to_string()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kpl-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A writable copy of a fixture model (symlinks resolved).
fn copy_model(tag: &str) -> PathBuf {
    let dir = temp_dir(tag);
    for name in ["config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"] {
        std::fs::copy(fixtures().join(MODEL).join(name), dir.join(name)).unwrap();
    }
    dir
}

fn assert_fails_naming(out: &Output, file: &str, reason: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure for {file}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(file), "stderr does not name {file}: {err}");
    assert!(err.to_lowercase().contains(&reason.to_lowercase()), "stderr does not say {reason:?}: {err}");
}

#[test]
fn embed_image_prints_normalised_embeddings_in_order() {
    let reference = reference();
    let files = ["grey_80x120.png", "rgb_97x61.png", "rgba_64x48.png"];
    let paths: Vec<String> = files.iter().map(|f| image(f)).collect();
    let mut args = vec!["embed-image", "--model", &*Box::leak(model_dir().into_boxed_str())];
    args.extend(paths.iter().map(|s| s.as_str()));
    let out = kpl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    let embeddings = json["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 3);
    for (entry, (file, path)) in embeddings.iter().zip(files.iter().zip(&paths)) {
        assert_eq!(entry["file"].as_str().unwrap(), path);
        let ours = floats(&entry["embedding"]);
        let norm: f32 = ours.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        let theirs = reference["models"][MODEL]["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["file"].as_str().unwrap().ends_with(file))
            .unwrap();
        assert!(cosine(&ours, &floats(&theirs["embedding"])) >= 0.999);
    }
}

#[test]
fn a_batch_with_bad_files_keeps_the_good_results() {
    let dir = temp_dir("batch");
    let png = std::fs::read(fixtures().join("images/rgb_97x61.png")).unwrap();
    let truncated = dir.join("truncated.png");
    std::fs::write(&truncated, &png[..png.len() / 2]).unwrap();
    let random = dir.join("random.png");
    std::fs::write(&random, (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>()).unwrap();
    let empty = dir.join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    let missing = dir.join("does-not-exist.png");
    let good = image("rgb_97x61.png");
    let model = model_dir();
    let names: Vec<String> = [&truncated, &random, &empty, &missing].iter().map(|p| p.display().to_string()).collect();
    let out = kpl(&["embed-image", "--model", &model, &names[0], &good, &names[1], &names[2], &names[3]]);
    assert_eq!(out.status.code(), Some(1));
    let json = stdout_json(&out);
    let embeddings = json["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 1);
    assert_eq!(embeddings[0]["file"].as_str().unwrap(), good);
    assert_fails_naming(&out, &names[0], "decode");
    assert_fails_naming(&out, &names[1], "not a supported image format");
    assert_fails_naming(&out, &names[2], "empty");
    assert_fails_naming(&out, &names[3], "no such file");
}

/// Defence in depth: a panic inside the decoder (forced through the test hook
/// `KPL_TEST_PANIC_MARKER`, see `kpl::isolate`) costs only its own file, in the
/// middle of a batch, for every command that reads images.
#[test]
fn a_panic_while_decoding_one_file_costs_only_that_file() {
    let dir = temp_dir("panic");
    let doomed = dir.join("__panic__.png");
    std::fs::copy(fixtures().join("images/rgb_97x61.png"), &doomed).unwrap();
    let doomed = doomed.display().to_string();
    let (first, last) = (image("small_30x40.png"), image("rgb_97x61.png"));
    let model = model_dir();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kpl"))
            .args(args)
            .env("KPL_TEST_PANIC_MARKER", "__panic__")
            .output()
            .unwrap()
    };
    let out = run(&["embed-image", "--model", &model, &first, &doomed, &last]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    let json = stdout_json(&out);
    let files: Vec<&str> = json["embeddings"].as_array().unwrap().iter().map(|e| e["file"].as_str().unwrap()).collect();
    assert_eq!(files, [first.as_str(), last.as_str()]);
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["file"].as_str().unwrap(), doomed);
    assert!(errors[0]["error"].as_str().unwrap().contains("internal error while decoding"), "{}", errors[0]);
    assert!(!stderr(&out).contains("panicked"), "Rust's panic text leaked: {}", stderr(&out));
    assert_fails_naming(&out, &doomed, "forced by KPL_TEST_PANIC_MARKER");

    let out = run(&["classify", "--model", &model, "--labels", "cat,dog", &doomed, &first]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert_eq!(stdout_json(&out)["results"].as_array().map(Vec::len), Some(1), "{}", String::from_utf8_lossy(&out.stdout));

    let out = run(&["decode", &doomed, "-o", &dir.join("x.png").display().to_string()]);
    assert_fails_naming(&out, &doomed, "internal error while decoding");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

#[test]
fn a_40000_square_png_is_refused_from_its_header() {
    let dir = temp_dir("huge");
    let mut ihdr = 40000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&40000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    let huge = dir.join("huge.png");
    std::fs::write(&huge, png).unwrap();
    let name = huge.display().to_string();
    let out = kpl(&["classify", "--model", &model_dir(), "--labels", "normal,pneumonia", &name, &image("rgb_97x61.png")]);
    assert_fails_naming(&out, &name, "megapixels");
    assert!(stderr(&out).contains("--max-megapixels"));
    assert_eq!(stdout_json(&out)["results"].as_array().unwrap().len(), 1);
}

#[test]
fn classify_matches_reference_probabilities() {
    let reference = reference();
    let case = &reference["models"][MODEL]["classify"][0];
    let file = fixtures().join(case["file"].as_str().unwrap()).display().to_string();
    let labels: Vec<&str> = case["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let out = kpl(&["classify", "--model", &model_dir(), "--labels", &labels.join(","), &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    assert!(json["warning"].as_str().unwrap().contains("RANDOM"));
    let result = &json["results"][0];
    assert_eq!(result["method"], "clip");
    let probs: Vec<f32> = labels.iter().map(|l| result["scores"][l].as_f64().unwrap() as f32).collect();
    assert!(max_abs_diff(&probs, &floats(&case["probs"])) < 1e-3, "{probs:?}");
}

#[test]
fn embed_text_matches_reference() {
    let reference = reference();
    let text = &reference["models"][MODEL]["texts"][0];
    let out = kpl(&["embed-text", "--model", &model_dir(), text["text"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    assert_eq!(json["embeddings"][0]["text"], text["text"]);
    assert!(max_abs_diff(&floats(&json["embeddings"][0]["embedding"]), &floats(&text["embedding"])) <= 1e-4);
}

#[test]
fn broken_model_folders_give_clear_errors() {
    let good = image("rgb_97x61.png");
    let empty = temp_dir("empty-model");
    let out = kpl(&["embed-image", "--model", &empty.display().to_string(), &good]);
    assert_fails_naming(&out, "config.json", "missing");

    let malformed = copy_model("malformed");
    std::fs::write(malformed.join("config.json"), "{ not json").unwrap();
    let out = kpl(&["embed-image", "--model", &malformed.display().to_string(), &good]);
    assert_fails_naming(&out, "config.json", "not a usable CLIP config.json");

    let no_width = copy_model("no-width");
    let mut config: Value = serde_json::from_slice(&std::fs::read(no_width.join("config.json")).unwrap()).unwrap();
    config["vision_config"].as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(no_width.join("config.json"), config.to_string()).unwrap();
    let out = kpl(&["embed-image", "--model", &no_width.display().to_string(), &good]);
    assert_fails_naming(&out, "config.json", "hidden_size");

    let truncated = copy_model("truncated");
    let weights = std::fs::read(truncated.join("model.safetensors")).unwrap();
    std::fs::write(truncated.join("model.safetensors"), &weights[..weights.len() / 3]).unwrap();
    let out = kpl(&["embed-image", "--model", &truncated.display().to_string(), &good]);
    assert_fails_naming(&out, "model.safetensors", "safetensors");

    for (tag, edit, reason) in [
        ("missing-tensor", "drop", "vision_model.post_layernorm.weight"),
        ("bad-shape", "reshape", "vision_model.post_layernorm.weight"),
    ] {
        let dir = copy_model(tag);
        rewrite_tensor(&dir.join("model.safetensors"), "vision_model.post_layernorm.weight", edit);
        let out = kpl(&["embed-image", "--model", &dir.display().to_string(), &good]);
        assert_fails_naming(&out, "model.safetensors", reason);
        assert!(stderr(&out).contains(if edit == "drop" { "missing tensor" } else { "wrongly shaped" }), "{}", stderr(&out));
    }
}

fn rewrite_tensor(path: &Path, name: &str, edit: &str) {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = std::fs::read(path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let short = vec![0u8; 4 * 3];
    let mut views: Vec<(String, TensorView)> = Vec::new();
    for (n, view) in tensors.tensors() {
        if n == name {
            if edit == "reshape" {
                views.push((n, TensorView::new(Dtype::F32, vec![3], &short).unwrap()));
            }
            continue;
        }
        views.push((n, view));
    }
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, out).unwrap();
}

#[test]
fn knowledge_base_round_trip_fit_and_eval() {
    let dir = temp_dir("kb");
    let kb = dir.join("pneumonia.kplkb").display().to_string();
    let model = model_dir();
    let out = kpl(&["build-kb", "--model", &model, "knowledge/chest-xray-pneumonia", "-o", &kb]);
    assert!(out.status.success(), "{}", stderr(&out));

    // One image without proxies: single-image retrieval with evidence.
    let out = kpl(&["classify", "--model", &model, "--kb", &kb, &image("rgb_97x61.png")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    let result = &json["results"][0];
    assert_eq!(result["method"], "single-image");
    assert!(["normal", "pneumonia"].contains(&result["label"].as_str().unwrap()));
    assert_eq!(result["evidence"].as_array().unwrap().len(), 5);

    // Several images: transductive KPL.
    let images: Vec<String> = ["rgb_97x61.png", "grey_80x120.png", "rgba_64x48.png", "small_30x40.png"].iter().map(|f| image(f)).collect();
    let mut args = vec!["classify", "--model", model.as_str(), "--kb", kb.as_str()];
    args.extend(images.iter().map(|s| s.as_str()));
    let json = stdout_json(&kpl(&args));
    assert!(json["results"].as_array().unwrap().iter().all(|r| r["method"] == "kpl"));

    // A labelled folder, evaluated twice: the second run reads the cache.
    let data = dir.join("data");
    for (class, files) in [("NORMAL", ["rgb_97x61.png", "grey_80x120.png"]), ("PNEUMONIA", ["rgba_64x48.png", "small_30x40.png"])] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in files {
            std::fs::copy(fixtures().join("images").join(f), data.join(class).join(f)).unwrap();
        }
    }
    std::fs::create_dir_all(data.join("unrelated")).unwrap();
    let cache = dir.join("cache").display().to_string();
    let data_s = data.display().to_string();
    let eval_args = ["eval", "--model", &model, "--kb", &kb, &data_s, "--k", "5,8", "--json", "--cache-dir", &cache];
    let out = kpl(&eval_args);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    assert_eq!(json["images"], 4);
    assert_eq!(json["unmatched_folders"], serde_json::json!(["unrelated"]));
    assert_eq!(json["results"].as_array().unwrap().len(), 2);
    for method in ["text_proxy", "proxy", "kpl", "inmap"] {
        let acc = json["results"][1]["methods"][method]["accuracy"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&acc));
    }
    let again = kpl(&eval_args);
    assert!(stderr(&again).contains("from the cache"), "{}", stderr(&again));
    assert_eq!(stdout_json(&again)["results"], json["results"]);

    // Fit on the pool, then one image is classified inductively.
    let fitted = dir.join("fitted.kplkb").display().to_string();
    let out = kpl(&["fit", "--model", &model, "--kb", &kb, &data_s, "-o", &fitted, "--iters-proxy", "200"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&kpl(&["classify", "--model", &model, "--kb", &fitted, &image("grey_80x120.png")]));
    assert_eq!(json["results"][0]["method"], "proxies");

    // Another model's base is refused, naming the base.
    let other = fixtures().join("tiny-gelu-f16").display().to_string();
    let out = kpl(&["classify", "--model", &other, "--kb", &kb, &image("rgb_97x61.png")]);
    assert_fails_naming(&out, &kb, "another model");

    // A corrupted base fails its hash check.
    let mut bytes = std::fs::read(&kb).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    let corrupt = dir.join("corrupt.kplkb");
    std::fs::write(&corrupt, bytes).unwrap();
    let corrupt = corrupt.display().to_string();
    let out = kpl(&["classify", "--model", &model, "--kb", &corrupt, &image("rgb_97x61.png")]);
    assert_fails_naming(&out, &corrupt, "SHA-256");
}

fn write_npz(path: &Path, arrays: Vec<(&str, NpzArray)>) {
    let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(path).unwrap());
    for (name, array) in arrays {
        match array {
            NpzArray::F32(a) => npz.add_array(name, &a).unwrap(),
            NpzArray::F64(a) => npz.add_array(name, &a).unwrap(),
            NpzArray::I64(a) => npz.add_array(name, &a).unwrap(),
        }
    }
    npz.finish().unwrap();
}

enum NpzArray {
    F32(ndarray::Array2<f32>),
    F64(ndarray::Array2<f64>),
    I64(ndarray::Array1<i64>),
}

/// Two clusters of images near two groups of descriptions.
fn synthetic(n: usize, d: usize) -> (ndarray::Array2<f32>, ndarray::Array2<f32>, ndarray::Array1<i64>, ndarray::Array1<i64>) {
    let mut state = 12345u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f32 / 1000.0 - 0.5
    };
    let images = ndarray::Array2::from_shape_fn((n, d), |(i, j)| if j == i % 2 { 1.0 } else { 0.0 } + 0.3 * noise());
    let descriptions = ndarray::Array2::from_shape_fn((20, d), |(i, j)| if j == i / 10 { 1.0 } else { 0.0 } + 0.3 * noise());
    let classes = ndarray::Array1::from_shape_fn(20, |i| (i / 10) as i64);
    let labels = ndarray::Array1::from_shape_fn(n, |i| (i % 2) as i64);
    (images, descriptions, classes, labels)
}

#[test]
fn eval_embeddings_runs_all_methods_and_rejects_bad_npz() {
    let dir = temp_dir("npz");
    let (images, descriptions, classes, labels) = synthetic(40, 8);
    let good = dir.join("good.npz");
    write_npz(&good, vec![
        ("image_embeddings", NpzArray::F32(images.clone())),
        ("description_embeddings", NpzArray::F32(descriptions.clone())),
        ("description_class", NpzArray::I64(classes.clone())),
        ("labels", NpzArray::I64(labels.clone())),
    ]);
    let out = kpl(&["eval-embeddings", &good.display().to_string(), "--iters-proxy", "300"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    for method in ["text_proxy", "proxy", "kpl", "inmap"] {
        assert_eq!(json["methods"][method]["predictions"].as_array().unwrap().len(), 40);
        assert!(json["methods"][method]["accuracy"].as_f64().unwrap() > 90.0, "{method}: {}", json["methods"][method]);
    }

    let mut nan_images = images.clone();
    nan_images[[3, 2]] = f32::NAN;
    let cases: Vec<(&str, Vec<(&str, NpzArray)>, &str)> = vec![
        ("missing", vec![("image_embeddings", NpzArray::F32(images.clone())), ("description_class", NpzArray::I64(classes.clone()))], "description_embeddings: missing"),
        ("dtype", vec![("image_embeddings", NpzArray::F64(images.mapv(f64::from))), ("description_embeddings", NpzArray::F32(descriptions.clone())), ("description_class", NpzArray::I64(classes.clone()))], "float32"),
        ("nan", vec![("image_embeddings", NpzArray::F32(nan_images)), ("description_embeddings", NpzArray::F32(descriptions.clone())), ("description_class", NpzArray::I64(classes.clone()))], "NaN"),
        ("dims", vec![("image_embeddings", NpzArray::F32(ndarray::Array2::ones((4, 5)))), ("description_embeddings", NpzArray::F32(descriptions.clone())), ("description_class", NpzArray::I64(classes.clone()))], "d = 5"),
        ("empty-class", vec![("image_embeddings", NpzArray::F32(images.clone())), ("description_embeddings", NpzArray::F32(descriptions.clone())), ("description_class", NpzArray::I64(classes.mapv(|c| c * 2)))], "class 1 has no descriptions"),
    ];
    for (tag, arrays, reason) in cases {
        let path = dir.join(format!("{tag}.npz"));
        write_npz(&path, arrays);
        let name = path.display().to_string();
        assert_fails_naming(&kpl(&["eval-embeddings", &name]), &name, reason);
    }
    let out = kpl(&["eval-embeddings", &good.display().to_string(), "--k", "0"]);
    assert!(!out.status.success() && stderr(&out).contains('k'), "{}", stderr(&out));
}

#[test]
fn knowledge_list_json_lists_every_task() {
    let out = kpl(&["knowledge", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    let tasks = json["tasks"].as_array().unwrap();
    assert!(tasks.len() >= 9);
    for task in tasks {
        assert!(task["prompt_template"].as_str().unwrap().contains("{description}"));
        for class in task["classes"].as_array().unwrap() {
            assert!(class["descriptions"].as_array().unwrap().len() >= 50);
        }
    }
    let bad = temp_dir("bad-task").join("bad-task");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("task.json"), r#"{"schema_version":1,"name":"bad-task","classes":[{"name":"a","descriptions":["x"]}]}"#).unwrap();
    let out = kpl(&["knowledge", "check", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at least 2 classes") && stderr(&out).contains("at least 50 are required"), "{}", stderr(&out));
}

/// The bounds every hostile input must stay within (issue #9).
const HOSTILE_WALL: Duration = Duration::from_secs(20);
const HOSTILE_RSS_BYTES: u64 = 3 << 30;

/// `wait4(2)`, which reports the peak RSS of one child alone (`getrusage` with
/// `RUSAGE_CHILDREN` would mix in every other test's children).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod wait4 {
    #[repr(C)]
    struct Timeval {
        sec: i64,
        usec: i64,
    }

    /// `struct rusage` on 64-bit Linux: two timevals, then 14 longs.
    #[repr(C)]
    pub struct Rusage {
        utime: Timeval,
        stime: Timeval,
        /// Peak resident set size, in KiB.
        pub maxrss: i64,
        rest: [i64; 13],
    }

    extern "C" {
        fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
    }

    const WNOHANG: i32 = 1;

    /// Reaps `pid` if it has exited: its raw wait status and peak RSS in bytes.
    pub fn try_reap(pid: u32) -> Option<(i32, u64)> {
        let mut status = 0i32;
        // SAFETY: all-zero is a valid `rusage`; both pointers outlive the call.
        let mut usage: Rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { wait4(pid as i32, &mut status, WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4 failed: {}", std::io::Error::last_os_error());
        (r == pid as i32).then(|| (status, usage.maxrss.max(0) as u64 * 1024))
    }
}

/// A `kpl` run with its wall time and, on 64-bit Linux, its peak RSS.
struct Measured {
    out: Output,
    wall: Duration,
    max_rss: Option<u64>,
}

/// Runs `kpl` with `env` added, killing it after twice the hostile-input wall limit.
fn kpl_measured(args: &[&str], env: &[(&str, &str)]) -> Measured {
    use std::io::Read;
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kpl"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            pipe.read_to_end(&mut buf).unwrap();
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let kill_after = HOSTILE_WALL * 2;
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    let (status, max_rss) = {
        use std::os::unix::process::ExitStatusExt;
        let mut killed = false;
        loop {
            if let Some((raw, rss)) = wait4::try_reap(child.id()) {
                break (std::process::ExitStatus::from_raw(raw), Some(rss));
            }
            if !killed && start.elapsed() > kill_after {
                child.kill().unwrap();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    #[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
    let (status, max_rss) = {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                break (status, None);
            }
            if start.elapsed() > kill_after {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let wall = start.elapsed();
    let out = Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
    Measured { out, wall, max_rss }
}

/// A file of `len` bytes that takes no disk space (a hole), for the size limit.
fn sparse_file(path: &Path, len: u64) {
    let file = std::fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
}

#[test]
fn hostile_inputs_finish_within_20_s_and_3_gb() {
    let dir = temp_dir("hostile");
    let model = model_dir();
    let png = std::fs::read(fixtures().join("images/rgb_97x61.png")).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();

    std::fs::write(path("random.png"), (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(path("random.dcm"), (0..5000u32).map(|i| (i.wrapping_mul(2246822519) >> 11) as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(path("empty.png"), b"").unwrap();
    std::fs::write(path("truncated.png"), &png[..png.len() / 2]).unwrap();
    let mut ihdr = 40000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&40000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut huge = b"\x89PNG\r\n\x1a\n".to_vec();
    huge.extend(png_chunk(b"IHDR", &ihdr));
    huge.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    huge.extend(png_chunk(b"IEND", &[]));
    std::fs::write(path("huge.png"), huge).unwrap();
    // 600 MB on paper, nothing on disk: refused from its size before reading.
    sparse_file(&dir.join("600mb.png"), 600_000_000);

    let truncated = copy_model("hostile-truncated");
    let weights = std::fs::read(truncated.join("model.safetensors")).unwrap();
    std::fs::write(truncated.join("model.safetensors"), &weights[..weights.len() / 3]).unwrap();
    let malformed = copy_model("hostile-malformed");
    std::fs::write(malformed.join("config.json"), "{ not json").unwrap();
    let (truncated, malformed) = (truncated.display().to_string(), malformed.display().to_string());

    let (images, descriptions, classes, _) = synthetic(40, 8);
    let mut nan_images = images.clone();
    nan_images[[3, 2]] = f32::NAN;
    write_npz(&dir.join("nan.npz"), vec![
        ("image_embeddings", NpzArray::F32(nan_images)),
        ("description_embeddings", NpzArray::F32(descriptions.clone())),
        ("description_class", NpzArray::I64(classes.clone())),
    ]);
    write_npz(&dir.join("missing.npz"), vec![("image_embeddings", NpzArray::F32(images)), ("description_class", NpzArray::I64(classes))]);

    // A bundle whose image encoder's GGUF header says general.alignment = 0
    // (a division by zero inside candle before the fix; tests/fuzz_regressions/).
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let gguf = std::fs::read(regressions.join("gguf_bundle/alignment-zero.gguf")).unwrap();
    std::fs::write(bundle.join("image_encoder.gguf"), &gguf).unwrap();
    let (sha256, bytes) = kpl::bundle::sha256_of(&mut std::io::Cursor::new(&gguf)).unwrap();
    let manifest = serde_json::json!({
        "format_version": 1,
        "model": {"name": "hostile", "fingerprint": "0", "dtype": "q8", "random_weights": true, "projection_dim": 24, "image_size": 64},
        "files": {"image_encoder": {"path": "image_encoder.gguf", "bytes": bytes, "sha256": sha256}},
    });
    std::fs::write(bundle.join("manifest.json"), manifest.to_string()).unwrap();
    let (bundle, bundle_gguf) = (bundle.display().to_string(), bundle.join("image_encoder.gguf").display().to_string());
    let huge_npz = regressions.join("npz/shape-100000x100000-in-266-bytes.npz").display().to_string();

    let good = image("rgb_97x61.png");
    let weights_file = format!("{truncated}/model.safetensors");
    let config_file = format!("{malformed}/config.json");
    let (random, random_dcm, empty, trunc_png, huge, big, missing) = (
        path("random.png"),
        path("random.dcm"),
        path("empty.png"),
        path("truncated.png"),
        path("huge.png"),
        path("600mb.png"),
        path("does-not-exist.png"),
    );
    let (nan, missing_npz) = (path("nan.npz"), path("missing.npz"));
    let no_env: &[(&str, &str)] = &[];
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<&str>, &[(&str, &str)], &str, &str)> = vec![
        ("random bytes .png", vec!["embed-image", "--model", &model, &random], no_env, &random, "not a supported image format"),
        ("random bytes .dcm", vec!["embed-image", "--model", &model, &random_dcm], no_env, &random_dcm, "DICM"),
        ("empty .png", vec!["embed-image", "--model", &model, &empty], no_env, &empty, "empty"),
        ("truncated PNG", vec!["embed-image", "--model", &model, &trunc_png], no_env, &trunc_png, "decode"),
        ("40000x40000 PNG", vec!["classify", "--model", &model, "--labels", "a,b", &huge], no_env, &huge, "--max-megapixels"),
        ("600 MB file (512 MB limit)", vec!["embed-image", "--model", &model, &big], no_env, &big, "--max-file-mb"),
        ("file over KPL_MAX_FILE_MB", vec!["embed-image", "--model", &model, &good], &[("KPL_MAX_FILE_MB", "0.001")], &good, "KPL_MAX_FILE_MB"),
        ("missing file", vec!["embed-image", "--model", &model, &missing], no_env, &missing, "no such file"),
        ("truncated weights", vec!["embed-image", "--model", &truncated, &good], no_env, &weights_file, "safetensors"),
        ("malformed config.json", vec!["embed-image", "--model", &malformed, &good], no_env, &config_file, "not a usable CLIP config.json"),
        ("npz with NaN", vec!["eval-embeddings", &nan], no_env, &nan, "NaN"),
        ("npz missing array", vec!["eval-embeddings", &missing_npz], no_env, &missing_npz, "description_embeddings: missing"),
        ("npz declaring 100000x100000", vec!["eval-embeddings", &huge_npz], no_env, &huge_npz, "more values than"),
        ("GGUF with alignment 0", vec!["embed-image", "--model", &bundle, &good], no_env, &bundle_gguf, "general.alignment"),
    ];
    println!("{:<30} {:>9} {:>12}", "hostile case", "wall (s)", "max RSS (MB)");
    let mut over = Vec::new();
    for (label, args, env, file, reason) in cases {
        let m = kpl_measured(&args, env);
        let rss = m.max_rss.map_or("n/a".to_string(), |b| format!("{:.1}", b as f64 / 1e6));
        println!("{label:<30} {:>9.3} {rss:>12}", m.wall.as_secs_f64());
        assert_fails_naming(&m.out, file, reason);
        assert!(m.out.status.code().is_some(), "{label}: killed by a signal: {}", stderr(&m.out));
        if m.wall > HOSTILE_WALL || m.max_rss.is_some_and(|b| b > HOSTILE_RSS_BYTES) {
            over.push(format!("{label}: {:.1} s, {rss} MB", m.wall.as_secs_f64()));
        }
    }
    assert!(over.is_empty(), "over 20 s or 3 GB: {over:?}");
}

#[test]
fn the_file_size_limit_names_the_file_the_limit_and_how_to_raise_it() {
    let dir = temp_dir("file-limit");
    let big = dir.join("big.png");
    sparse_file(&big, 2_000_000);
    let name = big.display().to_string();
    let out = kpl(&["embed-image", "--model", &model_dir(), "--max-file-mb", "1", &name, &image("rgb_97x61.png")]);
    assert_fails_naming(&out, &name, "the file is 2.0 MB, above the limit of 1 MB");
    assert!(stderr(&out).contains("--max-file-mb") && stderr(&out).contains("KPL_MAX_FILE_MB"), "{}", stderr(&out));
    // The other file's result is kept.
    assert_eq!(stdout_json(&out)["embeddings"].as_array().unwrap().len(), 1);
    // Raised, the same file is read (and fails only as the non-image it is).
    let out = kpl(&["embed-image", "--model", &model_dir(), "--max-file-mb", "3", &name]);
    assert_fails_naming(&out, &name, "not a supported image format");
    // `kpl decode` has the limit too.
    let dcm = dir.join("big.dcm");
    sparse_file(&dcm, 2_000_000);
    let dcm_name = dcm.display().to_string();
    let png_out = dir.join("out.png").display().to_string();
    let out = kpl(&["decode", &dcm_name, "-o", &png_out, "--max-file-mb", "1"]);
    assert_fails_naming(&out, &dcm_name, "above the limit of 1 MB");
}

#[test]
fn npz_files_stored_deflated_and_zip64_are_read() {
    // The fuzz seeds (fuzz/seeds/npz): Python's zipfile, stored and deflated, with
    // and without numpy's forced zip64 headers; the size check must accept them all.
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/npz");
    for name in ["stored.npz", "deflated.npz", "no_labels.npz", "z64_stored.npz", "z64_deflated.npz"] {
        let file = seeds.join(name).display().to_string();
        let out = kpl(&["eval-embeddings", &file, "--iters-proxy", "20"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert_eq!(stdout_json(&out)["methods"]["kpl"]["predictions"].as_array().unwrap().len(), 6, "{name}");
    }
}

/// The text of an element's descendants.
fn text_of(node: roxmltree::Node) -> String {
    node.descendants().filter(|n| n.is_text()).map(|n| n.text().unwrap_or_default()).collect()
}

fn data_values(row: roxmltree::Node) -> Vec<Option<f64>> {
    row.children()
        .filter(|n| n.has_tag_name("td"))
        .map(|td| td.attribute("data-value").map(|v| v.parse().unwrap()))
        .collect()
}

#[test]
fn eval_report_shows_the_numbers_eval_prints_and_plain_progress_lines() {
    let dir = temp_dir("report");
    let model = model_dir();
    let kb = dir.join("pneumonia.kplkb").display().to_string();
    let out = kpl(&["build-kb", "--model", &model, "knowledge/chest-xray-pneumonia", "-o", &kb]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = dir.join("data");
    let classes = [
        ("NORMAL", &["rgb_97x61.png", "grey_80x120.png", "rgb_97x61.webp"][..]),
        ("PNEUMONIA", &["rgba_64x48.png", "small_30x40.png", "photo_120x100.jpg", "greyalpha_50x75.png"][..]),
    ];
    for (class, files) in classes {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in files {
            std::fs::copy(fixtures().join("images").join(f), data.join(class).join(f)).unwrap();
        }
    }
    let report = dir.join("report");
    let (data_s, report_s, cache) = (data.display().to_string(), report.display().to_string(), dir.join("cache").display().to_string());
    let args = ["eval", "--model", &model, "--kb", &kb, &data_s, "--k", "2,8,20", "--json", "--cache-dir", &cache];
    let mut with_report = args.to_vec();
    with_report.extend(["--report", &report_s]);
    let out = kpl(&with_report);
    assert!(out.status.success(), "{}", stderr(&out));
    let json = stdout_json(&out);
    // Again without the report (from the embedding cache): the same numbers.
    assert_eq!(stdout_json(&kpl(&args)), json, "--report changed the numbers");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(report.join("eval.json")).unwrap()).unwrap();
    assert_eq!(written, json);
    assert_eq!(json["quote_k"], 8);
    assert_eq!(json["images"], 7);

    // Confusion counts: every image once, rows summing to the class's images.
    let names: Vec<&str> = json["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for method in ["zero_shot", "text_proxy", "proxy", "kpl", "inmap"] {
        let rows = json["confusion"][method].as_array().unwrap();
        assert_eq!(rows.len(), names.len());
        for (row, name) in rows.iter().zip(&names) {
            let sum: u64 = row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
            assert_eq!(sum, json["per_class_images"][name].as_u64().unwrap(), "{method} {name}");
        }
    }

    // The page: no script, no inline style, nothing from elsewhere, and well-formed.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for banned in ["<script", "style=", "http://", "https://", "javascript:"] {
        assert!(!html.contains(banned), "index.html contains {banned:?}");
    }
    let doc = roxmltree::Document::parse_with_options(&html, roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() })
        .expect("index.html is well-formed");
    let by_id = |id: &str| doc.descendants().find(|n| n.attribute("id") == Some(id)).unwrap_or_else(|| panic!("no #{id}"));
    assert!(text_of(by_id("random-weights")).contains("RANDOM"), "the page must say the weights are random");
    let methods = ["text_proxy", "proxy", "kpl", "inmap"];

    // Accuracy table: a row per k, plain zero-shot then the four methods, the quoted row marked.
    let rows: Vec<_> = by_id("accuracy").descendants().filter(|n| n.has_tag_name("tr") && n.attribute("data-k").is_some()).collect();
    assert_eq!(rows.len(), 3);
    for (row, sweep) in rows.iter().zip(json["results"].as_array().unwrap()) {
        let k = sweep["k"].as_u64().unwrap();
        assert_eq!(row.attribute("data-k").unwrap().parse::<u64>().unwrap(), k);
        let mut expected = vec![json["zero_shot"]["accuracy"].as_f64()];
        expected.extend(methods.iter().map(|m| sweep["methods"][m]["accuracy"].as_f64()));
        assert_eq!(data_values(*row), expected, "k = {k}");
        let quoted = row.attribute("class") == Some("quote");
        assert_eq!(quoted, k == 8, "k = {k}");
        assert_eq!(text_of(*row).contains("the figure to quote"), k == 8);
    }
    // Best over k: the maximum of each method's column, labelled as chosen on the test labels.
    let best = by_id("best-over-k");
    assert!(text_of(best).contains("chosen on the test labels"));
    let best_values: Vec<f64> = best.descendants().filter(|n| n.has_tag_name("tr")).filter_map(|r| data_values(r).first().copied().flatten()).collect();
    let expected_best: Vec<f64> = methods
        .iter()
        .map(|m| json["results"].as_array().unwrap().iter().map(|s| s["methods"][m]["accuracy"].as_f64().unwrap()).fold(f64::MIN, f64::max))
        .collect();
    assert_eq!(best_values, expected_best);
    // Recall at the quoted k.
    let quoted = json["results"].as_array().unwrap().iter().find(|s| s["k"] == 8).unwrap();
    for row in by_id("recall").descendants().filter(|n| n.has_tag_name("tr") && n.attribute("data-class").is_some()) {
        let class = row.attribute("data-class").unwrap();
        let mut expected = vec![json["zero_shot"]["recall"][class].as_f64()];
        expected.extend(methods.iter().map(|m| quoted["methods"][m]["recall"][class].as_f64()));
        let images = row.children().find(|n| n.has_tag_name("td")).map(text_of).unwrap();
        assert_eq!(images.parse::<u64>().unwrap(), json["per_class_images"][class].as_u64().unwrap(), "{class}");
        assert_eq!(data_values(row)[1..], expected, "recall of {class}");
    }

    // Every plot the page shows is a file beside it that parses as SVG; a
    // confusion matrix's cells show the counts of eval.json.
    let images: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("img")).map(|n| n.attribute("src").unwrap()).collect();
    assert_eq!(images.len(), 7, "{images:?}");
    for src in images {
        let svg = std::fs::read_to_string(report.join(src)).unwrap_or_else(|e| panic!("{src}: {e}"));
        let svg_doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{src} does not parse: {e}"));
        assert_eq!(svg_doc.root_element().tag_name().name(), "svg", "{src}");
        if let Some(method) = src.strip_prefix("confusion-").and_then(|s| s.strip_suffix(".svg")) {
            let counts: Vec<u64> = svg_doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| text_of(n).trim().parse().ok()).collect();
            let expected: Vec<u64> = json["confusion"][method].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap())).collect();
            assert_eq!(counts, expected, "{src}");
        }
    }

    // stderr is not a terminal here: plain progress lines, no carriage returns.
    let err = stderr(&out);
    assert!(!err.contains('\r'), "{err}");
    for line in ["kpl: encoding images: 7/7", "kpl: reading images: 7/7", "kpl: running the methods over k: 3/3"] {
        assert!(err.lines().any(|l| l == line), "no line {line:?} in:\n{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
