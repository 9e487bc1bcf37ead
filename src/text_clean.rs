//! The text clean-up OpenAI's CLIP tokenizer applies before BPE and that the
//! Hugging Face `tokenizer.json` lacks (`clip/simple_tokenizer.py`):
//! `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is
//! `ftfy.fix_text`, then `html.unescape` twice, then `strip()`.
//!
//! # What of ftfy is reproduced
//!
//! `fix_text` is a port of `ftfy.fix_text` of **ftfy 6.3.1** with its default
//! `TextFixerConfig` (the version `pip install ftfy` gives today, which is what
//! `clip-anytorch` 2.6.0 pulls in; it pins no version). Step for step:
//!
//! - `fix_text`: the text is fixed segment by segment, each a line including its
//!   `\n` (or 1,000,000 code points, `max_decode_length`); once a segment
//!   contains `<`, HTML unescaping is off for it and for every later segment
//!   (`unescape_html = "auto"`).
//! - `fix_and_explain`: repeated until nothing changes: `unescape_html`,
//!   `fix_encoding`, `fix_c1_controls`, `fix_latin_ligatures`,
//!   `fix_character_width`, `uncurl_quotes`, `fix_line_breaks`,
//!   `fix_surrogates`, `remove_terminal_escapes`, `remove_control_chars`, NFC.
//! - `fix_encoding` (`_fix_encoding_one_step_and_explain`, repeated): ASCII or
//!   text that `badness.is_bad` finds clean is left alone; otherwise the text is
//!   encoded in each of `CHARMAP_ENCODINGS` that can encode it (latin-1,
//!   sloppy-windows-1252/1251/1250/1253/1254/1257, iso-8859-2, macroman,
//!   cp437) with `restore_byte_a0` and, for the sloppy codecs,
//!   `replace_lossy_sequences`, and decoded as UTF-8 (or ftfy's
//!   `utf-8-variants` when byte ED or C0 is present: CESU-8, Java's null);
//!   the first that decodes wins. Failing that: `decode_inconsistent_utf8`,
//!   latin-1 → windows-1252, `fix_c1_controls`, as ftfy orders them.
//! - `unescape_html` (ftfy's, `&#?[0-9A-Za-z]{1,24};` only, with its all-caps
//!   entity names) and Python's `html.unescape` (all of HTML5, legacy names
//!   without `;`, longest prefix, invalid numeric references as HTML5 says).
//!
//! Every table, character class and regular expression comes from ftfy (and
//! from Python where ftfy relies on it) through the generator
//! `tests/reference/text_clean_tables.py`, which writes `text_clean/tables.rs`
//! and checks on random strings that the Rust matching equals ftfy's regexes.
//! `tests/text_clean.rs` compares `fix_text`, `openai_clean` and the token ids
//! with ftfy and OpenAI's tokenizer on the cases of
//! `tests/reference/text_clean_cases.py`.
//!
//! # What is not reproduced, and why
//!
//! - `fix_surrogates` has nothing to do: a Rust `str` cannot hold the lone
//!   UTF-16 surrogates it repairs (and no step of ftfy can create one).
//! - Unicode data: NFC comes from the `unicode-normalization` crate and
//!   lower-casing from Rust's `str::to_lowercase` (both Final_Sigma-aware, as
//!   Python's `str.lower`); the generated tables are from Python 3.11's Unicode
//!   14.0. Characters whose properties changed in later Unicode versions may be
//!   treated as a different Python version would treat them.
//! - ftfy's explanations (`fix_and_explain`'s plan), `guess_bytes`,
//!   `fix_file` and the non-default options are not needed and not ported.

mod fixes;
mod html;
mod pattern;
#[rustfmt::skip]
mod tables;

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

pub use fixes::is_bad;
pub use html::{html_unescape, unescape_html};

use pattern::in_ranges;
use tables::{CHARMAPS, C1_CONTROLS, PY_SPACE, REGEX_SPACE, WINDOWS_1252};

/// `TextFixerConfig.max_decode_length`.
const MAX_DECODE_LENGTH: usize = 1_000_000;

/// Cleans a text the way OpenAI's `SimpleTokenizer.encode` does before BPE:
/// `whitespace_clean(basic_clean(text)).lower()`.
pub fn openai_clean(text: &str) -> String {
    whitespace_clean(&basic_clean(text)).to_lowercase()
}

/// `simple_tokenizer.basic_clean`: `ftfy.fix_text`, `html.unescape` twice, `strip()`.
pub fn basic_clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    py_strip(&unescaped).to_owned()
}

/// `simple_tokenizer.whitespace_clean`: `regex.sub(r'\s+', ' ', text).strip()`.
pub fn whitespace_clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if in_ranges(REGEX_SPACE, c as u32) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    py_strip(&out).to_owned()
}

/// Python's `" ".join(text.split())` (open_clip's `whitespace_clean`): runs of
/// `str.isspace()` characters made one space, none at either end.
pub fn split_join(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(|c: char| in_ranges(PY_SPACE, c as u32)).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Python's `str.strip()` with no argument.
fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| in_ranges(PY_SPACE, c as u32))
}

/// `ftfy.fix_text(text)` with ftfy's default configuration.
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut rest = text;
    while !rest.is_empty() {
        // Up to and including the next '\n', at most MAX_DECODE_LENGTH code points.
        let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if let Some((i, _)) = rest[..end].char_indices().nth(MAX_DECODE_LENGTH) {
            end = i;
        }
        let segment = &rest[..end];
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
        rest = &rest[end..];
    }
    out
}

/// `ftfy.fix_and_explain` without the explanation.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_owned();
    loop {
        let orig = text.clone();
        if unescape {
            text = unescape_html(&text);
        }
        text = fix_encoding(&text);
        text = fixes::fix_c1_controls(&text);
        text = fixes::fix_latin_ligatures(&text);
        text = fixes::fix_character_width(&text);
        text = fixes::uncurl_quotes(&text);
        text = fixes::fix_line_breaks(&text);
        // fix_surrogates: a Rust string holds no surrogates.
        text = fixes::remove_terminal_escapes(&text);
        text = fixes::remove_control_chars(&text);
        text = nfc(text);
        if text == orig {
            return text;
        }
    }
}

fn nfc(text: String) -> String {
    if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        text
    } else {
        text.nfc().collect()
    }
}

/// `ftfy.fix_encoding`: undo mojibake, one step at a time until nothing changes.
pub fn fix_encoding(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        match fix_encoding_one_step(&text) {
            Some(fixed) if fixed != text => text = fixed,
            _ => return text,
        }
    }
}

/// `ftfy._fix_encoding_one_step_and_explain`; `None` where it returns the text unchanged.
fn fix_encoding_one_step(text: &str) -> Option<String> {
    if text.is_empty() || text.is_ascii() || !is_bad(text) {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    let mut latin1_possible = false;
    for charmap in CHARMAPS {
        let Some(mut bytes) = charmap.encode_all(&chars) else {
            continue;
        };
        if charmap.name == "latin-1" {
            latin1_possible = true;
        }
        // Not in macroman, where it would match an en dash followed by a space.
        if charmap.name != "macroman" && fixes::has_altered_utf8(&bytes) {
            bytes = fixes::restore_byte_a0(&bytes);
        }
        if charmap.sloppy {
            bytes = fixes::replace_lossy_sequences(&bytes);
        }
        let decoded = if bytes.contains(&0xED) || bytes.contains(&0xC0) {
            fixes::decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if decoded.is_some() {
            return decoded;
        }
    }

    if fixes::has_utf8_mojibake(text) {
        let fixed = fixes::decode_inconsistent_utf8(text);
        if fixed != text {
            return Some(fixed);
        }
    }

    // ftfy checks for "windows-1252" among the possible encodings, which hold
    // "sloppy-windows-1252" instead, so for latin-1 text it always goes on to
    // read the latin-1 bytes as (strict) windows-1252.
    if latin1_possible {
        let fixed: Option<String> = chars.iter().map(|&c| WINDOWS_1252[c as usize]).collect();
        if let Some(fixed) = fixed {
            if fixed != text {
                return Some(fixed);
            }
        }
    }

    if chars.iter().any(|&c| in_ranges(C1_CONTROLS, c as u32)) {
        return Some(fixes::fix_c1_controls(text));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{fix_text, openai_clean};

    #[test]
    fn cleans_entities_quotes_and_ligatures() {
        assert_eq!(openai_clean("&amp; &lt;"), "& <");
        assert_eq!(openai_clean("&amp;lt;"), "<");
        assert_eq!(openai_clean("patient\u{2019}s \u{201c}clear\u{201d}"), "patient's \"clear\"");
        assert_eq!(openai_clean("\u{fb01}brosis \u{fb02}uid"), "fibrosis fluid");
        assert_eq!(openai_clean("\u{ff21}\u{ff11}"), "a1");
        assert_eq!(openai_clean("  Plain   text "), "plain text");
    }

    #[test]
    fn repairs_mojibake() {
        assert_eq!(fix_text("effusi\u{c3}\u{b3}n, caf\u{c3}\u{a9}"), "effusi\u{f3}n, caf\u{e9}");
        assert_eq!(fix_text("patient\u{e2}\u{20ac}\u{2122}s"), "patient's");
        assert_eq!(fix_text("na\u{ef}ve caf\u{e9}"), "na\u{ef}ve caf\u{e9}");
    }
}
