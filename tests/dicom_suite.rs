//! pydicom 3.0.2's own test suite (`pydicom/data/test_files/` of its wheel, every
//! file, DICOM or not) through `dicom::decode`, against pydicom's renderings
//! under the README's rule (`tests/dicom/suite/`, written by
//! `tests/reference/dicom_suite.py`, which names the decoding plugins used).
//!
//! For every file: no panic; where pydicom renders it, the same shape and a
//! mean absolute difference of at most 1.5 grey levels; where pydicom refuses
//! it, an error that names the file. The exceptions are listed below with their
//! reasons, and printed.
//!
//! The files: `scripts/setup.sh` (run by `make test`) fetches the wheel with pip,
//! checks its sha256 and unpacks `test_files/` into `build/pydicom-3.0.2/`;
//! `KPL_PYDICOM_TEST_FILES` may point elsewhere.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use kpl::preprocess::{dicom, DecodeLimits};
use serde_json::Value;

/// Largest mean absolute difference from pydicom's rendering, in grey levels.
const TOLERANCE: f64 = 1.5;

/// Files pydicom renders and we do not yet, with why. Each must still fail with
/// an error naming the file; one that starts to match pydicom must leave the list.
const EXPECTED_FAILURES: &[(&str, &str)] = &[];

/// Files pydicom refuses that we render, with why ours is right to.
const WE_RENDER_PYDICOM_REFUSES: &[(&str, &str)] = &[(
    "JPEG-lossy.dcm",
    "12-bit extended JPEG: pylibjpeg-libjpeg rejects its scan header, Pillow has no 12-bit JPEG; our own \
     12-bit decoder reads it (the same image as JPGExtended.dcm, compared below)",
)];

/// Pairs (file, pydicom rendering of another file of the same image) for the
/// files above.
const SAME_IMAGE_AS: &[(&str, &str)] = &[("JPEG-lossy.dcm", "JPGExtended.dcm")];

fn source_dir() -> PathBuf {
    match std::env::var_os("KPL_PYDICOM_TEST_FILES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("build/pydicom-3.0.2/test_files"),
    }
}

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom/suite")
}

fn files_under(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, root, out);
        } else {
            out.push(path.strip_prefix(root).expect("prefix").to_string_lossy().replace('\\', "/"));
        }
    }
}

/// pydicom's rendering as interleaved RGB (grey replicated, as ours is).
fn reference_rgb(png: &str) -> (usize, usize, Vec<u8>) {
    let image = image::open(suite_dir().join(png)).unwrap_or_else(|e| panic!("{png}: {e}")).to_rgb8();
    (image.width() as usize, image.height() as usize, image.into_raw())
}

fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x.abs_diff(y))).sum::<f64>() / a.len().max(1) as f64
}

#[test]
fn pydicom_test_suite() {
    let source = source_dir();
    assert!(
        source.is_dir(),
        "{} is missing: run scripts/setup.sh (it fetches pydicom 3.0.2's wheel from PyPI) or set KPL_PYDICOM_TEST_FILES",
        source.display()
    );
    let suite: Value =
        serde_json::from_str(&std::fs::read_to_string(suite_dir().join("suite.json")).expect("suite.json"))
            .expect("suite.json is JSON");
    let references = suite["files"].as_object().expect("files");
    let mut present = Vec::new();
    files_under(&source, &source, &mut present);
    let listed: Vec<&String> = references.keys().collect();
    assert_eq!(
        present.iter().collect::<Vec<_>>(),
        listed,
        "the files under {} differ from those of suite.json (another pydicom version?)",
        source.display()
    );
    let expected_failures: BTreeMap<&str, &str> = EXPECTED_FAILURES.iter().copied().collect();
    let we_render: BTreeMap<&str, &str> = WE_RENDER_PYDICOM_REFUSES.iter().copied().collect();
    let same_image: BTreeMap<&str, &str> = SAME_IMAGE_AS.iter().copied().collect();
    for (name, why) in EXPECTED_FAILURES {
        println!("expected failure: {name}: {why}");
    }
    for (name, why) in WE_RENDER_PYDICOM_REFUSES {
        println!("rendered although pydicom refuses: {name}: {why}");
    }
    let limits = DecodeLimits::default();
    let (mut matched, mut refused, mut failures) = (0, 0, Vec::new());
    for (rel, entry) in references {
        let bytes = std::fs::read(source.join(rel)).expect("read");
        let result = catch_unwind(AssertUnwindSafe(|| dicom::decode(&bytes, rel, limits, None)));
        let decoded = match result {
            Ok(decoded) => decoded,
            Err(_) => {
                failures.push(format!("{rel}: PANIC"));
                continue;
            }
        };
        let reference = entry["png"].as_str().or_else(|| same_image.get(rel.as_str()).map(|other| {
            references[*other]["png"].as_str().expect("the other file has a rendering")
        }));
        let expected_failure = expected_failures.contains_key(rel.as_str());
        match (reference, decoded) {
            (Some(png), Ok(ours)) => {
                let (width, height, theirs) = reference_rgb(png);
                let image = &ours.image;
                let outcome = if (image.width, image.height) != (width, height) || image.data.len() != theirs.len() {
                    Err(format!("{}×{} but pydicom {width}×{height}", image.width, image.height))
                } else {
                    let diff = mean_abs(&image.data, &theirs);
                    if diff <= TOLERANCE {
                        Ok(())
                    } else {
                        Err(format!("mean absolute difference {diff:.3} from pydicom's rendering"))
                    }
                };
                match (outcome, expected_failure) {
                    (Ok(()), false) => matched += 1,
                    (Ok(()), true) => failures
                        .push(format!("{rel}: now matches pydicom: remove it from EXPECTED_FAILURES")),
                    (Err(e), _) => failures.push(format!("{rel}: {e}")),
                }
                if we_render.contains_key(rel.as_str()) {
                    println!("{rel}: matches pydicom's rendering of {png}");
                }
            }
            (Some(_), Err(e)) if expected_failure => {
                let message = e.to_string();
                if message.contains(rel.as_str()) {
                    println!("{rel}: expected failure: {message}");
                } else {
                    failures.push(format!("{rel}: the error does not name the file: {message}"));
                }
            }
            (Some(_), Err(e)) => failures.push(format!("{rel}: pydicom renders it, we refuse: {e}")),
            (None, Ok(_)) => failures.push(format!(
                "{rel}: pydicom refuses it ({}), we render it",
                entry["pydicom_error"].as_str().unwrap_or("?")
            )),
            (None, Err(e)) => {
                let message = e.to_string();
                if message.contains(rel.as_str()) {
                    refused += 1;
                } else {
                    failures.push(format!("{rel}: the error does not name the file: {message}"));
                }
            }
        }
    }
    println!(
        "{} files: {matched} within {TOLERANCE} grey levels of pydicom, {refused} refused as pydicom refuses them, \
         {} expected failures",
        references.len(),
        EXPECTED_FAILURES.len()
    );
    assert!(failures.is_empty(), "{} of {} files failed:\n{}", failures.len(), references.len(), failures.join("\n"));
}
