//! CLIP's BPE tokenizer, read from the checkpoint's `tokenizer.json` with the
//! `tokenizers` crate. Texts longer than the context are truncated the way
//! OpenAI's `clip.tokenize(..., truncate=True)` does: the first (context − 1)
//! tokens, then the end-of-text token in the last slot. Texts are first cleaned
//! as OpenAI's tokenizer cleans them (`text_clean`), so ids match OpenAI's.

use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::models::Family;
use crate::text::sentencepiece::SentencePiece;
use crate::text::siglip_tokenizer::SiglipTokenizer as SpieceTokenizer;
use crate::text::tokenizer_config::TokenizerConfig;

/// A file's name (as errors show it) and its bytes.
pub type NamedBytes = (String, Vec<u8>);

/// A text tokenizer's files as the model's repository ships them.
#[derive(Clone, Debug)]
pub enum TokenizerFiles {
    /// `tokenizer.json` (Hugging Face `tokenizers`), with the folder's
    /// `tokenizer_config.json` if it has one: its special tokens (and a BERT
    /// tower's settings) apply as transformers 5 applies them
    /// (`crate::text::tokenizer_config`).
    Json { json: NamedBytes, config: Option<NamedBytes> },
    /// `spiece.model` (a SentencePiece model, read in pure Rust by
    /// [`crate::text`]), with the folder's `tokenizer_config.json` if it has one.
    SentencePiece { model: NamedBytes, config: Option<NamedBytes> },
    /// `vocab.txt` (a BERT WordPiece vocabulary, read by
    /// [`crate::text::wordpiece`]), with the folder's `tokenizer_config.json`
    /// if it has one (`do_lower_case`, the special tokens): open_clip's BERT
    /// text towers as BiomedCLIP's repositories ship them.
    WordPiece { vocab: NamedBytes, config: Option<NamedBytes> },
}

impl TokenizerFiles {
    /// The file that holds the vocabulary (named in errors).
    pub fn name(&self) -> &str {
        match self {
            Self::Json { json: (name, _), .. } | Self::SentencePiece { model: (name, _), .. } | Self::WordPiece { vocab: (name, _), .. } => {
                name
            }
        }
    }
}

/// An error naming `file` unless every id in `ids` (label, id) is a row of the
/// model's `rows`-row token embedding table.
fn check_ids_fit(file: &str, ids: &[(&str, usize)], rows: usize) -> Result<()> {
    match ids.iter().find(|(_, id)| *id >= rows) {
        Some((what, id)) => Err(Error::model(
            file,
            format!(
                "its {what} id {id} is outside the model's token embedding table of {rows} rows: \
                 the tokenizer belongs to another model"
            ),
        )),
        None => Ok(()),
    }
}

pub struct ClipTokenizer {
    inner: Tokenizer,
    context: usize,
}

impl ClipTokenizer {
    pub fn from_json(bytes: &[u8], path: &str, context: usize) -> Result<Self> {
        Self::from_json_with_config(bytes, path, context, None)
    }

    /// [`from_json`](Self::from_json) with the folder's `tokenizer_config.json`:
    /// its special tokens are matched in the text and, for `CLIPTokenizer`, its
    /// `bos_token` / `eos_token` start and end every text (`RobertaProcessing(eos,
    /// bos)`, as transformers' `CLIPTokenizer.__init__` sets them, whatever the
    /// file's post-processor says). Errors name the config.
    pub fn from_json_with_config(bytes: &[u8], path: &str, context: usize, config: Option<&TokenizerConfig>) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::model(path, format!("not a usable tokenizer.json: {e}")))?;
        if let Some(cfg) = config {
            cfg.add_specials(&mut inner)?;
            if cfg.class() == Some("CLIPTokenizer") {
                let bos = cfg.token_or("bos_token", "<|startoftext|>", "CLIP starts every text with it")?;
                let eos = cfg.token_or("eos_token", "<|endoftext|>", "CLIP ends every text with it")?;
                let (bos_id, eos_id) = (cfg.id(&inner, "bos_token", &bos)?, cfg.id(&inner, "eos_token", &eos)?);
                let processor = tokenizers::processors::roberta::RobertaProcessing::new((eos, eos_id), (bos, bos_id))
                    .trim_offsets(false)
                    .add_prefix_space(false);
                inner.with_post_processor(Some(processor));
            }
        }
        inner
            .with_truncation(None)
            .map_err(|e| Error::model(path, format!("cannot disable truncation: {e}")))?;
        inner.with_padding(None);
        // `text_clean::openai_clean` normalises exactly as OpenAI does; the file's
        // own normaliser would also NFC what `html.unescape` left decomposed.
        inner
            .with_normalizer(None::<tokenizers::NormalizerWrapper>)
            .map_err(|e| Error::model(path, format!("cannot drop the normalizer: {e}")))?;
        Ok(Self { inner, context })
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Refuses a tokenizer that can emit ids past the model's `vocab_size`
    /// rows (it belongs to another model); `path` names the file.
    pub fn check_vocabulary(&self, vocab_size: usize, path: &str) -> Result<()> {
        let size = self.inner.get_vocab_size(true);
        if size > vocab_size {
            return Err(Error::model(
                path,
                format!("has {size} tokens but the model's vocabulary has {vocab_size}: it belongs to another model"),
            ));
        }
        Ok(())
    }

    /// Token ids with the start and end tokens and no truncation.
    pub fn encode_full(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(crate::text_clean::openai_clean(text), true)
            .map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids truncated to the context, ending with the end-of-text token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode_full(text)?;
        if ids.len() > self.context {
            let end = *ids.last().expect("longer than the context, so not empty");
            ids.truncate(self.context);
            ids[self.context - 1] = end;
        }
        Ok(ids)
    }
}

/// SigLIP's tokenizer from the checkpoint's `tokenizer.json`, run as
/// `transformers`' fast tokenizer runs it in `SiglipProcessor(padding=
/// "max_length", truncation=True, max_length=…)`: the file's own normaliser,
/// pre-tokenizer and post-processor (special tokens as the file adds them),
/// truncated to the context and padded to it with the pad token. The number of
/// real tokens is returned with the ids: it is the attention mask
/// `transformers` passes to the text tower.
pub struct SiglipTokenizer {
    inner: Tokenizer,
    context: usize,
}

impl SiglipTokenizer {
    /// `vocab_size` is the model's: a tokenizer that can emit ids outside it
    /// belongs to another model, an error naming `path`. `config`: the folder's
    /// `tokenizer_config.json`: its `pad_token` pads, its special tokens are
    /// matched in the text (errors name it).
    pub fn from_json(bytes: &[u8], path: &str, context: usize, vocab_size: usize, config: Option<&TokenizerConfig>) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::model(path, format!("not a usable tokenizer.json: {e}")))?;
        let size = inner.get_vocab_size(true);
        if size > vocab_size {
            return Err(Error::model(
                path,
                format!("has {size} tokens but the model's vocabulary has {vocab_size}: it belongs to another model"),
            ));
        }
        // Added tokens carry their own ids, which need not follow the vocabulary.
        let highest = inner.get_vocab(true).into_values().max().unwrap_or(0) as usize;
        check_ids_fit(path, &[("highest token", highest)], vocab_size)?;
        // The pad token `transformers` uses: the file's padding settings, else
        // `<pad>` (Gemma-style vocabularies), else `</s>` (`SiglipTokenizer`'s),
        // else BERT's `[PAD]` (open_clip's BERT towers).
        let fallback = match inner.get_padding() {
            Some(p) => Some((p.pad_id, p.pad_token.clone())),
            None => ["<pad>", "</s>", "[PAD]"].iter().find_map(|t| inner.token_to_id(t).map(|id| (id, t.to_string()))),
        };
        let (pad_id, pad_token) = match config {
            Some(cfg) => {
                cfg.add_specials(&mut inner)?;
                cfg.pad_id(&inner, fallback)?
            }
            None => fallback.ok_or_else(|| Error::model(path, "has no pad token (<pad>, </s> or [PAD])"))?,
        };
        check_ids_fit(path, &[("pad", pad_id as usize)], vocab_size)?;
        inner
            .with_truncation(Some(tokenizers::TruncationParams { max_length: context, ..Default::default() }))
            .map_err(|e| Error::model(path, format!("cannot set truncation: {e}")))?;
        inner.with_padding(Some(tokenizers::PaddingParams {
            strategy: tokenizers::PaddingStrategy::Fixed(context),
            direction: tokenizers::PaddingDirection::Right,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        Ok(Self { inner, context })
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Ids with the file's special tokens, neither truncated nor padded.
    pub fn encode_full(&self, text: &str) -> Result<Vec<u32>> {
        let mut plain = self.inner.clone();
        plain.with_padding(None);
        let encoding = plain
            .with_truncation(None)
            .map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?
            .encode(text, true)
            .map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The ids as the model takes them (exactly `context`) and how many are real tokens.
    pub fn encode_with_length(&self, text: &str) -> Result<(Vec<u32>, usize)> {
        let encoding =
            self.inner.encode(text, true).map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        let length = encoding.get_attention_mask().iter().filter(|&&m| m != 0).count();
        Ok((encoding.get_ids().to_vec(), length))
    }
}

/// A folder's `tokenizer_config.json`, parsed (errors name it).
pub fn read_config(config: Option<&NamedBytes>) -> Result<Option<TokenizerConfig>> {
    config.map(|(name, bytes)| TokenizerConfig::read((name, bytes))).transpose()
}

/// The tokenizer of a model's family.
pub enum TextTokenizer {
    Clip(ClipTokenizer),
    /// SigLIP from a `tokenizer.json`.
    Siglip(SiglipTokenizer),
    /// open_clip's `HFTokenizer` (BiomedCLIP's BERT WordPiece), padded to the context.
    OpenClipHf(crate::text::wordpiece::WordPieceTokenizer),
    /// SigLIP from a `spiece.model` (transformers' `SiglipTokenizer`).
    SentencePiece(SpieceTokenizer),
}

impl TextTokenizer {
    /// The tokenizer `files` describe for a model of `family` whose text tower
    /// takes `context` positions and has a token embedding table of
    /// `vocab_size` rows. Errors name the tokenizer file: unreadable, of the
    /// wrong kind for the family, or not fitting the table (more tokens than
    /// rows, or an end-of-text / pad id outside it).
    pub fn load(files: &TokenizerFiles, family: Family, context: usize, vocab_size: usize) -> Result<Self> {
        match (files, family) {
            // open_clip's BERT towers take `WordPieceTokenizer` (chosen by
            // `Pipeline` from the model's config); its other towers use CLIP's BPE.
            (TokenizerFiles::Json { json: (name, bytes), config }, Family::Clip | Family::OpenClip) => {
                let config = read_config(config.as_ref())?;
                Ok(Self::Clip(ClipTokenizer::from_json_with_config(bytes, name, context, config.as_ref())?))
            }
            (TokenizerFiles::Json { json: (name, bytes), config }, Family::Siglip) => {
                let config = read_config(config.as_ref())?;
                Ok(Self::Siglip(SiglipTokenizer::from_json(bytes, name, context, vocab_size, config.as_ref())?))
            }
            (TokenizerFiles::SentencePiece { model: (name, bytes), config }, Family::Siglip) => {
                let spm = SentencePiece::from_bytes(bytes, name)?;
                let config = match config {
                    Some((config_name, b)) => Some((
                        config_name.as_str(),
                        std::str::from_utf8(b).map_err(|_| Error::model(config_name, "not UTF-8 text"))?,
                    )),
                    None => None,
                };
                let tok = SpieceTokenizer::new(spm, config, Some(context))?;
                if tok.pads_left() {
                    let config_name = config.map_or("tokenizer_config.json", |c| c.0);
                    return Err(Error::model(
                        config_name,
                        "padding_side \"left\": SigLIP pools the text at its last position and was trained with the padding after the text",
                    ));
                }
                let size = tok.vocab_size();
                if size > vocab_size {
                    return Err(Error::model(
                        name,
                        format!("has {size} tokens but the model's token embedding table has {vocab_size} rows: it belongs to another model"),
                    ));
                }
                check_ids_fit(name, &[("end-of-text", tok.eos_id() as usize), ("pad", tok.pad_id() as usize)], vocab_size)?;
                Ok(Self::SentencePiece(tok))
            }
            (TokenizerFiles::SentencePiece { model: (name, _), .. }, family) => Err(Error::model(
                name,
                format!("a {family} model's tokenizer is its tokenizer.json, not a SentencePiece model"),
            )),
            // open_clip's BERT towers take theirs in `Pipeline`; no other tower reads one.
            (TokenizerFiles::WordPiece { vocab: (name, _), .. }, family) => Err(Error::model(
                name,
                format!("a {family} model's tokenizer is its tokenizer.json, not a WordPiece vocabulary (only BERT text towers use one)"),
            )),
        }
    }

    pub fn context(&self) -> usize {
        match self {
            Self::Clip(t) => t.context(),
            Self::Siglip(t) => t.context(),
            Self::OpenClipHf(t) => t.context(),
            Self::SentencePiece(t) => t.max_length(),
        }
    }

    /// Ids with the special tokens, untruncated and unpadded (to check lengths).
    pub fn encode_full(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Clip(t) => t.encode_full(text),
            Self::Siglip(t) => t.encode_full(text),
            Self::OpenClipHf(t) => t.encode_full(text),
            Self::SentencePiece(t) => Ok(t.encode_full(text)),
        }
    }

    /// Ids as the model takes them (CLIP: unpadded; SigLIP, WordPiece: padded to the context).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_with_length(text)?.0)
    }

    /// The ids and the number of real (unpadded) tokens among them.
    pub fn encode_with_length(&self, text: &str) -> Result<(Vec<u32>, usize)> {
        match self {
            Self::Clip(t) => t.encode(text).map(|ids| {
                let n = ids.len();
                (ids, n)
            }),
            Self::Siglip(t) => t.encode_with_length(text),
            Self::OpenClipHf(t) => t.encode_with_length(text),
            Self::SentencePiece(t) => {
                let encoded = t.encode(text);
                let real = encoded.attention_mask.iter().filter(|&&m| m != 0).count();
                Ok((encoded.ids, real))
            }
        }
    }
}
