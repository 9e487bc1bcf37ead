//! The text clean-up OpenAI's CLIP tokenizer applies before BPE and that the
//! Hugging Face `tokenizer.json` lacks: `ftfy.fix_text` (the parts that change
//! ordinary text: curly quotes, Latin ligatures, full-width forms, control
//! characters) followed by `html.unescape` twice. Lower-casing, NFC and
//! whitespace collapsing are already in the tokenizer's own normaliser.

/// Cleans a text the way `clip.simple_tokenizer.basic_clean` does.
pub fn openai_clean(text: &str) -> String {
    let fixed = fix_text(text);
    let once = html_escape::decode_html_entities(&fixed).into_owned();
    html_escape::decode_html_entities(&once).into_owned()
}

fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // ftfy.fixes.uncurl_quotes
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            // ftfy.fixes.fix_latin_ligatures
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' => out.push_str("\u{017f}t"),
            '\u{fb06}' => out.push_str("st"),
            '\u{0132}' => out.push_str("IJ"),
            '\u{0133}' => out.push_str("ij"),
            // ftfy.fixes.fix_character_width: full-width ASCII and the ideographic space
            '\u{ff01}'..='\u{ff5e}' => out.push(char::from_u32(c as u32 - 0xff01 + 0x21).unwrap_or(c)),
            '\u{3000}' => out.push(' '),
            // ftfy.fixes.fix_line_breaks
            '\r' | '\u{2028}' | '\u{2029}' | '\u{0085}' => out.push('\n'),
            // ftfy.fixes.remove_control_chars
            '\u{0000}'..='\u{0008}' | '\u{000b}' | '\u{000e}'..='\u{001f}' | '\u{007f}' => {}
            '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}' => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::openai_clean;

    #[test]
    fn cleans_entities_quotes_and_ligatures() {
        assert_eq!(openai_clean("&amp; &lt;"), "& <");
        assert_eq!(openai_clean("&amp;lt;"), "<");
        assert_eq!(openai_clean("patient\u{2019}s \u{201c}clear\u{201d}"), "patient's \"clear\"");
        assert_eq!(openai_clean("\u{fb01}brosis \u{fb02}uid"), "fibrosis fluid");
        assert_eq!(openai_clean("\u{ff21}\u{ff11}"), "A1");
        assert_eq!(openai_clean("plain text"), "plain text");
    }
}
