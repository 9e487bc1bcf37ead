//! Fidelity and size of quantised bundles (`kpl pack`): embeddings of the f16,
//! q8 and q4 encoders against the f32 model, on the committed fixtures and on a
//! full-size random ViT-B/16 image tower generated on the fly.

mod common;

use std::path::PathBuf;

use common::*;
use kpl::bundle::pack::{pack_model_dir, write_encoder_file, EncoderMeta, PackOptions};
use kpl::bundle::{EncoderFile, EncoderKind, PackDtype};
use kpl::nn::linear::{set_quant_kernel, QuantKernel};
use kpl::model_dir::load_model_dir;
use kpl::preprocess::PixelTensor;
use safetensors::SafeTensors;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kpl-quantized-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn reference_pixels() -> Vec<PixelTensor> {
    let bytes = std::fs::read(fixtures().join("reference_pixels.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = Vec::new();
    for (_, view) in tensors.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.push(PixelTensor { height: shape[1], width: shape[2], data });
    }
    out
}

/// The minimum cosine each dtype must keep against f32.
fn threshold(dtype: PackDtype) -> f32 {
    match dtype {
        PackDtype::F32 => 0.99999,
        PackDtype::F16 => 0.9999,
        PackDtype::Q8 => 0.999,
        PackDtype::Q4 => 0.99,
    }
}

#[test]
fn fixture_bundles_keep_image_and_text_embeddings() {
    let reference = reference();
    let pixels = reference_pixels();
    for name in MODELS {
        let source = load_model_dir(&fixtures().join(name)).unwrap();
        let size = source.model.image_size();
        let images: Vec<PixelTensor> = pixels.iter().filter(|p| p.height == size && p.width == size).cloned().collect();
        assert!(!images.is_empty(), "{name}: no reference pixels at {size}");
        let expected_images = source.embed_pixels(&images, true).unwrap();
        let texts = reference_text_ids(&reference, name);
        let expected_texts: Vec<Vec<f32>> = texts.iter().map(|ids| source.embed_ids(ids, true).unwrap()).collect();
        for dtype in [PackDtype::F32, PackDtype::F16, PackDtype::Q8, PackDtype::Q4] {
            let out = temp_dir(&format!("{name}-{}", dtype.as_str()));
            let options = PackOptions { dtype, knowledge: vec![], name: None };
            let manifest = pack_model_dir(&fixtures().join(name), &out, &options, &mut |_| {}).unwrap();
            assert_eq!(manifest.model.fingerprint, source.model.fingerprint().unwrap(), "{name} {dtype:?}");
            // Loaded under Int8 (wasm's default), q8_0 layers are held packed
            // for the int8 GEMM; the other kernels rebuild the blocks per call.
            set_quant_kernel(QuantKernel::Int8);
            let bundle = load_model_dir(&out).unwrap();
            assert_eq!(bundle.model.fingerprint().unwrap(), source.model.fingerprint().unwrap());
            let mut worst_image = 1.0f32;
            // Every kernel: int8 (wasm's default), blocks (the native default), dequantize.
            for kernel in [QuantKernel::Int8, QuantKernel::Blocks, QuantKernel::Dequantize] {
                set_quant_kernel(kernel);
                let got = bundle.embed_pixels(&images, true).unwrap();
                let worst = got.iter().zip(&expected_images).map(|(a, b)| cosine(a, b)).fold(1.0f32, f32::min);
                if bundle.model.is_quantized() {
                    eprintln!("{name} {} {kernel:?} kernel: image cosine ≥ {worst:.6}", dtype.as_str());
                }
                worst_image = worst_image.min(worst);
            }
            set_quant_kernel(QuantKernel::Int8);
            let mut worst_text = 1.0f32;
            for (ids, b) in texts.iter().zip(&expected_texts) {
                worst_text = worst_text.min(cosine(&bundle.embed_ids(ids, true).unwrap(), b));
            }
            eprintln!(
                "{name} {}: image cosine ≥ {worst_image:.6} ({} images), text cosine ≥ {worst_text:.6} ({} texts), \
                 image encoder {} bytes",
                dtype.as_str(),
                images.len(),
                texts.len(),
                manifest.files.image_encoder.as_ref().unwrap().bytes
            );
            assert!(worst_image >= threshold(dtype), "{name} {dtype:?}: image cosine {worst_image}");
            assert!(worst_text >= threshold(dtype), "{name} {dtype:?}: text cosine {worst_text}");
            set_quant_kernel(QuantKernel::Blocks);
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}

/// Packs the image tower of a random full-size ViT-B/16 (weights normal(0, std))
/// at `dtypes` and compares image embeddings with f32 on two different images.
/// Returns (cosine between the two images at f32, [(dtype, worst cosine, file bytes)]).
fn random_vit_b16(std: f32, dtypes: &[PackDtype]) -> (f32, Vec<(PackDtype, f32, u64)>) {
    let seed = 7;
    let (config_json, config, tensors) = random_vit_b16_image_tower(std, seed);
    let f32_model = image_tower_model(&config, &tensors);
    let pixels = test_images(224);
    let expected = normalized_rows(&f32_model.image_features(&pixels).unwrap());
    let between = cosine(&expected[0], &expected[1]);
    drop(f32_model);

    let out = temp_dir(&format!("vit-b16-{std}"));
    let mut results = Vec::new();
    for &dtype in dtypes {
        let meta = EncoderMeta {
            family: kpl::models::Family::Clip,
            dtype,
            fingerprint: "random-vit-b16-test",
            config_json: &config_json,
            preprocessor_json: None,
            tokenizer: None,
        };
        let entry = write_encoder_file(&out, EncoderKind::Image, &meta, &tensors).unwrap();
        let path = out.join(&entry.path);
        let mut reader = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let file = EncoderFile::read_verified(&mut reader, &path.display().to_string(), &entry).unwrap();
        // Loaded under Int8: q8_0 layers packed for the int8 GEMM.
        set_quant_kernel(QuantKernel::Int8);
        let (model, _) = file.model().unwrap();
        assert!(model.is_quantized(), "{dtype:?}: the linears must run quantised");
        let mut worst = 1.0f32;
        for kernel in [QuantKernel::Int8, QuantKernel::Blocks, QuantKernel::Dequantize] {
            set_quant_kernel(kernel);
            let got = normalized_rows(&model.image_features(&pixels).unwrap());
            let cos = got.iter().zip(&expected).map(|(a, b)| cosine(a, b)).fold(1.0f32, f32::min);
            eprintln!("ViT-B/16 random std {std}: {} {kernel:?} kernel: cosine {cos:.6}", dtype.as_str());
            worst = worst.min(cos);
        }
        set_quant_kernel(QuantKernel::Blocks);
        results.push((dtype, worst, entry.bytes));
    }
    std::fs::remove_dir_all(&out).unwrap();
    (between, results)
}

#[test]
fn random_vit_b16_image_encoder_fidelity_and_size() {
    // std 0.02 is CLIP's initializer range and what the acceptance criteria name
    // (q8 ≥ 0.999, q4 ≥ 0.99). A flat 0.02 can make a random network nearly
    // input-independent, where a high cosine against f32 would prove nothing, so
    // the test also checks that its two images embed differently (measured:
    // cosine 0.78 between them at f32).
    //
    // std 0.06 (≈ 1.7/sqrt(768), the width of most layers) is a harsher case:
    // the images embed further apart (cosine 0.32) and a random network at that
    // gain amplifies per-layer noise from layer to layer (a trained one does
    // not). q8 must still reach 0.999 there; q4 measured 0.956 and is not run
    // again here (its search-based quantiser is the slow part of this test).
    let cases: [(f32, &[PackDtype]); 2] = [(0.02, &[PackDtype::Q8, PackDtype::Q4]), (0.06, &[PackDtype::Q8])];
    for (std, dtypes) in cases {
        let (between, results) = random_vit_b16(std, dtypes);
        for (dtype, cos, bytes) in &results {
            eprintln!(
                "ViT-B/16 random std {std}: {} image cosine vs f32 ≥ {cos:.6}, image_encoder.gguf {bytes} bytes \
                 ({:.1} MB); f32 cosine between the two images {between:.4}",
                dtype.as_str(),
                *bytes as f64 / 1e6
            );
        }
        assert!(between < 0.95, "std {std}: the two images embed alike ({between}); the test would prove nothing");
        for (dtype, cos, bytes) in results {
            let (min_cos, max_bytes) = match dtype {
                PackDtype::Q8 => (0.999, 95_000_000),
                PackDtype::Q4 => (0.99, 55_000_000),
                _ => unreachable!(),
            };
            assert!(cos >= min_cos, "std {std} {dtype:?}: cosine {cos} < {min_cos}");
            assert!(bytes <= max_bytes, "{dtype:?}: image encoder {bytes} bytes > {max_bytes}");
        }
    }
}
