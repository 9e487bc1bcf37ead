//! Every supported container decodes to the same RGB as the PNG it was made
//! from, and limits are enforced from the header.

mod common;

use kpl::preprocess::{decode_rgb8, DecodeLimits};

#[test]
fn lossless_formats_decode_identically() {
    let dir = common::fixtures().join("images");
    let png = decode_rgb8(&std::fs::read(dir.join("rgb_97x61.png")).unwrap(), "png", DecodeLimits::default()).unwrap();
    for ext in ["webp", "bmp", "tiff"] {
        let name = format!("rgb_97x61.{ext}");
        let other = decode_rgb8(&std::fs::read(dir.join(&name)).unwrap(), &name, DecodeLimits::default()).unwrap();
        assert_eq!(other, png, "{name} differs from the PNG");
    }
}

#[test]
fn sixteen_bit_grey_is_rounded_to_eight_bits() {
    let dir = common::fixtures().join("images");
    let bytes = std::fs::read(dir.join("grey16_70x90.png")).unwrap();
    let rgb = decode_rgb8(&bytes, "grey16", DecodeLimits::default()).unwrap();
    let decoded = image::load_from_memory(&bytes).unwrap().to_luma16();
    for (i, p) in decoded.pixels().enumerate() {
        let expected = ((u32::from(p[0]) + 128) / 257) as u8;
        assert_eq!(rgb.data[i * 3], expected);
        assert_eq!(rgb.data[i * 3 + 2], expected);
    }
}

#[test]
fn pixel_limit_is_checked_before_decoding() {
    let dir = common::fixtures().join("images");
    let bytes = std::fs::read(dir.join("grey_80x120.png")).unwrap();
    let err = decode_rgb8(&bytes, "grey_80x120.png", DecodeLimits { max_pixels: 1000 }).unwrap_err().to_string();
    assert!(err.starts_with("grey_80x120.png: ") && err.contains("megapixels"), "{err}");
}
