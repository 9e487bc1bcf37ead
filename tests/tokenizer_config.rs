//! A folder with both tokenizer.json and a tokenizer_config.json whose special
//! tokens or settings differ from the file's: the ids equal transformers' on
//! every case of tests/fixtures/tokenizer-config/expected.json (written by
//! tests/reference/tokenizer_config_reference.py with transformers 5), loaded
//! the way every command loads a folder, as a folder and as a `kpl pack` bundle
//! (whose text encoder carries both files); a config transformers cannot use,
//! or one naming a token outside the vocabulary, is an error naming
//! tokenizer_config.json.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(common::fixtures().join("tokenizer-config/expected.json")).expect("expected.json");
    let v: Value = serde_json::from_str(&text).expect("valid expected.json");
    v["cases"].as_array().expect("cases").clone()
}

/// A copy of the case's fixture folder with the case's tokenizer_config.json.
fn folder(case: &Value, tag: &str) -> PathBuf {
    let name = case["name"].as_str().unwrap();
    let dir = std::env::temp_dir().join(format!("kpl-tokenizer-config-{tag}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let from = common::fixtures().join(case["fixture"].as_str().unwrap());
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_string(&case["config"]).unwrap()).unwrap();
    dir
}

fn ids(pipeline: &kpl::pipeline::Pipeline, family: &str, text: &str) -> Vec<u32> {
    let tokenizer = pipeline.tokenizer().unwrap();
    if family == "clip" {
        tokenizer.encode(text).unwrap()
    } else {
        tokenizer.encode_with_length(text).unwrap().0
    }
}

/// Checks every case loaded from the directory `load` makes of the case's folder.
fn check(tag: &str, load: impl Fn(&Value, &Path) -> kpl::error::Result<kpl::pipeline::Pipeline>) -> usize {
    let mut checked = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let dir = folder(&case, tag);
        let loaded = load(&case, &dir);
        match case.get("error").and_then(Value::as_str) {
            Some(expected) => {
                let err = loaded.err().unwrap_or_else(|| panic!("{name}: loaded, expected an error with {expected}")).to_string();
                assert!(err.contains("tokenizer_config.json") && err.contains(expected), "{name}: {err}");
            }
            None => {
                let pipeline = loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
                let family = case["family"].as_str().unwrap();
                for (text, want) in case["strings"].as_array().unwrap().iter().zip(case["ids"].as_array().unwrap()) {
                    let want: Vec<u32> = want.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
                    assert_eq!(ids(&pipeline, family, text.as_str().unwrap()), want, "{name}: {text}");
                }
            }
        }
        checked += 1;
        std::fs::remove_dir_all(&dir).unwrap();
    }
    checked
}

#[test]
fn folders_give_transformers_ids_or_an_error_naming_the_config() {
    assert_eq!(check("folder", |_, dir| kpl::model_dir::load_model_dir(dir)), 16);
}

#[test]
fn bundles_carry_the_config_and_give_the_same_ids() {
    let checked = check("bundle", |case, dir| {
        let name = case["name"].as_str().unwrap();
        let out = std::env::temp_dir().join(format!("kpl-tokenizer-config-{name}-{}-q8", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let packed = std::process::Command::new(env!("CARGO_BIN_EXE_kpl"))
            .args(["pack", "--model", &dir.display().to_string(), "--dtype", "q8", "--threads", "1", "-o", &out.display().to_string()])
            .output()
            .unwrap();
        // A bad config is refused when packing already, naming the file.
        if !packed.status.success() {
            let err = String::from_utf8_lossy(&packed.stderr).into_owned();
            assert!(!err.contains("panicked"), "{name}: {err}");
            return Err(kpl::error::Error::Input(err));
        }
        let loaded = kpl::model_dir::load_model_dir(&out);
        std::fs::remove_dir_all(&out).unwrap();
        loaded
    });
    assert_eq!(checked, 16);
}
