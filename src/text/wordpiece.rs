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
//! fast tokenizer runs): the folder's `tokenizer.json` when it has one (as it
//! is; with a `tokenizer_config.json` naming `BertTokenizer`, its vocabulary
//! and added tokens rebuilt with the config's settings as below, as transformers
//! 5 does, `crate::text::tokenizer_config`); else `vocab.txt` and
//! `tokenizer_config.json` made into what transformers 5's
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

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{Error, Result};
use crate::text::tokenizer_config::{Special, TokenizerConfig};
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

/// The `tokenizer_config.json` settings transformers' `BertTokenizer` takes
/// (models/bert/tokenization_bert.py `__init__`, its defaults when a key is absent).
struct BertSettings {
    do_lower_case: bool,
    strip_accents: Option<bool>,
    tokenize_chinese_chars: bool,
    unk: String,
    sep: String,
    pad: String,
    cls: String,
    /// `None` when the config sets it to null.
    mask: Option<String>,
}

impl BertSettings {
    /// From the config (defaults without one); errors name the file: a setting of
    /// the wrong type, or a null token BERT needs.
    fn read(config: Option<&TokenizerConfig>) -> Result<Self> {
        let Some(cfg) = config else {
            return Ok(Self {
                do_lower_case: true,
                strip_accents: None,
                tokenize_chinese_chars: true,
                unk: "[UNK]".into(),
                sep: "[SEP]".into(),
                pad: "[PAD]".into(),
                cls: "[CLS]".into(),
                mask: Some("[MASK]".into()),
            });
        };
        Ok(Self {
            do_lower_case: cfg.flag("do_lower_case")?.unwrap_or(true),
            strip_accents: cfg.flag("strip_accents")?,
            tokenize_chinese_chars: cfg.flag("tokenize_chinese_chars")?.unwrap_or(true),
            unk: cfg.token_or("unk_token", "[UNK]", "WordPiece needs an unknown token")?,
            sep: cfg.token_or("sep_token", "[SEP]", "BERT ends every text with it")?,
            pad: cfg.token_or("pad_token", "[PAD]", "the text is padded to the context with it (transformers refuses to pad without one)")?,
            cls: cfg.token_or("cls_token", "[CLS]", "BERT starts every text with it")?,
            mask: match cfg.special("mask_token")? {
                Special::Absent => Some("[MASK]".into()),
                Special::Null => None,
                Special::Token(t) => Some(t),
            },
        })
    }

    /// transformers' `BertTokenizer` backend on `vocab`: WordPiece (`##`
    /// pieces, the unknown token, words over 100 characters unknown),
    /// `BertNormalizer` with these settings, `BertPreTokenizer`.
    fn tokenizer(&self, vocab: ahash::AHashMap<String, u32>, name: &str) -> Result<Tokenizer> {
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token(self.unk.clone())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(MAX_WORD_CHARS)
            .build()
            .map_err(|e| Error::model(name, format!("not a usable WordPiece vocabulary: {e}")))?;
        let mut t = Tokenizer::new(model);
        t.with_normalizer(Some(BertNormalizer::new(true, self.tokenize_chinese_chars, self.strip_accents, self.do_lower_case)))
            .map_err(|e| Error::model(name, format!("cannot set the normaliser: {e}")))?;
        t.with_pre_tokenizer(Some(BertPreTokenizer));
        Ok(t)
    }
}

/// How a `tokenizer.json` is read, by the class its `tokenizer_config.json` names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonAs {
    /// No config: the file as it is.
    File,
    /// `BertTokenizer`: the file's vocabulary and added tokens, the rest rebuilt
    /// from the config ([`BertSettings`]).
    Bert,
    /// No `tokenizer_class`, or `PreTrainedTokenizerFast` (transformers'
    /// `TokenizersBackend`): the file as it is, padded with the config's pad token.
    Generic,
}

impl JsonAs {
    fn of(config: Option<&TokenizerConfig>) -> Result<Self> {
        let Some(cfg) = config else { return Ok(Self::File) };
        match cfg.class() {
            Some("BertTokenizer") => Ok(Self::Bert),
            None | Some("PreTrainedTokenizer") | Some("TokenizersBackend") => Ok(Self::Generic),
            Some(other) => Err(Error::model(
                cfg.name(),
                format!("its tokenizer_class {other:?} is not a BERT tokenizer (BertTokenizer, or PreTrainedTokenizerFast for tokenizer.json as it is)"),
            )),
        }
    }
}

/// `t` rebuilt as transformers' `BertTokenizer` rebuilds a `tokenizer.json`
/// (`convert_to_native_format`): its WordPiece vocabulary and its added tokens
/// kept, everything else from `settings`.
fn rebuild_as_bert(t: &Tokenizer, settings: &BertSettings, config: &TokenizerConfig) -> Result<Tokenizer> {
    let tokenizers::ModelWrapper::WordPiece(wordpiece) = t.get_model() else {
        return Err(Error::model(config.name(), "names BertTokenizer, but tokenizer.json's model is not WordPiece"));
    };
    let vocab = tokenizers::Model::get_vocab(wordpiece).into_iter().collect::<ahash::AHashMap<String, u32>>();
    let mut rebuilt = settings.tokenizer(vocab, config.name())?;
    let mut added: Vec<(u32, AddedToken)> = t.get_added_tokens_decoder().into_iter().collect();
    added.sort_by_key(|(id, _)| *id);
    let (special, plain): (Vec<AddedToken>, Vec<AddedToken>) = added.into_iter().map(|(_, tok)| tok).partition(|tok| tok.special);
    let err = |e: tokenizers::Error| Error::model(config.name(), format!("cannot keep tokenizer.json's added tokens: {e}"));
    rebuilt.add_special_tokens(special).map_err(err)?;
    rebuilt.add_tokens(plain).map_err(err)?;
    Ok(rebuilt)
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
        let config = config.map(TokenizerConfig::read).transpose()?;
        let mut settings = BertSettings::read(config.as_ref())?;
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
        // The tokenizer, and whether transformers builds its special tokens and
        // `[CLS] $A [SEP]` from the settings (else the file's post-processor stays).
        let (source, mut inner, lines, rebuilt) = match (tokenizer_json, vocab_txt) {
            (Some((name, bytes)), _) => {
                let t = Tokenizer::from_bytes(bytes)
                    .map_err(|e| Error::model(name, format!("not a usable tokenizer.json: {e}")))?;
                let how = JsonAs::of(config.as_ref())?;
                let mut t = match (how, &config) {
                    (JsonAs::Bert, Some(cfg)) => rebuild_as_bert(&t, &settings, cfg)?,
                    _ => t,
                };
                if let (Some(lower), false) = (options.do_lower_case, how == JsonAs::Bert) {
                    override_lowercase(&mut t, lower, name)?;
                }
                (name.to_owned(), t, 0, how == JsonAs::Bert)
            }
            (None, Some((name, bytes))) => {
                let (vocab, lines) = read_vocab(name, bytes)?;
                if !vocab.contains_key(&settings.unk) {
                    return Err(Error::model(name, format!("has no unknown token {:?}", settings.unk)));
                }
                let t = settings.tokenizer(vocab.into_iter().collect(), name)?;
                (name.to_owned(), t, lines, true)
            }
            (None, None) => {
                return Err(Error::model("tokenizer.json", "missing: a BERT text tower needs tokenizer.json or vocab.txt"))
            }
        };
        let err = |m: String| Error::model(&source, m);
        let id = |t: &Tokenizer, tok: &str| t.token_to_id(tok).ok_or_else(|| err(format!("has no token {tok:?}")));
        // Tokens the config names must be in the vocabulary (transformers would
        // add them with new ids, rows the embedding table lacks): the config's error.
        if let Some(cfg) = &config {
            cfg.add_specials(&mut inner)?;
        }
        let (cls_id, sep_id) = (id(&inner, &settings.cls)?, id(&inner, &settings.sep)?);
        let (pad_id, pad_token) = match (&config, rebuilt) {
            // transformers' `TokenizersBackend`: the config's pad token, else the file's padding.
            (Some(cfg), false) => cfg.pad_id(&inner, inner.get_padding().map(|p| (p.pad_id, p.pad_token.clone())))?,
            _ => (id(&inner, &settings.pad)?, settings.pad.clone()),
        };
        if rebuilt {
            // transformers registers its special tokens as added tokens
            // (matched in the raw text, not normalised).
            let specials: Vec<AddedToken> = [Some(&settings.pad), Some(&settings.unk), Some(&settings.cls), Some(&settings.sep), settings.mask.as_ref()]
                .into_iter()
                .flatten()
                .filter(|t| inner.token_to_id(t).is_some())
                .map(|t| AddedToken::from(t.clone(), true))
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
            pad_token,
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
