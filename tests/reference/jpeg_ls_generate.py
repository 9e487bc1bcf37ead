#!/usr/bin/env python3
"""JPEG-LS test streams and CharLS's decoding of them, for tests/jpeg_ls.rs.

CharLS (the JPEG-LS library pydicom 3 uses, through the `pyjpegls` package)
encodes small synthetic images and decodes the streams; our decoder must give
exactly CharLS's samples. The encoder is called through CharLS's C API
(`JpegLsEncode`, exported by pyjpegls's extension module) so that preset coding
parameters and the HP colour transforms can be chosen; streams with restart
markers are made by joining independently encoded bands of lines (each restart
interval starts afresh, T.87) and kept only where CharLS decodes the joined
stream to the original image.

Setup (outside the repository; package registries only):
    python3 -m venv /work/venv-jpegls
    /work/venv-jpegls/bin/pip install pydicom==3.0.2 pydicom-data==1.0.0 pyjpegls==1.5.1 numpy pillow
Run from the repository root:
    /work/venv-jpegls/bin/python tests/reference/jpeg_ls_generate.py

Writes tests/jpeg_ls/:
  cases/<name>.jls      a JPEG-LS stream
  cases/<name>.u16      CharLS's decoded samples: little-endian u16, row by row,
                        the components of a pixel together
  dicom/<name>.dcm      DICOM files wrapping some of the streams (made with pydicom),
                        and pydicom 3.0.2's own JPEG-LS test files (MIT licence,
                        see tests/dicom/files/README.md), copied unchanged
  dicom/<name>.png      the README's rendering rule applied by numpy to pydicom's
                        `pixel_array` (decoded by pyjpegls), as in dicom_reference.py
  dicom/<name>.fN.jls    frame N's codestream
  dicom/<name>.fN.u8|u16|i16  pydicom's pixel_array of it (after its sign
                        correction), little-endian, in the smallest type that holds it
  manifest.json         every case: size, components, precision, NEAR,
                        interleave mode, what it exercises
"""

import ctypes
import glob
import json
import os
import shutil
import sys
from pathlib import Path

import jpeg_ls
import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import pixel_array
from pydicom.uid import UID, JPEGLSLossless, JPEGLSNearLossless, generate_uid

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "jpeg_ls"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_reference import render  # noqa: E402  (the README's rule, shared)

# ------------------------------------------------------------------ CharLS API

_SO = glob.glob(os.path.join(os.path.dirname(jpeg_ls.__file__), "..", "_CharLS*.so"))[0]
_LIB = ctypes.CDLL(_SO)
_I = ctypes.c_int32


class _Preset(ctypes.Structure):
    _fields_ = [(n, _I) for n in ("maxval", "t1", "t2", "t3", "reset")]


class _Jfif(ctypes.Structure):
    _fields_ = [(n, _I) for n in ("version", "units", "xd", "yd", "xt", "yt")] + [("thumb", ctypes.c_void_p)]


class _Params(ctypes.Structure):
    # CharLS 2.x's JlsParameters (charls/public_types.h, the legacy API).
    _fields_ = [(n, _I) for n in ("width", "height", "bits", "stride", "components", "near")] + [
        ("ilv", ctypes.c_int),
        ("ct", ctypes.c_int),
        ("bgr", ctypes.c_char),
        ("custom", _Preset),
        ("jfif", _Jfif),
    ]


def encode(arr, bits, ilv=0, near=0, ct=0, preset=(0, 0, 0, 0, 0)):
    """CharLS's JPEG-LS stream of `arr` (rows x columns [x components])."""
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    dtype = np.uint8 if bits <= 8 else np.uint16
    src = arr.transpose(2, 0, 1) if (c > 1 and ilv == 0) else arr
    raw = np.ascontiguousarray(src).astype("<" + np.dtype(dtype).str[1:]).tobytes()
    p = _Params(width=w, height=h, bits=bits, stride=0, components=c, near=near, ilv=ilv, ct=ct, custom=_Preset(*preset))
    dst = ctypes.create_string_buffer(len(raw) * 2 + 4096)
    written = ctypes.c_size_t(0)
    msg = ctypes.create_string_buffer(256)
    err = _LIB.JpegLsEncode(dst, ctypes.c_size_t(len(dst)), ctypes.byref(written), raw, ctypes.c_size_t(len(raw)), ctypes.byref(p), msg)
    if err:
        raise RuntimeError(f"CharLS encode: {msg.value.decode()}")
    return dst.raw[: written.value]


def decode(stream):
    """CharLS's samples of a stream, as an array rows x columns x components."""
    buf, info = jpeg_ls.decode_pixel_data(stream)
    h, w, c, bits = info["height"], info["width"], info["components"], info["bits_per_sample"]
    arr = np.frombuffer(bytes(buf), np.uint8 if bits <= 8 else "<u2")
    if c > 1 and info["interleave_mode"] == 0:
        return arr.reshape(c, h, w).transpose(1, 2, 0)
    return arr.reshape(h, w, c)


# ---------------------------------------------------------------------- images


def image(h, w, c, bits, seed, maxval=None):
    """Smooth ramps with noise (regular mode), flat areas with a few
    interruptions (run mode), uniform noise (escape codes) and extremes."""
    top = (1 << bits) - 1 if maxval is None else maxval
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = np.empty((h, w, c), np.int64)
    for k in range(c):
        ramp = (x * (k + 1) * 3 + y * 5) * top / max(1, 3 * (w + h) * (k + 1))
        v = ramp + rng.normal(0, max(1.0, top / 60), (h, w))
        band = (y >= h // 3) & (y < 2 * h // 3)
        v[band] = top // 3
        spots = rng.random_sample((h, w)) < 0.03
        v[band & spots] = rng.randint(0, top + 1, (h, w))[band & spots]
        noisy = y >= 2 * h // 3
        v[noisy] = rng.randint(0, top + 1, (h, w))[noisy]
        v[0, : min(w, 3)] = [0, top, 0][: min(w, 3)]
        out[:, :, k] = np.clip(np.rint(v), 0, top)
    return out if c > 1 else out[:, :, 0]


# -------------------------------------------------------------------- restarts


def segments(stream):
    """(marker, start, end) of each marker segment up to the first SOS, and the
    offset where the SOS's entropy-coded data starts."""
    pos, out = 2, []
    while True:
        assert stream[pos] == 0xFF
        marker = stream[pos + 1]
        length = int.from_bytes(stream[pos + 2 : pos + 4], "big")
        out.append((marker, pos, pos + 2 + length))
        pos += 2 + length
        if marker == 0xDA:
            return out, pos


def with_restarts(arr, bits, interval, **kw):
    """A stream with restart interval `interval` (lines), joined from bands
    encoded independently; one scan (grey, or line/sample interleaved)."""
    h = arr.shape[0]
    bands = [encode(arr[r : r + interval], bits, **kw) for r in range(0, h, interval)]
    first, data_at = segments(bands[0])
    head = bytearray(b"\xff\xd8")
    for marker, start, end in first:
        seg = bytearray(bands[0][start:end])
        if marker == 0xF7:  # SOF55: the whole height
            seg[5:7] = h.to_bytes(2, "big")
        if marker == 0xDA:
            head += b"\xff\xdd\x00\x04" + interval.to_bytes(2, "big")
        head += seg
    out = head
    for i, band in enumerate(bands):
        _, at = segments(band)
        assert band.endswith(b"\xff\xd9")
        out += band[at:-2]
        if i + 1 < len(bands):
            out += bytes([0xFF, 0xD0 + i % 8])
    return bytes(out + b"\xff\xd9")


# ----------------------------------------------------------------------- cases

CASES = []
# Cases where CharLS's decoder does not return what its encoder was given (kept:
# the reference is what CharLS decodes, and `charls_roundtrip` is false).
CHARLS_MISMATCH = {"rgba8_ilv2_near0_13x9"}


def case(name, arr, bits, what, ilv=0, near=0, ct=0, preset=(0, 0, 0, 0, 0), restart=0):
    kw = dict(ilv=ilv, near=near, ct=ct, preset=preset)
    stream = with_restarts(arr, bits, restart, **kw) if restart else encode(arr, bits, **kw)
    decoded = decode(stream)
    original = arr if arr.ndim == 3 else arr[:, :, None]
    roundtrip = bool(np.abs(decoded.astype(np.int64) - original).max() <= near)
    if not roundtrip and name not in CHARLS_MISMATCH:
        raise SystemExit(f"{name}: CharLS does not decode its stream to the original within NEAR")
    (OUT / "cases" / f"{name}.jls").write_bytes(stream)
    (OUT / "cases" / f"{name}.u16").write_bytes(decoded.astype("<u2").tobytes())
    h, w, c = decoded.shape
    CASES.append(dict(name=name, width=w, height=h, components=c, precision=bits, near=near, interleave=ilv,
                      colour_transform=ct, preset=list(preset), restart_interval=restart, bytes=len(stream), what=what,
                      charls_roundtrip=roundtrip))
    return stream


def synthetic_cases():
    seed = 0
    for bits in (2, 5, 8, 12, 16):
        for near in (0, 1, 3):
            if near > ((1 << bits) - 1) // 2:
                continue
            seed += 1
            case(f"grey{bits}_near{near}_33x17", image(17, 33, 1, bits, seed), bits, "greyscale", near=near)
    for bits in (5, 8, 12):
        for ilv in (0, 1, 2):
            for near in (0, 3):
                seed += 1
                case(f"rgb{bits}_ilv{ilv}_near{near}_33x17", image(17, 33, 3, bits, seed), bits,
                     "3 components", ilv=ilv, near=near)
    case("rgb16_ilv2_near0_7x5", image(5, 7, 3, 16, 90), 16, "3 components, 16 bits", ilv=2)
    for ilv in (1, 2):
        case(f"rgba8_ilv{ilv}_near0_13x9", image(9, 13, 4, 8, 91 + ilv), 8, "4 components", ilv=ilv)
    case("grey8_near0_7x5", image(5, 7, 1, 8, 95), 8, "odd size")
    case("grey8_near0_1x1", image(1, 1, 1, 8, 96), 8, "one pixel")
    case("grey12_near0_1x40", image(40, 1, 1, 12, 97), 12, "one column")
    case("grey12_near2_40x1", image(1, 40, 1, 12, 98), 12, "one line", near=2)
    case("grey8_flat_64x3", np.full((3, 64), 77), 8, "run mode only, runs longer than 2^J")
    rng = np.random.RandomState(99)
    case("grey16_noise_31x7", rng.randint(0, 65536, (7, 31)), 16, "uniform noise: escape codes")
    checker = (np.indices((9, 11)).sum(axis=0) % 2) * 4095
    case("grey12_checker_11x9", checker, 12, "0 and MAXVAL alternating: modular reconstruction")
    case("grey8_preset_33x17", image(17, 33, 1, 8, 100), 8, "LSE preset T1 T2 T3 RESET", preset=(0, 2, 5, 9, 32))
    case("grey12_preset_near2_33x17", image(17, 33, 1, 12, 101), 12, "LSE preset with NEAR 2",
         near=2, preset=(0, 30, 90, 300, 100))
    case("grey8_maxval200_33x17", image(17, 33, 1, 8, 102, maxval=200), 8,
         "LSE MAXVAL 200 of 8 bits (CharLS codes with 255 all the same)",
         preset=(200, 0, 0, 0, 0))
    case("rgb8_ilv1_preset_near1_33x17", image(17, 33, 3, 8, 103), 8, "LSE preset, line interleaved",
         ilv=1, near=1, preset=(0, 4, 9, 30, 48))
    for ct in (1, 2, 3):
        case(f"rgb8_ilv2_hp{ct}_33x17", image(17, 33, 3, 8, 104 + ct), 8, f"HP{ct} colour transform", ilv=2, ct=ct)
    case("rgb8_ilv1_hp2_33x17", image(17, 33, 3, 8, 108), 8, "HP2 colour transform, line interleaved", ilv=1, ct=2)
    case("rgb16_ilv2_hp3_7x5", image(5, 7, 3, 16, 109), 16, "HP3 colour transform, 16 bits", ilv=2, ct=3)
    case("grey8_restart4_33x17", image(17, 33, 1, 8, 110), 8, "restart interval 4 lines", restart=4)
    case("grey12_restart1_near1_9x20", image(20, 9, 1, 12, 111), 12, "restart every line (RST0 to RST7 wrap)",
         near=1, restart=1)
    case("rgb8_ilv1_restart5_33x17", image(17, 33, 3, 8, 112), 8, "restarts, line interleaved", ilv=1, restart=5)
    case("rgb8_ilv2_restart3_33x17", image(17, 33, 3, 8, 113), 8, "restarts, sample interleaved", ilv=2, restart=3)


# ----------------------------------------------------------------------- DICOM

DICOM = []
PYDICOM_FILES = {
    # name -> package ("pydicom": test_files of the wheel; "pydicom-data": its data store)
    "MR_small_jpeg_ls_lossless.dcm": "pydicom",
    "JPEGLSNearLossless_08.dcm": "pydicom",
    "JPEGLSNearLossless_16.dcm": "pydicom",
    "SC_rgb_jls_lossy_line.dcm": "pydicom",
    "SC_rgb_jls_lossy_sample.dcm": "pydicom",
    "emri_small_jpeg_ls_lossless.dcm": "pydicom-data",
}


def dicom_file(name, frames, bits_allocated, bits_stored, signed, photometric, ts, extra=None):
    """A small DICOM file of JPEG-LS frames (streams) written with pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[name])
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    first = decode(frames[0])
    ds.Rows, ds.Columns, ds.SamplesPerPixel = first.shape
    ds.PhotometricInterpretation = photometric
    if first.shape[2] > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.save_as(OUT / "dicom" / name, enforce_file_format=True)


def reference(name, source):
    """pydicom's pixel_array of each frame (.fN.u8/u16/i16, with the frame's
    codestream .fN.jls) and the README's rendering of the middle one (.png)."""
    ds = pydicom.dcmread(source)
    stem = name[:-4]
    # The stored samples: no YBR to RGB conversion (render() converts).
    arr = pixel_array(ds, raw=True)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    streams = list(generate_frames(ds.PixelData, number_of_frames=frames))
    for i, stream in enumerate(streams):
        values = arr[i] if frames > 1 else arr
        (OUT / "dicom" / f"{stem}.f{i}.jls").write_bytes(stream)
        kind = "i16" if int(ds.PixelRepresentation) else ("u8" if int(ds.BitsStored) <= 8 else "u16")
        dtype = {"i16": "<i2", "u8": "u1", "u16": "<u2"}[kind]
        (OUT / "dicom" / f"{stem}.f{i}.{kind}").write_bytes(np.ascontiguousarray(values).astype(dtype).tobytes())
    picture, info = render(ds)
    Image.fromarray(picture, "L" if picture.ndim == 2 else "RGB").save(OUT / "dicom" / f"{stem}.png", optimize=True)
    DICOM.append(dict(name=name, frames=frames, rows=int(ds.Rows), columns=int(ds.Columns),
                      samples=int(ds.SamplesPerPixel), transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
                      photometric=str(ds.PhotometricInterpretation), **{k: v for k, v in info.items() if k != "photometric"}))


def dicom_cases():
    def signed12(seed):
        # Signed 12-bit values stored as their 12-bit two's complement pattern.
        v = image(17, 33, 1, 12, seed).astype(np.int64) - 2048
        return v & 0xFFF

    dicom_file("jls_signed12_window.dcm", [encode(signed12(120), 12)], 16, 12, True, "MONOCHROME2", JPEGLSLossless,
               {"WindowCenter": 0, "WindowWidth": 1500, "RescaleSlope": 1, "RescaleIntercept": -100})
    dicom_file("jls_grey16_near3_minmax.dcm", [encode(image(17, 33, 1, 16, 121), 16, near=3)], 16, 16, False,
               "MONOCHROME2", JPEGLSNearLossless)
    dicom_file("jls_mono1_8bit_3frames.dcm", [encode(image(5, 7, 1, 8, 122 + i), 8) for i in range(3)], 8, 8, False,
               "MONOCHROME1", JPEGLSLossless)
    dicom_file("jls_rgb8_ilv0.dcm", [encode(image(17, 33, 3, 8, 125), 8, ilv=0)], 8, 8, False, "RGB", JPEGLSLossless)
    dicom_file("jls_rgb8_ilv2_near2.dcm", [encode(image(17, 33, 3, 8, 126), 8, ilv=2, near=2)], 8, 8, False, "RGB",
               JPEGLSNearLossless)
    dicom_file("jls_ybr_full_ilv1.dcm", [encode(image(17, 33, 3, 8, 127), 8, ilv=1)], 8, 8, False, "YBR_FULL",
               JPEGLSLossless)
    dicom_file("jls_rgb12_ilv1.dcm", [encode(image(17, 33, 3, 12, 128), 12, ilv=1)], 16, 12, False, "RGB",
               JPEGLSLossless)
    for path in sorted((OUT / "dicom").glob("jls_*.dcm")):
        reference(path.name, path)
    for name, package in PYDICOM_FILES.items():
        if package == "pydicom":
            src = Path(pydicom.__file__).parent / "data" / "test_files" / name
        else:
            import data_store

            src = Path(data_store.__file__).parent / "data" / name
        shutil.copyfile(src, OUT / "dicom" / name)
        reference(name, OUT / "dicom" / name)


def main():
    for sub in ("cases", "dicom"):
        shutil.rmtree(OUT / sub, ignore_errors=True)
        (OUT / sub).mkdir(parents=True)
    synthetic_cases()
    dicom_cases()
    manifest = {"charls": "pyjpegls " + jpeg_ls.__version__, "pydicom": pydicom.__version__,
                "cases": CASES, "dicom": DICOM}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(CASES)} streams, {len(DICOM)} DICOM files")


if __name__ == "__main__":
    main()
