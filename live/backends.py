"""Animation backends: what turns a driving face crop into an animated source frame.

The live loop, ``animate`` and the benchmarks do not care which backend animates; each one has two steps, timed
separately by the pipeline:

    motion = backend.detect(driving_crop)   # "keypoints" stage: keypoints, landmarks...; None when no face is seen
    frame = backend.render(motion)          # "generator" stage: the animated source, size x size x 3 uint8 RGB

and a neutral pose that can be (re)set at any time with ``calibrate(motion)``.

A backend whose model runs on a GPU may also fit its frame to the output size there (``composes_on_device`` and
``render_fitted``), so that only the finished output frame is downloaded. A backend with ``render_parts`` (FOMM)
hands photo framing its frame as a tensor on the model's device with the dense motion field, so that the paste-back
and the detail transfer run there too (``live.pasteback_torch``).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    """The interface every animation backend implements.

    Attributes:
        name: Short name shown in logs and stats (``fomm``, ``landmarks``).
        size: Side of the square frames ``render`` returns.
        fast_rows: Optional. For array motion, the rows (first index) that move fast and briefly, such as eyelids in
            a blink: the live loop smooths them with a filter that follows quick motion (``live.smoothing``).
        composes_on_device: Optional. True when ``render_fitted(motion, width, height)`` fits the frame to the output
            size where the model ran (one download of the finished frame); the live loop then calls it instead of
            ``render``.
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


DEVICE_COMPOSE_ENV = "FOMM_LIVE_DEVICE_COMPOSE"
MIN_STRENGTH, MAX_STRENGTH = 0.0, 2.0


def check_strengths(head: float, expression: float, *, relative: bool) -> tuple[float, float]:
    """(head, expression) strength as floats, each from 0 to 2 (1 copies that part of the driver's motion).

    Raises:
        ValueError: a strength outside 0..2, or a strength other than 1 with absolute motion (no neutral pose to
            measure the motion from).
    """
    for name, value in (("head", head), ("expression", expression)):
        if not MIN_STRENGTH <= value <= MAX_STRENGTH:
            raise ValueError(f"{name} strength must be from {MIN_STRENGTH:g} to {MAX_STRENGTH:g}, got {value:g}")
    if not relative and (head, expression) != (1.0, 1.0):
        raise ValueError("head and expression strengths need relative motion (a neutral pose to measure from)")
    return float(head), float(expression)


def device_compose_enabled() -> bool:
    """Composition on the model's GPU, unless ``FOMM_LIVE_DEVICE_COMPOSE=0`` sends it back to OpenCV on the host."""
    return os.environ.get(DEVICE_COMPOSE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


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
        # On the CPU OpenCV fits faster than PyTorch and exactly as before; on CUDA the fit runs beside the generator.
        self.composes_on_device = animator.device.type == "cuda" and device_compose_enabled()
        # On the CPU the networks run one PyTorch thread per core: tracking in a second thread would only take cores
        # from them (``live.pipeline.pipelining_default``).
        self.uses_all_cores = animator.device.type == "cpu"

    @property
    def calibrated(self) -> bool:
        # Absolute motion needs no neutral pose.
        return self.animator.calibrated or not self.animator.motion.relative

    @property
    def strengths(self) -> tuple[float, float]:
        """(head, expression) strength (``models.strength``), each from 0 to 2."""
        current = self.animator.strengths
        return current.head, current.expression

    def set_strengths(self, head: float, expression: float) -> None:
        """Scale the driver's head motion and expression apart, from the next frame on (``check_strengths``)."""
        from models import Strengths

        self.animator.strengths = Strengths(*check_strengths(head, expression,
                                                             relative=self.animator.motion.relative))

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

    def render_parts(self, motion: Any, *, with_motion: bool) -> dict:
        """What photo framing pastes, left on the model's device: ``prediction`` (1 x 3 x size x size float in
        [0, 1]) and, with ``with_motion``, ``deformation`` (1 x h x w x 2) and ``occlusion_map`` (1 x 1 x h x w, when
        the model estimates one) for the detail transfer (``live.pasteback_torch``)."""
        out = self.animator.generate(motion, with_motion=with_motion)
        keys = ("prediction", "deformation", "occlusion_map") if with_motion else ("prediction",)
        return {k: out[k] for k in keys if k in out}

    def render_fitted(self, motion: Any, width: int, height: int) -> np.ndarray:
        """The animated frame fitted to ``width`` x ``height`` (``live.compose.fit_to_output``) on the model's
        device, then downloaded once: height x width x 3 uint8 RGB."""
        from live.compose import fit_to_output_tensor
        from models.animator import download_image

        prediction = self.animator.generate(motion)["prediction"]  # 1 x 3 x size x size float in [0, 1]
        return download_image(fit_to_output_tensor(prediction, width, height))
