//! The parsers of untrusted bytes carry the clippy denials that make a panic
//! unreachable from their input (`make lint`, run by `make test`, enforces them).
//! This test fails when a parser module loses its `#![deny(...)]`, or when a new
//! DICOM module is added without one.

use std::path::{Path, PathBuf};

/// The lints every parser of untrusted bytes denies.
const DENIED: [&str; 5] = [
    "clippy::indexing_slicing",
    "clippy::unwrap_used",
    "clippy::expect_used",
    "clippy::panic",
    "clippy::arithmetic_side_effects",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn parser_modules() -> Vec<PathBuf> {
    let src = root().join("src");
    let mut files: Vec<PathBuf> = ["npz.rs", "bundle/gguf_check.rs", "bundle/manifest.rs", "knowledge/base.rs", "preprocess/dicom.rs",
        "text/sentencepiece.rs", "text/sentencepiece/normalizer.rs", "text/sentencepiece/proto.rs",
        "text/sentencepiece/unigram.rs", "text/siglip_tokenizer.rs"]
        .iter()
        .map(|f| src.join(f))
        .collect();
    let dicom = src.join("preprocess/dicom");
    let mut submodules: Vec<PathBuf> = std::fs::read_dir(&dicom)
        .unwrap_or_else(|e| panic!("{}: {e}", dicom.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    submodules.sort();
    assert!(!submodules.is_empty(), "no DICOM submodules found in {}", dicom.display());
    files.extend(submodules);
    files
}

/// The text of the file's inner `#![deny(...)]` attribute, if it has one.
fn inner_deny(text: &str) -> Option<&str> {
    let start = text.find("#![deny(")?;
    let end = start + text[start..].find(")]")?;
    Some(&text[start..end])
}

#[test]
fn every_parser_of_untrusted_bytes_denies_panicking_constructs() {
    let mut missing = Vec::new();
    for file in parser_modules() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let deny = inner_deny(&text).unwrap_or("");
        for lint in DENIED {
            if !deny.contains(lint) {
                missing.push(format!("{}: {lint}", file.display()));
            }
        }
    }
    assert!(missing.is_empty(), "parser modules without the clippy denials:\n{}", missing.join("\n"));
}

#[test]
fn make_test_runs_clippy() {
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(makefile.contains("test-rust: setup lint"), "make test-rust no longer depends on lint");
    assert!(makefile.contains("clippy --release --lib"), "the lint target no longer runs clippy on the library");
}
