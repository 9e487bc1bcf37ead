#!/usr/bin/env python3
"""Draws the web app's icons (www/icon-192.png, icon-512.png, icon-maskable-512.png).

Standard library only: the PNGs are written with zlib. The picture is a white
lens outline and a dot (an eye on an image) on a blue ground: the "any" icons as a
rounded square, the maskable one full-bleed with the picture inside the central
80% safe zone (W3C Web App Manifest, "maskable" purpose).

    python3 scripts/make_icons.py
"""
import math
import struct
import zlib
from pathlib import Path

WWW = Path(__file__).resolve().parent.parent / "www"
BLUE = (29, 78, 137)
WHITE = (255, 255, 255)


def png(path, size, pixels):
    raw = b"".join(b"\0" + bytes(c for px in row for c in px) for row in pixels)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def coverage(d):
    """Antialiased inside-ness from a signed distance in pixels (negative inside)."""
    return min(1.0, max(0.0, 0.5 - d))


def icon(size, maskable):
    c = size / 2
    # The picture's scale: the maskable icon keeps it within the 80% safe zone.
    s = size * (0.40 if maskable else 0.46)
    radius = size * 0.18
    rows = []
    for y in range(size):
        row = []
        for x in range(size):
            px, py = x + 0.5, y + 0.5
            if maskable:
                ground = 1.0
            else:
                # Rounded square: distance to a box shrunk by the corner radius.
                qx = max(abs(px - c) - (c - radius), 0.0)
                qy = max(abs(py - c) - (c - radius), 0.0)
                ground = coverage(math.hypot(qx, qy) - radius)
            # Lens: the intersection of two circles, drawn as an outline.
            r_lens = s * 1.05
            off = s * 0.62
            d_lens = max(math.hypot(px - c, py - c - off) - r_lens, math.hypot(px - c, py - c + off) - r_lens)
            stroke = s * 0.09
            outline = coverage(abs(d_lens) - stroke)
            dot = coverage(math.hypot(px - c, py - c) - s * 0.2)
            white = max(outline, dot)
            rgb = tuple(round(b * (1 - white) + w * white) for b, w in zip(BLUE, WHITE))
            row.append((*rgb, round(255 * ground)))
        rows.append(row)
    return rows


def main():
    for name, size, maskable in [("icon-192.png", 192, False), ("icon-512.png", 512, False), ("icon-maskable-512.png", 512, True)]:
        png(WWW / name, size, icon(size, maskable))
        print(f"wrote www/{name}")


if __name__ == "__main__":
    main()
