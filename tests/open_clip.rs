//! The open_clip family on every CPU command (embed-image, embed-text,
//! classify, build-kb, classify --kb, fit, eval, pack q8/q4), and its bad
//! input: an architecture not implemented, a missing tensor, a vocabulary
//! larger than the embedding table. Numerical parity with open_clip itself is
//! in tests/parity.rs (one body for every family).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use kpl::models::Family;
use serde_json::Value;

/// The open_clip fixtures (`make_open_clip_fixtures.py`): BiomedCLIP-shaped
/// (timm ViT + BERT, pickle weights), plain open_clip (safetensors), and
/// another timm ViT + BERT configuration (mean pooling on both towers, BERT
/// config.json and a cased vocab.txt-only tokenizer, f32 safetensors).
const OPEN_CLIP_MODELS: [&str; 3] = ["tiny-open-clip-bert", "tiny-open-clip-vit", "tiny-open-clip-mean"];

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn model(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn image(name: &str) -> String {
    fixtures().join("images").join(name).display().to_string()
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("open_clip_reference.json")).unwrap()).unwrap()
}

/// A copy of a fixture folder to break.
fn copy_model(name: &str, tag: &str) -> PathBuf {
    let dir = temp_dir(&format!("open-clip-{tag}"));
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn embed_and_classify_match_open_clip() {
    let reference = reference();
    for name in OPEN_CLIP_MODELS {
        let r = &reference["models"][name];
        let image_ref = r["images"].as_array().unwrap().iter().find(|i| i["file"] == "images/rgb_97x61.png").unwrap();
        let json = stdout_json(&kpl(&["embed-image", "--model", &model(name), &image("rgb_97x61.png")]));
        let ours = floats(&json["embeddings"][0]["embedding"]);
        let cos = cosine(&ours, &floats(&image_ref["embedding"]));
        assert!(cos >= 0.9999, "{name}: embed-image cosine {cos}");

        let text_ref = &r["texts"][0];
        let json = stdout_json(&kpl(&["embed-text", "--model", &model(name), text_ref["text"].as_str().unwrap()]));
        let ours = floats(&json["embeddings"][0]["embedding"]);
        let cos = cosine(&ours, &floats(&text_ref["embedding"]));
        assert!(cos >= 0.9999, "{name}: embed-text cosine {cos}");

        // Zero-shot: open_clip's softmax over exp(logit_scale)·cos, its prompts.
        let case = r["classify"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["file"] == "images/rgb_97x61.png" && c["labels"][0] == "normal")
            .unwrap();
        let labels: Vec<&str> = case["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let out = kpl(&["classify", "--model", &model(name), "--labels", &labels.join(","), &image("rgb_97x61.png")]);
        let json = stdout_json(&out);
        assert!(json["warning"].as_str().unwrap().contains("RANDOM"), "{json}");
        assert!(json["scoring"].as_str().unwrap().contains("softmax"), "{json}");
        let scores: Vec<f32> = labels.iter().map(|l| json["results"][0]["scores"][l].as_f64().unwrap() as f32).collect();
        // The CLI's prompt is the library's ("a photo of a {label}."), open_clip's
        // reference used "a photo of {label}.": compare through the library.
        let pipeline = kpl::model_dir::load_model_dir(&fixtures().join(name)).unwrap();
        let bytes = std::fs::read(image("rgb_97x61.png")).unwrap();
        let embedding = pipeline.embed_image_bytes(&bytes, "rgb_97x61.png").unwrap();
        let prompts: Vec<Vec<f32>> =
            labels.iter().map(|l| pipeline.embed_text(&kpl::pipeline::zero_shot_prompt(l)).unwrap()).collect();
        let expected = pipeline.zero_shot(&embedding, &prompts).unwrap();
        assert!(max_abs_diff(&scores, &expected) <= 1e-6, "{name}: {scores:?} vs {expected:?}");
        assert!((scores.iter().sum::<f32>() - 1.0).abs() <= 1e-5, "{name}: softmax scores sum to {}", scores.iter().sum::<f32>());
    }
}

/// build-kb, classify --kb, fit, eval and pack (q8, q4) on each open_clip fixture.
#[test]
fn knowledge_bases_fit_eval_and_bundles() {
    for name in OPEN_CLIP_MODELS {
        let dir = temp_dir(&format!("open-clip-kb-{name}"));
        let kb = dir.join("pneumonia.kplkb").display().to_string();
        let out = kpl(&["build-kb", "--model", &model(name), "knowledge/chest-xray-pneumonia", "-o", &kb]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));

        let images: Vec<String> = ["rgb_97x61.png", "grey_80x120.png", "rgba_64x48.png", "small_30x40.png"].iter().map(|f| image(f)).collect();
        let model_s = model(name);
        let mut args = vec!["classify", "--model", model_s.as_str(), "--kb", kb.as_str()];
        args.extend(images.iter().map(String::as_str));
        let json = stdout_json(&kpl(&args));
        assert_eq!(json["results"].as_array().unwrap().len(), 4, "{name}");
        assert!(json["zero_shot_scoring"].as_str().unwrap().contains("softmax"), "{name}: {json}");

        let data = dir.join("data");
        for (class, files) in [("NORMAL", ["rgb_97x61.png", "grey_80x120.png"]), ("PNEUMONIA", ["rgba_64x48.png", "small_30x40.png"])] {
            std::fs::create_dir_all(data.join(class)).unwrap();
            for f in files {
                std::fs::copy(fixtures().join("images").join(f), data.join(class).join(f)).unwrap();
            }
        }
        let data_s = data.display().to_string();
        let fitted = dir.join("fitted.kplkb").display().to_string();
        let out = kpl(&["fit", "--model", &model_s, "--kb", &kb, &data_s, "-o", &fitted, "--iters-proxy", "50"]);
        assert!(out.status.success(), "{name}: fit: {}", stderr(&out));
        let cache = dir.join("cache").display().to_string();
        let json = stdout_json(&kpl(&["eval", "--model", &model_s, "--kb", &kb, &data_s, "--k", "2", "--json", "--cache-dir", &cache]));
        assert_eq!(json["images"], 4, "{name}");

        let full = kpl::model_dir::load_model_dir(&fixtures().join(name)).unwrap();
        assert_eq!(full.family(), Family::OpenClip);
        for dtype in ["q8", "q4"] {
            let bundle = dir.join(format!("bundle-{dtype}"));
            let out = kpl(&["pack", "--model", &model_s, "--dtype", dtype, "-o", &bundle.display().to_string()]);
            assert!(out.status.success(), "{name} {dtype}: {}", stderr(&out));
            let packed = kpl::model_dir::load_model_dir(&bundle).unwrap();
            assert_eq!(packed.family(), Family::OpenClip);
            assert!(packed.is_random());
            assert!(packed.model.is_quantized(), "{name} {dtype}: nothing quantised");
            assert_eq!(packed.model.fingerprint().unwrap(), full.model.fingerprint().unwrap());
            assert_eq!(packed.preprocessing, full.preprocessing, "{name} {dtype}");
            for file in ["rgb_97x61.png", "grey_80x120.png"] {
                let bytes = std::fs::read(image(file)).unwrap();
                let a = packed.embed_image_bytes(&bytes, file).unwrap();
                let b = full.embed_image_bytes(&bytes, file).unwrap();
                assert!(cosine(&a, &b) >= 0.99, "{name} {dtype} {file}: cosine {}", cosine(&a, &b));
            }
            for text in ["a photo of a chest x-ray", "Left lower lobe consolidation, likely pneumonia."] {
                let a = packed.embed_text(text).unwrap();
                let b = full.embed_text(text).unwrap();
                assert!(cosine(&a, &b) >= 0.99, "{name} {dtype} {text:?}: cosine {}", cosine(&a, &b));
            }
            // The base built with the full model classifies with the bundle.
            let out = kpl(&["classify", "--model", &bundle.display().to_string(), "--kb", &kb, &images[0], &images[1]]);
            assert!(out.status.success(), "{name} {dtype}: {}", stderr(&out));
        }
    }
}

fn failure(out: &Output) -> String {
    let err = stderr(out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    err
}

/// Edits the copied folder's open_clip_config.json.
fn with_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("open_clip_config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

#[test]
fn architectures_not_implemented_are_errors_naming_the_config() {
    let cases: [(&str, fn(&mut Value), &str); 5] = [
        ("coca", |c| c["model_cfg"]["multimodal_cfg"] = serde_json::json!({"width": 64}), "CoCa"),
        ("resnet", |c| c["model_cfg"]["vision_cfg"]["layers"] = serde_json::json!([3, 4, 6, 3]), "ModifiedResNet"),
        ("layer-scale", |c| c["model_cfg"]["vision_cfg"]["ls_init_value"] = serde_json::json!(1e-5), "ls_init_value"),
        ("longest", |c| c["preprocess_cfg"]["resize_mode"] = serde_json::json!("longest"), "resize_mode"),
        ("roberta", |c| {
            c["model_cfg"]["text_cfg"] = serde_json::json!({"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base"})
        }, "only BERT"),
    ];
    for (tag, edit, expected) in cases {
        let dir = copy_model("tiny-open-clip-vit", tag);
        with_config(&dir, edit);
        let err = failure(&kpl(&["embed-image", "--model", &dir.display().to_string(), &image("rgb_97x61.png")]));
        assert!(err.contains("open_clip_config.json") && err.contains(expected), "{tag}: {err}");
    }
}

#[test]
fn a_missing_tensor_is_an_error_naming_the_weights_and_the_tensor() {
    use candle_core::Device;
    for (missing, tag) in [("visual.ln_post.weight", "ln-post"), ("visual.conv1.weight", "conv1"), ("ln_final.bias", "ln-final")] {
        let dir = copy_model("tiny-open-clip-vit", tag);
        let path = dir.join("open_clip_model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert!(tensors.remove(missing).is_some(), "{missing}");
        candle_core::safetensors::save(&tensors, &path).unwrap();
        let err = failure(&kpl(&["embed-text", "--model", &dir.display().to_string(), "a photo"]));
        assert!(err.contains("open_clip_model.safetensors") && err.contains(missing), "{missing}: {err}");
    }
}

#[test]
fn a_vocabulary_larger_than_the_embedding_table_is_an_error_naming_the_tokenizer() {
    let dir = copy_model("tiny-open-clip-vit", "vocab");
    // The model's table has 49408 rows; a tokenizer with one more token does not belong to it.
    let path = dir.join("tokenizer.json");
    let mut tokenizer: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    tokenizer["added_tokens"].as_array_mut().unwrap().push(serde_json::json!({
        "id": 49408, "content": "<|extra|>", "single_word": false, "lstrip": false, "rstrip": false,
        "normalized": false, "special": true
    }));
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let err = failure(&kpl(&["embed-text", "--model", &dir.display().to_string(), "a photo"]));
    assert!(err.contains("tokenizer.json") && err.contains("vocabulary"), "{err}");
}

#[test]
fn a_bert_tokenizer_of_another_vocabulary_is_an_error_naming_it() {
    // One token more than the BERT table's 224 rows.
    let dir = copy_model("tiny-open-clip-bert", "bert-vocab");
    let path = dir.join("tokenizer.json");
    let mut tokenizer: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    assert_eq!(vocab.len(), 224);
    vocab.insert("pneumothorax".into(), serde_json::json!(224));
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let err = failure(&kpl(&["embed-text", "--model", &dir.display().to_string(), "a photo"]));
    assert!(err.contains("tokenizer.json") && err.contains("another model"), "{err}");
}

#[test]
fn a_pickle_missing_a_tensor_is_an_error_naming_the_file_and_the_tensor() {
    // The same state dict re-saved without one tensor would need torch; instead
    // the config asks for a tower the pickle does not have (open_clip's own ViT).
    let dir = copy_model("tiny-open-clip-bert", "bert-missing");
    with_config(&dir, |c| {
        c["model_cfg"]["vision_cfg"] = serde_json::json!({"image_size": 64, "layers": 2, "width": 128, "patch_size": 16})
    });
    let err = failure(&kpl(&["embed-image", "--model", &dir.display().to_string(), &image("rgb_97x61.png")]));
    assert!(err.contains("open_clip_pytorch_model.bin") && err.contains("visual.conv1.weight"), "{err}");
}

#[test]
fn a_bundle_stores_the_resolved_configuration() {
    let dir = temp_dir("open-clip-resolved");
    let out = kpl(&["pack", "--model", &model("tiny-open-clip-vit"), "--dtype", "q8", "-o", &dir.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = kpl::bundle::EncoderFile::read(&mut std::fs::File::open(dir.join("image_encoder.gguf")).unwrap(), "image_encoder.gguf").unwrap();
    let config: Value = serde_json::from_str(&file.config_json).unwrap();
    let stored = &config["kpl_open_clip"];
    assert_eq!(stored["vision"]["kind"], "open_clip_vit");
    assert_eq!((stored["vision"]["width"].as_u64(), stored["vision"]["heads"].as_u64()), (Some(64), Some(2)));
    assert_eq!(stored["preprocess"]["resize_mode"], "squash");
    // The image encoder alone loads (the page fetches the text encoder later).
    let (image_only, _) = file.model().unwrap();
    assert!(image_only.has_vision() && !image_only.has_text());
    // The raw open_clip_config.json cannot size a model without its tensors.
    let raw = std::fs::read(fixtures().join("tiny-open-clip-vit/open_clip_config.json")).unwrap();
    let err = kpl::models::ModelConfig::from_json(&raw, "open_clip_config.json").unwrap_err().to_string();
    assert!(err.contains("open_clip_config.json") && err.contains("tensors"), "{err}");
}

/// The reference's open_clip ids for `name`'s texts, with the texts.
fn reference_texts(name: &str) -> Vec<(String, Vec<u32>, Vec<f32>)> {
    reference()["models"][name]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ids = t["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
            (t["text"].as_str().unwrap().to_string(), ids, floats(&t["embedding"]))
        })
        .collect()
}

#[test]
fn a_vocab_txt_only_folder_embeds_text_and_packs() {
    // As BiomedCLIP-style repositories ship the tokenizer: vocab.txt and
    // tokenizer_config.json (do_lower_case), no tokenizer.json.
    let dir = copy_model("tiny-open-clip-bert", "vocab-only");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::remove_file(dir.join("special_tokens_map.json")).unwrap();
    let dir_s = dir.display().to_string();
    let texts = reference_texts("tiny-open-clip-bert");
    assert!(texts.len() >= 30);
    let pipeline = kpl::model_dir::load_model_dir(&dir).unwrap();
    for (text, ids, _) in &texts {
        assert_eq!(&pipeline.tokenizer().unwrap().encode(text).unwrap(), ids, "{text:?}");
    }
    let (text, _, embedding) = &texts[1];
    let json = stdout_json(&kpl(&["embed-text", "--model", &dir_s, text]));
    let cos = cosine(&floats(&json["embeddings"][0]["embedding"]), embedding);
    assert!(cos >= 0.9999, "embed-text cosine {cos}");
    let kb = temp_dir("open-clip-vocab-kb").join("p.kplkb").display().to_string();
    let out = kpl(&["build-kb", "--model", &dir_s, "knowledge/chest-xray-pneumonia", "-o", &kb]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The bundle carries vocab.txt and tokenizer_config.json for the page's tokenizer.
    let bundle = temp_dir("open-clip-vocab-bundle");
    let out = kpl(&["pack", "--model", &dir_s, "--dtype", "q8", "-o", &bundle.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text_file = kpl::bundle::EncoderFile::read(&mut std::fs::File::open(bundle.join("text_encoder.gguf")).unwrap(), "text_encoder.gguf").unwrap();
    assert!(matches!(text_file.tokenizer, Some(kpl::tokenizer::TokenizerFiles::WordPiece { config: Some(_), .. })));
    let packed = kpl::model_dir::load_model_dir(&bundle).unwrap();
    for (text, ids, _) in &texts {
        assert_eq!(&packed.tokenizer().unwrap().encode(text).unwrap(), ids, "bundle: {text:?}");
    }
    let out = kpl(&["classify", "--model", &bundle.display().to_string(), "--kb", &kb, &image("rgb_97x61.png")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn tokenizer_kwargs_reach_the_tokenizer_and_unknown_ones_are_errors_naming_the_config() {
    let dir = copy_model("tiny-open-clip-bert", "kwargs");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let lower = kpl::model_dir::load_model_dir(&dir).unwrap().tokenizer().unwrap().encode("CHEST X RAY").unwrap();
    with_config(&dir, |c| c["model_cfg"]["text_cfg"]["tokenizer_kwargs"] = serde_json::json!({"do_lower_case": false}));
    let cased = kpl::model_dir::load_model_dir(&dir).unwrap().tokenizer().unwrap().encode("CHEST X RAY").unwrap();
    assert_ne!(lower, cased, "do_lower_case false keeps the capitals (not in the lower-case vocabulary)");
    with_config(&dir, |c| c["model_cfg"]["text_cfg"]["tokenizer_kwargs"] = serde_json::json!({"do_lower_case": false, "clean": "lower"}));
    let cleaned = kpl::model_dir::load_model_dir(&dir).unwrap().tokenizer().unwrap().encode("CHEST X RAY").unwrap();
    assert_eq!(lower, cleaned, "open_clip's `lower` clean-up lower-cases before the tokenizer");

    let cases: [(&str, fn(&mut Value), &str); 4] = [
        ("kw-language", |c| c["model_cfg"]["text_cfg"]["tokenizer_kwargs"] = serde_json::json!({"language": "en"}), "tokenizer_kwargs.language"),
        ("kw-clean", |c| c["model_cfg"]["text_cfg"]["tokenizer_kwargs"] = serde_json::json!({"clean": "ftfy"}), "tokenizer_kwargs.clean"),
        ("kw-no-name", |c| {
            c["model_cfg"]["text_cfg"].as_object_mut().unwrap().remove("hf_tokenizer_name");
        }, "hf_tokenizer_name"),
        ("kw-bpe", |c| c["model_cfg"]["text_cfg"]["tokenizer_kwargs"] = serde_json::json!({"reduction_mask": "simple"}), "reduction_mask"),
    ];
    for (tag, edit, expected) in cases {
        let model = if tag == "kw-bpe" { "tiny-open-clip-vit" } else { "tiny-open-clip-bert" };
        let dir = copy_model(model, tag);
        with_config(&dir, edit);
        let err = failure(&kpl(&["embed-text", "--model", &dir.display().to_string(), "a photo"]));
        assert!(err.contains("open_clip_config.json") && err.contains(expected), "{tag}: {err}");
    }
}
