//! CLIP's BPE tokenizer, read from the checkpoint's `tokenizer.json` with the
//! `tokenizers` crate. Texts longer than the context are truncated the way
//! OpenAI's `clip.tokenize(..., truncate=True)` does: the first (context − 1)
//! tokens, then the end-of-text token in the last slot. Texts are first cleaned
//! as OpenAI's tokenizer cleans them (`text_clean`), so ids match OpenAI's.

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

pub struct ClipTokenizer {
    inner: Tokenizer,
    context: usize,
}

impl ClipTokenizer {
    pub fn from_json(bytes: &[u8], path: &str, context: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::model(path, format!("not a usable tokenizer.json: {e}")))?;
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

/// SigLIP's tokenizer (`SiglipTokenizer` in `transformers`), from the
/// checkpoint's `tokenizer.json`: the text is lower-cased and canonicalised
/// ([`siglip_canonicalize`]), encoded without special tokens, ended with `</s>`,
/// truncated to the context keeping that `</s>` last, and padded with the pad
/// token to the full context, as `SiglipProcessor(padding="max_length",
/// truncation=True)` gives it to the model.
pub struct SiglipTokenizer {
    inner: Tokenizer,
    context: usize,
    eos: u32,
    pad: u32,
}

/// `SiglipTokenizer.canonicalize_text` after `do_lower_case`: lower case, every
/// character of Python's `string.punctuation` removed, runs of whitespace made
/// one space, and the ends stripped.
pub fn siglip_canonicalize(text: &str) -> String {
    let lowered = text.to_lowercase();
    let kept: String = lowered.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SiglipTokenizer {
    /// `vocab_size` is the model's: a tokenizer with another vocabulary
    /// belongs to another model, an error naming `path`.
    pub fn from_json(bytes: &[u8], path: &str, context: usize, vocab_size: usize) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::model(path, format!("not a usable tokenizer.json: {e}")))?;
        inner
            .with_truncation(None)
            .map_err(|e| Error::model(path, format!("cannot disable truncation: {e}")))?;
        inner.with_padding(None);
        let size = inner.get_vocab_size(true);
        if size != vocab_size {
            return Err(Error::model(
                path,
                format!("has {size} tokens but the model's vocabulary has {vocab_size}: it belongs to another model"),
            ));
        }
        let eos = inner
            .token_to_id("</s>")
            .ok_or_else(|| Error::model(path, "has no end-of-sequence token </s>"))?;
        // `SiglipTokenizer`'s pad token is `</s>` itself.
        Ok(Self { inner, context, eos, pad: eos })
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Token ids ending with `</s>`, neither truncated nor padded.
    pub fn encode_full(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(siglip_canonicalize(text), false)
            .map_err(|e| Error::Input(format!("cannot tokenize {text:?}: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.last() != Some(&self.eos) {
            ids.push(self.eos);
        }
        Ok(ids)
    }

    /// Token ids as the model takes them: exactly `context` of them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode_full(text)?;
        if ids.len() > self.context {
            ids.truncate(self.context);
            ids[self.context - 1] = self.eos;
        }
        ids.resize(self.context, self.pad);
        Ok(ids)
    }
}

/// The tokenizer of a model's family.
pub enum TextTokenizer {
    Clip(ClipTokenizer),
    Siglip(SiglipTokenizer),
}

impl TextTokenizer {
    pub fn context(&self) -> usize {
        match self {
            Self::Clip(t) => t.context(),
            Self::Siglip(t) => t.context(),
        }
    }

    /// Ids with the special tokens, untruncated and unpadded (to check lengths).
    pub fn encode_full(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Clip(t) => t.encode_full(text),
            Self::Siglip(t) => t.encode_full(text),
        }
    }

    /// Ids as the model takes them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Clip(t) => t.encode(text),
            Self::Siglip(t) => t.encode(text),
        }
    }
}
