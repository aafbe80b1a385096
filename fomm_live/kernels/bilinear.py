"""Bilinear sampling arithmetic shared by the Triton kernels (needs ``triton``; import through ``kernels``).

Convention: ``grid_sample(align_corners=False, padding_mode="zeros")``: a normalised coordinate g in [-1, 1] maps to
the pixel position ((g + 1) * size - 1) / 2, and taps outside the plane read as zero.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def bilinear_taps(gx, gy, H, W):
    """The four taps of a bilinear sample at normalised (gx, gy) of an H x W plane.

    Returns clamped tap indices (cx0, cx1, cy0, cy1), always inside the plane so every pointer is valid; the weights
    (wx0, wx1, wy0, wy1); and the in-plane masks (in_x0, in_x1, in_y0, in_y1) that zero the taps lying outside.
    """
    ix = ((gx + 1.0) * W - 1.0) * 0.5  # align_corners=False unnormalisation
    iy = ((gy + 1.0) * H - 1.0) * 0.5
    # Anything beyond one pixel outside samples zero; clamping there first keeps the int conversion defined for
    # huge coordinates (a degenerate jacobian) without changing a result.
    ix = tl.minimum(tl.maximum(ix, -2.0), W + 1.0)
    iy = tl.minimum(tl.maximum(iy, -2.0), H + 1.0)
    x0f = tl.floor(ix)
    y0f = tl.floor(iy)
    wx1 = ix - x0f
    wy1 = iy - y0f
    wx0 = 1.0 - wx1
    wy0 = 1.0 - wy1
    x0 = x0f.to(tl.int32)
    y0 = y0f.to(tl.int32)
    x1 = x0 + 1
    y1 = y0 + 1
    in_x0 = (x0 >= 0) & (x0 < W)
    in_x1 = (x1 >= 0) & (x1 < W)
    in_y0 = (y0 >= 0) & (y0 < H)
    in_y1 = (y1 >= 0) & (y1 < H)
    cx0 = tl.minimum(tl.maximum(x0, 0), W - 1)
    cx1 = tl.minimum(tl.maximum(x1, 0), W - 1)
    cy0 = tl.minimum(tl.maximum(y0, 0), H - 1)
    cy1 = tl.minimum(tl.maximum(y1, 0), H - 1)
    return cx0, cx1, cy0, cy1, wx0, wx1, wy0, wy1, in_x0, in_x1, in_y0, in_y1
