//! OpenAI's text clean-up (`src/text_clean.rs`) against the reference: ftfy
//! 6.3.1's `fix_text`, OpenAI's `whitespace_clean(basic_clean(text)).lower()`
//! and `clip.tokenize(text, truncate=True)` from clip-anytorch 2.6.0, recorded
//! by `tests/reference/text_clean_cases.py` in `tests/fixtures/text_clean/`.

use std::path::{Path, PathBuf};

use kpl::text_clean::{fix_text, openai_clean};
use kpl::tokenizer::ClipTokenizer;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tokenizer() -> ClipTokenizer {
    let bytes = std::fs::read(fixtures().join("tokenizer.json")).unwrap();
    ClipTokenizer::from_json(&bytes, "tokenizer.json", 77).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// Runs every case of a fixture file; returns the differences, one line each.
fn check_file(name: impl AsRef<Path>) -> (usize, Vec<String>) {
    let path = fixtures().join("text_clean").join(name);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tokenizer = tokenizer();
    let cases = doc["cases"].as_array().unwrap();
    let mut problems = Vec::new();
    for case in cases {
        let label = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let want_ftfy = case["ftfy"].as_str().unwrap();
        let got_ftfy = fix_text(text);
        if got_ftfy != want_ftfy {
            problems.push(format!("{label}: fix_text({text:?})\n    ours  {got_ftfy:?}\n    ftfy  {want_ftfy:?}"));
        }
        let want_clean = case["openai_clean"].as_str().unwrap();
        let got_clean = openai_clean(text);
        if got_clean != want_clean {
            problems.push(format!("{label}: openai_clean({text:?})\n    ours   {got_clean:?}\n    openai {want_clean:?}"));
        }
        let want_ids = ids(&case["openai_ids"]);
        let got_ids = tokenizer.encode(text).unwrap();
        if got_ids != want_ids {
            problems.push(format!("{label}: ids of {text:?}\n    ours   {got_ids:?}\n    openai {want_ids:?}"));
        }
    }
    (cases.len(), problems)
}

#[test]
fn hand_made_cases_match_ftfy_and_openai() {
    let (n, problems) = check_file("cases.json");
    assert!(n >= 60, "only {n} cases");
    assert!(problems.is_empty(), "{} of {n} cases differ:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn random_mojibake_matches_ftfy_and_openai() {
    let (n, problems) = check_file("random.json");
    assert!(n >= 500, "only {n} cases");
    let shown: Vec<&String> = problems.iter().take(20).collect();
    assert!(
        problems.is_empty(),
        "{} differences over {n} cases; the first ones:\n{}",
        problems.len(),
        shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

/// More cases in the same format, from a file named by `KPL_TEXT_CLEAN_CASES`
/// (for wider differential runs of the generator; skipped when unset).
#[test]
fn extra_cases_from_env() {
    let Some(path) = std::env::var_os("KPL_TEXT_CLEAN_CASES") else {
        return;
    };
    let (n, problems) = check_file(Path::new(&path));
    let shown: Vec<&str> = problems.iter().take(30).map(|s| s.as_str()).collect();
    assert!(problems.is_empty(), "{} differences over {n} cases:\n{}", problems.len(), shown.join("\n"));
}

/// The field case (`shared/field-cases/mojibake.txt`): its ids exactly. Read
/// from the shared folder when it is there, else from the committed copy.
#[test]
fn field_case_mojibake_gets_openai_ids() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/field-cases");
    let (text_path, ids_path) = if shared.join("mojibake.txt").exists() {
        (shared.join("mojibake.txt"), shared.join("mojibake.openai_ids.json"))
    } else {
        let dir = fixtures().join("text_clean");
        (dir.join("field-mojibake.txt"), dir.join("field-mojibake.openai_ids.json"))
    };
    let text = std::fs::read_to_string(&text_path).unwrap();
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&ids_path).unwrap()).unwrap();
    let got = tokenizer().encode(&text).unwrap();
    assert_eq!(got, ids(&expected["openai_ids"]), "{text_path:?}: {text:?}");
}

/// The committed copy is the shared one, so the fallback proves the same thing.
#[test]
fn field_case_copy_is_current() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/field-cases");
    if !shared.join("mojibake.txt").exists() {
        return;
    }
    let dir = fixtures().join("text_clean");
    for (ours, theirs) in [("field-mojibake.txt", "mojibake.txt"), ("field-mojibake.openai_ids.json", "mojibake.openai_ids.json")] {
        assert_eq!(std::fs::read(dir.join(ours)).unwrap(), std::fs::read(shared.join(theirs)).unwrap(), "{ours}");
    }
}
