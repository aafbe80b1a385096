"""Shared test fixtures: the golden data in ../shared beside the checkout, and small helpers.

Without ../shared the tests that need it skip with the reason, except on CI (``CI=true``), where the run fails at once:
a CI run that silently skipped every golden test would prove nothing.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden" / "fomm"
GOLDEN_VARIANTS = ("tiny", "tiny_single_jacobian", "tiny_zero_order")
REFERENCE_TSV = SHARED / "reference" / "fomm-vox256-state-dict.tsv"


ON_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")

# ``--precision auto`` picks int8 on CPUs with VNNI / AMX when an int8 runtime is installed, and int8 calibrates on
# each new photo (an ONNX export and a quantisation, about half a minute on a 2-core CPU). Tests that run ``auto`` are
# about the rest of the program, so the suite runs ``auto`` without int8; tests/test_int8.py tests int8 and auto's
# choice of it explicitly. Subprocesses (the CLI tests) inherit this.
os.environ["FOMM_LIVE_INT8"] = "0"


def pytest_configure(config: pytest.Config) -> None:
    if ON_CI and not GOLDEN.is_dir():
        raise pytest.UsageError(f"CI=true but the golden data is missing: {GOLDEN} does not exist. Put the shared "
                                "folder (golden/, reference/) beside the repository before running the tests on CI.")


def require(path: Path) -> Path:
    """Skip (with the reason) when a file from ../shared is not beside this checkout; on CI, fail instead."""
    if not path.exists():
        reason = f"{path} is missing: the golden data lives in ../shared beside the repository"
        if ON_CI:
            pytest.fail(f"{reason} (CI=true: a missing golden file fails the run)", pytrace=False)
        pytest.skip(reason)
    return path


@functools.lru_cache(maxsize=32)
def read_rgb(path: Path) -> np.ndarray:
    """A PNG as H x W x 3 uint8 RGB (read-only, cached), decoded without OpenCV so model tests need only torch and
    numpy (the GPU machines that run them have no OpenCV)."""
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    bit_depth, color_type, interlace = header[8], header[9], header[12]
    assert (bit_depth, color_type, interlace) == (8, 2, 0), "test PNGs are 8-bit RGB, not interlaced"
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * 3)
    out = np.zeros((height, width * 3), dtype=np.int32)
    prev = np.zeros(width * 3, dtype=np.int32)
    for y in range(height):
        ftype, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) & 255
        else:  # filters 1 (sub), 3 (average), 4 (paeth) depend on the left neighbour: decode byte by byte
            cur = np.zeros_like(line)
            for x in range(width * 3):
                a = cur[x - 3] if x >= 3 else 0
                b = prev[x]
                c = prev[x - 3] if x >= 3 else 0
                if ftype == 1:
                    pred = a
                elif ftype == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (line[x] + pred) & 255
        out[y] = cur
        prev = cur
    image = out.astype(np.uint8).reshape(height, width, 3)
    image.flags.writeable = False
    return image


def golden_dir(variant: str) -> Path:
    return require(GOLDEN / variant)
