//! The JPEG-LS decoder (`kpl::preprocess::dicom::jpeg_ls`) against CharLS, the
//! reference implementation pydicom uses: streams that CharLS encoded and
//! decoded (tests/reference/jpeg_ls_generate.py writes them with CharLS's
//! samples), pydicom's own JPEG-LS test files (samples equal to pydicom's
//! `pixel_array`, renderings equal to the README's rule applied to it), and
//! clear errors, never a panic, for bad streams.

use std::path::{Path, PathBuf};

use kpl::preprocess::dicom::{self, jpeg_ls};
use kpl::preprocess::DecodeLimits;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jpeg_ls")
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = dir().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest() -> Value {
    serde_json::from_slice(&read("manifest.json")).unwrap()
}

fn entries<'a>(m: &'a Value, key: &str) -> &'a Vec<Value> {
    m[key].as_array().unwrap()
}

const MAX_SAMPLES: usize = 1 << 24;

#[test]
fn streams_decode_to_charls_samples() {
    let m = manifest();
    let cases = entries(&m, "cases");
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let stream = read(format!("cases/{name}.jls"));
        let expected: Vec<u16> =
            read(format!("cases/{name}.u16")).chunks_exact(2).map(|w| u16::from_le_bytes([w[0], w[1]])).collect();
        let decoded = match jpeg_ls::decode(&stream, MAX_SAMPLES) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let size = |k: &str| case[k].as_u64().unwrap() as usize;
        assert_eq!(
            (decoded.width, decoded.height, decoded.components, usize::from(decoded.precision)),
            (size("width"), size("height"), size("components"), size("precision")),
            "{name}"
        );
        if decoded.samples != expected {
            let first = decoded.samples.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(0);
            failures.push(format!(
                "{name}: {} of {} samples differ from CharLS's, the first at {first} ({} instead of {})",
                decoded.samples.iter().zip(&expected).filter(|(a, b)| a != b).count(),
                expected.len(),
                decoded.samples.get(first).copied().unwrap_or(0),
                expected.get(first).copied().unwrap_or(0),
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} streams:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Frame `frame` of a DICOM file's reference: its codestream and pydicom's
/// pixel_array of it, and whether the values are signed.
fn frame_reference(stem: &str, frame: usize) -> (Vec<u8>, Vec<i32>, bool) {
    let stream = read(format!("dicom/{stem}.f{frame}.jls"));
    for (ext, signed) in [("u8", false), ("u16", false), ("i16", true)] {
        let path = dir().join(format!("dicom/{stem}.f{frame}.{ext}"));
        if let Ok(bytes) = std::fs::read(&path) {
            let values = match ext {
                "u8" => bytes.iter().map(|&b| i32::from(b)).collect(),
                "u16" => bytes.chunks_exact(2).map(|w| i32::from(u16::from_le_bytes([w[0], w[1]]))).collect(),
                _ => bytes.chunks_exact(2).map(|w| i32::from(i16::from_le_bytes([w[0], w[1]]))).collect(),
            };
            return (stream, values, signed);
        }
    }
    panic!("{stem}: no reference samples for frame {frame}");
}

#[test]
fn dicom_frames_decode_to_pydicom_pixel_array() {
    let m = manifest();
    let files = entries(&m, "dicom");
    let mut checked = 0;
    for file in files {
        let name = file["name"].as_str().unwrap();
        let stem = name.trim_end_matches(".dcm");
        for frame in 0..file["frames"].as_u64().unwrap() as usize {
            let (stream, expected, signed) = frame_reference(stem, frame);
            let decoded = jpeg_ls::decode(&stream, MAX_SAMPLES).unwrap_or_else(|e| panic!("{name} frame {frame}: {e}"));
            // pydicom's sign correction: JPEG-LS codes samples unsigned; signed
            // ones are sign-extended at the codestream's precision.
            let shift = 32 - u32::from(decoded.precision);
            let values: Vec<i32> = decoded
                .samples
                .iter()
                .map(|&v| if signed { ((u32::from(v) << shift) as i32) >> shift } else { i32::from(v) })
                .collect();
            assert_eq!(values.len(), expected.len(), "{name} frame {frame}");
            let differ = values.iter().zip(&expected).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "{name} frame {frame}: {differ} samples differ from pydicom's pixel_array");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} frames");
}

#[test]
fn dicom_renderings_match_the_readme_rule_on_pydicom_pixels() {
    let m = manifest();
    let mut table = Vec::new();
    for file in entries(&m, "dicom") {
        let name = file["name"].as_str().unwrap();
        let bytes = read(format!("dicom/{name}"));
        let decoded = dicom::decode(&bytes, name, DecodeLimits::default(), None).unwrap_or_else(|e| panic!("{e}"));
        let png = dir().join(format!("dicom/{}.png", name.trim_end_matches(".dcm")));
        let reference = image::open(&png).unwrap().to_rgb8();
        let image = &decoded.image;
        assert_eq!((image.width as u32, image.height as u32), reference.dimensions(), "{name}");
        let diffs: Vec<u8> = image.data.iter().zip(reference.as_raw()).map(|(&a, &b)| a.abs_diff(b)).collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mae = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        table.push(format!("{name:40} {} frame {} mean {mae:.4} max {max}", file["transfer_syntax"], decoded.frame));
        // The samples are pydicom's exactly; only rounding of the window or the
        // YBR conversion may differ by one grey level.
        assert!(max <= 1, "{name}: a pixel differs by {max} grey levels from the reference");
    }
    eprintln!("{}", table.join("\n"));
}

/// Asserts that decoding the DICOM bytes fails with an error that starts with
/// the file's name and contains `expected`.
fn assert_refused(bytes: &[u8], name: &str, expected: &str) {
    let msg = match dicom::decode(bytes, name, DecodeLimits::default(), None) {
        Ok(_) => panic!("{name}: decoded, but {expected:?} was expected"),
        Err(e) => e.to_string(),
    };
    assert!(msg.starts_with(&format!("{name}: ")) && msg.contains(expected), "expected {expected:?}: {msg}");
}

/// The offset of a 2-byte big-endian field `at` bytes into the first segment of `marker`.
fn segment_field(stream: &[u8], marker: u8, at: usize) -> usize {
    stream.windows(2).position(|w| w == [0xFF, marker]).unwrap() + 4 + at
}

#[test]
fn bad_streams_give_clear_errors() {
    let stream = read("cases/grey8_near0_7x5.jls");
    let err = |bytes: &[u8]| jpeg_ls::decode(bytes, MAX_SAMPLES).unwrap_err();
    // Truncated inside the scan data, and inside the frame header.
    let e = err(&stream[..stream.len() - 12]);
    assert!(e.contains("ends early") || e.contains("truncated"), "{e}");
    assert!(err(&stream[..12]).contains("truncated"), "{}", err(&stream[..12]));
    // Not JPEG-LS: an SOF0 frame header instead of SOF55, no SOI.
    let mut sof0 = stream.clone();
    let at = sof0.windows(2).position(|w| w == [0xFF, 0xF7]).unwrap();
    sof0[at + 1] = 0xC0;
    assert!(err(&sof0).contains("not JPEG-LS"), "{}", err(&sof0));
    assert!(err(&stream[2..]).contains("SOI"), "{}", err(&stream[2..]));
    // Header values out of range: precision 1, NEAR above MAXVAL / 2, interleave 3.
    let mut p1 = stream.clone();
    p1[segment_field(&stream, 0xF7, 0)] = 1;
    assert!(err(&p1).contains("precision 1"), "{}", err(&p1));
    let sos = stream.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut near = stream.clone();
    near[sos + 7] = 200;
    assert!(err(&near).contains("NEAR"), "{}", err(&near));
    let mut ilv = read("cases/rgb8_ilv1_near0_33x17.jls");
    let sos = ilv.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    ilv[sos + 12] = 3;
    assert!(err(&ilv).contains("interleave mode 3"), "{}", err(&ilv));
    // A mapping table selected by the scan.
    let mut table = stream.clone();
    let sos = table.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    table[sos + 6] = 1;
    assert!(err(&table).contains("mapping table"), "{}", err(&table));
    // More samples than allowed: refused before allocating.
    assert!(jpeg_ls::decode(&stream, 34).unwrap_err().contains("larger than allowed"));
    // A restart interval whose markers are missing.
    let mut dri = b"\xff\xd8\xff\xdd\x00\x04\x00\x02".to_vec();
    dri.extend_from_slice(&read("cases/grey8_near0_33x17.jls")[2..]);
    let e = err(&dri);
    assert!(e.contains("restart marker") || e.contains("marker"), "{e}");
}

#[test]
fn dicom_attributes_disagreeing_with_the_stream_are_named() {
    let name = "jls_grey16_near3_minmax.dcm";
    let original = read(format!("dicom/{name}"));
    let patch = |tag: [u8; 4], value: u16| {
        let mut bytes = original.clone();
        let at = bytes.windows(4).position(|w| w == tag).unwrap() + 8;
        bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
        bytes
    };
    assert_refused(&patch([0x28, 0, 0x10, 0], 18), name, "the JPEG-LS frame is 33×17 but Columns × Rows say 33×18");
    assert_refused(&patch([0x28, 0, 0x11, 0], 32), name, "the JPEG-LS frame is 33×17 but Columns × Rows say 32×17");
    assert_refused(&patch([0x28, 0, 0x00, 0x01], 8), name, "Bits Stored 16 does not fit Bits Allocated 8");
    // 16-bit samples in an 8-bit image.
    let mut eight = patch([0x28, 0, 0x00, 0x01], 8);
    let at = eight.windows(4).position(|w| w == [0x28, 0, 0x01, 0x01]).unwrap() + 8;
    eight[at..at + 2].copy_from_slice(&8u16.to_le_bytes());
    let at = eight.windows(4).position(|w| w == [0x28, 0, 0x02, 0x01]).unwrap() + 8;
    eight[at..at + 2].copy_from_slice(&7u16.to_le_bytes());
    assert_refused(&eight, name, "the JPEG-LS frame has 16-bit samples but Bits Allocated is 8");
    // Three samples per pixel for a one-component stream.
    let mut rgb = patch([0x28, 0, 0x02, 0], 3);
    let at = rgb.windows(12).position(|w| w == b"MONOCHROME2 ").unwrap();
    rgb[at..at + 12].copy_from_slice(b"RGB         ");
    assert_refused(&rgb, name, "the JPEG-LS frame has 1 components but Samples per Pixel is 3");
    // Scan data zeroed (unary codes longer than LIMIT allows).
    let mut zeroed = original.clone();
    let sos = zeroed.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    zeroed[sos + 20..sos + 120].fill(0);
    assert_refused(&zeroed, name, "JPEG-LS: invalid JPEG-LS code");
}

/// Deterministic corruption of every stream: errors are fine, panics are not.
#[test]
fn corrupted_streams_never_panic() {
    let m = manifest();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut outcomes = [0usize; 2];
    for case in entries(&m, "cases") {
        let original = read(format!("cases/{}.jls", case["name"].as_str().unwrap()));
        for round in 0..40 {
            let mut bytes = original.clone();
            for _ in 0..1 + round % 3 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if round % 8 == 7 {
                bytes.truncate((next() as usize) % bytes.len());
            }
            outcomes[usize::from(jpeg_ls::decode(&bytes, MAX_SAMPLES).is_ok())] += 1;
        }
    }
    eprintln!("corrupted streams: {} errors, {} decoded", outcomes[0], outcomes[1]);
    assert!(outcomes[0] > 0);
}
