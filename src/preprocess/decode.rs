//! Image bytes to 8-bit RGB, with the size checked from the header before any
//! pixel memory is allocated.
//!
//! JPEG goes through [`super::jpeg`], which decodes as Pillow (libjpeg-turbo)
//! does, byte for byte; the few JPEG kinds it does not cover (arithmetic,
//! 12-bit, lossless, hierarchical) and the other formats through the `image`
//! crate.
//!
//! Conversion rules (the same as the fixture script's reference):
//! - alpha is dropped without compositing, as Pillow's `convert("RGB")` does;
//! - grey is replicated to three channels;
//! - 16-bit samples become `round(v * 255 / 65535)` (never a tie for integers);
//! - float samples are clamped to [0, 1] and scaled to 0..255.
//!
//! Then the EXIF orientation, as transformers' `load_image` applies
//! `PIL.ImageOps.exif_transpose` before anything else: the Orientation tag (0x0112)
//! of the EXIF data's first IFD, 2–8 flipping or rotating the pixels as Pillow's
//! `Image.transpose` does (read and applied by the `image` crate:
//! `Orientation::from_exif_chunk`, `ImageDecoder::orientation`,
//! `DynamicImage::apply_orientation`). The EXIF data is where Pillow finds it: a
//! JPEG's APP1 `Exif` segments (our decoder returns them), PNG's `eXIf`, WebP's
//! `EXIF`, TIFF's own first IFD. Missing, malformed or out-of-range EXIF data
//! leaves the pixels as stored, as it does in Pillow. Not read: orientation given
//! only in XMP (Pillow's fallback) or in PNG's "Raw profile type exif" text. DICOM
//! has no EXIF.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use super::dicom::{VoiChoice, VoiUsed};
use super::jpeg::{Decoded, JpegError};
use super::pil_resize::Image8;
use crate::error::{Error, Result};

/// Limits on untrusted images. The pixel limit protects the 4 GB wasm heap and
/// the CLI alike; a 40000×40000 PNG is 2 KB on disk and 4.8 GB decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimits {
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_pixels: 100_000_000 }
    }
}

const SUPPORTED: &str = "PNG, JPEG, WebP, BMP, TIFF or DICOM";

pub fn sniff_format(bytes: &[u8]) -> Option<ImageFormat> {
    image::guess_format(bytes).ok().filter(|f| {
        matches!(f, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Bmp | ImageFormat::Tiff)
    })
}

/// Decodes `bytes` (named `name` in errors) to interleaved 8-bit RGB.
pub fn decode_rgb8(bytes: &[u8], name: &str, limits: DecodeLimits) -> Result<Image8> {
    decode_rgb8_with(bytes, name, limits, VoiChoice::Default).map(|(image, _)| image)
}

/// [`decode_rgb8`] with the VOI transformation of greyscale DICOM images
/// (`voi`; other formats and colour DICOM ignore it), and the window it used
/// (`None` for those), from the same decode.
pub fn decode_rgb8_with(
    bytes: &[u8],
    name: &str,
    limits: DecodeLimits,
    voi: VoiChoice,
) -> Result<(Image8, Option<VoiUsed>)> {
    if bytes.is_empty() {
        return Err(Error::image(name, "the file is empty"));
    }
    if super::dicom::is_dicom(bytes, name) {
        return super::dicom::decode_with(bytes, name, limits, None, voi).map(|d| (d.image, d.voi));
    }
    let format = sniff_format(bytes).ok_or_else(|| {
        Error::image(name, format!("not a supported image format (expected {SUPPORTED})"))
    })?;
    // Header-level bounds; the pixel-count check below is the one users see.
    let mut image_limits = Limits::default();
    image_limits.max_image_width = Some(u32::MAX);
    image_limits.max_image_height = Some(u32::MAX);
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(16).max(64 << 20));
    let reader = || {
        let mut r = ImageReader::with_format(Cursor::new(bytes), format);
        r.limits(image_limits.clone());
        r
    };
    if format == ImageFormat::Jpeg {
        match super::jpeg::decode(bytes, limits.max_pixels) {
            Ok(decoded) => {
                let orientation = exif_orientation(&decoded.exif);
                return Ok((oriented(from_jpeg(decoded), orientation, name)?, None));
            }
            Err(JpegError::TooLarge { width, height }) => return Err(too_large(name, width as u64, height as u64, limits)),
            Err(JpegError::Invalid(e)) => return Err(Error::image(name, format!("cannot decode the JPEG image: {e}"))),
            // Outside what the Pillow-exact decoder covers: the `image` crate's.
            Err(JpegError::Unsupported(_)) => {}
        }
    }
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| Error::image(name, format!("cannot read the {format:?} header: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Err(Error::image(name, format!("the image has no pixels ({width}×{height})")));
    }
    if pixels > limits.max_pixels {
        return Err(too_large(name, width.into(), height.into(), limits));
    }
    let cannot = |e: image::ImageError| Error::image(name, format!("cannot decode the {format:?} image: {e}"));
    let mut decoder = reader().into_decoder().map_err(cannot)?;
    // As `ImageReader::decode` does before it allocates.
    image_limits.reserve(decoder.total_bytes()).map_err(cannot)?;
    // Unreadable EXIF data is no orientation, as in Pillow.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(cannot)?;
    decoded.apply_orientation(orientation);
    Ok((to_rgb8(decoded), None))
}

/// The orientation in EXIF data that starts at its TIFF header (a JPEG's APP1
/// payload after `Exif\0\0`); none when there is no such data or it cannot be read.
fn exif_orientation(exif: &[u8]) -> Orientation {
    Orientation::from_exif_chunk(exif).unwrap_or(Orientation::NoTransforms)
}

/// `image` with `orientation` applied (`PIL.ImageOps.exif_transpose`).
fn oriented(image: Image8, orientation: Orientation, name: &str) -> Result<Image8> {
    if orientation == Orientation::NoTransforms {
        return Ok(image);
    }
    let (width, height) = (u32::try_from(image.width), u32::try_from(image.height));
    let rgb = match (width, height) {
        (Ok(w), Ok(h)) => RgbImage::from_raw(w, h, image.data),
        _ => None,
    }
    .ok_or_else(|| Error::image(name, "the decoded image does not match its size (a bug: please report it)"))?;
    let mut dynamic = DynamicImage::ImageRgb8(rgb);
    dynamic.apply_orientation(orientation);
    Ok(to_rgb8(dynamic))
}

fn too_large(name: &str, width: u64, height: u64, limits: DecodeLimits) -> Error {
    Error::image(
        name,
        format!(
            "the image is {width}×{height} = {:.1} megapixels, above the limit of {:.1} megapixels \
             (raise it with --max-megapixels)",
            (width * height) as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        ),
    )
}

/// The JPEG decoder's grey or RGB output as RGB (grey replicated).
fn from_jpeg(d: Decoded) -> Image8 {
    let data = if d.channels == 1 { d.data.iter().flat_map(|&v| [v; 3]).collect() } else { d.data };
    Image8 { width: d.width, height: d.height, channels: 3, data }
}

fn from_16(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

fn from_f32(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn to_rgb8(image: DynamicImage) -> Image8 {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let data: Vec<u8> = match image {
        DynamicImage::ImageRgb8(img) => img.into_raw(),
        DynamicImage::ImageRgba8(img) => img.pixels().flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma8(img) => img.pixels().flat_map(|p| [p[0]; 3]).collect(),
        DynamicImage::ImageLumaA8(img) => img.pixels().flat_map(|p| [p[0]; 3]).collect(),
        DynamicImage::ImageLuma16(img) => img.pixels().flat_map(|p| [from_16(p[0]); 3]).collect(),
        DynamicImage::ImageLumaA16(img) => img.pixels().flat_map(|p| [from_16(p[0]); 3]).collect(),
        DynamicImage::ImageRgb16(img) => img.pixels().flat_map(|p| p.0.map(from_16)).collect(),
        DynamicImage::ImageRgba16(img) => {
            img.pixels().flat_map(|p| [from_16(p[0]), from_16(p[1]), from_16(p[2])]).collect()
        }
        DynamicImage::ImageRgb32F(img) => img.pixels().flat_map(|p| p.0.map(from_f32)).collect(),
        DynamicImage::ImageRgba32F(img) => {
            img.pixels().flat_map(|p| [from_f32(p[0]), from_f32(p[1]), from_f32(p[2])]).collect()
        }
        other => other.to_rgb8().into_raw(),
    };
    Image8 { width, height, channels: 3, data }
}
