"""Measures of the landmark backend's eyes that a contact sheet shows and a number can hold: corner spikes, the lid's
flatness and edge against the skin around it, how the lids follow the driver's openness (both eyes in step), and skin
colour painted over a drawing's hair.

    python -m fomm_live.benchmarks.face_measures [--json FILE]

The driver is the bundled photo's own face mesh edited by script (``live.democlip``), so each eye's openness is
known: ``close_eyes(neutral, a)`` leaves an openness of ``1 - 0.9 a`` of the driver's own (its upper lid stops just
above the lower one). The figures, per source:

- corner spikes: pixels changed by more than 25 grey levels against the open eye's frame, in a box just beyond
  each eye's corners (0.5 to 0.65 eye widths from its centre along the eye, 0.1 across it), summed over the
  four corners, the most at openness 0.75, 0.5 or 0.25. 0 is no spike. (A drawn eye larger than the mesh's
  reaches into that box: on a drawing this counts its own lid.)
- lid flatness: the Laplacian variance (3 x 3) of the painted lid's inside above the eye's opening over that of the
  photo's skin under the eye, at openness 0.5 (a flat fill is near 0, skin-like about 1).
- lid edge: the mean gradient (Sobel, grey levels) across the painted lid's top edge (2 px each side of it, above
  the eye's opening) over the photo's own at the same pixels, at openness 0.5; about 1 is no new edge, a patch
  with a hard edge is well above.
- lid tone: the painted lid's median grey above the eye's opening minus that of the photo's skin around it (above
  the opening, not painted), at openness 0.5; positive is a lid lighter than the skin around it.
- openness error: per openness 1, 0.75, 0.5, 0.25 and 0, upright and in a 30 degree tilt, the largest gap between
  how far each lid is down and the driver's closure (1 - openness) over 0.8 (a real blink's peak, as the face mesh
  reads it, leaves a fifth of the eye's gap); and the step, the largest gap between the two eyes' lids there.
- turn seam (the photo, 256 px square, no framing): the strongest column step in the face over the median one, at
  30 degrees of yaw each way and at rest (``turn_seam``); a tear down a cheek stands far above the rest.
- skin over hair: for each anime face, pixels of the fringe's strands over the eyes (where the drawing has them, a
  pixel in from their edge) that are no longer hair-coloured (over 60 RGB levels from it) when the eyes are shut.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fomm_live.benchmarks.faces import SIZE, sources
from fomm_live.live.assets import make_anime_faces
from fomm_live.live.democlip import close_eyes, portrait_crop, rotate_head
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.landmarks.eyes import eye_frame
from fomm_live.live.landmarks.points import EYES
from fomm_live.live.media import cv2

OPENNESS = (1.0, 0.75, 0.5, 0.25, 0.0)
SCRIPT_SHUT = 0.9  # ``close_eyes``' closure at amount 1
SHUT_AT = 0.8  # the closure at which a lid should be shut (see the module docstring)


def grey(image: np.ndarray) -> np.ndarray:
    return cv2().cvtColor(image, cv2().COLOR_RGB2GRAY).astype(np.float32)


def close_to(neutral: np.ndarray, openness: float) -> np.ndarray:
    """The driver with both eyes at this openness (of its own), see the module docstring."""
    return close_eyes(neutral, (1.0 - openness) / SCRIPT_SHUT)


def corner_spikes(frame: np.ndarray, open_frame: np.ndarray, points: np.ndarray) -> int:
    """Pixels past the eyes' corners changed by more than 25 grey levels (see the module docstring)."""
    diff = np.abs(grey(frame) - grey(open_frame))
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    count = 0
    for corners, _, _ in EYES:
        origin, axes, width = eye_frame(points, corners)
        uv = (np.stack([xs, ys], -1) - origin) @ axes.T / width  # SIZE x SIZE x 2
        box = (np.abs(uv[..., 0]) > 0.5) & (np.abs(uv[..., 0]) < 0.65) & (np.abs(uv[..., 1]) < 0.1)
        count += int((diff[box] > 25).sum())
    return count


def _eye_box(points: np.ndarray, corners: tuple[int, int]) -> np.ndarray:
    """A bool SIZE x SIZE box around one eye, 1.4 eye widths along and 1.2 across."""
    origin, axes, width = eye_frame(points, corners)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    uv = (np.stack([xs, ys], -1) - origin) @ axes.T / width
    return (np.abs(uv[..., 0]) < 0.7) & (np.abs(uv[..., 1]) < 0.6)


def lid_flatness_and_edge(frame: np.ndarray, painted: np.ndarray, source: np.ndarray,
                          points: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """Per eye, (the lid's Laplacian variance over the skin's, the gradient across its top edge over the photo's,
    its tone against the photo's lid skin it covers)."""
    cv = cv2()
    g, g0 = grey(frame), grey(source)
    lap = np.abs(cv.Laplacian(g, cv.CV_32F, ksize=1))
    lap0 = np.abs(cv.Laplacian(g0, cv.CV_32F, ksize=1))
    sobel = np.hypot(cv.Sobel(g, cv.CV_32F, 1, 0), cv.Sobel(g, cv.CV_32F, 0, 1))
    sobel0 = np.hypot(cv.Sobel(g0, cv.CV_32F, 1, 0), cv.Sobel(g0, cv.CV_32F, 0, 1))
    flat, step, tone = [], [], []
    kernel = np.ones((5, 5), np.uint8)
    for corners, upper, _ in EYES:
        box = _eye_box(points, corners)
        width = eye_frame(points, corners)[2]
        lid = (painted & box).astype(np.uint8)
        if lid.sum() < 10:
            flat.append(float("nan"))
            step.append(float("nan"))
            tone.append(float("nan"))
            continue
        inner = cv.erode(lid, np.ones((3, 3), np.uint8)) > 0
        # The photo's skin around the eye: the box less the eye opening and lid, widened.
        skin = box & (cv.dilate(lid, kernel, iterations=2) == 0)
        top = np.arange(SIZE)[:, None] < points[list(upper), 1].min()  # rows above the eye's opening
        skin &= np.arange(SIZE)[:, None] > points[list(upper), 1].max() + 0.3 * width  # under the eye
        flat.append(float(lap[inner & top].var() / max(lap0[skin].var(), 1e-6)) if (inner & top).sum() > 4
                    else float("nan"))
        around = box & (cv.dilate(lid, kernel) == 0) & top
        tone.append(float(np.median(g[inner & top]) - np.median(g0[around])) if (inner & top).sum() > 4
                    and around.sum() > 4 else float("nan"))
        # The lid's top edge: painted pixels next to unpainted ones, above the eye's opening; the gradient across
        # it in the frame over the gradient the photo has at the same pixels.
        ring = ((lid > 0) & (cv.erode(lid, kernel) == 0) | (cv.dilate(lid, kernel) > 0) & (lid == 0)) & top
        step.append(float(sobel[ring].mean() / max(sobel0[ring].mean(), 1e-6)) if ring.sum() > 4 else float("nan"))
    return flat, step, tone


def openness_errors(backend: LandmarkBackend, neutral: np.ndarray) -> tuple[float, float]:
    """(the largest gap between a lid and the driver's closure, the largest gap between the two lids)."""
    error, step = 0.0, 0.0
    for tilt in (0.0, 30.0):
        for openness in OPENNESS:
            pose = rotate_head(close_to(neutral, openness), roll=tilt, yaw=2 * tilt / 3)
            amounts = backend._lid_amounts(backend._closures(backend.moved_landmarks(pose)))  # noqa: SLF001
            target = min(1.0, (1.0 - openness) / SHUT_AT)
            error = max(error, *(abs(a - target) for a in amounts))
            step = max(step, abs(amounts[0] - amounts[1]))
    return error, step


def skin_over_hair(shut: np.ndarray, strands: np.ndarray, points: np.ndarray, hair: tuple[int, int, int]) -> int:
    """Pixels of the fringe's strands around the eyes that a shut eye's lid painted over (see the module docstring).

    Args:
        shut: The frame with the eyes shut; strands: where the drawing has its strands (bool, the frame's pixels);
        points: the source's landmarks (output pixels); hair: the hair's RGB.
    """
    around = np.zeros((SIZE, SIZE), bool)
    for corners, _, _ in EYES:
        around |= _eye_box(points, corners)
    inside = cv2().erode(strands.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # its anti-aliased edge left out
    now_not = np.abs(shut.astype(np.int32) - hair).sum(2) > 60
    return int((around & inside & now_not).sum())


def fringe(backend: LandmarkBackend, name: str) -> np.ndarray:
    """An anime face's strands over the eyes in its face square (``sources``' crop), bool SIZE x SIZE."""
    image, _ = make_anime_faces.draw(name)
    mask = np.repeat(make_anime_faces.strands_mask(name)[..., None].astype(np.uint8) * 255, 3, 2)
    return portrait_crop(mask, backend.detect(image), SIZE)[..., 0] > 127


def turn_seam(frame: np.ndarray, points: np.ndarray) -> float:
    """The strongest vertical seam in the face of a turned head: per column, the mean step to the next column (grey
    levels) over the face's rows, its largest over its median across the face (a tear is one column far above the
    rest; a smooth face is about 2-3).

    Args:
        frame: The rendered turn; points: the moved landmarks there (output pixels).
    """
    from fomm_live.live.landmarks.points import FACE_OVAL

    cv = cv2()
    n = frame.shape[0]  # a square
    face = np.zeros((n, n), np.uint8)
    cv.fillPoly(face, [np.round(points[list(FACE_OVAL), :2]).astype(np.int32)], 1)
    face = cv.erode(face, np.ones((7, 7), np.uint8))[:, 1:] & cv.erode(face, np.ones((7, 7), np.uint8))[:, :-1]
    step = np.abs(np.diff(grey(frame), axis=1)) * face  # n x n-1
    rows = face.sum(0)
    columns = step.sum(0)[rows > n // 8] / rows[rows > n // 8]
    return float(columns.max() / max(np.median(columns), 1e-6))


def tear_darkness(face: np.ndarray, tears: np.ndarray) -> float:
    """How dark a line runs along the warp's tears inside a turned face: the mean black-hat (the grey levels'
    closing over 9 x 9 pixels minus the image: a thin dark line stands out, broad shading does not) over the tears,
    widened by 2 pixels (0 where nothing tore). A seam down the cheek is a dark line there; a softened fold is not.

    Args:
        face: The output's face square; tears: where the warp tore inside the face (``large_photo.turns``).
    """
    cv = cv2()
    if not tears.any():
        return 0.0
    image = grey(face)
    black = cv.morphologyEx(image, cv.MORPH_BLACKHAT, np.ones((9, 9), np.uint8))
    band = cv.dilate(tears.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return float(black[band].mean())


def framed_turns(backend: LandmarkBackend, yaws: tuple[float, ...] = (-30.0, 30.0, 0.0)) -> dict[str, list[float]]:
    """The seam measures on the full-resolution output, one figure per yaw (degrees): the large photo in photo
    framing at 1280 x 720, over the face's square at the output's resolution (``benchmarks.large_photo``):
    ``turn_seam`` and ``tear_darkness``."""
    from fomm_live.benchmarks.large_photo import turns

    seams, dark = [], []
    for face, points, tears in turns(backend, yaws):
        seams.append(turn_seam(face, points))
        dark.append(tear_darkness(face, tears))
    return {"turn_seam": seams, "tear_darkness": dark}


def measure(backend: LandmarkBackend, faces: dict) -> dict[str, dict]:
    neutral = backend.detect(faces["photo"][0])
    figures: dict[str, dict] = {}
    for name, (square, _) in faces.items():
        backend.set_source(square)
        backend.calibrate(neutral)
        points = backend._source_points  # noqa: SLF001 (the photo's landmarks, output pixels)
        open_frame = backend.render(neutral).frame
        half = backend.render(close_to(neutral, 0.5), detail=True)
        spikes = max(corner_spikes(backend.render(close_to(neutral, o)).frame, open_frame, points)
                     for o in (0.75, 0.5, 0.25))
        flat, step, tone = lid_flatness_and_edge(half.frame, half.warp.painted, square, points)
        error, eyes_step = openness_errors(backend, neutral)
        entry = {"corner_spikes": spikes, "lid_flatness": flat,
                 "lid_edge": step, "lid_tone": tone, "openness_error": error, "eyes_step": eyes_step}
        if name == "photo":
            turns = {}
            for yaw in (-30, 30):
                pose = rotate_head(neutral, yaw=yaw)
                turns[yaw] = turn_seam(backend.render(pose).frame, backend.moved_landmarks(pose))
            entry["turn_seam"] = [turns[-30], turns[30], turn_seam(open_frame, points)]
        if name in make_anime_faces.VARIANTS:
            shut = backend.render(close_to(neutral, 0.0)).frame
            entry["skin_over_hair"] = skin_over_hair(shut, fringe(backend, name), points,
                                                     make_anime_faces.VARIANTS[name]["hair"])
        figures[name] = entry
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    with LandmarkBackend(size=SIZE) as backend:
        figures = measure(backend, sources(backend))
    for name, entry in figures.items():
        print(name, " ".join(f"{k}={np.round(v, 3).tolist()}" for k, v in entry.items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
