//! SentencePiece's text normaliser: the precompiled charsmap (a darts-clone
//! double-array trie of byte sequences and a block of NUL-terminated
//! replacements, e.g. `nmt_nfkc`), user-defined symbols kept verbatim, then the
//! whitespace rules (`add_dummy_prefix`, `remove_extra_whitespaces`,
//! `escape_whitespaces`). Follows google/sentencepiece src/normalizer.cc
//! (`Normalizer::Normalize`, `NormalizePrefix`, `DecodePrecompiledCharsMap`) and
//! third_party/darts_clone (`DoubleArrayImpl::commonPrefixSearch`) byte for byte.
//!
//! The charsmap comes from the model file, so every trie access is bounds
//! checked: a broken trie ends the match instead of reading out of range.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space.
pub(super) const SPACE_SYMBOL: &[u8] = "\u{2581}".as_bytes();
/// U+FFFD, what a malformed UTF-8 byte becomes (one byte consumed).
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();
/// `Normalizer::kMaxTrieResultsSize`: only the first 32 prefix matches count.
const MAX_TRIE_RESULTS: usize = 32;

/// A decoded `precompiled_charsmap`.
pub(super) struct CharsMap {
    trie: Vec<u32>,
    /// Replacement strings, each NUL-terminated; trie values index into it.
    normalized: Vec<u8>,
}

impl CharsMap {
    /// `<trie size: u32 LE><double-array units: u32 LE><normalized strings>`,
    /// with sentencepiece's checks (size a non-zero multiple of 1024 that fits,
    /// replacement block NUL-terminated).
    pub(super) fn parse(blob: &[u8]) -> Result<Self, String> {
        let (size, rest) = match blob.split_first_chunk::<4>() {
            Some((size, rest)) if !rest.is_empty() => (u32::from_le_bytes(*size) as usize, rest),
            _ => return Err("precompiled_charsmap is broken (shorter than its header)".into()),
        };
        if size >= rest.len() {
            return Err(format!("precompiled_charsmap: trie size {size} exceeds the blob ({} bytes)", rest.len()));
        }
        if size < 1024 || size % 1024 != 0 {
            return Err(format!("precompiled_charsmap: trie size {size} is not a non-zero multiple of 1024"));
        }
        let (trie_bytes, normalized) = rest.split_at_checked(size).ok_or("precompiled_charsmap: truncated trie")?;
        if normalized.last() != Some(&0) {
            return Err("precompiled_charsmap: the replacement block is not NUL-terminated".into());
        }
        let trie = trie_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0), c.get(2).copied().unwrap_or(0), c.get(3).copied().unwrap_or(0)]))
            .collect();
        Ok(Self { trie, normalized: normalized.to_vec() })
    }

    /// The longest rule (among the first 32 prefix matches, as sentencepiece
    /// caps them) that matches the start of `input`: (replacement, bytes consumed).
    fn longest_prefix(&self, input: &[u8]) -> Option<(&[u8], usize)> {
        // darts-clone unit layout: bit 8 has_leaf, bits 0..8 label (bit 31 marks a
        // leaf unit, which never equals a byte), offset in bits 10.. shifted by 8
        // when bit 9 is set, value in bits 0..31.
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let mut best: Option<(usize, usize)> = None; // (length, value)
        let mut found = 0usize;
        let mut node = offset(*self.trie.first()?);
        for (i, &b) in input.iter().enumerate() {
            node ^= b as usize;
            let Some(&unit) = self.trie.get(node) else { break };
            if unit & (0x8000_0000 | 0xFF) != b as u32 {
                break;
            }
            node ^= offset(unit);
            if (unit >> 8) & 1 == 1 {
                if found < MAX_TRIE_RESULTS {
                    let Some(&leaf) = self.trie.get(node) else { break };
                    // Lengths grow with i, so the last match kept is the longest.
                    best = Some((i.saturating_add(1), (leaf & 0x7FFF_FFFF) as usize));
                }
                found = found.saturating_add(1);
            }
        }
        let (length, value) = best?;
        // sentencepiece falls back to the plain character when a value points
        // outside the replacement block.
        let tail = self.normalized.get(value..)?;
        let end = tail.iter().position(|&c| c == 0)?;
        Some((tail.get(..end)?, length))
    }
}

/// The `NormalizerSpec` options plus what `SentencePieceProcessor::Load` adds.
pub(super) struct Normalizer {
    pub charsmap: Option<CharsMap>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
    /// User-defined symbols: matched before the charsmap and kept as they are.
    pub user_defined: Vec<Vec<u8>>,
}

/// Length of the UTF-8 character starting `b`, if it is well formed.
fn utf8_char_len(b: &[u8]) -> Option<usize> {
    let n = match *b.first()? {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };
    std::str::from_utf8(b.get(..n)?).ok().map(|_| n)
}

impl Normalizer {
    /// `NormalizePrefix`: the normalised form of the start of `input` and how
    /// many input bytes it consumes (at least 1 for non-empty input).
    fn prefix<'a>(&'a self, input: &'a [u8]) -> (&'a [u8], usize) {
        let user = self
            .user_defined
            .iter()
            .filter(|s| !s.is_empty() && input.starts_with(s))
            .map(|s| s.len())
            .max();
        if let Some(len) = user {
            return (input.get(..len).unwrap_or(input), len);
        }
        if let Some((replacement, len)) = self.charsmap.as_ref().and_then(|m| m.longest_prefix(input)) {
            if len <= input.len() {
                return (replacement, len);
            }
        }
        match utf8_char_len(input) {
            Some(len) => (input.get(..len).unwrap_or(input), len),
            None => (REPLACEMENT, 1),
        }
    }

    /// `Normalizer::Normalize` (without the alignment it also computes).
    pub(super) fn normalize(&self, text: &str) -> Vec<u8> {
        let mut input = text.as_bytes();
        let mut out = Vec::with_capacity(input.len().saturating_mul(3) / 2);
        if self.remove_extra_whitespaces {
            while !input.is_empty() {
                let (norm, consumed) = self.prefix(input);
                if norm != b" " {
                    break;
                }
                input = input.get(consumed..).unwrap_or_default();
            }
        }
        if input.is_empty() {
            return out;
        }
        let space: &[u8] = if self.escape_whitespaces { SPACE_SYMBOL } else { b" " };
        if self.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        let mut is_prev_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (norm, consumed) = self.prefix(input);
            let mut sp = norm;
            if is_prev_space {
                while let Some(rest) = sp.strip_prefix(b" ") {
                    sp = rest;
                }
            }
            if !sp.is_empty() {
                for &c in sp {
                    if c == b' ' {
                        out.extend_from_slice(space);
                    } else {
                        out.push(c);
                    }
                }
                is_prev_space = sp.ends_with(b" ");
            }
            input = input.get(consumed..).unwrap_or_default();
            if !self.remove_extra_whitespaces {
                is_prev_space = false;
            }
        }
        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len().saturating_sub(space.len()));
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn charsmap_header_errors() {
        assert!(CharsMap::parse(&[]).is_err());
        assert!(CharsMap::parse(&[0, 4, 0, 0, 1]).is_err()); // size 1024 > blob
        let mut blob = 1024u32.to_le_bytes().to_vec();
        blob.extend(vec![0u8; 1024]);
        blob.push(b'x'); // not NUL-terminated
        assert!(CharsMap::parse(&blob).is_err());
        *blob.last_mut().unwrap() = 0;
        assert!(CharsMap::parse(&blob).is_ok());
        let mut odd = 1000u32.to_le_bytes().to_vec();
        odd.extend(vec![0u8; 1001]);
        assert!(CharsMap::parse(&odd).is_err());
    }

    #[test]
    fn whitespace_rules_without_charsmap() {
        let n = Normalizer {
            charsmap: None,
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
            user_defined: vec![],
        };
        assert_eq!(String::from_utf8(n.normalize("  a  b ")).unwrap(), "\u{2581}a\u{2581}b");
        assert!(n.normalize("   ").is_empty());
        let keep = Normalizer { remove_extra_whitespaces: false, add_dummy_prefix: false, ..n };
        assert_eq!(String::from_utf8(keep.normalize(" a  b")).unwrap(), "\u{2581}a\u{2581}\u{2581}b");
    }
}
