"""Measures of a pasted frame, as the tests and the benchmark define them.

- Seam band: the paste mask's support (mask > 0), dilated minus eroded with a 9 x 9 kernel (4 pixels either side of
  the support's edge).
- Gradient energy: the mean Sobel magnitude (3 x 3) of the grey image over a region.
- Sharpness: the variance of the Laplacian (3 x 3) of the grey image over a region; the face region is the mask
  support's bounding box.
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.media import cv2

BAND_KERNEL = 9


def seam_band(mask: np.ndarray) -> np.ndarray:
    """H x W bool: the support of an H x W mask, dilated minus eroded with a 9 x 9 kernel."""
    cv = cv2()
    support = (mask > 0).astype(np.uint8)
    kernel = np.ones((BAND_KERNEL, BAND_KERNEL), np.uint8)
    return cv.dilate(support, kernel).astype(bool) & ~cv.erode(support, kernel).astype(bool)


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2().cvtColor(frame, cv2().COLOR_RGB2GRAY).astype(np.float32)


def gradient_energy(frame: np.ndarray, region: np.ndarray) -> float:
    """Mean Sobel magnitude of ``frame`` (H x W x 3 uint8) over the H x W bool ``region``."""
    cv = cv2()
    grey = _grey(frame)
    gx = cv.Sobel(grey, cv.CV_32F, 1, 0, ksize=3)
    gy = cv.Sobel(grey, cv.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx * gx + gy * gy)[region].mean())


def support_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the mask's support, exclusive ends; None when the mask is empty."""
    ys, xs = np.nonzero(mask > 0)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def sharpness(frame: np.ndarray, bbox: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian of ``frame``'s grey image inside ``bbox`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = bbox
    return float(cv2().Laplacian(_grey(frame), cv2().CV_32F, ksize=3)[y0:y1, x0:x1].var())
