#!/usr/bin/env python3
"""Reference cases for OpenAI's text clean-up (src/text_clean.rs).

For every string: `ftfy.fix_text` (default configuration), OpenAI's cleaned text
(`whitespace_clean(basic_clean(text)).lower()`) and OpenAI's token ids as
`clip.tokenize(text, truncate=True)` gives them (context 77; recorded up to and
including the end token 49407). Writes tests/fixtures/text_clean/cases.json
(hand-made cases) and tests/fixtures/text_clean/random.json (seeded random
mojibake, a wider net for the port).

torch is not needed: `clip/simple_tokenizer.py` is loaded from the installed
clip-anytorch package by path, and `clip.tokenize`'s start/end/truncation logic
is reproduced below.

    python3 -m venv /tmp/ftfyenv
    /tmp/ftfyenv/bin/pip install 'ftfy==6.3.1' regex
    /tmp/ftfyenv/bin/pip install --no-deps clip-anytorch==2.6.0
    /tmp/ftfyenv/bin/python tests/reference/text_clean_cases.py           # writes the fixtures
    /tmp/ftfyenv/bin/python tests/reference/text_clean_cases.py --check   # compares, writes nothing

Before writing, the script checks that it reproduces the field case
(`mojibake.txt` → `mojibake.openai_ids.json`, from ../shared/field-cases or the
committed copy in tests/fixtures/text_clean/).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import random
import sys
import unicodedata
from pathlib import Path

import ftfy
import regex

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "text_clean"
SOT, EOT, CONTEXT = 49406, 49407, 77


def load_simple_tokenizer():
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("clip-anytorch is not installed (pip install --no-deps clip-anytorch==2.6.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "simple_tokenizer.py"
    module_spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


ST = load_simple_tokenizer()
TOKENIZER = ST.SimpleTokenizer()


def openai_clean(text: str) -> str:
    """What SimpleTokenizer.encode feeds to its regex and BPE."""
    return ST.whitespace_clean(ST.basic_clean(text)).lower()


def openai_ids(text: str) -> list[int]:
    """clip.tokenize([text], context_length=77, truncate=True)[0], up to the end token."""
    tokens = [SOT] + TOKENIZER.encode(text) + [EOT]
    if len(tokens) > CONTEXT:
        tokens = tokens[:CONTEXT]
        tokens[-1] = EOT
    return tokens


def record(name: str, text: str) -> dict:
    return {
        "name": name,
        "text": text,
        "ftfy": ftfy.fix_text(text),
        "openai_clean": openai_clean(text),
        "openai_ids": openai_ids(text),
    }


# ---------------------------------------------------------------------------
# Mojibake makers
# ---------------------------------------------------------------------------


def moji(text: str, encoding: str = "sloppy-windows-1252") -> str:
    """UTF-8 bytes read in another (single-byte) encoding."""
    return text.encode("utf-8").decode(encoding)


def moji_lossy(text: str) -> str:
    """UTF-8 read as strict windows-1252, unassigned bytes becoming U+FFFD."""
    return text.encode("utf-8").decode("windows-1252", errors="replace")


def nbsp_to_space(text: str) -> str:
    return text.replace("\u00a0", " ")


LONG_REPORT = (
    "Chest X-ray: bilateral pleural effusiÃ³n with ground-glass opacities â€“ more marked "
    "in the right lower lobe; cardiomegaly (CTR 0.58). The patientâ€™s previous study "
    "showed no consolidaciÃ³n. Recommend follow-up CT in 6â€“8 weeks, correlation with "
    "clinical findings, D-dimer, troponin and BNP; consider diuretics if the effusiÃ³n "
    "increases. Â© Radiology Department, HÃ´pital Saint-Ã‰loi."
)


def hand_cases() -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = [
        # --- Spanish
        ("es latin-1", moji("pleural effusión, neumonía", "latin-1")),
        ("es cp1252", moji("El niño comió jamón en la mañana")),
        ("es question", moji("¿Dónde está el baño?")),
        ("es medical", moji("diagnóstico: derrame pleural, tórax con opacidades")),
        # --- French
        ("fr cp1252", moji("Le café est très chaud à Noël")),
        ("fr oe ligature", moji("crème brûlée, garçon, œuvre, cœur")),
        ("fr a-grave nbsp kept", moji("à la mode")),
        ("fr a-grave nbsp lost", nbsp_to_space(moji("voilà le travail"))),
        ("fr a-grave nbsp lost two spaces", nbsp_to_space(moji("à la carte"))),
        ("fr medical", moji("lésion pulmonaire, épanchement pleural")),
        # --- German
        ("de cp1252", moji("Größe, Übergröße, Straße")),
        ("de apostrophe", moji("Müller’s Ärzte prüfen das Ödem")),
        ("de medical", moji("Röntgen-Thorax: Pleuraerguss, Hämatom")),
        # --- Portuguese
        ("pt cp1252", moji("Não há informação às vezes")),
        ("pt lung", moji("coração, ação, pulmões, pneumonia")),
        ("pt nbsp lost as", nbsp_to_space(moji("vamos às compras"))),
        # --- Polish
        ("pl cp1252", moji("Zażółć gęślą jaźń")),
        ("pl cp1250", moji("Zażółć gęślą jaźń", "sloppy-windows-1250")),
        ("pl iso-8859-2", moji("źrebię, łódź, płuco", "iso-8859-2")),
        # --- Russian / Cyrillic
        ("ru latin-1", moji("Привет, как дела?", "latin-1")),
        ("ru cp1251", moji("Пневмония и плевральный выпот", "sloppy-windows-1251")),
        ("ru cp1252", moji("Рентген грудной клетки")),
        ("ru legit", "Рентген грудной клетки: без патологии"),
        ("ru cp1251 bytes read as latin-1 (not UTF-8)", "Пневмония".encode("cp1251").decode("latin-1")),
        # --- Greek
        ("el cp1252", moji("Καλημέρα κόσμε")),
        ("el cp1253", moji("Πνευμονία και πλευριτική συλλογή", "sloppy-windows-1253")),
        ("el final sigma", "ΟΔΟΣ ΚΑΙ ΣΟΦΙΑ"),
        # --- Japanese
        ("ja cp1252", moji("日本語のテキスト")),
        ("ja latin-1", moji("肺炎の疑い", "latin-1")),
        ("ja halfwidth katakana", "ﾃｽﾄ ｶﾀｶﾅ"),
        # --- other code pages
        ("tr cp1254", moji("Göğüs röntgeni, akciğer", "sloppy-windows-1254")),
        ("lt cp1257", moji("plaučių uždegimas", "sloppy-windows-1257")),
        ("macroman", moji("café, naïve, résumé", "mac_roman")),
        ("cp437", moji("café crème", "cp437")),
        # --- doubly (and triply) encoded
        ("double cp1252", moji(moji("café, effusión"))),
        ("double latin-1", moji(moji("Größe", "latin-1"), "latin-1")),
        ("triple", moji(moji(moji("naïve")))),
        ("double quotes", moji(moji("the patient’s “chest” film"))),
        # --- lossy and partial
        ("lossy quote", moji_lossy("“ground-glass” opacities")),
        ("mixed legit and mojibake", "café and " + moji("café") + " and crème"),
        ("emoji mojibake", moji("✔ No problems 😀")),
        ("kaomoji", "&macr;\\_(ã\x83\x84)_/&macr;"),
        ("cesu-8", "\xed\xa0\xbd\xed\xb8\x8d smile"),
        ("field case", "pleural effusiÃ³n, cafÃ©, patientâ€™s x-ray"),
        # --- legitimate text ftfy must leave alone
        ("legit naive cafe", "naïve café"),
        ("legit Grosse", "Größe"),
        ("legit Aeroskobing", "Ærøskøbing"),
        ("legit Latin-1 capitals", "ÀÁÂ"),
        ("legit accents", "São Paulo, Ångström, Zürich, résumé, señor"),
        ("legit symbols", "1 ± 0.5 mm, ½ tablet, © 2024, 90°, 5 µg/kg, 37.5 °C"),
        ("legit turkish dotted I", "İstanbul ISTANBUL"),
        ("legit chinese", "肺部阴影，胸腔积液"),
        # --- C1 controls
        ("c1 euro", "\x80 price"),
        ("c1 apostrophe", "It\x92s fine"),
        ("c1 next line", "first\x85second"),
        # --- width, quotes, ligatures
        ("fullwidth", "ＬＯＵＤ　ＮＯＩＳＥＳ ｘ－ｒａｙ １２３"),
        ("curly quotes", "“quoted” ‘single’ ‛reversed‟ ʼmodifier"),
        ("ligatures", "ﬁbrosis ﬂuid ﬀ ﬃ ﬄ ﬅ ﬆ"),
        ("dutch and serbian digraphs", "Ĳssel ĳs ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ Ǳ ǲ ǳ ŉ"),
        # --- control characters, BOM, zero width
        ("bom", "\ufeffhello world"),
        ("bom inside", "hello\ufeffworld"),
        ("zero width", "zero\u200bwidth join\u200dner non\u200cjoiner"),
        ("soft hyphen and word joiner", "soft\u00adhyphen word\u2060joiner"),
        ("deprecated format chars", "a\u206ab\u206fc \ufff9annot\ufffb \ufffc"),
        ("ascii controls", "a\x00b\x07c\x7fd\x1be"),
        ("ansi escapes", "\x1b[36;44mI'm blue\x1b[0m, da ba dee"),
        # --- line breaks and whitespace
        ("line breaks", "line1\r\nline2\rline3\u2028line4\u2029line5"),
        ("whitespace", "  multiple   spaces\tand\ttabs\n\nnewlines  "),
        ("nbsp and unicode spaces", "\u00a0nbsp\u00a0 en\u2002space ideo\u3000space"),
        # --- HTML
        ("html entities", "&amp; &lt;tag&gt; &quot;x&quot;"),
        ("html hellip", "Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"),
        ("html all caps", "P&EACUTE;REZ &NTILDE; BUNDESSTRA&SZLIG;E"),
        ("html double", "&amp;amp; &amp;lt;"),
        ("html no semicolon", "AT&T &copy 2020 &amp"),
        ("html with markup", "<b>bold</b> &amp; &eacute;"),
        ("html markup in earlier line", "a < b\n&amp; &eacute;"),
        ("html markup in later line", "&amp; &eacute;\na < b"),
        ("html numeric odd", "&#128; euro &#0; null &#1; one &#65a; &#x41;"),
        ("html longest prefix", "&notit; &ampxyz"),
        ("html decomposed", "e&#769; cafe&#x301;"),
        ("html decomposed after markup", "x < y: e&#769; cafe&#x301;"),
        # --- medical phrases
        ("med plain", "a chest x-ray showing pleural effusion"),
        ("med quotes", moji("the patient’s “ground-glass” opacities")),
        ("med units", moji("dose 5 µg/kg, temperature 38 °C, ± 2 mm")),
        ("med bullet", moji("• bilateral infiltrates • no pneumothorax")),
        ("med dash", moji("follow-up in 6–8 weeks — stable")),
        ("med long truncated", LONG_REPORT),
    ]
    return cases


# ---------------------------------------------------------------------------
# Random cases
# ---------------------------------------------------------------------------

WORDS = [
    "effusión", "neumonía", "café", "naïve", "Größe", "Straße", "Ödem", "cœur", "garçon",
    "coração", "pulmões", "informação", "Zażółć", "gęślą", "jaźń", "Привет", "лёгкие",
    "Καλημέρα", "πνευμονία", "日本語", "肺炎", "テキスト", "İstanbul", "akciğer", "plaučių",
    "patient’s", "“quoted”", "—", "–", "…", "•", "€", "£", "©", "®", "™", "°", "±", "µ",
    "½", "×", "ﬁbrosis", "ＬＯＵＤ", "ﾃｽﾄ", "😀", "✔", "à", "às", "Ã", "Â", "chest",
    "x-ray", "pleural", "opacity", "the", "and", "of", "&amp;", "&eacute;", "&#x2019;", "<b>",
    "naïve café", "Ærøskøbing", "ÀÁÂ", "\u00a0", "\t", "\n", "\r\n", "\ufeff", "\u200b",
]

ENCODINGS = [
    "latin-1", "sloppy-windows-1252", "sloppy-windows-1251", "sloppy-windows-1250",
    "sloppy-windows-1253", "sloppy-windows-1254", "sloppy-windows-1257", "iso-8859-2",
    "mac_roman", "cp437",
]


def random_case(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
    pieces = []
    for w in words:
        r = rng.random()
        if r < 0.45:
            try:
                w = moji(w, rng.choice(ENCODINGS))
            except UnicodeDecodeError:
                pass
            if rng.random() < 0.15:
                try:
                    w = moji(w, rng.choice(ENCODINGS[:2]))
                except UnicodeDecodeError:
                    pass
        elif r < 0.5:
            w = moji_lossy(w)
        pieces.append(w)
    text = rng.choice([" ", " ", "", ", "]).join(pieces)
    if rng.random() < 0.2:
        text = nbsp_to_space(text)
    if rng.random() < 0.3:
        try:
            text = moji(text, rng.choice(ENCODINGS))
        except UnicodeDecodeError:
            pass
    return text


def random_cases(n: int) -> list[dict]:
    rng = random.Random(1306)
    return [record(f"random {i}", random_case(rng)) for i in range(n)]


# ---------------------------------------------------------------------------


def field_case():
    shared = ROOT.parent / "shared" / "field-cases"
    folder = shared if (shared / "mojibake.txt").exists() else FIXTURES
    text = (folder / ("mojibake.txt" if folder == shared else "field-mojibake.txt")).read_text(encoding="utf-8")
    ids_file = folder / ("mojibake.openai_ids.json" if folder == shared else "field-mojibake.openai_ids.json")
    expected = json.loads(ids_file.read_text())["openai_ids"]
    got = openai_ids(text)
    if got != expected:
        sys.exit(f"field case not reproduced from {folder}: {got} != {expected}")
    print(f"field case reproduced ({folder})", file=sys.stderr)


def versions() -> dict:
    return {
        "ftfy": ftfy.__version__,
        "clip-anytorch": importlib.metadata.version("clip-anytorch"),
        "regex": regex.__version__,
        "python": sys.version.split()[0],
        "unicode": unicodedata.unidata_version,
    }


def document(cases: list[dict], what: str) -> str:
    head = {
        "generated_by": "tests/reference/text_clean_cases.py",
        "what": what,
        "versions": versions(),
    }
    # One case a line: compact, and a regeneration diffs case by case.
    lines = [json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [']
    lines.append(",\n".join(json.dumps(c, ensure_ascii=False) for c in cases))
    lines.append("]}")
    return "\n".join(lines) + "\n"


def main():
    field_case()
    hand = hand_cases()
    names = [n for n, _ in hand]
    assert len(set(names)) == len(names), "duplicate case names"
    outputs = {
        FIXTURES / "cases.json": document(
            [record(n, t) for n, t in hand],
            "hand-made cases: ftfy.fix_text, OpenAI's cleaned text and clip.tokenize ids",
        ),
        FIXTURES / "random.json": document(
            random_cases(1000),
            "seeded random mojibake: ftfy.fix_text, OpenAI's cleaned text and clip.tokenize ids",
        ),
    }
    if "--check" in sys.argv:
        stale = [str(p) for p, text in outputs.items() if not p.exists() or p.read_text() != text]
        if stale:
            sys.exit("out of date: " + ", ".join(stale))
        print("fixtures up to date", file=sys.stderr)
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for path, text in outputs.items():
        path.write_text(text)
        print(f"wrote {path} ({len(text)} bytes)", file=sys.stderr)
    print(f"{len(hand)} hand-made cases, ftfy {ftfy.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
