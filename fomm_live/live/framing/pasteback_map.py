"""Paste-back along the backend's own warp: the full-resolution photo itself moved, for a backend that renders by
warping its source (the landmark backend: ``LandmarkBackend.render(motion, detail=True)``).

The landmark backend warps its n x n source square (n = 256) with a piecewise-affine map and paints a few parts over
the warp (closing lids, eyeballs, lashes, the mouth's inside). Its backward map says, per square pixel, where in the
source square that pixel comes from; the framed photo holds the same square at the output's resolution (a 2x to 4x
larger face at 1280 x 720). So the map is brought to the output's resolution and the framed photo is moved along it:

    displacement = source_map - identity                # n x n x 2 square pixels, 0 where nothing moved
    out(u) = photo(u + upsample(displacement) * side / n)  # sampled at every output pixel of the moved part

The displacement, not the map, is upsampled: it is 0 along the square's border (the mesh's anchors are fixed), so
sampling past the border with zeros is exact, and a piecewise-affine map is linear inside each triangle, so bilinear
upsampling is exact there and blends two neighbouring maps only within one model pixel of a triangle's edge. The
painted parts have no counterpart in the photo: there the rendered frame, brought to the output by the same bilinear
sampling, is blended in with a soft weight (the painted pixels blurred by ``PAINT_SIGMA`` model pixels, doubled and
capped at 1: a painted part's own pixels show fully and its edge fades over two model pixels).

Only what moved is computed: the output pixels whose bilinear footprint reaches a square pixel displaced by more
than ``STILL_PX`` (in the sampled photo's pixels) or painted. ``cv2.remap`` quantises its map to 1/32 of a pixel, so
a pixel displaced by less than 1/64 samples the photo's own pixel exactly: outside the moved part, and wherever the
displacement is under ``STILL_PX``, the output is the framed photo bit for bit, and there is no seam, because the
warp is continuous and fades to nothing at the mesh's fixed border.

The photo is sampled nearly as sharply as bicubically, at the cost of a bilinear lookup: the face's region of the
photo is enlarged ``UPSAMPLE`` times once, when the paster is made (``upsample``: its own pixels at every
``UPSAMPLE``-th place, OpenCV's bicubic values between them), and each frame samples that bilinearly at
``UPSAMPLE`` times the map's coordinates. Bilinear sampling of the photo itself averages neighbouring pixels at
sub-pixel offsets (the face's variance of the Laplacian fell to 79% of the photo's at rest on the demo clip at
1280 x 720, ``tests/test_fullres.py``); OpenCV's bicubic remap of the photo kept 95-96% but was a third of the live
landmark loop's model thread. Enlarged three times the face keeps 92-93%, and the whole paste-back took 5.1-5.2 ms
a frame in the loop (``benchmarks.framing``, 2-core test CPU, 480 x 480 face at 1280 x 720) against 6.2-6.4 ms
enlarged four times (93-94%: the larger copy falls out of the cache) and 5.0 ms twice (89-90%).
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.backends import Rendered
from fomm_live.live.framing.pasteback import footprint, kernel_size, region, sample_square, square_to_region
from fomm_live.live.media import cv2

# Pixels of the sampled (enlarged) photo: a displacement under this samples the photo's own pixel (remap's 1/32 grid).
STILL_PX = 1 / 128
PAINT_SIGMA = 1.0  # model pixels: the soft edge of a painted part
PAINT_GAIN = 2.0  # the blurred painted mask times this, capped at 1: a painted part's own pixels show fully
UPSAMPLE = 3  # how many times the face's region of the photo is enlarged for sampling (see the module docstring)
MARGIN = 2  # photo pixels around the face's region enlarged with it: the bicubic taps of its edge pixels


def cubic_weights(t: float) -> np.ndarray:
    """OpenCV's bicubic weights (a = -0.75) of the four pixels around a point ``t`` (0..1) past the second."""
    a = -0.75
    x = np.abs(np.array([1 + t, t, 1 - t, 2 - t], np.float64))
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0)).astype(np.float32)


def upsample(image: np.ndarray, factor: int) -> np.ndarray:
    """The image enlarged ``factor`` times for bilinear sampling at nearly bicubic sharpness:
    (f (H - 1) + 1) x (f (W - 1) + 1) [x C] uint8 with the image's own pixel (y, x) at (f y, f x) and OpenCV's
    bicubic interpolation (replicated border) at the places between.

    Args:
        image: H x W [x C] uint8.
        factor: f >= 1.
    """
    cv = cv2()

    def along(values: np.ndarray, axis: int) -> np.ndarray:
        shape = list(values.shape)
        shape[axis] = factor * (shape[axis] - 1) + 1
        out = np.empty(shape, np.float32)
        at = [slice(None)] * values.ndim
        at[axis] = slice(0, None, factor)
        out[tuple(at)] = values
        for k in range(1, factor):  # the values k / factor of the way to the next pixel
            weights = cubic_weights(k / factor)
            kernel, anchor = (weights.reshape(1, 4), (1, 0)) if axis == 1 else (weights.reshape(4, 1), (0, 1))
            between = cv.filter2D(values, -1, kernel, anchor=anchor, borderType=cv.BORDER_REPLICATE)
            at[axis] = slice(k, None, factor)
            out[tuple(at)] = between[:, :-1] if axis == 1 else between[:-1]
        return out

    enlarged = along(along(image.astype(np.float32), 1), 0)
    # Rounded and saturated by OpenCV (numpy's rint and clip over the result cost ten times as much).
    return cv.add(enlarged, 0.0, dtype=cv.CV_8U).reshape(enlarged.shape)


class MapPasteBack:
    """Moves one framed photo along a warping backend's maps (OpenCV, on the host).

    Args:
        framed: H x W x 3 uint8, the framed photo (``live.framing.layout.render_framed``).
        size: n, the side of the backend's square.
        box: The square in output edge coordinates (x0, y0, side) (``live.framing.layout.Framing.box``).
    """

    def __init__(self, *, framed: np.ndarray, size: int, box: tuple[float, float, float]) -> None:
        self.framed = framed
        self.box = box
        self.n = n = int(size)
        self.output_size = (framed.shape[1], framed.shape[0])
        self.bounds = x0, y0, x1, y1 = region(box, self.output_size)
        self.matrix = square_to_region(box, self.bounds, n)
        self.scale = box[2] / n  # output pixels per square pixel
        grid = np.arange(n, dtype=np.float32)
        self.square_grid = np.stack(np.meshgrid(grid, grid), axis=-1)  # n x n x 2: (x, y) of each square pixel
        # The face's region with a margin, enlarged (``upsample``: 6 MB and about 40 ms once for a 480 x 480 face).
        h, w = framed.shape[:2]
        ex0, ey0 = max(0, x0 - MARGIN), max(0, y0 - MARGIN)
        ex1, ey1 = min(w, x1 + MARGIN), min(h, y1 + MARGIN)
        self.source = upsample(framed[ey0:ey1, ex0:ex1], UPSAMPLE) if x1 > x0 and y1 > y0 else framed
        xs, ys = np.arange(x0 - ex0, x1 - ex0, dtype=np.float32), np.arange(y0 - ey0, y1 - ey0, dtype=np.float32)
        # rh x rw x 2: each output pixel of the region, (x, y) in the enlarged region's pixels
        self.region_grid = UPSAMPLE * np.stack(np.meshgrid(xs, ys), axis=-1)
        # The last paste's moved part and its displacement and paint weight over it (for ``full_mask``).
        self._last: tuple | None = None

    def paste(self, rendered: Rendered) -> np.ndarray:
        """The framed photo moved along the render's warp (``rendered.warp``, a ``live.backends.WarpMap``), its
        painted parts taken from the rendered frame: H x W x 3 uint8, a new array."""
        if rendered.warp is None:
            raise ValueError("MapPasteBack needs the backend's warp map: render with detail=True")
        warp, frame = rendered.warp, rendered.image()
        cv = cv2()
        out = self.framed.copy()
        self._last = None
        x0, y0, x1, y1 = self.bounds
        if x1 <= x0 or y1 <= y0:
            return out
        displacement = cv.subtract(warp.source_map, self.square_grid)  # n x n x 2 square pixels
        displacement *= np.float32(UPSAMPLE * self.scale)  # the enlarged region's pixels
        size = np.abs(displacement)
        # n x n (numpy's max over a last axis of 2 is slow)
        moved = np.maximum(size[..., 0], size[..., 1]) > STILL_PX
        weight = None
        if warp.painted.any():
            k = kernel_size(PAINT_SIGMA)
            weight = cv.GaussianBlur(warp.painted.astype(np.float32), (k, k), PAINT_SIGMA,
                                     borderType=cv.BORDER_CONSTANT)
            weight = np.minimum(1.0, PAINT_GAIN * weight)  # n x n
            moved |= weight > 0
        rows, cols = np.flatnonzero(moved.any(axis=1)), np.flatnonzero(moved.any(axis=0))
        if rows.size == 0:
            return out
        size = (x1 - x0, y1 - y0)
        sub = footprint(self.matrix, rows, cols, size)
        shift = sample_square(displacement, self.matrix, sub, cv.BORDER_CONSTANT)  # h x w x 2 enlarged pixels
        where = cv.add(self.region_grid[sub[1]:sub[3], sub[0]:sub[2]], shift)  # h x w x 2 enlarged pixels
        photo = out[y0 + sub[1]:y0 + sub[3], x0 + sub[0]:x0 + sub[2]]  # h x w x 3, a view: written in place
        cv.remap(self.source, where, None, cv.INTER_LINEAR, dst=photo, borderMode=cv.BORDER_REPLICATE)
        painted = None
        if weight is not None:  # the rendered frame over the painted parts only (eyes and mouth: a few percent)
            rows, cols = np.flatnonzero((weight > 0).any(axis=1)), np.flatnonzero((weight > 0).any(axis=0))
            part = footprint(self.matrix, rows, cols, size)  # inside ``sub``
            painted = sample_square(weight, self.matrix, part, cv.BORDER_CONSTANT)  # ph x pw
            # ph x pw x 3: the rendered square brought to the output
            frame = sample_square(frame, self.matrix, part, cv.BORDER_CONSTANT)
            target = photo[part[1] - sub[1]:part[3] - sub[1], part[0] - sub[0]:part[2] - sub[0]]
            target[:] = cv.blendLinear(frame, target, painted, 1.0 - painted)
            painted = (part, painted)
        self._last = (sub, shift, painted)
        return out

    def full_mask(self) -> np.ndarray:
        """Where the last paste may differ from the framed photo: H x W float32, 1 where the photo was displaced by
        more than ``STILL_PX`` (of the enlarged photo) or painted over, else 0 (zeros before the first paste)."""
        width, height = self.output_size
        full = np.zeros((height, width), np.float32)
        if self._last is not None:
            (sx0, sy0, sx1, sy1), shift, painted = self._last
            support = np.abs(shift).max(axis=2) > STILL_PX  # h x w (the shift is in enlarged pixels)
            if painted is not None:
                (px0, py0, px1, py1), weight = painted
                support[py0 - sy0:py1 - sy0, px0 - sx0:px1 - sx0] |= weight > 0
            x0, y0 = self.bounds[:2]
            full[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1] = support
        return full
