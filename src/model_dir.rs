//! Loading a model folder from disk, whichever it is: a Hugging Face CLIP or
//! SigLIP folder, an open_clip folder ([`crate::model_files`]) or a `kpl pack` bundle (native only;
//! the browser fetches the same files and hands their bytes to `Pipeline::load`).

use std::path::Path;

use crate::error::Result;
use crate::model_files::{is_open_clip_dir, read_model_dir, read_open_clip_dir};
use crate::pipeline::Pipeline;

/// Loads a Hugging Face CLIP or SigLIP folder, an open_clip folder, or a bundle folder made by `kpl pack`
/// (recognised by its `manifest.json`; every file is checked against it).
pub fn load_model_dir(dir: &Path) -> Result<Pipeline> {
    if crate::bundle::is_bundle_dir(dir) {
        return crate::bundle::load_bundle_dir(dir);
    }
    if is_open_clip_dir(dir) {
        return Pipeline::load_open_clip(read_open_clip_dir(dir)?);
    }
    Pipeline::load(read_model_dir(dir)?)
}

// open_clip BERT towers' trailing-padding trim (`models::tower::TextTower::needed_positions`),
// tested on whole fixture folders: here, since a test in `models::tower` that loads a
// folder would make `models` import `model_dir` (an import cycle, tests/lint_policy.rs).
#[cfg(test)]
mod bert_padding_tests {
    use std::path::Path;

    /// open_clip's BERT towers, `[CLS]`-pooled (tiny-open-clip-bert) and
    /// mean-pooled (tiny-open-clip-mean): without the trailing pad ids, every
    /// reference text (a `[PAD]` written inside one among them) embeds within
    /// 1e-6 of the pass over all 256 positions, L2-normalised as the pipeline
    /// returns it.
    #[test]
    fn bert_towers_skip_trailing_padding_with_the_same_embedding() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("open_clip_reference.json")).unwrap()).unwrap();
        for name in ["tiny-open-clip-bert", "tiny-open-clip-mean"] {
            let pipeline = super::load_model_dir(&root.join(name)).unwrap();
            let tower = pipeline.model.text.as_ref().unwrap();
            let pad = tower.pad_token_id.unwrap();
            let tokenizer = pipeline.tokenizer().unwrap();
            let (mut trimmed, mut pad_inside, mut worst) = (0, false, 0.0f32);
            for text in reference["models"][name]["texts"].as_array().unwrap() {
                let (ids, length) = tokenizer.encode_with_length(text["text"].as_str().unwrap()).unwrap();
                let needed = tower.needed_positions(&ids);
                assert!(needed > 0 && ids[needed - 1] != pad && ids[needed..].iter().all(|&id| id == pad), "{name}: {ids:?}");
                trimmed += usize::from(needed < ids.len());
                pad_inside |= ids[1..needed].contains(&pad);
                let normalised = |t: candle_core::Tensor| {
                    let v = t.to_vec1::<f32>().unwrap();
                    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
                    v.into_iter().map(move |a| a / norm)
                };
                let got = normalised(tower.forward_ids(&ids, length).unwrap());
                let full = normalised(tower.forward_all_ids(&ids, length).unwrap());
                let diff = got.zip(full).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(diff <= 1e-6, "{name}: {} differs by {diff}", text["text"]);
                worst = worst.max(diff);
            }
            eprintln!("{name}: {trimmed} texts trimmed, max |diff| {worst:e}");
            assert!(trimmed > 0, "{name}: no text was trimmed");
            assert!(pad_inside || name != "tiny-open-clip-bert", "{name}: a [PAD] written inside a text");
            // Nothing attended: every position stays.
            assert_eq!(tower.needed_positions(&[pad; 5]), 5);
        }
    }
}
