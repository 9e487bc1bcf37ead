//! BERT WordPiece tokenisation (`kpl::text::wordpiece`) against open_clip's
//! `HFTokenizer` on the strings and folders of
//! tests/reference/wordpiece_reference.py (tests/fixtures/wordpiece): a
//! vocab.txt-only folder, a tokenizer.json folder read through
//! `get_tokenizer("local-dir:…")`, a cased one; contexts 256, 32, 16, 12;
//! `whitespace`, `lower` and `canonicalize` clean-up; `strip_sep_token`.

use std::path::{Path, PathBuf};

use kpl::text::wordpiece::{OpenClipClean, WordPieceOptions, WordPieceTokenizer};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wordpiece")
}

fn read(path: &Path) -> Option<(String, Vec<u8>)> {
    std::fs::read(path).ok().map(|b| (path.display().to_string(), b))
}

fn named(f: &Option<(String, Vec<u8>)>) -> Option<(&str, &[u8])> {
    f.as_ref().map(|(n, b)| (n.as_str(), b.as_slice()))
}

fn load(folder: &Path, options: WordPieceOptions) -> kpl::Result<WordPieceTokenizer> {
    let json = read(&folder.join("tokenizer.json"));
    let vocab = read(&folder.join("vocab.txt"));
    let config = read(&folder.join("tokenizer_config.json"));
    WordPieceTokenizer::from_files(named(&json), named(&vocab), named(&config), options)
}

#[test]
fn ids_match_open_clip_for_every_folder_and_setting() {
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap();
    let strings: Vec<&str> = expected["strings"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(strings.len() >= 30);
    let cases = expected["cases"].as_array().unwrap();
    let mut folders_seen = std::collections::BTreeSet::new();
    let mut compared = 0;
    for case in cases {
        let folder = case["folder"].as_str().unwrap();
        folders_seen.insert(folder);
        let options = WordPieceOptions {
            context: case["context"].as_u64().unwrap() as usize,
            clean: OpenClipClean::from_name(case["clean"].as_str().unwrap()).unwrap(),
            strip_sep_token: case["strip_sep_token"].as_bool().unwrap(),
            // open_clip's tokenizer_kwargs.do_lower_case, passed to AutoTokenizer.
            do_lower_case: case.get("do_lower_case").and_then(Value::as_bool),
        };
        let tok = load(&dir().join(folder), options).unwrap_or_else(|e| panic!("{folder}: {e}"));
        let mut mismatches = Vec::new();
        for (text, want) in strings.iter().zip(case["ids"].as_array().unwrap()) {
            let want: Vec<u32> = want.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
            let (ids, length) = tok.encode_with_length(text).unwrap();
            assert_eq!(ids.len(), options.context);
            let pad = expected["pad_id"].as_u64().unwrap() as u32;
            assert_eq!(length, want.iter().filter(|&&i| i != pad).count(), "{folder}: {text:?} non-pad count");
            if ids != want {
                mismatches.push(format!("{text:?}\n  got  {ids:?}\n  want {want:?}"));
            }
            compared += 1;
        }
        assert!(mismatches.is_empty(), "{folder} {options:?}: {} mismatches\n{}", mismatches.len(), mismatches.join("\n"));
    }
    assert_eq!(folders_seen.len(), 3);
    assert!(compared >= 240);
    assert!(cases.iter().filter(|c| c.get("do_lower_case").is_some()).count() >= 2, "the do_lower_case override is exercised");
}

#[test]
fn over_long_text_is_truncated_with_sep_last_and_encode_full_is_not() {
    let tok = load(&dir().join("vocab"), WordPieceOptions::new(256)).unwrap();
    let text = "chest ".repeat(300);
    let (ids, length) = tok.encode_with_length(&text).unwrap();
    assert_eq!(length, 256);
    assert_eq!(ids[255], 4, "[SEP] last");
    assert_eq!(tok.encode_full(&text).unwrap().len(), 302);
}

#[test]
fn a_vocabulary_not_matching_the_embedding_table_is_an_error_naming_the_file() {
    let tok = load(&dir().join("vocab"), WordPieceOptions::new(16)).unwrap();
    let n = tok.vocab_size();
    tok.check_embedding_rows(n).unwrap();
    tok.check_embedding_rows(n + 8).unwrap();
    let err = tok.check_embedding_rows(n - 1).unwrap_err().to_string();
    assert!(err.contains("vocab.txt") && err.contains("another model"), "{err}");
    assert!(tok.check_embedding_rows(30522).is_err());
    let json = load(&dir().join("json"), WordPieceOptions::new(16)).unwrap();
    assert_eq!(json.vocab_size(), n);
    assert!(json.check_embedding_rows(n + 1000).unwrap_err().to_string().contains("tokenizer.json"));
}

#[test]
fn bad_files_are_errors_naming_them() {
    let opts = WordPieceOptions::new(16);
    let e = WordPieceTokenizer::from_files(None, Some(("v/vocab.txt", b"a\nb\n")), None, opts).unwrap_err().to_string();
    assert!(e.contains("v/vocab.txt") && e.contains("[UNK]"), "{e}");
    let e = WordPieceTokenizer::from_files(Some(("t/tokenizer.json", b"{")), None, None, opts).unwrap_err().to_string();
    assert!(e.contains("t/tokenizer.json"), "{e}");
    let e = WordPieceTokenizer::from_files(None, Some(("v/vocab.txt", b"\xff\xfe")), None, opts).unwrap_err().to_string();
    assert!(e.contains("v/vocab.txt"), "{e}");
    let cfg = ("c/tokenizer_config.json", b"[1]".as_slice());
    let e = WordPieceTokenizer::from_files(None, Some(("v/vocab.txt", b"[UNK]\n")), Some(cfg), opts).unwrap_err().to_string();
    assert!(e.contains("c/tokenizer_config.json"), "{e}");
    let e = WordPieceTokenizer::from_files(None, None, None, opts).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn the_open_clip_bert_fixture_tokenizer_matches_its_embedding_table() {
    // tests/fixtures/tiny-open-clip-bert (made by make_open_clip_fixtures.py):
    // its vocabulary against the word embeddings of its pickle checkpoint.
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-open-clip-bert");
    let Some((name, bytes)) = read(&folder.join("open_clip_pytorch_model.bin")) else {
        eprintln!("no {} (skipped)", folder.display());
        return;
    };
    let sd = kpl::io::pytorch::StateDict::from_bytes(&bytes, &name).unwrap();
    let table = sd
        .names()
        .find(|n| n.ends_with("word_embeddings.weight"))
        .and_then(|n| sd.shape(n))
        .expect("a BERT word-embedding table")
        .to_vec();
    for file in ["tokenizer.json", "vocab.txt"] {
        let only = |f: &str| if f == file { read(&folder.join(f)) } else { None };
        let (json, vocab, config) = (only("tokenizer.json"), only("vocab.txt"), read(&folder.join("tokenizer_config.json")));
        let tok = WordPieceTokenizer::from_files(named(&json), named(&vocab), named(&config), WordPieceOptions::new(256)).unwrap();
        tok.check_embedding_rows(table[0]).unwrap();
    }
}
