"""Writes the EXIF orientation cases of tests/exif_orientation.rs and the pixels
transformers reads from them.

Usage: /work/venv-siglip/bin/python tests/reference/exif_orientation.py
(Pillow 13, as transformers 5 uses it).

transformers' `image_utils.load_image` opens a file with Pillow, then runs
`PIL.ImageOps.exif_transpose(image)` and `image.convert("RGB")`. For every case,
tests/exif/NAME is the file and tests/exif/reference.json records, under NAME,
the width, height and hex RGB bytes of exactly that. The Rust test decodes each
file with `kpl::preprocess::decode_rgb8` and compares byte for byte.

Cases: an 11x7 image (odd sizes, so a wrong flip or transpose cannot match)
with orientations 1 to 8, as JPEG (4:2:0, our Pillow-exact decoder), PNG (an
`eXIf` chunk), WebP (lossless, an `EXIF` chunk) and TIFF (the tag in its own
IFD) - the last three through the `image` crate. JPEG edge cases, written by
inserting APP1 segments by hand: big-endian EXIF, an XMP segment before the
EXIF one, two EXIF segments (Pillow joins them; the first IFD decides), an
out-of-range value (9), a malformed IFD (offset past the end; truncated
entries), and an EXIF segment after the first scan of a progressive file (which
Pillow never reads).
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

from PIL import Image, ImageOps

OUT = Path(__file__).resolve().parents[1] / "exif"
W, H = 11, 7


def base_image() -> Image.Image:
    img = Image.new("RGB", (W, H))
    img.putdata([((x * 23) % 256, (y * 37) % 256, (x * 7 + y * 29) % 256) for y in range(H) for x in range(W)])
    return img


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def tiff_ifd(orientation: int, *, big_endian: bool = False, type_: int = 3) -> bytes:
    """A TIFF header and one IFD with the Orientation entry alone (no `Exif\\0\\0`)."""
    e = ">" if big_endian else "<"
    head = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", 8)
    value = struct.pack(e + "HH", orientation, 0) if type_ == 3 else struct.pack(e + "I", orientation)
    return head + struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, type_, 1) + value + struct.pack(e + "I", 0)


def app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def insert_after_soi(jpeg: bytes, *segments: bytes) -> bytes:
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def insert_before_second_scan(jpeg: bytes, segment: bytes) -> bytes:
    """`segment` inserted just before the second SOS marker of a progressive JPEG."""
    scans = []
    i = 2
    while i < len(jpeg):
        assert jpeg[i] == 0xFF, i
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        if marker == 0xDA:
            scans.append(i)
            if len(scans) == 2:
                return jpeg[:i] + segment + jpeg[i:]
            # Skip the entropy-coded data: to the next marker that is not a stuffed
            # byte or a restart marker.
            j = i + 2 + length
            while not (jpeg[j] == 0xFF and jpeg[j + 1] not in (0x00, *range(0xD0, 0xD8))):
                j += 1
            i = j
        else:
            i += 2 + length
    raise AssertionError("fewer than two scans")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def cases() -> dict[str, bytes]:
    img = base_image()
    out: dict[str, bytes] = {}
    for o in range(1, 9):
        out[f"o{o}.jpg"] = encode(img, "JPEG", quality=90, exif=exif_bytes(o))
        out[f"o{o}.png"] = encode(img, "PNG", exif=exif_bytes(o))
        out[f"o{o}.webp"] = encode(img, "WEBP", lossless=True, exif=exif_bytes(o))
        out[f"o{o}.tiff"] = encode(img, "TIFF", tiffinfo={0x0112: o})
    plain = encode(img, "JPEG", quality=90)
    exif = lambda ifd: app1(b"Exif\0\0" + ifd)  # noqa: E731
    out["big_endian_o6.jpg"] = insert_after_soi(plain, exif(tiff_ifd(6, big_endian=True)))
    xmp = app1(b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>")
    out["xmp_then_exif_o8.jpg"] = insert_after_soi(plain, xmp, exif(tiff_ifd(8)))
    out["two_exif_o5_o2.jpg"] = insert_after_soi(plain, exif(tiff_ifd(5)), exif(tiff_ifd(2)))
    out["out_of_range_o9.jpg"] = insert_after_soi(plain, exif(tiff_ifd(9)))
    out["ifd_past_end.jpg"] = insert_after_soi(plain, exif(b"II\x2a\x00" + struct.pack("<I", 4000)))
    out["truncated_entry.jpg"] = insert_after_soi(plain, exif(tiff_ifd(6)[:14]))
    progressive = encode(img, "JPEG", quality=90, progressive=True)
    out["after_first_scan_o6.jpg"] = insert_before_second_scan(progressive, exif(tiff_ifd(6)))
    return out


def reference(data: bytes) -> dict:
    """What transformers' `load_image` gives: exif_transpose, then RGB."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    return {"width": rgb.width, "height": rgb.height, "rgb": rgb.tobytes().hex()}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    refs = {}
    for name, data in cases().items():
        (OUT / name).write_bytes(data)
        refs[name] = reference(data)
    (OUT / "reference.json").write_text(json.dumps(refs, indent=1, sort_keys=True) + "\n")
    transposed = sum(1 for r in refs.values() if (r["width"], r["height"]) == (H, W))
    print(f"{len(refs)} cases in {OUT} ({transposed} come out {H}x{W})")


if __name__ == "__main__":
    main()
