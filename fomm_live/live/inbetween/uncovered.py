"""What a warp of the keyframe cannot show, made up: the pixels no triangle covers where the face turns towards the
camera (``fill_holes``), and the new gap of a mouth opening past the keyframe's (``paint_gap``). Used by
``live.inbetween.renderer``.
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.landmarks.mouth import THROAT
from fomm_live.live.landmarks.points import INNER_LIP_POLYGON
from fomm_live.live.landmarks.warp import SourceMesh, Warp
from fomm_live.live.media import cv2

# A mouth that opens past the keyframe's has no pixels for the new gap: the warp would stretch the lip line across
# it. The gap is painted dark (the landmark backend's cavity colour), blended in as the opening grows past the
# keyframe's by up to this much (inner-lip gap over mouth width, as ``mouth_opening``), and only for the share of
# the gap that is new (``gap_amount``): a keyframe whose mouth was already half as open shows its own cavity
# stretched, half darkened, instead of a dark hole between two keyframes that show teeth. What the cavity holds
# waits for the next keyframe.
MOUTH_NEW_GAP_FULL = 0.08
MOUTH_EDGE = 0.6  # gaussian sigma of the painted gap's edge, square pixels

# Where the face turns towards the camera after the keyframe, surfaces hidden in the keyframe come into view (the far
# cheek): their triangles were turned over at P_k, so the warp leaves them out and no triangle covers those pixels.
# The identity there showed whatever the keyframe had at that place (a second eye beside the cheek, on the drawn demo
# clip's head turn with keyframes 5 frames late). They now take the turned-over triangles' own maps (the fold's
# mirror of the surface beside it: mostly skin, some of the eye's outline), and what those do not cover moves as
# its surroundings do on average (a normalised gaussian average of the covered pixels' motion, this reach as a
# fraction of the square's side). On that clip (latency 5, cross-fade 2): 4.26 dB over holding either way (4.25 with
# the average alone, which left a dark smear; 4.20 with the face triangles' motion alone, which brought in the hair).
HOLE_REACH = 0.03


def fill_holes(pmap: np.ndarray, *, warp: Warp, mesh: SourceMesh, inside: np.ndarray,
               targets: np.ndarray) -> np.ndarray:
    """``pmap`` with the points no triangle covers filled: by the turned-over triangles' own maps where they lie
    (the fold's mirror of the nearby surface), else by the motion around them (see HOLE_REACH).

    Args:
        pmap: rows x cols x 2 float32, ``warp.backward_map``'s last map (its ``index`` tells the holes).
        warp: The warp at the keyframe's grid.
        mesh: The keyframe's mesh (P_k as the source positions).
        inside: rows x cols bool: the grid points within the square's mesh (the others keep their own position).
        targets: M x 2 vertex positions now, square pixels.
    """
    holes = (warp.index == len(mesh.triangles)) & inside  # rows x cols: no front-facing triangle here
    if not holes.any():
        return pmap
    cv = cv2()
    filled = pmap.copy()
    src = mesh.vertices[mesh.triangles]  # T x 3 x 2: at P_k
    dst = targets[mesh.triangles]  # T x 3 x 2: now
    d1, d2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]
    s1, s2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]  # T
    det_src = s1[:, 0] * s2[:, 1] - s2[:, 0] * s1[:, 1]
    turned = np.flatnonzero((det * det_src < 0) & (np.abs(det) > 1e-3))
    if len(turned):
        index = np.full(holes.shape, -1, np.int32)
        for t, poly in zip(turned.tolist(), np.round(warp.to_grid(dst[turned]) * 16).astype(np.int32),
                           strict=True):
            cv.fillConvexPoly(index, poly, t, cv.LINE_8, 4)
        ys, xs = np.nonzero(holes & (index >= 0))
        t = index[ys, xs]
        inv = 1.0 / det[t]
        at = warp.positions[ys, xs]  # K x 2: square pixels
        qx, qy = at[:, 0] - dst[t, 0, 0], at[:, 1] - dst[t, 0, 1]
        a = (d2[t, 1] * qx - d2[t, 0] * qy) * inv  # q = dst0 + a d1 + b d2
        b = (d1[t, 0] * qy - d1[t, 1] * qx) * inv
        filled[ys, xs] = (src[t, 0] + a[:, None] * s1[t] + b[:, None] * s2[t]).astype(np.float32)
        holes[ys, xs] = False
        if not holes.any():
            return filled
    covered = (~holes).astype(np.float32)  # rows x cols
    moves = (filled - warp.positions) * covered[..., None]  # rows x cols x 2
    sigma = HOLE_REACH * warp.size / warp.step  # grid points
    around = cv.GaussianBlur(moves, (0, 0), sigma) / np.maximum(cv.GaussianBlur(covered, (0, 0), sigma),
                                                                 1e-6)[..., None]
    filled[holes] = warp.positions[holes] + around[holes]
    return filled


def gap_amount(now: float, at_keyframe: float) -> float:
    """How far ``paint_gap`` darkens the mouth's gap (0..1): the opening past the keyframe's, eased in up to
    MOUTH_NEW_GAP_FULL, times the share of today's gap the keyframe had no pixels for.

    Args:
        now: The mouth's opening now; at_keyframe: at the keyframe (``live.landmarks.mouth.mouth_opening``).
    """
    opened = now - at_keyframe
    if opened <= 0.0:
        return 0.0
    return min(1.0, opened / MOUTH_NEW_GAP_FULL) * opened / now


def paint_gap(out: np.ndarray, moved: np.ndarray, *, origin: tuple[float, float], scale: float,
              at: tuple[int, int], amount: float) -> None:
    """Paint the inner-lip polygon of ``moved`` dark in ``out``, ``amount`` of the way, with a soft edge (see
    MOUTH_NEW_GAP_FULL).

    Args:
        out: h x w x 3 uint8, a region of an output frame whose first pixel is output pixel ``at`` (column, row).
        moved: 478 x 3 landmarks, square pixels.
        origin: The placement's (x0, y0); scale: output pixels per square pixel.
        amount: 0..1.
    """
    cv = cv2()
    height, width = out.shape[:2]
    polygon = moved[list(INNER_LIP_POLYGON), :2]  # P x 2, square pixels
    shift = np.array([origin[0] - at[0] - 0.5 + 0.5 * scale, origin[1] - at[1] - 0.5 + 0.5 * scale])
    points = polygon * scale + shift  # region pixels
    pad = int(np.ceil(3 * MOUTH_EDGE * scale)) + 2
    c0, r0 = np.maximum(np.floor(points.min(0)).astype(int) - pad, 0)
    c1, r1 = np.minimum(np.ceil(points.max(0)).astype(int) + pad + 1, [width, height])
    if c1 <= c0 or r1 <= r0:
        return
    mask = np.zeros((r1 - r0, c1 - c0), np.float32)
    cv.fillPoly(mask, [np.round((points - [c0, r0]) * 16).astype(np.int32)], 1.0, cv.LINE_AA, 4)
    mask = cv.GaussianBlur(mask, (0, 0), MOUTH_EDGE * scale) * np.float32(amount)  # h x w
    region = out[r0:r1, c0:c1].astype(np.float32)
    region += mask[..., None] * (THROAT - region)
    out[r0:r1, c0:c1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
