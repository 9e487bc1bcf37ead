//! Text tokenisers other than CLIP's BPE (`crate::tokenizer`): SentencePiece,
//! read from a `spiece.model` in pure Rust so that it also runs in wasm32, and
//! transformers' `SiglipTokenizer` rules on top of it.

pub mod sentencepiece;
pub mod siglip_tokenizer;
