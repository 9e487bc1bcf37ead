"""Token ids of open_clip's HFTokenizer (BERT WordPiece, as BiomedCLIP's text
tower uses it) for the strings of tests/wordpiece.rs.

    /work/venv-openclip/bin/python tests/reference/wordpiece_reference.py

Writes tests/fixtures/wordpiece/:

- vocab/        vocab.txt + tokenizer_config.json (lower-cased, as BiomedCLIP);
- json/         the same tokenizer saved by transformers (tokenizer.json too) +
                open_clip_config.json, read through open_clip's get_tokenizer
                ("local-dir:"), as a BiomedCLIP repository is laid out;
- cased/        vocab.txt + tokenizer_config.json with do_lower_case false,
                strip_accents false, tokenize_chinese_chars false;
- expected.json the strings and, per folder, open_clip's ids (context 256,
                and 12 to exercise truncation), `lower` and `canonicalize`
                cleaning and strip_sep_token on the vocab folder.

The vocabulary is written here (medical words, word pieces, punctuation,
digits, an accented and two CJK characters); nothing touches the hub.
"""

import json
import pathlib
import shutil
import string

from open_clip import get_tokenizer
from open_clip.tokenizer import HFTokenizer

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "wordpiece"

SPECIAL = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """a an the of with and or in on no this is photo image scan showing shows there
chest x ray ct mri brain lung lungs heart liver kidney bone fracture normal abnormal
pneumonia pneu ##monia effusion pleural cardio ##megaly nodule ##s ##ule ##ed ##ing
tumor tumour mass lesion carcinoma ##oma adeno ##carcinoma histo ##path ##ology
pathology cell cells tissue stain h e left right upper lower lobe covid 19 sars cov
naive cafe café résumé über patient year old male female mm cm grade
CT MRI X Chest Lung Normal Pneumonia
肺 癌""".split()
PIECES = [f"##{c}" for c in string.ascii_lowercase + string.digits]
CHARS = list(string.ascii_lowercase) + list(string.ascii_uppercase) + list(string.digits) + list(string.punctuation)
VOCAB = SPECIAL + list(dict.fromkeys(WORDS + CHARS + PIECES + ["é", "ü", "ï"]))

STRINGS = [
    "",
    "a photo of a chest x-ray",
    "A chest X-ray showing pneumonia.",
    "CT scan of the brain with no abnormal mass",
    "Cardiomegaly and pleural effusion",
    "  leading and trailing   spaces\t\tand\ttabs\n",
    "left upper lobe nodule, 12 mm",
    "Grade 3 adenocarcinoma (H&E stain)",
    "histopathology: carcinoma cells!!!",
    "naïve café résumé über",
    "NAÏVE CAFÉ",
    "肺癌 lung 癌",
    "COVID-19 pneumonia (SARS-CoV-2)",
    "patient: 67-year-old male; mass 3.5cm",
    "emoji 🫁 lung 🩻 x-ray 😀",
    "&lt;b&gt;html&lt;/b&gt; &amp; entities",
    "mojibake cafÃ© and â€œquotesâ€\x9d",
    "unknownword zzzzqqq xyzzy",
    "[MASK] is a special token, [CLS] and [SEP] too",
    "[mask] lower-case special",
    "100% of 1,000 patients",
    "x" * 120,
    "pneumonias tumors lesions",
    "Tumour vs tumor",
    "MRI: normal",
    "under_score and back\\slash",
    "non\u00a0breaking\u2003em space\u200bzero width",
    "ﬁbrosis ligature and ① circled",
    "control \x07 chars \x00 here",
    "Ǆ title case and ß",
    "café" * 3 + " CAFÉ",
    " ".join(["lung nodule with pleural effusion"] * 60),
    "chest " * 300,
]

TOKENIZER_CONFIG = {
    "tokenizer_class": "BertTokenizer",
    "do_lower_case": True,
    "strip_accents": None,
    "tokenize_chinese_chars": True,
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "mask_token": "[MASK]",
    "model_max_length": 256,
}


def write_vocab_folder(path, config):
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=1) + "\n")


def ids(tok, **kw):
    return [tok(s, **kw)[0].tolist() for s in STRINGS]


def main():
    write_vocab_folder(OUT / "vocab", TOKENIZER_CONFIG)
    cased = dict(TOKENIZER_CONFIG, do_lower_case=False, strip_accents=False, tokenize_chinese_chars=False)
    write_vocab_folder(OUT / "cased", cased)

    # The json folder: what transformers saves for the vocab folder, laid out
    # as a BiomedCLIP repository (open_clip_config.json names the tokenizer).
    vocab_tok = HFTokenizer(str(OUT / "vocab"), context_length=256)
    json_dir = OUT / "json"
    if json_dir.exists():
        shutil.rmtree(json_dir)
    vocab_tok.save_pretrained(str(json_dir))
    (json_dir / "vocab.txt").unlink(missing_ok=True)  # tokenizer.json alone must do
    open_clip_config = {
        "model_cfg": {
            "text_cfg": {"hf_tokenizer_name": "kpl-fixtures/NOT-ON-THE-HUB", "context_length": 256},
        }
    }
    (json_dir / "open_clip_config.json").write_text(json.dumps(open_clip_config, indent=1) + "\n")
    assert (json_dir / "tokenizer.json").exists()

    json_tok = get_tokenizer(f"local-dir:{json_dir}")
    assert isinstance(json_tok, HFTokenizer) and json_tok.context_length == 256
    cased_tok = HFTokenizer(str(OUT / "cased"), context_length=256)

    expected = {
        "strings": STRINGS,
        "vocab_size": len(VOCAB),
        "pad_id": VOCAB.index("[PAD]"),
        "sep_id": VOCAB.index("[SEP]"),
        "cases": [
            {"folder": "vocab", "context": 256, "clean": "whitespace", "strip_sep_token": False, "ids": ids(vocab_tok)},
            {"folder": "json", "context": 256, "clean": "whitespace", "strip_sep_token": False, "ids": ids(json_tok)},
            {"folder": "cased", "context": 256, "clean": "whitespace", "strip_sep_token": False, "ids": ids(cased_tok)},
            {"folder": "vocab", "context": 12, "clean": "whitespace", "strip_sep_token": False,
             "ids": ids(vocab_tok, context_length=12)},
            {"folder": "json", "context": 16, "clean": "lower", "strip_sep_token": False,
             "ids": ids(HFTokenizer(str(json_dir), context_length=16, clean="lower"))},
            {"folder": "cased", "context": 32, "clean": "canonicalize", "strip_sep_token": True,
             "ids": ids(HFTokenizer(str(OUT / "cased"), context_length=32, clean="canonicalize", strip_sep_token=True))},
            # open_clip_config.json's tokenizer_kwargs reach AutoTokenizer.from_pretrained.
            {"folder": "json", "context": 256, "clean": "whitespace", "strip_sep_token": False, "do_lower_case": False,
             "ids": ids(HFTokenizer(str(json_dir), context_length=256, do_lower_case=False))},
            {"folder": "cased", "context": 256, "clean": "whitespace", "strip_sep_token": False, "do_lower_case": True,
             "ids": ids(HFTokenizer(str(OUT / "cased"), context_length=256, do_lower_case=True))},
        ],
    }
    (OUT / "expected.json").write_text(json.dumps(expected, ensure_ascii=False) + "\n", encoding="utf-8")
    unk = VOCAB.index("[UNK]")
    print(f"wrote {len(STRINGS)} strings x {len(expected['cases'])} cases; "
          f"[UNK] in {sum(unk in row for row in expected['cases'][0]['ids'])} of the lower-cased encodings")


if __name__ == "__main__":
    main()
