"""Draw ``drawn_portrait.png``: a stylised, anime-like face (large eyes, a small mouth) made of OpenCV primitives.

    python -m fomm_live.live.assets.make_drawn_portrait [--out live/assets/drawn_portrait.png]

The drawing is made here from nothing but ellipses, polygons and blurs (no photo, no model), so it is this project's
own work, under the project's licence. It is soft-shaded rather than flat so that mediapipe's face detector and
face mesh take it for a face: a test checks that they do. The output is deterministic (no randomness).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fomm_live.live.media import cv2

SIZE = 512
SKIN = (236, 200, 176)  # RGB
SKIN_SHADE = (196, 150, 128)
HAIR = (92, 58, 40)
HAIR_LIGHT = (140, 94, 62)
IRIS = (70, 110, 160)
LIPS = (200, 96, 100)
BACKGROUND = (170, 190, 210)


def _soft(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], blur: float) -> None:
    """Blend ``colour`` into ``canvas`` through ``mask`` (uint8, 255 inside), feathered by a gaussian of ``blur`` px."""
    alpha = cv2().GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), blur)[..., None] if blur else \
        mask.astype(np.float32)[..., None] / 255.0
    canvas += alpha * (np.array(colour, np.float32) - canvas)


def _ellipse_mask(centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2().ellipse(mask, (round(centre[0] * 16), round(centre[1] * 16)), (round(axes[0] * 16), round(axes[1] * 16)),
                  angle, 0, 360, 255, -1, cv2().LINE_AA, 4)
    return mask


def _poly_mask(points: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2().fillPoly(mask, [np.round(np.array(points) * 16).astype(np.int32)], 255, cv2().LINE_AA, 4)
    return mask


def draw() -> np.ndarray:
    """The portrait: SIZE x SIZE x 3 uint8 RGB."""
    cv = cv2()
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    canvas = np.empty((SIZE, SIZE, 3), np.float32)
    canvas[:] = BACKGROUND
    canvas *= (1.05 - 0.25 * ys / SIZE)[..., None]  # a light from above
    cx = SIZE / 2
    # Hair behind the head, neck and shoulders.
    _soft(canvas, _ellipse_mask((cx, 250), (170, 200)), HAIR, 3)
    _soft(canvas, _poly_mask([(cx - 52, 330), (cx + 52, 330), (cx + 60, 440), (cx - 60, 440)]), SKIN_SHADE, 3)
    _soft(canvas, _ellipse_mask((cx, 520), (200, 90)), (70, 90, 140), 3)
    # The face: a rounded jaw, shaded towards its edge so it reads as a volume.
    face = _poly_mask([(cx - 120, 200), (cx - 116, 290), (cx - 84, 350), (cx - 36, 384), (cx, 392),
                       (cx + 36, 384), (cx + 84, 350), (cx + 116, 290), (cx + 120, 200)])
    face |= _ellipse_mask((cx, 205), (121, 120))
    _soft(canvas, face, SKIN, 2)
    edge = cv.GaussianBlur(cv.distanceTransform((face > 127).astype(np.uint8), cv.DIST_L2, 5), (0, 0), 2)
    shade = np.clip(1.0 - edge / 40.0, 0.0, 1.0)[..., None] * (face[..., None] > 0)
    canvas += 0.6 * shade * (np.array(SKIN_SHADE, np.float32) - canvas)
    # Cheeks' blush and the nose: a shaded ridge and a small tip.
    for side in (-1, 1):
        _soft(canvas, _ellipse_mask((cx + side * 72, 300), (26, 14)), (240, 170, 160), 8)
    _soft(canvas, _poly_mask([(cx + 4, 250), (cx + 12, 305), (cx - 6, 312), (cx - 2, 250)]), SKIN_SHADE, 4)
    _soft(canvas, _ellipse_mask((cx - 2, 312), (12, 6)), (176, 130, 110), 2)
    # Eyes: whites, a large iris with a dark pupil and two highlights, a thick upper lash line, a crease.
    for side in (-1, 1):
        ex, ey = cx + side * 58, 262
        _soft(canvas, _ellipse_mask((ex, ey), (34, 22)), (250, 250, 250), 1)
        _soft(canvas, _ellipse_mask((ex, ey + 2), (18, 20)), IRIS, 1)
        _soft(canvas, _ellipse_mask((ex, ey + 2), (9, 10)), (20, 20, 30), 1)
        _soft(canvas, _ellipse_mask((ex - 6, ey - 6), (5, 5)), (255, 255, 255), 0)
        lash = np.zeros((SIZE, SIZE), np.uint8)
        cv.ellipse(lash, (round(ex * 16), round((ey + 4) * 16)), (36 * 16, 27 * 16), 0, 195, 345, 255, 5,
                   cv.LINE_AA, 4)
        _soft(canvas, lash, (30, 20, 20), 0.8)
        crease = np.zeros((SIZE, SIZE), np.uint8)
        cv.ellipse(crease, (round(ex * 16), round((ey + 2) * 16)), (36 * 16, 36 * 16), 0, 215, 325, 255, 2,
                   cv.LINE_AA, 4)
        _soft(canvas, crease, SKIN_SHADE, 1)
        # Brows.
        brow = np.zeros((SIZE, SIZE), np.uint8)
        cv.ellipse(brow, (round(ex * 16), round((ey + 8) * 16)), (42 * 16, 52 * 16), 0, 230 if side < 0 else 240,
                   300 if side < 0 else 310, 255, 7, cv.LINE_AA, 4)
        _soft(canvas, brow, HAIR, 1)
    # A small mouth: thin lips, closed.
    _soft(canvas, _ellipse_mask((cx, 352), (24, 7)), LIPS, 1.5)
    lip_line = np.zeros((SIZE, SIZE), np.uint8)
    cv.ellipse(lip_line, (round(cx * 16), round(345 * 16)), (24 * 16, 8 * 16), 0, 20, 160, 255, 2, cv.LINE_AA, 4)
    _soft(canvas, lip_line, (120, 50, 55), 0.8)
    # Fringe over the forehead and hair strands on the sides.
    _soft(canvas, _poly_mask([(cx - 128, 200), (cx - 110, 120), (cx - 40, 86), (cx + 40, 86), (cx + 112, 120),
                              (cx + 128, 200), (cx + 80, 150), (cx + 30, 175), (cx - 20, 150), (cx - 70, 170)]),
          HAIR, 2)
    _soft(canvas, _poly_mask([(cx - 60, 100), (cx + 10, 92), (cx - 30, 150)]), HAIR_LIGHT, 6)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("drawn_portrait.png"))
    args = parser.parse_args(argv)
    image = draw()
    cv2().imwrite(str(args.out), image[..., ::-1])


if __name__ == "__main__":
    main()
