#!/usr/bin/env python3
"""Small DICOM files of the pixel kinds and encodings pydicom's own test suite
lacks, written by pydicom, and pydicom's renderings of them, for tests/dicom.rs
(`pixel_kinds_match_pydicom`).

Kinds: Bits Allocated 1 (three 5x3 frames, so the middle frame starts at bit 15,
inside a byte; little and big endian), 32-bit signed and unsigned samples (native
little and big endian, and RLE Lossless, encoded by pylibjpeg-rle as pydicom's
encoder refuses 32 bits), 32-bit RGB, Float
Pixel Data (OF) and Double Float Pixel Data (OD). Encodings that contradict the
transfer syntax: a data set in implicit VR under Explicit VR Little Endian, in
explicit VR under Implicit VR Little Endian, in big endian under Explicit VR
Little Endian and in little endian under Explicit VR Big Endian (the file meta
written by pydicom for one transfer syntax, the data set by pydicom's
`write_dataset` in another encoding). A mismatched file is rendered from its
correctly labelled twin, so the reference does not depend on how pydicom copes
with the mismatch.

Renderings: `dicom_reference.render` (the README's rule) on `ds.pixel_array`.

Setup: the venv of tests/reference/dicom_suite.py (pydicom 3.0.2, numpy, Pillow,
pylibjpeg-rle).
Run from the repository root:
    /work/venv-dicomsuite/bin/python tests/reference/dicom_kinds.py
Writes tests/dicom/kinds/*.dcm, *.png and reference.json; and ct_two_windows.dcm
(a CT-like file with two windows and their explanations) with its renderings
under each window choice (the default, --voi 0, --voi 1, two --window values) and
windows.json, for the window tests of tests/dicom.rs.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels import pack_bits
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from rle.utils import encode_pixel_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_reference import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "dicom" / "kinds"
RNG = np.random.default_rng(18)


def base(rows, columns, frames=1, samples=1, photometric="MONOCHROME2"):
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.18"
    ds.Modality = "OT"
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, columns
    return ds


def integers(ds, bits_allocated, bits_stored, signed, values):
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    return values


def encoded(ds, meta_ts, body_implicit, body_little):
    """The file: preamble, pydicom's file meta for `meta_ts`, then the data set
    written by pydicom in the given encoding."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = meta_ts
    fp = DicomBytesIO()
    fp.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_implicit_VR, fp.is_little_endian = body_implicit, body_little
    write_dataset(fp, ds)
    return fp.getvalue()


def native(ds, ts):
    implicit = ts == ImplicitVRLittleEndian
    return encoded(ds, ts, implicit, ts != ExplicitVRBigEndian)


def cases():
    """(name, bytes of the file, bytes of its correctly labelled twin or None, what)."""
    out = []

    # Bits Allocated 1: 3 frames of 5x3 = 15 bits each; frame 1 starts at bit 15.
    bits = RNG.integers(0, 2, size=(3, 3, 5), dtype=np.uint8)
    for ts, tag in ((ExplicitVRLittleEndian, "le"), (ExplicitVRBigEndian, "be")):
        ds = base(3, 5, frames=3)
        integers(ds, 1, 1, False, None)
        ds.PixelData = pack_bits(bits)
        ds["PixelData"].VR = "OB"
        out.append((f"bits1_3frames_{tag}.dcm", native(ds, ts), None, "Bits Allocated 1, frames not byte-aligned"))

    # 32-bit integers: signed with rescale and a window; unsigned without (min-max).
    signed = RNG.integers(-2_000_000_000, 2_000_000_000, size=(4, 6), dtype=np.int32)
    unsigned = RNG.integers(0, 4_000_000_000, size=(2, 4, 6), dtype=np.uint64).astype(np.uint32)
    for ts, tag in ((ExplicitVRLittleEndian, "le"), (ExplicitVRBigEndian, "be")):
        ds = base(4, 6)
        integers(ds, 32, 32, True, None)
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "100"
        ds.WindowCenter, ds.WindowWidth = "1000000", "800000000"
        ds.PixelData = signed.astype(">i4" if tag == "be" else "<i4").tobytes()
        ds["PixelData"].VR = "OW" if tag == "le" else "OB"
        out.append((f"int32_{tag}.dcm", native(ds, ts), None, "signed 32-bit, rescale, window"))
        ds = base(4, 6, frames=2)
        integers(ds, 32, 32, False, None)
        ds.PixelData = unsigned.astype(">u4" if tag == "be" else "<u4").tobytes()
        ds["PixelData"].VR = "OB"
        out.append((f"uint32_2frames_{tag}.dcm", native(ds, ts), None, "unsigned 32-bit, min-max"))
    for name, arr, is_signed in (("uint32_rle.dcm", unsigned, False), ("int32_rle.dcm", signed, True)):
        ds = base(4, 6, frames=arr.shape[0] if arr.ndim == 3 else 1)
        integers(ds, 32, 32, is_signed, None)
        frames = arr if arr.ndim == 3 else arr[None]
        ds.PixelData = encapsulate([
            encode_pixel_data(f.astype("<i4" if is_signed else "<u4").tobytes(), byteorder="<", rows=4, columns=6,
                              samples_per_pixel=1, bits_allocated=32)
            for f in frames
        ])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        out.append((name, encoded(ds, RLELossless, False, True), None, "32-bit RLE Lossless"))

    # 32-bit RGB, 24 bits stored.
    rgb = RNG.integers(0, 2**24, size=(3, 4, 3), dtype=np.uint32)
    ds = base(3, 4, samples=3, photometric="RGB")
    integers(ds, 32, 24, False, None)
    ds.PixelData = rgb.astype("<u4").tobytes()
    ds["PixelData"].VR = "OB"
    out.append(("rgb32.dcm", native(ds, ExplicitVRLittleEndian), None, "RGB, 24 of 32 bits"))

    # Float Pixel Data (OF) with a window, and Double Float Pixel Data (OD),
    # MONOCHROME1, big endian, 3 frames, min-max.
    floats = RNG.normal(0.0, 50.0, size=(5, 4)).astype(np.float32)
    ds = base(5, 4)
    ds.BitsAllocated = 32
    ds.WindowCenter, ds.WindowWidth = "10.5", "120"
    ds.FloatPixelData = floats.astype("<f4").tobytes()
    out.append(("float32.dcm", native(ds, ExplicitVRLittleEndian), None, "Float Pixel Data, window"))
    doubles = RNG.normal(1e6, 3e5, size=(3, 5, 4))
    ds = base(5, 4, frames=3, photometric="MONOCHROME1")
    ds.BitsAllocated = 64
    ds.DoubleFloatPixelData = doubles.astype(">f8").tobytes()
    out.append(("float64_3frames_be.dcm", native(ds, ExplicitVRBigEndian), None, "Double Float Pixel Data"))

    # Encodings that contradict the transfer syntax, 16-bit greyscale.
    grey = RNG.integers(0, 4096, size=(4, 5), dtype=np.uint16)
    for name, meta_ts, implicit, little, what in (
        ("implicit_under_explicit.dcm", ExplicitVRLittleEndian, True, True, "implicit VR data set, explicit VR LE"),
        ("explicit_under_implicit.dcm", ImplicitVRLittleEndian, False, True, "explicit VR data set, implicit VR LE"),
        ("big_under_little.dcm", ExplicitVRLittleEndian, False, False, "big endian data set, explicit VR LE"),
        ("little_under_big.dcm", ExplicitVRBigEndian, False, True, "little endian data set, explicit VR BE"),
    ):
        ds = base(4, 5)
        integers(ds, 16, 12, False, None)
        ds.PixelData = grey.astype("<u2" if little else ">u2").tobytes()
        ds["PixelData"].VR = "OW"
        twin_ts = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        out.append((name, encoded(ds, meta_ts, implicit, little), encoded(ds, twin_ts, implicit, little), what))
    return out


def window_cases():
    """A CT-like file with two windows (and their explanations), and the
    renderings each choice gives: (file name, bytes, [(choice, window or None)]).
    A choice is "default", an index into the file's windows, or "C,W"."""
    hu = RNG.integers(-1024, 2000, size=(6, 7)).astype(np.int16)
    ds = base(6, 7)
    ds.Modality = "CT"
    integers(ds, 16, 16, True, None)
    ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    ds.PixelData = hu.astype("<i2").tobytes()
    ds["PixelData"].VR = "OW"
    choices = [("default", (40.0, 400.0)), (0, (40.0, 400.0)), (1, (-600.0, 1500.0)),
               ("500,2000", (500.0, 2000.0)), ("-600,1500", (-600.0, 1500.0))]
    return "ct_two_windows.dcm", native(ds, ExplicitVRLittleEndian), choices


def main():
    if pydicom.__version__ != "3.0.2":
        sys.exit(f"pydicom 3.0.2 is needed, found {pydicom.__version__}")
    OUT.mkdir(parents=True, exist_ok=True)
    reference = {}
    for name, data, twin, what in cases():
        (OUT / name).write_bytes(data)
        ds = pydicom.dcmread(DicomBytesIO(twin if twin is not None else data))
        image, info = render(ds)
        png = name[:-4] + ".png"
        Image.fromarray(image, "L" if image.ndim == 2 else "RGB").save(OUT / png, optimize=True)
        reference[name] = {"what": what, "png": png, "mismatch": twin is not None, **info}
        print(name, image.shape, what)
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    name, data, choices = window_cases()
    (OUT / name).write_bytes(data)
    ds = pydicom.dcmread(DicomBytesIO(data))
    windows = []
    for choice, window in choices:
        image, _ = render(ds, window=window)
        png = f"{name[:-4]}.voi_{str(choice).replace(',', '_')}.png"
        Image.fromarray(image, "L").save(OUT / png, optimize=True)
        windows.append({"choice": choice, "window": window, "png": png})
    (OUT / "windows.json").write_text(json.dumps({"file": name, "renderings": windows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
