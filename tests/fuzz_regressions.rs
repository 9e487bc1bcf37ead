//! Every input the fuzzers (`fuzz/`, `make fuzz`) ever crashed on, fed again to
//! the same function the fuzz target calls (`fuzz/src/lib.rs`, included below):
//! each must give `Ok` or `Err`, never a panic, within 20 seconds.
//!
//! Inputs live in `tests/fuzz_regressions/<target>/`, one file each, named after
//! what they broke. (Overflow checks are on only in debug builds: `cargo test`
//! without `--release` also catches an arithmetic overflow coming back.)

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions").join(target);
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn replay(target: &str) {
    let run = harness::TARGETS.iter().find(|(name, _)| *name == target).expect("a known target").1;
    let files = inputs(target);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(|| run(&bytes));
        let elapsed = start.elapsed();
        let name = path.file_name().unwrap().to_string_lossy();
        match outcome {
            Ok(Ok(())) => println!("{target}/{name}: Ok in {elapsed:.2?}"),
            Ok(Err(e)) => println!("{target}/{name}: Err in {elapsed:.2?}: {}", e.to_string().lines().next().unwrap_or("")),
            Err(_) => panic!("{target}/{name}: panicked (see the message above)"),
        }
        assert!(elapsed < LIMIT, "{target}/{name}: took {elapsed:.2?}");
    }
    println!("{target}: {} regression input(s)", files.len());
}

#[test]
fn image_decode() {
    replay("image_decode");
}

#[test]
fn dicom() {
    replay("dicom");
}

#[test]
fn gguf_bundle() {
    replay("gguf_bundle");
}

#[test]
fn safetensors() {
    replay("safetensors");
}

#[test]
fn kplkb() {
    replay("kplkb");
}

#[test]
fn jpeg() {
    replay("jpeg");
}

#[test]
fn jpeg_ls() {
    replay("jpeg_ls");
}

#[test]
fn sentencepiece() {
    replay("sentencepiece");
}

#[test]
fn npz() {
    replay("npz");
}

#[test]
fn every_regression_folder_is_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            assert!(harness::TARGETS.iter().any(|(t, _)| *t == name), "tests/fuzz_regressions/{name} is not a fuzz target");
        }
    }
}
