//! Bundles made by `kpl pack`: hash checks that name the file, format versions,
//! knowledge bases that stay valid, towers loaded separately, and the CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use kpl::bundle::pack::{pack_model_dir, PackOptions};
use kpl::bundle::{self, EncoderFile, Manifest, PackDtype};
use kpl::knowledge::base::KnowledgeBase;
use kpl::model_dir::load_model_dir;

const MODEL: &str = "tiny-quickgelu-f32";
const TASK: &str = "chest-xray-pneumonia";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kpl-bundle-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn knowledge_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("knowledge").join(TASK)
}

fn pack(tag: &str, dtype: PackDtype, knowledge: bool) -> PathBuf {
    let out = temp_dir(tag);
    let options = PackOptions { dtype, knowledge: if knowledge { vec![knowledge_dir()] } else { vec![] }, name: None };
    pack_model_dir(&fixtures().join(MODEL), &out, &options, &mut |_| {}).unwrap();
    out
}

fn copy_dir(from: &Path, tag: &str) -> PathBuf {
    let to = temp_dir(tag);
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

fn load_error(dir: &Path) -> String {
    match load_model_dir(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn png_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("images").join("grey16_70x90.png")).unwrap()
}

#[test]
fn altered_or_truncated_files_fail_naming_the_file() {
    let good = pack("hash", PackDtype::Q8, false);
    bundle::verify_bundle_dir(&good).unwrap();
    load_model_dir(&good).unwrap();

    let truncated = copy_dir(&good, "truncated");
    let path = truncated.join("image_encoder.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let message = load_error(&truncated);
    assert!(message.contains("image_encoder.gguf") && message.contains("altered or truncated"), "{message}");

    let altered = copy_dir(&good, "altered");
    let path = altered.join("image_encoder.gguf");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let message = load_error(&altered);
    assert!(message.contains("image_encoder.gguf") && message.contains("altered or truncated"), "{message}");

    let altered_text = copy_dir(&good, "altered-text");
    let path = altered_text.join("text_encoder.gguf");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    let message = load_error(&altered_text);
    assert!(message.contains("text_encoder.gguf") && message.contains("altered or truncated"), "{message}");

    let missing = copy_dir(&good, "missing");
    std::fs::remove_file(missing.join("text_encoder.gguf")).unwrap();
    let message = load_error(&missing);
    assert!(message.contains("text_encoder.gguf") && message.contains("missing"), "{message}");

    for dir in [good, truncated, altered, altered_text, missing] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn newer_format_version_is_a_clear_error() {
    let good = pack("version", PackDtype::Q4, false);
    let newer = copy_dir(&good, "version-99");
    let manifest_path = newer.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["format_version"] = 99.into();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let message = load_error(&newer);
    assert!(
        message.contains("manifest.json") && message.contains("format version 99") && message.contains("newer"),
        "{message}"
    );
    // A manifest that is not one says so.
    std::fs::write(&manifest_path, b"{\"hello\": 1}").unwrap();
    let message = load_error(&newer);
    assert!(message.contains("manifest.json") && message.contains("format_version"), "{message}");
    std::fs::remove_dir_all(good).unwrap();
    std::fs::remove_dir_all(newer).unwrap();
}

#[test]
fn packed_knowledge_base_matches_the_bundle_and_the_source_model() {
    let out = pack("knowledge", PackDtype::Q8, true);
    let manifest = bundle::verify_bundle_dir(&out).unwrap();
    assert_eq!(manifest.format_version, 1);
    assert_eq!(manifest.model.dtype, PackDtype::Q8);
    assert!(manifest.model.random_weights);
    assert_eq!(manifest.knowledge.len(), 1);
    let entry = &manifest.knowledge[0];
    assert_eq!(entry.task, TASK);
    assert_eq!(entry.file.path, format!("{TASK}.kplkb"));

    let source = load_model_dir(&fixtures().join(MODEL)).unwrap();
    let packed = load_model_dir(&out).unwrap();
    let fingerprint = packed.model.fingerprint().unwrap();
    assert_eq!(fingerprint, source.model.fingerprint().unwrap());
    assert_eq!(fingerprint, manifest.model.fingerprint);

    let name = out.join(&entry.file.path).display().to_string();
    let base = KnowledgeBase::from_bytes(&std::fs::read(out.join(&entry.file.path)).unwrap(), &name).unwrap();
    assert_eq!(base.class_names(), entry.classes);
    base.check_model(&fingerprint, kpl::models::Family::Clip, &name, "the bundle").unwrap();
    // Classifying with the bundle and its base works end to end.
    let image = packed.embed_image_bytes(&png_bytes(), "grey16_70x90.png").unwrap();
    let results = kpl::classifier::classify_embeddings(
        &base,
        &[image],
        &kpl_core::KplParams::default(),
        packed.model.logit_scale_exp(),
        packed.model.scoring(),
        3,
    )
    .unwrap();
    assert_eq!(results.len(), 1);
    std::fs::remove_dir_all(out).unwrap();
}

#[test]
fn towers_load_separately() {
    let out = pack("towers", PackDtype::Q8, false);
    let manifest_path = out.join("manifest.json");
    let manifest = Manifest::from_json(&std::fs::read(&manifest_path).unwrap(), "manifest.json").unwrap();
    let read = |entry: &bundle::FileEntry| {
        let path = out.join(&entry.path);
        let mut reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        EncoderFile::read_verified(&mut reader, &entry.path, entry).unwrap()
    };
    let full = load_model_dir(&out).unwrap();

    // The page downloads the image encoder alone...
    let image = read(manifest.files.image_encoder.as_ref().unwrap());
    let mut pipeline = bundle::load_pipeline(&manifest, "bundle", Some(image), None).unwrap();
    assert!(pipeline.model.has_vision() && !pipeline.model.has_text());
    let embedding = pipeline.embed_image_bytes(&png_bytes(), "grey16_70x90.png").unwrap();
    assert_eq!(embedding, full.embed_image_bytes(&png_bytes(), "grey16_70x90.png").unwrap());
    assert_eq!(pipeline.model.fingerprint().unwrap(), manifest.model.fingerprint);
    let message = pipeline.embed_text("a cat").unwrap_err().to_string();
    assert!(message.contains("no text encoder"), "{message}");

    // ...and fetches the text encoder for custom labels.
    let text = read(manifest.files.text_encoder.as_ref().unwrap());
    bundle::attach_text_encoder(&mut pipeline, &manifest, text).unwrap();
    assert_eq!(pipeline.embed_text("a cat").unwrap(), full.embed_text("a cat").unwrap());

    // A text-only model cannot embed images, and says so.
    let text = read(manifest.files.text_encoder.as_ref().unwrap());
    let text_only = bundle::load_pipeline(&manifest, "bundle", None, Some(text)).unwrap();
    let pixels = full.prepare_image(&png_bytes(), "grey16_70x90.png").unwrap();
    let message = text_only.embed_pixels(&[pixels], true).unwrap_err().to_string();
    assert!(message.contains("image encoder"), "{message}");

    // An encoder of another model is refused even with a consistent hash.
    let other = temp_dir("towers-other");
    let options = PackOptions { dtype: PackDtype::Q8, knowledge: vec![], name: None };
    let other_manifest = pack_model_dir(&fixtures().join("tiny-gelu-f16"), &other, &options, &mut |_| {}).unwrap();
    let entry = other_manifest.files.text_encoder.as_ref().unwrap();
    let mut reader = std::io::BufReader::new(std::fs::File::open(other.join(&entry.path)).unwrap());
    let foreign = EncoderFile::read_verified(&mut reader, &entry.path, entry).unwrap();
    let image = read(manifest.files.image_encoder.as_ref().unwrap());
    let message = bundle::load_pipeline(&manifest, "bundle", Some(image), Some(foreign)).err().unwrap().to_string();
    assert!(message.contains("another model"), "{message}");
    std::fs::remove_dir_all(out).unwrap();
    std::fs::remove_dir_all(other).unwrap();
}

#[test]
fn cli_pack_then_every_command_takes_the_bundle() {
    let out = temp_dir("cli");
    let bundle_dir = out.join("bundle");
    let kpl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kpl")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
    };
    let model = fixtures().join(MODEL).display().to_string();
    let packed = kpl(&[
        "pack",
        "--model",
        &model,
        "--dtype",
        "q4",
        "--knowledge",
        &knowledge_dir().display().to_string(),
        "-o",
        &bundle_dir.display().to_string(),
    ]);
    assert!(packed.status.success(), "{}", String::from_utf8_lossy(&packed.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&packed.stdout).unwrap();
    assert_eq!(manifest["model"]["dtype"], "q4");
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest, on_disk);
    let b = bundle_dir.display().to_string();
    let image = fixtures().join("images").join("grey16_70x90.png").display().to_string();

    let embed = kpl(&["embed-image", "--model", &b, &image]);
    assert!(embed.status.success(), "{}", String::from_utf8_lossy(&embed.stderr));
    let text = kpl(&["embed-text", "--model", &b, "a photo of a cat."]);
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let kb = bundle_dir.join(format!("{TASK}.kplkb")).display().to_string();
    let classify = kpl(&["classify", "--model", &b, "--kb", &kb, &image]);
    assert!(classify.status.success(), "{}", String::from_utf8_lossy(&classify.stderr));
    let zero_shot = kpl(&["classify", "--model", &b, "--labels", "cat,dog", &image]);
    assert!(zero_shot.status.success(), "{}", String::from_utf8_lossy(&zero_shot.stderr));

    // Packing a bundle again is refused with a reason.
    let again = kpl(&["pack", "--model", &b, "--dtype", "q8", "-o", &out.join("again").display().to_string()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already a bundle"));

    // A truncated encoder fails the command with the file's name.
    let path = bundle_dir.join("image_encoder.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let broken = kpl(&["embed-image", "--model", &b, &image]);
    assert_eq!(broken.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("image_encoder.gguf") && stderr.contains("altered or truncated"), "{stderr}");
    std::fs::remove_dir_all(out).unwrap();
}
