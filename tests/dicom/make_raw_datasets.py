#!/usr/bin/env python3
"""DICOM files without the Part 10 preamble, and big endian 8-bit OW pixel data
with frames of odd length, made with pydicom from the committed test files,
with pydicom's own renderings as references (for tests/dicom.rs).

Files without the 128-byte preamble and "DICM" are what old ACR-NEMA style
files and raw data set exports look like; pydicom reads them with
``dcmread(force=True)`` (and dcmtk by default), and so must we when the bytes
start with a plausible group 0008 element (or a file meta element):

  MR_small_implicit_raw.dcm   MR_small's data set, implicit VR little endian,
                              no preamble and no file meta information
  CT_small_explicit_raw       CT_small's data set, explicit VR little endian,
                              no file meta, and no extension (found by content)
  SC_rgb_acr_nema             SC_rgb's data set as an ACR-NEMA style file:
                              implicit VR little endian, group lengths
                              (0008,0000)... first, Recognition Code
                              "ACR-NEMA 2.0", no extension
  MR_small_bigendian_nopreamble
                              MR_small_bigendian.dcm without its preamble and
                              "DICM": the file meta group at byte 0
  be_rgb8_ow_3x3x2.dcm        explicit VR big endian, 8-bit RGB 3x3, 2 frames,
                              Pixel Data OW: 54 bytes whose byte pairs are
                              swapped on the wire (PS3.5 7.3), so frame 1
                              starts inside a swapped word
  be_grey8_ow_5x3x3.dcm       the same with MONOCHROME2 5x3, 3 frames: 45 bytes
                              padded to 46

Setup (outside the repository; needs only package registries):
    python3 -m venv /tmp/venv-dicom
    /tmp/venv-dicom/bin/pip install "pydicom==3.0.*" numpy pillow
Run from the repository root:
    /tmp/venv-dicom/bin/python tests/dicom/make_raw_datasets.py
Writes tests/dicom/raw/<name>, tests/dicom/raw/<name>.png (pydicom + numpy
rendering of the default frame, by tests/reference/dicom_reference.py's
rules), <name>.frame0.png for multi-frame files, and tests/dicom/raw/raw.json
(what pydicom read).
"""

import io
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "tests" / "dicom" / "files"
OUT = ROOT / "tests" / "dicom" / "raw"
sys.path.insert(0, str(ROOT / "tests" / "reference"))
from dicom_reference import render  # noqa: E402


def encode(ds, implicit, little=True):
    """The data set's elements as bytes, without preamble or file meta."""
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    return fp.getvalue()


def without_meta(name):
    ds = pydicom.dcmread(FILES / name)
    ds.file_meta = FileMetaDataset()
    return ds


def with_group_lengths(ds):
    """The data set in implicit VR little endian with a group length
    (gggg,0000) before each group, as ACR-NEMA files carry them (pydicom no
    longer writes them itself, so they are encoded here)."""
    out = b""
    for group in sorted({tag.group for tag in ds.keys()}):
        part = Dataset()
        for elem in ds:
            if elem.tag.group == group and elem.tag.element != 0:
                part.add(elem)
        body = encode(part, implicit=True)
        out += struct.pack("<HHII", group, 0x0000, 4, len(body)) + body
    return out


def big_endian_ow(name, photometric, rows, columns, frames):
    """An explicit VR big endian file of 8-bit samples in an OW Pixel Data value,
    its byte pairs swapped on the wire (pydicom writes OW bytes unchanged and
    swaps them back when reading, so the value is given swapped)."""
    samples = 3 if photometric == "RGB" else 1
    count = rows * columns * samples * frames
    pixels = (np.arange(count, dtype=np.int64) * 9 % 256).astype(np.uint8).tobytes()
    padded = pixels + b"\0" * (len(pixels) % 2)
    swapped = bytearray(len(padded))
    swapped[0::2], swapped[1::2] = padded[1::2], padded[0::2]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[name])
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.NumberOfFrames = frames
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.add_new((0x7FE0, 0x0010), "OW", bytes(swapped))
    return ds


class OneFrame:
    """Frame `index` of a multi-frame data set, as a single-frame one for render()."""

    def __init__(self, ds, index):
        self._ds, self._index = ds, index

    def __getattr__(self, name):
        return getattr(self._ds, name)

    def __contains__(self, key):
        return key in self._ds

    def get(self, key, default=None):
        return 1 if key == "NumberOfFrames" else self._ds.get(key, default)

    @property
    def pixel_array(self):
        return self._ds.pixel_array[self._index]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    made = {}

    ds = without_meta("MR_small.dcm")
    made["MR_small_implicit_raw.dcm"] = encode(ds, implicit=True)

    ds = without_meta("CT_small.dcm")
    made["CT_small_explicit_raw"] = encode(ds, implicit=False)

    ds = without_meta("SC_rgb.dcm")
    ds.add_new((0x0008, 0x0010), "SH", "ACR-NEMA 2.0")  # Recognition Code (retired)
    made["SC_rgb_acr_nema"] = with_group_lengths(ds)

    part10 = (FILES / "MR_small_bigendian.dcm").read_bytes()
    assert part10[128:132] == b"DICM"
    made["MR_small_bigendian_nopreamble"] = part10[132:]

    for name, args in {
        "be_rgb8_ow_3x3x2.dcm": ("RGB", 3, 3, 2),
        "be_grey8_ow_5x3x3.dcm": ("MONOCHROME2", 3, 5, 3),
    }.items():
        fp = io.BytesIO()
        big_endian_ow(name, *args).save_as(fp, enforce_file_format=True, little_endian=False, implicit_vr=False)
        made[name] = fp.getvalue()

    summary = {}
    for name, data in made.items():
        path = OUT / name
        path.write_bytes(data)
        # What pydicom makes of the bytes: dcmread(force=True) guesses the
        # encoding of a data set without file meta information.
        ds = pydicom.dcmread(path, force=True)
        preamble = data[128:132] == b"DICM"
        ts = ds.file_meta.get("TransferSyntaxUID")
        if ts is None:
            implicit, little = ds.original_encoding
            ts = ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            # pixel_array needs the transfer syntax; it is the one pydicom read with.
            ds.file_meta.TransferSyntaxUID = ts
        assert not preamble or name.startswith("be_"), name
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        entry = {
            "transfer_syntax": str(ts),
            "transfer_syntax_name": UID(ts).name,
            "rows": int(ds.Rows),
            "columns": int(ds.Columns),
            "frames": frames,
            "modality": ds.get("Modality") or None,
            "body_part": ds.get("BodyPartExamined") or None,
            "first_bytes": data[:8].hex(" "),
        }
        image, info = render(ds)
        entry.update(info)
        mode = "L" if image.ndim == 2 else "RGB"
        Image.fromarray(image, mode).save(OUT / f"{name.removesuffix('.dcm')}.png", optimize=True)
        if frames > 1:
            frame0, _ = render(OneFrame(ds, 0))
            Image.fromarray(frame0, mode).save(OUT / f"{name.removesuffix('.dcm')}.frame0.png", optimize=True)
            # The pixels this file was made from, in stored order.
            entry["first_samples"] = ds.pixel_array.reshape(-1)[:12].tolist()
        summary[name] = entry
        print(f"{name}: {entry['transfer_syntax_name']}, {entry['columns']}x{entry['rows']}x{frames}, {entry['first_bytes']}")
    (OUT / "raw.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
