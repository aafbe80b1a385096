"""``LandmarkBackend``: the ``landmarks`` backend's one object, joining the rooms of ``live.landmarks``.

It finds the source's and the driver's face meshes (``facemesh``), carries the driver's motion to the source
(``motion``), warps the source's mesh (``warp``) and paints the eyes (``eyes``) and the mouth (``mouth``) over it.
``relative=False`` uses the driving landmarks as they are instead of the relative motion (S = size * D).
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from fomm_live.live.backends import Backend, Rendered, WarpMap, check_strengths
from fomm_live.live.errors import UserError
from fomm_live.live.landmarks import eyes, lids
from fomm_live.live.landmarks.eyes import Eyeball, eye_opening
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.landmarks.motion import StrengthMotion
from fomm_live.live.landmarks.mouth import SourceMouth, build_mouth, paint_mouth
from fomm_live.live.landmarks.points import (
    EYES,
    IRIS_CENTRES,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    check_image,
    check_landmarks,
)
from fomm_live.live.landmarks.warp import SourceMesh, Warp, build_mesh, mesh_targets, soften_tears
from fomm_live.live.media import cv2

logger = logging.getLogger(__name__)


class LandmarkBackend(Backend):
    """Animate a source photo with mediapipe face-mesh landmarks and a piecewise-affine warp (no learned weights).

    ``detect`` returns 478 x 3 float32 landmarks in normalised units (see ``live.landmarks``' Convention) or None
    when there is no face; ``render`` returns a ``live.backends.Rendered`` whose frame is ``size x size x 3`` uint8
    RGB, with its warp map when asked (``motion_kind = "warp"``). A context manager; ``close()`` releases
    the mediapipe graphs and is safe to call twice.

    Args:
        size: Side of the output frames (the source is resized to it).
        relative: Relative motion from the calibrated neutral pose (default); False uses the driving landmarks as
            they are, which makes the source take the driver's face shape.
        smoothing: Temporal smoothing of the moved landmarks in [0, 1): the weight of the previous frame's positions
            (0: none). Cuts landmark jitter on a live stream at the cost of lag.
        tracking: Run the driving face mesh in mediapipe's video mode (landmarks seed the next frame's region:
            steadier on a continuous stream); the default runs face detection on every frame, so ``detect`` gives the
            same answer for the same frame whatever came before.
        mouth_interior: Paint the inside of an opening mouth (see ``live.landmarks.mouth``).
        min_detection_confidence: mediapipe's face detection threshold.
    """

    name = "landmarks"
    motion_kind = "warp"
    needs_face = True
    # The face mesh is a CPU graph of its own: the live loop runs ``detect`` in the tracking stage, beside the render
    # of the frame before (a lock keeps ``set_source``'s use of the graphs apart from it).
    detect_beside_render = True
    # Eyelids move fast and briefly (a blink lasts 100-300 ms): the live loop smooths them with a quicker filter.
    fast_rows = tuple(sorted(set(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER)))

    def __init__(self, *, size: int = 256, relative: bool = True, smoothing: float = 0.0, tracking: bool = False,
                 mouth_interior: bool = True, min_detection_confidence: float = 0.5) -> None:
        if not 64 <= size <= 4096:
            raise ValueError(f"size: expected 64..4096 pixels, got {size}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing: expected a weight in [0, 1), got {smoothing}")
        self.size = int(size)
        self.relative = relative
        self.smoothing = float(smoothing)
        self.tracking = tracking
        self.mouth_interior = mouth_interior
        self.min_detection_confidence = min_detection_confidence
        self.face_mesh = FaceMesh(min_detection_confidence=min_detection_confidence)
        self._mesh_lock = threading.Lock()  # ``detect`` may run on another thread than ``set_source``
        self._source: np.ndarray | None = None  # size x size x 3 uint8
        self._source_points: np.ndarray | None = None  # 478 x 3 float64, output pixels
        self._mesh: SourceMesh | None = None
        self._mouth: SourceMouth | None = None
        self._lids: list[lids.Lid | None] = []
        self._eyeballs: list[Eyeball | None] = []
        self._eye_openings: list[float] = []  # the photo's own (``eye_opening``), EYES order
        self._neutral: np.ndarray | None = None  # 478 x 3 float32, normalised driving landmarks
        self._previous: np.ndarray | None = None  # last moved source landmarks, for smoothing
        self._driver_closures: list[float] | None = None  # the driver's eyes' last closures (relative motion)
        self._neutral_openings: list[float] = []  # the neutral pose's eyes' 3-D openings, EYES order
        self._warp = Warp(size=self.size)
        self._strengths = (1.0, 1.0)  # (head, expression); see set_strengths

    # -- live controls -----------------------------------------------------------------------------------------
    @property
    def strengths(self) -> tuple[float, float]:
        """(head, expression) strength, each from 0 to 2 (1 copies the driver's motion as it is)."""
        return self._strengths

    def set_strengths(self, head: float, expression: float) -> None:
        """How much of the driver's head motion and expression the face copies, from the next frame on (see
        ``live.landmarks.motion``). One tuple swap: the live controls may call it from another thread.

        Raises:
            ValueError: a strength outside 0..2, or a strength other than 1 with absolute motion.
        """
        self._strengths = check_strengths(head, expression, relative=self.relative)

    # -- mediapipe ---------------------------------------------------------------------------------------------
    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """The face mesh of a driving crop: 478 x 3 float32 normalised landmarks, or None when there is no face.

        Args:
            frame: H x W x 3 uint8 RGB face crop.
        """
        check_image(frame, "detect")
        with self._mesh_lock:
            return self.face_mesh.landmarks(frame, static=not self.tracking)

    def close(self) -> None:
        """Release the mediapipe graphs (safe to call twice; ``detect`` would open them again)."""
        with self._mesh_lock:
            self.face_mesh.close()

    def __enter__(self) -> LandmarkBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- source ------------------------------------------------------------------------------------------------
    def set_source(self, image: np.ndarray) -> None:
        """Take the source photo: resize it to ``size x size``, find its landmarks, triangulate (once per source).
        A calibrated neutral pose is kept.

        Args:
            image: H x W x 3 uint8 RGB, ideally a square crop around the face.

        Raises:
            UserError: no face found in the image.
        """
        check_image(image, "set_source")
        with self._mesh_lock:
            points = self.face_mesh.landmarks(image, static=True)
        if points is None:
            raise UserError("no face found in the source image: use a photo with one face, seen from the front")
        n = self.size
        h, w = image.shape[:2]
        interpolation = cv2().INTER_AREA if min(h, w) > n else cv2().INTER_CUBIC
        self._source = source = np.ascontiguousarray(cv2().resize(image, (n, n), interpolation=interpolation))
        self._source_points = points = points.astype(np.float64) * n  # 478 x 3, output pixels
        self._mesh = build_mesh(points, size=n)
        self._motion = StrengthMotion.of(self._source_points, self._mesh, size=n)
        drawn = lids.is_drawn(source, points)
        self._mouth = build_mouth(source, points, drawn=drawn)
        self._eye_openings = [eye_opening(points, eye) for eye in EYES]
        self._lids = [lids.build_lid(source, points, eye, drawn_face=drawn) for eye in EYES]
        self._eyeballs = [eyes.build_eyeball(source, points, eye, iris) for eye, iris in zip(EYES, IRIS_CENTRES,
                                                                                             strict=True)]
        self._previous = None
        logger.info("landmarks: source set, %d vertices, %d triangles at %d x %d, %s, drawn eyes found: %s",
                    len(self._mesh.vertices), len(self._mesh.triangles), n, n, "drawn" if drawn else "a photo",
                    [lid is not None and lid.drawn is not None for lid in self._lids])

    # -- calibration -------------------------------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        """Whether a neutral pose is set (absolute motion needs none)."""
        return self._neutral is not None or not self.relative

    def calibrate(self, motion: np.ndarray) -> None:
        """Take these driving landmarks (from ``detect``) as the neutral pose; call again to recalibrate.

        Args:
            motion: 478 x 3 normalised landmarks.
        """
        self._neutral = check_landmarks(motion, "calibrate").copy()
        self._neutral_openings = [eye_opening(self._neutral, eye, turn_proof=True) for eye in EYES]
        self._previous = None
        self._driver_closures = None

    def reset_calibration(self) -> None:
        """Forget the neutral pose."""
        self._neutral = None
        self._previous = None
        self._driver_closures = None

    # -- motion ------------------------------------------------------------------------------------------------
    def moved_landmarks(self, motion: np.ndarray) -> np.ndarray:
        """Where the source's landmarks go for these driving landmarks: 478 x 3 float64 in output pixels.

        Args:
            motion: 478 x 3 normalised driving landmarks (from ``detect``).
        """
        driving = check_landmarks(motion, "render").astype(np.float64)
        if self._source_points is None:
            raise RuntimeError("set_source() must be called before render()")
        if not self.relative:
            moved = driving * self.size
        else:
            if self._neutral is None:
                raise RuntimeError("relative motion needs a neutral pose: call calibrate() first")
            moved = self._relative(driving)
            closures = self._driving_closures(driving)
            if self.smoothing and self._driver_closures is not None:
                closures = [self.smoothing * p + (1.0 - self.smoothing) * c
                            for p, c in zip(self._driver_closures, closures, strict=True)]
            self._driver_closures = closures
        if self.smoothing and self._previous is not None:
            moved = self.smoothing * self._previous + (1.0 - self.smoothing) * moved
        self._previous = moved
        return moved

    def _relative(self, driving: np.ndarray) -> np.ndarray:
        """The relative motion at the current strengths (``motion.StrengthMotion``)."""
        head, expression = self._strengths
        return self._motion.moved(self._neutral.astype(np.float64), driving, head=head, expression=expression)

    def moved_mesh(self, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The warp's triangles for these driving landmarks: ``(source, moved, triangles)``, the M x 2 vertex
        positions in the photo and moved (output pixels) and the T x 3 vertex indices; after ``render``,
        ``triangle_index`` says which triangle each output pixel shows. Moves the smoothing state as ``render``.

        Args:
            motion: 478 x 3 normalised driving landmarks (from ``detect``).
        """
        moved = self.moved_landmarks(motion)
        targets, _ = mesh_targets(self._mesh, moved, self._source_points)
        return self._mesh.vertices, targets, self._mesh.triangles

    @property
    def triangle_index(self) -> np.ndarray:
        """The last render's triangle per output pixel (size x size int32; the triangle count where none)."""
        return self._warp.index

    # -- rendering ---------------------------------------------------------------------------------------------
    def render(self, motion: np.ndarray, *, detail: bool = False) -> Rendered:
        """The source moved by ``motion``: ``frame`` size x size x 3 uint8 RGB; with ``detail``, also the warp
        (``warp``: its backward map and what was painted over it), for the paste-back that moves the full-resolution
        photo itself (``live.framing.pasteback_map``).

        Args:
            motion: 478 x 3 normalised driving landmarks (from ``detect``).
            detail: Also return the warp map.

        Raises:
            RuntimeError: no source set, or relative motion without a neutral pose.
        """
        out, pmap, plain = self._render(motion, keep_plain=detail)
        if plain is None:
            return Rendered(out)
        # Every pixel that differs from what the warp alone made was painted (closing lids, eyeballs, lashes, the
        # mouth's inside, softened tears).
        # The channels' differences OR-ed: 0.06 ms at 256 against 0.72 ms for numpy's any over the last axis of 3.
        change = cv2().absdiff(out, plain)  # size x size x 3
        painted = (change[..., 0] | change[..., 1] | change[..., 2]) != 0  # size x size
        return Rendered(out, warp=WarpMap(source_map=pmap, painted=painted))

    def _render(self, motion: np.ndarray, *, keep_plain: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(the frame, the warp's backward map, with ``keep_plain`` a copy of the frame as the warp alone made it
        (else None)) for ``motion``."""
        # The mesh keeps the eyes open (``lids.hold_open``): the closing lids are painted over the warp.
        moved = self.moved_landmarks(motion)
        closures = self._closures(moved)
        amounts = self._lid_amounts(closures)
        moved = lids.hold_open(moved, self._source_points, self._lids)
        cv = cv2()
        targets, depth = mesh_targets(self._mesh, moved, self._source_points)
        pmap = self._warp.backward_map(self._mesh, targets, depth)
        out = cv.remap(self._source, pmap, None, cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)
        # Copied before anything is painted over it: the same pixels as a second remap, at a tenth of its cost
        # (0.03 against 0.3-0.5 ms at 256 on the 2-core Xeon).
        plain = out.copy() if keep_plain else None
        if self._warp.culled:  # a surface turned away: the face's edge may have torn over its surroundings
            soften_tears(out, pmap, self._warp.index, self._mesh, targets)
        for eye, iris, ball, closed, amount in zip(EYES, IRIS_CENTRES, self._eyeballs, closures, amounts,
                                                   strict=True):
            if ball is not None and amount < 1.0:
                eyes.paint_eyeball(out, moved, self._source_points, eye, iris, ball, closed, 1.0 - amount)
        for lid, amount in zip(self._lids, amounts, strict=True):
            if lid is not None and amount > 0.0:
                lids.paint_lid(out, pmap, self._source, moved, lid, amount)
        if self.mouth_interior:
            paint_mouth(out, moved, self._source_points, self._source, self._mouth)
        return out, pmap, plain

    def _driving_closures(self, driving: np.ndarray) -> list[float]:
        """Per eye, how closed the driver's eye is against its neutral pose (``eye_opening``'s turn-proof measure: a
        turn or a tilt leaves it as it is, so both eyes of a blink read alike), times the expression strength (0 for
        an eye shut at calibration)."""
        return lids.driver_closures(driving, self._neutral_openings, self._strengths[1])

    def _closures(self, moved: np.ndarray) -> list[float]:
        """Per eye, how closed it is: with relative motion, the driver's own eye against its neutral pose (from the
        last ``moved_landmarks``: the lids follow the driver's openness whatever the source's eye shape); with
        absolute motion, the moved eye against the photo's: 1 - opening / the photo's opening (0 for an eye already
        shut in the photo)."""
        if self.relative and self._driver_closures is not None:
            return list(self._driver_closures)
        return [1.0 - eye_opening(moved, eye) / opening if opening > 0.02 else 0.0
                for eye, opening in zip(EYES, self._eye_openings, strict=True)]

    def _lid_amounts(self, closures: list[float]) -> list[float]:
        """Per eye, how far its lid is down: 0 while the eye is open, 1 once it is shut; the two eyes closing
        together when both close (``lids.couple``), 0 for an eye without a lid."""
        return [0.0 if lid is None else lids.lid_amount(closed)
                for lid, closed in zip(self._lids, lids.couple(closures), strict=True)]
