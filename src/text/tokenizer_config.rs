//! A folder's `tokenizer_config.json` read beside its `tokenizer.json`, as
//! transformers 5 reads the pair (`AutoTokenizer.from_pretrained`,
//! tokenization_utils_tokenizers.py `convert_to_native_format`): the file's
//! vocabulary is rebuilt into the class `tokenizer_class` names, with the
//! config's special tokens and settings taking precedence over the file's:
//!
//! - `BertTokenizer`: the config's `unk_token`, normaliser settings and
//!   `cls $A sep` (`crate::text::wordpiece`);
//! - `CLIPTokenizer`: `RobertaProcessing(eos, bos)` from the config's
//!   `bos_token` / `eos_token` (`crate::tokenizer::ClipTokenizer`);
//! - any class: padding with the config's `pad_token`; every special token the
//!   config names is matched in the raw text.
//!
//! Checked against transformers by tests/reference/tokenizer_config_reference.py
//! (tests/tokenizer_config.rs, tests/browser/tokenizer-config.test.mjs). A special
//! token missing from the file's vocabulary (transformers would give it a new id,
//! which no row of the model's embedding table holds) is an error naming the config.

use serde_json::Value;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// The special-token keys transformers reads from a tokenizer config.
pub const SPECIAL_KEYS: [&str; 7] = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// A parsed `tokenizer_config.json`.
#[derive(Debug)]
pub struct TokenizerConfig {
    name: String,
    value: serde_json::Map<String, Value>,
}

/// A special token as a config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Special {
    /// The key is absent: the class's default applies.
    Absent,
    /// The key is `null`: the tokenizer has none.
    Null,
    Token(String),
}

impl TokenizerConfig {
    /// Parses `(name, bytes)`; an error naming the file unless it is a JSON object.
    pub fn read((name, bytes): (&str, &[u8])) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::model(name, format!("not valid JSON: {e}")))?;
        match v {
            Value::Object(value) => Ok(Self { name: name.to_owned(), value }),
            _ => Err(Error::model(name, "expected a JSON object")),
        }
    }

    /// The file's name, for errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `tokenizer_class` without a trailing `Fast` (transformers 5 maps
    /// `BertTokenizerFast` to `BertTokenizer`).
    pub fn class(&self) -> Option<&str> {
        let class = self.value.get("tokenizer_class")?.as_str()?;
        Some(class.strip_suffix("Fast").unwrap_or(class))
    }

    /// A boolean setting; an error naming the file when it is neither a boolean nor null.
    pub fn flag(&self, key: &str) -> Result<Option<bool>> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(Error::model(&self.name, format!("{key} is {other}, expected true, false or null"))),
        }
    }

    /// A special token: a string or an `AddedToken` object's `content`; an error
    /// naming the file for anything else.
    pub fn special(&self, key: &str) -> Result<Special> {
        match self.value.get(key) {
            None => Ok(Special::Absent),
            Some(Value::Null) => Ok(Special::Null),
            Some(v) => super::siglip_tokenizer::token_content(Some(v))
                .map(Special::Token)
                .ok_or_else(|| Error::model(&self.name, format!("{key} is {v}, expected a token (a string or {{\"content\": …}})"))),
        }
    }

    /// The token `key` names, `default` when absent; an error naming the file
    /// when it is `null` (`what`: what the token is needed for).
    pub fn token_or(&self, key: &str, default: &str, what: &str) -> Result<String> {
        match self.special(key)? {
            Special::Absent => Ok(default.to_owned()),
            Special::Token(t) => Ok(t),
            Special::Null => Err(Error::model(&self.name, format!("{key} is null, but {what}"))),
        }
    }

    /// The id of `token` (named by `key`) in `tokenizer`'s vocabulary or added
    /// tokens; an error naming the file when it has none.
    pub fn id(&self, tokenizer: &Tokenizer, key: &str, token: &str) -> Result<u32> {
        tokenizer.token_to_id(token).ok_or_else(|| {
            Error::model(
                &self.name,
                format!(
                    "its {key} \"{token}\" is not in the tokenizer's vocabulary: transformers would give it a new id, \
                     which the model's token embedding table has no row for"
                ),
            )
        })
    }

    /// Registers every special token the config names as a special added token of
    /// `tokenizer` (matched in the raw text, as transformers does), after checking
    /// each is in its vocabulary.
    pub fn add_specials(&self, tokenizer: &mut Tokenizer) -> Result<()> {
        let mut specials = Vec::new();
        for key in SPECIAL_KEYS {
            if let Special::Token(token) = self.special(key)? {
                self.id(tokenizer, key, &token)?;
                specials.push(AddedToken::from(token, true));
            }
        }
        tokenizer.add_special_tokens(specials).map_err(|e| Error::model(&self.name, format!("cannot add its special tokens: {e}")))?;
        Ok(())
    }

    /// The id padding is made of: the config's `pad_token` when it names one,
    /// else `fallback` (the class's default, or what the tokenizer file says);
    /// an error naming the file when it is `null` or missing from the vocabulary.
    pub fn pad_id(&self, tokenizer: &Tokenizer, fallback: Option<(u32, String)>) -> Result<(u32, String)> {
        match self.special("pad_token")? {
            Special::Token(t) => Ok((self.id(tokenizer, "pad_token", &t)?, t)),
            Special::Absent => fallback.ok_or_else(|| self.no_pad()),
            Special::Null => Err(self.no_pad()),
        }
    }

    fn no_pad(&self) -> Error {
        Error::model(&self.name, "has no pad_token, and the text is padded to the context with it (transformers refuses to pad without one)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tokens_flags_and_refuses_bad_values() {
        let cfg = TokenizerConfig::read((
            "tokenizer_config.json",
            br#"{"tokenizer_class": "BertTokenizerFast", "cls_token": {"content": "[X]", "special": true}, "pad_token": null, "do_lower_case": false, "sep_token": 3, "strip_accents": "yes"}"#,
        ))
        .unwrap();
        assert_eq!(cfg.class(), Some("BertTokenizer"));
        assert_eq!(cfg.special("cls_token").unwrap(), Special::Token("[X]".into()));
        assert_eq!(cfg.special("pad_token").unwrap(), Special::Null);
        assert_eq!(cfg.special("unk_token").unwrap(), Special::Absent);
        assert_eq!(cfg.flag("do_lower_case").unwrap(), Some(false));
        assert!(cfg.special("sep_token").unwrap_err().to_string().contains("tokenizer_config.json"));
        assert!(cfg.flag("strip_accents").unwrap_err().to_string().contains("strip_accents"));
        assert!(cfg.token_or("pad_token", "[PAD]", "padding needs it").is_err());
        assert_eq!(cfg.token_or("unk_token", "[UNK]", "").unwrap(), "[UNK]");
        assert!(TokenizerConfig::read(("tokenizer_config.json", b"[1]")).is_err());
        assert!(TokenizerConfig::read(("tokenizer_config.json", b"{")).unwrap_err().to_string().contains("not valid JSON"));
    }
}
