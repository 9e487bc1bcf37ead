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

/// The pixel kinds and encodings of `tests/dicom/kinds/` (1-bit, 32-bit, float,
/// an encoding that contradicts the transfer syntax), written and rendered by
/// pydicom (tests/reference/dicom_kinds.py): every sample within 1 grey level,
/// and a warning for each mismatched encoding.
#[test]
fn pixel_kinds_match_pydicom() {
    let kinds = dir().join("kinds");
    let text = std::fs::read_to_string(kinds.join("reference.json")).unwrap();
    let reference: serde_json::Map<String, Value> = serde_json::from_str::<Value>(&text).unwrap().as_object().unwrap().clone();
    let mut failures = Vec::new();
    for (name, entry) in &reference {
        let bytes = std::fs::read(kinds.join(name)).unwrap();
        let decoded = match dicom::decode(&bytes, name, DecodeLimits::default(), None) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{name} ({}): {e}", entry["what"]));
                continue;
            }
        };
        let png = kinds.join(entry["png"].as_str().unwrap());
        let expected = image::open(&png).unwrap().to_rgb8();
        let image = &decoded.image;
        assert_eq!((image.width as u32, image.height as u32), expected.dimensions(), "{name}");
        let max = image.data.iter().zip(expected.as_raw()).map(|(&a, &b)| a.abs_diff(b)).max().unwrap_or(0);
        if max > 1 {
            failures.push(format!("{name} ({}): a sample differs by {max} from pydicom's rendering", entry["what"]));
        }
        assert!(expected.as_raw().iter().any(|&v| v != expected.as_raw()[0]), "{name}: a flat reference tests little");
        let warnings = &decoded.summary.warnings;
        if entry["mismatch"] == true {
            assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
            assert!(warnings[0].contains("the data set is encoded in"), "{name}: {warnings:?}");
        } else {
            assert!(warnings.is_empty(), "{name}: {warnings:?}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(reference.len() >= 15, "only {} files", reference.len());
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
            warnings: vec![],
            windows: vec![],
        }
    );
    let json = serde_json::to_value(&s).unwrap();
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["body_part", "columns", "frames", "modality", "photometric_interpretation", "rows", "transfer_syntax", "warnings", "windows"]
    );
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

/// MR_small_jpeg_ls_lossless.dcm with its transfer syntax UID changed to
/// JPEG 2000 Part 2, which the decoder does not support.
fn part2_copy() -> Vec<u8> {
    let mut bytes = file("MR_small_jpeg_ls_lossless.dcm");
    let at = bytes.windows(22).position(|w| w == b"1.2.840.10008.1.2.4.80").unwrap();
    bytes[at..at + 22].copy_from_slice(b"1.2.840.10008.1.2.4.92");
    bytes
}

#[test]
fn unsupported_transfer_syntaxes_are_named() {
    // JPEG-LS lossless relabelled as JPEG 2000 Part 2 (a UID of the same length).
    let name = "MR_small_j2k_part2.dcm";
    let bytes = part2_copy();
    let err = decode_err(&bytes, name);
    assert!(err.contains("1.2.840.10008.1.2.4.92") && err.contains("JPEG 2000 Part 2"), "{err}");
    // Still readable enough to describe.
    let s = dicom::summary(&bytes, name, DecodeLimits::default()).unwrap();
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
        "MR_small_jpeg_ls_lossless.dcm",
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
    let part2 = out_dir.join("MR_small_j2k_part2.dcm");
    std::fs::write(&part2, part2_copy()).unwrap();
    let out = kpl(&["decode", part2.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("MR_small_j2k_part2.dcm") && err.contains("1.2.840.10008.1.2.4.92"), "{err}");
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

// ------------------------------------------------ field case: big endian OW

/// `../shared/field-cases/NAME` when that folder exists (the shared field
/// cases), else the committed copy in `tests/dicom/field-cases/`; both must be
/// the same bytes, so the test never skips silently and never drifts.
fn field_case(name: &str) -> Vec<u8> {
    let committed = dir().join("field-cases").join(name);
    let committed_bytes = std::fs::read(&committed).unwrap_or_else(|e| panic!("{}: {e}", committed.display()));
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/field-cases").join(name);
    match std::fs::read(&shared) {
        Ok(bytes) => {
            assert_eq!(bytes, committed_bytes, "{} differs from {}", shared.display(), committed.display());
            bytes
        }
        Err(_) => committed_bytes,
    }
}

/// The uint8 values and shape of a `.npy` file (version 1, C order).
fn npy_u8(bytes: &[u8]) -> (Vec<usize>, Vec<u8>) {
    assert!(bytes.starts_with(b"\x93NUMPY\x01"), "not a version 1 .npy file");
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '|u1'") && header.contains("'fortran_order': False"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    (shape, bytes[10 + header_len..].to_vec())
}

#[test]
fn big_endian_ow_8bit_rgb_field_case_matches_pydicom() {
    let bytes = field_case("be_rgb8_ow_3x3.dcm");
    let (shape, expected) = npy_u8(&field_case("be_rgb8_ow_3x3.expected_rgb.npy"));
    assert_eq!(shape, [3, 3, 3]);
    assert_eq!(
        expected,
        [0, 9, 18, 27, 36, 45, 54, 63, 72, 81, 90, 99, 108, 117, 126, 135, 144, 153, 162, 171, 180, 189, 198, 207, 216, 225, 234]
    );
    let decoded = dicom::decode(&bytes, "be_rgb8_ow_3x3.dcm", DecodeLimits::default(), None).unwrap();
    assert_eq!((decoded.image.width, decoded.image.height, decoded.image.channels), (3, 3, 3));
    assert_eq!(decoded.image.data, expected);
    assert_eq!(decoded.summary.transfer_syntax, "1.2.840.10008.1.2.2");
    // The same through the image path every command takes.
    assert_eq!(decode_rgb8(&bytes, "be_rgb8_ow_3x3.dcm", DecodeLimits::default()).unwrap().data, expected);
}

#[test]
fn cli_decodes_the_big_endian_ow_field_case() {
    let out_dir = std::env::temp_dir().join(format!("kpl-dicom-field-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let input = out_dir.join("be_rgb8_ow_3x3.dcm");
    std::fs::write(&input, field_case("be_rgb8_ow_3x3.dcm")).unwrap();
    let png = out_dir.join("out.png");
    let out = kpl(&["decode", input.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kpl decode failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((json["rows"].as_u64(), json["columns"].as_u64()), (Some(3), Some(3)));
    let (_, expected) = npy_u8(&field_case("be_rgb8_ow_3x3.expected_rgb.npy"));
    assert_eq!(image::open(&png).unwrap().to_rgb8().as_raw(), &expected);
    let _ = std::fs::remove_dir_all(&out_dir);
}

fn raw_file(name: &str) -> Vec<u8> {
    std::fs::read(dir().join("raw").join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn raw_reference(name: &str, suffix: &str) -> image::RgbImage {
    let png = dir().join("raw").join(format!("{}{suffix}.png", name.trim_end_matches(".dcm")));
    image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8()
}

#[test]
fn big_endian_ow_frames_are_cut_after_unswapping_the_whole_value() {
    // Frames of 27 and 15 bytes: every frame after the first starts inside a
    // swapped 16-bit word (tests/dicom/make_raw_datasets.py; pydicom's renderings).
    for (name, frames) in [("be_rgb8_ow_3x3x2.dcm", 2), ("be_grey8_ow_5x3x3.dcm", 3)] {
        let bytes = raw_file(name);
        let middle = dicom::decode(&bytes, name, DecodeLimits::default(), None).unwrap();
        assert_eq!((middle.frame, middle.summary.frames), (frames / 2, frames), "{name}");
        assert_eq!(middle.image.data, raw_reference(name, "").into_raw(), "{name} frame {}", frames / 2);
        let first = dicom::decode(&bytes, name, DecodeLimits::default(), Some(0)).unwrap();
        assert_eq!(first.image.data, raw_reference(name, ".frame0").into_raw(), "{name} frame 0");
        for f in 0..frames {
            dicom::decode(&bytes, name, DecodeLimits::default(), Some(f)).unwrap();
        }
    }
    // The stored samples of the RGB file are 9·i mod 256, as in the field case.
    let rgb = dicom::decode(&raw_file("be_rgb8_ow_3x3x2.dcm"), "x.dcm", DecodeLimits::default(), Some(1)).unwrap();
    let expected: Vec<u8> = (27u32..54).map(|i| (i * 9 % 256) as u8).collect();
    assert_eq!(rgb.image.data, expected);
}

#[test]
fn big_endian_ow_of_odd_length_is_an_error_not_a_panic() {
    // The field case with Pixel Data declared 27 bytes instead of 28: the last
    // byte has lost its partner in a 16-bit word.
    let mut bytes = field_case("be_rgb8_ow_3x3.dcm");
    let at = bytes.windows(6).rposition(|w| w == [0x7F, 0xE0, 0x00, 0x10, b'O', b'W']).unwrap();
    assert_eq!(bytes[at + 8..at + 12], 28u32.to_be_bytes());
    bytes[at + 8..at + 12].copy_from_slice(&27u32.to_be_bytes());
    bytes.pop();
    let err = decode_err(&bytes, "odd.dcm");
    assert!(err.contains("Pixel Data holds 27 bytes") && err.contains("odd length"), "{err}");
    assert!(err.contains(&format!("Pixel Data (7FE0,0010) at byte {at}")), "{err}");
}

// ------------------------------------------ files without preamble and DICM

/// Files made by tests/dicom/make_raw_datasets.py from the committed test files:
/// each against pydicom's `dcmread(force=True)` rendering, and against the
/// Part 10 file it was made from.
#[test]
fn files_without_preamble_read_as_pydicom_reads_them() {
    let text = std::fs::read_to_string(dir().join("raw/raw.json")).unwrap();
    let summary: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    let sources = [
        ("MR_small_implicit_raw.dcm", "MR_small.dcm"),
        ("CT_small_explicit_raw", "CT_small.dcm"),
        ("SC_rgb_acr_nema", "SC_rgb.dcm"),
        ("MR_small_bigendian_nopreamble", "MR_small_bigendian.dcm"),
    ];
    for (name, source) in sources {
        let entry = &summary[name];
        let bytes = raw_file(name);
        assert!(!bytes.get(128..132).is_some_and(|m| m == b"DICM"), "{name} has a DICM marker");
        // Recognised by content, whatever the name.
        for shown in [name, "IM000001", "scan.png"] {
            assert!(dicom::is_dicom(&bytes, shown), "{name} as {shown}");
        }
        let decoded = dicom::decode(&bytes, name, DecodeLimits::default(), None).unwrap_or_else(|e| panic!("{e}"));
        let s = &decoded.summary;
        assert_eq!(s.transfer_syntax, entry["transfer_syntax"].as_str().unwrap(), "{name}");
        assert_eq!(u64::from(s.rows), entry["rows"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(s.columns), entry["columns"].as_u64().unwrap(), "{name}");
        assert_eq!(u64::from(s.frames), entry["frames"].as_u64().unwrap(), "{name}");
        assert_eq!(s.modality.as_deref(), entry["modality"].as_str(), "{name}");
        assert_eq!(s.photometric_interpretation.as_deref(), entry["photometric"].as_str(), "{name}");
        let reference = raw_reference(name, "");
        let total: u64 =
            decoded.image.data.iter().zip(reference.as_raw()).map(|(&a, &b)| u64::from(a.abs_diff(b))).sum();
        let mae = total as f64 / decoded.image.data.len() as f64;
        assert_eq!(decoded.image.data.len(), reference.as_raw().len(), "{name}");
        assert!(mae <= MAX_MAE, "{name}: mean absolute difference {mae:.3} > {MAX_MAE}");
        // The same pixels as the Part 10 file the data set came from.
        let original = dicom::decode(&file(source), source, DecodeLimits::default(), None).unwrap();
        assert_eq!(decoded.image, original.image, "{name} vs {source}");
        // And through the image path of every command, by content alone.
        assert_eq!(decode_rgb8(&bytes, "IM000001", DecodeLimits::default()).unwrap(), original.image, "{name}");
    }
}

/// An implicit VR little endian element.
fn implicit_element(group: u16, element: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
    out
}

#[test]
fn only_plausible_data_sets_are_taken_for_dicom() {
    let limits = DecodeLimits::default();
    // A data set that starts with a patient element (group 0010): not group 0008.
    let mut patient = implicit_element(0x0010, 0x0010, b"Doe^John");
    patient.extend(implicit_element(0x0028, 0x0010, &2u16.to_le_bytes()));
    assert!(!dicom::is_dicom(&patient, "IM0001"));
    let err = decode_rgb8(&patient, "IM0001", limits).unwrap_err().to_string();
    assert!(err.contains("not a supported image format"), "{err}");
    let err = decode_err(&patient, "patient.dcm");
    assert!(err.contains("not a DICOM file") && err.contains("group 0008"), "{err}");
    assert!(!err.contains("Doe"), "{err}");
    // Group 0008, but the second element goes backwards: not plausible.
    let mut backwards = implicit_element(0x0008, 0x0060, b"CT");
    backwards.extend(implicit_element(0x0008, 0x0016, b"1.2.3\0"));
    assert!(!dicom::is_dicom(&backwards, "IM0001"));
    // A group length element that is not 4 bytes long.
    assert!(!dicom::is_dicom(&implicit_element(0x0008, 0x0000, &[0; 8]), "IM0001"));
    // Other formats and text are never taken for DICOM by content.
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/grey_80x120.png")).unwrap();
    assert!(!dicom::is_dicom(&png, "grey.png"));
    assert!(!dicom::is_dicom(b"just some text, not an image", "notes"));
    // A short but complete data set is DICOM (and then a clear error: no pixels).
    let mut tiny = implicit_element(0x0008, 0x0060, b"CT");
    tiny.extend(implicit_element(0x0028, 0x0010, &2u16.to_le_bytes()));
    assert!(dicom::is_dicom(&tiny, "IM0001"));
    let err = decode_err(&tiny, "tiny");
    assert!(err.contains("Columns (0028,0011) is missing"), "{err}");
}

#[test]
fn structural_errors_name_the_element_and_its_offset() {
    // Pixel Data declared ~4 GB long: the element and where its header is.
    let mut bytes = file("CT_small.dcm");
    let at = bytes.windows(6).rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W']).unwrap();
    bytes[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = decode_err(&bytes, "pixel_len.dcm");
    assert!(err.contains(&format!("Pixel Data (7FE0,0010) at byte {at} declares a value length")), "{err}");
    // Rows with a 4-byte value in an implicit VR data set without meta.
    let mut raw = raw_file("MR_small_implicit_raw.dcm");
    let rows = raw.windows(8).position(|w| w == [0x28, 0x00, 0x10, 0x00, 2, 0, 0, 0]).unwrap();
    raw[rows + 4] = 4;
    raw.splice(rows + 10..rows + 10, [0, 0]);
    let err = decode_err(&raw, "rows.dcm");
    assert!(err.contains(&format!("Rows (0028,0010) at byte {rows} has a value length of 4 bytes")), "{err}");
    assert!(err.contains("read as a data set without file meta information, in implicit VR little endian"), "{err}");
    // Truncated inside a data set without meta: offsets are file offsets.
    let acr = raw_file("SC_rgb_acr_nema");
    let err = decode_err(&acr[..acr.len() - 10], "acr_cut");
    assert!(err.contains("Pixel Data (7FE0,0010) at byte") && err.contains("declares a value length"), "{err}");
}

/// The window a user chooses (`VoiChoice`; CLI `--voi N` and `--window C,W`)
/// against pydicom + numpy under the same choice (tests/reference/dicom_kinds.py
/// `window_cases`): the library and `kpl decode` give every sample within 1 grey
/// level and say which window they used; the file's windows are listed with their
/// explanations; a window the file lacks is an error naming the file.
#[test]
fn window_choices_match_pydicom_in_the_library_and_the_cli() {
    use dicom::{VoiChoice, VoiUsed};
    let kinds = dir().join("kinds");
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(kinds.join("windows.json")).unwrap()).unwrap();
    let name = spec["file"].as_str().unwrap();
    let path = kinds.join(name);
    let bytes = std::fs::read(&path).unwrap();
    let tmp = std::env::temp_dir().join(format!("kpl-voi-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let renderings = spec["renderings"].as_array().unwrap();
    assert_eq!(renderings.len(), 5);
    let mut distinct = std::collections::BTreeSet::new();
    for r in renderings {
        let expected = image::open(kinds.join(r["png"].as_str().unwrap())).unwrap().to_rgb8();
        distinct.insert(expected.as_raw().clone());
        let (c, w) = (r["window"][0].as_f64().unwrap(), r["window"][1].as_f64().unwrap());
        let (choice, args, used) = match &r["choice"] {
            Value::Number(n) => {
                let n = n.as_u64().unwrap() as u32;
                (VoiChoice::Index(n), vec!["--voi".to_string(), n.to_string()], "file")
            }
            Value::String(s) if s == "default" => (VoiChoice::Default, vec![], "file"),
            Value::String(s) => (VoiChoice::window(c, w).unwrap(), vec![format!("--window={s}")], "given"),
            other => panic!("choice {other}"),
        };
        let decoded = dicom::decode_with(&bytes, name, DecodeLimits::default(), None, choice).unwrap();
        let max = decoded.image.data.iter().zip(expected.as_raw()).map(|(&a, &b)| a.abs_diff(b)).max().unwrap();
        assert!(max <= 1, "{choice:?}: a sample differs by {max} from pydicom's rendering");
        match decoded.voi.as_ref().unwrap() {
            VoiUsed::File { center, width, .. } | VoiUsed::Given { center, width } => {
                assert_eq!((*center, *width), (c, w), "{choice:?}")
            }
            other => panic!("{choice:?}: {other:?}"),
        }
        // The CLI: the same pixels in its PNG, and the window in its JSON line.
        let png = tmp.join(format!("{}.png", distinct.len()));
        let mut cli: Vec<String> = vec!["decode".into(), path.display().to_string(), "-o".into(), png.display().to_string()];
        cli.extend(args.iter().cloned());
        let out = kpl(&cli.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{cli:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(line["voi"]["kind"], used, "{cli:?}");
        assert_eq!((line["voi"]["center"].as_f64(), line["voi"]["width"].as_f64()), (Some(c), Some(w)), "{cli:?}");
        let written = image::open(&png).unwrap().to_rgb8();
        assert_eq!(written.as_raw(), &decoded.image.data, "{cli:?}");
        assert_eq!(line["windows"][1]["explanation"], "LUNG");
    }
    // default = window 0, window 1 = the lung window given by hand: three renderings.
    assert_eq!(distinct.len(), 3, "the choices should give different renderings");
    let summary = dicom::summary(&bytes, name, DecodeLimits::default()).unwrap();
    let listed: Vec<(f64, f64, Option<&str>)> =
        summary.windows.iter().map(|w| (w.center, w.width, w.explanation.as_deref())).collect();
    assert_eq!(listed, [(40.0, 400.0, Some("SOFT TISSUE")), (-600.0, 1500.0, Some("LUNG"))]);
    // A window the file does not carry: an error for that file, naming it.
    let err = dicom::decode_with(&bytes, name, DecodeLimits::default(), None, VoiChoice::Index(2)).unwrap_err();
    assert!(err.to_string().starts_with(&format!("{name}: window 2 was asked for")), "{err}");
    let out = kpl(&["decode", path.to_str().unwrap(), "-o", tmp.join("x.png").to_str().unwrap(), "--voi", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("carries 2 window(s)"));
    // A width below 1 is refused before any file is read.
    let out = kpl(&["decode", path.to_str().unwrap(), "-o", tmp.join("x.png").to_str().unwrap(), "--window=40,0.5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("width at least 1"));
    // Without a window, the frame's range, said as such.
    let ct = file("CT_small.dcm");
    let decoded = dicom::decode(&ct, "CT_small.dcm", DecodeLimits::default(), None).unwrap();
    assert!(matches!(decoded.voi, Some(VoiUsed::MinMax { .. })), "{:?}", decoded.voi);
    std::fs::remove_dir_all(&tmp).ok();
}

/// `--voi` and `--window` reach the images of the model commands too: on
/// `embed-image` and `classify`, `--voi 1` and the same window given by hand embed
/// alike, and differently from the default (window 0); a PNG is unaffected.
#[test]
fn model_commands_take_the_window_choice() {
    let ct = "tests/dicom/kinds/ct_two_windows.dcm";
    let png = "tests/fixtures/images/rgb_97x61.png";
    let embed = |extra: &[&str]| -> Vec<Vec<f64>> {
        let mut args = vec!["embed-image", "--model", "tests/fixtures/tiny-quickgelu-f32", ct, png];
        args.extend_from_slice(extra);
        let out = kpl(&args);
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        json["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
            .collect()
    };
    let default = embed(&[]);
    let second = embed(&["--voi", "1"]);
    let by_hand = embed(&["--window=-600,1500"]);
    assert_eq!(second, by_hand);
    assert_ne!(default[0], second[0]);
    assert_eq!(default[1], second[1], "a PNG does not depend on the DICOM window");
    let out = kpl(&["classify", "--model", "tests/fixtures/tiny-quickgelu-f32", "--labels", "a,b", ct, "--voi", "5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("window 5 was asked for"), "{}", String::from_utf8_lossy(&out.stderr));
}
