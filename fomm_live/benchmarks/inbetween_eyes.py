"""The eye region's PSNR for ``benchmarks.inbetween``: what a blink or a squint between keyframes costs there.

The eye region is, per eye, the box around its lids and the two rings of skin above the upper lid (the lid's skin up
to about the crease, ``live.landmarks.lids.RINGS``), a tenth of the eye's width wider on every side, in the true
frame. The figures are the mean PSNR there of the in-between and of the held keyframe over every in-between, and over
the ``PICKED`` in-betweens whose eyes' opening changed most since the keyframe (the frames ``--sheet-by eyes`` shows).
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.landmarks.lids import RINGS
from fomm_live.live.landmarks.points import EYES

PICKED = 12  # as many as a sheet's rows
MARGIN = 0.1  # of the eye's width, around the box


def eye_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """size x size bool: the two eyes' boxes (see the module docstring) of a face mesh (478 x 3, fractions of the
    square)."""
    mask = np.zeros((size, size), bool)
    for (corners, upper, lower), rings in zip(EYES, RINGS, strict=True):
        xy = landmarks[[*corners, *upper, *lower, *rings[0], *rings[1]], :2] * size  # K x 2, pixels
        pad = MARGIN * float(np.linalg.norm(xy[0] - xy[1]))
        x0, y0 = np.clip(np.floor(xy.min(0) - pad).astype(int), 0, size)
        x1, y1 = np.clip(np.ceil(xy.max(0) + pad).astype(int) + 1, 0, size)
        mask[y0:y1, x0:x1] = True
    return mask


def eye_figures(rows: list[tuple[float, int, float, float]]) -> dict | None:
    """The eye region's figures from one row per in-between: (the eyes' opening change since the keyframe, the
    frame, the in-between's PSNR there, the held keyframe's). None without rows."""
    if not rows:
        return None

    def mean(chosen: list[tuple[float, int, float, float]]) -> dict:
        inbetween, held = float(np.mean([r[2] for r in chosen])), float(np.mean([r[3] for r in chosen]))
        return {"inbetween_psnr": inbetween, "held_psnr": held, "gain_db": inbetween - held, "count": len(chosen)}

    picked = sorted(rows, key=lambda r: -r[0])[:PICKED]
    return {"all": mean(rows), "most_change": {**mean(picked), "frames": sorted(r[1] for r in picked)}}
