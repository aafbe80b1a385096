"""Face tracking: find the face with mediapipe, keep a stable square crop around it, and crop frames to it.

The crop is a square ``margin`` times the detected face box, centred a little above the box centre, which frames a
head with some hair and neck as the VoxCeleb training frames of the face models are framed. Its centre and size pass
through a One Euro filter, so camera noise does not shake the crop while real head motion is followed with little lag.

Convention: boxes and points are in pixels of the full frame, (x, y) order; a crop box is (centre x, centre y, side).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fomm_live.live.filters import OneEuroFilter
from fomm_live.live.landmarks.facemesh import SolutionReader
from fomm_live.live.media import cv2, quiet_native_output, read_only
from fomm_live.live.options import CROP_TRACKING, DEFAULT_CROP_TRACKING

logger = logging.getLogger(__name__)

DEFAULT_MARGIN = 2.0  # crop side / face box side
CENTRE_LIFT = 0.15  # crop centre above the face box centre, in face box sides (includes the hair, less neck)


@dataclass(frozen=True)
class Face:
    """A detected face.

    Attributes:
        box: (x0, y0, width, height) in pixels.
        score: Detector confidence.
        points: 6 x 2 pixel coordinates: right eye, left eye, nose tip, mouth centre, right ear, left ear.
    """

    box: tuple[float, float, float, float]
    score: float
    points: np.ndarray

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, w, h = self.box
        return x0 + w / 2, y0 + h / 2

    @property
    def size(self) -> float:
        return max(self.box[2], self.box[3])

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class CropBox:
    """A square crop: centre (cx, cy) and side, in pixels of the full frame."""

    cx: float
    cy: float
    side: float


class FaceDetector:
    """mediapipe's BlazeFace detector (models bundled in the wheel; nothing is downloaded).

    The short-range model (faces within ~2 m, a webcam) runs first; when it finds nothing, the full-range model (faces
    up to ~5 m, small in the frame) gets a try, so a distant face or a wide photo still works at no cost while the
    near face is found.

    Args:
        min_confidence: Detections below this score are ignored.
        fallback: Try the full-range model when the short-range one finds no face.
    """

    def __init__(self, *, min_confidence: float = 0.5, fallback: bool = True) -> None:
        self.min_confidence = min_confidence
        self.fallback = fallback
        self._detectors: dict[int, object] = {}
        self._warm: set[int] = set()
        self._closed = False
        self._reader = SolutionReader("face detector", "detections")
        self._model(0)

    def _model(self, selection: int) -> object:
        detector = self._detectors.get(selection)
        if detector is None:
            with quiet_native_output():
                from mediapipe.python.solutions import face_detection

                detector = face_detection.FaceDetection(min_detection_confidence=self.min_confidence,
                                                        model_selection=selection)
                # The graph starts its calculators asynchronously, and they print their start-up lines then: one
                # blank frame inside this block waits for them.
                detector.process(np.zeros((64, 64, 3), np.uint8))
            self._detectors[selection] = detector
        return detector

    def _run(self, selection: int, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        detector = self._model(selection)
        if selection in self._warm:
            found = self._detections(detector, image)
        else:  # the first call prints the TFLite delegate's start-up lines
            with quiet_native_output():
                found = self._detections(detector, image)
            self._warm.add(selection)
        faces = []
        for det in found:
            rel = det.location_data.relative_bounding_box
            points = np.array([[kp.x * w, kp.y * h] for kp in det.location_data.relative_keypoints], dtype=np.float64)
            faces.append(Face((rel.xmin * w, rel.ymin * h, rel.width * w, rel.height * h), float(det.score[0]),
                              points))
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _detections(self, detector: object, image: np.ndarray) -> list:
        """mediapipe's Detection messages for ``image`` (``SolutionReader``: read from the graph's output, 0.2 ms less
        of the tracking thread's CPU a frame than ``process()``)."""
        from mediapipe.framework.formats import detection_pb2

        return [detection_pb2.Detection.FromString(raw) for raw in self._reader.read(detector, image)]

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an H x W x 3 uint8 RGB image, largest first."""
        image = read_only(image)  # handed to mediapipe without a copy
        faces = self._run(0, image)
        if not faces and self.fallback:
            faces = self._run(1, image)
        return faces

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for detector in self._detectors.values():
                detector.close()
            self._detectors.clear()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def face_crop_box(face: Face, margin: float = DEFAULT_MARGIN) -> CropBox:
    """The unsmoothed crop box that frames ``face``."""
    cx, cy = face.centre
    return CropBox(cx, cy - CENTRE_LIFT * face.size, margin * face.size)


def centre_crop_box(height: int, width: int) -> CropBox:
    """The largest centred square."""
    return CropBox(width / 2, height / 2, float(min(height, width)))


def crop_square(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """Cut ``box`` out of ``image`` and resize it to size x size (bilinear, sub-pixel exact, edges replicated).

    A warp rather than slicing, so that a smoothly moving box gives a smoothly moving crop (integer slicing would
    quantise the motion to whole pixels and add jitter).
    """
    cv = cv2()
    scale = size / box.side
    x0, y0 = box.cx - box.side / 2, box.cy - box.side / 2
    # Map the crop's pixel centres onto the frame: crop (u + 0.5) / scale = frame (x + 0.5) - x0.
    matrix = np.array([[scale, 0, -x0 * scale + 0.5 * scale - 0.5],
                       [0, scale, -y0 * scale + 0.5 * scale - 0.5]], dtype=np.float64)
    if scale < 0.5:  # strong downscale: pre-blur to limit aliasing (bilinear reads only 4 source pixels)
        sigma = 0.5 / scale
        image = cv.GaussianBlur(image, (0, 0), sigmaX=sigma)
    return cv.warpAffine(image, matrix, (size, size), flags=cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)


class CropTracker:
    """A stable crop box following the largest face, with user zoom and offset.

    ``tracking="follow"`` passes the box through a One Euro filter every frame: the box follows every head motion with
    a lag, so the whole square (hair, clothes, background) slides while the head moves and after it stops.
    ``tracking="steady"`` holds the box exactly while the face's centre stays within ``dead_zone`` of the box's
    centre (a share of the side, on each axis) and its size within ``size_zone`` (a ratio); when the face leaves that
    zone the box glides to re-centre on it (a critically damped spring of ``glide_hz``, starting from rest, so the
    motion eases in and out), then holds again once it is within ``SETTLE`` of the face and nearly still. The
    original model's demo crops each shot once for the same reason: the crop's own motion is subtracted from the
    head's.

    Args:
        margin: Crop side / face box side.
        smoothing: Filter the box (off: the raw detection every frame, whatever ``tracking``).
        tracking: ``follow`` or ``steady`` (``CROP_TRACKING``).
        min_cutoff: One Euro cutoff at rest, Hz (lower: steadier), for ``follow``.
        beta: One Euro speed coefficient (higher: less lag in fast motion), for ``follow``.
        dead_zone: ``steady``: how far the face's centre may move from the box's centre, as a share of the side.
        size_zone: ``steady``: how far the face's size may change, as a ratio of the box's (1.15: 15% either way).
        glide_hz: ``steady``: the re-centring spring's natural frequency (higher: quicker).
        max_speed: ``steady``: the fastest glide, sides per second.
        max_accel: ``steady``: the glide's speed changes by at most this, sides per second per second (no jerk
            when a glide starts, however far the face went).
    """

    ZOOM_STEP = 1.1
    MOVE_STEP = 0.05  # of the crop side
    # steady: the glide halts once within SETTLE of the face (share of the side; also its size, as a ratio) and slower
    # than SETTLE_SPEED sides a second (0.4 px a frame for a 400 px box at 30 fps: no visible stop). Not tighter: the
    # detector's own jitter (about 1% of the side) kept a glide with a 1% bound going for most of a 20 s clip.
    SETTLE = 0.03
    SETTLE_SPEED = 0.03
    MAX_DT = 0.2  # s: a longer gap between frames (a stall) is stepped as this

    def __init__(self, *, margin: float = DEFAULT_MARGIN, smoothing: bool = True,
                 tracking: str = DEFAULT_CROP_TRACKING,
                 min_cutoff: float = 0.3, beta: float = 0.02, dead_zone: float = 0.08, size_zone: float = 1.15,
                 glide_hz: float = 0.6, max_speed: float = 0.6, max_accel: float = 1.5) -> None:
        if tracking not in CROP_TRACKING:
            raise ValueError(f"tracking: expected one of {', '.join(CROP_TRACKING)}, got {tracking!r}")
        self.margin = margin
        self.tracking = tracking if smoothing else "follow"
        self.filter = (OneEuroFilter(min_cutoff=min_cutoff, beta=beta, d_cutoff=1.0)
                       if smoothing and tracking == "follow" else None)
        self.dead_zone, self.size_zone = dead_zone, size_zone
        self.omega = 2 * np.pi * glide_hz
        self.max_speed, self.max_accel = max_speed, max_accel
        self.last: CropBox | None = None
        self.gliding = False  # steady: re-centring now
        self._velocity = np.zeros(3)  # steady: the glide's (cx, cy, side) per second
        self._t: float | None = None
        self.zoom = 1.0
        self.offset = np.zeros(2)

    def update(self, face: Face | None, t: float) -> CropBox | None:
        """Follow ``face`` seen at media time ``t``; with no face, hold the last box (None before the first face)."""
        if face is not None:
            raw = face_crop_box(face, self.margin)
            values = np.array([raw.cx, raw.cy, raw.side])
            if self.filter is not None:
                values = self.filter(values, t)
            elif self.tracking == "steady" and self.last is not None:
                values = self._steady(values, t)
            self.last = CropBox(*map(float, values))
            self._t = t
        if self.last is None:
            return None
        side = self.last.side / self.zoom
        return CropBox(self.last.cx + self.offset[0] * side, self.last.cy + self.offset[1] * side, side)

    def reset(self) -> None:
        """Forget the box: the next face is framed at once (the mirror hotkey: the face is now elsewhere)."""
        self.last, self._t, self.gliding = None, None, False
        self._velocity[:] = 0
        if self.filter is not None:
            self.filter.reset()

    def _steady(self, target: np.ndarray, t: float) -> np.ndarray:
        """The held box, or one glide step towards ``target`` (cx, cy, side)."""
        box = np.array([self.last.cx, self.last.cy, self.last.side])
        off = np.abs(target[:2] - box[:2]).max() / box[2]
        scale = abs(np.log(target[2] / box[2]))
        if not self.gliding and (off > self.dead_zone or scale > np.log(self.size_zone)):
            self.gliding = True
        if not self.gliding:
            return box  # exactly still
        dt = min(max(t - (self._t if self._t is not None else t), 0.0), self.MAX_DT)
        w = self.omega
        change = (w * w * (target - box) - 2 * w * self._velocity) * dt  # a critically damped spring's
        self._velocity += _limited(change, self.max_accel * box[2] * dt)
        self._velocity = _limited(self._velocity, self.max_speed * box[2])
        box = box + self._velocity * dt
        if (np.abs(target[:2] - box[:2]).max() / box[2] < self.SETTLE and abs(np.log(target[2] / box[2])) < self.SETTLE
                and np.abs(self._velocity).max() < self.SETTLE_SPEED * box[2]):
            self.gliding = False
            self._velocity[:] = 0
        return box

    def zoom_in(self) -> None:
        self.zoom *= self.ZOOM_STEP

    def zoom_out(self) -> None:
        self.zoom /= self.ZOOM_STEP

    def move(self, dx: int, dy: int) -> None:
        self.offset += (dx * self.MOVE_STEP, dy * self.MOVE_STEP)

    def reset_view(self) -> None:
        """Undo zoom and offset (hotkey r)."""
        self.zoom = 1.0
        self.offset[:] = 0


def _limited(vector: np.ndarray, limit: float) -> np.ndarray:
    """``vector`` scaled down so that no element exceeds ``limit`` in size."""
    largest = float(np.abs(vector).max())
    return vector * (limit / largest) if largest > limit else vector


def crop_source_image(image: np.ndarray, size: int, detector: FaceDetector | None,
                      margin: float = DEFAULT_MARGIN) -> tuple[np.ndarray, str | None]:
    """Crop a source photo the way driving frames are cropped.

    Returns:
        The size x size crop, and a warning (None when exactly one face was found): no face -> centre crop;
        several faces -> the largest.
    """
    h, w = image.shape[:2]
    faces = detector.detect(image) if detector is not None else []
    if not faces:
        return crop_square(image, centre_crop_box(h, w), size), "no face found in the source photo; using a centre crop"
    warning = f"{len(faces)} faces in the source photo; using the largest" if len(faces) > 1 else None
    return crop_square(image, face_crop_box(faces[0], margin), size), warning
