//! `kpl random-model`: writes a CLIP or SigLIP folder with RANDOM weights, for tests,
//! benchmarks and demos without a checkpoint. Its config.json carries
//! `kpl_random_weights`, so every output of the app says the weights are
//! random; no result of such a model means anything. Only in a build with the
//! `testing` feature (`make test` and `make bench` build one).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::print_json;
use kpl::testing::clip::{is_random_clip, write_random_clip, RandomClipConfig};
use kpl::testing::siglip::{is_random_siglip, write_random_siglip, RandomSiglipConfig};
use kpl::Error;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// openai/clip-vit-base-patch16's sizes (about 600 MB at 12 layers).
    VitB16,
    /// A tiny model (a few MB).
    Tiny,
    /// google/medsiglip-448's sizes (SigLIP, about 3.5 GB at 27 + 27 layers; no
    /// tokenizer, so it embeds images only).
    #[value(name = "medsiglip-448")]
    Medsiglip448,
}

#[derive(Debug, Args)]
pub struct RandomModelArgs {
    #[arg(long, value_enum, default_value = "vit-b16")]
    pub preset: Preset,
    /// Layers of the image tower (default: the preset's); fewer keeps every kernel
    /// shape of the preset at a fraction of the compute.
    #[arg(long)]
    pub vision_layers: Option<usize>,
    /// Layers of the text tower (default: the preset's).
    #[arg(long)]
    pub text_layers: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Standard deviation of the random weights (default: the preset's 0.02, CLIP's
    /// initialiser; a shallow model may need more for images to embed apart).
    #[arg(long)]
    pub std: Option<f32>,
    /// The folder to write (reused as it is when it already holds this model).
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Serialize)]
struct Written {
    folder: String,
    reused: bool,
    random_weights: bool,
    weights_bytes: u64,
}

/// Applies the layer and std overrides to a preset's fields.
fn apply(args: &RandomModelArgs, vision_layers: &mut usize, text_layers: &mut usize, std: &mut f32) {
    if let Some(layers) = args.vision_layers {
        *vision_layers = layers.max(1);
    }
    if let Some(layers) = args.text_layers {
        *text_layers = layers.max(1);
    }
    if let Some(value) = args.std {
        *std = value;
    }
}

pub fn run(args: &RandomModelArgs) -> Result<i32, Error> {
    let folder = &args.output;
    let write_error = |e| Error::io(folder.display(), e);
    let (reused, weights_bytes) = match args.preset {
        Preset::VitB16 | Preset::Tiny => {
            let mut config =
                if matches!(args.preset, Preset::VitB16) { RandomClipConfig::vit_b16() } else { RandomClipConfig::tiny() };
            apply(args, &mut config.vision_layers, &mut config.text_layers, &mut config.std);
            let reused = is_random_clip(folder, &config, args.seed);
            if !reused {
                write_random_clip(folder, &config, args.seed).map_err(write_error)?;
            }
            (reused, config.safetensors_len())
        }
        Preset::Medsiglip448 => {
            let mut config = RandomSiglipConfig::medsiglip_448();
            apply(args, &mut config.vision_layers, &mut config.text_layers, &mut config.std);
            let reused = is_random_siglip(folder, &config, args.seed);
            if !reused {
                write_random_siglip(folder, &config, args.seed).map_err(write_error)?;
            }
            (reused, config.safetensors_len())
        }
    };
    print_json(&Written { folder: folder.display().to_string(), reused, random_weights: true, weights_bytes });
    Ok(0)
}
