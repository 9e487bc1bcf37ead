//! SigLIP as a family: the published configurations load with `transformers`'
//! sizes and defaults, bad input is a clear error naming the file, and the CLI
//! paths work on the fixture models (parity itself is `tests/parity.rs`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use kpl::models::{Family, ModelConfig};
use serde_json::Value;

fn config(path: &Path) -> ModelConfig {
    let bytes = std::fs::read(path).unwrap();
    ModelConfig::from_json(&bytes, &path.display().to_string()).unwrap()
}

fn siglip(config: &ModelConfig) -> &kpl::models::siglip::SiglipConfig {
    match config {
        ModelConfig::Siglip(c) => c,
        other => panic!("not SigLIP: {other:?}"),
    }
}

/// The `config.json` files `transformers` writes for the published SigLIP
/// checkpoints (`tests/fixtures/siglip-configs/`, from the fixture script).
#[test]
fn published_configurations_load_with_their_sizes() {
    // (folder, image size, patch, width, layers, heads, mlp, text positions, embedding)
    let cases = [
        ("google--medsiglip-448", 448, 14, 1152, 27, 16, 4304, 64, 1152),
        ("google--siglip-base-patch16-224", 224, 16, 768, 12, 12, 3072, 64, 768),
        ("google--siglip-so400m-patch14-384", 384, 14, 1152, 27, 16, 4304, 64, 1152),
    ];
    for (folder, image, patch, width, layers, heads, mlp, positions, dim) in cases {
        let parsed = config(&fixtures().join("siglip-configs").join(folder).join("config.json"));
        assert_eq!(parsed.family(), Family::Siglip, "{folder}");
        let c = siglip(&parsed);
        let v = &c.vision_config;
        assert_eq!(
            (v.image_size, v.patch_size, v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.intermediate_size),
            (image, patch, width, layers, heads, mlp),
            "{folder}"
        );
        assert_eq!((parsed.max_text_positions(), parsed.embedding_dim(), parsed.vocab_size()), (positions, dim, 32000), "{folder}");
        assert_eq!(c.text_config.hidden_act, kpl::nn::Activation::GeluTanh, "{folder}");
    }
}

/// google/siglip-base-patch16-224's published config.json leaves out what
/// equals `transformers`' defaults (its text config has no depth); it must
/// parse to what `transformers` expands it to.
#[test]
fn sparse_published_config_takes_transformers_defaults() {
    let sparse = r#"{
      "architectures": ["SiglipModel"], "initializer_factor": 1.0, "model_type": "siglip",
      "text_config": {"hidden_size": 768, "intermediate_size": 3072, "model_type": "siglip_text_model",
                      "num_attention_heads": 12, "vocab_size": 32000},
      "torch_dtype": "float32", "transformers_version": "4.37.0.dev0",
      "vision_config": {"hidden_size": 768, "image_size": 224, "intermediate_size": 3072,
                        "model_type": "siglip_vision_model", "num_attention_heads": 12,
                        "num_hidden_layers": 12, "patch_size": 16}
    }"#;
    let parsed = ModelConfig::from_json(sparse.as_bytes(), "config.json").unwrap();
    let full = config(&fixtures().join("siglip-configs/google--siglip-base-patch16-224/config.json"));
    let (a, b) = (siglip(&parsed), siglip(&full));
    assert_eq!(a.vision_config, b.vision_config);
    assert_eq!(a.text_config.num_hidden_layers, b.text_config.num_hidden_layers);
    assert_eq!(a.text_config.max_position_embeddings, b.text_config.max_position_embeddings);
    assert_eq!(a.text_config.layer_norm_eps, b.text_config.layer_norm_eps);
    assert_eq!(a.projection_size(), b.projection_size());
}

#[test]
fn bad_configs_are_errors_naming_the_file() {
    let full = std::fs::read_to_string(fixtures().join("tiny-siglip-a/config.json")).unwrap();
    let mut json: Value = serde_json::from_str(&full).unwrap();
    json.as_object_mut().unwrap().remove("vision_config");
    let err = ModelConfig::from_json(json.to_string().as_bytes(), "models/x/config.json").unwrap_err().to_string();
    assert!(err.contains("models/x/config.json") && err.contains("vision_config"), "{err}");

    let mut json: Value = serde_json::from_str(&full).unwrap();
    json["model_type"] = "blip".into();
    let err = ModelConfig::from_json(json.to_string().as_bytes(), "models/y/config.json").unwrap_err().to_string();
    assert!(err.contains("models/y/config.json") && err.contains("\"blip\""), "{err}");

    let mut json: Value = serde_json::from_str(&full).unwrap();
    json["text_config"]["projection_size"] = 40.into();
    let err = ModelConfig::from_json(json.to_string().as_bytes(), "models/z/config.json").unwrap_err().to_string();
    assert!(err.contains("models/z/config.json") && err.contains("projection_size"), "{err}");
}

fn kpl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kpl")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kpl-siglip-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn model(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn image(name: &str) -> String {
    fixtures().join("images").join(name).display().to_string()
}

#[test]
fn a_tokenizer_of_another_vocabulary_is_an_error_naming_it() {
    let dir = temp_dir("vocab");
    for name in ["config.json", "model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(fixtures().join("tiny-siglip-a").join(name), dir.join(name)).unwrap();
    }
    // CLIP's 49408-token vocabulary in a 700-token model.
    std::fs::copy(fixtures().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let out = kpl(&["embed-text", "--model", &dir.display().to_string(), "a photo"]);
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("tokenizer.json") && err.contains("vocabulary"), "{err}");
}

#[test]
fn classify_gives_a_sigmoid_probability_per_label() {
    let out = kpl(&["classify", "--model", &model("tiny-siglip-a"), "--labels", "normal,pneumonia,tuberculosis", &image("rgb_97x61.png")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["scoring"].as_str().unwrap().contains("need not sum to 1"), "{json}");
    assert!(json["warning"].as_str().unwrap().contains("RANDOM"));
    let result = &json["results"][0];
    assert_eq!(result["method"], "siglip");
    // The library's zero-shot on the same prompts (its parts are checked
    // against transformers in tests/parity.rs), each label scored on its own.
    let pipeline = kpl::model_dir::load_model_dir(&fixtures().join("tiny-siglip-a")).unwrap();
    let labels = ["normal", "pneumonia", "tuberculosis"];
    let bytes = std::fs::read(image("rgb_97x61.png")).unwrap();
    let embedding = pipeline.embed_image_bytes(&bytes, "rgb_97x61.png").unwrap();
    let prompts: Vec<Vec<f32>> =
        labels.iter().map(|l| pipeline.embed_text(&kpl::pipeline::zero_shot_prompt(l)).unwrap()).collect();
    let expected = pipeline.zero_shot(&embedding, &prompts).unwrap();
    let ours: Vec<f32> = labels.iter().map(|l| result["scores"][l].as_f64().unwrap() as f32).collect();
    assert!(max_abs_diff(&ours, &expected) <= 1e-6, "{ours:?} vs {expected:?}");
    let alone = pipeline.zero_shot(&embedding, &prompts[..1]).unwrap();
    assert!((alone[0] - expected[0]).abs() <= 1e-7, "a label's probability depends on the others");
    assert!((ours.iter().sum::<f32>() - 1.0).abs() > 1e-3, "sigmoid scores happen to sum to 1: {ours:?}");
}

/// build-kb, classify --kb and pack on a SigLIP model; a CLIP-built base used
/// with it is an error naming the base.
#[test]
fn knowledge_bases_and_bundles_follow_the_family() {
    let dir = temp_dir("kb");
    let task = Path::new(env!("CARGO_MANIFEST_DIR")).join("knowledge/chest-xray-pneumonia").display().to_string();
    let siglip_kb = dir.join("siglip.kplkb").display().to_string();
    let out = kpl(&["build-kb", "--model", &model("tiny-siglip-a"), &task, "-o", &siglip_kb]);
    assert!(out.status.success(), "{}", stderr(&out));
    let images = [image("rgb_97x61.png"), image("grey_80x120.png")];
    let out = kpl(&["classify", "--model", &model("tiny-siglip-a"), "--kb", &siglip_kb, &images[0], &images[1]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 2);
    assert!(json["zero_shot_scoring"].as_str().unwrap().contains("sigmoid"));

    let clip_kb = dir.join("clip.kplkb").display().to_string();
    let out = kpl(&["build-kb", "--model", &model("tiny-quickgelu-f32"), &task, "-o", &clip_kb]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kpl(&["classify", "--model", &model("tiny-siglip-a"), "--kb", &clip_kb, &images[0]]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("clip.kplkb") && err.contains("CLIP model"), "{err}");
    assert!(err.contains("SigLIP model"), "the error names both families: {err}");

    for dtype in ["q8", "q4"] {
        let bundle = dir.join(format!("bundle-{dtype}"));
        let out = kpl(&["pack", "--model", &model("tiny-siglip-a"), "--dtype", dtype, "-o", &bundle.display().to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let packed = kpl::model_dir::load_model_dir(&bundle).unwrap();
        let full = kpl::model_dir::load_model_dir(&fixtures().join("tiny-siglip-a")).unwrap();
        assert_eq!(packed.family(), Family::Siglip);
        assert_eq!(packed.model.fingerprint().unwrap(), full.model.fingerprint().unwrap());
        let bytes = std::fs::read(image("rgb_97x61.png")).unwrap();
        let a = packed.embed_image_bytes(&bytes, "rgb_97x61.png").unwrap();
        let b = full.embed_image_bytes(&bytes, "rgb_97x61.png").unwrap();
        assert!(cosine(&a, &b) >= 0.99, "{dtype}: cosine {}", cosine(&a, &b));
        let a = packed.embed_text("a photo of a chest x-ray").unwrap();
        let b = full.embed_text("a photo of a chest x-ray").unwrap();
        assert!(cosine(&a, &b) >= 0.99, "{dtype}: text cosine {}", cosine(&a, &b));
    }
}

/// A copy of a fixture folder with some files left out, to alter.
fn copy_fixture(name: &str, tag: &str, skip: &[&str]) -> PathBuf {
    let dir = temp_dir(tag);
    for entry in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        if !skip.contains(&file.as_str()) {
            std::fs::copy(&path, dir.join(&file)).unwrap();
        }
    }
    dir
}

fn reference_text(model: &str, text: &str) -> Vec<f32> {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("siglip_reference.json")).unwrap()).unwrap();
    let entry = reference["models"][model]["texts"].as_array().unwrap().iter().find(|t| t["text"] == text).unwrap();
    floats(&entry["embedding"])
}

/// tiny-siglip-b ships only spiece.model (+ tokenizer_config.json): the CLI
/// reads it with the pure-Rust SentencePiece and embeds as transformers does.
#[test]
fn a_spiece_only_folder_embeds_text_through_the_cli() {
    assert!(!fixtures().join("tiny-siglip-b/tokenizer.json").exists());
    let texts = ["pneumonia", "Left lower lobe consolidation, likely pneumonia."];
    let out = kpl(&["embed-text", "--model", &model("tiny-siglip-b"), "--", texts[0], texts[1]]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let ours = floats(&json["embeddings"][i]["embedding"]);
        let theirs = reference_text("tiny-siglip-b", text);
        assert!(max_abs_diff(&ours, &theirs) <= 1e-4, "{text}: {}", max_abs_diff(&ours, &theirs));
    }
}

#[test]
fn a_config_missing_a_field_is_an_error_naming_the_file_and_the_field() {
    for field in ["text_config", "vision_config"] {
        let dir = copy_fixture("tiny-siglip-b", &format!("nofield-{field}"), &["config.json"]);
        let mut json: Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny-siglip-b/config.json")).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove(field);
        std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
        let out = kpl(&["embed-image", "--model", &dir.display().to_string(), &image("rgb_97x61.png")]);
        let err = stderr(&out);
        assert!(!out.status.success() && !err.contains("panicked"), "{err}");
        assert!(err.contains(&dir.join("config.json").display().to_string()) && err.contains(field), "{err}");
    }
}

/// Both directions of a tokenizer that does not fit the model's token
/// embedding table: more tokens than rows, and a pad id past the last row.
#[test]
fn a_tokenizer_that_does_not_fit_the_embedding_table_is_an_error_naming_it() {
    use kpl::tokenizer::{TextTokenizer, TokenizerFiles};
    // tiny-siglip-b's 600-piece spiece.model for a 500-row table.
    let spiece = std::fs::read(fixtures().join("tiny-siglip-b/spiece.model")).unwrap();
    let files = TokenizerFiles::SentencePiece { model: ("x/spiece.model".into(), spiece.clone()), config: None };
    let err = TextTokenizer::load(&files, Family::Siglip, 16, 500).err().expect("too large").to_string();
    assert!(err.starts_with("x/spiece.model: ") && err.contains("600") && err.contains("500"), "{err}");
    assert!(TextTokenizer::load(&files, Family::Siglip, 16, 600).is_ok());
    // SentencePiece is not CLIP's tokenizer.
    let err = TextTokenizer::load(&files, Family::Clip, 77, 49408).err().expect("CLIP").to_string();
    assert!(err.starts_with("x/spiece.model: ") && err.contains("CLIP"), "{err}");

    // tiny-siglip-a's tokenizer.json padding with an id past its 700 rows (without
    // its tokenizer_config.json, whose pad_token would take precedence, as in transformers).
    let dir = copy_fixture("tiny-siglip-a", "padid", &["tokenizer.json", "tokenizer_config.json"]);
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny-siglip-a/tokenizer.json")).unwrap()).unwrap();
    json["padding"] = serde_json::json!({
        "strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 5000, "pad_type_id": 0, "pad_token": "<pad>"
    });
    std::fs::write(dir.join("tokenizer.json"), json.to_string()).unwrap();
    let out = kpl(&["embed-text", "--model", &dir.display().to_string(), "a photo"]);
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains(&dir.join("tokenizer.json").display().to_string()) && err.contains("pad id 5000"), "{err}");

    // An added token (tokenizer_config.json) whose id is past tiny-siglip-b's 600 rows.
    let dir = copy_fixture("tiny-siglip-b", "addedid", &["tokenizer_config.json"]);
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("tiny-siglip-b/tokenizer_config.json")).unwrap())
            .unwrap();
    config["added_tokens_decoder"]["900"] = serde_json::json!({"content": "<extra>", "special": true});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let out = kpl(&["embed-text", "--model", &dir.display().to_string(), "a photo"]);
    let err = stderr(&out);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("spiece.model") && err.contains("901") && err.contains("600"), "{err}");
}

/// `kpl eval` and `kpl fit` run KPL with the family's pseudo-label
/// temperature: SigLIP's own scale 1/exp(logit_scale) (0.1 for tiny-siglip-a,
/// whose logit_scale transformers recorded as ln 10), CLIP's reference 0.01.
#[test]
fn eval_and_fit_use_the_familys_kpl_parameters() {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("siglip_reference.json")).unwrap()).unwrap();
    let siglip_tau = (-reference["models"]["tiny-siglip-a"]["logit_scale"].as_f64().unwrap()).exp();
    assert!((siglip_tau - 0.1).abs() < 1e-6);
    let dir = temp_dir("eval");
    let data = dir.join("data");
    for (class, files) in [("NORMAL", ["rgb_97x61.png", "grey_80x120.png"]), ("PNEUMONIA", ["rgba_64x48.png", "small_30x40.png"])] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for f in files {
            std::fs::copy(fixtures().join("images").join(f), data.join(class).join(f)).unwrap();
        }
    }
    let task = Path::new(env!("CARGO_MANIFEST_DIR")).join("knowledge/chest-xray-pneumonia").display().to_string();
    let data_s = data.display().to_string();
    for (name, expected) in [("tiny-siglip-a", siglip_tau), ("tiny-quickgelu-f32", 0.01)] {
        let kb = dir.join(format!("{name}.kplkb")).display().to_string();
        let out = kpl(&["build-kb", "--model", &model(name), &task, "-o", &kb]);
        assert!(out.status.success(), "{}", stderr(&out));
        let cache = dir.join("cache").display().to_string();
        let out = kpl(&[
            "eval", "--model", &model(name), "--kb", &kb, &data_s, "--k", "2", "--json", "--iters-proxy", "20",
            "--cache-dir", &cache,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let tau = json["tau_t"].as_f64().unwrap();
        assert!((tau - expected).abs() < 1e-6, "{name}: eval ran with tau_t {tau}, expected {expected}");

        let fitted = dir.join(format!("{name}-fit.kplkb"));
        let out = kpl(&["fit", "--model", &model(name), "--kb", &kb, &data_s, "-o", &fitted.display().to_string(), "--iters-proxy", "20"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let base = kpl::knowledge::base::KnowledgeBase::from_bytes(&std::fs::read(&fitted).unwrap(), "fit").unwrap();
        let tau = base.proxies.as_ref().unwrap().1.params["tau_t"].as_f64().unwrap();
        assert!((tau - expected).abs() < 1e-6, "{name}: fit ran with tau_t {tau}, expected {expected}");
    }
}

/// A bundle of a spiece-only folder carries spiece.model and
/// tokenizer_config.json as shipped: the bundle tokenizes exactly as the folder
/// and (f32) embeds text identically.
#[test]
fn a_bundle_carries_the_spiece_tokenizer() {
    let dir = temp_dir("spiece-pack");
    let full = kpl::model_dir::load_model_dir(&fixtures().join("tiny-siglip-b")).unwrap();
    for dtype in ["f32", "q8"] {
        let bundle = dir.join(dtype);
        let out = kpl(&["pack", "--model", &model("tiny-siglip-b"), "--dtype", dtype, "-o", &bundle.display().to_string()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let packed = kpl::model_dir::load_model_dir(&bundle).unwrap();
        assert!(matches!(packed.tokenizer().unwrap(), kpl::tokenizer::TextTokenizer::SentencePiece(_)));
        for text in ["pneumonia", "BP 140/90 mmHg, T 38.5°C, SpO2 91%", "肺炎 胸部X光"] {
            assert_eq!(
                packed.tokenizer().unwrap().encode_with_length(text).unwrap(),
                full.tokenizer().unwrap().encode_with_length(text).unwrap(),
                "{text}"
            );
            let (a, b) = (packed.embed_text(text).unwrap(), full.embed_text(text).unwrap());
            if dtype == "f32" {
                assert!(max_abs_diff(&a, &b) <= 1e-6, "{text}: {}", max_abs_diff(&a, &b));
            } else {
                assert!(cosine(&a, &b) >= 0.99, "{text}: q8 cosine {}", cosine(&a, &b));
            }
        }
    }
}
