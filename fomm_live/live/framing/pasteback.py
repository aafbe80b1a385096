"""Paste-back: the animated square put back into the framed photo through a soft mask, with no visible seam.

The mask is made at the model's resolution (n x n, n = 256) from two factors:

- a fixed window: a rounded square (superellipse, exponent 4) that is exactly 0 from ``WINDOW_EDGE`` of the
  half-side outwards and rises with a smoothstep over ``WINDOW_RAMP`` of the half-side. A smoothstep starts flat, so
  at the mask's edge the output's gradient is the photo's (the 9x9 seam band sees 4 output pixels inside the edge,
  where the weight is under 2% at 1280 x 720), and there is no box corner;
- a change mask: where the animated square differs from the avatar's unanimated crop. The difference is low-passed
  (``DIFF_SIGMA``) before its largest channel is taken, so that what counts is change at the scale the model renders
  reliably, not the resampling of fine texture (a face at rest after calibration differs from its crop by up to 12
  levels at the 99th percentile per pixel, 8 after the low-pass: landmark backend, demo clip); it is mapped to [0, 1]
  by a smoothstep between ``DIFF_LOW`` and ``DIFF_HIGH`` levels and blurred again (``SPREAD_SIGMA``) so that a moving
  part carries a soft halo. Where nothing moved (the background, the shoulders, a face at rest) the weight is 0 and
  the photo's own full-resolution pixels show.

The product is brought to the output's resolution with the same bilinear sampling as the animated square, and
``out = round(mask * animated + (1 - mask) * photo)`` over the bounding box of the mask's support (only what moved is
computed); every pixel outside the mask's support is the framed photo's, bit for bit.

Detail. The n x n frame, brought to the face's size in the output, holds no detail finer than the model's pixel;
the photo has that detail. This paste-back is plain: it is what a backend that hands over only its frame gets, and
what ``--no-detail`` gives with the landmark backend. The detail comes from the backend's own motion: FOMM's dense
motion field (``live.framing.pasteback_field`` on the CPU, ``live.framing.pasteback_torch`` on a GPU), the landmark
backend's warp, which moves the full-resolution photo itself (``live.framing.pasteback_map``).

This file is the OpenCV path and holds the mask's one definition (``mask_from_change``, written once for numpy
arrays and PyTorch tensors alike). ``live.framing.pasteback_field`` adds FOMM's detail transfer to it on the host;
``live.framing.pasteback_torch`` is the same paste-back in PyTorch, on a GPU where the model ran; the tests hold them
to each other.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from fomm_live.live.backends import Rendered
from fomm_live.live.media import cv2

WINDOW_EDGE = 0.97  # superellipse radius (fraction of the half-side) where the window reaches 0
WINDOW_RAMP = 0.35  # the window rises from 0 to 1 over this much of the half-side
WINDOW_POWER = 4  # superellipse exponent: a square with round corners (2 would be a circle, leaving the neck out)
DIFF_LOW = 2.0  # levels of change below which a pixel counts as unmoved (uint8 rounding and mesh noise: 1 level)
DIFF_HIGH = 10.0  # levels of change from which the animation shows fully
DIFF_SIGMA = 1.5  # model pixels: blur of the difference before the threshold (a lone noisy pixel does not switch)
SPREAD_SIGMA = 5.0  # model pixels: the soft halo around a moving part (2% of a 256 square)
SPREAD_GAIN = 2.0  # the blurred change times this, capped at 1: a moving part's centre stays fully animated


def smoothstep(x: Any) -> Any:
    """3x^2 - 2x^3 of x clipped to [0, 1]: 0 and 1 with zero slope at both ends (a numpy array or a tensor; float32
    stays float32)."""
    x = x.clip(0, 1)
    return x * x * (3 - 2 * x)


def kernel_size(sigma: float) -> int:
    """The odd Gaussian kernel width used on both paths: 3 sigma either side."""
    return 2 * int(np.ceil(3 * sigma)) + 1


@functools.lru_cache(maxsize=8)
def window(n: int) -> np.ndarray:
    """The fixed window of an n x n square: n x n float32 in [0, 1], 0 near the square's border."""
    c = (np.arange(n, dtype=np.float64) + 0.5) * 2 / n - 1  # n: pixel centres in [-1, 1]
    r = (np.abs(c)[None, :] ** WINDOW_POWER + np.abs(c)[:, None] ** WINDOW_POWER) ** (1 / WINDOW_POWER)  # n x n
    return smoothstep((WINDOW_EDGE - r) / WINDOW_RAMP).astype(np.float32)


def mask_from_change(diff: Any, window_mask: Any, blur: Callable[[Any, float], Any]) -> Any:
    """The paste mask from the change, for numpy arrays and PyTorch tensors alike: window times the change mapped
    to [0, 1] by a smoothstep between ``DIFF_LOW`` and ``DIFF_HIGH`` levels, spread by ``blur`` (``SPREAD_SIGMA``),
    doubled (``SPREAD_GAIN``) and capped at 1.

    Args:
        diff: The change at the model's scale (the largest channel of the low-passed difference), in levels.
        window_mask: ``window(n)`` in the same layout as ``diff``.
        blur: ``blur(values, sigma)``: the Gaussian blur of ``kernel_size(sigma)`` taps in that layout.
    """
    moved = smoothstep((diff - DIFF_LOW) / (DIFF_HIGH - DIFF_LOW))
    return window_mask * (SPREAD_GAIN * blur(moved, SPREAD_SIGMA)).clip(None, 1.0)


def change_mask(animated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The paste mask at the model's resolution: window times change, n x n float32 in [0, 1].

    Args:
        animated: n x n x 3 uint8, the backend's frame.
        reference: n x n x 3 uint8, the avatar's unanimated crop.
    """
    cv = cv2()
    k = kernel_size(DIFF_SIGMA)
    signed = cv.subtract(animated, reference, dtype=cv.CV_32F)  # n x n x 3 levels
    low = np.abs(cv.GaussianBlur(signed, (k, k), DIFF_SIGMA))  # n x n x 3
    # The change at the model's scale: the largest channel (numpy's max over a last axis of 3 took 2 ms at 256 x 256
    # on the 2-core test CPU; two element-wise maxima take 0.1 ms).
    diff = np.maximum(np.maximum(low[..., 0], low[..., 1]), low[..., 2])  # n x n
    return mask_from_change(diff, window(animated.shape[0]),
                            lambda values, sigma: cv.GaussianBlur(values, (kernel_size(sigma),) * 2, sigma))


def region(box: tuple[float, float, float], output_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The output pixels the square covers, clipped to the frame: (x0, y0, x1, y1), x1 and y1 exclusive."""
    bx, by, side = box
    width, height = output_size
    return (max(0, int(np.floor(bx))), max(0, int(np.floor(by))), min(width, int(np.ceil(bx + side))),
            min(height, int(np.ceil(by + side))))


def square_to_region(box: tuple[float, float, float], bounds: tuple[int, int, int, int], n: int) -> np.ndarray:
    """The 2 x 3 inverse affine map from region pixels to the n x n square's pixels (``WARP_INVERSE_MAP``).

    Region pixel (i, j) is output pixel (x0 + i, y0 + j), edge coordinate x0 + i + 0.5; in the square that is the
    pixel coordinate (x0 + i + 0.5 - bx) * n / side - 0.5.
    """
    bx, by, side = box
    k = n / side
    return np.array([[k, 0, (bounds[0] + 0.5 - bx) * k - 0.5],
                     [0, k, (bounds[1] + 0.5 - by) * k - 0.5]], dtype=np.float64)


def footprint(matrix: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: tuple[int, int]
              ) -> tuple[int, int, int, int]:
    """The region pixels whose bilinear footprint in the square reaches the square pixels spanned by ``rows`` and
    ``cols`` (sorted indices): (x0, y0, x1, y1) in region pixels, exclusive ends, within ``size`` (width, height).

    Args:
        matrix: The region-to-square map (``square_to_region``).
    """
    k, c = matrix[0, 0], matrix[:, 2]
    width, height = size
    return (max(0, int(np.floor((cols[0] - 1 - c[0]) / k))), max(0, int(np.floor((rows[0] - 1 - c[1]) / k))),
            min(width, int(np.ceil((cols[-1] + 1 - c[0]) / k)) + 1),
            min(height, int(np.ceil((rows[-1] + 1 - c[1]) / k)) + 1))


def sample_square(square: np.ndarray, matrix: np.ndarray, sub: tuple[int, int, int, int], border: int) -> np.ndarray:
    """A square map sampled (bilinear) at the region pixels ``sub`` (x0, y0, x1, y1): (y1 - y0) x (x1 - x0) [x C].

    Args:
        square: The map (n x n [x C]).
        matrix: The region-to-square map (``square_to_region``) at the map's own side.
        border: OpenCV's border mode past the square (zeros for ``BORDER_CONSTANT``).
    """
    cv = cv2()
    matrix = matrix.copy()
    matrix[:, 2] += matrix[:, :2] @ np.array([sub[0], sub[1]], np.float64)  # start at the part's corner
    return cv.warpAffine(square, matrix, (sub[2] - sub[0], sub[3] - sub[1]),
                         flags=cv.INTER_LINEAR | cv.WARP_INVERSE_MAP, borderMode=border, borderValue=0)


def whole_frame(values: np.ndarray | None, output_size: tuple[int, int], bounds: tuple[int, int, int, int]
                ) -> np.ndarray:
    """Region values placed in an output-sized H x W float32 frame of zeros (zeros alone for None)."""
    width, height = output_size
    full = np.zeros((height, width), np.float32)
    if values is not None:
        x0, y0, x1, y1 = bounds
        full[y0:y1, x0:x1] = values
    return full


class PasteBack:
    """Pastes animated squares into one framed photo (OpenCV, on the host), without detail transfer.

    Args:
        framed: H x W x 3 uint8, the framed photo (``live.framing.layout.render_framed``).
        reference: n x n x 3 uint8, the avatar's unanimated crop (what the backend renders at rest).
        box: The square in output edge coordinates (x0, y0, side) (``live.framing.layout.Framing.box``).
    """

    def __init__(self, *, framed: np.ndarray, reference: np.ndarray, box: tuple[float, float, float]) -> None:
        self.framed = framed
        self.reference = reference
        self.box = box
        self.output_size = (framed.shape[1], framed.shape[0])
        self.bounds = region(box, self.output_size)
        self.matrix = square_to_region(box, self.bounds, reference.shape[0])
        self.last_mask: np.ndarray | None = None  # the last mask over the region (tests, benchmarks)

    def _masked(self, animated: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
        """(a copy of the framed photo, the part of the region to paste into: x0, y0, x1, y1 in region pixels, or
        None when nothing changed); the mask over the region is left in ``last_mask``."""
        out = self.framed.copy()
        x0, y0, x1, y1 = self.bounds
        if x1 <= x0 or y1 <= y0:
            return out, None
        small = change_mask(animated, self.reference)  # n x n
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)  # rh x rw
        self.last_mask = mask
        rows, cols = np.flatnonzero(small.any(axis=1)), np.flatnonzero(small.any(axis=0))
        if rows.size == 0:
            return out, None
        # Only the mask's support changes (a face at rest changes a few features, not the whole square).
        sub = footprint(self.matrix, rows, cols, (x1 - x0, y1 - y0))
        mask[sub[1]:sub[3], sub[0]:sub[2]] = sample_square(small, self.matrix, sub, cv2().BORDER_CONSTANT)
        return out, sub

    def _blend(self, out: np.ndarray, sub: tuple[int, int, int, int], animated: np.ndarray) -> np.ndarray:
        """``out`` with ``animated`` (the part ``sub``, uint8) blended in through the mask."""
        x0, y0 = self.bounds[:2]
        assert self.last_mask is not None
        weight = self.last_mask[sub[1]:sub[3], sub[0]:sub[2]]
        target = out[y0 + sub[1]:y0 + sub[3], x0 + sub[0]:x0 + sub[2]]
        target[:] = cv2().blendLinear(animated, target, weight, 1.0 - weight)
        return out

    def paste(self, rendered: Rendered) -> np.ndarray:
        """The framed photo with the rendered square (``rendered.image()``, n x n x 3 uint8) pasted in: H x W x 3
        uint8, a new array."""
        animated = rendered.image()
        out, sub = self._masked(animated)
        if sub is None:
            return out
        return self._blend(out, sub, sample_square(animated, self.matrix, sub, cv2().BORDER_REPLICATE))

    def full_mask(self) -> np.ndarray:
        """The last paste's mask over the whole output: H x W float32 (zeros before the first paste)."""
        return whole_frame(self.last_mask, self.output_size, self.bounds)
