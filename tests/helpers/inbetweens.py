"""A stand-in for the in-between renderer (``live.inbetween.Inbetweener``'s interface): it holds the newest keyframe
and returns it unmoved, recording every call, so that the loop's tests can say which keyframe each in-between came
from and with which landmarks, whatever the real renderer's warp does."""

from __future__ import annotations

import numpy as np

from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.media import cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT

# The bundled portrait's face square (centre x, centre y, side) in its 512 x 512 pixels.
FACE_SQUARE = (225, 122, 240)


def portrait_square(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled portrait's face square at ``size`` px and its 478 x 3 normalised landmarks (the face mesh's, in
    image mode): the avatar of the in-between renderer's tests."""
    cv = cv2()
    photo = read_image(DEFAULT_PORTRAIT)
    cx, cy, side = FACE_SQUARE
    square = cv.resize(photo[cy - side // 2:cy + side // 2, cx - side // 2:cx + side // 2], (size, size),
                       interpolation=cv.INTER_AREA)
    mesh = FaceMesh()
    try:
        points = mesh.landmarks(square, static=True)
    finally:
        mesh.close()
    assert points is not None, "the face mesh found no face in the bundled portrait"
    return square, points


class StandInInbetweener:
    """Holds the keyframe; ``render`` returns a copy of it with its keyframe number written into pixel (0, 0)'s
    green channel (1, 2, ...), so that an output frame says which keyframe it came from."""

    def __init__(self) -> None:
        self.sources: list[np.ndarray] = []
        self.neutral: np.ndarray | None = None
        self.strengths = (1.0, 1.0)
        self.keyframes: list[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]] = []
        self.rendered: list[np.ndarray] = []  # the landmarks of every render
        self.closed = 0

    def set_source(self, image: np.ndarray, *, points: np.ndarray | None = None) -> None:
        self.sources.append(image)
        self.keyframes.clear()

    def calibrate(self, landmarks: np.ndarray) -> None:
        self.neutral = np.array(landmarks)

    def reset_calibration(self) -> None:
        self.neutral = None
        self.keyframes.clear()

    @property
    def calibrated(self) -> bool:
        return self.neutral is not None

    def set_strengths(self, head: float, expression: float) -> None:
        self.strengths = (head, expression)

    def keyframe(self, frame: np.ndarray, landmarks: np.ndarray, placement: tuple[float, float, float]) -> None:
        self.keyframes.append((frame.copy(), np.array(landmarks), tuple(placement)))

    @property
    def has_keyframe(self) -> bool:
        return bool(self.keyframes)

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        if not self.keyframes:
            raise RuntimeError("render() needs a keyframe first")
        self.rendered.append(np.array(landmarks))
        out = self.keyframes[-1][0].copy()
        out[0, 0, 1] = len(self.keyframes)
        return out

    def close(self) -> None:
        self.closed += 1
