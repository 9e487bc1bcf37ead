//! Shared helpers for the integration tests: the committed reference outputs of
//! `tests/fixtures/make_fixtures.py` (computed with `transformers`).
#![allow(dead_code)]

pub mod gemm_data;

use std::path::{Path, PathBuf};

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use kpl::testing::clip::RandomClipConfig;
use kpl::testing::siglip::RandomSiglipConfig;
use kpl::testing::TensorSpec;
use kpl::models::{Model, ModelConfig, Towers};
use serde_json::Value;

pub const MODELS: [&str; 2] = ["tiny-quickgelu-f32", "tiny-gelu-f16"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("valid reference.json")
}

/// The token ids of every reference text of a fixture model.
pub fn reference_text_ids(reference: &Value, model: &str) -> Vec<Vec<u32>> {
    reference["models"][model]["texts"]
        .as_array()
        .expect("reference texts")
        .iter()
        .map(|t| t["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id") as u32).collect())
        .collect()
}

pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "embedding lengths differ");
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb)) as f32
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Two different 224×224 inputs (already normalised): smooth gradients with a
/// disc, and high-frequency stripes and checks.
pub fn test_images(size: usize) -> Tensor {
    let mut data = Vec::with_capacity(2 * 3 * size * size);
    for image in 0..2 {
        for c in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
                    let v = if image == 0 {
                        let disc = if (fx - 0.4).powi(2) + (fy - 0.6).powi(2) < 0.05 { 1.0 } else { 0.0 };
                        2.0 * fx - 1.0 + (c as f32 - 1.0) * (fy - 0.5) + disc
                    } else {
                        let checks = if (x / 8 + y / 8) % 2 == 0 { 1.0 } else { -1.0 };
                        checks * 0.8 + ((x * (c + 1)) as f32 * 0.3).sin()
                    };
                    data.push(v);
                }
            }
        }
    }
    Tensor::from_vec(data, (2, 3, size, size), &Device::Cpu).unwrap()
}

pub fn normalized_rows(t: &Tensor) -> Vec<Vec<f32>> {
    let rows = t.to_vec2::<f32>().unwrap();
    rows.into_iter()
        .map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            r.into_iter().map(|v| v / n).collect()
        })
        .collect()
}

/// The tensors of `specs` whose names start with one of `keep`, filled for
/// this seed and std (f32).
pub fn random_tensors(specs: Vec<TensorSpec>, keep: &[&str], seed: u64, std: f32) -> HashMap<String, Tensor> {
    specs
        .into_iter()
        .filter(|s| keep.iter().any(|k| s.name.starts_with(k)))
        .map(|s| {
            let t = Tensor::from_vec(s.values(seed, std), s.shape.clone(), &Device::Cpu).unwrap();
            (s.name, t)
        })
        .collect()
}

/// The image tower of a full-size random ViT-B/16 (weights normal(0, std)):
/// its config.json text, the parsed config and the tensors by name.
pub fn random_vit_b16_image_tower(std: f32, seed: u64) -> (String, ModelConfig, HashMap<String, Tensor>) {
    let mut random = RandomClipConfig::vit_b16();
    random.std = std;
    random.tokenizer = None;
    let config_json = serde_json::to_string(&random.config_json(seed)).unwrap();
    let config = ModelConfig::from_json(config_json.as_bytes(), "random config").unwrap();
    let tensors = random_tensors(random.tensors(), &["logit_scale", "vision_model.", "visual_projection."], seed, std);
    (config_json, config, tensors)
}

/// The image tower of a full-size random google/medsiglip-448 (weights
/// normal(0, std)): its config.json text, the parsed config and the tensors.
pub fn random_medsiglip_448_image_tower(std: f32, seed: u64) -> (String, ModelConfig, HashMap<String, Tensor>) {
    let random = RandomSiglipConfig { std, ..RandomSiglipConfig::medsiglip_448() };
    let config_json = serde_json::to_string(&random.config_json(seed)).unwrap();
    let config = ModelConfig::from_json(config_json.as_bytes(), "random config").unwrap();
    let tensors = random_tensors(random.tensors(), &["logit_", "vision_model."], seed, std);
    (config_json, config, tensors)
}

/// A vision-only model over `tensors` (f32).
pub fn image_tower_model(config: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Model {
    let vb = VarBuilder::from_tensors(tensors.clone(), candle_core::DType::F32, &Device::Cpu);
    Model::load_towers(config, &kpl::nn::weights::Weights::dense(vb), Towers::VISION).unwrap()
}

/// Runs the `kpl` binary from the repository root (`CARGO_BIN_EXE_kpl` is set
/// for integration tests of a crate with that binary).
pub fn kpl(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kpl"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the kpl binary runs")
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh folder under the system's temporary directory, unique to this test process.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kpl-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    dir
}
