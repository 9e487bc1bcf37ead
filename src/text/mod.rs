//! Text tokenisers other than CLIP's BPE (`crate::tokenizer`): SentencePiece,
//! read from a `spiece.model` in pure Rust so that it also runs in wasm32, and
//! transformers' `SiglipTokenizer` rules on top of it; BERT's WordPiece as
//! open_clip's `HFTokenizer` runs it (`wordpiece`, BiomedCLIP's text tower).

pub mod sentencepiece;
pub mod siglip_tokenizer;
pub mod tokenizer_config;
pub mod wordpiece;
