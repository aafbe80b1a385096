"""Strong turns on a large photo in photo framing: the case where a turned face tore along a seam down one cheek.

The large photo is made here, not stored: the bundled portrait enlarged to 1320 x 1320 (bicubic) and widened to
1800 x 1320 with its own edge columns, a three-quarter portrait of a large source. It is framed at 1280 x 720 as
``run --framing photo`` frames it, and each turn is the landmark backend's render pasted back along its warp at the
output's resolution (``live.framing.pasteback_map``), as in ``run``.

    python -m fomm_live.benchmarks.large_photo --out turn.png   # the 4x turn sheet (yaw -30, -15, 0, 15, 30)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fomm_live.live.democlip import rotate_head
from fomm_live.live.framing.compositor import PhotoCompositor
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.media import cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT

PHOTO_SIZE = (1800, 1320)  # width, height of the large photo
OUTPUT_SIZE = (1280, 720)
YAWS = (-30.0, -15.0, 0.0, 15.0, 30.0)


def large_photo() -> np.ndarray:
    """The bundled portrait as a large three-quarter photo: PHOTO_SIZE, H x W x 3 uint8 RGB."""
    cv = cv2()
    width, height = PHOTO_SIZE
    square = cv.resize(read_image(DEFAULT_PORTRAIT), (height, height), interpolation=cv.INTER_CUBIC)
    side = (width - height) // 2
    return cv.copyMakeBorder(square, 0, 0, side, width - height - side, cv.BORDER_REPLICATE)


def framed_large_photo(backend: LandmarkBackend) -> tuple[np.ndarray, PhotoCompositor]:
    """The large photo's face square (the backend's source, its size) and the photo-framing compositor that pastes
    renders back into it at OUTPUT_SIZE; the backend's source is set to the square."""
    from fomm_live.live.avatars import prepare_avatars
    from fomm_live.live.face import FaceDetector

    with FaceDetector() as detector:
        avatars = prepare_avatars([("large photo", large_photo())], backend.size, detector)
    compositor = PhotoCompositor(avatars=avatars, output_size=OUTPUT_SIZE, kind="map")
    compositor.select(0)
    backend.set_source(avatars[0].crop)
    return avatars[0].crop, compositor


def inner_tears(source_map: np.ndarray, index: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where the warp tore inside the face: neighbouring square pixels from different triangles whose source places
    lie over 3 pixels apart (the warp's TEAR_JUMP), inside the face oval and outside the lips: n x n bool.

    Args:
        source_map: n x n x 2 backward map; index: n x n triangle per pixel; points: moved landmarks (square pixels).
    """
    from fomm_live.live.landmarks.points import FACE_OVAL, OUTER_LIP_POLYGON

    cv = cv2()
    tear = np.zeros(index.shape, np.uint8)
    jump = np.abs(np.diff(source_map, axis=1)).sum(2) > 3.0
    tear[:, 1:] |= jump & (index[:, 1:] != index[:, :-1])
    jump = np.abs(np.diff(source_map, axis=0)).sum(2) > 3.0
    tear[1:] |= jump & (index[1:] != index[:-1])
    face = np.zeros(index.shape, np.uint8)
    cv.fillPoly(face, [np.round(points[list(FACE_OVAL), :2]).astype(np.int32)], 1)
    face = cv.erode(face, np.ones((7, 7), np.uint8))  # the face's own outline over its surroundings is left out
    cv.fillPoly(face, [np.round(points[list(OUTER_LIP_POLYGON), :2]).astype(np.int32)], 0)
    return (tear & face) > 0


def turns(backend: LandmarkBackend, yaws: tuple[float, ...] = YAWS
          ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per yaw (degrees), the output frame's face square (side x side x 3 uint8, side the framed square's), the
    moved landmarks in its pixels (478 x 2) and where the warp tore inside the face (``inner_tears``, brought to
    the square's pixels: side x side bool)."""
    square, compositor = framed_large_photo(backend)
    neutral = backend.detect(square)
    backend.calibrate(neutral)
    bx, by, side = compositor.framing.box
    x0, y0, scale = round(bx), round(by), side / backend.size
    out = []
    for yaw in yaws:
        pose = rotate_head(neutral, yaw=yaw)
        rendered = backend.render(pose, detail=True)
        frame = compositor.paste(rendered)
        moved = backend.moved_landmarks(pose)
        tears = inner_tears(rendered.warp.source_map, backend.triangle_index, moved).astype(np.uint8)
        tears = cv2().resize(tears, (round(side), round(side)), interpolation=cv2().INTER_NEAREST) > 0
        out.append((frame[y0:y0 + round(side), x0:x0 + round(side)], moved[:, :2] * scale + (bx - x0, by - y0),
                    tears))
    return out


def zoom_nose(face: np.ndarray, points: np.ndarray, side: int = 240) -> np.ndarray:
    """side x side output pixels around the nose and both cheeks, 2x (nearest): the model's pixels at about 4x."""
    n = face.shape[0]
    cx, cy = points[[1, 33, 263]].mean(0)  # the nose tip and the eyes' outer corners
    x0 = int(np.clip(cx - side / 2, 0, n - side))
    y0 = int(np.clip(cy - side / 2, 0, n - side))
    return cv2().resize(face[y0:y0 + side, x0:x0 + side], None, fx=2, fy=2, interpolation=cv2().INTER_NEAREST)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the turn sheet, a PNG")
    args = parser.parse_args(argv)
    cv = cv2()
    with LandmarkBackend() as backend:
        cells = [zoom_nose(face, points) for face, points, _ in turns(backend)]
    sheet = np.concatenate(cells, axis=1)
    for j, yaw in enumerate(YAWS):
        cv.putText(sheet, f"yaw {yaw:+.0f}", (j * cells[0].shape[1] + 8, 24), cv.FONT_HERSHEY_SIMPLEX, 0.8,
                   (255, 255, 255), 2, cv.LINE_AA)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv.imwrite(str(args.out), cv.cvtColor(sheet, cv.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
