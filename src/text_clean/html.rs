//! HTML character references: Python's `html.unescape` (which OpenAI's
//! `basic_clean` applies twice) and ftfy's more careful `fixes.unescape_html`.

use super::pattern::in_ranges;
use super::tables::{FTFY_ENTITIES, HTML5, HTML_INVALID_CHARREFS, HTML_INVALID_CODEPOINTS};

fn lookup(table: &'static [(&'static str, &'static str)], key: &str) -> Option<&'static str> {
    table.binary_search_by(|(k, _)| k.cmp(&key)).ok().map(|i| table[i].1)
}

/// Python's `html.unescape`: every numeric and named character reference of
/// HTML5, including the legacy names without a semicolon (`&amp`, `&copy`)
/// and the longest-prefix rule for them (`&notit;` → `¬it;`).
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '&' {
            if let Some(end) = charref_end(&chars, i) {
                out.push_str(&replace_charref(&chars[i + 1..end]));
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Where `html._charref` (`&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`)
/// ends when matched at `i` (an `&`).
fn charref_end(chars: &[char], i: usize) -> Option<usize> {
    let n = chars.len();
    let j = i + 1;
    let semicolon = |k: usize| if chars.get(k) == Some(&';') { k + 1 } else { k };
    if chars.get(j) == Some(&'#') {
        let mut k = j + 1;
        while k < n && chars[k].is_ascii_digit() {
            k += 1;
        }
        if k > j + 1 {
            return Some(semicolon(k));
        }
        if matches!(chars.get(j + 1), Some('x' | 'X')) {
            let mut k = j + 2;
            while k < n && chars[k].is_ascii_hexdigit() {
                k += 1;
            }
            if k > j + 2 {
                return Some(semicolon(k));
            }
        }
        // The named form cannot start with '#'.
        return None;
    }
    let mut k = j;
    while k < n && k - j < 32 && !matches!(chars[k], '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';') {
        k += 1;
    }
    (k > j).then(|| semicolon(k))
}

/// `html._replace_charref` for the text after the `&`.
fn replace_charref(s: &[char]) -> String {
    if s[0] == '#' {
        let (digits, radix) = if matches!(s[1], 'x' | 'X') { (&s[2..], 16) } else { (&s[1..], 10) };
        let mut num: u32 = 0;
        for &d in digits.iter().take_while(|&&d| d != ';') {
            // Saturate: anything above U+10FFFF gives the same answer.
            num = num.saturating_mul(radix).saturating_add(d.to_digit(radix).expect("matched digits"));
        }
        if let Ok(k) = HTML_INVALID_CHARREFS.binary_search_by(|(c, _)| c.cmp(&num)) {
            return HTML_INVALID_CHARREFS[k].1.to_string();
        }
        if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
            return '\u{fffd}'.to_string();
        }
        if in_ranges(HTML_INVALID_CODEPOINTS, num) {
            return String::new();
        }
        return char::from_u32(num).expect("a valid scalar value").to_string();
    }
    let name: String = s.iter().collect();
    if let Some(v) = lookup(HTML5, &name) {
        return v.to_owned();
    }
    // The longest prefix (of at least two characters) that is a name.
    for x in (2..s.len()).rev() {
        let prefix: String = s[..x].iter().collect();
        if let Some(v) = lookup(HTML5, &prefix) {
            let rest: String = s[x..].iter().collect();
            return format!("{v}{rest}");
        }
    }
    format!("&{name}")
}

/// `ftfy.fixes.unescape_html`: only references of the form
/// `&#?[0-9A-Za-z]{1,24};`, named ones from HTML5 (plus ftfy's all-caps
/// variants such as `&EACUTE;`), numeric ones only when Python's
/// `html.unescape` consumes them whole.
pub fn unescape_html(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '&' {
            if let Some(end) = entity_end(&chars, i) {
                let text: String = chars[i..end].iter().collect();
                out.push_str(&unescape_fixup(text));
                i = end;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Where `chardata.HTML_ENTITY_RE` (`&#?[0-9A-Za-z]{1,24};`) ends when matched at `i`.
fn entity_end(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if chars.get(j) == Some(&'#') {
        j += 1;
    }
    let mut k = j;
    while k < chars.len() && chars[k].is_ascii_alphanumeric() {
        k += 1;
    }
    (k > j && k - j <= 24 && chars.get(k) == Some(&';')).then_some(k + 1)
}

/// `fixes._unescape_fixup`.
fn unescape_fixup(text: String) -> String {
    if let Some(v) = lookup(FTFY_ENTITIES, &text) {
        return v.to_owned();
    }
    if text.starts_with("&#") {
        let unescaped = html_unescape(&text);
        // If html.unescape only decoded part of it, keep the text as it was.
        if unescaped.contains(';') {
            return text;
        }
        return unescaped;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_html_unescape() {
        assert_eq!(html_unescape("&amp; &lt;b&gt;"), "& <b>");
        assert_eq!(html_unescape("AT&T &copy 2020"), "AT&T \u{a9} 2020");
        assert_eq!(html_unescape("&notit; &ampxyz"), "\u{ac}it; &xyz");
        assert_eq!(html_unescape("&#128;&#0;&#1;&#x41;&#65x&#xD800;&#99999999999;"), "\u{20ac}\u{fffd}AA" .to_owned() + "x\u{fffd}\u{fffd}");
        assert_eq!(html_unescape("&#; &; &"), "&#; &; &");
    }

    #[test]
    fn ftfy_unescape_html() {
        assert_eq!(unescape_html("P&EACUTE;REZ &ntilde; &nTILDE;"), "P\u{c9}REZ \u{f1} &nTILDE;");
        assert_eq!(unescape_html("&amp &#65a; &#x2019;"), "&amp &#65a; \u{2019}");
        assert_eq!(unescape_html("BUNDESSTRA&SZLIG;E"), "BUNDESSTRASSE");
    }
}
