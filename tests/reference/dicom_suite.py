#!/usr/bin/env python3
"""pydicom 3.0.2's own test files, rendered by pydicom under the README's rule,
for tests/dicom_suite.rs.

Every file under `pydicom/data/test_files/` of the pydicom 3.0.2 wheel (DICOM or
not; `scripts/setup.sh` fetches the wheel into build/, pinned by its sha256) is
read with `pydicom.dcmread(path, force=True)` (our reader also takes data sets
without file meta information) and, when that gives a data set with pixels,
`ds.pixel_array` is rendered by `dicom_reference.render` (the middle frame,
modality LUT, first window or min-max, MONOCHROME1 inverted; colour scaled to
8 bits). Files pydicom cannot render are listed with pydicom's error: the Rust
test requires an error naming the file from us too.

Decoding plugins installed when the references were made (pydicom picks among
them; the versions are written to suite.json):
    numpy (native and RLE: pydicom's own decoders), pylibjpeg + pylibjpeg-libjpeg
    (JPEG), pylibjpeg + pylibjpeg-openjpeg (JPEG 2000), pylibjpeg-rle, pyjpegls
    (JPEG-LS, CharLS), and Pillow (pydicom tries it for JPEG and JPEG 2000
    too; it is here to write the PNGs). GDCM is not installed.

Setup (outside the repository; package registries only):
    python3 -m venv /work/venv-dicomsuite
    /work/venv-dicomsuite/bin/pip install pydicom==3.0.2 numpy pillow pylibjpeg \
        pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls
Run from the repository root (after scripts/setup.sh has fetched the wheel):
    /work/venv-dicomsuite/bin/python tests/reference/dicom_suite.py
Writes tests/dicom/suite/suite.json and one PNG per distinct rendering, named
after the first file (in path order) that gives it, with "/" as "__"; renderings
of at most 48 values are also in suite.json as RGB numbers (`rgb`, row by row),
for tests/browser/fieldcases.test.mjs.
"""

import json
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_reference import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "build" / "pydicom-3.0.2" / "test_files"
OUT = ROOT / "tests" / "dicom" / "suite"
PLUGINS = ["pydicom", "numpy", "pillow", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pyjpegls"]


def flat(rel):
    return rel.replace("/", "__")


def main():
    if pydicom.__version__ != "3.0.2":
        sys.exit(f"pydicom 3.0.2 is needed, found {pydicom.__version__}")
    if not SOURCE.is_dir():
        sys.exit(f"{SOURCE} is missing: run scripts/setup.sh first")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    files = {}
    seen = {}  # rendering bytes -> PNG already written
    for path in sorted(p for p in SOURCE.rglob("*") if p.is_file()):
        rel = path.relative_to(SOURCE).as_posix()
        entry = {}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(path, force=True)
                image, info = render(ds)
            entry["warnings"] = sorted({str(w.message) for w in caught})
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise ValueError(f"unexpected rendering {image.dtype} {image.shape}")
            key = (image.shape, image.tobytes())
            png = seen.setdefault(key, flat(rel) + ".png")
            if png == flat(rel) + ".png":
                Image.fromarray(image, "L" if image.ndim == 2 else "RGB").save(OUT / png, optimize=True)
            entry.update(info)
            entry["png"] = png
            if image.size <= 48:
                # Tiny renderings also as RGB numbers, for the browser test.
                rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
                entry["rgb"] = rgb.reshape(-1).tolist()
            entry["transfer_syntax"] = str(ds.file_meta.get("TransferSyntaxUID", "")) if "file_meta" in dir(ds) else ""
        except Exception as e:  # noqa: BLE001 - any refusal by pydicom is recorded
            entry = {"pydicom_error": f"{type(e).__name__}: {e}"[:300]}
        files[rel] = entry
        print(rel, "->", entry.get("png") or entry["pydicom_error"][:100])
    plugins = {}
    for name in PLUGINS:
        try:
            plugins[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            plugins[name] = None
    summary = {"pydicom_wheel": "pydicom-3.0.2-py3-none-any.whl", "plugins": plugins, "files": files}
    (OUT / "suite.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    rendered = sum(1 for e in files.values() if "png" in e)
    print(f"{len(files)} files, {rendered} rendered by pydicom")


if __name__ == "__main__":
    main()
