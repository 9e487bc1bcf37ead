"""Token ids transformers gives for a folder with BOTH tokenizer.json and a
tokenizer_config.json whose special tokens (or settings) differ from the
defaults, for tests/tokenizer_config.rs (native) and
tests/browser/tokenizer-config.test.mjs (wasm).

    /work/venv-siglip/bin/python tests/reference/tokenizer_config_reference.py

transformers 5 (`AutoTokenizer.from_pretrained`, tokenization_utils_tokenizers.py
`convert_to_native_format`) reads tokenizer.json's vocabulary and rebuilds the
tokenizer with the class that tokenizer_config.json's `tokenizer_class` names, with
the config's special tokens and settings:

- `BertTokenizer` (models/bert/tokenization_bert.py): WordPiece on the file's
  vocabulary with the config's `unk_token`, BertNormalizer(clean_text,
  tokenize_chinese_chars, strip_accents, do_lower_case) from the config (defaults
  True, None, True: the file's normaliser is not used), BertPreTokenizer, and
  `cls $A sep` from the config's `cls_token` / `sep_token`; padding with the config's
  `pad_token`;
- `CLIPTokenizer` (models/clip/tokenization_clip.py): `RobertaProcessing(eos, bos)`
  from the config's `bos_token` / `eos_token`;
- `GemmaTokenizer` (SigLIP 2's tokenizer.json): the file's post-processor; padding
  with the config's `pad_token`;
- no `tokenizer_class` (or `PreTrainedTokenizerFast`): the file as it is; padding
  with the config's `pad_token`.

Every special token the config names is also matched in the raw text. Cases are
written to tests/fixtures/tokenizer-config/expected.json: per case, the fixture folder
whose tokenizer.json (and model) it uses, the tokenizer_config.json written over the
folder's, the strings and transformers' ids; for the BERT and SigLIP towers padded
to the context as open_clip's HFTokenizer / SiglipProcessor call it
(`padding="max_length", truncation=True`), for CLIP unpadded. A case whose config
transformers cannot use, or gives ids outside the vocabulary, carries "error": the
text our loader's error must contain (it names tokenizer_config.json).
"""

import copy
import json
import pathlib
import shutil
import tempfile

from transformers import AutoTokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
OUT = ROOT / "tokenizer-config"

# Strings whose ids do not depend on the text clean-ups each family runs first
# (OpenAI's for CLIP, open_clip's whitespace clean for BERT): single spaces,
# no HTML entities. Upper case and accents meet the BERT normaliser's settings;
# the special tokens written in the text meet their matching.
BERT_STRINGS = [
    "a photo of a chest x-ray",
    "Pneumonia in the Left Lung",
    "[CLS] cls and [SEP] sep and [MASK] and [unused0] written",
    "[UNK] unknown zzzqqq",
    "café naïve",
    "",
]
CLIP_STRINGS = ["a photo of a cat", "<|startoftext|> written <|endoftext|>", ""]
SIGLIP_STRINGS = ["a photo of a cat", "<eos> written <pad>", ""]

# (name, fixture folder, family, context: the model's (open_clip_config.json's
# context_length, SigLIP's max_position_embeddings; CLIP is not padded), config
# changes, keys removed)
BERT = "tiny-open-clip-bert"
CLIP = "tiny-quickgelu-f32"
SIGLIP = "tiny-siglip-a"
CASES = [
    ("bert-as-shipped", BERT, "bert", 256, {}, []),
    ("bert-renamed-specials", BERT, "bert", 256, {"cls_token": "[UNK]", "sep_token": "[MASK]", "pad_token": "[unused0]"}, []),
    ("bert-added-token-dicts", BERT, "bert", 256,
     {"cls_token": {"content": "[MASK]", "lstrip": False, "normalized": False, "rstrip": False,
                    "single_word": False, "special": True, "__type": "AddedToken"},
      "unk_token": "[unused0]"}, []),
    ("bert-cased", BERT, "bert", 256, {"do_lower_case": False}, []),
    ("bert-settings-defaults", BERT, "bert", 256, {}, ["do_lower_case", "strip_accents", "tokenize_chinese_chars"]),
    ("bert-keep-accents", BERT, "bert", 256, {"strip_accents": False}, []),
    ("bert-no-class", BERT, "bert", 256, {"pad_token": "[unused0]", "cls_token": "[UNK]"}, ["tokenizer_class"]),
    ("bert-fast-class", BERT, "bert", 256, {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[unused0]"}, []),
    ("bert-special-not-in-vocab", BERT, "bert", 256, {"cls_token": "<s>"}, []),
    ("bert-no-pad", BERT, "bert", 256, {"pad_token": None}, []),
    ("clip-as-shipped", CLIP, "clip", 77, {"tokenizer_class": "CLIPTokenizer"}, []),
    ("clip-swapped-bos-eos", CLIP, "clip", 77,
     {"tokenizer_class": "CLIPTokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|startoftext|>"}, []),
    ("clip-eos-not-in-vocab", CLIP, "clip", 77, {"tokenizer_class": "CLIPTokenizer", "eos_token": "</s>"}, []),
    ("siglip-as-shipped", SIGLIP, "siglip", 12, {}, []),
    ("siglip-pad-eos", SIGLIP, "siglip", 12, {"pad_token": "<eos>"}, []),
    ("siglip-pad-not-in-vocab", SIGLIP, "siglip", 12, {"pad_token": "<padding>"}, []),
]


def folder_config(fixture):
    path = ROOT / fixture / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def run(tok, family, context, strings):
    if family == "clip":
        return [tok(s)["input_ids"] for s in strings]
    enc = tok(strings, max_length=context, padding="max_length", truncation=True)
    return enc["input_ids"]


def main():
    OUT.mkdir(exist_ok=True)
    cases = []
    for name, fixture, family, context, changes, removed in CASES:
        config = copy.deepcopy(folder_config(fixture))
        config.update(changes)
        for key in removed:
            config.pop(key, None)
        strings = {"bert": BERT_STRINGS, "clip": CLIP_STRINGS, "siglip": SIGLIP_STRINGS}[family]
        case = {"name": name, "fixture": fixture, "family": family, "context": context, "config": config, "strings": strings}
        with tempfile.TemporaryDirectory() as scratch:
            d = pathlib.Path(scratch)
            shutil.copy(ROOT / fixture / "tokenizer.json", d / "tokenizer.json")
            (d / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
            vocab = len(json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
            try:
                tok = AutoTokenizer.from_pretrained(str(d))
                ids = run(tok, family, context, strings)
            except ValueError as e:  # transformers refuses to pad without a pad token
                ids, case["transformers_error"] = None, str(e).split(".")[0]
            outside = ids is not None and any(i >= vocab for row in ids for i in row)
        if ids is None or outside:
            token = next(v for k, v in changes.items() if k.endswith("_token"))
            case["error"] = "pad_token" if token is None else f'"{token}"'
            if outside:
                case["transformers_ids_outside_vocabulary"] = ids
        else:
            case["ids"] = ids
        cases.append(case)
    lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)
    (OUT / "expected.json").write_text('{"cases": [\n' + lines + "\n]}\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases, {sum('error' in c for c in cases)} refused")


if __name__ == "__main__":
    main()
