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
