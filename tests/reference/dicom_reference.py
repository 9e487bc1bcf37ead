#!/usr/bin/env python3
"""Reference 8-bit renderings of the DICOM test files, for tests/dicom.rs.

pydicom decodes each file (its own native/RLE handlers, pylibjpeg-libjpeg for
JPEG, pylibjpeg-openjpeg for JPEG 2000, pyjpegls for JPEG-LS) and numpy applies the rendering rules
of src/preprocess/dicom.rs, independently written:

  * the middle frame (index frames // 2) of a multi-frame image;
  * greyscale: modality LUT x * RescaleSlope + RescaleIntercept, then the FIRST
    window (PS3.3 C.11.2.1.2.1 linear function scaled to 0..255) when its width
    is >= 1, else the frame's min..max mapped linearly to 0..255;
    MONOCHROME1 inverted; rounded half up;
  * colour: pydicom's RGB (it converts YBR itself); samples of more than 8 bits
    scaled by 255 / (2**BitsStored - 1); PALETTE COLOR through
    pydicom.pixels.apply_color_lut, 16-bit entries scaled by 255 / 65535.

Setup (outside the repository; needs only package registries):
    python3 -m venv /work/venv-dicom
    /work/venv-dicom/bin/pip install pydicom==3.0.2 pydicom-data==1.0.0 numpy pillow \
        pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle pyjpegls==1.5.1
Run from the repository root:
    /work/venv-dicom/bin/python tests/reference/dicom_reference.py [--copy]
--copy first copies the files below from the installed packages into
tests/dicom/files/. Writes tests/dicom/reference/<name>.png and summary.json.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_color_lut
from pydicom.uid import UID

ROOT = Path(__file__).resolve().parents[2]
FILES_DIR = ROOT / "tests" / "dicom" / "files"
OUT_DIR = ROOT / "tests" / "dicom" / "reference"

# name -> (package, what it exercises). "pydicom": pydicom/data/test_files/ in the
# pydicom wheel; "pydicom-data": data_store/data/ in the pydicom-data wheel.
FILES = {
    "CT_small.dcm": ("pydicom", "explicit VR LE, signed 16-bit, rescale, no window (full range)"),
    "MR_small.dcm": ("pydicom", "explicit VR LE, signed 16-bit, window"),
    "MR_small_implicit.dcm": ("pydicom", "implicit VR LE"),
    "MR_small_bigendian.dcm": ("pydicom", "explicit VR big endian"),
    "MR_small_RLE.dcm": ("pydicom", "RLE lossless, 16-bit"),
    "MR_small_jp2klossless.dcm": ("pydicom", "JPEG 2000 lossless, signed 16-bit"),
    "JPGExtended.dcm": ("pydicom", "JPEG extended, 12-bit DCT"),
    "JPEG2000.dcm": ("pydicom", "JPEG 2000 lossy, signed 16-bit"),
    "examples_overlay.dcm": ("pydicom", "12 of 16 bits, two windows (first used)"),
    "examples_ybr_color.dcm": ("pydicom", "JPEG baseline YBR_FULL_422, 30 frames (middle one)"),
    "image_dfl.dcm": ("pydicom", "deflated explicit VR LE, 8-bit"),
    "ExplVR_BigEnd.dcm": ("pydicom", "big endian RGB, planar configuration 1"),
    "SC_rgb_rle.dcm": ("pydicom", "RLE RGB 8-bit"),
    "SC_rgb_rle_16bit.dcm": ("pydicom", "RLE RGB 16-bit"),
    "SC_rgb_rle_2frame.dcm": ("pydicom", "RLE RGB, 2 frames"),
    "SC_rgb_jpeg_dcmtk.dcm": ("pydicom", "JPEG baseline YBR_FULL"),
    "SC_rgb_dcmtk_+eb+cy+np.dcm": ("pydicom", "JPEG baseline YBR_FULL_422"),
    "SC_rgb_dcmtk_+eb+cr.dcm": ("pydicom", "JPEG baseline RGB without colour transform"),
    "SC_jpeg_no_color_transform.dcm": ("pydicom", "JPEG baseline RGB, no Adobe marker"),
    "SC_jpeg_no_color_transform_2.dcm": ("pydicom", "JPEG baseline RGB, Adobe marker"),
    "SC_rgb_jpeg_gdcm.dcm": ("pydicom", "JPEG lossless RGB"),
    "SC_rgb_gdcm_KY.dcm": ("pydicom", "JPEG 2000 RGB"),
    "SC_ybr_full_422_uncompressed.dcm": ("pydicom", "native YBR_FULL_422"),
    "SC_rgb_small_odd.dcm": ("pydicom", "3x3 RGB"),
    "693_J2KI.dcm": ("pydicom", "JPEG 2000 lossy, 14 of 16 bits signed, rescale, window"),
    "GDCMJ2K_TextGBR.dcm": ("pydicom", "JPEG 2000 in a JP2 wrapper, YBR_RCT"),
    "US1_J2KR.dcm": ("pydicom-data", "ultrasound, JPEG 2000 lossless YBR_RCT"),
    "US1_UNCR.dcm": ("pydicom-data", "ultrasound, native RGB (same image as US1_J2KR)"),
    "SC_rgb.dcm": ("pydicom-data", "native RGB 8-bit"),
    "SC_rgb_16bit.dcm": ("pydicom-data", "native RGB 16-bit"),
    "SC_ybr_full_uncompressed.dcm": ("pydicom-data", "native YBR_FULL"),
    "emri_small.dcm": ("pydicom-data", "10 frames, 12 of 16 bits (middle frame)"),
    "emri_small_RLE.dcm": ("pydicom-data", "RLE, 10 frames"),
    "emri_small_jpeg_2k_lossless.dcm": ("pydicom-data", "JPEG 2000 lossless, 10 frames"),
    "JPEG-LL.dcm": ("pydicom-data", "JPEG lossless (process 14 SV1), signed 16-bit"),
    "OBXXXX1A_rle.dcm": ("pydicom-data", "RLE PALETTE COLOR"),
    "RG3_J2KI.dcm": ("pydicom-data", "MONOCHROME1 CR, JPEG 2000 lossy, 10 of 16 bits, window"),
    "MR_small_jpeg_ls_lossless.dcm": ("pydicom", "JPEG-LS lossless, signed 16-bit"),
}
# Error cases (decoding must fail with the transfer syntax UID in the message): none now.
UNSUPPORTED = set()


def source_dir(package):
    if package == "pydicom":
        return Path(pydicom.__file__).parent / "data" / "test_files"
    import data_store  # the pydicom-data wheel

    return Path(data_store.__file__).parent / "data"


def round_half_up(v):
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def first(value):
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return float(value[0]) if len(value) else None
    return float(value)


def render(ds, window=None):
    """The README's rule; `window` (center, width), when given, replaces the
    file's first window (a user's choice: `kpl --voi N` / `--window C,W`)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = frames // 2
    arr = ds.pixel_array
    if frames > 1:
        arr = arr[index]
    pi = ds.get("PhotometricInterpretation", "MONOCHROME2")
    info = {"frame": index, "photometric": pi}
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        slope = first(ds.get("RescaleSlope")) or 1.0 if "RescaleSlope" in ds else 1.0
        intercept = first(ds.get("RescaleIntercept")) if "RescaleIntercept" in ds else 0.0
        y = arr.astype(np.float64) * slope + intercept
        c, w = window if window is not None else (first(ds.get("WindowCenter")), first(ds.get("WindowWidth")))
        if c is not None and w is not None and w >= 1:
            c0, w0 = c - 0.5, w - 1.0
            out = ((y - c0) / w0 + 0.5) * 255.0 if w0 > 0 else np.zeros_like(y)
            out = np.where(y <= c0 - w0 / 2, 0.0, np.where(y > c0 + w0 / 2, 255.0, out))
            info["window"] = [c, w]
        else:
            lo, hi = y.min(), y.max()
            out = (y - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(y)
            info["window"] = None
        grey = round_half_up(out)
        if pi == "MONOCHROME1":
            grey = 255 - grey
        return grey, info
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        depth = int(ds.RedPaletteColorLookupTableDescriptor[2])
        if depth == 16:
            return round_half_up(rgb.astype(np.float64) * 255.0 / 65535.0), info
        return rgb.astype(np.uint8), info
    # RGB, or YBR that pydicom has converted to RGB.
    bits = int(ds.BitsStored)
    if bits <= 8:
        return np.clip(arr, 0, 255).astype(np.uint8), info
    return round_half_up(arr.astype(np.float64) * 255.0 / (2**bits - 1)), info


def main():
    FILES_DIR.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if "--copy" in sys.argv:
        for name, (package, _) in FILES.items():
            (FILES_DIR / name).write_bytes((source_dir(package) / name).read_bytes())
    summary = {}
    for name, (package, what) in FILES.items():
        ds = pydicom.dcmread(FILES_DIR / name)
        ts = ds.file_meta.TransferSyntaxUID
        entry = {
            "source": package,
            "what": what,
            "transfer_syntax": str(ts),
            "transfer_syntax_name": UID(ts).name,
            "rows": int(ds.Rows),
            "columns": int(ds.Columns),
            "frames": int(ds.get("NumberOfFrames", 1) or 1),
            "modality": ds.get("Modality") or None,
            "body_part": ds.get("BodyPartExamined") or None,
        }
        if name in UNSUPPORTED:
            entry["unsupported"] = True
        else:
            image, info = render(ds)
            entry.update(info)
            mode = "L" if image.ndim == 2 else "RGB"
            Image.fromarray(image, mode).save(OUT_DIR / (name[:-4] + ".png"), optimize=True)
        summary[name] = entry
        print(f"{name}: {entry['transfer_syntax_name']}, {entry['columns']}x{entry['rows']}x{entry['frames']}")
    (OUT_DIR / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
