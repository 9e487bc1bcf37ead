//! The few regular-expression shapes ftfy's tables need, matched the way
//! Python's `re` matches them. `tables.rs` (generated from ftfy's compiled
//! regexes by `tests/reference/text_clean_tables.py`) spells each regex as a
//! list of alternatives, each a fixed sequence of character classes; trying
//! the alternatives in order at each position is exactly Python's
//! leftmost-first search for these patterns. The same code matches text (as
//! code points) and bytes (as values 0–255).

/// Sorted, disjoint, inclusive ranges of code points (or byte values).
pub type Ranges = &'static [(u32, u32)];

/// One element of an alternative.
pub enum Elem {
    /// Exactly one item from the class.
    Class(Ranges),
    /// `[class]?`, greedy.
    Optional(Ranges),
    /// `^` (no MULTILINE): the start of the string.
    Start,
}

/// A single-byte codec of `ftfy.chardata.CHARMAP_ENCODINGS`.
pub struct Charmap {
    pub name: &'static str,
    /// ftfy's `sloppy-` codecs: unassigned bytes stand for themselves, byte 0x1A for U+FFFD.
    pub sloppy: bool,
    pub decode: [char; 256],
    /// Sorted by character.
    pub encode: &'static [(char, u8)],
}

impl Charmap {
    /// The byte of `c`, or `None` if the codec cannot encode it.
    pub fn encode_char(&self, c: char) -> Option<u8> {
        self.encode.binary_search_by(|(k, _)| k.cmp(&c)).ok().map(|i| self.encode[i].1)
    }

    /// `text.encode(name)`, or `None` where `chardata.possible_encoding(text,
    /// name)` is false (the generator checks that it means "every character
    /// encodable").
    pub fn encode_all(&self, text: &[char]) -> Option<Vec<u8>> {
        text.iter().map(|&c| self.encode_char(c)).collect()
    }
}

pub fn in_ranges(ranges: Ranges, c: u32) -> bool {
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn match_alt(alt: &[Elem], s: &[u32], i: usize) -> Option<usize> {
    let Some((first, rest)) = alt.split_first() else {
        return Some(i);
    };
    match first {
        Elem::Start => (i == 0).then_some(()).and_then(|_| match_alt(rest, s, i)),
        Elem::Class(r) => match s.get(i) {
            Some(&c) if in_ranges(r, c) => match_alt(rest, s, i + 1),
            _ => None,
        },
        Elem::Optional(r) => {
            if let Some(&c) = s.get(i) {
                if in_ranges(r, c) {
                    if let Some(end) = match_alt(rest, s, i + 1) {
                        return Some(end);
                    }
                }
            }
            match_alt(rest, s, i)
        }
    }
}

/// The end of the first alternative that matches at `i`.
pub fn match_at(alts: &[&[Elem]], s: &[u32], i: usize) -> Option<usize> {
    alts.iter().find_map(|alt| match_alt(alt, s, i))
}

/// `regex.search(s) is not None`.
pub fn search(alts: &[&[Elem]], s: &[u32]) -> bool {
    (0..=s.len()).any(|i| match_at(alts, s, i).is_some())
}

/// The spans `re.sub` / `re.finditer` replace: non-overlapping, leftmost-first.
pub fn spans(alts: &[&[Elem]], s: &[u32]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i <= s.len() {
        match match_at(alts, s, i) {
            Some(end) if end > i => {
                out.push((i, end));
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// `re.sub(pattern, replace, bytes)` for a byte pattern.
pub fn sub_bytes(alts: &[&[Elem]], bytes: &[u8], mut replace: impl FnMut(&[u8], &mut Vec<u8>)) -> Vec<u8> {
    let seq: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let mut last = 0;
    for (start, end) in spans(alts, &seq) {
        out.extend_from_slice(&bytes[last..start]);
        replace(&bytes[start..end], &mut out);
        last = end;
    }
    out.extend_from_slice(&bytes[last..]);
    out
}

pub fn codepoints(text: &str) -> Vec<u32> {
    text.chars().map(u32::from).collect()
}
