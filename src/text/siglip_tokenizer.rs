//! transformers' `SiglipTokenizer` on top of [`SentencePiece`]: the text rules
//! SigLIP checkpoints were trained with and the processor's
//! `padding="max_length", truncation=True` call. Follows transformers 5.x
//! (models/siglip/tokenization_siglip.py, tokenization_python.py
//! `PreTrainedTokenizer.tokenize`, tokenization_utils_sentencepiece.py):
//!
//! 1. `"▁" + text.replace("▁", " ")`;
//! 2. split on the added/special tokens (`</s>`, `<unk>`…), which stay whole,
//!    honouring their `lstrip`/`rstrip` flags;
//! 3. every other part: lower-cased (`do_lower_case`), ASCII punctuation
//!    (`string.punctuation`) removed, runs of Python whitespace (`\s+`) made one
//!    space, stripped; then SentencePiece-encoded as `unk_token + part` with the
//!    pieces of `unk_token` dropped again;
//! 4. a leading lone `▁` before a special token dropped;
//! 5. truncated to `max_length − 1`, `</s>` appended unless already last, padded
//!    with the pad token (`</s>`) to `max_length`.
//!
//! Checked id for id against transformers on tests/fixtures/tiny-siglip-b.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use serde_json::Value;

use crate::error::{Error, Result};
use crate::text::sentencepiece::SentencePiece;

const SPIECE_UNDERLINE: &str = "\u{2581}";
/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
/// Above this, `model_max_length` is transformers' "no limit" sentinel (1e30).
const MAX_SANE_LENGTH: u64 = 1 << 20;

/// `str.isspace()` (and so Python's `\s` and `strip()`): Unicode White_Space
/// plus the ASCII information separators 0x1C–0x1F.
fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// An added token (`added_tokens_decoder` in tokenizer_config.json).
#[derive(Clone, Debug)]
struct AddedToken {
    content: String,
    id: u32,
    lstrip: bool,
    rstrip: bool,
}

/// Ids and attention mask, both `max_length` long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextIds {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
}

pub struct SiglipTokenizer {
    spm: SentencePiece,
    added: Vec<AddedToken>,
    /// `all_special_tokens`: eos, unk, pad.
    special: Vec<String>,
    unk_token: String,
    unk_pieces: usize,
    eos_id: u32,
    pad_id: u32,
    do_lower_case: bool,
    pad_left: bool,
    max_length: usize,
}

/// A token entry in tokenizer_config.json: a string or `{"content": ...}`.
pub(crate) fn token_content(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

impl SiglipTokenizer {
    /// `spm`: the loaded `spiece.model`. `config`: (file name, text) of
    /// `tokenizer_config.json` if the folder has one; without it, SigLIP's
    /// defaults (`</s>` eos and pad, `<unk>`, lower-casing on). `max_length`:
    /// the padded length (the text config's `max_position_embeddings`); `None`
    /// takes the config's `model_max_length`. Errors name the file.
    pub fn new(mut spm: SentencePiece, config: Option<(&str, &str)>, max_length: Option<usize>) -> Result<Self> {
        let (name, cfg) = match config {
            Some((name, text)) => {
                let v: Value = serde_json::from_str(text)
                    .map_err(|e| Error::model(name, format!("not valid JSON: {e}")))?;
                if !v.is_object() {
                    return Err(Error::model(name, "expected a JSON object"));
                }
                (name, v)
            }
            None => ("tokenizer_config.json", Value::Object(Default::default())),
        };
        let err = |m: String| Error::model(name, m);
        let eos_token = token_content(cfg.get("eos_token")).unwrap_or_else(|| "</s>".into());
        let unk_token = token_content(cfg.get("unk_token")).unwrap_or_else(|| "<unk>".into());
        let pad_token = token_content(cfg.get("pad_token")).unwrap_or_else(|| "</s>".into());
        let do_lower_case = cfg.get("do_lower_case").and_then(Value::as_bool).unwrap_or(true);
        let legacy = cfg.get("legacy").and_then(Value::as_bool).unwrap_or(true);
        let pad_left = cfg.get("padding_side").and_then(Value::as_str) == Some("left");
        if !legacy {
            spm.set_add_dummy_prefix(false);
        }

        let mut added = Vec::new();
        if let Some(map) = cfg.get("added_tokens_decoder").and_then(Value::as_object) {
            for (id, tok) in map {
                let id: u32 = id.parse().map_err(|_| err(format!("added token id {id:?} is not a number")))?;
                let content = token_content(Some(tok)).ok_or_else(|| err(format!("added token {id} has no content")))?;
                let flag = |k: &str| tok.get(k).and_then(Value::as_bool).unwrap_or(false);
                added.push(AddedToken { content, id, lstrip: flag("lstrip"), rstrip: flag("rstrip") });
            }
        }
        let special = vec![eos_token.clone(), unk_token.clone(), pad_token.clone()];
        // SiglipTokenizer.__init__ makes its special tokens AddedTokens with
        // lstrip/rstrip on; a saved config lists them (with its own flags).
        for tok in &special {
            if !added.iter().any(|a| &a.content == tok) {
                let id = spm.id_of(tok).ok_or_else(|| err(format!("special token {tok:?} is not in the SentencePiece model")))?;
                added.push(AddedToken { content: tok.clone(), id, lstrip: true, rstrip: true });
            }
        }
        let id_of = |tok: &str| added.iter().find(|a| a.content == tok).map(|a| a.id);
        let eos_id = id_of(&eos_token).ok_or_else(|| err(format!("eos token {eos_token:?} has no id")))?;
        let pad_id = id_of(&pad_token).ok_or_else(|| err(format!("pad token {pad_token:?} has no id")))?;

        let max_length = match max_length {
            Some(n) => n,
            None => match cfg.get("model_max_length").and_then(Value::as_u64) {
                Some(n) if n <= MAX_SANE_LENGTH => n as usize,
                _ => return Err(err("no usable model_max_length (give the text length explicitly)".into())),
            },
        };
        if max_length == 0 {
            return Err(err("max_length must be at least 1".into()));
        }
        let unk_pieces = spm.encode_pieces(&unk_token).len();
        Ok(Self { spm, added, special, unk_token, unk_pieces, eos_id, pad_id, do_lower_case, pad_left, max_length })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The end-of-text id (`</s>`), appended to every text.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The id texts are padded with.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// True when `tokenizer_config.json` asks for the padding before the text.
    pub fn pads_left(&self) -> bool {
        self.pad_left
    }

    pub fn sentencepiece(&self) -> &SentencePiece {
        &self.spm
    }

    /// Highest id this tokenizer can emit, plus one.
    pub fn vocab_size(&self) -> usize {
        let added = self.added.iter().map(|a| a.id as usize).max().map_or(0, |m| m.saturating_add(1));
        self.spm.len().max(added)
    }

    /// `canonicalize_text` (big_vision's prompt rules as transformers has them).
    fn canonicalize(&self, text: &str) -> String {
        let lowered = if self.do_lower_case { text.to_lowercase() } else { text.to_owned() };
        let mut out = String::with_capacity(lowered.len());
        let mut in_space = false;
        for c in lowered.chars().filter(|c| !PUNCTUATION.contains(*c)) {
            if py_is_space(c) {
                in_space = true;
            } else {
                if in_space && !out.is_empty() {
                    out.push(' ');
                }
                in_space = false;
                out.push(c);
            }
        }
        out
    }

    /// `_tokenize`: one part between special tokens.
    fn tokenize_part(&self, part: &str) -> Vec<Vec<u8>> {
        let text = self.canonicalize(part);
        let pieces = self.spm.encode_pieces(&format!("{}{}", self.unk_token, text));
        let skip = if pieces.len() >= self.unk_pieces { self.unk_pieces } else { 0 };
        pieces.into_iter().skip(skip).map(|p| p.piece).collect()
    }

    /// The added token matching at byte `i` of `s`, longest first.
    fn added_at(&self, s: &str, i: usize) -> Option<&AddedToken> {
        let rest = s.get(i..)?;
        self.added
            .iter()
            .filter(|a| !a.content.is_empty() && rest.starts_with(a.content.as_str()))
            .max_by_key(|a| a.content.len())
    }

    /// transformers' `tokenize`: the tokens (pieces and special tokens) before ids.
    pub fn tokenize(&self, text: &str) -> Vec<Vec<u8>> {
        enum Part<'a> {
            Text(String),
            Added(&'a AddedToken),
        }
        let s = format!("{SPIECE_UNDERLINE}{}", text.replace(SPIECE_UNDERLINE, " "));
        let mut parts: Vec<Part> = Vec::new();
        let (mut start, mut i) = (0usize, 0usize);
        while i < s.len() {
            if let Some(tok) = self.added_at(&s, i) {
                parts.push(Part::Text(s.get(start..i).unwrap_or_default().to_owned()));
                parts.push(Part::Added(tok));
                i = i.saturating_add(tok.content.len());
                start = i;
            } else {
                i = i.saturating_add(s.get(i..).and_then(|r| r.chars().next()).map_or(1, char::len_utf8));
            }
        }
        parts.push(Part::Text(s.get(start..).unwrap_or_default().to_owned()));
        // lstrip/rstrip strip the neighbouring text, in order, as transformers does.
        for k in 0..parts.len() {
            let (lstrip, rstrip) = match parts.get(k) {
                Some(Part::Added(a)) => (a.lstrip, a.rstrip),
                _ => continue,
            };
            if rstrip {
                if let Some(Part::Text(t)) = parts.get_mut(k.saturating_add(1)) {
                    *t = t.trim_start_matches(py_is_space).to_owned();
                }
            }
            if lstrip && k > 0 {
                if let Some(Part::Text(t)) = parts.get_mut(k.saturating_sub(1)) {
                    *t = t.trim_end_matches(py_is_space).to_owned();
                }
            }
        }
        let mut tokens: Vec<Vec<u8>> = Vec::new();
        for part in &parts {
            match part {
                Part::Added(a) => tokens.push(a.content.as_bytes().to_vec()),
                Part::Text(t) if !t.is_empty() => tokens.extend(self.tokenize_part(t)),
                Part::Text(_) => {}
            }
        }
        let second_is_special = tokens.get(1).is_some_and(|t| self.special.iter().any(|s| s.as_bytes() == t.as_slice()));
        if tokens.len() > 1 && tokens.first().is_some_and(|t| t == SPIECE_UNDERLINE.as_bytes()) && second_is_special {
            tokens.remove(0);
        }
        tokens
    }

    /// The ids of [`Self::tokenize`]'s tokens, neither truncated nor padded
    /// and without the `</s>` `encode` appends.
    fn token_ids(&self, text: &str) -> Vec<u32> {
        self.tokenize(text)
            .iter()
            .map(|t| {
                self.added
                    .iter()
                    .find(|a| a.content.as_bytes() == t.as_slice())
                    .map_or_else(|| self.spm.piece_to_id(t), |a| a.id)
            })
            .collect()
    }

    /// Ids with `</s>` as `encode` ends them, neither truncated nor padded
    /// (to measure how much of a text the model would see).
    pub fn encode_full(&self, text: &str) -> Vec<u32> {
        let mut ids = self.token_ids(text);
        if ids.last() != Some(&self.eos_id) {
            ids.push(self.eos_id);
        }
        ids
    }

    /// Ids and mask as `tokenizer(text, padding="max_length", truncation=True,
    /// max_length=max_length)` returns them.
    pub fn encode(&self, text: &str) -> TextIds {
        let mut ids = self.token_ids(text);
        // One special token (</s>) is added after truncation.
        ids.truncate(self.max_length.saturating_sub(1));
        if ids.last() != Some(&self.eos_id) {
            ids.push(self.eos_id);
        }
        let real = ids.len();
        let pad = self.max_length.saturating_sub(real);
        let mut mask = vec![1u32; real];
        if self.pad_left {
            ids.splice(0..0, std::iter::repeat_n(self.pad_id, pad));
            mask.splice(0..0, std::iter::repeat_n(0, pad));
        } else {
            ids.extend(std::iter::repeat_n(self.pad_id, pad));
            mask.extend(std::iter::repeat_n(0, pad));
        }
        TextIds { ids, attention_mask: mask }
    }
}
