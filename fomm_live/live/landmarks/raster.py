"""Which triangle covers each pixel: a triangle index image drawn in a few whole-array numpy calls.

The warp (``live.landmarks.warp``) needs, per output pixel, the moved triangle that shows there; triangles drawn
later win where they overlap (the nearer surface where the mesh folds). One ``cv2.fillConvexPoly`` per triangle did
it in ~1000 Python-level calls per frame; here every triangle is cut into one horizontal span per pixel row it
covers, the spans into pixels, and each pixel keeps the latest-drawn triangle through ``np.maximum.at`` on draw
ranks. Alone it is slower than the loop of fills (1.6 against 1.1 ms at 256 x 256, 2-core Xeon, one OpenCV thread),
but in the live loop it is quicker: every OpenCV call releases the GIL, and each of the ~1000 releases let the
tracking thread in, so that the render waited for it again and again (the loop at 1280 x 720: see
``benchmarks/RESULTS.md``, 2026-12-07).

Convention: pixel (x, y) has its centre at integer (x, y). A triangle covers the pixels whose centres lie inside it
by the top-left rule: rows ``ymin <= y < ymax``, and in a row the columns ``x_left <= x < x_right``, where the
crossings of the row with the triangle's edges are computed from each edge's own endpoints in one fixed order, so
that two triangles sharing an edge get the same crossing to the bit and split its pixels between them without a gap
or an overlap. Centres on the grid's last row or column (where the frame's border anchors lie) are included, so a
mesh whose outline is the frame's border covers every pixel exactly once where it does not fold. ``fillConvexPoly``
drew each triangle's edge pixels with it as well (so the later of two neighbours took their shared edge, and a
triangle thinner than a pixel still got a line of pixels); here an edge pixel goes to one side by the rule above and a
sliver that holds no pixel centre gets no pixel.
"""

from __future__ import annotations

import numpy as np


def _slope(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """x per unit of y along edges (dx, dy: T each); 0 for a horizontal edge, which no row crosses."""
    return dx / np.where(dy != 0, dy, 1.0)


def triangle_index(corners: np.ndarray, shape: tuple[int, int], *, background: int,
                   labels: np.ndarray | None = None) -> np.ndarray:
    """The index image of triangles drawn in order, later ones over earlier ones.

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
    # Corners by y: top, middle, bottom (T each). An edge's crossing with a row is computed from its upper end and
    # its slope, the same for both triangles that share it.
    by_y = np.argsort(corners[..., 1], axis=1)  # T x 3
    xs = np.take_along_axis(corners[..., 0], by_y, axis=1)  # T x 3
    ys = np.take_along_axis(corners[..., 1], by_y, axis=1)
    (tx, mx, bx), (ty, my, by) = xs.T, ys.T
    long_slope, upper_slope, lower_slope = _slope(bx - tx, by - ty), _slope(mx - tx, my - ty), _slope(bx - mx, by - my)
    # Rows whose centres are inside, ymin <= y < ymax; the grid's last row too where a triangle ends on it.
    first = np.maximum(np.ceil(ty), 0).astype(np.int64)  # T
    stop = np.where(by == height - 1, height, np.minimum(np.ceil(by), height)).astype(np.int64)
    heights = np.maximum(stop - first, 0)  # T
    spans = int(heights.sum())
    if spans:
        tri = np.repeat(np.arange(count), heights)  # S: one span per triangle and row
        rows = np.arange(spans) - np.repeat(np.cumsum(heights) - heights - first, heights)  # S
        y = rows.astype(np.float64)
        long_x = tx[tri] + (y - ty[tri]) * long_slope[tri]  # the edge from top to bottom spans every row
        # Rows above the middle corner cross the top-middle edge, the others the middle-bottom edge (on a flat
        # bottom along the grid's last row, slope 0: from the middle corner on).
        upper = y < my[tri]
        short_x = np.where(upper, tx[tri] + (y - ty[tri]) * upper_slope[tri],
                           mx[tri] + (y - my[tri]) * lower_slope[tri])
        left, right = np.minimum(long_x, short_x), np.maximum(long_x, short_x)
        x0 = np.maximum(np.ceil(left), 0).astype(np.int64)  # S: first column, inclusive
        x1 = np.where(right == width - 1, width, np.minimum(np.ceil(right), width)).astype(np.int64)  # exclusive
        lengths = np.maximum(x1 - x0, 0)  # S
        total = int(lengths.sum())
        if total:
            # P: the flat index of each covered pixel, span by span
            pixels = np.arange(total, dtype=np.int64) + np.repeat(rows * width + x0 - (np.cumsum(lengths) - lengths),
                                                                  lengths)
            np.maximum.at(image, pixels, np.repeat(tri.astype(np.int32) + 1, lengths))
    return np.take(table, image).reshape(height, width)


def triangle_index_filled(corners: np.ndarray, shape: tuple[int, int], *, background: int,
                          labels: np.ndarray | None = None) -> np.ndarray:
    """The reference: ``triangle_index`` drawn with one ``cv2.fillConvexPoly`` per triangle (corners rounded to
    1/16 pixel, edge pixels included), as the warp did before. Same arguments and result."""
    from fomm_live.live.media import cv2

    cv = cv2()
    image = np.full(shape, background, np.int32)
    values = range(len(corners)) if labels is None else np.asarray(labels).tolist()
    polys = np.round(corners * 16).astype(np.int32)  # T x 3 x 2, 4 fractional bits
    for value, poly in zip(values, polys, strict=True):
        cv.fillConvexPoly(image, poly, int(value), cv.LINE_8, 4)
    return image
