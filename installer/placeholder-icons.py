#!/usr/bin/env python3
"""PLACEHOLDER icons for installer builds, made with the standard library only.

The real icons come from the tray app (assets/icons/app/: link-peeler-<size>.png,
link-peeler.ico, link-peeler.icns, rendered from SVG by assets/render.sh). The
installer scripts use those whenever they exist; only when they do not (a
checkout without the tray work) do they call this script, print that they did,
and package these plain placeholder icons instead — a flat disc, clearly not
the product's artwork.

usage: placeholder-icons.py OUT_DIR
writes OUT_DIR/link-peeler-<size>.png (16 … 512), link-peeler.ico, link-peeler.icns
"""

import struct
import sys
import zlib
from pathlib import Path

SIZES = [16, 24, 32, 48, 64, 128, 256, 512]


def png(size: int) -> bytes:
    """A size x size RGBA PNG: a teal disc with a lighter ring, transparent corners."""
    rows = []
    c = (size - 1) / 2
    r_out = size * 0.47
    r_in = size * 0.30
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            d = ((x - c) ** 2 + (y - c) ** 2) ** 0.5
            if d <= r_in:
                row += bytes((0x1F, 0x7A, 0x8C, 0xFF))
            elif d <= r_out:
                row += bytes((0x9A, 0xD8, 0xE1, 0xFF))
            else:
                row += bytes((0, 0, 0, 0))
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def ico(images: dict) -> bytes:
    """An .ico holding PNG images (Windows Vista and later read PNG entries)."""
    sizes = [s for s in (16, 24, 32, 48, 256) if s in images]
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for s in sizes:
        data = images[s]
        dim = 0 if s >= 256 else s
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return header + entries + blobs


def icns(images: dict) -> bytes:
    """An .icns with PNG entries (ic07 = 128, ic08 = 256, ic09 = 512)."""
    body = b""
    for kind, s in ((b"ic07", 128), (b"ic08", 256), (b"ic09", 512)):
        data = images[s]
        body += kind + struct.pack(">I", len(data) + 8) + data
    return b"icns" + struct.pack(">I", len(body) + 8) + body


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    images = {s: png(s) for s in SIZES}
    for s, data in images.items():
        (out / f"link-peeler-{s}.png").write_bytes(data)
    (out / "link-peeler.ico").write_bytes(ico(images))
    (out / "link-peeler.icns").write_bytes(icns(images))
    (out / "PLACEHOLDER-ICONS.txt").write_text(
        "These icons are placeholders from installer/placeholder-icons.py,\n"
        "used because assets/icons/app/ was missing. Not the product artwork.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
