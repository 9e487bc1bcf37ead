#!/usr/bin/env python3
"""Generates src/text_clean/tables.rs from ftfy's own data.

Every character class, codec table, entity list and regular expression that
`src/text_clean/` needs is read here from the installed ftfy (and from the
Python standard library where ftfy relies on it: `html`, `re`'s `\\s \\w \\d`,
`str.isspace`, the `regex` module's `\\s` used by OpenAI's `whitespace_clean`),
so the Rust side holds no hand-copied table. The regular expressions are taken
apart with Python's own regex parser (`re._parser`) and written out as lists of
alternatives, each a sequence of character classes; the script then checks, on
random strings, that matching those lists the way the Rust code does (src/text_clean/pattern.rs) gives what
ftfy's compiled regexes give.

    python3 -m venv /tmp/ftfyenv
    /tmp/ftfyenv/bin/pip install 'ftfy==6.3.1' regex
    /tmp/ftfyenv/bin/python tests/reference/text_clean_tables.py          # writes the table
    /tmp/ftfyenv/bin/python tests/reference/text_clean_tables.py --check  # compares, writes nothing
"""

from __future__ import annotations

import html
import html.entities
import random
import re
import sys
import unicodedata
from pathlib import Path

try:
    import re._parser as sre_parse  # Python >= 3.11
    import re._constants as sre_c
except ImportError:  # pragma: no cover
    import sre_parse  # type: ignore
    import sre_constants as sre_c  # type: ignore

import ftfy
import regex
from ftfy import badness, chardata, fixes

OUT = Path(__file__).resolve().parents[2] / "src" / "text_clean" / "tables.rs"
MAX_CP = 0x10FFFF

# ---------------------------------------------------------------------------
# Character sets
# ---------------------------------------------------------------------------


def ranges_of(codepoints) -> list[tuple[int, int]]:
    cps = sorted(set(codepoints))
    out: list[tuple[int, int]] = []
    for c in cps:
        if out and out[-1][1] + 1 == c:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def complement(rs, top):
    out, nxt = [], 0
    for lo, hi in rs:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= top:
        out.append((nxt, top))
    return out


def brute(pred, top=MAX_CP):
    return ranges_of(c for c in range(top + 1) if not 0xD800 <= c <= 0xDFFF and pred(chr(c)))


# Python's `re` categories for str patterns (what _sre calls SRE_UNI_IS_*).
PY_SPACE = brute(str.isspace)
PY_WORD = brute(lambda ch: ch.isalnum() or ch == "_")
PY_DIGIT = brute(str.isdecimal)
# Checked against the compiled regexes themselves.
assert PY_SPACE == brute(lambda ch: re.match(r"\s", ch) is not None)
assert PY_WORD == brute(lambda ch: re.match(r"\w", ch) is not None)
assert PY_DIGIT == brute(lambda ch: re.match(r"\d", ch) is not None)
# The `regex` module's \s, as OpenAI's whitespace_clean uses it.
REGEX_SPACE = brute(lambda ch: regex.match(r"\s", ch) is not None)

CATEGORY_SETS = {
    sre_c.CATEGORY_SPACE: PY_SPACE,
    sre_c.CATEGORY_NOT_SPACE: complement(PY_SPACE, MAX_CP),
    sre_c.CATEGORY_WORD: PY_WORD,
    sre_c.CATEGORY_NOT_WORD: complement(PY_WORD, MAX_CP),
    sre_c.CATEGORY_DIGIT: PY_DIGIT,
    sre_c.CATEGORY_NOT_DIGIT: complement(PY_DIGIT, MAX_CP),
}


def class_ranges(items, top):
    """The codepoints (or bytes) an IN node of re._parser matches."""
    negate = False
    cps: set[int] = set()
    extra: list[tuple[int, int]] = []
    for op, av in items:
        if op is sre_c.NEGATE:
            negate = True
        elif op is sre_c.LITERAL:
            cps.add(av)
        elif op is sre_c.RANGE:
            extra.append(av)
        elif op is sre_c.CATEGORY:
            assert top == MAX_CP, "byte patterns with categories are not used"
            extra.extend(CATEGORY_SETS[av])
        else:
            raise ValueError(f"unsupported class item {op}")
    for lo, hi in extra:
        cps.update(range(lo, hi + 1))
    rs = ranges_of(cps)
    return complement(rs, top) if negate else rs


# ---------------------------------------------------------------------------
# Regular expressions as alternatives of sequences
# ---------------------------------------------------------------------------
# An element is ("class", ranges), ("opt", ranges) for a greedy `x?`, or
# ("start",) for `^` without MULTILINE.


def expand(seq, top) -> list[list[tuple]]:
    """All alternatives of a parsed sequence, in the order the regex engine
    tries them (so leftmost-first matching of the list equals the regex's)."""
    alts: list[list[tuple]] = [[]]
    for op, av in seq:
        if op is sre_c.LITERAL:
            opts = [[("class", [(av, av)])]]
        elif op is sre_c.NOT_LITERAL:
            opts = [[("class", complement([(av, av)], top))]]
        elif op is sre_c.IN:
            opts = [[("class", class_ranges(av, top))]]
        elif op is sre_c.ANY:  # '.', no DOTALL: anything but a newline
            opts = [[("class", complement([(10, 10)], top))]]
        elif op is sre_c.AT and av is sre_c.AT_BEGINNING:
            opts = [[("start",)]]
        elif op is sre_c.SUBPATTERN:
            opts = expand(av[3], top)
        elif op is sre_c.BRANCH:
            opts = [a for sub in av[1] for a in expand(sub, top)]
        elif op in (sre_c.MAX_REPEAT,) and av[0] == av[1]:
            inner = expand(av[2], top)
            opts = [[]]
            for _ in range(av[0]):
                opts = [o + i for o in opts for i in inner]
        elif op is sre_c.MAX_REPEAT and (av[0], av[1]) == (0, 1):
            inner = expand(av[2], top)
            assert len(inner) == 1 and len(inner[0]) == 1 and inner[0][0][0] == "class"
            opts = [[("opt", inner[0][0][1])]]
        else:
            raise ValueError(f"unsupported regex node {op} {av}")
        alts = [a + o for a in alts for o in opts]
    return alts


def parse(compiled) -> list:
    return list(sre_parse.parse(compiled.pattern, compiled.flags).data)


def alternatives(compiled, top):
    return expand(parse(compiled), top)


def in_ranges(rs, c):
    lo, hi = 0, len(rs)
    while lo < hi:
        mid = (lo + hi) // 2
        if rs[mid][1] < c:
            lo = mid + 1
        elif rs[mid][0] > c:
            hi = mid
        else:
            return True
    return False


def match_alt(alt, s, i):
    """The same backtracking matcher as `Elem` matching in src/text_clean/pattern.rs."""
    if not alt:
        return i
    kind = alt[0][0]
    if kind == "start":
        return match_alt(alt[1:], s, i) if i == 0 else None
    if kind == "class":
        if i < len(s) and in_ranges(alt[0][1], s[i]):
            return match_alt(alt[1:], s, i + 1)
        return None
    # "opt"
    if i < len(s) and in_ranges(alt[0][1], s[i]):
        end = match_alt(alt[1:], s, i + 1)
        if end is not None:
            return end
    return match_alt(alt[1:], s, i)


def match_at(alts, s, i):
    for alt in alts:
        end = match_alt(alt, s, i)
        if end is not None:
            return end
    return None


def spans(alts, s):
    """Non-overlapping leftmost-first matches, as `re.finditer` / `re.sub` find them."""
    out, i = [], 0
    while i <= len(s):
        end = match_at(alts, s, i)
        if end is not None and end > i:
            out.append((i, end))
            i = end
        else:
            i += 1
    return out


# BADNESS_RE: one big alternation.
BADNESS_ALTS = alternatives(badness.BADNESS_RE, MAX_CP)

# ALTERED_UTF8_RE and LOSSY_UTF8_RE work on bytes.
ALTERED_ALTS = alternatives(chardata.ALTERED_UTF8_RE, 0xFF)
LOSSY_ALTS = alternatives(chardata.LOSSY_UTF8_RE, 0xFF)

# UTF8_DETECTOR_RE: (?<![strict]) ( alt | alt | alt )+
_det = parse(chardata.UTF8_DETECTOR_RE)
assert len(_det) == 2 and _det[0][0] is sre_c.ASSERT_NOT and _det[0][1][0] == -1
_lb = list(_det[0][1][1])
assert len(_lb) == 1 and _lb[0][0] is sre_c.IN
DETECTOR_LOOKBEHIND = class_ranges(_lb[0][1], MAX_CP)
assert _det[1][0] is sre_c.MAX_REPEAT and _det[1][1][0] == 1 and _det[1][1][1] == sre_c.MAXREPEAT
DETECTOR_ALTS = expand(_det[1][1][2], MAX_CP)

SINGLE_QUOTES = class_ranges(parse(chardata.SINGLE_QUOTE_RE)[0][1], MAX_CP)
DOUBLE_QUOTES = class_ranges(parse(chardata.DOUBLE_QUOTE_RE)[0][1], MAX_CP)
C1_CONTROLS = class_ranges(parse(chardata.C1_CONTROL_RE)[0][1], MAX_CP)

# The small regexes that src/text_clean ports by hand: fail loudly if ftfy changes them.
assert fixes.ANSI_RE.pattern == "\033\\[((?:\\d|;)*)([a-zA-Z])", fixes.ANSI_RE.pattern
assert fixes.A_GRAVE_WORD_RE.pattern == b"\xc3 (?! |quele|quela|quilo|s )"
assert chardata.HTML_ENTITY_RE.pattern == r"&#?[0-9A-Za-z]{1,24};"
assert chardata.ENCODING_REGEXES["ascii"].pattern == "^[\x00-\x7f]*$"
assert fixes.SURROGATE_RE.pattern == "[\ud800-\udfff]"
assert chardata.CHARMAP_ENCODINGS == [
    "latin-1", "sloppy-windows-1252", "sloppy-windows-1251", "sloppy-windows-1250",
    "sloppy-windows-1253", "sloppy-windows-1254", "sloppy-windows-1257", "iso-8859-2",
    "macroman", "cp437",
], chardata.CHARMAP_ENCODINGS
assert html._charref.pattern == (
    r"&(#[0-9]+;?" r"|#[xX][0-9a-fA-F]+;?" r"|[^\t\n\f <&#;]{1,32};?)"
), html._charref.pattern

# ---------------------------------------------------------------------------
# Codecs
# ---------------------------------------------------------------------------


def codec_tables(encoding):
    decode = bytes(range(256)).decode(encoding)
    assert len(decode) == 256
    encode = {}
    for b, ch in enumerate(decode):
        assert ch not in encode, (encoding, ch)
        encode[ch] = b
    for ch, b in encode.items():
        assert ch.encode(encoding) == bytes([b]), (encoding, ch)
    return decode, encode


CODECS = []
for _enc in chardata.CHARMAP_ENCODINGS:
    _dec, _encmap = codec_tables(_enc)
    # possible_encoding(text, enc) must be exactly "every character is encodable".
    for _c in range(0x10000):
        if 0xD800 <= _c <= 0xDFFF:
            continue
        assert chardata.possible_encoding(chr(_c), _enc) == (chr(_c) in _encmap), (_enc, hex(_c))
    CODECS.append((_enc, _dec, _encmap))

# Strict windows-1252 (used once in fix_encoding, after latin-1).
WINDOWS_1252 = []
for _b in range(256):
    try:
        WINDOWS_1252.append(bytes([_b]).decode("windows-1252"))
    except UnicodeDecodeError:
        WINDOWS_1252.append(None)

# ---------------------------------------------------------------------------
# Smaller tables
# ---------------------------------------------------------------------------

LIGATURES = sorted((k, v) for k, v in chardata.LIGATURES.items())
WIDTH_MAP = sorted((k, v) for k, v in chardata.WIDTH_MAP.items())
CONTROL_CHARS = ranges_of(chardata.CONTROL_CHARS.keys())
assert all(v is None for v in chardata.CONTROL_CHARS.values())
FTFY_ENTITIES = sorted(chardata.HTML_ENTITIES.items(), key=lambda kv: kv[0].encode())
HTML5 = sorted(html.entities.html5.items(), key=lambda kv: kv[0].encode())
HTML_INVALID_CHARREFS = sorted(html._invalid_charrefs.items())
HTML_INVALID_CODEPOINTS = ranges_of(html._invalid_codepoints)

# ---------------------------------------------------------------------------
# Self-check of the regex lists against ftfy's compiled regexes
# ---------------------------------------------------------------------------


def self_check():
    rng = random.Random(20240613)
    alphabet = set()
    for _, dec, _ in CODECS:
        alphabet.update(dec[0x80:])
    for cat in badness.MOJIBAKE_CATEGORIES.values():
        alphabet.update(c for c in cat if c != "-")
    alphabet.update("abcxyzABCXYZ .,?!;:-'\"\n\t0123\u00a0\u2000ÃÂ")
    alphabet = sorted(alphabet)
    n_bad = 0
    for _ in range(60000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
        cps = [ord(c) for c in s]
        ours = any(match_at(BADNESS_ALTS, cps, i) is not None for i in range(len(cps) + 1))
        theirs = badness.BADNESS_RE.search(s) is not None
        assert ours == theirs, (s, ours, theirs)
        n_bad += theirs
        theirs_spans = [m.span() for m in chardata.UTF8_DETECTOR_RE.finditer(s)]
        assert detector_spans(cps) == theirs_spans, (s, detector_spans(cps), theirs_spans)
    byte_alpha = list(range(0x80, 0x100)) + [0x20, 0x1A, ord("?"), ord("a"), 0x0A]
    for _ in range(60000):
        b = bytes(rng.choice(byte_alpha) for _ in range(rng.randint(1, 7)))
        seq = list(b)
        for compiled, alts in ((chardata.ALTERED_UTF8_RE, ALTERED_ALTS), (chardata.LOSSY_UTF8_RE, LOSSY_ALTS)):
            assert spans(alts, seq) == [m.span() for m in compiled.finditer(b)], (b, compiled.pattern)
    print(f"self-check: badness and detector agree on 60000 strings ({n_bad} bad), byte regexes on 60000", file=sys.stderr)


def detector_spans(s):
    """UTF8_DETECTOR_RE as src/text_clean ports it: a lookbehind, then a greedy loop
    that takes the first alternative matching at each step."""
    out, i = [], 0
    while i < len(s):
        if i > 0 and in_ranges(DETECTOR_LOOKBEHIND, s[i - 1]):
            i += 1
            continue
        j = i
        while True:
            end = match_at(DETECTOR_ALTS, s, j)
            if end is None:
                break
            j = end
        if j > i:
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


# ---------------------------------------------------------------------------
# Rust output
# ---------------------------------------------------------------------------


def rs_char(c: int) -> str:
    return f"'\\u{{{c:x}}}'"


def rs_str(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch.isascii() and (ch.isalnum() or ch in " &#;_-.,:!?()[]{}<>/=+*^%$@~|`'"):
            out.append(ch)
        else:
            out.append(f"\\u{{{o:x}}}")
    return '"' + "".join(out) + '"'


def rs_ranges(rs) -> str:
    return "&[" + ", ".join(f"(0x{lo:x}, 0x{hi:x})" for lo, hi in rs) + "]"


class Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.classes: dict[tuple, str] = {}

    def class_name(self, rs) -> str:
        key = tuple(rs)
        if key not in self.classes:
            self.classes[key] = f"C{len(self.classes)}"
        return self.classes[key]

    def elem(self, e) -> str:
        if e[0] == "start":
            return "Elem::Start"
        kind = "Class" if e[0] == "class" else "Optional"
        return f"Elem::{kind}({self.class_name(e[1])})"

    def alts(self, name, doc, alts):
        self.lines.append(f"/// {doc}")
        self.lines.append(f"pub static {name}: &[&[Elem]] = &[")
        for alt in alts:
            self.lines.append("    &[" + ", ".join(self.elem(e) for e in alt) + "],")
        self.lines.append("];")
        self.lines.append("")

    def ranges(self, name, doc, rs):
        self.lines.append(f"/// {doc}")
        self.lines.append(f"pub static {name}: Ranges = {rs_ranges(rs)};")
        self.lines.append("")


def render() -> str:
    w = Writer()
    w.alts("BADNESS", "`ftfy.badness.BADNESS_RE`, alternative by alternative.", BADNESS_ALTS)
    w.alts("ALTERED_UTF8", "`ftfy.chardata.ALTERED_UTF8_RE` (on bytes).", ALTERED_ALTS)
    w.alts("LOSSY_UTF8", "`ftfy.chardata.LOSSY_UTF8_RE` (on bytes).", LOSSY_ALTS)
    w.alts("DETECTOR", "The alternatives inside `ftfy.chardata.UTF8_DETECTOR_RE`'s `(...)+`.", DETECTOR_ALTS)
    w.ranges("DETECTOR_LOOKBEHIND", "`UTF8_DETECTOR_RE`'s negative lookbehind class (`utf8_continuation_strict`).", DETECTOR_LOOKBEHIND)
    w.ranges("SINGLE_QUOTES", "`ftfy.chardata.SINGLE_QUOTE_RE`.", SINGLE_QUOTES)
    w.ranges("DOUBLE_QUOTES", "`ftfy.chardata.DOUBLE_QUOTE_RE`.", DOUBLE_QUOTES)
    w.ranges("C1_CONTROLS", "`ftfy.chardata.C1_CONTROL_RE`.", C1_CONTROLS)
    w.ranges("CONTROL_CHARS", "The keys of `ftfy.chardata.CONTROL_CHARS` (removed by `remove_control_chars`).", CONTROL_CHARS)
    w.ranges("PY_SPACE", "Python's `str.isspace` (and `re`'s `\\s`): what `str.strip()` removes.", PY_SPACE)
    w.ranges("PY_DIGIT", "Python `re`'s `\\d` for str patterns (`str.isdecimal`).", PY_DIGIT)
    w.ranges("REGEX_SPACE", "The `regex` module's `\\s`, as OpenAI's `whitespace_clean` uses it.", REGEX_SPACE)

    lines = w.lines
    lines.append("/// `ftfy.chardata.CHARMAP_ENCODINGS`, in ftfy's order: name, whether it is a")
    lines.append("/// `sloppy-` codec, the character of each byte, and the byte of each encodable")
    lines.append("/// character (sorted by character).")
    lines.append("pub static CHARMAPS: &[Charmap] = &[")
    for enc, dec, encmap in CODECS:
        lines.append("    Charmap {")
        lines.append(f"        name: {rs_str(enc)},")
        lines.append(f"        sloppy: {'true' if enc.startswith('sloppy') else 'false'},")
        lines.append("        decode: [")
        for row in range(0, 256, 8):
            lines.append("            " + ", ".join(rs_char(ord(c)) for c in dec[row:row + 8]) + ",")
        lines.append("        ],")
        lines.append("        encode: &[")
        items = sorted((ord(c), b) for c, b in encmap.items())
        for row in range(0, len(items), 8):
            lines.append("            " + ", ".join(f"({rs_char(c)}, 0x{b:02x})" for c, b in items[row:row + 8]) + ",")
        lines.append("        ],")
        lines.append("    },")
    lines.append("];")
    lines.append("")
    lines.append("/// Python's strict `windows-1252` codec: `None` for its five undefined bytes.")
    lines.append("pub static WINDOWS_1252: [Option<char>; 256] = [")
    for row in range(0, 256, 8):
        lines.append("    " + ", ".join("None" if c is None else f"Some({rs_char(ord(c))})" for c in WINDOWS_1252[row:row + 8]) + ",")
    lines.append("];")
    lines.append("")

    def pairs(name, doc, items, key_is_char):
        lines.append(f"/// {doc}")
        ktype = "char" if key_is_char else "&str"
        lines.append(f"pub static {name}: &[({ktype}, &str)] = &[")
        for k, v in items:
            key = rs_char(k) if key_is_char else rs_str(k)
            lines.append(f"    ({key}, {rs_str(v)}),")
        lines.append("];")
        lines.append("")

    pairs("LIGATURES", "`ftfy.chardata.LIGATURES` (`fix_latin_ligatures`).", LIGATURES, True)
    pairs("WIDTH_MAP", "`ftfy.chardata.WIDTH_MAP` (`fix_character_width`).", WIDTH_MAP, True)
    pairs("FTFY_ENTITIES", "`ftfy.chardata.HTML_ENTITIES` (`unescape_html`), sorted by bytes.", FTFY_ENTITIES, False)
    pairs("HTML5", "Python's `html.entities.html5` (`html.unescape`), sorted by bytes.", HTML5, False)
    lines.append("/// Python's `html._invalid_charrefs`.")
    lines.append("pub static HTML_INVALID_CHARREFS: &[(u32, char)] = &[")
    for k, v in HTML_INVALID_CHARREFS:
        lines.append(f"    (0x{k:x}, {rs_char(ord(v))}),")
    lines.append("];")
    lines.append("")
    w.lines = lines
    w.ranges("HTML_INVALID_CODEPOINTS", "Python's `html._invalid_codepoints`.", HTML_INVALID_CODEPOINTS)

    head = [
        "// @generated by tests/reference/text_clean_tables.py from ftfy "
        f"{ftfy.__version__} (Python {sys.version.split()[0]}, Unicode {unicodedata.unidata_version},",
        f"// regex {regex.__version__}). Do not edit by hand; regenerate instead.",
        "",
        "#![allow(clippy::unreadable_literal)]",
        "",
        "use super::pattern::{Charmap, Elem, Ranges};",
        "",
    ]
    for rs, name in w.classes.items():
        head.append(f"const {name}: Ranges = {rs_ranges(list(rs))};")
    head.append("")
    return "\n".join(head + w.lines)


def main():
    self_check()
    text = render()
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} differs from what ftfy {ftfy.__version__} gives; regenerate it")
        print(f"{OUT} is up to date", file=sys.stderr)
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
