//! DICOM input: renderings of real files (pydicom's test files) against
//! pydicom + numpy doing the same steps (tests/reference/dicom_reference.py),
//! and clear errors, never a panic, for truncated, inconsistent or unsupported
//! files.

use std::path::{Path, PathBuf};
use std::process::Command;

use kpl::preprocess::dicom::{self, DicomSummary};
use kpl::preprocess::{decode_rgb8, DecodeLimits};
use serde_json::Value;

const MAX_MAE: f64 = 1.5;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom")
}

fn file(name: &str) -> Vec<u8> {
    std::fs::read(dir().join("files").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn summary() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(dir().join("reference/summary.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone()
}

fn reference_rgb(name: &str) -> image::RgbImage {
    let png = dir().join("reference").join(format!("{}.png", name.trim_end_matches(".dcm")));
    image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8()
}

fn decode_err(bytes: &[u8], name: &str) -> String {
    match dicom::decode(bytes, name, DecodeLimits::default(), None) {
        Ok(_) => panic!("{name}: expected an error"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{name}: ")), "the error does not name {name}: {msg}");
            msg
        }
    }
}

/// Offset of the value of `(group, element)` in an explicit VR little endian
/// file with a short (2-byte) length, and that length's offset.
fn short_element(bytes: &[u8], group: u16, element: u16) -> (usize, usize) {
    let mut needle = Vec::new();
    needle.extend_from_slice(&group.to_le_bytes());
    needle.extend_from_slice(&element.to_le_bytes());
    let at = bytes.windows(4).position(|w| w == needle.as_slice()).expect("tag present");
    (at + 8, at + 6)
}

#[test]
fn renderings_match_pydicom() {
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (name, entry) in summary() {
        if entry.get("unsupported").is_some() {
            continue;
        }
        let decoded = match dicom::decode(&file(&name), &name, DecodeLimits::default(), None) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let reference = reference_rgb(&name);
        let image = &decoded.image;
        if (image.width as u32, image.height as u32) != reference.dimensions() {
            failures.push(format!("{name}: {}×{} but the reference is {:?}", image.width, image.height, reference.dimensions()));
            continue;
        }
        let total: u64 =
            image.data.iter().zip(reference.as_raw()).map(|(&a, &b)| u64::from(a.abs_diff(b))).sum();
        let mae = total as f64 / image.data.len() as f64;
        let max = image.data.iter().zip(reference.as_raw()).map(|(&a, &b)| a.abs_diff(b)).max().unwrap_or(0);
        table.push(format!("{name:36} {:>24} {mae:8.4} {max:4}", entry["transfer_syntax"].as_str().unwrap()));
        if mae > MAX_MAE {
            failures.push(format!("{name}: mean absolute difference {mae:.3} > {MAX_MAE}"));
        }
        // The summary agrees with pydicom's reading.
        let s = &decoded.summary;
        assert_eq!(s.rows, entry["rows"].as_u64().unwrap() as u32, "{name}");
        assert_eq!(s.columns, entry["columns"].as_u64().unwrap() as u32, "{name}");
        assert_eq!(s.frames, entry["frames"].as_u64().unwrap() as u32, "{name}");
        assert_eq!(u64::from(decoded.frame), entry["frame"].as_u64().unwrap(), "{name}");
        assert_eq!(s.transfer_syntax, entry["transfer_syntax"].as_str().unwrap(), "{name}");
        assert_eq!(s.modality.as_deref(), entry["modality"].as_str(), "{name}");
        assert_eq!(s.body_part.as_deref(), entry["body_part"].as_str(), "{name}");
        assert_eq!(s.photometric_interpretation.as_deref(), entry["photometric"].as_str(), "{name}");
    }
    eprintln!("{:36} {:>24} {:>8} {:>4}\n{}", "file", "transfer syntax", "MAE", "max", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(table.len() >= 30, "only {} files compared", table.len());
}

#[test]
fn decode_rgb8_reads_dicom_by_extension_or_marker() {
    let bytes = file("CT_small.dcm");
    let direct = dicom::decode(&bytes, "CT_small.dcm", DecodeLimits::default(), None).unwrap().image;
    assert_eq!(decode_rgb8(&bytes, "CT_small.dcm", DecodeLimits::default()).unwrap(), direct);
    // No extension: the "DICM" marker at byte 128 is enough.
    assert_eq!(decode_rgb8(&bytes, "scans/IM000001", DecodeLimits::default()).unwrap(), direct);
    // Upper-case extension.
    assert_eq!(decode_rgb8(&bytes, "CT_SMALL.DCM", DecodeLimits::default()).unwrap(), direct);
}

#[test]
fn summary_holds_only_non_identifying_fields() {
    let s = dicom::summary(&file("CT_small.dcm"), "CT_small.dcm", DecodeLimits::default()).unwrap();
    assert_eq!(
        s,
        DicomSummary {
            modality: Some("CT".into()),
            body_part: None,
            rows: 128,
            columns: 128,
            frames: 1,
            photometric_interpretation: Some("MONOCHROME2".into()),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
        }
    );
    let json = serde_json::to_value(&s).unwrap();
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["body_part", "columns", "frames", "modality", "photometric_interpretation", "rows", "transfer_syntax"]);
    assert_eq!(s.transfer_syntax_name(), "Explicit VR Little Endian");
    // CT_small.dcm names a (test) patient: neither the summary nor an error carries it.
    let mut bytes = file("CT_small.dcm");
    let patient = b"CompressedSamples";
    assert!(bytes.windows(patient.len()).any(|w| w == patient));
    assert!(!json.to_string().contains("CompressedSamples"));
    let (rows, _) = short_element(&bytes, 0x0028, 0x0010);
    bytes[rows..rows + 2].copy_from_slice(&0u16.to_le_bytes());
    assert!(!decode_err(&bytes, "CT_small.dcm").contains("CompressedSamples"));
}

#[test]
fn frames_are_selectable_and_checked() {
    let bytes = file("emri_small.dcm");
    let limits = DecodeLimits::default();
    let middle = dicom::decode(&bytes, "emri_small.dcm", limits, None).unwrap();
    assert_eq!((middle.frame, middle.summary.frames), (5, 10));
    assert_eq!(dicom::decode(&bytes, "emri_small.dcm", limits, Some(5)).unwrap().image, middle.image);
    let first = dicom::decode(&bytes, "emri_small.dcm", limits, Some(0)).unwrap();
    assert_ne!(first.image, middle.image);
    // The RLE and JPEG 2000 copies give the same frames.
    for other in ["emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"] {
        for f in [0, 9] {
            let a = dicom::decode(&bytes, "emri_small.dcm", limits, Some(f)).unwrap().image;
            let b = dicom::decode(&file(other), other, limits, Some(f)).unwrap().image;
            assert_eq!(a, b, "{other} frame {f}");
        }
    }
    let err = dicom::decode(&bytes, "emri_small.dcm", limits, Some(10)).unwrap_err().to_string();
    assert!(err.starts_with("emri_small.dcm: ") && err.contains("frame 10 does not exist"), "{err}");
}

#[test]
fn lossless_encodings_of_one_image_agree() {
    let limits = DecodeLimits::default();
    let decode = |name: &str| dicom::decode(&file(name), name, limits, None).unwrap().image;
    let mr = decode("MR_small.dcm");
    for name in ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"] {
        assert_eq!(decode(name), mr, "{name}");
    }
    assert_eq!(decode("US1_J2KR.dcm"), decode("US1_UNCR.dcm"));
    assert_eq!(decode("SC_rgb_rle.dcm"), decode("SC_rgb.dcm"));
    assert_eq!(decode("SC_rgb_rle_16bit.dcm"), decode("SC_rgb_16bit.dcm"));
}

#[test]
fn truncated_files_are_clear_errors() {
    let bytes = file("CT_small.dcm");
    for cut in [10, 131, 140, 300, 1000, bytes.len() / 2, bytes.len() - 1] {
        let name = format!("CT_small_cut{cut}.dcm");
        let err = decode_err(&bytes[..cut], &name);
        assert!(
            err.contains("truncated") || err.contains("not a DICOM file") || err.contains("remain"),
            "{err}"
        );
    }
    // Truncated inside an encapsulated frame: the codec reports it.
    let rle = file("MR_small_RLE.dcm");
    decode_err(&rle[..rle.len() - 100], "MR_small_RLE_cut.dcm");
    let empty = decode_err(&[], "empty.dcm");
    assert!(empty.contains("empty"), "{empty}");
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    let mut bytes = file("CT_small.dcm");
    let (rows, _) = short_element(&bytes, 0x0028, 0x0010);
    let (cols, _) = short_element(&bytes, 0x0028, 0x0011);
    bytes[rows..rows + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    bytes[cols..cols + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    let err = decode_err(&bytes, "huge.dcm");
    assert!(err.contains("65535×65535") && err.contains("limit"), "{err}");
    // Within the limit but larger than the pixel data present.
    bytes[rows..rows + 2].copy_from_slice(&4000u16.to_le_bytes());
    bytes[cols..cols + 2].copy_from_slice(&4000u16.to_le_bytes());
    let err = decode_err(&bytes, "big.dcm");
    assert!(err.contains("Pixel Data holds") && err.contains("truncated file or wrong value length"), "{err}");
    bytes[rows..rows + 2].copy_from_slice(&0u16.to_le_bytes());
    let err = decode_err(&bytes, "empty_image.dcm");
    assert!(err.contains("no pixels"), "{err}");
    // A lower limit applies to rows × columns × frames × samples.
    let emri = file("emri_small.dcm");
    let err = dicom::decode(&emri, "emri_small.dcm", DecodeLimits { max_pixels: 64 * 64 * 9 }, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("10 frame(s)") && err.contains("limit"), "{err}");
}

#[test]
fn wrong_value_lengths_are_clear_errors() {
    let original = file("CT_small.dcm");
    // Rows declared 4 bytes long instead of 2.
    let mut bytes = original.clone();
    let (_, len) = short_element(&bytes, 0x0028, 0x0010);
    bytes[len..len + 2].copy_from_slice(&4u16.to_le_bytes());
    let err = decode_err(&bytes, "rows_len.dcm");
    assert!(err.contains("value length") || err.contains("invalid value representation"), "{err}");
    // Pixel Data declared ~4 GB long: refused from the header, nothing allocated.
    let mut bytes = original.clone();
    let at = bytes.windows(6).rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W']).unwrap();
    bytes[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = decode_err(&bytes, "pixel_len.dcm");
    assert!(err.contains("declares a value length of 4294967280 bytes"), "{err}");
    // A deflated data set that claims more than it holds.
    let dfl = file("image_dfl.dcm");
    decode_err(&dfl[..dfl.len() - 50], "image_dfl_cut.dcm");
}

#[test]
fn non_dicom_files_named_dcm_are_clear_errors() {
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/grey_80x120.png")).unwrap();
    let err = decode_rgb8(&png, "photo.dcm", DecodeLimits::default()).unwrap_err().to_string();
    assert!(err.starts_with("photo.dcm: ") && err.contains("not a DICOM file"), "{err}");
    let err = decode_rgb8(&[0u8; 500], "zeros.dcm", DecodeLimits::default()).unwrap_err().to_string();
    assert!(err.starts_with("zeros.dcm: ") && err.contains("not a DICOM file"), "{err}");
}

#[test]
fn unsupported_transfer_syntaxes_are_named() {
    let name = "MR_small_jpeg_ls_lossless.dcm";
    let err = decode_err(&file(name), name);
    assert!(err.contains("1.2.840.10008.1.2.4.80") && err.contains("JPEG-LS"), "{err}");
    // Still readable enough to describe.
    let s = dicom::summary(&file(name), name, DecodeLimits::default()).unwrap();
    assert_eq!((s.rows, s.columns, s.modality.as_deref()), (64, 64, Some("MR")));
    // An unknown (private) transfer syntax UID of the same length.
    let mut bytes = file("MR_small.dcm");
    let at = bytes.windows(20).position(|w| w == b"1.2.840.10008.1.2.1\0").unwrap();
    bytes[at..at + 20].copy_from_slice(b"1.2.840.10008.1.2.7\0");
    let err = decode_err(&bytes, "private.dcm");
    assert!(err.contains("1.2.840.10008.1.2.7 (unknown transfer syntax)"), "{err}");
}

/// Deterministic corruption of headers and compressed data: errors are fine,
/// panics are not (a panic aborts the browser's wasm instance).
#[test]
fn corrupted_files_never_panic() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names = [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "JPGExtended.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "image_dfl.dcm",
        "SC_rgb_rle_2frame.dcm",
        "JPEG2000.dcm",
        "JPEG-LL.dcm",
        "GDCMJ2K_TextGBR.dcm",
        "examples_ybr_color.dcm",
    ];
    let limits = DecodeLimits { max_pixels: 4_000_000 };
    // KPL_DICOM_CORRUPTIONS raises the number of copies per file for a longer hunt.
    let rounds = std::env::var("KPL_DICOM_CORRUPTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let mut outcomes = [0usize; 2];
    for name in names {
        let original = file(name);
        for round in 0..rounds {
            let mut bytes = original.clone();
            for _ in 0..1 + round % 4 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            if round % 10 == 9 {
                let cut = (next() as usize) % bytes.len();
                bytes.truncate(cut);
            }
            outcomes[usize::from(dicom::decode(&bytes, name, limits, None).is_ok())] += 1;
        }
    }
    eprintln!("corrupted copies: {} errors, {} decoded", outcomes[0], outcomes[1]);
}

fn kpl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kpl")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn cli_decode_writes_the_rendering() {
    let out_dir = std::env::temp_dir().join(format!("kpl-dicom-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let png = out_dir.join("emri.png");
    let out = kpl(&["decode", "tests/dicom/files/emri_small.dcm", "-o", png.to_str().unwrap(), "--frame", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["frame"], 2);
    assert_eq!(json["frames"], 10);
    assert_eq!(json["modality"], "MR");
    assert_eq!(json["transfer_syntax"], "1.2.840.10008.1.2.1");
    let written = image::open(&png).unwrap().to_rgb8();
    let expected = dicom::decode(&file("emri_small.dcm"), "x", DecodeLimits::default(), Some(2)).unwrap().image;
    assert_eq!(written.as_raw(), &expected.data);
    let out = kpl(&["decode", "tests/dicom/files/MR_small_jpeg_ls_lossless.dcm", "-o", png.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("MR_small_jpeg_ls_lossless.dcm") && err.contains("1.2.840.10008.1.2.4.80"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn cli_embeds_dicom_files() {
    let dir = std::env::temp_dir().join(format!("kpl-dicom-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A DICOM file without an extension is recognised by its marker.
    let bare = dir.join("IM0001");
    std::fs::write(&bare, file("MR_small.dcm")).unwrap();
    let out = kpl(&[
        "embed-image",
        "--model",
        "tests/fixtures/tiny-quickgelu-f32",
        "tests/dicom/files/CT_small.dcm",
        bare.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let embeddings = json["embeddings"].as_array().unwrap();
    assert_eq!(embeddings.len(), 2);
    assert!(embeddings[0]["file"].as_str().unwrap().ends_with("CT_small.dcm"));
    let norm: f64 = embeddings[0]["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-3);
    let _ = std::fs::remove_dir_all(&dir);
}
