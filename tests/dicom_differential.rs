//! Differential check of the DICOM decoder against pydicom, on the generated
//! files of `tests/dicom/generated/` (written by pydicom itself with
//! `tests/reference/dicom_generate.py`, over the parameter space of the fuzz
//! generator `fuzz/src/dicom_gen.rs`; their renderings by pydicom + numpy under
//! the README's rule are in `reference.json`).
//!
//! For each file: where pydicom renders it, `dicom::decode` (the middle frame)
//! gives the same shape and every sample within 1 grey level; where pydicom
//! refuses it, `dicom::decode` returns an error. A panic is a failure too. The
//! failure message lists every failing file with its parameters.
//!
//! Regenerate (see the script's docstring for the Python setup):
//! `/work/venv-dicom/bin/python tests/reference/dicom_generate.py`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use kpl::preprocess::{dicom, DecodeLimits};
use serde_json::Value;

/// Largest difference allowed between our rendering and pydicom's, per sample.
const TOLERANCE: u8 = 1;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom/generated")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

/// The parameters that tell files apart, in one line.
fn describe(p: &Value) -> String {
    let s = |k: &str| match &p[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let mut out = format!(
        "{} {} {}x{}x{} spp={} BA={} BS={} HB={} PR={} PC={} VR={} pattern={} seed={}",
        s("transfer_syntax"),
        s("photometric_interpretation"),
        s("columns"),
        s("rows"),
        s("frames"),
        s("samples_per_pixel"),
        s("bits_allocated"),
        s("bits_stored"),
        s("high_bit"),
        s("pixel_representation"),
        s("planar_configuration"),
        s("pixel_vr"),
        s("pixel_pattern"),
        s("pixel_seed"),
    );
    if p["number_of_frames_element"] == true {
        out += " NumberOfFrames";
    }
    if !p["rescale_slope"].is_null() {
        out += &format!(" rescale={}x+{}", s("rescale_slope"), s("rescale_intercept"));
    }
    if !p["window_center"].is_null() {
        out += &format!(
            " window=c{}/w{}{}",
            s("window_center"),
            s("window_width"),
            if p["second_window"] == true { "+2nd" } else { "" }
        );
    }
    if let Some(pal) = p["palette"].as_object() {
        out += &format!(" palette=[{}, {}, {}]", pal["entries"], pal["first_mapped"], pal["bits"]);
    }
    if p["high_bits_garbage"] == true {
        out += " high-bits-garbage";
    }
    if p["pixel_data_delta"].as_i64().unwrap_or(0) != 0 {
        out += &format!(" pixel_data_delta={}", s("pixel_data_delta"));
    }
    if p["preamble"] == false {
        out += " no-preamble";
    }
    if let Some(k) = p["jpeg_predictor"].as_u64() {
        out += &format!(" predictor={k}");
    }
    out
}

enum Outcome {
    Pass,
    Fail(String),
}

fn check(entry: &Value, bytes: &[u8], name: &str) -> Outcome {
    let decoded = catch_unwind(AssertUnwindSafe(|| dicom::decode(bytes, name, DecodeLimits::default(), None)));
    let decoded = match decoded {
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Outcome::Fail(format!("PANIC: {msg}"));
        }
        Ok(d) => d,
    };
    if let Some(reason) = entry["refused"].as_str() {
        return match decoded {
            Err(_) => Outcome::Pass,
            Ok(_) => Outcome::Fail(format!("pydicom refuses it ({reason}) but we decode it")),
        };
    }
    let decoded = match decoded {
        Err(e) => return Outcome::Fail(format!("we refuse it: {}", e.to_string().replace('\n', " "))),
        Ok(d) => d,
    };
    let shape: Vec<usize> = entry["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let expected = hex(entry["rgb"].as_str().unwrap());
    let (h, w) = (shape[0], shape[1]);
    let image = &decoded.image;
    if (image.height, image.width) != (h, w) {
        return Outcome::Fail(format!("size {}x{}, pydicom {}x{}", image.width, image.height, w, h));
    }
    let frame = entry["frame"].as_u64().unwrap_or(0) as u32;
    if decoded.frame != frame {
        return Outcome::Fail(format!("frame {} rendered, pydicom's rule gives {frame}", decoded.frame));
    }
    let channels = if shape.len() == 3 { shape[2] } else { 1 };
    let mut max = 0u8;
    let mut over = 0usize;
    let mut first = None;
    for p in 0..h * w {
        for c in 0..3 {
            let want = expected[p * channels + if channels == 1 { 0 } else { c }];
            let got = image.data[p * image.channels + c];
            let d = want.abs_diff(got);
            if d > TOLERANCE {
                over += 1;
                first.get_or_insert((p % w, p / w, c, got, want));
            }
            max = max.max(d);
        }
    }
    if max > TOLERANCE {
        let (x, y, c, got, want) = first.unwrap();
        Outcome::Fail(format!(
            "max diff {max} grey levels, {over} of {} samples over {TOLERANCE} (first at x={x} y={y} channel {c}: ours {got}, pydicom {want})",
            h * w * 3
        ))
    } else {
        Outcome::Pass
    }
}

#[test]
fn generated_files_match_pydicom() {
    let reference: Value = serde_json::from_slice(&std::fs::read(dir().join("reference.json")).unwrap()).unwrap();
    let files = reference["files"].as_array().unwrap();
    assert!(files.len() >= 300, "only {} generated files", files.len());
    let mut failures = Vec::new();
    // transfer syntax -> (passed, failed)
    let mut by_syntax: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for entry in files {
        let name = entry["name"].as_str().unwrap();
        let bytes = std::fs::read(dir().join(name)).unwrap();
        let ts = entry["params"]["transfer_syntax"].as_str().unwrap().to_string();
        let counts = by_syntax.entry(ts).or_default();
        match check(entry, &bytes, name) {
            Outcome::Pass => counts.0 += 1,
            Outcome::Fail(why) => {
                counts.1 += 1;
                failures.push(format!("{name}: {why}\n    {}", describe(&entry["params"])));
            }
        }
    }
    std::panic::set_hook(quiet);
    println!("transfer syntax: passed / failed");
    for (ts, (pass, fail)) in &by_syntax {
        println!("  {ts}: {pass} / {fail}");
    }
    let refused = files.iter().filter(|e| e["refused"].is_string()).count();
    println!(
        "{} generated files ({refused} refused by pydicom {}): {} pass, {} fail",
        files.len(),
        reference["pydicom"].as_str().unwrap_or("?"),
        files.len() - failures.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} generated files differ from pydicom (tolerance {TOLERANCE} grey level):\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
