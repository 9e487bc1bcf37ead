//! `preprocessor_config.json`: Hugging Face `CLIPImageProcessor` (and the older
//! `CLIPFeatureExtractor` form where sizes are plain integers) and
//! `SiglipImageProcessor`, whose defaults differ (a square resize without crop,
//! mean and std 0.5) and which has no centre crop at all.

use serde::Deserialize;
use serde_json::Value;

use super::pil_resize::Filter;
use crate::error::{Error, Result};
use crate::models::clip::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};
use crate::models::Family;
/// `IMAGENET_STANDARD_MEAN` / `_STD`, `SiglipImageProcessor`'s defaults.
pub const IMAGENET_STANDARD_MEAN: [f32; 3] = [0.5; 3];
pub const IMAGENET_STANDARD_STD: [f32; 3] = [0.5; 3];

/// How the input image is brought to the model's square size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTarget {
    /// Scale so the short side has this length, keeping the aspect ratio.
    ShortestEdge(usize),
    /// Scale to exactly this size.
    Exact { height: usize, width: usize },
}

/// Where a centre crop starts when the margin is odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropRounding {
    /// `(size − crop) // 2` (`transformers`' `center_crop`).
    Floor,
    /// `int(round((size − crop) / 2.0))`, Python's half-to-even rounding
    /// (torchvision's `center_crop`, which open_clip's eval transform uses).
    HalfEven,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    pub resize: Option<ResizeTarget>,
    pub filter: Filter,
    pub crop: Option<(usize, usize)>,
    pub crop_rounding: CropRounding,
    pub rescale_factor: Option<f32>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub normalize: bool,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default = "yes")]
    do_resize: bool,
    size: Option<Value>,
    #[serde(default = "yes")]
    do_center_crop: bool,
    crop_size: Option<Value>,
    #[serde(default = "yes")]
    do_rescale: bool,
    rescale_factor: Option<f32>,
    #[serde(default = "yes")]
    do_normalize: bool,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
    resample: Option<i64>,
}

fn yes() -> bool {
    true
}

impl Preprocessing {
    /// CLIP's standard preprocessing for a model of this input size, used when a
    /// folder has no `preprocessor_config.json`.
    pub fn clip_default(image_size: usize) -> Self {
        Self {
            resize: Some(ResizeTarget::ShortestEdge(image_size)),
            filter: Filter::Bicubic,
            crop: Some((image_size, image_size)),
            crop_rounding: CropRounding::Floor,
            rescale_factor: Some(1.0 / 255.0),
            mean: OPENAI_CLIP_MEAN,
            std: OPENAI_CLIP_STD,
            normalize: true,
        }
    }

    /// SigLIP's: `SiglipImageProcessor`'s defaults, the size the model's.
    pub fn siglip_default(image_size: usize) -> Self {
        Self {
            resize: Some(ResizeTarget::Exact { height: image_size, width: image_size }),
            filter: Filter::Bicubic,
            crop: None,
            crop_rounding: CropRounding::Floor,
            rescale_factor: Some(1.0 / 255.0),
            mean: IMAGENET_STANDARD_MEAN,
            std: IMAGENET_STANDARD_STD,
            normalize: true,
        }
    }

    /// open_clip's eval transform (`image_transform_v2(is_train=False)`):
    /// `shortest`: torchvision `Resize(size)` of the short side (Pillow, the
    /// named interpolation), `CenterCrop(size)`; `squash`: `Resize((size,
    /// size))`; then `ToTensor` and `Normalize(mean, std)`.
    pub fn open_clip(cfg: &crate::models::open_clip::config::PreprocessCfg) -> Self {
        use crate::models::open_clip::config::{Interpolation, ResizeMode};
        let size = cfg.size;
        let (resize, crop) = match cfg.resize_mode {
            ResizeMode::Shortest => (ResizeTarget::ShortestEdge(size), Some((size, size))),
            ResizeMode::Squash => (ResizeTarget::Exact { height: size, width: size }, None),
        };
        Self {
            resize: Some(resize),
            filter: match cfg.interpolation {
                Interpolation::Bicubic => Filter::Bicubic,
                Interpolation::Bilinear => Filter::Bilinear,
            },
            crop,
            crop_rounding: CropRounding::HalfEven,
            rescale_factor: Some(1.0 / 255.0),
            mean: cfg.mean,
            std: cfg.std,
            normalize: true,
        }
    }

    /// The preprocessing of a folder without `preprocessor_config.json`.
    pub fn family_default(family: Family, image_size: usize) -> Self {
        match family {
            Family::Clip => Self::clip_default(image_size),
            Family::Siglip => Self::siglip_default(image_size),
            // open_clip's `PreprocessCfg` defaults (the folder's own come from its open_clip_config.json).
            Family::OpenClip => Self { crop_rounding: CropRounding::HalfEven, ..Self::clip_default(image_size) },
        }
    }

    /// Reads the file with the family's defaults for what it leaves out.
    pub fn from_json(bytes: &[u8], path: &str, image_size: usize, family: Family) -> Result<Self> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| Error::model(path, format!("not a usable preprocessor config: {e}")))?;
        let bad = |m: String| Error::model(path, m);
        let defaults = Self::family_default(family, image_size);
        let resize = if raw.do_resize {
            Some(match &raw.size {
                None => defaults.resize.unwrap_or(ResizeTarget::ShortestEdge(image_size)),
                Some(v) => parse_resize(v).map_err(bad)?,
            })
        } else {
            None
        };
        // `SiglipImageProcessor` has no centre crop (nor the flag).
        let crop = if raw.do_center_crop && family == Family::Clip {
            Some(match &raw.crop_size {
                None => (image_size, image_size),
                Some(v) => parse_crop(v).map_err(bad)?,
            })
        } else {
            None
        };
        let filter = match raw.resample.unwrap_or(3) {
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            other => {
                return Err(bad(format!(
                    "resample {other} is not supported (2 = bilinear and 3 = bicubic are)"
                )))
            }
        };
        let triple = |v: Option<Vec<f32>>, default: [f32; 3], name: &str| -> Result<[f32; 3]> {
            match v {
                None => Ok(default),
                Some(v) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
                Some(v) if v.len() == 1 => Ok([v[0]; 3]),
                Some(v) => Err(bad(format!("{name} has {} values, expected 3", v.len()))),
            }
        };
        let std = triple(raw.image_std, defaults.std, "image_std")?;
        if std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return Err(bad("image_std values must be positive".into()));
        }
        Ok(Self {
            resize,
            filter,
            crop,
            crop_rounding: CropRounding::Floor,
            rescale_factor: raw.do_rescale.then(|| raw.rescale_factor.unwrap_or(1.0 / 255.0)),
            mean: triple(raw.image_mean, defaults.mean, "image_mean")?,
            std,
            normalize: raw.do_normalize,
        })
    }
}

fn positive(v: &Value, what: &str) -> std::result::Result<usize, String> {
    v.as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| format!("{what} must be a positive integer, found {v}"))
}

fn parse_resize(v: &Value) -> std::result::Result<ResizeTarget, String> {
    if v.is_number() {
        return Ok(ResizeTarget::ShortestEdge(positive(v, "size")?));
    }
    if let Some(edge) = v.get("shortest_edge") {
        return Ok(ResizeTarget::ShortestEdge(positive(edge, "size.shortest_edge")?));
    }
    match (v.get("height"), v.get("width")) {
        (Some(h), Some(w)) => Ok(ResizeTarget::Exact {
            height: positive(h, "size.height")?,
            width: positive(w, "size.width")?,
        }),
        _ => Err(format!("size {v} is neither an integer, {{shortest_edge}} nor {{height, width}}")),
    }
}

fn parse_crop(v: &Value) -> std::result::Result<(usize, usize), String> {
    if v.is_number() {
        let n = positive(v, "crop_size")?;
        return Ok((n, n));
    }
    match (v.get("height"), v.get("width")) {
        (Some(h), Some(w)) => Ok((positive(h, "crop_size.height")?, positive(w, "crop_size.width")?)),
        _ => Err(format!("crop_size {v} is neither an integer nor {{height, width}}")),
    }
}
