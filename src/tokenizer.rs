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
