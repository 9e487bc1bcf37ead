//! SentencePiece in pure Rust (natively and in wasm32): reads a `spiece.model`
//! (the `ModelProto` protobuf, decoded with prost) and encodes text exactly as
//! google/sentencepiece's `SentencePieceProcessor::Encode` does for unigram
//! models — normalisation (`normalizer`), Viterbi segmentation (`unigram`),
//! then `PopulateSentencePieceText`: a run of unknown pieces becomes one
//! `<unk>`, or, with `byte_fallback`, one `<0xXX>` piece per UTF-8 byte.
//! Checked against PyPI `sentencepiece` 0.2.3 (tests/sentencepiece.rs).
//!
//! The model file is untrusted input: malformed protobuf, empty or duplicate
//! pieces, a missing `<unk>`, missing byte pieces, a broken charsmap or a
//! non-unigram model are errors naming the file, never panics.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

mod normalizer;
mod proto;
mod unigram;

use std::collections::HashMap;

use prost::Message;

use crate::error::{Error, Result};
use normalizer::{CharsMap, Normalizer};

/// `ModelProto.SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(t: Option<i32>) -> Option<Self> {
        Some(match t.unwrap_or(1) {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry; its id is its index.
#[derive(Clone, Debug)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// One piece of an encoded text: its bytes (the normalised surface, a merged
/// run of unknown characters, or `<0xXX>`) and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPiece {
    pub piece: Vec<u8>,
    pub id: u32,
}

/// A loaded unigram SentencePiece model.
pub struct SentencePiece {
    pieces: Vec<Piece>,
    /// NORMAL, USER_DEFINED, UNUSED pieces (segmentation candidates).
    normal: HashMap<Vec<u8>, u32>,
    /// CONTROL, UNKNOWN, BYTE pieces (looked up first by `piece_to_id`).
    reserved: HashMap<Vec<u8>, u32>,
    max_piece_len: usize,
    unk_id: u32,
    /// Byte pieces `<0x00>`..`<0xFF>` when `byte_fallback` is on.
    byte_ids: Option<Vec<u32>>,
    min_score: f32,
    max_score: f32,
    normalizer: Normalizer,
}

/// `<0xAB>` → 0xAB (`PieceToByte`).
fn piece_to_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl SentencePiece {
    /// Decodes a `spiece.model`. `name` (the file name or path) prefixes every
    /// error. Follows `ModelInterface::InitializePieces` and the unigram
    /// `Model` constructor; BPE, WORD and CHAR models are refused.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let err = |m: String| Error::model(name, m);
        let proto = proto::ModelProto::decode(bytes)
            .map_err(|e| err(format!("not a SentencePiece model (protobuf ModelProto: {e})")))?;
        if proto.pieces.is_empty() {
            return Err(err("not a SentencePiece model: it has no pieces".into()));
        }
        let trainer = proto.trainer_spec.clone().unwrap_or_default();
        match trainer.model_type.unwrap_or(1) {
            1 => {}
            2 => return Err(err("a BPE SentencePiece model; only unigram models (SigLIP's kind) are supported".into())),
            3 | 4 => return Err(err("a WORD/CHAR SentencePiece model; only unigram models are supported".into())),
            t => return Err(err(format!("unknown SentencePiece model_type {t}"))),
        }
        if trainer.treat_whitespace_as_suffix.unwrap_or(false) {
            return Err(err("treat_whitespace_as_suffix models are not supported".into()));
        }
        let byte_fallback = trainer.byte_fallback.unwrap_or(false);
        let spec = proto.normalizer_spec.clone().unwrap_or_default();
        if spec.precompiled_charsmap.is_none() {
            if let Some(rule) = spec.name.as_deref().filter(|n| !n.is_empty() && *n != "identity") {
                return Err(err(format!("normalization rule '{rule}' has no precompiled_charsmap")));
            }
        }
        let charsmap = match spec.precompiled_charsmap.as_deref() {
            Some(blob) if !blob.is_empty() => Some(CharsMap::parse(blob).map_err(err)?),
            _ => None,
        };

        let mut pieces = Vec::with_capacity(proto.pieces.len());
        let mut normal = HashMap::new();
        let mut reserved = HashMap::new();
        let mut user_defined = Vec::new();
        let mut unk_id = None;
        let mut byte_ids = vec![None; 256];
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN_POSITIVE);
        let mut max_piece_len = 0;
        for (i, p) in proto.pieces.into_iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| err("too many pieces".into()))?;
            let text = p.piece.unwrap_or_default();
            if text.is_empty() {
                return Err(err(format!("piece {i} is empty")));
            }
            let kind = PieceType::from_proto(p.r#type)
                .ok_or_else(|| err(format!("piece {i} ({text:?}) has an unknown type {:?}", p.r#type)))?;
            let score = p.score.unwrap_or(0.0);
            if !score.is_finite() {
                return Err(err(format!("piece {i} ({text:?}) has a non-finite score")));
            }
            let is_normal = matches!(kind, PieceType::Normal | PieceType::UserDefined | PieceType::Unused);
            let map = if is_normal { &mut normal } else { &mut reserved };
            if map.insert(text.as_bytes().to_vec(), id).is_some() {
                return Err(err(format!("piece {text:?} is defined twice")));
            }
            match kind {
                PieceType::Normal => {
                    min_score = min_score.min(score);
                    max_score = max_score.max(score);
                }
                PieceType::UserDefined => user_defined.push(text.as_bytes().to_vec()),
                PieceType::Unknown => {
                    if unk_id.replace(id).is_some() {
                        return Err(err("more than one <unk> piece".into()));
                    }
                }
                PieceType::Byte => {
                    if !byte_fallback {
                        return Err(err(format!("byte piece {text:?} although byte_fallback is off")));
                    }
                    let b = piece_to_byte(&text).ok_or_else(|| err(format!("invalid byte piece {text:?}")))?;
                    if let Some(slot) = byte_ids.get_mut(usize::from(b)) {
                        *slot = Some(id);
                    }
                }
                PieceType::Control | PieceType::Unused => {}
            }
            if is_normal {
                max_piece_len = max_piece_len.max(text.len());
            }
            pieces.push(Piece { piece: text, score, kind });
        }
        let unk_id = unk_id.ok_or_else(|| err("no <unk> piece (type UNKNOWN)".into()))?;
        let byte_ids = if byte_fallback {
            let all: Option<Vec<u32>> = byte_ids.into_iter().collect();
            Some(all.ok_or_else(|| err("byte_fallback is on but not all 256 byte pieces are defined".into()))?)
        } else {
            None
        };
        Ok(Self {
            pieces,
            normal,
            reserved,
            max_piece_len,
            unk_id,
            byte_ids,
            min_score,
            max_score,
            normalizer: Normalizer {
                charsmap,
                add_dummy_prefix: spec.add_dummy_prefix.unwrap_or(true),
                remove_extra_whitespaces: spec.remove_extra_whitespaces.unwrap_or(true),
                escape_whitespaces: spec.escape_whitespaces.unwrap_or(true),
                user_defined,
            },
        })
    }

    /// Overrides `normalizer_spec.add_dummy_prefix`, as transformers does for
    /// `SiglipTokenizer(legacy=False)` (and always did in 4.x).
    pub fn set_add_dummy_prefix(&mut self, on: bool) {
        self.normalizer.add_dummy_prefix = on;
    }

    /// Number of pieces (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    pub fn piece(&self, id: u32) -> Option<&Piece> {
        self.pieces.get(id as usize)
    }

    /// The id of a piece given exactly, if the vocabulary has it.
    pub fn id_of(&self, piece: &str) -> Option<u32> {
        let key = piece.as_bytes();
        self.reserved.get(key).or_else(|| self.normal.get(key)).copied()
    }

    /// `PieceToId`: reserved pieces first, then normal ones, else `<unk>`.
    pub fn piece_to_id(&self, piece: &[u8]) -> u32 {
        self.reserved.get(piece).or_else(|| self.normal.get(piece)).copied().unwrap_or(self.unk_id)
    }

    /// The text after SentencePiece normalisation (▁ for spaces).
    pub fn normalize(&self, text: &str) -> Vec<u8> {
        self.normalizer.normalize(text)
    }

    /// `SentencePieceProcessor::Encode(text)` as pieces with ids (no BOS/EOS).
    pub fn encode_pieces(&self, text: &str) -> Vec<EncodedPiece> {
        let normalized = self.normalize(text);
        let is_user_defined = |id: u32| self.piece(id).is_some_and(|p| p.kind == PieceType::UserDefined);
        let is_unused = |id: u32| self.piece(id).is_some_and(|p| p.kind == PieceType::Unused);
        let score = |id: u32| self.piece(id).map_or(0.0, |p| p.score);
        let lattice = unigram::Lattice {
            pieces: &self.normal,
            max_piece_len: self.max_piece_len,
            is_user_defined: &is_user_defined,
            is_unused: &is_unused,
            score: &score,
            min_score: self.min_score,
            max_score: self.max_score,
            unk_id: self.unk_id,
        };
        let mut out: Vec<EncodedPiece> = Vec::new();
        let mut prev_unk = false;
        for (start, end, id) in lattice.encode(&normalized) {
            let surface = normalized.get(start..end).unwrap_or_default();
            let is_unk = id == self.unk_id;
            match (&self.byte_ids, is_unk) {
                (Some(byte_ids), true) => {
                    for &b in surface {
                        let id = byte_ids.get(usize::from(b)).copied().unwrap_or(self.unk_id);
                        out.push(EncodedPiece { piece: format!("<0x{b:02X}>").into_bytes(), id });
                    }
                }
                // A run of unknown characters becomes one <unk>.
                (None, true) if prev_unk => {
                    if let Some(last) = out.last_mut() {
                        last.piece.extend_from_slice(surface);
                    }
                }
                _ => out.push(EncodedPiece { piece: surface.to_vec(), id }),
            }
            prev_unk = is_unk;
        }
        out
    }

    /// `SentencePieceProcessor::EncodeAsIds(text)` (no BOS/EOS).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_pieces(text).into_iter().map(|p| p.id).collect()
    }
}

/// The tokenizer's ids must index the text embedding table: `tokenizer_file`
/// has `vocab` entries, the model's `token_embedding` has `rows`. SigLIP
/// checkpoints have exactly one row per `spiece.model` piece, so a difference
/// means the tokenizer belongs to another model. The error names both files.
pub fn check_vocab_size(tokenizer_file: &str, vocab: usize, weights_file: &str, rows: usize) -> Result<()> {
    if vocab == rows {
        return Ok(());
    }
    Err(Error::model(
        tokenizer_file,
        format!(
            "the tokenizer has {vocab} entries but the text embedding table in {weights_file} has {rows} rows: \
             this tokenizer does not belong to this model"
        ),
    ))
}
