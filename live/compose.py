"""Composition of output frames: the disclosure label every output carries by default."""

from __future__ import annotations

import numpy as np

from live.media import cv2

LABEL_TEXT = "AI-generated"


def add_label(frame: np.ndarray, text: str = LABEL_TEXT) -> np.ndarray:
    """Return a copy of an H x W x 3 uint8 frame with a small disclosure label in the bottom-right corner.

    The label scales with the frame (about 1/25 of its height, at least legible at 256 x 256) and sits on a dark
    box so it reads on any background.
    """
    cv = cv2()
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.3, h / 700)
    thickness = max(1, round(scale * 1.5))
    (tw, th), base = cv.getTextSize(text, cv.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = max(2, h // 100)
    x0, y0 = w - tw - 2 * margin, h - th - base - 2 * margin
    if x0 < 0 or y0 < 0:
        return out  # frame too small to hold a legible label
    box = out[y0:h, x0:w].astype(np.float32)
    out[y0:h, x0:w] = (box * 0.4).astype(np.uint8)
    cv.putText(out, text, (x0 + margin, h - base - margin), cv.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
               cv.LINE_AA)
    return out
