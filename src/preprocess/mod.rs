//! Image bytes → the model's pixel tensor, exactly as `CLIPImageProcessor` does:
//! decode to RGB, resize (short side, Pillow bicubic), centre crop (padding with
//! zeros when the image is smaller), rescale, normalise.

pub mod config;
pub mod decode;
pub mod dicom;
pub mod jpeg;
pub mod pil_resize;

pub use config::{CropRounding, Preprocessing, ResizeTarget};
pub use decode::{decode_rgb8, decode_rgb8_with, DecodeLimits};
use pil_resize::Image8;

/// A preprocessed image: channel-major [3, height, width] floats.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelTensor {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// The output size of `transformers`' `get_resize_output_image_size` with
/// `default_to_square=False`: the long side is truncated, not rounded.
pub fn shortest_edge_size(width: usize, height: usize, edge: usize) -> (usize, usize) {
    if width <= height {
        (edge, (edge as u64 * height as u64 / width as u64) as usize)
    } else {
        ((edge as u64 * width as u64 / height as u64) as usize, edge)
    }
}

/// Python's `int(round(margin / 2.0))` for a non-negative margin: halves go to the even neighbour.
fn half_even_half(margin: i64) -> i64 {
    let floor = margin.div_euclid(2);
    if margin % 2 == 1 && floor % 2 == 1 {
        floor + 1
    } else {
        floor
    }
}

/// `transformers.image_transforms.center_crop` on an 8-bit image, including its
/// zero padding when the crop is larger than the image; with
/// [`CropRounding::HalfEven`], torchvision's offsets where the image is large enough.
pub fn center_crop(image: &Image8, crop_h: usize, crop_w: usize, rounding: CropRounding) -> Image8 {
    let (h, w, ch) = (image.height as i64, image.width as i64, image.channels);
    let (ch_h, ch_w) = (crop_h as i64, crop_w as i64);
    // Python's floor division, also for negative numerators.
    let mut top = (h - ch_h).div_euclid(2);
    let mut left = (w - ch_w).div_euclid(2);
    if rounding == CropRounding::HalfEven && top >= 0 && left >= 0 {
        top = half_even_half(h - ch_h);
        left = half_even_half(w - ch_w);
    }
    let (padded, pad_top, pad_left) = if top >= 0 && left >= 0 {
        (None, 0, 0)
    } else {
        let new_h = ch_h.max(h);
        let new_w = ch_w.max(w);
        let pad_top = (new_h - h + 1) / 2;
        let pad_left = (new_w - w + 1) / 2;
        let mut data = vec![0u8; (new_h * new_w) as usize * ch];
        for y in 0..h {
            let src = &image.data[(y * w) as usize * ch..((y + 1) * w) as usize * ch];
            let start = (((y + pad_top) * new_w + pad_left) as usize) * ch;
            data[start..start + src.len()].copy_from_slice(src);
        }
        (Some(Image8 { width: new_w as usize, height: new_h as usize, channels: ch, data }), pad_top, pad_left)
    };
    top += pad_top;
    left += pad_left;
    let source = padded.as_ref().unwrap_or(image);
    let (sh, sw) = (source.height as i64, source.width as i64);
    let (y0, y1) = (top.max(0), (top + ch_h).min(sh));
    let (x0, x1) = (left.max(0), (left + ch_w).min(sw));
    let out_w = (x1 - x0) as usize;
    let mut data = Vec::with_capacity(((y1 - y0) as usize) * out_w * ch);
    for y in y0..y1 {
        let row = (y * sw) as usize * ch;
        data.extend_from_slice(&source.data[row + x0 as usize * ch..row + x1 as usize * ch]);
    }
    Image8 { width: out_w, height: (y1 - y0) as usize, channels: ch, data }
}

impl Preprocessing {
    /// Resize and crop, still 8-bit (what a page would show as "what the model sees").
    pub fn geometry(&self, image: &Image8) -> Image8 {
        let resized = match self.resize {
            None => image.clone(),
            Some(ResizeTarget::ShortestEdge(edge)) => {
                let (w, h) = shortest_edge_size(image.width, image.height, edge);
                pil_resize::resize(image, w.max(1), h.max(1), self.filter)
            }
            Some(ResizeTarget::Exact { height, width }) => pil_resize::resize(image, width, height, self.filter),
        };
        match self.crop {
            Some((h, w)) => center_crop(&resized, h, w, self.crop_rounding),
            None => resized,
        }
    }

    /// The model input for an RGB image.
    pub fn pixels(&self, image: &Image8) -> PixelTensor {
        let cropped = self.geometry(image);
        let plane = cropped.width * cropped.height;
        let mut data = vec![0f32; 3 * plane];
        for c in 0..3 {
            // The reference rescales in float64 before casting, so do the same.
            let (mean, std) = (f64::from(self.mean[c]), f64::from(self.std[c]));
            for i in 0..plane {
                let mut v = f64::from(cropped.data[i * 3 + c]);
                if let Some(factor) = self.rescale_factor {
                    v = (v * f64::from(factor)) as f32 as f64;
                }
                if self.normalize {
                    v = ((v as f32 - mean as f32) / std as f32) as f64;
                }
                data[c * plane + i] = v as f32;
            }
        }
        PixelTensor { height: cropped.height, width: cropped.width, data }
    }
}
