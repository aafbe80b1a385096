"""Animation backends: what turns a driving face crop into an animated source frame.

The live loop, ``animate`` and the benchmarks do not care which backend animates; each one has two steps, timed
separately by the pipeline:

    motion = backend.detect(driving_crop)   # "keypoints" stage: keypoints, landmarks...; None when no face is seen
    frame = backend.render(motion)          # "generator" stage: the animated source, size x size x 3 uint8 RGB

and a neutral pose that can be (re)set at any time with ``calibrate(motion)``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    """The interface every animation backend implements.

    Attributes:
        name: Short name shown in logs and stats (``fomm``, ``landmarks``).
        size: Side of the square frames ``render`` returns.
        fast_rows: Optional. For array motion, the rows (first index) that move fast and briefly, such as eyelids in
            a blink: the live loop smooths them with a filter that follows quick motion (``live.pipeline``).
    """

    name: str
    size: int

    def set_source(self, image: np.ndarray) -> None:
        """Take an H x W x 3 uint8 RGB source crop; expensive per-source work happens here, once."""

    def detect(self, frame: np.ndarray) -> Any:
        """The motion representation of an H x W x 3 uint8 RGB driving crop (None when there is no face)."""

    def calibrate(self, motion: Any) -> None:
        """Take ``motion`` (from ``detect``) as the neutral pose."""

    def reset_calibration(self) -> None:
        """Forget the neutral pose."""

    @property
    def calibrated(self) -> bool:
        """Whether a neutral pose is set (relative motion needs one)."""

    def render(self, motion: Any) -> np.ndarray:
        """The source moved by ``motion``: size x size x 3 uint8 RGB."""


class FommBackend:
    """The First Order Motion Model as a backend: ``detect`` runs the keypoint detector, ``render`` the motion
    normalisation and the cached-source generator.

    Args:
        animator: A loaded ``models.Animator``.
    """

    name = "fomm"

    def __init__(self, animator: Any) -> None:
        self.animator = animator
        self.size = animator.image_size

    @property
    def calibrated(self) -> bool:
        # Absolute motion needs no neutral pose.
        return self.animator.calibrated or not self.animator.motion.relative

    def set_source(self, image: np.ndarray) -> None:
        self.animator.set_source(image)

    def detect(self, frame: np.ndarray) -> Any:
        return self.animator.keypoints(frame)

    def calibrate(self, motion: Any) -> None:
        self.animator.calibrate(motion)

    def reset_calibration(self) -> None:
        self.animator.reset_calibration()

    def render(self, motion: Any) -> np.ndarray:
        from models import tensor_to_image

        return tensor_to_image(self.animator.generate(motion)["prediction"])
