//! The pure-Rust SentencePiece reader and SigLIP tokenizer against the
//! references of tests/fixtures/make_siglip_fixtures.py: ids from PyPI
//! `sentencepiece` itself (sentencepiece/reference.json) and from transformers'
//! `SiglipTokenizer` (siglip_reference.json, tiny-siglip-b); plus the errors
//! for bad model bytes and a vocabulary that does not fit the model.

use std::path::{Path, PathBuf};

use kpl::text::sentencepiece::{check_vocab_size, SentencePiece};
use kpl::text::siglip_tokenizer::SiglipTokenizer;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(rel: &str) -> Value {
    let path = fixtures().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn load(rel: &str) -> SentencePiece {
    let bytes = std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    SentencePiece::from_bytes(&bytes, rel).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ids_identical_to_pypi_sentencepiece() {
    let reference = read_json("sentencepiece/reference.json");
    let strings: Vec<&str> = reference["strings"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let models = reference["models"].as_object().unwrap();
    assert!(strings.len() >= 400 && models.len() == 4, "{} strings, {} models", strings.len(), models.len());
    let mut failures = Vec::new();
    let mut compared = 0;
    for (key, model) in models {
        let (file, no_dummy) = match key.split_once('#') {
            Some((file, "add_dummy_prefix=false")) => (file, true),
            Some((_, option)) => panic!("unknown option {option}"),
            None => (key.as_str(), false),
        };
        let mut sp = load(file);
        if no_dummy {
            sp.set_add_dummy_prefix(false);
        }
        assert_eq!(sp.len() as u64, model["vocab_size"].as_u64().unwrap(), "{key}: vocabulary size");
        assert_eq!(i64::from(sp.unk_id()), model["unk_id"].as_i64().unwrap(), "{key}: unk id");
        for (text, expected) in strings.iter().zip(model["ids"].as_array().unwrap()) {
            let got = sp.encode(text);
            compared += 1;
            if got != ids(expected) {
                failures.push(format!("{key}: {text:?}\n  sentencepiece: {:?}\n  ours:          {got:?}", ids(expected)));
            }
        }
    }
    assert_eq!(compared, strings.len() * models.len());
    assert!(failures.is_empty(), "{} of {compared} encodings differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn siglip_tokenizer_ids_identical_to_transformers() {
    let reference = read_json("siglip_reference.json");
    let model = &reference["models"]["tiny-siglip-b"];
    assert_eq!(model["tokenizer_class"], "SiglipTokenizer");
    let config_path = fixtures().join("tiny-siglip-b/tokenizer_config.json");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let tok = SiglipTokenizer::new(load("tiny-siglip-b/spiece.model"), Some(("tiny-siglip-b/tokenizer_config.json", &config)), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tok.max_length() as u64, model["max_length"].as_u64().unwrap());
    let texts = model["texts"].as_array().unwrap();
    assert!(texts.len() >= 30);
    let mut failures = Vec::new();
    for t in texts {
        let text = t["text"].as_str().unwrap();
        let got = tok.encode(text);
        if got.ids != ids(&t["ids"]) || got.attention_mask != ids(&t["attention_mask"]) {
            failures.push(format!(
                "{text:?}\n  transformers: {:?} mask {:?}\n  ours:         {:?} mask {:?}",
                ids(&t["ids"]),
                ids(&t["attention_mask"]),
                got.ids,
                got.attention_mask
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} texts differ:\n{}", failures.len(), texts.len(), failures.join("\n"));
}

/// The same rules on the 436 strings of the sentencepiece reference (special
/// tokens inside text, ▁, controls, NFKC cases, random strings).
#[test]
fn siglip_tokenizer_ids_identical_to_transformers_on_the_long_list() {
    let reference = read_json("sentencepiece/reference.json");
    let strings = reference["strings"].as_array().unwrap();
    let expected = &reference["siglip_tokenizer"];
    assert_eq!(expected["class"], "SiglipTokenizer");
    let config = std::fs::read_to_string(fixtures().join("tiny-siglip-b/tokenizer_config.json")).unwrap();
    let max_length = expected["max_length"].as_u64().unwrap() as usize;
    let tok = SiglipTokenizer::new(load("tiny-siglip-b/spiece.model"), Some(("tokenizer_config.json", &config)), Some(max_length))
        .unwrap();
    let mut failures = Vec::new();
    for ((s, want), mask) in strings.iter().zip(expected["ids"].as_array().unwrap()).zip(expected["attention_mask"].as_array().unwrap()) {
        let got = tok.encode(s.as_str().unwrap());
        if got.ids != ids(want) || got.attention_mask != ids(mask) {
            failures.push(format!("{s}\n  transformers: {:?}\n  ours:         {:?}", ids(want), got.ids));
        }
    }
    assert_eq!(strings.len(), expected["ids"].as_array().unwrap().len());
    assert!(failures.is_empty(), "{} of {} differ:\n{}", failures.len(), strings.len(), failures.join("\n"));
}

#[test]
fn siglip_tokenizer_length_comes_from_the_caller_or_the_config() {
    let tok = SiglipTokenizer::new(load("tiny-siglip-b/spiece.model"), None, Some(8)).unwrap();
    let out = tok.encode("a photo of a chest x-ray with a very long description that is cut");
    assert_eq!(out.ids.len(), 8);
    assert_eq!(out.ids.last(), Some(&1), "truncated texts end with </s>");
    assert_eq!(out.attention_mask, vec![1; 8]);
    let err = SiglipTokenizer::new(load("tiny-siglip-b/spiece.model"), Some(("cfg.json", "{\"model_max_length\": 1e30}")), None)
        .err()
        .expect("no usable length");
    assert!(err.to_string().contains("cfg.json") && err.to_string().contains("model_max_length"), "{err}");
    let err = SiglipTokenizer::new(load("tiny-siglip-b/spiece.model"), Some(("cfg.json", "[1, 2")), Some(8)).err().expect("bad JSON");
    assert!(err.to_string().starts_with("cfg.json: "), "{err}");
}

/// Protobuf wire format, enough to write small ModelProtos by hand.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn field_bytes(tag: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(tag << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}
fn field_varint(tag: u64, v: u64, out: &mut Vec<u8>) {
    varint(tag << 3, out);
    varint(v, out);
}
/// A piece: (text, score, type).
fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
    let mut p = Vec::new();
    field_bytes(1, text.as_bytes(), &mut p);
    varint(2 << 3 | 5, &mut p);
    p.extend_from_slice(&score.to_le_bytes());
    field_varint(3, kind, &mut p);
    p
}
fn model(pieces: &[Vec<u8>], trainer: &[u8], normalizer: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    for p in pieces {
        field_bytes(1, p, &mut m);
    }
    field_bytes(2, trainer, &mut m);
    field_bytes(3, normalizer, &mut m);
    m
}

fn error_of(bytes: &[u8]) -> String {
    match SentencePiece::from_bytes(bytes, "some/dir/spiece.model") {
        Ok(_) => panic!("accepted a bad model"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("some/dir/spiece.model: "), "error does not name the file: {msg}");
            msg
        }
    }
}

#[test]
fn bad_model_bytes_give_errors_naming_the_file() {
    let good = std::fs::read(fixtures().join("tiny-siglip-b/spiece.model")).unwrap();
    assert!(error_of(&[]).contains("no pieces"));
    assert!(error_of(b"{\"model\": \"not a protobuf\"}").contains("not a SentencePiece model"));
    assert!(error_of(&good[..good.len() / 2]).contains("not a SentencePiece model"));
    let bpe = std::fs::read(fixtures().join("sentencepiece/bpe-bytefallback.model")).unwrap();
    assert!(error_of(&bpe).contains("BPE"));

    let unigram = {
        let mut t = Vec::new();
        field_varint(3, 1, &mut t);
        t
    };
    let ok = model(&[piece("<unk>", 0.0, 2), piece("\u{2581}a", -1.0, 1), piece("b", -2.0, 1)], &unigram, &[]);
    let sp = SentencePiece::from_bytes(&ok, "hand.model").unwrap();
    assert_eq!(sp.encode("a b c"), vec![1, 0, 2, 0], "▁a ▁(unk) b ▁c(unk run merged)");

    assert!(error_of(&model(&[piece("\u{2581}a", -1.0, 1)], &unigram, &[])).contains("<unk>"));
    assert!(error_of(&model(&[piece("<unk>", 0.0, 2), piece("", -1.0, 1)], &unigram, &[])).contains("empty"));
    assert!(error_of(&model(&[piece("<unk>", 0.0, 2), piece("a", -1.0, 1), piece("a", -2.0, 1)], &unigram, &[]))
        .contains("defined twice"));
    assert!(error_of(&model(&[piece("<unk>", 0.0, 2), piece("<0x41>", 0.0, 6)], &unigram, &[])).contains("byte_fallback"));
    assert!(error_of(&model(&[piece("<unk>", 0.0, 2), piece("a", f32::NAN, 1)], &unigram, &[])).contains("non-finite"));
    assert!(error_of(&model(&[piece("<unk>", 0.0, 2), piece("a", 0.0, 9)], &unigram, &[])).contains("unknown type"));
    let with_fallback = {
        let mut t = unigram.clone();
        field_varint(35, 1, &mut t);
        t
    };
    assert!(error_of(&model(&[piece("<unk>", 0.0, 2), piece("<0x41>", 0.0, 6)], &with_fallback, &[]))
        .contains("256 byte pieces"));
    // a charsmap whose header promises more trie than there is
    let mut charsmap = 4096u32.to_le_bytes().to_vec();
    charsmap.extend_from_slice(&[0; 100]);
    let mut normalizer = Vec::new();
    field_bytes(2, &charsmap, &mut normalizer);
    assert!(error_of(&model(&[piece("<unk>", 0.0, 2)], &unigram, &normalizer)).contains("precompiled_charsmap"));
}

/// Every truncation and a spread of single-byte corruptions of a real model
/// either load or fail cleanly, and whatever loads encodes without panicking.
#[test]
fn corrupted_models_never_panic() {
    let good = std::fs::read(fixtures().join("tiny-siglip-b/spiece.model")).unwrap();
    let texts = ["a photo of a chest x-ray", "ＡＢＣ ﬁbrosis 肺炎 🫁", "   ", ""];
    let mut loaded = 0;
    let mut try_bytes = |bytes: &[u8]| {
        if let Ok(sp) = SentencePiece::from_bytes(bytes, "corrupt.model") {
            loaded += 1;
            for t in texts {
                let ids = sp.encode(t);
                assert!(ids.iter().all(|&id| (id as usize) < sp.len()));
            }
        }
    };
    for len in (0..good.len()).step_by(251) {
        try_bytes(&good[..len]);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..400 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = good.clone();
        let at = (state % bytes.len() as u64) as usize;
        bytes[at] ^= (state >> 32) as u8 | 1;
        try_bytes(&bytes);
    }
    assert!(loaded > 0, "no corrupted variant loaded: the encode path was not exercised");
}

/// SigLIP's text embedding table has one row per spiece.model piece.
#[test]
fn vocabulary_must_match_the_text_embedding_table() {
    let rows_of = |model: &str| {
        let bytes = std::fs::read(fixtures().join(model).join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensor("text_model.embeddings.token_embedding.weight").unwrap().shape()[0]
    };
    let sp = load("tiny-siglip-b/spiece.model");
    check_vocab_size("tiny-siglip-b/spiece.model", sp.len(), "tiny-siglip-b/model.safetensors", rows_of("tiny-siglip-b"))
        .unwrap();
    let err = check_vocab_size("tiny-siglip-b/spiece.model", sp.len(), "tiny-siglip-a/model.safetensors", rows_of("tiny-siglip-a"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tiny-siglip-b/spiece.model: ") && err.contains("tiny-siglip-a/model.safetensors") && err.contains("600"),
        "{err}"
    );
}
