"""Which triangle covers each pixel: a triangle index image drawn in a few whole-array numpy calls.

The warp (``live.landmarks.warp``) needs, per output pixel, the moved triangle that shows there; triangles drawn
later win where they overlap (the nearer surface where the mesh folds). ``triangle_index_filled`` draws it with one
``cv2.fillConvexPoly`` per triangle, ~1000 calls a frame, each of which releases the GIL (so that in the live loop
the tracking thread may take it a thousand times in a render); ``triangle_index`` cuts every triangle into one
horizontal span per pixel row, the spans into pixels, and keeps per pixel the latest-drawn triangle through
``np.maximum.at`` on draw ranks, in about twenty numpy calls. Alone it is slower (1.6 against 1.1 ms at 256 x 256,
2-core Xeon, one OpenCV thread); in the live loop at 1280 x 720 the model thread's CPU per frame came out the same
and the frame rate within the noise of a loaded machine (``benchmarks/RESULTS.md``, 2026-12-07), so the warp uses
the fills unless ``FOMM_LIVE_RASTER=spans``.

Convention: pixel (x, y) has its centre at integer (x, y). A triangle takes the pixels the fills took, near enough:
its corners rounded to 1/16 pixel, the rows from its top corner's y to its bottom corner's, each rounded to the
nearest pixel, and in each row the columns from the left edge's crossing to the right edge's, rounded, both
included; so a triangle takes the pixels along its edges too, and of two neighbours the later-drawn one takes their
shared edge (the nearer surface reaches half a pixel over the farther one where the mesh folds, and a moved lip keeps
its thickness as the face mesh reads it back), and a triangle thinner than a pixel still takes a line of pixels.
Unlike the fills, an edge's crossing is taken at each row's centre (OpenCV steps from the corner's row), and the
outline is not drawn again as a line: a few edge pixels differ (tests/test_landmarks_raster.py bounds them). A
triangulated frame is covered without a gap.
"""

from __future__ import annotations

import numpy as np

SUBPIXEL = 16  # corners are rounded to 1/16 pixel, as the fills' 4 fractional bits did


def _slope(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """x per unit of y along edges (dx, dy: T each); 0 for a horizontal edge."""
    return dx / np.where(dy != 0, dy, 1.0)


def triangle_index(corners: np.ndarray, shape: tuple[int, int], *, background: int,
                   labels: np.ndarray | None = None) -> np.ndarray:
    """The index image of triangles drawn in order, later ones over earlier ones (see the module docstring for
    which pixels a triangle takes).

    Args:
        corners: T x 3 x 2 float64 triangle corners (x, y) in grid units (pixel centres at integers), in draw order.
        shape: (rows, columns) of the image.
        background: The value of a pixel no triangle covers.
        labels: T ints, each triangle's value in the image (default: its position in ``corners``).

    Returns:
        rows x columns int32.
    """
    height, width = shape
    count = len(corners)
    values = np.arange(count, dtype=np.int32) if labels is None else np.asarray(labels, np.int32)
    table = np.concatenate([np.array([background], np.int32), values])  # T + 1: draw rank + 1 -> value
    image = np.zeros(height * width, np.int32)  # per pixel, the latest draw rank covering it, plus 1 (0: none)
    corners = np.round(corners * SUBPIXEL) / SUBPIXEL  # as the fills' fixed point has them
    # Corners by y: top, middle, bottom (T each).
    by_y = np.argsort(corners[..., 1], axis=1)  # T x 3
    xs = np.take_along_axis(corners[..., 0], by_y, axis=1)  # T x 3
    ys = np.take_along_axis(corners[..., 1], by_y, axis=1)
    (tx, mx, bx), (ty, my, by) = xs.T, ys.T
    long_slope, upper_slope, lower_slope = _slope(bx - tx, by - ty), _slope(mx - tx, my - ty), _slope(bx - mx, by - my)
    # Rows from the top corner's, rounded, to the bottom corner's, rounded, both included.
    first = np.maximum(np.floor(ty + 0.5), 0).astype(np.int64)  # T
    last = np.minimum(np.floor(by + 0.5), height - 1).astype(np.int64)
    heights = np.maximum(last - first + 1, 0)  # T
    spans = int(heights.sum())
    if spans:
        tri = np.repeat(np.arange(count), heights)  # S: one span per triangle and row
        rows = np.arange(spans) - np.repeat(np.cumsum(heights) - heights - first, heights)  # S
        # The row's crossings with the triangle's edges, at the row's centre held within the triangle's height
        # (the first and last rows take the corner's own x).
        y = np.clip(rows.astype(np.float64), ty[tri], by[tri])  # S
        long_x = tx[tri] + (y - ty[tri]) * long_slope[tri]  # the edge from top to bottom spans every row
        upper = y < my[tri]  # S: rows above the middle corner cross top-middle, the others middle-bottom
        short_x = np.where(upper, tx[tri] + (y - ty[tri]) * upper_slope[tri],
                           mx[tri] + (y - my[tri]) * lower_slope[tri])
        # Columns from the left crossing, rounded, to the right one, rounded, both included.
        x0 = np.maximum(np.floor(np.minimum(long_x, short_x) + 0.5), 0).astype(np.int64)  # S
        x1 = np.minimum(np.floor(np.maximum(long_x, short_x) + 0.5), width - 1).astype(np.int64)
        lengths = np.maximum(x1 - x0 + 1, 0)  # S
        total = int(lengths.sum())
        if total:
            # P: the flat index of each covered pixel, span by span
            pixels = np.arange(total, dtype=np.int64) + np.repeat(rows * width + x0 - (np.cumsum(lengths) - lengths),
                                                                  lengths)
            np.maximum.at(image, pixels, np.repeat(tri.astype(np.int32) + 1, lengths))
    return np.take(table, image).reshape(height, width)


def triangle_index_filled(corners: np.ndarray, shape: tuple[int, int], *, background: int,
                          labels: np.ndarray | None = None) -> np.ndarray:
    """``triangle_index`` drawn with one ``cv2.fillConvexPoly`` per triangle (corners rounded to 1/16 pixel, edge
    pixels included): the warp's default (``FOMM_LIVE_RASTER``) and the spans' reference. Same arguments and
    result."""
    from fomm_live.live.media import cv2

    cv = cv2()
    image = np.full(shape, background, np.int32)
    values = range(len(corners)) if labels is None else np.asarray(labels).tolist()
    polys = np.round(corners * SUBPIXEL).astype(np.int32)  # T x 3 x 2, 4 fractional bits
    for value, poly in zip(values, polys, strict=True):
        cv.fillConvexPoly(image, poly, int(value), cv.LINE_8, 4)
    return image
