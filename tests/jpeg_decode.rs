//! `kpl::preprocess::jpeg` decodes to exactly Pillow's bytes: every case of
//! `tests/reference/jpeg_reference.py` (tests/jpeg/cases/NAME.jpg against
//! Pillow's NAME.png) and the fixture photos (tests/jpeg/fixture_images.json,
//! SHA-256 of Pillow's decode). Also: what the `image` crate's decoder gives on
//! the same files (printed, the reason this decoder exists), that
//! `decode_rgb8` uses it, and that bad or unsupported input is refused cleanly.

use std::path::{Path, PathBuf};

use kpl::preprocess::jpeg::{decode, JpegError};
use kpl::preprocess::{decode_rgb8, DecodeLimits};
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn cases() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("jpeg/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    files
}

/// Pillow's decode of a case: (width, height, channels, bytes).
fn pillow(jpg: &Path) -> (usize, usize, usize, Vec<u8>) {
    let png = image::open(jpg.with_extension("png")).unwrap();
    let (w, h) = (png.width() as usize, png.height() as usize);
    match png {
        image::DynamicImage::ImageLuma8(g) => (w, h, 1, g.into_raw()),
        other => (w, h, 3, other.to_rgb8().into_raw()),
    }
}

fn differing(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[test]
fn every_case_decodes_to_pillows_bytes() {
    let files = cases();
    assert!(files.len() >= 30, "only {} cases in tests/jpeg/cases", files.len());
    let mut failures = Vec::new();
    for jpg in &files {
        let name = jpg.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(jpg).unwrap();
        let (w, h, ch, expected) = pillow(jpg);
        match decode(&bytes, 1 << 30) {
            Ok(d) => {
                if (d.width, d.height, d.channels) != (w, h, ch) {
                    failures.push(format!("{name}: {}×{}×{}, Pillow {w}×{h}×{ch}", d.width, d.height, d.channels));
                } else if d.data != expected {
                    let n = differing(&d.data, &expected);
                    let max = d.data.iter().zip(&expected).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
                    failures.push(format!("{name}: {n} of {} samples differ (max {max})", expected.len()));
                }
            }
            Err(e) => failures.push(format!("{name}: {e:?}")),
        }
        // The `image` crate (zune-jpeg), for comparison: printed only.
        if let Ok(other) = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg) {
            let other = if ch == 1 { other.to_luma8().into_raw() } else { other.to_rgb8().into_raw() };
            if other.len() == expected.len() {
                let n = differing(&other, &expected);
                eprintln!("{name}: image crate differs from Pillow in {n} of {} samples ({:.1}%)", expected.len(), 100.0 * n as f64 / expected.len() as f64);
            }
        }
    }
    assert!(failures.is_empty(), "decoded differently from Pillow:\n{}", failures.join("\n"));
}

#[test]
fn fixture_photos_decode_to_pillows_bytes() {
    let text = std::fs::read_to_string(root().join("jpeg/fixture_images.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = expected.as_object().unwrap();
    assert!(!entries.is_empty());
    for (name, e) in entries {
        let bytes = std::fs::read(root().join("fixtures/images").join(name)).unwrap();
        let d = decode(&bytes, 1 << 30).unwrap();
        assert_eq!((d.width as u64, d.height as u64), (e["width"].as_u64().unwrap(), e["height"].as_u64().unwrap()), "{name}");
        assert_eq!(d.channels, if e["mode"] == "L" { 1 } else { 3 }, "{name}");
        let digest: String = Sha256::digest(&d.data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest, e["sha256"].as_str().unwrap(), "{name}: decoded bytes differ from Pillow's");
        // The library's image path uses this decoder (grey replicated to RGB).
        let rgb = decode_rgb8(&bytes, name, DecodeLimits::default()).unwrap();
        let as_rgb: Vec<u8> = if d.channels == 1 { d.data.iter().flat_map(|&v| [v; 3]).collect() } else { d.data.clone() };
        assert_eq!(rgb.data, as_rgb, "{name}: decode_rgb8 does not use the Pillow-exact decoder");
    }
}

#[test]
fn grey_cases_reach_decode_rgb8_replicated() {
    let jpg = root().join("jpeg/cases/grey_q75_37x29.jpg");
    let (w, h, ch, expected) = pillow(&jpg);
    assert_eq!(ch, 1);
    let rgb = decode_rgb8(&std::fs::read(&jpg).unwrap(), "grey.jpg", DecodeLimits::default()).unwrap();
    assert_eq!((rgb.width, rgb.height, rgb.channels), (w, h, 3));
    assert!(rgb.data.chunks(3).zip(&expected).all(|(px, &g)| px == [g, g, g]));
}

#[test]
fn the_pixel_limit_is_checked_from_the_frame_header() {
    let bytes = std::fs::read(root().join("jpeg/cases/rgb420_q75_50x34.jpg")).unwrap();
    assert_eq!(decode(&bytes, 50 * 34 - 1), Err(JpegError::TooLarge { width: 50, height: 34 }));
    let err = decode_rgb8(&bytes, "big.jpg", DecodeLimits { max_pixels: 1000 }).unwrap_err().to_string();
    assert!(err.starts_with("big.jpg: ") && err.contains("megapixels"), "{err}");
}

#[test]
fn truncated_and_corrupt_files_give_errors_not_panics() {
    for jpg in cases() {
        let bytes = std::fs::read(&jpg).unwrap();
        // Every prefix: an error or (past the last scan's data) an image; never a panic.
        for cut in (0..bytes.len()).step_by(7) {
            let _ = decode(&bytes[..cut], 1 << 30);
        }
        // Bytes flipped inside the headers and the scan.
        for at in (2..bytes.len()).step_by(13) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5A;
            let _ = decode(&bad, 1 << 30);
        }
    }
    let bytes = std::fs::read(root().join("jpeg/cases/rgb420_q75_50x34.jpg")).unwrap();
    let cut = &bytes[..bytes.len() * 2 / 3];
    match decode(cut, 1 << 30) {
        Err(JpegError::Invalid(e)) => assert!(e.contains("truncated"), "{e}"),
        other => panic!("a truncated file decoded: {other:?}"),
    }
    let err = decode_rgb8(cut, "cut.jpg", DecodeLimits::default()).unwrap_err().to_string();
    assert!(err.starts_with("cut.jpg: ") && err.contains("truncated"), "{err}");
    assert!(matches!(decode(b"\xff\xd8\xff\xd9", 1 << 30), Err(JpegError::Invalid(_))));
    assert!(matches!(decode(b"not a jpeg", 1 << 30), Err(JpegError::Invalid(_))));
}

/// Outside the Pillow-exact subset: `Unsupported`, and `decode_rgb8` falls
/// back to the `image` crate (here: a 12-bit frame header, which it refuses too).
#[test]
fn unsupported_processes_are_reported_as_such() {
    let bytes = std::fs::read(root().join("jpeg/cases/grey_q75_37x29.jpg")).unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    for (marker, precision) in [(0xC9u8, 8u8), (0xC3, 8), (0xC5, 8), (0xC0, 12)] {
        let mut other = bytes.clone();
        other[sof + 1] = marker;
        other[sof + 4] = precision;
        assert!(matches!(decode(&other, 1 << 30), Err(JpegError::Unsupported(_))), "SOF {marker:02X}, {precision} bits");
    }
}

/// Decode time of a 2000×1500 4:2:0 photo-like JPEG against the `image` crate
/// (zune-jpeg): `cargo test --release --test jpeg_decode -- --ignored --nocapture`.
/// Prints the medians and their ratio; asserts only that both decode it alike in size.
#[test]
#[ignore]
fn decode_speed_against_the_image_crate() {
    use std::time::Instant;
    let (w, h) = (2000u32, 1500u32);
    let mut rgb = image::RgbImage::new(w, h);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for (x, y, px) in rgb.enumerate_pixels_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 24) as f32;
        let (xf, yf) = (x as f32, y as f32);
        let base = 128.0 + 80.0 * (xf / 97.0).sin() * (yf / 61.0).cos();
        *px = image::Rgb([(base + noise) as u8, (base * 0.8 + xf / 20.0) as u8, (255.0 - base + noise) as u8]);
    }
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(&rgb).unwrap();
    let median = |f: &dyn Fn() -> usize| {
        let mut times: Vec<f64> = (0..7)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(f(), (w * h * 3) as usize);
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[3]
    };
    let ours = median(&|| decode(&bytes, 1 << 30).unwrap().data.len());
    let theirs = median(&|| image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap().to_rgb8().into_raw().len());
    eprintln!(
        "{w}×{h} JPEG ({} KB): ours {:.1} ms, image crate {:.1} ms, ratio {:.2}",
        bytes.len() / 1024,
        ours * 1e3,
        theirs * 1e3,
        ours / theirs
    );
}
