"""``KeyframeEvery``: a backend that runs the generator on every N-th frame and in-betweens on the rest, for
``fomm-live animate --keyframe-every N`` (offline and deterministic: which frames are keyframes depends only on their
order, never on time).

It wraps the real backend and declares the same fields, so the live pipeline runs it unchanged. ``detect`` counts the
driving crops it is given: the first and every N-th after it are keyframes (the inner backend's ``render``, the
generator); for the others ``render`` moves the last keyframe's square by the face's motion since then
(``Inbetweener`` at the model's square, placement ``(0, 0, size)``). With photo framing the in-between also carries
the keyframe's motion field along the same warp (the field at the keyframe pixel each in-between pixel shows), so the
paste-back transfers the photo's detail as on a keyframe. A crop whose face mesh finds no face runs the generator
instead, and is no keyframe for the frames after it: they move the last keyframe whose face mesh was found (until the
first one, every frame is the generator's). The inner ``detect`` (FOMM's keypoint detector, about a tenth of the
generator's time) runs on every frame, so that the loop's keypoint smoothing and calibration see the frames they see
without in-betweens, and a keyframe is the generator's frame exactly, with ``--crop face``'s smoothing too. N = 1 is
the inner backend itself, frame for frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from fomm_live.live.backends import Backend, MotionField, Rendered
from fomm_live.live.errors import UserError
from fomm_live.live.inbetween.renderer import Inbetweener
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.media import cv2

logger = logging.getLogger(__name__)


@dataclass
class FrameMotion:
    """What ``KeyframeEvery.detect`` returns for one driving crop.

    Attributes:
        inner: The inner backend's motion (found on every frame, so that smoothing and calibration see every frame).
        landmarks: The crop's 478 x 3 normalised face mesh (None: not needed, or no face found).
        crop: The driving crop.
        keyframe: Whether the generator renders this frame.
    """

    inner: Any
    landmarks: np.ndarray | None
    crop: np.ndarray
    keyframe: bool

    def smoothed_by(self, smoother: Any, t: float) -> FrameMotion:
        """The loop's smoothing applies to the inner motion (``live.loop.smoothing``); the face mesh is used as
        found, as the keyframe's was."""
        return FrameMotion(smoother(self.inner, t), self.landmarks, self.crop, self.keyframe)


class KeyframeEvery(Backend):
    """The inner backend on every ``every``-th driving crop, in-betweens on the rest (see the module docstring).

    Args:
        inner: The backend that renders keyframes (FOMM).
        every: A keyframe every this many frames (1: every frame is the inner backend's).
    """

    def __init__(self, inner: Backend, *, every: int) -> None:
        if every < 1:
            raise ValueError(f"every: expected 1 or more frames, got {every}")
        self.inner = inner
        self.every = int(every)
        self.name, self.size, self.device = inner.name, inner.size, inner.device
        self.uses_all_cores, self.composes_on_device = inner.uses_all_cores, inner.composes_on_device
        self.motion_kind, self.fast_rows = inner.motion_kind, inner.fast_rows
        self.first_source_slow = inner.first_source_slow
        self._count = 0  # driving crops seen
        self._mesh = FaceMesh() if every > 1 else None
        self._renderer = Inbetweener(size=inner.size, face_mesh=self._mesh) if every > 1 else None
        self._key_field: tuple[np.ndarray, np.ndarray | None] | None = None  # the keyframe's motion field (host)
        self._has_key = False

    # -- the contract, passed on ----------------------------------------------------------------------------------
    def check_source(self, image: np.ndarray) -> None:
        """Raise ``UserError`` now, before any output is opened, if the in-betweens cannot follow this photo (its face
        mesh finds no face); nothing with every=1.

        Args:
            image: H x W x 3 uint8 RGB, the avatar's crop.
        """
        if self._mesh is not None and self._mesh.landmarks(image, static=True) is None:
            raise UserError("--keyframe-every needs a face in the photo, and the face mesh found none: leave the "
                            "option out to render every frame with the generator")

    def set_source(self, image: np.ndarray) -> None:
        if self._renderer is not None:
            self.check_source(image)
        self.inner.set_source(image)
        if self._renderer is not None:
            self._renderer.set_source(image)
            self._has_key = False

    def detect(self, frame: np.ndarray) -> FrameMotion | None:
        index = self._count
        self._count += 1
        inner = self.inner.detect(frame)  # every frame: the loop's smoothing sees the keypoints as without in-betweens
        if inner is None:
            return None
        if self._renderer is None:
            return FrameMotion(inner, None, frame, keyframe=True)
        landmarks = self._mesh.landmarks(frame, static=True)
        keyframe = index % self.every == 0 or not self._has_key or landmarks is None
        return FrameMotion(inner, landmarks, frame, keyframe=keyframe)

    def calibrate(self, motion: FrameMotion) -> None:
        self.inner.calibrate(motion.inner)
        if self._renderer is not None:
            if motion.landmarks is None:
                logger.warning("--keyframe-every: no face mesh in the neutral frame; every frame is the generator's")
                self._renderer = None
            else:
                self._renderer.calibrate(motion.landmarks)

    def reset_calibration(self) -> None:
        self.inner.reset_calibration()
        if self._renderer is not None:
            self._renderer.reset_calibration()
        self._has_key = False

    @property
    def calibrated(self) -> bool:
        return self.inner.calibrated

    @property
    def strengths(self) -> tuple[float, float]:
        return self.inner.strengths

    def set_strengths(self, head: float, expression: float) -> None:
        self.inner.set_strengths(head, expression)
        if self._renderer is not None:
            self._renderer.set_strengths(head, expression)

    def close(self) -> None:
        self.inner.close()
        if self._mesh is not None:
            self._mesh.close()

    # -- keyframes and in-betweens -------------------------------------------------------------------------------
    def render(self, motion: FrameMotion, *, detail: bool = False) -> Rendered:
        if motion.keyframe:
            rendered = self.inner.render(motion.inner, detail=detail)
            if self._renderer is not None and motion.landmarks is not None:  # else the last keyframe stays
                self._renderer.keyframe(rendered.image(), motion.landmarks, (0.0, 0.0, float(self.size)))
                self._key_field = rendered.field.arrays() if rendered.field is not None else None
                self._has_key = True
            return rendered
        frame = self._renderer.render(motion.landmarks)
        field = None
        if detail and self._key_field is not None:
            field = self._carried_field(*self._key_field)
        return Rendered(frame, field=field)

    def _carried_field(self, deformation: np.ndarray, occlusion: np.ndarray | None) -> MotionField:
        """The keyframe's motion field moved with the in-between: at each field cell, the keyframe's field where
        the in-between shows the keyframe from (``Inbetweener.square_map``)."""
        cv = cv2()
        h, w = deformation.shape[:2]
        n = self.size
        square = self._renderer.square_map  # n x n x 2: keyframe square pixel shown at each in-between pixel
        cells = cv.resize(square, (w, h), interpolation=cv.INTER_LINEAR)  # h x w x 2, square pixels
        fx = (cells[..., 0] + 0.5) * (w / n) - 0.5  # h x w: field cell coordinates
        fy = (cells[..., 1] + 0.5) * (h / n) - 0.5
        moved = cv.remap(deformation, fx, fy, cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)  # h x w x 2
        visible = None if occlusion is None else cv.remap(occlusion, fx, fy, cv.INTER_LINEAR,
                                                          borderMode=cv.BORDER_REPLICATE)
        return MotionField(deformation=moved, occlusion=visible)
