//! EXIF orientation as transformers' `load_image` applies it
//! (`PIL.ImageOps.exif_transpose`, then `convert("RGB")`): every case of
//! tests/exif/ decodes to exactly the bytes Pillow 13 gives
//! (tests/reference/exif_orientation.py wrote both), through our JPEG decoder
//! and the `image` crate's PNG, WebP and TIFF decoders.

use std::path::PathBuf;

use kpl::preprocess::{decode_rgb8, DecodeLimits};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("exif")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn every_case_decodes_to_pillows_exif_transposed_pixels() {
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap()).unwrap();
    let cases = reference.as_object().unwrap();
    assert_eq!(cases.len(), 39, "tests/exif/reference.json");
    let mut transposed = 0;
    let mut failed = Vec::new();
    for (name, want) in cases {
        let bytes = std::fs::read(dir().join(name)).unwrap();
        let image = decode_rgb8(&bytes, name, DecodeLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let size = (want["width"].as_u64().unwrap() as usize, want["height"].as_u64().unwrap() as usize);
        if size.0 < size.1 {
            transposed += 1;
        }
        if (image.width, image.height) != size || image.data != unhex(want["rgb"].as_str().unwrap()) {
            failed.push(format!("{name}: {}x{} (expected {}x{})", image.width, image.height, size.0, size.1));
        }
    }
    assert!(failed.is_empty(), "differ from Pillow: {failed:#?}");
    // Orientations 5-8 in four formats, and three of the JPEG edge cases.
    assert_eq!(transposed, 19);
}

/// Every orientation really changes the pixels (so the test above cannot pass by
/// ignoring the tag): the eight JPEGs give eight different images.
#[test]
fn the_eight_orientations_differ() {
    let mut seen = std::collections::HashSet::new();
    for o in 1..=8 {
        let name = format!("o{o}.jpg");
        let image = decode_rgb8(&std::fs::read(dir().join(&name)).unwrap(), &name, DecodeLimits::default()).unwrap();
        assert!(seen.insert((image.width, image.height, image.data)), "{name} repeats another orientation");
    }
}
