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
than ``STILL_PX`` (in output pixels) or painted. ``cv2.remap`` quantises its map to 1/32 of a pixel, so a pixel
displaced by less than 1/64 samples the photo's own pixel exactly: outside the moved part, and wherever the
displacement is under ``STILL_PX``, the output is the framed photo bit for bit, and there is no seam, because the
warp is continuous and fades to nothing at the mesh's fixed border.

The photo is sampled bicubically (``INTERPOLATION``): on the demo clip at 1280 x 720 the face's variance of the
Laplacian is 97% of the framed photo's at rest and 101% while turning and nodding, where bilinear sampling gave 79%
at rest (sub-pixel offsets average neighbouring pixels; ``tests/test_fullres.py``). It costs 2.1 ms against 0.6 ms
per frame over the 480 x 480 face square on the 2-core test CPU, and the whole paste-back with the label stays under
4 ms (``benchmarks/framing.py``).
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.backends import Rendered
from fomm_live.live.framing.pasteback import footprint, kernel_size, region, sample_square, square_to_region
from fomm_live.live.media import cv2

STILL_PX = 1 / 128  # output pixels: a displacement under this samples the photo's own pixel (remap's 1/32 grid)
PAINT_SIGMA = 1.0  # model pixels: the soft edge of a painted part
PAINT_GAIN = 2.0  # the blurred painted mask times this, capped at 1: a painted part's own pixels show fully
INTERPOLATION = "cubic"  # how the photo is sampled along the map: "cubic" or "linear" (see the module docstring)


class MapPasteBack:
    """Moves one framed photo along a warping backend's maps (OpenCV, on the host).

    Args:
        framed: H x W x 3 uint8, the framed photo (``live.framing.layout.render_framed``).
        size: n, the side of the backend's square.
        box: The square in output edge coordinates (x0, y0, side) (``live.framing.layout.Framing.box``).
    """

    def __init__(self, *, framed: np.ndarray, size: int, box: tuple[float, float, float]) -> None:
        cv = cv2()
        self.framed = framed
        self.box = box
        self.n = n = int(size)
        self.output_size = (framed.shape[1], framed.shape[0])
        self.bounds = x0, y0, x1, y1 = region(box, self.output_size)
        self.matrix = square_to_region(box, self.bounds, n)
        self.scale = box[2] / n  # output pixels per square pixel
        grid = np.arange(n, dtype=np.float32)
        self.square_grid = np.stack(np.meshgrid(grid, grid), axis=-1)  # n x n x 2: (x, y) of each square pixel
        xs, ys = np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32)
        self.region_grid = np.stack(np.meshgrid(xs, ys), axis=-1)  # rh x rw x 2: (x, y) of each output pixel
        self.interpolation = cv.INTER_CUBIC if INTERPOLATION == "cubic" else cv.INTER_LINEAR
        # OpenCV's bicubic remap is faster on float32 than on uint8 (2.1 against 2.7 ms over 480 x 480 on the 2-core
        # test CPU, 0.3 ms of it back for the conversion): the photo is kept as float32 too (11 MB at 1280 x 720).
        self.source = framed.astype(np.float32) if INTERPOLATION == "cubic" else framed
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
        displacement *= np.float32(self.scale)  # output pixels
        size = np.abs(displacement)
        moved = np.maximum(size[..., 0], size[..., 1]) > STILL_PX  # n x n (numpy's max over a last axis of 2 is slow)
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
        shift = sample_square(displacement, self.matrix, sub, cv.BORDER_CONSTANT)  # h x w x 2 output pixels
        where = cv.add(self.region_grid[sub[1]:sub[3], sub[0]:sub[2]], shift)  # h x w x 2 output pixels
        photo = out[y0 + sub[1]:y0 + sub[3], x0 + sub[0]:x0 + sub[2]]  # h x w x 3, a view: written in place
        if self.source.dtype == np.uint8:
            cv.remap(self.source, where, None, self.interpolation, dst=photo, borderMode=cv.BORDER_REPLICATE)
        else:  # rounded and saturated into the output (bicubic overshoots at edges)
            moved_photo = cv.remap(self.source, where, None, self.interpolation, borderMode=cv.BORDER_REPLICATE)
            cv.add(moved_photo, 0.0, dst=photo, dtype=cv.CV_8U)
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
        more than ``STILL_PX`` or painted over, else 0 (zeros before the first paste)."""
        width, height = self.output_size
        full = np.zeros((height, width), np.float32)
        if self._last is not None:
            (sx0, sy0, sx1, sy1), shift, painted = self._last
            support = np.abs(shift).max(axis=2) > STILL_PX  # h x w
            if painted is not None:
                (px0, py0, px1, py1), weight = painted
                support[py0 - sy0:py1 - sy0, px0 - sx0:px1 - sx0] |= weight > 0
            x0, y0 = self.bounds[:2]
            full[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1] = support
        return full
