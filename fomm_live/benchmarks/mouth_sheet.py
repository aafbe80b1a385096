"""The wide-open mouth, looked at and measured: a 4x sheet of the mouth on each test face at rest, speaking and wide
open, and the mouth's measures, made by ``python -m fomm_live.benchmarks.faces`` (``mouth-4x.png``; the figures are
printed).

Measures, per face, with the driver's jaw dropped wide (``democlip.open_mouth`` at 1.3, the ``mouth wide`` column of
``benchmarks.faces``):
- inward shading: inside the painted opening, the mean grey level of the outer ring (within a fifth of the way
  from the lips to the deepest point) minus that of the core (the innermost fifth): a mouth shaded from the lips
  inward is lighter at the lips than deep inside; a flat dark shape scores about 0.
- lower lip: the lower lip's thickness as the face mesh reads it back from the frame (mean distance, over the
  mouth's middle, from the inner to the outer lower lip line of ``detect`` on the rendered frame) over its thickness
  in the moved landmarks that made the frame: 1 where the drawn lip keeps the thickness it was moved to, less where
  the painted mouth eats into it.
- lower teeth: the pixels lighter than the cavity in the opening's lower half, as separate crowns: how many blobs of
  at least 2 pixels they make (a row of teeth: one per tooth; a pale band along the lip: 1), and how many pixels high
  they are (the median of their columns' heights).
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.democlip import open_mouth
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.landmarks.points import INNER_LIP_POLYGON, INNER_LOWER_LIP, OUTER_LOWER_LIP
from fomm_live.live.media import cv2

POSES = {"neutral": 0.0, "speech": 0.45, "wide": 1.3}
TEETH_GREY = 110.0  # grey levels: brighter pixels in the opening are teeth
LIGHTER = 25.0  # grey levels over the cavity's median: the lower teeth (in shadow, darker than TEETH_GREY)
NAMES = ("photo", "drawn", "anime_a", "anime_b", "anime_c")


def grey(image: np.ndarray) -> np.ndarray:
    return cv2().cvtColor(image, cv2().COLOR_RGB2GRAY).astype(np.float32)


def inward_shading(frame: np.ndarray, points: np.ndarray) -> float:
    """The cavity's shading from the lips inward: the mean grey level of the opening's dark pixels (under
    TEETH_GREY: not teeth) between a fifth and a half of the way from the lips to the deepest point, minus that of
    those past four fifths of the way (0 for a flat fill)."""
    cv = cv2()
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv.fillPoly(mask, [np.round(points[list(INNER_LIP_POLYGON), :2]).astype(np.int32)], 1)
    depth = cv.distanceTransform(mask, cv.DIST_L2, 3)
    if depth.max() < 3:
        return 0.0
    g = grey(frame)
    dark = g < TEETH_GREY
    rim = dark & (depth > 0.2 * depth.max()) & (depth <= 0.5 * depth.max())
    core = dark & (depth >= 0.8 * depth.max())
    if not rim.any() or not core.any():
        return 0.0
    return float(g[rim].mean() - g[core].mean())


def lower_teeth(frame: np.ndarray, points: np.ndarray) -> tuple[int, float]:
    """(crowns, height): in the lower half of the opening (below the middle of the inner lips' gap, landmarks 13 and
    14, a pixel in from the lips), the blobs of at least 2 pixels lighter than the cavity (its median grey there plus
    LIGHTER), and the median height, in pixels, of their columns."""
    cv = cv2()
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv.fillPoly(mask, [np.round(points[list(INNER_LIP_POLYGON), :2]).astype(np.int32)], 1)
    mask = cv.erode(mask, np.ones((3, 3), np.uint8))
    mask[:int(np.ceil(points[[13, 14], 1].mean()))] = 0
    if not mask.any():
        return 0, 0.0
    g = grey(frame)
    light = ((g > np.median(g[mask > 0]) + LIGHTER) & (mask > 0)).astype(np.uint8)
    _, _, stats, _ = cv.connectedComponentsWithStats(light, connectivity=8)
    heights = light.sum(0)  # per column
    height = float(np.median(heights[heights > 0])) if heights.any() else 0.0
    return int((stats[1:, cv.CC_STAT_AREA] >= 2).sum()), height


def lower_lip_thickness(points: np.ndarray) -> float:
    """Mean distance from the inner to the outer lower lip line over the mouth's middle (points' units)."""
    inner = points[list(INNER_LOWER_LIP[3:-3]), :2]
    outer = points[list(OUTER_LOWER_LIP[3:-3]), :2]
    return float(np.linalg.norm(inner - outer, axis=1).mean())


def mouth_zoom(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A quarter of the frame's side square around the mouth, 4x (nearest)."""
    size = frame.shape[0]
    cx, cy = points[[13, 14], :2].mean(0)
    side = size // 4
    x0 = int(np.clip(cx - side / 2, 0, size - side))
    y0 = int(np.clip(cy - side / 2 + side / 8, 0, size - side))
    return cv2().resize(frame[y0:y0 + side, x0:x0 + side], None, fx=4, fy=4, interpolation=cv2().INTER_NEAREST)


def run(backend: LandmarkBackend, faces: dict) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """The sheet (a row per face: neutral, speech, wide) and each face's measures of the wide mouth.

    Args:
        backend: The landmark backend; faces: ``benchmarks.faces.sources`` (the photo's face drives).
    """
    neutral = backend.detect(faces["photo"][0])
    rows, figures = [], {}
    for name in NAMES:
        backend.set_source(faces[name][0])
        backend.calibrate(neutral)
        cells, entry = [], {}
        for pose_name, amount in POSES.items():
            pose = open_mouth(neutral, amount)
            frame, moved = backend.render(pose).frame, backend.moved_landmarks(pose)
            cells.append(mouth_zoom(frame, moved))
            if pose_name == "wide":
                entry["inward_shading"] = inward_shading(frame, moved)
                entry["lower_teeth"], entry["lower_teeth_height"] = lower_teeth(frame, moved)
                seen = backend.detect(frame)
                entry["lower_lip"] = (0.0 if seen is None else
                                      lower_lip_thickness(seen * backend.size) / lower_lip_thickness(moved))
        rows.append(np.concatenate(cells, axis=1))
        figures[name] = entry
    return np.concatenate(rows, axis=0), figures
