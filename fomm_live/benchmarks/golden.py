"""The golden data of the original model, as ``benchmarks.gpu_report`` and the tests read it: a folder per variant
(config.yaml, checkpoint.pth.tar, expected.npz, source.png, driving_0..2.png), and its PNGs decoded with zlib and
numpy alone (the GPU machines that run the report have no OpenCV; the tests read the same pixels the same way).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

GOLDEN_FILES = ("config.yaml", "checkpoint.pth.tar", "expected.npz", "source.png", "driving_0.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def golden_variants(folder: Path) -> list[Path]:
    """``folder`` itself when it is a golden variant, else its sub-folders that are."""
    def is_variant(path: Path) -> bool:
        return all((path / name).is_file() for name in GOLDEN_FILES)

    if is_variant(folder):
        return [folder]
    return sorted(p for p in folder.iterdir() if p.is_dir() and is_variant(p)) if folder.is_dir() else []


def _unfilter(kind: int, line: bytes, prev: bytearray, bpp: int) -> bytearray:
    """One scanline of PNG filter ``kind`` (0 none, 1 sub, 2 up, 3 average, 4 Paeth) undone against the row above."""
    cur = bytearray(line)
    if kind == 0:
        return cur
    if kind == 2:
        return bytearray((a + b) & 255 for a, b in zip(cur, prev, strict=True))
    for x in range(len(cur)):  # filters 1, 3 and 4 depend on the decoded left neighbour: byte by byte
        a = cur[x - bpp] if x >= bpp else 0
        if kind == 1:
            pred = a
        elif kind == 3:
            pred = (a + prev[x]) >> 1
        else:
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[x] = (cur[x] + pred) & 255
    return cur


def read_png(path: Path) -> np.ndarray:
    """An 8-bit RGB PNG without interlacing (as the golden data is) as H x W x 3 uint8."""
    data = Path(path).read_bytes()
    if data[:8] != PNG_SIGNATURE:
        raise ValueError(f"{path} is not a PNG")
    pos, idat, header = 8, [], b""
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    if (header[8], header[9], header[12]) != (8, 2, 0):
        raise ValueError(f"{path}: only 8-bit RGB PNGs without interlacing are decoded here")
    raw = zlib.decompress(b"".join(idat))
    stride = width * 3
    rows, prev = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        prev = _unfilter(raw[start], raw[start + 1:start + 1 + stride], prev, 3)
        rows.append(bytes(prev))
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width, 3).copy()
