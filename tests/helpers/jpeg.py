"""Crafting JPEGs for the image-size checks (tests/test_fuzz.py, tests/test_remote_hostile.py)."""

from __future__ import annotations

import struct


def split_segments(jpeg: bytes) -> tuple[list[bytes], bytes]:
    """The marker segments of a JPEG from SOI up to its first scan (SOI first), and the rest (the scans and EOI)."""
    parts, i = [jpeg[:2]], 2
    while jpeg[i + 1] != 0xDA:
        (length,) = struct.unpack(">H", jpeg[i + 2:i + 4])
        parts.append(jpeg[i:i + 2 + length])
        i += 2 + length
    return parts, jpeg[i:]
