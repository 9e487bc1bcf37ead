#!/usr/bin/env python3
"""Generated DICOM files and pydicom's renderings of them, for tests/dicom_differential.rs.

Writes a deterministic set (fixed seed) of small files over the parameter space
of the Rust fuzz generator (fuzz/src/dicom_gen.rs, `DicomParams`: the same
parameter names, and the same enum value names), each written by pydicom
itself: `dcmwrite` for native data (implicit/explicit VR little endian,
explicit VR big endian, and deflated), `Dataset.compress(RLELossless)` for RLE,
`Dataset.compress(JPEG2000Lossless / JPEG2000)` (pylibjpeg-openjpeg) for JPEG
2000, Pillow's baseline JPEG and a small process-14 encoder below
(`jpeg_lossless`) encapsulated with `pydicom.encaps.encapsulate` for JPEG. Then
pydicom reads each file back and renders it with `render` of
tests/reference/dicom_reference.py (the README's rendering rule, not
restated here). A file pydicom refuses to decode or render is recorded as
refused; the Rust decoder must then return an error.

Also checks, for the parameters where it can, that pydicom decodes the stored
values the generator meant to write (`stored_ok`): a file where it does not is
still kept, and flagged.

Kept out of the set, because pydicom 3.0 gets them wrong or cannot write them:
16-bit RLE with at most 8 bits stored (pydicom cannot decode its own encoding),
YBR with more than 8 bits or signed (no colour conversion), JPEG 2000 under 32
pixels a side (openjpeg's 6 resolution levels), Rescale Slope 0 (the rule in
dicom_reference.py reads it as 1). Worked around: pydicom's `apply_color_lut`
reads palette LUT data as little endian in big endian files (`read` swaps it).
Rust-only parameters (extras, deflate_mode, codec options, unpadded odd lengths)
keep their default here.

Setup (outside the repository; needs only package registries):
    python3 -m venv /work/venv-dicom
    /work/venv-dicom/bin/pip install "pydicom==3.0.*" numpy pillow \\
        pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg
Run from the repository root:
    /work/venv-dicom/bin/python tests/reference/dicom_generate.py
Writes tests/dicom/generated/*.dcm and tests/dicom/generated/reference.json.
"""

import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_reference import render  # noqa: E402  (the README's rendering rule)

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "tests" / "dicom" / "generated"
SEED = 20261128
COUNT = 320

# The enum values of fuzz/src/dicom_gen.rs and their UIDs / names.
TRANSFER_SYNTAXES = {
    "ImplicitVrLittleEndian": ImplicitVRLittleEndian,
    "ExplicitVrLittleEndian": ExplicitVRLittleEndian,
    "ExplicitVrBigEndian": ExplicitVRBigEndian,
    "DeflatedExplicitVrLittleEndian": DeflatedExplicitVRLittleEndian,
    "RleLossless": RLELossless,
    "JpegBaseline": JPEGBaseline8Bit,
    "JpegLossless": JPEGLossless,
    "JpegLosslessSv1": JPEGLosslessSV1,
    "Jpeg2000Lossless": JPEG2000Lossless,
    "Jpeg2000": JPEG2000,
}
PHOTOMETRIC = {
    "Monochrome1": "MONOCHROME1",
    "Monochrome2": "MONOCHROME2",
    "Rgb": "RGB",
    "YbrFull": "YBR_FULL",
    "YbrFull422": "YBR_FULL_422",
    "PaletteColor": "PALETTE COLOR",
}
PATTERNS = ["Ramp", "Random", "Constant", "Extremes"]
# How many files of each transfer syntax (the rest of COUNT: native ones).
WEIGHTS = {
    "ImplicitVrLittleEndian": 5,
    "ExplicitVrLittleEndian": 5,
    "ExplicitVrBigEndian": 5,
    "DeflatedExplicitVrLittleEndian": 3,
    "RleLossless": 4,
    "JpegBaseline": 1,
    "JpegLossless": 1,
    "JpegLosslessSv1": 1,
    "Jpeg2000Lossless": 2,
    "Jpeg2000": 1,
}
SLOPES = [1.0, 0.5, 2.0, 0.25, 1.5, 3.0, -1.0, 0.001, 100.0]
INTERCEPTS = [0.0, -1024.0, 1000.0, -0.5, 7.25, 32768.0, -32768.0]


def choose(rng, values):
    return values[int(rng.integers(len(values)))]


def decimal(rng, span):
    return float(int(rng.integers(-span, span + 1))) / choose(rng, [1.0, 1.0, 2.0, 4.0, 10.0])


def draw(rng, index):
    """One file's parameters (the names of DicomParams), consistent with
    each other as `DicomParams::make_conform` makes them, within what pydicom
    writes and decodes."""
    names = list(WEIGHTS)
    ts = names[int(rng.choice(len(names), p=np.array(list(WEIGHTS.values())) / sum(WEIGHTS.values())))]
    encapsulated = ts not in ("ImplicitVrLittleEndian", "ExplicitVrLittleEndian", "ExplicitVrBigEndian",
                              "DeflatedExplicitVrLittleEndian")
    pi = choose(rng, list(PHOTOMETRIC))
    if ts == "RleLossless" and pi == "YbrFull422":
        pi = "YbrFull"  # pydicom's RLE encoder takes full-resolution samples only
    if ts.startswith("Jpeg2000") and pi in ("YbrFull", "YbrFull422"):
        pi = "Rgb"  # openjpeg compresses RGB (YBR_RCT/ICT when the MCT is on)
    if ts == "JpegBaseline" and pi in ("Rgb", "YbrFull422", "PaletteColor"):
        pi = "YbrFull"  # Pillow converts colour to YCbCr 4:4:4 (and says so in JFIF)
    samples = 3 if pi in ("Rgb", "YbrFull", "YbrFull422") else 1
    colour = samples == 3
    p = {
        "transfer_syntax": ts,
        "preamble": True,
        "rows": int(rng.integers(1, 13)),
        "columns": int(rng.integers(1, 13)),
        "frames": int(rng.integers(2, 4)) if rng.random() < 0.25 else 1,
        "number_of_frames_element": bool(rng.random() < 0.5),
        "samples_per_pixel": samples,
        "bits_allocated": 8 if rng.random() < 0.5 else 16,
        "pixel_representation": int(rng.random() < 0.5),
        "photometric_interpretation": pi,
        "planar_configuration": int(rng.random() < 0.5) if colour and not encapsulated else 0,
        "pixel_vr": "OB" if rng.random() < 0.5 else "OW",
        "rescale_slope": None,
        "rescale_intercept": None,
        "window_center": None,
        "window_width": None,
        "second_window": bool(rng.random() < 0.3),
        "palette": None,
        "pixel_pattern": choose(rng, PATTERNS),
        "pixel_seed": int(rng.integers(0, 2**32)),
        "high_bits_garbage": bool(rng.random() < 0.25),
        "pixel_data_delta": 0,
        "odd_length_padding": True,
        "extras": [],
        "conform": True,
    }
    if colour or pi == "PaletteColor":
        p["pixel_representation"] = 0
    if pi in ("YbrFull", "YbrFull422"):
        p["bits_allocated"] = 8  # pydicom converts 8-bit YBR only
    if pi == "YbrFull422" and not encapsulated:
        p["columns"] += p["columns"] % 2
        p["planar_configuration"] = 0  # PS3.3 C.7.6.3.1.3: YBR_FULL_422 is colour-by-pixel
    if ts == "JpegBaseline":
        p["bits_allocated"], p["pixel_representation"] = 8, 0
    if ts.startswith("Jpeg2000") and colour:
        p["bits_allocated"] = 8
    if ts.startswith("Jpeg2000"):
        # openjpeg encodes with 6 resolution levels: at least 32 pixels a side.
        p["rows"], p["columns"], p["frames"] = int(rng.integers(32, 37)), int(rng.integers(32, 37)), 1
    ba = p["bits_allocated"]
    if ts in ("JpegLossless", "JpegLosslessSv1"):
        # libjpeg gives 8-bit samples for precision <= 8, 16-bit ones above.
        bs = int(rng.integers(2, 9)) if ba == 8 else int(rng.integers(9, 17))
    elif ts == "JpegBaseline":
        bs = 8
    elif rng.random() < 0.4:
        bs = ba
    elif ts == "RleLossless" and ba == 16:
        bs = int(rng.integers(9, 17))  # pydicom 3.0 cannot decode its own 16-bit RLE of <= 8 bits stored
    else:
        bs = int(rng.integers(1 if ts != "Jpeg2000Lossless" and ts != "Jpeg2000" else 2, ba + 1))
    if ts == "JpegBaseline" or (ts.startswith("Jpeg2000") and colour):
        bs = 8
    p["bits_stored"] = bs
    # High Bit is Bits Stored - 1 in a conforming file; sometimes not (a reader
    # takes Bits Stored, from bit 0).
    p["high_bit"] = bs - 1 if rng.random() < 0.85 else int(rng.integers(bs - 1, ba))
    if encapsulated:
        p["high_bits_garbage"] = False  # the encoders check the values' range
    if ts in ("JpegLossless", "JpegLosslessSv1"):
        p["pixel_representation"] = 0 if colour else p["pixel_representation"]
        p["jpeg_predictor"] = 1 if ts == "JpegLosslessSv1" else int(rng.integers(1, 8))
    if not colour and pi != "PaletteColor":
        if rng.random() < 0.5:
            p["rescale_slope"] = choose(rng, SLOPES)
            p["rescale_intercept"] = choose(rng, INTERCEPTS)
        if rng.random() < 0.5:
            p["window_center"] = decimal(rng, 70000) if rng.random() < 0.3 else decimal(rng, 2 ** bs)
            p["window_width"] = max(1.0, abs(decimal(rng, 2 ** (bs + 1))))
    if pi == "PaletteColor":
        entries = choose(rng, [256, 2 ** min(bs, 12), int(rng.integers(1, 300))])
        p["palette"] = {
            "entries": int(entries),
            "first_mapped": 0 if rng.random() < 0.6 else int(rng.integers(0, 2 ** bs)),
            "bits": 8 if rng.random() < 0.5 else 16,
            "descriptor_ss": False,
            "packed_8bit": False,
            "seed": int(rng.integers(0, 2**32)),
        }
    # A few raw data sets (no preamble, no meta: implicit VR little endian).
    if index % 40 == 7:
        p["transfer_syntax"] = "ImplicitVrLittleEndian"
        p["preamble"] = False
    # Pixel data a few bytes short (refused) or long (ignored), native only.
    if not encapsulated and rng.random() < 0.08:
        p["pixel_data_delta"] = int(choose(rng, [-4, -2, 1, 2, 4]))  # -1 would be padded back
    return p


def field_case_params(index):
    """Explicit VR big endian, 8-bit RGB, OW, odd length: the field case
    /work/shared/field-cases/be_rgb8_ow_3x3.dcm and its neighbours."""
    rows, columns = [(3, 3), (3, 5), (5, 3), (1, 1), (7, 1), (3, 3)][index % 6]
    return {
        "transfer_syntax": "ExplicitVrBigEndian",
        "preamble": True,
        "rows": rows,
        "columns": columns,
        "frames": 1 if index % 3 else 3,
        "number_of_frames_element": False,
        "samples_per_pixel": 3 if index % 4 != 3 else 1,
        "bits_allocated": 8,
        "bits_stored": 8,
        "high_bit": 7,
        "pixel_representation": 0,
        "photometric_interpretation": "Rgb" if index % 4 != 3 else "Monochrome2",
        "planar_configuration": index % 2 if index % 4 != 3 else 0,
        "pixel_vr": "OW",
        "rescale_slope": None,
        "rescale_intercept": None,
        "window_center": None,
        "window_width": None,
        "second_window": False,
        "palette": None,
        "pixel_pattern": "Ramp" if index % 2 == 0 else "Random",
        "pixel_seed": 1000 + index,
        "high_bits_garbage": False,
        "pixel_data_delta": 0,
        "odd_length_padding": True,
        "extras": [],
        "conform": True,
    }


def stored_values(p):
    """Stored values (signed when Pixel Representation is 1) and the bit
    patterns written, frames × rows × columns × samples."""
    rng = np.random.default_rng(p["pixel_seed"])
    bits, signed = p["bits_stored"], p["pixel_representation"] == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    shape = (p["frames"], p["rows"], p["columns"], p["samples_per_pixel"])
    n = int(np.prod(shape))
    per_frame = n // p["frames"]
    pattern = p["pixel_pattern"]
    if pattern == "Ramp":
        i = np.arange(n)
        k = (i % per_frame + (i // per_frame) * 7) % max(per_frame, 2)
        v = lo + (hi - lo) * k // max(per_frame - 1, 1)
    elif pattern == "Random":
        v = rng.integers(lo, hi + 1, size=n)
    elif pattern == "Constant":
        v = np.full(n, lo + p["pixel_seed"] % (hi - lo + 1))
    else:
        v = np.where((np.arange(n) // p["samples_per_pixel"]) % 2 == 0, lo, hi)
    v = v.astype(np.int64).reshape(shape)
    raw = v & (2**bits - 1)
    if p["high_bits_garbage"] and bits < p["bits_allocated"]:
        raw = raw | (rng.integers(0, 2 ** (p["bits_allocated"] - bits), size=shape) << bits)
    return v, raw


def palette_tables(pal):
    tables = []
    n = pal["entries"] or 65536
    for i in range(3):
        rng = np.random.default_rng(pal["seed"] + i)
        base = (np.arange(n) * (i + 1) * 65535 // max(n, 2)) % 65536
        words = (base ^ (rng.integers(0, 2**16, size=n) & 0x0F0F)).astype(np.uint16)
        tables.append(words >> 8 if pal["bits"] == 8 else words)
    return tables


def native_bytes(p, raw, big_endian):
    frames, rows, columns, samples = raw.shape
    if p["photometric_interpretation"] == "YbrFull422":
        # Y1 Y2 Cb Cr for each pair of pixels (the pair's first chroma).
        flat = raw.reshape(frames, rows * columns, 3).astype(np.uint8)
        pairs = flat.reshape(frames, -1, 2, 3)
        out = np.stack([pairs[:, :, 0, 0], pairs[:, :, 1, 0], pairs[:, :, 0, 1], pairs[:, :, 0, 2]], axis=-1)
        return out.tobytes()
    if p["planar_configuration"] == 1 and samples > 1:
        raw = raw.transpose(0, 3, 1, 2)
    if p["bits_allocated"] == 8:
        data = raw.astype(np.uint8).tobytes()
        if big_endian and p["pixel_vr"] == "OW":
            # 16-bit words in big endian: each byte pair swapped (the field case).
            if len(data) % 2:
                data += b"\0"
            data = np.frombuffer(data, "<u2").astype(">u2").tobytes()
        return data
    return raw.astype(">u2" if big_endian else "<u2").tobytes()


def jpeg_lossless(frame, precision, predictor):
    """A process-14 JPEG (SOF3, Huffman) of one frame (rows × columns ×
    samples, unsigned), as fuzz/src/dicom_gen.rs writes it."""
    rows, columns, samples = frame.shape
    counts = [0] * 16
    counts[3], counts[4], counts[5] = 15, 1, 1
    codes, code, k = {}, 0, 0
    for length, n in enumerate(counts, start=1):
        for _ in range(n):
            codes[k] = (code, length)
            code, k = code + 1, k + 1
        code <<= 1
    bits = []

    def put(value, length):
        bits.extend((value >> i) & 1 for i in range(length - 1, -1, -1))

    x = frame.astype(np.int64)
    for r in range(rows):
        for c in range(columns):
            for s in range(samples):
                if r == 0 and c == 0:
                    pred = 1 << (precision - 1)
                elif r == 0:
                    pred = x[r, c - 1, s]
                elif c == 0:
                    pred = x[r - 1, c, s]
                else:
                    ra, rb, rc = x[r, c - 1, s], x[r - 1, c, s], x[r - 1, c - 1, s]
                    pred = [ra, rb, rc, ra + rb - rc, ra + ((rb - rc) >> 1), rb + ((ra - rc) >> 1),
                            (ra + rb) >> 1][predictor - 1]
                d = int(x[r, c, s] - pred) & 0xFFFF
                if d > 32768:
                    d -= 65536
                cat = abs(d).bit_length()
                put(*codes[cat])
                if 0 < cat < 16:
                    put((d - 1 if d < 0 else d) & ((1 << cat) - 1), cat)
    bits.extend([1] * (-len(bits) % 8))
    entropy = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i:i + 8])), 2)
        entropy.append(byte)
        if byte == 0xFF:
            entropy.append(0)

    def segment(marker, body):
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    out = b"\xff\xd8"
    out += segment(0xC4, bytes([0x00]) + bytes(counts) + bytes(range(17)))
    sof = bytes([precision]) + rows.to_bytes(2, "big") + columns.to_bytes(2, "big") + bytes([samples])
    sof += b"".join(bytes([i + 1, 0x11, 0]) for i in range(samples))
    out += segment(0xC3, sof)
    sos = bytes([samples]) + b"".join(bytes([i + 1, 0]) for i in range(samples)) + bytes([predictor, 0, 0])
    out += segment(0xDA, sos)
    return out + bytes(entropy) + b"\xff\xd9"


def jpeg_baseline(frame):
    """Pillow's baseline JPEG (quality 95, no chroma subsampling)."""
    from PIL import Image

    rows, columns, samples = frame.shape
    image = Image.fromarray(frame[:, :, 0].astype(np.uint8), "L") if samples == 1 else Image.fromarray(
        frame.astype(np.uint8), "RGB")
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def write(p, path):
    """Writes the file with pydicom; returns the stored values written."""
    ts = TRANSFER_SYNTAXES[p["transfer_syntax"]]
    pi = PHOTOMETRIC[p["photometric_interpretation"]]
    values, raw = stored_values(p)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{1000 + int(path.stem[1:4])}"
    ds.Modality = "OT"
    ds.BodyPartExamined = "CHEST"
    ds.SamplesPerPixel = p["samples_per_pixel"]
    ds.PhotometricInterpretation = pi
    if p["samples_per_pixel"] > 1:
        ds.PlanarConfiguration = p["planar_configuration"]
    if p["frames"] > 1 or p["number_of_frames_element"]:
        ds.NumberOfFrames = p["frames"]
    ds.Rows, ds.Columns = p["rows"], p["columns"]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = p["bits_allocated"], p["bits_stored"], p["high_bit"]
    ds.PixelRepresentation = p["pixel_representation"]
    if p["window_center"] is not None:
        c, w = p["window_center"], p["window_width"]
        ds.WindowCenter = [c, c * 2 + 1] if p["second_window"] else c
        ds.WindowWidth = [w, w * 2 + 1] if p["second_window"] else w
    if p["rescale_slope"] is not None:
        ds.RescaleIntercept = p["rescale_intercept"]
        ds.RescaleSlope = p["rescale_slope"]
    if p["palette"]:
        pal = p["palette"]
        descriptor = [pal["entries"], pal["first_mapped"], pal["bits"]]
        for channel, table in zip(("Red", "Green", "Blue"), palette_tables(pal)):
            setattr(ds, f"{channel}PaletteColorLookupTableDescriptor", descriptor)
            ds[f"{channel}PaletteColorLookupTableData"] = pydicom.DataElement(
                f"{channel}PaletteColorLookupTableData", "OW", table.astype("<u2").tobytes())
    big = ts == ExplicitVRBigEndian
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if not ts.is_encapsulated:
        data = native_bytes(p, raw, big)
        delta = p["pixel_data_delta"]
        data = data[:delta] if delta < 0 else data + b"\xab" * delta
        ds.PixelData = data
        ds["PixelData"].VR = p["pixel_vr"]
        if big:
            # pydicom keeps PixelData bytes as they are: written in big endian above.
            for tag in [t for t in ds.keys() if ds[t].VR == "OW" and t != 0x7FE00010]:
                ds[tag].value = np.frombuffer(ds[tag].value, "<u2").astype(">u2").tobytes()
    elif ts == RLELossless:
        arr = values if p["frames"] > 1 else values[0]
        arr = arr[..., 0] if p["samples_per_pixel"] == 1 else arr
        signed = p["pixel_representation"] == 1
        dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[
            (p["bits_allocated"], signed)]
        ds.compress(RLELossless, arr.astype(dtype), encoding_plugin="pydicom", generate_instance_uid=False)
    elif ts in (JPEG2000Lossless, JPEG2000):
        arr = values if p["frames"] > 1 else values[0]
        arr = arr[..., 0] if p["samples_per_pixel"] == 1 else arr
        signed = p["pixel_representation"] == 1
        dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[
            (p["bits_allocated"], signed)]
        kwargs = {"use_mct": False} if p["samples_per_pixel"] == 3 else {}
        if ts == JPEG2000:
            kwargs["j2k_psnr"] = [80]
        ds.compress(ts, arr.astype(dtype), encoding_plugin="pylibjpeg", generate_instance_uid=False, **kwargs)
    else:
        frames = [raw[f] for f in range(p["frames"])]
        if ts == JPEGBaseline8Bit:
            streams = [jpeg_baseline(f) for f in frames]
        else:
            streams = [jpeg_lossless(f, p["bits_stored"], p["jpeg_predictor"]) for f in frames]
        ds.PixelData = encapsulate(streams)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    if p["preamble"]:
        ds.preamble = b"\0" * 128
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    return values


def read(path):
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.get("file_meta", {}):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    if not ds.is_little_endian:
        # pydicom 3.0 `apply_color_lut` reads (non-segmented) LUT data as
        # little endian whatever the data set's byte order: give it the words
        # in little endian (the values do not change).
        for channel in ("Red", "Green", "Blue"):
            keyword = f"{channel}PaletteColorLookupTableData"
            if keyword in ds:
                ds[keyword].value = np.frombuffer(ds[keyword].value, ">u2").astype("<u2").tobytes()
    return ds


def main():
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.dcm"):
        old.unlink()
    rng = np.random.default_rng(SEED)
    entries = []
    unwritable = {}
    for i in range(COUNT):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # A draw the writers refuse (openjpeg and images smaller than its
            # default resolution levels, …) is drawn again.
            for _ in range(50):
                p = field_case_params(i) if i < 12 else draw(rng, i)
                name = f"g{i:03d}_{p['transfer_syntax']}_{p['photometric_interpretation']}.dcm"
                path = OUT_DIR / name
                try:
                    values = write(p, path)
                    break
                except Exception as e:
                    key = f"{p['transfer_syntax']}: {type(e).__name__}: {str(e).splitlines()[-1][:120]}"
                    unwritable[key] = unwritable.get(key, 0) + 1
                    path.unlink(missing_ok=True)
            else:
                raise SystemExit(f"no writable parameters for file {i}: {unwritable}")
            entry = {"name": name, "params": p}
            ds = read(path)
            try:
                image, info = render(ds)
                entry["shape"] = list(image.shape)
                entry["rgb"] = image.tobytes().hex()
                entry["frame"] = info["frame"]
            except Exception as e:  # pydicom refuses: the Rust decoder must too
                entry["refused"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            # Does pydicom read back the stored values meant?
            if "refused" not in entry and p["photometric_interpretation"] not in ("YbrFull422",) and \
                    p["transfer_syntax"] not in ("JpegBaseline", "Jpeg2000"):
                try:
                    got = pydicom.pixels.pixel_array(ds, raw=True)
                    want = values if p["frames"] > 1 else values[0]
                    want = want[..., 0] if p["samples_per_pixel"] == 1 else want
                    entry["stored_ok"] = bool(got.shape == want.shape and np.array_equal(got, want))
                except Exception as e:
                    entry["stored_ok"] = False
                    entry["stored_error"] = str(e)[:200]
        entries.append(entry)
    refused = sum("refused" in e for e in entries)
    reference = {
        "generator": "tests/reference/dicom_generate.py",
        "seed": SEED,
        "pydicom": pydicom.__version__,
        "numpy": np.__version__,
        "files": entries,
    }
    (OUT_DIR / "reference.json").write_text(json.dumps(reference, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(entries)} files in {OUT_DIR.relative_to(ROOT)}: {len(entries) - refused} rendered, "
          f"{refused} refused by pydicom, {sum(e.get('stored_ok') is False for e in entries)} with stored values "
          "that pydicom reads differently")
    for key, n in sorted(unwritable.items()):
        print(f"  drawn again {n} time(s): {key}")


if __name__ == "__main__":
    main()
