"""Writes the JPEG cases of tests/jpeg_decode.rs and what Pillow decodes them to.

Usage: /work/venv-siglip/bin/python tests/reference/jpeg_reference.py
(Pillow 13 with its bundled libjpeg-turbo, numpy).

For the committed fixture photos (tests/fixtures/images/*.jpg), too large to
store decoded, tests/jpeg/fixture_images.json records the size, mode and
SHA-256 of Pillow's decoded bytes.

For each case, tests/jpeg/cases/NAME.jpg is the file and NAME.png is
`Image.open(NAME.jpg)` as Pillow decodes it: mode L for greyscale, else
`.convert("RGB")` (what transformers' `load_image` and open_clip do), stored
losslessly. The test asserts `kpl::preprocess::jpeg::decode` gives the same
bytes.

Two sources of files:
- Pillow's encoder (libjpeg-turbo): grey, 4:4:4, 4:2:2, 4:2:0, progressive,
  restart markers, optimised Huffman tables, qualities 30 and 100, odd sizes,
  tiny sizes, CMYK;
- a small baseline encoder below, for what Pillow cannot write: 4:4:0, 4:1:1,
  luminance sampled below chrominance (Y upsampled),
  mixed factors, factors 2 with two rows per MCU, several scans (one per
  component), an Adobe RGB file (transform 0), component identifiers "RGB",
  YCCK and Adobe/plain CMYK, the standard Huffman tables left out (libjpeg
  installs them), restart intervals that do not divide the MCU count.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image

TESTS = Path(__file__).resolve().parent.parent
OUT = TESTS / "jpeg" / "cases"
FIXTURE_IMAGES = TESTS / "fixtures" / "images"

# T.81 K.1 quantisation tables and K.3 Huffman tables (standard).
Q_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
DC_COUNTS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
DC_VALUES = list(range(12))
AC_COUNTS = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]
AC_VALUES = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728"
    "292a3435363738393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788"
    "898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9da"
    "e1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
)
ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,
    7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]


def scene(width: int, height: int, seed: int, channels: int) -> np.ndarray:
    """Smooth gradients, a hard edge, a disc and noise: every frequency is used."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for c in range(channels):
        p = 128 + 90 * np.sin(x / (3.0 + 2 * c) + y / (5.0 + c)) * np.cos(y / 7.0 - c)
        p += np.where(x + 2 * y > width * (0.6 + 0.1 * c), 40, -40)
        p += np.where((x - width / 3) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 4) ** 2, 60, 0)
        p += rng.normal(0, 18, size=p.shape)
        planes.append(p)
    return np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- the small encoder


def huffman_codes(counts, values):
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            codes[values[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


DC_CODES = huffman_codes(DC_COUNTS, DC_VALUES)
AC_CODES = huffman_codes(AC_COUNTS, list(AC_VALUES))


class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int):
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def flush(self):
        if self.n:
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)


def category(v: int) -> tuple[int, int]:
    s = abs(v).bit_length()
    bits = v if v >= 0 else v + (1 << s) - 1
    return s, bits


def dct_matrix():
    c = np.zeros((8, 8))
    for u in range(8):
        for x in range(8):
            c[u, x] = (np.sqrt(0.5) if u == 0 else 1.0) / 2 * np.cos((2 * x + 1) * u * np.pi / 16)
    return c


DCT = dct_matrix()


def blocks_of(plane: np.ndarray, bw: int, bh: int) -> np.ndarray:
    """The plane edge-padded to bw × bh blocks, as quantised coefficients (zig-zag)."""
    h, w = plane.shape
    padded = np.pad(plane.astype(np.float64), ((0, bh * 8 - h), (0, bw * 8 - w)), mode="edge") - 128
    q = np.array(Q_LUMA, dtype=np.float64).reshape(8, 8) / 2
    out = np.zeros((bh, bw, 64), dtype=np.int64)
    for by in range(bh):
        for bx in range(bw):
            b = padded[by * 8 : by * 8 + 8, bx * 8 : bx * 8 + 8]
            coef = np.rint(DCT @ b @ DCT.T / q).astype(np.int64).reshape(64)
            out[by, bx] = coef[ZIGZAG]
    return out


def encode_block(bw: BitWriter, coef, pred: int) -> int:
    s, bits = category(int(coef[0]) - pred)
    code, length = DC_CODES[s]
    bw.write(code, length)
    bw.write(bits, s)
    run = 0
    for k in range(1, 64):
        v = int(coef[k])
        if v == 0:
            run += 1
            continue
        while run > 15:
            code, length = AC_CODES[0xF0]
            bw.write(code, length)
            run -= 16
        s, bits = category(v)
        code, length = AC_CODES[(run << 4) | s]
        bw.write(code, length)
        bw.write(bits, s)
        run = 0
    if run:
        code, length = AC_CODES[0x00]
        bw.write(code, length)
    return int(coef[0])


def segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">HH", marker, len(body) + 2) + body


def encode(
    planes: list[np.ndarray],
    factors: list[tuple[int, int]],
    width: int,
    height: int,
    ids: list[int] | None = None,
    app: bytes = b"",
    restart: int = 0,
    scans: str = "interleaved",
    tables: bool = True,
) -> bytes:
    """A baseline JPEG of the component planes (each ⌈X·h/Hmax⌉ × ⌈Y·v/Vmax⌉)."""
    n = len(planes)
    ids = ids or list(range(1, n + 1))
    hmax, vmax = max(h for h, _ in factors), max(v for _, v in factors)
    mx, my = -(-width // (8 * hmax)), -(-height // (8 * vmax))
    coefs = []
    for plane, (h, v) in zip(planes, factors):
        assert plane.shape == (-(-height * v // vmax), -(-width * h // hmax)), plane.shape
        coefs.append(blocks_of(plane, mx * h, my * v))
    out = bytearray(b"\xff\xd8") + app
    q = [max(1, min(255, int(round(x / 2)))) for x in Q_LUMA]
    out += segment(0xFFDB, bytes([0]) + bytes(q[i] for i in range(64)))
    out += segment(
        0xFFC0,
        struct.pack(">BHHB", 8, height, width, n) + b"".join(bytes([i, (h << 4) | v, 0]) for i, (h, v) in zip(ids, factors)),
    )
    if tables:
        out += segment(0xFFC4, bytes([0x00] + DC_COUNTS + DC_VALUES))
        out += segment(0xFFC4, bytes([0x10] + AC_COUNTS) + AC_VALUES)
    if restart:
        out += segment(0xFFDD, struct.pack(">H", restart))

    def scan(components: list[int], units: list[list[tuple[int, int, int]]]):
        nonlocal out
        out += segment(0xFFDA, bytes([len(components)]) + b"".join(bytes([ids[c], 0x00]) for c in components) + bytes([0, 63, 0]))
        bw, preds = BitWriter(), [0] * n
        for i, unit in enumerate(units):
            if restart and i and i % restart == 0:
                bw.flush()
                out += bw.out + bytes([0xFF, 0xD0 + ((i // restart - 1) % 8)])
                bw, preds = BitWriter(), [0] * n
            for c, by, bx in unit:
                preds[c] = encode_block(bw, coefs[c][by, bx], preds[c])
        bw.flush()
        out += bw.out

    if scans == "interleaved":
        units = []
        for y in range(my):
            for x in range(mx):
                units.append(
                    [(c, y * v + dy, x * h + dx) for c, (h, v) in enumerate(factors) for dy in range(v) for dx in range(h)]
                )
        scan(list(range(n)), units)
    else:
        for c, (h, v) in enumerate(factors):
            cw, ch = -(-width * h // hmax), -(-height * v // vmax)
            scan([c], [[(c, by, bx)] for by in range(-(-ch // 8)) for bx in range(-(-cw // 8))])
    return bytes(out + b"\xff\xd9")


def adobe(transform: int) -> bytes:
    return segment(0xFFEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, transform))


JFIF = segment(0xFFE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")


def custom(width, height, factors, seed, **kw) -> bytes:
    hmax, vmax = max(h for h, _ in factors), max(v for _, v in factors)
    planes = []
    for c, (h, v) in enumerate(factors):
        cw, ch = -(-width * h // hmax), -(-height * v // vmax)
        planes.append(scene(cw, ch, seed + c, 1)[:, :, 0])
    return encode(planes, factors, width, height, **kw)


# ---------------------------------------------------------------- the cases


def pillow(mode: str, size, seed: int, **save) -> bytes:
    w, h = size
    if mode == "L":
        im = Image.fromarray(scene(w, h, seed, 1)[:, :, 0], "L")
    elif mode == "CMYK":
        im = Image.fromarray(scene(w, h, seed, 4), "CMYK")
    else:
        im = Image.fromarray(scene(w, h, seed, 3), "RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", **save)
    return buf.getvalue()


def cases() -> dict[str, bytes]:
    c = {
        "grey_q75_37x29": pillow("L", (37, 29), 1, quality=75),
        "grey_q100_16x16": pillow("L", (16, 16), 2, quality=100),
        "grey_progressive_41x23": pillow("L", (41, 23), 3, quality=80, progressive=True),
        "rgb444_q90_35x27": pillow("RGB", (35, 27), 4, quality=90, subsampling=0),
        "rgb422_q75_45x19": pillow("RGB", (45, 19), 5, quality=75, subsampling=1),
        "rgb420_q75_50x34": pillow("RGB", (50, 34), 6, quality=75, subsampling=2),
        "rgb420_q30_33x31": pillow("RGB", (33, 31), 7, quality=30, subsampling=2),
        "rgb444_q100_24x20": pillow("RGB", (24, 20), 8, quality=100, subsampling=0),
        "rgb420_progressive_47x37": pillow("RGB", (47, 37), 9, quality=85, progressive=True),
        "rgb444_progressive_30x22": pillow("RGB", (30, 22), 10, quality=70, subsampling=0, progressive=True),
        "rgb422_progressive_restart_39x25": pillow("RGB", (39, 25), 11, quality=80, subsampling=1, progressive=True, restart_marker_blocks=3),
        "rgb420_restart_blocks_43x29": pillow("RGB", (43, 29), 12, quality=75, restart_marker_blocks=2),
        "rgb444_restart_rows_29x26": pillow("RGB", (29, 26), 13, quality=75, subsampling=0, restart_marker_rows=1),
        "rgb420_optimized_44x36": pillow("RGB", (44, 36), 14, quality=75, optimize=True),
        "rgb420_1x1": pillow("RGB", (1, 1), 15, quality=75),
        "rgb420_2x3": pillow("RGB", (2, 3), 16, quality=75),
        "rgb420_4x5": pillow("RGB", (4, 5), 17, quality=75),
        "rgb420_5x2": pillow("RGB", (5, 2), 18, quality=75),
        "rgb422_3x9": pillow("RGB", (3, 9), 19, quality=75, subsampling=1),
        "cmyk_q90_26x18": pillow("CMYK", (26, 18), 20, quality=90),
        # The small encoder.
        "c440_27x21": custom(27, 21, [(1, 2), (1, 1), (1, 1)], 30, app=JFIF),
        "c411_45x13": custom(45, 13, [(4, 1), (1, 1), (1, 1)], 31, app=JFIF),
        "y_upsampled_19x14": custom(19, 14, [(1, 1), (2, 2), (2, 2)], 32),
        "mixed_factors_30x22": custom(30, 22, [(2, 2), (2, 1), (1, 2)], 33),
        "factor3_26x10": custom(26, 10, [(3, 1), (1, 1), (1, 1)], 34),
        "tall_mcus_noninterleaved_21x37": custom(21, 37, [(2, 4), (1, 2), (1, 2)], 35, scans="separate"),
        "adobe_rgb_23x17": custom(23, 17, [(1, 1), (1, 1), (1, 1)], 36, app=adobe(0)),
        "ids_rgb_17x11": custom(17, 11, [(1, 1), (1, 1), (1, 1)], 37, ids=list(b"RGB")),
        "ids_123_no_jfif_20x12": custom(20, 12, [(2, 2), (1, 1), (1, 1)], 38),
        "ycck_21x15": custom(21, 15, [(2, 2), (1, 1), (1, 1), (2, 2)], 39, app=adobe(2)),
        "cmyk_adobe0_15x9": custom(15, 9, [(1, 1)] * 4, 40, app=adobe(0)),
        "cmyk_plain_13x7": custom(13, 7, [(1, 1)] * 4, 41),
        "standard_tables_implied_22x14": custom(22, 14, [(2, 1), (1, 1), (1, 1)], 42, app=JFIF, tables=False),
        "restart_uneven_38x20": custom(38, 20, [(2, 2), (1, 1), (1, 1)], 43, app=JFIF, restart=3),
        "grey_factors_22_19x13": custom(19, 13, [(2, 2)], 44),
    }
    return c


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    for name, data in cases().items():
        (OUT / f"{name}.jpg").write_bytes(data)
        im = Image.open(io.BytesIO(data))
        im.load()
        decoded = im if im.mode == "L" else im.convert("RGB")
        decoded.save(OUT / f"{name}.png", optimize=True)
        print(f"{name}: {im.mode} {im.size} {len(data)} bytes")
    fixtures = {}
    for path in sorted(FIXTURE_IMAGES.glob("*.jpg")):
        im = Image.open(path)
        im.load()
        decoded = im if im.mode == "L" else im.convert("RGB")
        fixtures[path.name] = {
            "width": decoded.width,
            "height": decoded.height,
            "mode": decoded.mode,
            "sha256": hashlib.sha256(decoded.tobytes()).hexdigest(),
        }
    (TESTS / "jpeg" / "fixture_images.json").write_text(json.dumps(fixtures, indent=1) + "\n")


if __name__ == "__main__":
    main()
