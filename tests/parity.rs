//! Parity with the reference implementation (`transformers`, OpenAI's tokenizer)
//! on the committed random fixture models: one test body per check, run over
//! every family's fixtures (CLIP: `make_fixtures.py`; SigLIP:
//! `make_siglip_fixtures.py`; open_clip: `make_open_clip_fixtures.py`, whose
//! reference is open_clip itself).

mod common;

use common::*;
use kpl::model_dir::load_model_dir;
use kpl::preprocess::PixelTensor;
use safetensors::SafeTensors;
use serde_json::Value;

/// One family's fixtures: its reference file, its pixels and its models.
struct Suite {
    reference: &'static str,
    pixels: &'static str,
    models: &'static [&'static str],
}

const SUITES: [Suite; 3] = [
    Suite { reference: "reference.json", pixels: "reference_pixels.safetensors", models: &MODELS },
    Suite {
        reference: "siglip_reference.json",
        pixels: "siglip_reference_pixels.safetensors",
        // c: a shape written after the code (f16, patch 6, 7 heads, 20 positions).
        models: &["tiny-siglip-a", "tiny-siglip-b", "tiny-siglip-c"],
    },
    Suite {
        reference: "open_clip_reference.json",
        pixels: "open_clip_reference_pixels.safetensors",
        // mean: another configuration (mean-pooled timm ViT without class token,
        // mlp head; mean-pooled BERT sized by its config.json, linear head,
        // cased vocab.txt-only tokenizer, strip_sep_token; shortest resize).
        models: &["tiny-open-clip-vit", "tiny-open-clip-bert", "tiny-open-clip-mean"],
    },
];

impl Suite {
    fn reference(&self) -> Value {
        let text = std::fs::read_to_string(fixtures().join(self.reference)).expect("reference file");
        serde_json::from_str(&text).expect("valid reference JSON")
    }

    fn pixels(&self, key: &str) -> PixelTensor {
        let bytes = std::fs::read(fixtures().join(self.pixels)).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let view = tensors.tensor(key).unwrap_or_else(|_| panic!("{key} in {}", self.pixels));
        let shape = view.shape().to_vec();
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        PixelTensor { height: shape[1], width: shape[2], data }
    }

    /// Every (suite reference, model name) pair.
    fn each(mut f: impl FnMut(&Suite, &Value, &str)) {
        for suite in &SUITES {
            let reference = suite.reference();
            for name in suite.models {
                f(suite, &reference, name);
            }
        }
    }
}

fn ids(text: &Value) -> Vec<u32> {
    text["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// The number of real tokens: the attention mask's ones (SigLIP's padded
/// ids), else every id (CLIP's unpadded ids).
fn length(text: &Value) -> usize {
    match text["attention_mask"].as_array() {
        Some(mask) => mask.iter().filter(|m| m.as_u64() == Some(1)).count(),
        None => ids(text).len(),
    }
}

#[test]
fn image_embeddings_match_from_identical_pixels() {
    Suite::each(|suite, reference, name| {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        for image in reference["models"][name]["images"].as_array().unwrap() {
            let pixels = suite.pixels(image["pixels_key"].as_str().unwrap());
            let ours = pipeline.embed_pixels(&[pixels.clone()], false).unwrap().remove(0);
            let theirs = floats(&image["image_embedding_raw"]);
            let ours_n = pipeline.embed_pixels(&[pixels], true).unwrap().remove(0);
            let cos = cosine(&ours, &theirs);
            let diff = max_abs_diff(&ours_n, &floats(&image["embedding"]));
            assert!(cos >= 0.99999, "{name} {}: cosine {cos}", image["file"]);
            assert!(diff <= 1e-4, "{name} {}: max abs diff {diff}", image["file"]);
        }
    });
}

#[test]
fn preprocessing_matches_reference_pixels() {
    Suite::each(|suite, reference, name| {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        for image in reference["models"][name]["images"].as_array().unwrap() {
            let file = image["file"].as_str().unwrap();
            let bytes = std::fs::read(fixtures().join(file)).unwrap();
            let ours = pipeline.prepare_image(&bytes, file).unwrap();
            let theirs = suite.pixels(image["pixels_key"].as_str().unwrap());
            assert_eq!((ours.height, ours.width), (theirs.height, theirs.width), "{name} {file}");
            let diff = max_abs_diff(&ours.data, &theirs.data);
            // Every format decodes to Pillow's bytes (JPEG through
            // `preprocess::jpeg`) and `pil_resize` is Pillow's resampling.
            assert!(diff <= 1e-5, "{name} {file}: pixel max abs diff {diff}");
        }
    });
}

#[test]
fn image_embeddings_match_from_files() {
    Suite::each(|_, reference, name| {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        for image in reference["models"][name]["images"].as_array().unwrap() {
            let file = image["file"].as_str().unwrap();
            let bytes = std::fs::read(fixtures().join(file)).unwrap();
            let ours = pipeline.embed_image_bytes(&bytes, file).unwrap();
            let theirs = floats(&image["embedding"]);
            let (cos, diff) = (cosine(&ours, &theirs), max_abs_diff(&ours, &theirs));
            eprintln!("{name} {file}: cosine {cos}, max abs diff {diff}");
            // Exact pixels from every format (JPEG included): the identical-pixel bounds.
            assert!(cos >= 0.99999 && diff <= 1e-4, "{name} {file}: cosine {cos}, max abs diff {diff}");
        }
    });
}

#[test]
fn token_ids_match_reference_tokenizers() {
    // CLIP: OpenAI's tokenizer; SigLIP: `transformers`' from tokenizer.json
    // (tiny-siglip-a) or its `SiglipTokenizer` from spiece.model (b, c),
    // padded to max_length and truncated, with the real-token count its
    // attention mask gives.
    // open_clip: its `get_tokenizer` (BERT WordPiece padded to 256; CLIP BPE).
    Suite::each(|_, reference, name| {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        let tokenizer = pipeline.tokenizer().unwrap();
        let mut mismatches = Vec::new();
        let texts = reference["models"][name]["texts"].as_array().unwrap();
        assert!(texts.len() >= 30, "{name}: {} reference texts", texts.len());
        for text in texts {
            let s = text["text"].as_str().unwrap();
            let theirs = (ids(text), length(text));
            let ours = tokenizer.encode_with_length(s).unwrap();
            if ours != theirs {
                mismatches.push(format!("{s:?}: ours {ours:?} theirs {theirs:?}"));
            }
        }
        assert!(mismatches.is_empty(), "{name}: token ids differ:\n{}", mismatches.join("\n"));
    });
}

/// From the string, through the model folder's own tokenizer (tokenizer.json
/// or spiece.model), to the normalised embedding.
#[test]
fn text_embeddings_from_strings_match() {
    Suite::each(|_, reference, name| {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        let mut checked = 0;
        for text in reference["models"][name]["texts"].as_array().unwrap() {
            if length(text) == 0 {
                continue; // as in text_embeddings_match
            }
            let s = text["text"].as_str().unwrap();
            let ours = pipeline.embed_text(s).unwrap();
            let theirs = floats(&text["embedding"]);
            let (cos, diff) = (cosine(&ours, &theirs), max_abs_diff(&ours, &theirs));
            assert!(cos >= 0.99999 && diff <= 1e-4, "{name} {s:?}: cosine {cos}, max abs diff {diff}");
            checked += 1;
        }
        assert!(checked >= 20, "{name}: only {checked} texts checked");
    });
}

#[test]
fn text_embeddings_match() {
    Suite::each(|_, reference, name| {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        for text in reference["models"][name]["texts"].as_array().unwrap() {
            if length(text) == 0 {
                // A fully masked sequence (tiny-siglip-a's empty text): what
                // `transformers` returns then depends on its attention backend's
                // handling of a row with no key (we attend uniformly, as its
                // eager attention does); not a meaningful embedding either way.
                continue;
            }
            let ours = pipeline.embed_tokens(&ids(text), length(text), true).unwrap();
            let theirs = floats(&text["embedding"]);
            let cos = cosine(&ours, &theirs);
            let diff = max_abs_diff(&ours, &theirs);
            assert!(cos >= 0.99999 && diff <= 1e-4, "{name} {:?}: cosine {cos}, max abs diff {diff}", text["text"]);
        }
    });
}

#[test]
fn zero_shot_probabilities_match() {
    Suite::each(|_, reference, name| {
        let pipeline = load_model_dir(&fixtures().join(name)).unwrap();
        for case in reference["models"][name]["classify"].as_array().unwrap() {
            let file = case["file"].as_str().unwrap();
            let bytes = std::fs::read(fixtures().join(file)).unwrap();
            let image = pipeline.embed_image_bytes(&bytes, file).unwrap();
            let labels: Vec<Vec<f32>> = case["prompts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| pipeline.embed_text(p.as_str().unwrap()).unwrap())
                .collect();
            let probs = pipeline.zero_shot(&image, &labels).unwrap();
            let diff = max_abs_diff(&probs, &floats(&case["probs"]));
            eprintln!("{name} {file}: zero-shot max abs diff {diff}");
            // Exact pixels from every format (JPEG included).
            assert!(diff <= 1e-5, "{name} {file}: probabilities differ by {diff}");
        }
    });
}
