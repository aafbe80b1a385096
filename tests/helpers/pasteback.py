"""Photos and a known motion for the paste-back tests: textured stand-ins for a photo, the ideal render of a box, and
a photo moved by a known sub-pixel shift with the truth at full resolution."""

from __future__ import annotations

import functools

import numpy as np
import torch

from fomm_live.live.media import cv2

FINE = 4  # the known motion's photo is made at 4x and shrunk: its shifts are exact to a quarter output pixel


def textured(height: int, width: int, seed: int, sigma: float = 1.0) -> np.ndarray:
    """A photo stand-in with detail at every scale: smooth colour fields plus fine texture."""
    rng = np.random.default_rng(seed)
    cv = cv2()
    coarse = cv.resize(rng.integers(0, 256, (height // 40 + 2, width // 40 + 2, 3), dtype=np.uint8), (width, height),
                       interpolation=cv.INTER_CUBIC).astype(np.float32)
    fine = cv.GaussianBlur(rng.normal(0, 40, (height, width, 3)).astype(np.float32), (0, 0), sigma)
    return np.clip(coarse * 0.7 + fine + 40, 0, 255).astype(np.uint8)


def square_of(frame: np.ndarray, box: tuple[int, int, int], n: int) -> np.ndarray:
    """An integer box of ``frame`` shrunk to n x n by area averaging (the ideal render of what the box shows)."""
    x, y, side = box
    return cv2().resize(frame[y:y + side, x:x + side], (n, n), interpolation=cv2().INTER_AREA)


@functools.lru_cache(maxsize=2)
def known_motion(shift_model_px: float = 6.25, n: int = 256):
    """A photo moved right by ``shift_model_px`` pixels of an n x n model square 512 output pixels wide (2x, so
    12.5 output pixels): the framed photo, the truth at full resolution, the ideal n x n render of the truth, the
    unanimated square, and the model's motion field for that shift (backward: each pixel comes from ``shift`` to its
    left). Photo and truth are one 4x finer texture shrunk by area averaging, before and after a whole-pixel shift
    there, so the truth's sub-pixel shift owes nothing to an interpolation.

    Made once per test session (the 4x texture is most of the paste-back tests' time), so the arrays are shared: a
    test copies one before changing it."""
    cv = cv2()
    fine = textured(720 * FINE, 1280 * FINE, 9, sigma=0.8 * FINE)
    box = (370, 90, 512)
    shift = shift_model_px * box[2] / n  # output pixels
    fine_shift = round(shift * FINE)
    assert fine_shift == shift * FINE, "the shift must be a whole number of fine pixels"
    moved = np.roll(fine, fine_shift, axis=1)

    def shrink(image: np.ndarray) -> np.ndarray:
        return cv.resize(image, (1280, 720), interpolation=cv.INTER_AREA)

    framed, truth = shrink(fine), shrink(moved)
    prediction, reference = square_of(truth, box, n), square_of(framed, box, n)
    g = (torch.arange(64, dtype=torch.float32) + 0.5) * 2 / 64 - 1  # 64 x 64 motion field, as vox-256's
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    deformation = torch.stack([gx - 2 * shift_model_px / n, gy], dim=-1)[None]  # 1 x 64 x 64 x 2
    return framed, truth, prediction, reference, tuple(float(v) for v in box), deformation
