"""Draw anime-proportioned test faces: eyes about twice human size with flat whites and irises and thick outlines, a
small nose and mouth, and a fringe of hair over one eye or both.

    python -m fomm_live.live.assets.make_anime_faces [--out DIR]

They are drawn here from OpenCV ellipses, polygons and blurs (no photo, no model), so they are this project's own
work. Nothing is shipped as an image: tests and ``benchmarks.faces`` call ``draw(variant)``, which is deterministic.
Each variant is a dict of proportions and colours (``VARIANTS``); the eyes' true outlines are returned with the
picture so that tests can check what the landmark backend finds against what was drawn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fomm_live.live.media import cv2

SIZE = 512
VARIANTS = {
    # Tall eyes, brown hair whose fringe falls over the image's left eye.
    "anime_a": {"skin": (246, 218, 198), "shade": (222, 178, 160), "hair": (84, 52, 40), "iris": (60, 120, 170),
                "background": (190, 214, 236), "eye": (42, 50), "eye_y": 268, "eye_dx": 66, "fringe": -1,
                "outline": (40, 24, 24), "mouth": 14, "jaw": 118},
    # Wider, rounder eyes, a warmer skin, pink hair whose fringe falls over the image's right eye.
    "anime_b": {"skin": (238, 196, 168), "shade": (206, 150, 124), "hair": (214, 110, 150), "iris": (150, 70, 60),
                "background": (236, 226, 200), "eye": (48, 44), "eye_y": 262, "eye_dx": 70, "fringe": 1,
                "outline": (60, 24, 36), "mouth": 12, "jaw": 122},
    # Large eyes under a fringe that falls over both of them, dark hair, a pale skin.
    "anime_c": {"skin": (250, 226, 212), "shade": (226, 184, 170), "hair": (46, 40, 58), "iris": (90, 150, 90),
                "background": (214, 236, 214), "eye": (50, 52), "eye_y": 266, "eye_dx": 68, "fringe": 0,
                "outline": (36, 26, 40), "mouth": 13, "jaw": 120},
}


def _soft(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], blur: float) -> None:
    """Blend ``colour`` into ``canvas`` through ``mask`` (uint8, 255 inside), feathered by a gaussian of ``blur`` px."""
    alpha = mask.astype(np.float32) / 255.0
    if blur:
        alpha = cv2().GaussianBlur(alpha, (0, 0), blur)
    canvas += alpha[..., None] * (np.array(colour, np.float32) - canvas)


def _ellipse(centre: tuple[float, float], axes: tuple[float, float], *, start: float = 0, end: float = 360,
             thickness: int = -1) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2().ellipse(mask, (round(centre[0] * 16), round(centre[1] * 16)), (round(axes[0] * 16), round(axes[1] * 16)),
                  0, start, end, 255, thickness, cv2().LINE_AA, 4)
    return mask


def _poly(points: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2().fillPoly(mask, [np.round(np.array(points) * 16).astype(np.int32)], 255, cv2().LINE_AA, 4)
    return mask


def _strands(v: dict) -> list[np.ndarray]:
    """The fringe's strands that fall over the eyes (masks, 0..255): one over each eye the variant's ``fringe`` names
    (-1 the image's left, 1 its right, 0 both)."""
    cx, ey = SIZE / 2, v["eye_y"]
    out = []
    for f in ((-1, 1) if v["fringe"] == 0 else (v["fringe"],)):
        ex = cx + f * v["eye_dx"]
        out.append(_poly([(ex - f * 6, 160), (ex + f * 70, 150), (ex + f * 40, ey + 12), (ex + f * 4, ey - 14)]))
    return out


def strands_mask(variant: str) -> np.ndarray:
    """SIZE x SIZE bool: where ``draw(variant)`` has the fringe's strands over the eyes (the hair that a closing lid
    must leave as drawn)."""
    return np.any([strand > 127 for strand in _strands(VARIANTS[variant])], axis=0)


def draw(variant: str = "anime_a") -> tuple[np.ndarray, list[np.ndarray]]:
    """One face: (SIZE x SIZE x 3 uint8 RGB, the two drawn eyes' masks as SIZE x SIZE bool, image left first).

    Args:
        variant: A key of ``VARIANTS``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
    v = VARIANTS[variant]
    cv = cv2()
    ys = np.mgrid[0:SIZE, 0:SIZE][0].astype(np.float32)
    canvas = np.empty((SIZE, SIZE, 3), np.float32)
    canvas[:] = v["background"]
    canvas *= (1.04 - 0.15 * ys / SIZE)[..., None]
    cx, jaw = SIZE / 2, v["jaw"]
    _soft(canvas, _ellipse((cx, 250), (jaw + 56, 210)), v["hair"], 2)  # hair behind the head
    _soft(canvas, _poly([(cx - 44, 340), (cx + 44, 340), (cx + 52, 450), (cx - 52, 450)]), v["shade"], 2)
    _soft(canvas, _ellipse((cx, 525), (190, 90)), (60, 70, 110), 2)
    # The face: wide cheeks, a pointed chin; a soft shade along its edge so that the face detector takes it.
    face = _poly([(cx - jaw, 200), (cx - jaw + 4, 300), (cx - 70, 366), (cx - 24, 398), (cx, 404), (cx + 24, 398),
                  (cx + 70, 366), (cx + jaw - 4, 300), (cx + jaw, 200)]) | _ellipse((cx, 210), (jaw + 1, 124))
    _soft(canvas, face, v["skin"], 1.5)
    edge = cv.distanceTransform((face > 127).astype(np.uint8), cv.DIST_L2, 5)
    shade = np.clip(1.0 - edge / 30.0, 0.0, 1.0)[..., None] * (face[..., None] > 0)
    canvas += 0.5 * shade * (np.array(v["shade"], np.float32) - canvas)
    for side in (-1, 1):
        _soft(canvas, _ellipse((cx + side * 76, 320), (22, 10)), (244, 168, 164), 7)  # blush
    # A small nose (a short shaded stroke) and a small mouth, closed.
    _soft(canvas, _poly([(cx + 2, 300), (cx + 8, 318), (cx - 3, 322)]), v["shade"], 1.5)
    w = v["mouth"]
    _soft(canvas, _ellipse((cx, 358), (w, 4)), (196, 100, 104), 1)
    line = _ellipse((cx, 352), (w, 5), start=20, end=160, thickness=2)
    _soft(canvas, line, (110, 46, 52), 0.7)
    # Eyes: flat white, a large iris and pupil, a thick upper outline, a thin lower one, brows.
    ew, eh = v["eye"]
    masks = []
    for side in (-1, 1):
        ex, ey = cx + side * v["eye_dx"], v["eye_y"]
        eye = _ellipse((ex, ey), (ew / 2, eh / 2))
        masks.append(eye > 127)
        _soft(canvas, eye, (250, 250, 252), 0.6)
        iris = _ellipse((ex + side * 2, ey + 4), (0.36 * ew, 0.42 * eh)) & eye
        _soft(canvas, iris, v["iris"], 0.6)
        _soft(canvas, _ellipse((ex + side * 2, ey + 6), (0.18 * ew, 0.22 * eh)) & eye, (24, 20, 30), 0.6)
        _soft(canvas, _ellipse((ex - 8, ey - 8), (0.08 * ew, 0.08 * ew)), (255, 255, 255), 0)
        _soft(canvas, _ellipse((ex, ey), (ew / 2 + 3, eh / 2 + 2), start=190, end=350, thickness=7), v["outline"],
              0.6)
        _soft(canvas, _ellipse((ex, ey), (ew / 2, eh / 2), start=30, end=150, thickness=2), v["outline"], 0.6)
        _soft(canvas, _ellipse((ex, ey - 4), (ew / 2 + 10, eh / 2 + 14), start=215, end=325, thickness=2),
              v["shade"], 0.8)  # the crease
        _soft(canvas, _ellipse((ex, ey - 10), (ew / 2 + 8, eh / 2 + 22), start=235, end=305, thickness=6),
              v["hair"], 0.8)  # the brow
    # The fringe: strands over the forehead, one of them down over an eye's outer half.
    _soft(canvas, _poly([(cx - jaw - 8, 215), (cx - jaw + 10, 120), (cx - 40, 80), (cx + 40, 80),
                         (cx + jaw - 10, 120), (cx + jaw + 8, 215), (cx + 60, 170), (cx + 20, 190), (cx - 20, 168),
                         (cx - 70, 186)]), v["hair"], 1.2)
    for strand in _strands(v):
        _soft(canvas, strand, v["hair"], 1.0)
    picture = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return picture, masks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for <variant>.png (default: here)")
    args = parser.parse_args(argv)
    for name in VARIANTS:
        cv2().imwrite(str(args.out / f"{name}.png"), draw(name)[0][..., ::-1])


if __name__ == "__main__":
    main()
