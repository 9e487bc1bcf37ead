//! ftfy's individual fixes (`ftfy/fixes.py`) and the byte-level helpers of
//! `fix_encoding` (`restore_byte_a0`, `replace_lossy_sequences`, the
//! `utf-8-variants` codec of `ftfy/bad_codecs/utf8_variants.py`).

use super::pattern::{codepoints, in_ranges, search, sub_bytes, Elem};
use super::tables::{
    ALTERED_UTF8, BADNESS, C1_CONTROLS, CHARMAPS, CONTROL_CHARS, DETECTOR, DETECTOR_LOOKBEHIND,
    DOUBLE_QUOTES, LIGATURES, LOSSY_UTF8, PY_DIGIT, SINGLE_QUOTES, WIDTH_MAP,
};

/// `ftfy.badness.is_bad`: does the text contain a sequence that is very
/// likely mojibake (`BADNESS_RE.search`)?
pub fn is_bad(text: &str) -> bool {
    search(BADNESS, &codepoints(text))
}

fn translate(text: &str, table: &'static [(char, &'static str)]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match table.binary_search_by(|(k, _)| k.cmp(&c)) {
            Ok(i) => out.push_str(table[i].1),
            Err(_) => out.push(c),
        }
    }
    out
}

/// `fixes.fix_latin_ligatures`.
pub fn fix_latin_ligatures(text: &str) -> String {
    translate(text, LIGATURES)
}

/// `fixes.fix_character_width`: full-width ASCII, half-width katakana and
/// Hangul, the ideographic space.
pub fn fix_character_width(text: &str) -> String {
    translate(text, WIDTH_MAP)
}

/// `fixes.uncurl_quotes`.
pub fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| {
            if in_ranges(DOUBLE_QUOTES, c as u32) {
                '"'
            } else if in_ranges(SINGLE_QUOTES, c as u32) {
                '\''
            } else {
                c
            }
        })
        .collect()
}

/// `fixes.fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 become `\n`.
pub fn fix_line_breaks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            _ => out.push(c),
        }
    }
    out
}

/// `fixes.remove_terminal_escapes`: `ANSI_RE = "\033\[((?:\d|;)*)([a-zA-Z])"`
/// (`\d` being any Unicode decimal digit, as in Python).
pub fn remove_terminal_escapes(text: &str) -> String {
    if !text.contains('\u{1b}') {
        return text.to_owned();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\u{1b}' && chars.get(i + 1) == Some(&'[') {
            let mut k = i + 2;
            while k < chars.len() && (chars[k] == ';' || in_ranges(PY_DIGIT, chars[k] as u32)) {
                k += 1;
            }
            if k < chars.len() && chars[k].is_ascii_alphabetic() {
                i = k + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// `fixes.remove_control_chars` (ftfy's `CONTROL_CHARS`: C0 controls other
/// than the whitespace ones, DEL, U+206A–U+206F, the BOM, U+FFF9–U+FFFC).
pub fn remove_control_chars(text: &str) -> String {
    text.chars().filter(|&c| !in_ranges(CONTROL_CHARS, c as u32)).collect()
}

/// `fixes.fix_c1_controls`: each C1 control as its sloppy-windows-1252 character.
pub fn fix_c1_controls(text: &str) -> String {
    let sloppy_1252 = &CHARMAPS[1];
    debug_assert_eq!(sloppy_1252.name, "sloppy-windows-1252");
    text.chars()
        .map(|c| if in_ranges(C1_CONTROLS, c as u32) { sloppy_1252.decode[c as usize] } else { c })
        .collect()
}

/// `fixes.restore_byte_a0`: spaces that probably were byte A0 inside UTF-8
/// sequences, put back (first `A_GRAVE_WORD_RE`, then `ALTERED_UTF8_RE`).
pub fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )" → b"\xc3\xa0 "
    let mut graves = Vec::with_capacity(bytes.len() + 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xC3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            let excepted = [&b" "[..], b"quele", b"quela", b"quilo", b"s "].iter().any(|w| after.starts_with(w));
            if !excepted {
                graves.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        graves.push(bytes[i]);
        i += 1;
    }
    sub_bytes(ALTERED_UTF8, &graves, |m, out| {
        out.extend(m.iter().map(|&b| if b == 0x20 { 0xA0 } else { b }));
    })
}

/// `ALTERED_UTF8_RE.search(bytes)`.
pub fn has_altered_utf8(bytes: &[u8]) -> bool {
    let seq: Vec<u32> = bytes.iter().map(|&b| u32::from(b)).collect();
    search(ALTERED_UTF8, &seq)
}

/// `fixes.replace_lossy_sequences`: UTF-8 sequences with bytes lost to
/// 0x1A (or `?`) become the UTF-8 of U+FFFD.
pub fn replace_lossy_sequences(bytes: &[u8]) -> Vec<u8> {
    sub_bytes(LOSSY_UTF8, bytes, |_, out| out.extend_from_slice("\u{fffd}".as_bytes()))
}

/// `UTF8_DETECTOR_RE`'s matches: a lookbehind that refuses to start right
/// after a strict continuation character, then `(alt|alt|alt)+`, greedy.
fn detector_spans(s: &[u32]) -> Vec<(usize, usize)> {
    let alts: &[&[Elem]] = DETECTOR;
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if i > 0 && in_ranges(DETECTOR_LOOKBEHIND, s[i - 1]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while let Some(end) = super::pattern::match_at(alts, s, j) {
            j = end;
        }
        if j > i {
            out.push((i, j));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

pub fn has_utf8_mojibake(text: &str) -> bool {
    !detector_spans(&codepoints(text)).is_empty()
}

/// `fixes.decode_inconsistent_utf8`: each UTF-8-looking run that is itself
/// bad gets `fix_encoding` on its own.
pub fn decode_inconsistent_utf8(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let cps: Vec<u32> = chars.iter().map(|&c| c as u32).collect();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in detector_spans(&cps) {
        out.extend(&chars[last..start]);
        let substr: String = chars[start..end].iter().collect();
        if end - start < chars.len() && is_bad(&substr) {
            out.push_str(&super::fix_encoding(&substr));
        } else {
            out.push_str(&substr);
        }
        last = end;
    }
    out.extend(&chars[last..]);
    out
}

/// `bytes.decode("utf-8-variants")` (ftfy's codec: UTF-8 plus CESU-8
/// surrogate pairs and Java's `C0 80` for U+0000), or `None` where Python
/// raises `UnicodeDecodeError`.
pub fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut input = bytes;
    loop {
        let Some(cutoff) = (0..input.len()).find(|&p| special_at(input, p)) else {
            out.push_str(std::str::from_utf8(input).ok()?);
            return Some(out);
        };
        if cutoff > 0 {
            out.push_str(std::str::from_utf8(&input[..cutoff]).ok()?);
            input = &input[cutoff..];
        }
        if input[0] == 0xC0 {
            if input.len() > 1 {
                out.push('\0');
                input = &input[2..];
            } else {
                return None;
            }
        } else if input.len() >= 6 && cesu8_at(input) {
            let cp = ((u32::from(input[1]) & 0x0F) << 16)
                + ((u32::from(input[2]) & 0x3F) << 10)
                + ((u32::from(input[4]) & 0x0F) << 6)
                + (u32::from(input[5]) & 0x3F)
                + 0x10000;
            out.push(char::from_u32(cp)?);
            input = &input[6..];
        } else {
            // An unpaired surrogate (or a truncated pair): invalid UTF-8.
            return None;
        }
    }
}

/// Python's `$` (no MULTILINE) on bytes: the end, or just before a final `\n`.
fn dollar(b: &[u8], i: usize) -> bool {
    i == b.len() || (i + 1 == b.len() && b[i] == b'\n')
}

fn byte_in(b: &[u8], i: usize, lo: u8, hi: u8) -> bool {
    b.get(i).is_some_and(|&x| (lo..=hi).contains(&x))
}

/// `SPECIAL_BYTES_RE.match(b, p)`: `NULL_EXPR | CESU8_EXPR | SURROGATE_EXPR`.
fn special_at(b: &[u8], p: usize) -> bool {
    match b[p] {
        // (\xc0(\x80|$))
        0xC0 => byte_in(b, p + 1, 0x80, 0x80) || dollar(b, p + 1),
        // CESU8_EXPR starts like SURROGATE_EXPR with a narrower class, so the
        // latter decides: (\xed([\xa0-\xbf]|$)([\x80-\xbf]|$))
        0xED => {
            let second = |i: usize| byte_in(b, i, 0x80, 0xBF) || dollar(b, i);
            (byte_in(b, p + 1, 0xA0, 0xBF) && second(p + 2)) || (dollar(b, p + 1) && second(p + 1))
        }
        _ => false,
    }
}

/// `CESU8_RE.match(b)` on at least six bytes.
fn cesu8_at(b: &[u8]) -> bool {
    byte_in(b, 1, 0xA0, 0xAF)
        && byte_in(b, 2, 0x80, 0xBF)
        && b[3] == 0xED
        && byte_in(b, 4, 0xB0, 0xBF)
        && (byte_in(b, 5, 0x80, 0xBF) || dollar(b, 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_variants() {
        assert_eq!(decode_utf8_variants(b"\xed\xa0\xbd\xed\xb8\x8d").as_deref(), Some("\u{1f60d}"));
        assert_eq!(decode_utf8_variants(b"a\xc0\x80b").as_deref(), Some("a\0b"));
        assert_eq!(decode_utf8_variants(b"\xed\xa0\x80"), None);
        assert_eq!(decode_utf8_variants("\u{d55c}\u{ad6d}".as_bytes()).as_deref(), Some("\u{d55c}\u{ad6d}"));
    }

    #[test]
    fn byte_a0() {
        assert_eq!(restore_byte_a0(b"voil\xc3 le"), b"voil\xc3\xa0 le");
        // The Portuguese exception only keeps the space from being doubled.
        assert_eq!(restore_byte_a0(b"\xc3 quele"), b"\xc3\xa0quele");
    }
}
