//! The WebGPU engine (src/gpu) against the CPU model, one comparison for every
//! case: image and text embeddings of every family's committed fixtures (CLIP,
//! SigLIP and open_clip, whose CPU outputs match `transformers` and
//! `open_clip`, tests/parity.rs) at
//! their precision and through q8 and q4 bundles, and of a full-size random
//! ViT-B/16, cosine ≥ 0.9999 and max abs diff ≤ 1e-3 on L2-normalised
//! embeddings. The kernels' own tests against the CPU are in src/gpu (one per
//! op, and the encoder and pooling head under every setting).
//!
//! Without a GPU these run on the software Vulkan adapter (Debian
//! `mesa-vulkan-drivers`: lavapipe), which `scripts/setup.sh` installs; no
//! adapter at all is a failure unless KPL_GPU_TESTS=skip says otherwise.
#![cfg(feature = "gpu")]

mod common;

use candle_core::Tensor;
use common::*;
use kpl::models::Model;
use kpl::gpu::GpuClip;
use kpl::model_dir::load_model_dir;

/// Every family's fixtures: CLIP's (`make_fixtures.py`), SigLIP's
/// (`make_siglip_fixtures.py`), open_clip's (`make_open_clip_fixtures.py`:
/// its own ViT and text transformer; timm ViTs with BERT text towers,
/// BiomedCLIP's shape, and one without class token, mean-pooled on both sides).
const FIXTURES: [&str; 7] =
    [MODELS[0], MODELS[1], "tiny-siglip-a", "tiny-siglip-b", "tiny-open-clip-vit", "tiny-open-clip-bert", "tiny-open-clip-mean"];

/// A fixture's reference texts as the CPU takes them: ids, and how many are
/// real tokens (SigLIP's are padded to max_length; its reference records
/// the attention mask; CLIP's ids are unpadded).
fn fixture_texts(name: &str) -> (Vec<Vec<u32>>, Vec<usize>) {
    let file = match name {
        n if n.starts_with("tiny-siglip") => "siglip_reference.json",
        n if n.starts_with("tiny-open-clip") => "open_clip_reference.json",
        _ => "reference.json",
    };
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join(file)).unwrap()).unwrap();
    let texts = reference_text_ids(&reference, name);
    let lengths = reference["models"][name]["texts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&texts)
        .map(|(t, ids)| match t["attention_mask"].as_array() {
            Some(mask) => mask.iter().filter(|m| m.as_u64() == Some(1)).count(),
            None => ids.len(),
        })
        .collect();
    (texts, lengths)
}

const MIN_COSINE: f32 = 0.9999;
const MAX_ABS_DIFF: f32 = 1e-3;

fn gpu_for(model: &Model) -> Option<GpuClip> {
    match pollster::block_on(GpuClip::new(model)) {
        Ok(gpu) => {
            eprintln!("GPU adapter: {}", gpu.adapter());
            Some(gpu)
        }
        Err(e) if std::env::var("KPL_GPU_TESTS").as_deref() == Ok("skip") => {
            eprintln!("skipped (KPL_GPU_TESTS=skip): {e}");
            None
        }
        Err(e) if e.to_string().contains("no GPU adapter") => {
            panic!("{e}: install mesa-vulkan-drivers for a software adapter, or set KPL_GPU_TESTS=skip")
        }
        Err(e) => panic!("{e}"),
    }
}

fn normalize(row: &[f32]) -> Vec<f32> {
    let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
    row.iter().map(|v| v / n).collect()
}

/// Compares each GPU row with the CPU row; returns (worst cosine, worst max abs diff).
fn compare(what: &str, cpu: &[Vec<f32>], gpu: &[f32]) -> (f32, f32) {
    let dim = cpu[0].len();
    assert_eq!(gpu.len(), cpu.len() * dim, "{what}: GPU returned {} values for {} rows of {dim}", gpu.len(), cpu.len());
    let (mut worst_cos, mut worst_diff) = (1.0f32, 0.0f32);
    for (i, (c, g)) in cpu.iter().zip(gpu.chunks(dim)).enumerate() {
        let (c, g) = (normalize(c), normalize(g));
        let (cos, diff) = (cosine(&c, &g), max_abs_diff(&c, &g));
        assert!(cos >= MIN_COSINE && diff <= MAX_ABS_DIFF, "{what} row {i}: cosine {cos}, max abs diff {diff}");
        worst_cos = worst_cos.min(cos);
        worst_diff = worst_diff.max(diff);
    }
    eprintln!("{what}: {} rows, cosine ≥ {worst_cos:.7}, max abs diff ≤ {worst_diff:.2e}", cpu.len());
    (worst_cos, worst_diff)
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

#[test]
fn fixtures_image_and_text_embeddings_match_the_cpu() {
    for name in FIXTURES {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        let Some(gpu) = gpu_for(&pipeline.model) else { return };
        assert!(gpu.has_vision() && gpu.has_text(), "{name}: both towers run on the GPU");
        // The fixture images, preprocessed as the CLI does, in one batch.
        let images: Vec<_> = std::fs::read_dir(fixtures().join("images"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
            .map(|p| pipeline.prepare_image(&std::fs::read(&p).unwrap(), &p.display().to_string()).unwrap())
            .collect();
        assert!(images.len() >= 5, "{name}: fixture images");
        let cpu = pipeline.embed_pixels(&images, false).unwrap();
        let flat: Vec<f32> = images.iter().flat_map(|p| p.data.iter().copied()).collect();
        let got = pollster::block_on(gpu.image_features(&flat, images.len())).unwrap();
        compare(&format!("{name} images"), &cpu, &got);

        // Every reference text in one padded batch (CLIP: 3 to 77 ids; SigLIP:
        // padded to max_length with 0 to max_length real tokens).
        let (texts, lengths) = fixture_texts(name);
        // (open_clip pads every text to 77 ids with 0, under the causal mask.)
        if name != "tiny-open-clip-vit" {
            assert!(lengths.iter().min() < lengths.iter().max(), "{name}: texts of different lengths");
        }
        let cpu: Vec<Vec<f32>> =
            texts.iter().zip(&lengths).map(|(ids, &length)| pipeline.embed_tokens(ids, length, false).unwrap()).collect();
        let got = pollster::block_on(gpu.text_features(&texts, &lengths)).unwrap();
        compare(&format!("{name} texts"), &cpu, &got);

        // An f16 checkpoint's weights stay f16 where the device reads f16 (no
        // number changes: they convert exactly); random f32 weights never do
        // (bf16 ones may, layer by layer: no claim).
        let formats = gpu.weight_formats();
        eprintln!("{name}: GPU weight formats {formats:?}, shader-f16 {}", gpu.has_f16());
        let f16_layers = formats.get("f16").copied().unwrap_or(0);
        match (name, gpu.has_f16()) {
            ("tiny-gelu-f16", true) => assert!(f16_layers > 0 && !formats.contains_key("f32"), "{formats:?}"),
            ("tiny-open-clip-vit", true) => assert!(f16_layers > 0, "{formats:?}"),
            ("tiny-siglip-b", _) => {}
            _ => assert_eq!(f16_layers, 0, "{formats:?}"),
        }
    }
}

/// Mean pooling on both towers of the BiomedCLIP-shaped fixture
/// (`kpl::testing::variants`; tiny-open-clip-mean has no class token to
/// leave out): open_clip's
/// `mean_pooler` over the attended tokens (a "[PAD]" written inside a text is
/// masked and left out, as on the CPU) and timm's `avg` pool over the patches.
/// The variant must embed differently from the fixture, or the setting was not read.
#[test]
fn mean_pooled_open_clip_towers_match_the_cpu() {
    let name = "tiny-open-clip-bert";
    let class_pooled = load_model_dir(&fixtures().join(name)).unwrap();
    let mut pipeline = load_model_dir(&fixtures().join(name)).unwrap();
    pipeline.model = kpl::testing::variants::mean_pooled(&class_pooled.model);
    let Some(gpu) = gpu_for(&pipeline.model) else { return };
    let images: Vec<_> = ["rgb_97x61.png", "grey_80x120.png", "small_30x40.png"]
        .iter()
        .map(|f| pipeline.prepare_image(&std::fs::read(fixtures().join("images").join(f)).unwrap(), f).unwrap())
        .collect();
    let cpu_images = pipeline.embed_pixels(&images, false).unwrap();
    let flat: Vec<f32> = images.iter().flat_map(|p| p.data.iter().copied()).collect();
    let got = pollster::block_on(gpu.image_features(&flat, images.len())).unwrap();
    compare(&format!("{name} mean-pooled images"), &cpu_images, &got);
    let (texts, lengths) = fixture_texts(name);
    let pad_inside = texts.iter().zip(&lengths).any(|(ids, &l)| l > 2 && ids[1..l - 1].contains(&0));
    assert!(pad_inside, "a reference text with the pad id written inside it");
    let cpu_texts: Vec<Vec<f32>> =
        texts.iter().zip(&lengths).map(|(ids, &l)| pipeline.embed_tokens(ids, l, false).unwrap()).collect();
    compare(&format!("{name} mean-pooled texts"), &cpu_texts, &pollster::block_on(gpu.text_features(&texts, &lengths)).unwrap());

    let image_before = &class_pooled.embed_pixels(&images[..1], false).unwrap()[0];
    let text_before = class_pooled.embed_tokens(&texts[0], lengths[0], false).unwrap();
    assert!(cosine(image_before, &cpu_images[0]) < 0.999, "mean pooling changes the image embedding");
    assert!(cosine(&text_before, &cpu_texts[0]) < 0.999, "mean pooling changes the text embedding");
}

/// Under SigLIP's key-padding mask the padding does not reach a text's
/// embedding, and one batch mixes texts of any length: the GPU's rows are
/// the CPU's, and the mask matters (without it they differ).
#[test]
fn key_padding_texts_batch_with_any_lengths() {
    let name = "tiny-siglip-a";
    let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
    let Some(gpu) = gpu_for(&pipeline.model) else { return };
    let (texts, lengths) = fixture_texts(name);
    let alone: Vec<f32> = (0..3).flat_map(|i| pollster::block_on(gpu.text_features(&texts[i..=i], &lengths[i..=i])).unwrap()).collect();
    let batch = pollster::block_on(gpu.text_features(&texts[..3], &lengths[..3])).unwrap();
    assert!(max_abs_diff(&alone, &batch) <= 1e-5, "batch rows differ from single texts");
    let i = lengths.iter().position(|&l| l > 0 && l < texts[0].len()).expect("a padded text");
    let unmasked = pollster::block_on(gpu.text_features(&texts[i..=i], &[texts[i].len()])).unwrap();
    let masked = pollster::block_on(gpu.text_features(&texts[i..=i], &lengths[i..=i])).unwrap();
    assert!(max_abs_diff(&masked, &unmasked) > 1e-3, "the mask must change a padded text's embedding");
    let wrong = pollster::block_on(gpu.text_features(&texts[..1], &[texts[0].len() + 1]));
    assert!(matches!(wrong, Err(kpl::Error::Input(_))), "more real tokens than ids must be an input error: {wrong:?}");
}

#[test]
fn batches_of_any_size_give_the_rows_of_single_images() {
    let pipeline = load_model_dir(&fixtures().join(MODELS[0])).unwrap();
    let Some(gpu) = gpu_for(&pipeline.model) else { return };
    let size = pipeline.model.image_size();
    let per_image = 3 * size * size;
    // Nine different images: each row of a batch must not depend on the others.
    let flat: Vec<f32> = (0..9 * per_image).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    let batch = pollster::block_on(gpu.image_features(&flat, 9)).unwrap();
    let dim = batch.len() / 9;
    for i in [0, 4, 8] {
        let single = pollster::block_on(gpu.image_features(&flat[i * per_image..(i + 1) * per_image], 1)).unwrap();
        let diff = max_abs_diff(&single, &batch[i * dim..(i + 1) * dim]);
        assert!(diff <= 1e-5, "image {i}: batch row differs from the single image by {diff}");
    }
    let wrong = pollster::block_on(gpu.image_features(&flat[..per_image - 1], 1));
    assert!(matches!(wrong, Err(kpl::Error::Input(_))), "a short pixel buffer must be an input error: {wrong:?}");
}

#[test]
fn full_size_random_vit_b16_matches_the_cpu() {
    let (_, config, tensors) = random_vit_b16_image_tower(0.02, 7);
    let model = image_tower_model(&config, &tensors);
    let Some(gpu) = gpu_for(&model) else { return };
    let pixels = test_images(224);
    let cpu = rows(&model.image_features(&pixels).unwrap());
    let flat = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let started = std::time::Instant::now();
    let got = pollster::block_on(gpu.image_features(&flat, 2)).unwrap();
    eprintln!("ViT-B/16 random, 2 images on {}: {:.2} s (first pass, plan included)", gpu.adapter(), started.elapsed().as_secs_f64());
    compare("ViT-B/16 random images", &cpu, &got);
    // Different inputs must embed differently, or agreement would prove little.
    let between = cosine(&normalize(&got[..512]), &normalize(&got[512..]));
    assert!(between < 0.95, "the two test images embed alike (cosine {between})");
}

#[test]
fn select_backend_checks_the_gpu_and_falls_back_to_the_cpu_when_it_is_lost() {
    use kpl::engine::Backend;
    let mut pipeline = load_model_dir(&fixtures().join(MODELS[0])).unwrap();
    if gpu_for(&pipeline.model).is_none() {
        return;
    }
    let image = std::fs::read(fixtures().join("images/rgb_97x61.png")).unwrap();
    let on_cpu = pipeline.embed_image_bytes(&image, "rgb_97x61.png").unwrap();
    let text_cpu = pipeline.embed_text("a photo of a lung").unwrap();

    // Asked for: the GPU runs after agreeing with the CPU on the probe image.
    let choice = pipeline.select_backend(Backend::WebGpu);
    eprintln!("webgpu: {}", choice.note);
    assert_eq!(choice.backend, Backend::WebGpu, "{}", choice.note);
    assert!(pipeline.accelerator.is_active());
    let on_gpu = pipeline.embed_image_bytes(&image, "rgb_97x61.png").unwrap();
    assert!(cosine(&on_cpu, &on_gpu) >= MIN_COSINE && max_abs_diff(&on_cpu, &on_gpu) <= MAX_ABS_DIFF);
    let text_gpu = pipeline.embed_text("a photo of a lung").unwrap();
    assert!(cosine(&text_cpu, &text_gpu) >= MIN_COSINE && max_abs_diff(&text_cpu, &text_gpu) <= MAX_ABS_DIFF);
    assert!(pipeline.accelerator.take_notes().is_empty());

    // The device is lost mid-run: the same call answers from the CPU and says why.
    pipeline.accelerator.with_gpu(|g| g.lose_device()).unwrap();
    let after = pipeline.embed_image_bytes(&image, "rgb_97x61.png").unwrap();
    assert!(max_abs_diff(&after, &on_cpu) <= 1e-6, "the fallback result is the CPU's");
    let notes = pipeline.accelerator.take_notes();
    eprintln!("after losing the device: {notes:?}");
    assert!(!pipeline.accelerator.is_active());
    assert!(notes.len() == 1 && notes[0].starts_with("GPU: ") && notes[0].ends_with("continuing on the CPU"), "{notes:?}");

    // Auto never spends a probe on a software adapter: it runs on this same CPU.
    let choice = pipeline.select_backend(Backend::Auto);
    eprintln!("auto: {}", choice.note);
    if pollster::block_on(GpuClip::new(&pipeline.model)).unwrap().adapter().software {
        assert_eq!(choice.backend, Backend::Cpu);
        assert!(choice.note.contains("software"), "{}", choice.note);
    }
    assert_eq!(pipeline.select_backend(Backend::Cpu).backend, Backend::Cpu);
    assert!(!pipeline.accelerator.is_active());
}

#[test]
fn the_cli_embeds_on_the_backend_asked_for() {
    let kpl = env!("CARGO_BIN_EXE_kpl");
    let images: Vec<_> = ["rgb_97x61.png", "grey_80x120.png"].iter().map(|f| fixtures().join("images").join(f)).collect();
    for name in [MODELS[1], "tiny-siglip-a"] {
        let model = fixtures().join(name);
        let run = |backend: &str| {
            let out = std::process::Command::new(kpl)
                .args(["embed-image", "--model"])
                .arg(&model)
                .args(["--backend", backend])
                .args(&images)
                .env("XDG_RUNTIME_DIR", std::env::temp_dir())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            (out.status.code(), serde_json::from_slice::<serde_json::Value>(&out.stdout).ok(), stderr)
        };
        let (code, cpu, _) = run("cpu");
        assert_eq!(code, Some(0));
        let (code, gpu, stderr) = run("webgpu");
        if std::env::var("KPL_GPU_TESTS").as_deref() == Ok("skip") && stderr.contains("could not start") {
            return;
        }
        assert_eq!(code, Some(0), "{stderr}");
        assert!(stderr.contains("kpl: backend: WebGPU ("), "{name}: the CLI says which backend it took: {stderr}");
        let rows = |v: &serde_json::Value| -> Vec<Vec<f32>> {
            v["embeddings"].as_array().unwrap().iter().map(|e| floats(&e["embedding"])).collect()
        };
        let (cpu, gpu) = (rows(&cpu.unwrap()), rows(&gpu.unwrap()));
        assert_eq!(cpu.len(), 2);
        compare(&format!("{name} CLI"), &cpu, &gpu.concat());
        if name == MODELS[1] {
            let (code, _, stderr) = run("cuda");
            assert_eq!(code, Some(2), "clap's usage error");
            assert!(stderr.contains("unknown backend \"cuda\" (cpu, webgpu or auto)"), "{stderr}");
        }
    }
}

#[test]
fn quantized_bundles_run_on_the_gpu_and_q8_stays_8_bit() {
    use kpl::bundle::pack::{pack_model_dir, PackOptions};
    use kpl::bundle::PackDtype;
    for name in [MODELS[0], "tiny-siglip-a", "tiny-siglip-b", "tiny-open-clip-vit", "tiny-open-clip-bert", "tiny-open-clip-mean"] {
        let source = load_model_dir(&fixtures().join(name)).unwrap();
        let Some(f32_gpu) = gpu_for(&source.model) else { return };
        let f32_bytes = f32_gpu.weight_bytes();
        let images: Vec<_> = ["rgb_97x61.png", "grey_80x120.png", "small_30x40.png"]
            .iter()
            .map(|f| source.prepare_image(&std::fs::read(fixtures().join("images").join(f)).unwrap(), f).unwrap())
            .collect();
        let flat: Vec<f32> = images.iter().flat_map(|p| p.data.iter().copied()).collect();
        let (mut texts, mut lengths) = fixture_texts(name);
        texts.truncate(6);
        lengths.truncate(6);
        for dtype in [PackDtype::Q8, PackDtype::Q4] {
            let out = std::env::temp_dir().join(format!("kpl-gpu-{name}-{}-{}", dtype.as_str(), std::process::id()));
            let options = PackOptions { dtype, knowledge: vec![], name: None };
            pack_model_dir(&fixtures().join(name), &out, &options, &mut |_| {}).unwrap();
            let bundle = load_model_dir(&out).unwrap();
            let gpu = gpu_for(&bundle.model).unwrap();
            assert!(gpu.has_vision() && gpu.has_text(), "{name} {}: both towers run on the GPU", dtype.as_str());
            // The same quantised weights on both sides, and f32 activations: the CPU's
            // Dequantize kernel expands the weights as the GPU does (its default Blocks
            // kernel also rounds the activations to 8 bits).
            kpl::nn::linear::set_quant_kernel(kpl::nn::linear::QuantKernel::Dequantize);
            let cpu = bundle.embed_pixels(&images, false).unwrap();
            compare(&format!("{name} {} images", dtype.as_str()), &cpu, &pollster::block_on(gpu.image_features(&flat, 3)).unwrap());
            let cpu: Vec<Vec<f32>> =
                texts.iter().zip(&lengths).map(|(ids, &length)| bundle.embed_tokens(ids, length, false).unwrap()).collect();
            let got = pollster::block_on(gpu.text_features(&texts, &lengths)).unwrap();
            compare(&format!("{name} {} texts", dtype.as_str()), &cpu, &got);
            let ratio = gpu.weight_bytes() as f64 / f32_bytes as f64;
            let formats = gpu.weight_formats();
            eprintln!("{name} {}: GPU weights {} bytes, {ratio:.3} of f32's {f32_bytes}, formats {formats:?}", dtype.as_str(), gpu.weight_bytes());
            if dtype == PackDtype::Q8 {
                assert!(formats.get("q8").is_some_and(|&n| n > 0), "{formats:?}");
                // Every CLIP fixture width is a multiple of q8's block of 32;
                // some SigLIP fixture widths (48, 40) are not, and those layers stay dense.
                if name == MODELS[0] {
                    assert!(ratio < 0.5, "q8 weights must stay 8-bit on the GPU: {ratio:.3} of f32");
                }
            }
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
}

#[test]
fn q4_bundle_layers_stay_4_bit_on_the_gpu() {
    use kpl::bundle::pack::{pack_model_dir, PackOptions};
    use kpl::bundle::PackDtype;
    use kpl::testing::clip::{write_random_clip, RandomClipConfig};
    // q4_K needs widths that are multiples of 256: ViT-B/16 sizes, one layer per tower.
    let mut config = RandomClipConfig::vit_b16();
    config.vision_layers = 1;
    config.text_layers = 1;
    config.std = 0.06;
    let dir = std::env::temp_dir().join(format!("kpl-gpu-q4-{}", std::process::id()));
    write_random_clip(&dir.join("f32"), &config, 3).unwrap();
    let options = PackOptions { dtype: PackDtype::Q4, knowledge: vec![], name: None };
    pack_model_dir(&dir.join("f32"), &dir.join("q4"), &options, &mut |_| {}).unwrap();
    let bundle = load_model_dir(&dir.join("q4")).unwrap();
    let Some(gpu) = gpu_for(&bundle.model) else { return };
    let formats = gpu.weight_formats();
    eprintln!("q4 bundle: GPU weight formats {formats:?}, {} bytes", gpu.weight_bytes());
    assert!(formats.get("q4").is_some_and(|&n| n >= 10), "the encoder layers must stay 4-bit: {formats:?}");

    let pixels = test_images(224);
    let flat = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    kpl::nn::linear::set_quant_kernel(kpl::nn::linear::QuantKernel::Dequantize);
    let cpu = rows(&bundle.model.image_features(&pixels).unwrap());
    compare("q4 bundle images", &cpu, &pollster::block_on(gpu.image_features(&flat, 2)).unwrap());
    let texts: Vec<Vec<u32>> = ["a chest x-ray", "a fundus photograph of an eye"]
        .iter()
        .map(|t| bundle.tokenizer().unwrap().encode(t).unwrap())
        .collect();
    let lengths: Vec<usize> = texts.iter().map(Vec::len).collect();
    let cpu: Vec<Vec<f32>> = texts.iter().map(|ids| bundle.embed_ids(ids, false).unwrap()).collect();
    compare("q4 bundle texts", &cpu, &pollster::block_on(gpu.text_features(&texts, &lengths)).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
