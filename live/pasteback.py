"""Paste-back: the animated square put back into the framed photo through a soft mask, with no visible seam.

The mask is made at the model's resolution (n x n, n = 256) from two factors:

- a fixed window: a rounded square (superellipse, exponent 4) that is exactly 0 from ``WINDOW_EDGE`` of the
  half-side outwards and rises with a smoothstep over ``WINDOW_RAMP`` of the half-side. A smoothstep starts flat, so
  at the mask's edge the output's gradient is the photo's (the 9x9 seam band sees 4 output pixels inside the edge,
  where the weight is under 2% at 1280 x 720), and there is no box corner;
- a change mask: where the animated square differs from the avatar's unanimated crop. The per-pixel difference
  (largest channel, in levels) is blurred (``DIFF_SIGMA``), mapped to [0, 1] by a smoothstep between ``DIFF_LOW``
  and ``DIFF_HIGH`` levels, and blurred again (``SPREAD_SIGMA``) so that a moving part carries a soft halo. Where
  nothing moved (the background, the shoulders, a face at rest) the weight is 0 and the photo's own full-resolution
  pixels show.

The product is brought to the output's resolution with the same bilinear sampling as the animated square, and
``out = round(mask * animated + (1 - mask) * photo)`` in the square's bounding box; every pixel outside the mask's
support is the framed photo's, bit for bit.

This file is the OpenCV path (the landmark backend, and any backend that renders on the host).
``live.pasteback_torch`` is the same paste-back in PyTorch, on the model's device, with the FOMM detail transfer;
both share the mask's definition here, and the tests hold them to each other.
"""

from __future__ import annotations

import functools

import numpy as np

from live.media import cv2

WINDOW_EDGE = 0.97  # superellipse radius (fraction of the half-side) where the window reaches 0
WINDOW_RAMP = 0.35  # the window rises from 0 to 1 over this much of the half-side
WINDOW_POWER = 4  # superellipse exponent: a square with round corners (2 would be a circle, leaving the neck out)
DIFF_LOW = 2.0  # levels of change below which a pixel counts as unmoved (uint8 rounding and mesh noise: 1 level)
DIFF_HIGH = 10.0  # levels of change from which the animation shows fully
DIFF_SIGMA = 1.5  # model pixels: blur of the difference before the threshold (a lone noisy pixel does not switch)
SPREAD_SIGMA = 5.0  # model pixels: the soft halo around a moving part (2% of a 256 square)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """3x^2 - 2x^3 of x clipped to [0, 1]: 0 and 1 with zero slope at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def kernel_size(sigma: float) -> int:
    """The odd Gaussian kernel width used on both paths: 3 sigma either side."""
    return 2 * int(np.ceil(3 * sigma)) + 1


@functools.lru_cache(maxsize=8)
def window(n: int) -> np.ndarray:
    """The fixed window of an n x n square: n x n float32 in [0, 1], 0 near the square's border."""
    c = (np.arange(n, dtype=np.float64) + 0.5) * 2 / n - 1  # n: pixel centres in [-1, 1]
    r = (np.abs(c)[None, :] ** WINDOW_POWER + np.abs(c)[:, None] ** WINDOW_POWER) ** (1 / WINDOW_POWER)  # n x n
    return smoothstep((WINDOW_EDGE - r) / WINDOW_RAMP).astype(np.float32)


def change_mask(animated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The paste mask at the model's resolution: window times change, n x n float32 in [0, 1].

    Args:
        animated: n x n x 3 uint8, the backend's frame.
        reference: n x n x 3 uint8, the avatar's unanimated crop.
    """
    cv = cv2()
    diff = cv.absdiff(animated, reference).max(axis=2).astype(np.float32)  # n x n levels
    k = kernel_size(DIFF_SIGMA)
    diff = cv.GaussianBlur(diff, (k, k), DIFF_SIGMA)
    moved = smoothstep((diff - DIFF_LOW) / (DIFF_HIGH - DIFF_LOW)).astype(np.float32)
    k = kernel_size(SPREAD_SIGMA)
    moved = cv.GaussianBlur(moved, (k, k), SPREAD_SIGMA)
    return window(animated.shape[0]) * np.minimum(1.0, 2.0 * moved)  # x2: the halo's centre stays fully animated


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


class PasteBack:
    """Pastes animated squares into one framed photo (OpenCV, on the host).

    Args:
        framed: H x W x 3 uint8, the framed photo (``live.framing.render_framed``).
        reference: n x n x 3 uint8, the avatar's unanimated crop (what the backend renders at rest).
        box: The square in output edge coordinates (x0, y0, side) (``live.framing.Framing.box``).
    """

    def __init__(self, *, framed: np.ndarray, reference: np.ndarray, box: tuple[float, float, float]) -> None:
        self.framed = framed
        self.reference = reference
        self.box = box
        self.output_size = (framed.shape[1], framed.shape[0])
        self.bounds = region(box, self.output_size)
        self.matrix = square_to_region(box, self.bounds, reference.shape[0])
        self.last_mask: np.ndarray | None = None  # the last mask over the region (tests, benchmarks)

    def paste(self, animated: np.ndarray) -> np.ndarray:
        """The framed photo with ``animated`` (n x n x 3 uint8) pasted in: H x W x 3 uint8, a new array."""
        cv = cv2()
        out = self.framed.copy()
        x0, y0, x1, y1 = self.bounds
        if x1 <= x0 or y1 <= y0:
            return out
        size = (x1 - x0, y1 - y0)
        flags = cv.INTER_LINEAR | cv.WARP_INVERSE_MAP
        mask = cv.warpAffine(change_mask(animated, self.reference), self.matrix, size, flags=flags,
                             borderMode=cv.BORDER_CONSTANT, borderValue=0)  # rh x rw float32
        self.last_mask = mask
        if not mask.any():
            return out
        up = cv.warpAffine(animated, self.matrix, size, flags=flags, borderMode=cv.BORDER_REPLICATE)  # rh x rw x 3
        photo = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = cv.blendLinear(up, photo, mask, 1.0 - mask)
        return out

    def full_mask(self) -> np.ndarray:
        """The last paste's mask over the whole output: H x W float32 (zeros before the first paste)."""
        width, height = self.output_size
        full = np.zeros((height, width), np.float32)
        if self.last_mask is not None:
            x0, y0, x1, y1 = self.bounds
            full[y0:y1, x0:x1] = self.last_mask
        return full
