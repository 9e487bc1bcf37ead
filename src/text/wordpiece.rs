//! BERT's WordPiece tokenizer as open_clip's `HFTokenizer.__call__` runs it
//! for Hugging Face text towers (BiomedCLIP's PubMedBERT): open_clip's text
//! clean-up (`clean`: `whitespace` by default, `lower`, `canonicalize`; see
//! open_clip/tokenizer.py), then transformers' `BertTokenizer` called with
//! `max_length=context_length, padding="max_length", truncation=True`:
//! `[CLS] … [SEP]`, truncated to the context (the special tokens included),
//! padded with the pad token to the context; with `strip_sep_token` every
//! `[SEP]` id is then replaced by 0, as open_clip does.
//!
//! The tokenizer itself is the `tokenizers` crate (the library transformers'
//! fast tokenizer runs): the folder's `tokenizer.json` when it has one; else
//! `vocab.txt` and `tokenizer_config.json` made into what transformers 5's
//! `BertTokenizer.__init__` builds (models/bert/tokenization_bert.py):
//! WordPiece (`##` pieces, `[UNK]`, words over 100 characters unknown),
//! `BertNormalizer(clean_text, tokenize_chinese_chars, strip_accents,
//! do_lower_case)`, `BertPreTokenizer`, `[CLS] $A [SEP]`, and the special
//! tokens matched in the raw text before normalisation.
//!
//! Checked id for id against open_clip on tests/fixtures/wordpiece (both
//! kinds of folder; tests/reference/wordpiece_reference.py).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::collections::HashMap;

use serde_json::Value;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{Error, Result};
use crate::text::siglip_tokenizer::token_content;
use crate::text_clean;

/// transformers' `max_input_chars_per_word` for BERT: longer words are `[UNK]`.
const MAX_WORD_CHARS: usize = 100;
/// Embedding tables may have this many rows fewer beyond the vocabulary (padding).
pub const MAX_TABLE_PADDING: usize = 128;
/// Largest context accepted (BERT position tables have 512 rows; 8192 is generous).
const MAX_CONTEXT: usize = 8192;

/// open_clip's `clean` argument of `HFTokenizer` (`get_clean_fn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenClipClean {
    /// `whitespace_clean(basic_clean(text))` (the default).
    #[default]
    Whitespace,
    /// The same, lower-cased.
    Lower,
    /// `canonicalize_text(basic_clean(text))`: `_` → space, ASCII punctuation
    /// removed, lower-cased, whitespace runs made one space.
    Canonicalize,
}

impl OpenClipClean {
    /// By open_clip's name (`tokenizer_kwargs.clean`); `None` for another.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "whitespace" => Some(Self::Whitespace),
            "lower" => Some(Self::Lower),
            "canonicalize" => Some(Self::Canonicalize),
            _ => None,
        }
    }

    /// Applies the clean-up to one text.
    pub fn apply(self, text: &str) -> String {
        let basic = text_clean::basic_clean(text);
        match self {
            Self::Whitespace => text_clean::split_join(&basic),
            Self::Lower => text_clean::split_join(&basic).to_lowercase(),
            Self::Canonicalize => {
                let replaced = basic.replace('_', " ");
                let kept: String = replaced.chars().filter(|c| !c.is_ascii_punctuation()).collect();
                text_clean::split_join(&kept.to_lowercase())
            }
        }
    }
}

/// How open_clip calls the tokenizer (`HFTokenizer` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WordPieceOptions {
    /// `context_length`: every encoding is exactly this long.
    pub context: usize,
    pub clean: OpenClipClean,
    /// `strip_sep_token`: `[SEP]` ids replaced by 0.
    pub strip_sep_token: bool,
    /// `do_lower_case` passed to `AutoTokenizer.from_pretrained` (open_clip's
    /// `tokenizer_kwargs`): overrides `tokenizer_config.json`, and with a
    /// `tokenizer.json` the lower-casing of its BERT normaliser (as
    /// transformers 5 rebuilds it). `None`: the files decide.
    pub do_lower_case: Option<bool>,
}

impl WordPieceOptions {
    pub fn new(context: usize) -> Self {
        Self { context, clean: OpenClipClean::Whitespace, strip_sep_token: false, do_lower_case: None }
    }
}

/// A file given by name and bytes.
pub type NamedBytes<'a> = (&'a str, &'a [u8]);

pub struct WordPieceTokenizer {
    inner: Tokenizer,
    options: WordPieceOptions,
    sep_id: u32,
    pad_id: u32,
    /// Highest id the tokenizer can emit, plus one.
    vocab_size: usize,
    /// The file the vocabulary came from, for errors.
    source: String,
}

impl std::fmt::Debug for WordPieceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPieceTokenizer")
            .field("source", &self.source)
            .field("options", &self.options)
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

/// The `tokenizer_config.json` settings transformers' `BertTokenizer` takes.
struct BertSettings {
    do_lower_case: bool,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: bool,
    unk: String,
    sep: String,
    pad: String,
    cls: String,
    mask: String,
}

impl BertSettings {
    fn read(config: Option<NamedBytes<'_>>) -> Result<Self> {
        let cfg = match config {
            Some((name, bytes)) => {
                let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::model(name, format!("not valid JSON: {e}")))?;
                if !v.is_object() {
                    return Err(Error::model(name, "expected a JSON object"));
                }
                v
            }
            None => Value::Object(Default::default()),
        };
        let flag = |k: &str| cfg.get(k).and_then(Value::as_bool);
        let token = |k: &str, default: &str| token_content(cfg.get(k)).unwrap_or_else(|| default.to_owned());
        Ok(Self {
            do_lower_case: flag("do_lower_case").unwrap_or(true),
            strip_accents: flag("strip_accents"),
            tokenize_chinese_chars: flag("tokenize_chinese_chars").unwrap_or(true),
            unk: token("unk_token", "[UNK]"),
            sep: token("sep_token", "[SEP]"),
            pad: token("pad_token", "[PAD]"),
            cls: token("cls_token", "[CLS]"),
            mask: token("mask_token", "[MASK]"),
        })
    }
}

/// `load_vocab` of transformers: the lines of the file read in Python's
/// universal-newline text mode, each token's id its line number (a repeated
/// token keeps its last line). Returns the map and the number of lines.
fn read_vocab(name: &str, bytes: &[u8]) -> Result<(HashMap<String, u32>, usize)> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::model(name, format!("not UTF-8 text: {e}")))?;
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    let mut vocab = HashMap::with_capacity(lines.len());
    for (i, token) in lines.iter().enumerate() {
        let id = u32::try_from(i).map_err(|_| Error::model(name, "too many tokens"))?;
        vocab.insert((*token).to_owned(), id);
    }
    if vocab.is_empty() {
        return Err(Error::model(name, "is empty: a WordPiece vocabulary lists one token per line"));
    }
    Ok((vocab, lines.len()))
}

/// Sets the lower-casing of a `tokenizer.json`'s BERT normaliser, its other
/// settings kept (transformers 5 rebuilds the normaliser from the
/// `do_lower_case` it is given); an error naming the file for another normaliser.
fn override_lowercase(t: &mut Tokenizer, lower: bool, name: &str) -> Result<()> {
    let Some(NormalizerWrapper::BertNormalizer(n)) = t.get_normalizer() else {
        return Err(Error::model(name, "do_lower_case is set but this tokenizer.json's normaliser is not BERT's"));
    };
    let normalizer = BertNormalizer::new(n.clean_text, n.handle_chinese_chars, n.strip_accents, lower);
    t.with_normalizer(Some(normalizer)).map_err(|e| Error::model(name, format!("cannot set the normaliser: {e}")))?;
    Ok(())
}

impl WordPieceTokenizer {
    /// From a folder's files: `tokenizer.json` when present (`tokenizer_json`),
    /// else `vocab.txt`; `tokenizer_config.json` names the special tokens and,
    /// without a `tokenizer.json`, the normaliser settings. Errors name the file.
    pub fn from_files(
        tokenizer_json: Option<NamedBytes<'_>>,
        vocab_txt: Option<NamedBytes<'_>>,
        config: Option<NamedBytes<'_>>,
        options: WordPieceOptions,
    ) -> Result<Self> {
        let mut settings = BertSettings::read(config)?;
        if let Some(lower) = options.do_lower_case {
            settings.do_lower_case = lower;
        }
        let shown = |f: Option<NamedBytes<'_>>| f.map_or("tokenizer.json".to_owned(), |(n, _)| n.to_owned());
        if options.context < 2 || options.context > MAX_CONTEXT {
            return Err(Error::model(
                shown(tokenizer_json.or(vocab_txt)),
                format!("context length {} is outside 2..={MAX_CONTEXT}", options.context),
            ));
        }
        let (source, mut inner, lines) = match (tokenizer_json, vocab_txt) {
            (Some((name, bytes)), _) => {
                let mut t = Tokenizer::from_bytes(bytes)
                    .map_err(|e| Error::model(name, format!("not a usable tokenizer.json: {e}")))?;
                if let Some(lower) = options.do_lower_case {
                    override_lowercase(&mut t, lower, name)?;
                }
                (name.to_owned(), t, 0)
            }
            (None, Some((name, bytes))) => {
                let (vocab, lines) = read_vocab(name, bytes)?;
                if !vocab.contains_key(&settings.unk) {
                    return Err(Error::model(name, format!("has no unknown token {:?}", settings.unk)));
                }
                let model = WordPiece::builder()
                    .vocab(vocab.into_iter().collect::<ahash::AHashMap<String, u32>>())
                    .unk_token(settings.unk.clone())
                    .continuing_subword_prefix("##".into())
                    .max_input_chars_per_word(MAX_WORD_CHARS)
                    .build()
                    .map_err(|e| Error::model(name, format!("not a usable WordPiece vocabulary: {e}")))?;
                let mut t = Tokenizer::new(model);
                t.with_normalizer(Some(BertNormalizer::new(
                    true,
                    settings.tokenize_chinese_chars,
                    settings.strip_accents,
                    settings.do_lower_case,
                )))
                .map_err(|e| Error::model(name, format!("cannot set the normaliser: {e}")))?;
                t.with_pre_tokenizer(Some(BertPreTokenizer));
                (name.to_owned(), t, lines)
            }
            (None, None) => {
                return Err(Error::model("tokenizer.json", "missing: a BERT text tower needs tokenizer.json or vocab.txt"))
            }
        };
        let err = |m: String| Error::model(&source, m);
        let id = |t: &Tokenizer, tok: &str| t.token_to_id(tok).ok_or_else(|| err(format!("has no token {tok:?}")));
        let (cls_id, sep_id, pad_id) = (id(&inner, &settings.cls)?, id(&inner, &settings.sep)?, id(&inner, &settings.pad)?);
        if tokenizer_json.is_none() {
            // transformers registers its special tokens as added tokens
            // (matched in the raw text, not normalised).
            let specials: Vec<AddedToken> = [&settings.pad, &settings.unk, &settings.cls, &settings.sep, &settings.mask]
                .iter()
                .filter(|t| inner.token_to_id(t).is_some())
                .map(|t| AddedToken::from((*t).clone(), true))
                .collect();
            inner
                .add_special_tokens(specials)
                .map_err(|e| Error::model(&source, format!("cannot add the special tokens: {e}")))?;
            inner.with_post_processor(Some(BertProcessing::new(
                (settings.sep.clone(), sep_id),
                (settings.cls.clone(), cls_id),
            )));
        }
        inner
            .with_truncation(Some(TruncationParams { max_length: options.context, ..Default::default() }))
            .map_err(|e| err(format!("cannot set truncation: {e}")))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(options.context),
            direction: PaddingDirection::Right,
            pad_id,
            pad_token: settings.pad.clone(),
            ..Default::default()
        }));
        let max_id = inner.get_vocab(true).values().copied().max().unwrap_or(0);
        let vocab_size = usize::try_from(max_id).unwrap_or(usize::MAX).saturating_add(1).max(lines);
        Ok(Self { inner, options, sep_id, pad_id, vocab_size, source })
    }

    pub fn context(&self) -> usize {
        self.options.context
    }

    /// Highest id this tokenizer can emit, plus one (`vocab.txt`: its lines).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The model's word-embedding table must match the vocabulary: an error
    /// naming the tokenizer's file when it has fewer rows than the tokenizer
    /// has ids, or [`MAX_TABLE_PADDING`] or more rows beyond them (tables are
    /// at most padded to a multiple of 128): the vocabulary of another model.
    pub fn check_embedding_rows(&self, rows: usize) -> Result<()> {
        if rows.checked_sub(self.vocab_size).is_none_or(|extra| extra >= MAX_TABLE_PADDING) {
            return Err(Error::model(
                &self.source,
                format!(
                    "has {} tokens but the text tower's word embeddings have {rows} rows: it belongs to another model",
                    self.vocab_size
                ),
            ));
        }
        Ok(())
    }

    /// Ids with `[CLS]`/`[SEP]`, neither truncated nor padded (to check lengths).
    pub fn encode_full(&self, text: &str) -> Result<Vec<u32>> {
        let mut plain = self.inner.clone();
        plain.with_padding(None);
        let plain = plain.with_truncation(None).map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        let encoding = plain
            .encode(self.options.clean.apply(text), true)
            .map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(self.strip_sep(encoding.get_ids().to_vec()))
    }

    /// The ids open_clip gives the text tower (exactly `context` long) and
    /// how many are not the pad id (open_clip's `HFTextEncoder` masks
    /// `ids == pad_token_id`: a `[PAD]` written in the text, or a stripped
    /// `[SEP]` when the pad id is 0, is masked too).
    pub fn encode_with_length(&self, text: &str) -> Result<(Vec<u32>, usize)> {
        let encoding = self
            .inner
            .encode(self.options.clean.apply(text), true)
            .map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        let ids = self.strip_sep(encoding.get_ids().to_vec());
        let real = ids.iter().filter(|&&id| id != self.pad_id).count();
        Ok((ids, real))
    }

    /// The id padding is made of.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    fn strip_sep(&self, mut ids: Vec<u32>) -> Vec<u32> {
        if self.options.strip_sep_token {
            for id in ids.iter_mut().filter(|id| **id == self.sep_id) {
                *id = 0;
            }
        }
        ids
    }
}
