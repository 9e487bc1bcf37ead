//! Unigram segmentation: the best-scoring split of a normalised string into
//! vocabulary pieces, as google/sentencepiece src/unigram_model.cc
//! `Model::EncodeOptimized` computes it (the default encoder of sentencepiece
//! ≥ 0.1.96): a Viterbi pass over UTF-8 byte positions, user-defined symbols
//! scored `length · max_score − 0.1`, an `<unk>` node of score
//! `min_score − 10` for every character no one-character piece covers.
//!
//! The arithmetic mirrors the C++ types: the piece score and candidate path
//! score are `double` there (the `?:` mixes a double and a float), the stored
//! best score a `float`; the unknown-node candidate is all `float`. Ties keep the
//! first candidate (earlier start, then shorter piece).
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::collections::HashMap;

/// `kUnkPenalty` in unigram_model.h.
const UNK_PENALTY: f32 = 10.0;

/// What the Viterbi pass needs to know about the vocabulary.
pub(super) struct Lattice<'a> {
    /// NORMAL, USER_DEFINED and UNUSED pieces (the C++ trie), by bytes.
    pub pieces: &'a HashMap<Vec<u8>, u32>,
    /// Longest piece in bytes (bounds the prefixes tried at each position).
    pub max_piece_len: usize,
    pub is_user_defined: &'a dyn Fn(u32) -> bool,
    pub is_unused: &'a dyn Fn(u32) -> bool,
    pub score: &'a dyn Fn(u32) -> f32,
    pub min_score: f32,
    pub max_score: f32,
    pub unk_id: u32,
}

#[derive(Clone, Copy)]
struct Best {
    id: u32,
    score: f32,
    starts_at: Option<usize>,
}

/// `string_util::OneCharLen`: the length a UTF-8 lead byte announces.
fn one_char_len(b: u8) -> usize {
    match b >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

impl Lattice<'_> {
    /// The segmentation of `normalized` as (start, end, id) byte ranges.
    pub(super) fn encode(&self, normalized: &[u8]) -> Vec<(usize, usize, u32)> {
        let size = normalized.len();
        if size == 0 {
            return Vec::new();
        }
        let unk_score = self.min_score - UNK_PENALTY;
        let mut best = vec![Best { id: self.unk_id, score: 0.0, starts_at: None }; size.saturating_add(1)];
        let mut starts_at = 0usize;
        while starts_at < size {
            let till_here = best.get(starts_at).map_or(0.0, |b| b.score);
            let rest = normalized.get(starts_at..).unwrap_or_default();
            let mblen = rest.first().map_or(1, |&b| one_char_len(b)).min(rest.len());
            let mut has_single_node = false;
            for length in 1..=self.max_piece_len.min(rest.len()) {
                let Some(&id) = rest.get(..length).and_then(|key| self.pieces.get(key)) else { continue };
                if (self.is_unused)(id) {
                    continue;
                }
                let score: f64 = if (self.is_user_defined)(id) {
                    f64::from(length as f32 * self.max_score) - 0.1
                } else {
                    f64::from((self.score)(id))
                };
                let candidate = score + f64::from(till_here);
                if let Some(target) = best.get_mut(starts_at.saturating_add(length)) {
                    if target.starts_at.is_none() || candidate > f64::from(target.score) {
                        *target = Best { id, score: candidate as f32, starts_at: Some(starts_at) };
                    }
                }
                if length == mblen {
                    has_single_node = true;
                }
            }
            if !has_single_node {
                let candidate = unk_score + till_here;
                if let Some(target) = best.get_mut(starts_at.saturating_add(mblen)) {
                    if target.starts_at.is_none() || candidate > target.score {
                        *target = Best { id: self.unk_id, score: candidate, starts_at: Some(starts_at) };
                    }
                }
            }
            starts_at = starts_at.saturating_add(mblen.max(1));
        }
        let mut out = Vec::new();
        let mut end = size;
        while end > 0 {
            match best.get(end).and_then(|b| b.starts_at.map(|s| (s, b.id))) {
                Some((start, id)) if start < end => {
                    out.push((start, end, id));
                    end = start;
                }
                // Unreachable position (only a malformed charsmap output can
                // cause one): the rest is one unknown piece.
                _ => {
                    out.push((0, end, self.unk_id));
                    end = 0;
                }
            }
        }
        out.reverse();
        out
    }
}
