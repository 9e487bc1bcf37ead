//! The fused attention (`nn::attention`) and the layer norm (`nn::norm`)
//! against independent references (tests/reference/attention.py: numpy in
//! float64, checked there against PyTorch's `scaled_dot_product_attention`;
//! torch's `layer_norm` in float64 and float32), on odd shapes, with every
//! micro-kernel of this machine. The browser runs the same cases in wasm
//! (tests/browser/attention.test.mjs).

use kpl::nn::attention::{attend_with, Mask, Rows, Shape};
use kpl::nn::gemm::F32Isa;
use kpl::nn::norm::layer_norm;

fn f32s(hex: &serde_json::Value) -> Vec<f32> {
    let hex = hex.as_str().unwrap();
    (0..hex.len()).step_by(8).map(|i| f32::from_le_bytes(u32::from_str_radix(&hex[i..i + 8], 16).unwrap().swap_bytes().to_le_bytes())).collect()
}

fn f64s(hex: &serde_json::Value) -> Vec<f64> {
    let hex = hex.as_str().unwrap();
    (0..hex.len()).step_by(16).map(|i| f64::from_le_bytes(u64::from_str_radix(&hex[i..i + 16], 16).unwrap().swap_bytes().to_le_bytes())).collect()
}

fn cases(name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(format!("tests/fixtures/attention/{name}")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

/// The additive mask `nn::transformer` builds for a case: `[batch, q_len, k_len]`.
fn mask_of(case: &serde_json::Value, batch: usize, q_len: usize, k_len: usize) -> Option<Vec<f32>> {
    match case["mask"].as_str().unwrap() {
        "none" => None,
        "causal" => Some(
            (0..batch * q_len * k_len).map(|n| if n % k_len > n / k_len % q_len { f32::NEG_INFINITY } else { 0.0 }).collect(),
        ),
        "keys" => {
            let lengths: Vec<usize> = case["lengths"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap() as usize).collect();
            Some((0..batch * q_len * k_len).map(|n| if n % k_len >= lengths[n / (q_len * k_len)] { f32::MIN } else { 0.0 }).collect())
        }
        other => panic!("mask {other}"),
    }
}

#[test]
fn attention_matches_the_float64_reference() {
    let cases = cases("attention.json");
    assert!(cases.len() >= 8);
    for c in &cases {
        let n = |key: &str| c[key].as_u64().unwrap() as usize;
        let (batch, heads, d, ql, kl) = (n("batch"), n("heads"), n("head_dim"), n("q_len"), n("k_len"));
        let (q, k, v, want) = (f32s(&c["q"]), f32s(&c["k"]), f32s(&c["v"]), f32s(&c["y"]));
        let h = heads * d;
        let shape = Shape { batch, heads, head_dim: d, q_len: ql, k_len: kl };
        let mask = mask_of(c, batch, ql, kl);
        let mask = mask.as_ref().map(|values| Mask { values, batch_stride: ql * kl, row_stride: kl });
        fn rows(values: &[f32], stride: usize) -> Rows<'_> {
            Rows { values, stride, offset: 0 }
        }
        assert_eq!(want.len(), batch * ql * h);
        for isa in F32Isa::available() {
            let got = attend_with(rows(&q, h), rows(&k, h), rows(&v, h), shape, (d as f32).powf(-0.5), mask, isa);
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 4e-6, "{shape:?} mask {} {isa:?}: {worst}", c["mask"]);
        }
    }
}

#[test]
fn layer_norm_matches_torch() {
    let cases = cases("layer_norm.json");
    assert!(cases.len() >= 4);
    for c in &cases {
        let (x, g, b) = (f32s(&c["x"]), f32s(&c["gamma"]), f32s(&c["beta"]));
        let (exact, torch) = (f64s(&c["y_f64"]), f32s(&c["y_torch_f32"]));
        let mut y = vec![0f32; x.len()];
        layer_norm(&x, &g, &b, c["eps"].as_f64().unwrap() as f32, &mut y);
        let err = |y: &[f32]| y.iter().zip(&exact).map(|(&a, &b)| (a as f64 - b).abs()).fold(0f64, f64::max);
        // As close to the definition as PyTorch's own float32 kernel, within a
        // few float32 roundings (rows at an offset of 300 lose ~1e-5 in both).
        let (ours, theirs) = (err(&y), err(&torch));
        assert!(ours < 2.0 * theirs + 2e-6, "[{}, {}]: {ours} vs torch's {theirs}", c["rows"], c["width"]);
    }
}
