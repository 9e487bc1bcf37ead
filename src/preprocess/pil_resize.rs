//! Pillow's resampling (`ImagingResample`, 8 bits per channel), reproduced step for
//! step: separable convolution with the filter support widened by the scale when
//! shrinking (antialiasing), coefficients in 22-bit fixed point, horizontal pass
//! first, each pass rounded and clipped to 8 bits. CLIP's preprocessing resizes
//! with Pillow's bicubic filter, so matching it is what keeps our pixels equal to
//! the reference's; a generic bicubic would differ by several grey levels.

const PRECISION_BITS: u32 = 32 - 8 - 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Bilinear,
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Bicubic => {
                // Keys' cubic with a = -0.5, Pillow's choice.
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// For each output index: the first input index, the number of inputs used and
/// their fixed-point weights (`ksize` slots per output).
struct Coefficients {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let inv = 1.0 / filterscale;
        // C's (int) cast truncates toward zero; values below zero clamp anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for (x, slot) in k.iter_mut().enumerate().take(count) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * inv);
            *slot = w;
            total += w;
        }
        for x in 0..count {
            let w = if total != 0.0 { k[x] / total } else { k[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, count));
    }
    Coefficients { ksize, bounds, weights }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// An interleaved 8-bit image with `channels` values per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image8 {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

fn resample_horizontal(src: &Image8, out_width: usize, rows: std::ops::Range<usize>, c: &Coefficients) -> Image8 {
    let ch = src.channels;
    let height = rows.len();
    let mut data = vec![0u8; out_width * height * ch];
    for (out_y, y) in rows.enumerate() {
        let row = &src.data[y * src.width * ch..(y + 1) * src.width * ch];
        for xx in 0..out_width {
            let (xmin, count) = c.bounds[xx];
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            for channel in 0..ch {
                let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                for (x, &w) in k.iter().enumerate() {
                    acc += i32::from(row[(xmin + x) * ch + channel]) * w;
                }
                data[(out_y * out_width + xx) * ch + channel] = clip8(acc);
            }
        }
    }
    Image8 { width: out_width, height, channels: ch, data }
}

fn resample_vertical(src: &Image8, out_height: usize, row_offset: usize, c: &Coefficients) -> Image8 {
    let ch = src.channels;
    let stride = src.width * ch;
    let mut data = vec![0u8; stride * out_height];
    for yy in 0..out_height {
        let (ymin, count) = c.bounds[yy];
        let ymin = ymin - row_offset;
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        for i in 0..stride {
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for (y, &w) in k.iter().enumerate() {
                acc += i32::from(src.data[(ymin + y) * stride + i]) * w;
            }
            data[yy * stride + i] = clip8(acc);
        }
    }
    Image8 { width: src.width, height: out_height, channels: ch, data }
}

/// `Image.resize((width, height), resample=filter)` for an 8-bit image.
pub fn resize(src: &Image8, width: usize, height: usize, filter: Filter) -> Image8 {
    let need_horizontal = width != src.width;
    let need_vertical = height != src.height;
    let horizontal = precompute(src.width, width, filter);
    let vertical = precompute(src.height, height, filter);
    // Pillow (ImagingResampleInner, Resample.c) runs the vertical pass first
    // when the height shrinks by more than twice as many pixels as the width.
    let vertical_first = src.height > height && (src.height - height) as i64 > 2 * (src.width as i64 - width as i64);
    if vertical_first {
        let after_vertical = need_vertical.then(|| resample_vertical(src, height, 0, &vertical));
        let input = after_vertical.as_ref().unwrap_or(src);
        return match need_horizontal {
            true => resample_horizontal(input, width, 0..input.height, &horizontal),
            false => input.clone(),
        };
    }
    let mut current: Option<Image8> = None;
    let mut row_offset = 0;
    if need_horizontal {
        // Only the rows the vertical pass will read are resampled horizontally.
        let (first, _) = vertical.bounds[0];
        let (last_start, last_count) = vertical.bounds[height - 1];
        let rows = if need_vertical { first..last_start + last_count } else { 0..src.height };
        row_offset = rows.start;
        current = Some(resample_horizontal(src, width, rows, &horizontal));
    }
    if need_vertical {
        let input = current.as_ref().unwrap_or(src);
        let offset = if need_horizontal { row_offset } else { 0 };
        current = Some(resample_vertical(input, height, offset, &vertical));
    }
    current.unwrap_or_else(|| src.clone())
}
