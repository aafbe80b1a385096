"""The cross-fade's weight per pixel: where the previous keyframe, moved to the new keyframe's face, does not agree
with the new keyframe, the new one shows alone. Used by ``live.inbetween.renderer``.

Why: the warp moves what is outside the face only by the head ring, so after a keyframe interval the previous
keyframe's collar, hair and background can lie a few pixels from the new keyframe's. Blended at the fade's 2/3 they
showed twice (carphone, a man talking in a car: the collar and bow tie doubled at the frame where a keyframe five
frames late arrived, 14.7 dB against 15.2 for holding the keyframe). Where the two agree (the face, which the mesh
aligns, and the flat areas around it), the blend keeps hiding the step to the new keyframe as before.
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.media import cv2

# The old keyframe's weight falls as exp(-(d / FADE_AGREE)^2), d the two frames' difference in levels (the grey of
# their absolute difference) smoothed over FADE_BLUR square pixels, so that one pixel's noise does not punch a hole.
# benchmarks.inbetween --every 5 --latency 4 --crossfade 2, gain over holding (dB) / step where a keyframe takes over
# (levels) on carphone, pexels, single and the demo clip (RESULTS, 2026-12-07): the even fade +0.34 / 6.03,
# +1.78 / 4.57, +2.00 / 1.29, +2.93 / 3.86; at 20 levels +0.75 / 10.91, +1.96 / 6.97, +2.29 / 1.70, +3.24 / 6.42; at
# 40 +0.69 / 9.67, +1.95 / 6.00, +2.19 / 1.49, +3.20 / 5.67; at 60 +0.63 / 8.67 on carphone; the fade limited to the
# face's hull instead +0.77 / 12.28 there (no fade: 12.37). At 40 carphone's arrival frame goes from 0.96 dB below
# holding to 0.57 above and the collar shows once; the step there is 9.67 levels (even fade 6.03, none 12.37).
FADE_AGREE = 40.0
FADE_BLUR = 1.5
_CURVE = np.exp(-(np.arange(256) / FADE_AGREE) ** 2).astype(np.float32)  # exp(-(d / FADE_AGREE)^2) per level d


def agreement(old: np.ndarray, new: np.ndarray, *, scale: float) -> np.ndarray:
    """Per pixel, how far the fade may show ``old`` (0..1): 1 where it equals ``new``, falling where they differ.

    Args:
        old: h x w x 3 uint8, the previous keyframe moved to the new keyframe's face (the square's region).
        new: h x w x 3 uint8, the new keyframe's same region.
        scale: Output pixels per square pixel (the smoothing's reach is FADE_BLUR square pixels).

    Returns:
        h x w float32.
    """
    cv = cv2()
    d = cv.cvtColor(cv.absdiff(old, new), cv.COLOR_RGB2GRAY)  # h x w uint8: the channels' (weighted) mean, levels
    d = cv.GaussianBlur(d, (0, 0), FADE_BLUR * scale)
    return cv.LUT(d, _CURVE)  # h x w float32 (4.7 ms in float32 arithmetic, 1.5 through the table, 481 x 481)


def fade_blends(old: np.ndarray, new: np.ndarray, steps: int, *, scale: float) -> list[np.ndarray]:
    """The squares the fade's renders warp, in order: ``old`` at (steps - j) / (steps + 1) of the way for render
    j = 0 .. steps - 1, times ``agreement`` per pixel, over ``new``.

    Args:
        old, new: h x w x 3 uint8 (as ``agreement``).
        steps: The fade's renders (``Inbetweener``'s ``crossfade``).
        scale: Output pixels per square pixel.

    Returns:
        ``steps`` h x w x 3 uint8 arrays.
    """
    cv = cv2()
    agree = agreement(old, new, scale=scale)
    blends = []
    for j in range(steps):
        share = agree * np.float32((steps - j) / (steps + 1))  # h x w: the old keyframe's share
        blends.append(cv.blendLinear(old, new, share, 1.0 - share))
    return blends
