"""The backend contract: what turns a driving face crop into an animated source frame, declared in one place.

The live loop, ``animate`` and the benchmarks do not care which backend animates; each one has two steps, timed
separately by the pipeline:

    motion = backend.detect(driving_crop)        # "keypoints" stage: keypoints, landmarks...; None when no face
    rendered = backend.render(motion)            # "generator" stage: a ``Rendered``, the animated square and,
                                                 # with ``detail=True``, the motion that made it

and a neutral pose that can be (re)set at any time with ``calibrate(motion)``. What a backend can do is said by its
fields (``Backend``), never found by trying attributes: where its frames are (``device``), whether its model keeps
every CPU core busy (``uses_all_cores``), whether the output frame is fitted where it rendered
(``composes_on_device``), and which motion ``render(..., detail=True)`` adds (``motion_kind``: FOMM's dense
motion field, or the landmark backend's warp map). ``close()`` releases what a backend holds; it is safe to call
twice. The compositor that pastes a ``Rendered`` into the output frame is chosen once from these fields
(``live.framing.compositor.make_compositor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from fomm_live.common.switches import switch

MotionKind = Literal["none", "field", "warp"]
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


@dataclass(frozen=True)
class MotionField:
    """FOMM's dense motion, for the detail transfer of photo framing (``live.framing.pasteback_torch``).

    Attributes:
        deformation: Where each output pixel comes from in the source square, grid_sample coordinates
            (align_corners=False): 1 x h x w x 2 tensor on the backend's device, or h x w x 2 float32 on the host.
        occlusion: 1 where the source is visible, 0 where the generator inpaints: 1 x 1 x h x w tensor, or h x w
            float32; None when the model estimates none.
    """

    deformation: Any
    occlusion: Any | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(h x w x 2 float32, h x w float32 or None) on the host."""
        return _host(self.deformation, 3), None if self.occlusion is None else _host(self.occlusion, 2)


def _host(value: Any, ndim: int) -> np.ndarray:
    """A tensor or array with leading batch/channel axes of 1 -> its last ``ndim`` axes as float32 numpy."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        array = value.detach().float().cpu().numpy()
    return array.reshape(array.shape[array.ndim - ndim:]).astype(np.float32, copy=False)


@dataclass(frozen=True)
class WarpMap:
    """The landmark backend's warp, for the paste-back that moves the full-resolution photo itself
    (``live.framing.pasteback_map``).

    Attributes:
        source_map: size x size x 2 float32: per pixel, the source square's position (x, y; pixel centres at integer
            coordinates) the warp took it from, ``cv2.remap``'s map. The identity where nothing moved.
        painted: size x size bool: pixels that are not the warped source (lids, eyeballs, lashes, the mouth's
            inside, softened tears).
    """

    source_map: np.ndarray
    painted: np.ndarray


@dataclass(frozen=True)
class Rendered:
    """What ``Backend.render`` returns.

    Attributes:
        frame: The animated square: size x size x 3 uint8 RGB on the host, or, from a backend that renders on its
            ``device`` (FOMM), a 1 x 3 x size x size tensor there (float in [0, 1]; uint8 levels also accepted).
        field: FOMM's motion field when ``detail`` was asked (``motion_kind == "field"``), else None.
        warp: The landmark backend's warp map when ``detail`` was asked (``motion_kind == "warp"``), else None.
        held: Not a render of this motion but the last frame again (a remote backend whose server is away): the live
            loop keeps making in-betweens from its newest real keyframe instead (``live.loop.keyframes``).
    """

    frame: Any
    field: MotionField | None = None
    warp: WarpMap | None = None
    held: bool = False

    def image(self) -> np.ndarray:
        """The frame as size x size x 3 uint8 RGB on the host (a tensor rounded as ``models.tensor_to_image``)."""
        if isinstance(self.frame, np.ndarray):
            return self.frame
        frame = self.frame[0] if self.frame.ndim == 4 else self.frame  # 3 x n x n
        if frame.dtype.is_floating_point:
            frame = (frame.detach().float().clamp(0, 1) * 255).round()
        return np.ascontiguousarray(frame.byte().permute(1, 2, 0).cpu().numpy())


class Backend:
    """The interface every animation backend implements: the capabilities as fields, the methods below.

    Attributes:
        name: Short name shown in logs and stats (``fomm``, ``landmarks``).
        size: Side of the square frames ``render`` returns.
        device: Where ``render``'s tensors are and where a paste-back from them runs (``cpu`` for a backend that
            renders on the host).
        uses_all_cores: Its model keeps every CPU core busy by itself (the live loop then tracks and renders in one
            thread: ``live.loop.pipeline.pipelining_default``).
        composes_on_device: The output frame is fitted on ``device`` (one download of the finished frame) rather
            than with OpenCV on the host.
        motion_kind: What ``render(..., detail=True)`` adds: ``field`` (FOMM's dense motion field and
            occlusion), ``warp`` (a warp map and painted mask) or ``none``.
        fast_rows: For array motion, the rows (first index) that move fast and briefly, such as eyelids in a blink:
            the live loop smooths them with a filter that follows quick motion (``live.loop.smoothing``).
        first_source_slow: ``set_source`` of a photo it has not had before takes seconds (the int8 engine calibrates
            on each photo, about 20 s at vox-256 size on a 2-core CPU): the live loop gives it every avatar once
            before the first frame, so that switching avatars in a call never freezes the picture.
        needs_face: ``set_source`` refuses a photo without a face (the landmark backend moves a face mesh); without
            it, a photo in which no face is found is animated as its centre crop (the FOMM moves any picture).
        inbetweens: Its renders may be moved by the face's motion between two of them (``live.loop.keyframes``): a
            generator slower than a camera (FOMM: about 5 keyframes a second on a 2-core CPU) whose frames are the
            avatar's face, which the face mesh can follow. The landmark backend keeps up by itself.
        detect_beside_render: ``detect`` uses nothing ``render`` or ``set_source`` changes, and may run on another
            thread while they run: the live loop then calls it in the tracking stage, so that the crop's motion of
            frame N+1 is found beside the render of frame N (the landmark backend's face mesh, a CPU graph of its
            own). False for a model whose detector shares its cores or device with the generator (FOMM).
    """

    name: str = "backend"
    size: int = 256
    device: str = "cpu"
    uses_all_cores: bool = False
    composes_on_device: bool = False
    motion_kind: MotionKind = "none"
    fast_rows: ClassVar[tuple[int, ...]] = ()
    first_source_slow: bool = False
    needs_face: bool = False
    inbetweens: bool = False
    detect_beside_render: bool = False

    def set_source(self, image: np.ndarray) -> None:
        """Take an H x W x 3 uint8 RGB source crop; expensive per-source work happens here, once."""
        raise NotImplementedError

    def detect(self, frame: np.ndarray) -> Any:
        """The motion representation of an H x W x 3 uint8 RGB driving crop (None when there is no face)."""
        raise NotImplementedError

    def calibrate(self, motion: Any) -> None:
        """Take ``motion`` (from ``detect``) as the neutral pose."""
        raise NotImplementedError

    def reset_calibration(self) -> None:
        """Forget the neutral pose."""
        raise NotImplementedError

    @property
    def calibrated(self) -> bool:
        """Whether a neutral pose is set (relative motion needs one)."""
        raise NotImplementedError

    def render(self, motion: Any, *, detail: bool = False) -> Rendered:
        """The source moved by ``motion``; with ``detail``, also the motion of ``motion_kind``."""
        raise NotImplementedError

    @property
    def strengths(self) -> tuple[float, float]:
        """(head, expression) strength, each from 0 to 2."""
        raise NotImplementedError

    def set_strengths(self, head: float, expression: float) -> None:
        """How much of the driver's motion against the neutral pose the face copies from the next frame on: its head
        (rotation, translation, scale) and its expression (the rest), each from 0 (held at the neutral pose) through
        1 (as it is) to 2 (doubled, within bounds that never fold the face). Cheap: the live controls call it from the
        preview's thread (``check_strengths`` says what is refused)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (safe to call twice); nothing by default."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def device_compose_enabled() -> bool:
    """Composition on the model's GPU, unless ``FOMM_LIVE_DEVICE_COMPOSE=0`` sends it back to OpenCV on the host."""
    return switch("FOMM_LIVE_DEVICE_COMPOSE") != "0"


class FommBackend(Backend):
    """The First Order Motion Model as a backend: ``detect`` runs the keypoint detector, ``render`` the motion
    normalisation and the cached-source generator; its frames stay on the model's device.

    Args:
        animator: A loaded ``models.Animator`` (closed by ``close``).
    """

    name = "fomm"
    motion_kind: MotionKind = "field"
    inbetweens = True

    def __init__(self, animator: Any) -> None:
        self.animator = animator
        self.size = animator.image_size
        self.device = str(animator.device)
        # On the CPU OpenCV fits faster than PyTorch and exactly as before; on CUDA the fit runs beside the generator.
        self.composes_on_device = animator.device.type == "cuda" and device_compose_enabled()
        # On the CPU the networks run one PyTorch thread per core: tracking in a second thread would only take cores
        # from them (``live.loop.pipeline.pipelining_default``).
        self.uses_all_cores = animator.device.type == "cpu"
        # int8 calibrates on each photo the first time it is set (then cached on disk and kept loaded).
        self.first_source_slow = animator.precision == "int8"

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
        from fomm_live.models import Strengths

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

    def render(self, motion: Any, *, detail: bool = False) -> Rendered:
        """The prediction (1 x 3 x size x size float in [0, 1] on the model's device) and, with ``detail``,
        the dense motion field (1 x h x w x 2) and occlusion map (1 x 1 x h x w, when the model estimates one)."""
        out = self.animator.generate(motion, with_motion=detail)
        field = MotionField(out["deformation"], out.get("occlusion_map")) if detail else None
        return Rendered(out["prediction"], field=field)

    def close(self) -> None:
        self.animator.close()
