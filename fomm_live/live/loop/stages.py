"""The two stages of the live loop and what each one owns.

- ``TrackingStage`` (CPU): the hotkeys that change the crop geometry or the mirror, the mirror itself, face
  detection, the crop box (``CropTracker``), the crop, and the backend's ``detect`` where it runs beside ``render``
  (``Backend.detect_beside_render``). It owns the tracker and ``Controls.mirror``.
- ``ModelStage`` (the model's device): every other hotkey, the backend's ``detect`` (keypoints) otherwise, smoothing,
  calibration (it needs the face and the media time from tracking and the motion from ``detect``), ``render``
  (generator), composition to the output size (the compositor's ``paste``, ``live.framing.compositor``) and the
  preview. It owns the backend, the smoother, the calibrators, the compositor, the avatar choice, the held frame and
  the event log.

A ``TrackedFrame`` carries everything the model stage needs from tracking, including the hotkeys bound for it, so
each key applies at the same input frame whether the stages run one after the other or in two threads.
``FailurePolicy`` (``live.loop.failures``) is the rule for frames that fail in either stage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fomm_live.live.avatars import Avatar
from fomm_live.live.backends import Backend, Rendered
from fomm_live.live.capture.sources import CapturedFrame
from fomm_live.live.compose import add_label
from fomm_live.live.errors import UserError
from fomm_live.live.face import CropBox, CropTracker, Face, FaceDetector, centre_crop_box, crop_square
from fomm_live.live.framing.compositor import PhotoCompositor, make_compositor
from fomm_live.live.loop.calibration import AutoCalibrator, BestFrameSelector
from fomm_live.live.loop.hotkeys import GEOMETRY_CHANGED, Controls, apply_model_key, apply_tracking_key, is_tracking_key
from fomm_live.live.loop.overlay import build_preview
from fomm_live.live.loop.smoothing import MotionSmoother
from fomm_live.live.output.sinks import FrameInfo, StillOutside
from fomm_live.live.stats import PipelineStats
from fomm_live.live.threads import MODEL_TURNS

logger = logging.getLogger(__name__)

def give_source(backend: Backend, avatar: Avatar) -> None:
    """``backend.set_source`` of the avatar's crop; a photo it refuses is named (the backend sees only the crop)."""
    try:
        backend.set_source(avatar.crop)
    except UserError as err:
        raise UserError(f"{avatar.name}: {err}") from err


@dataclass
class TrackedFrame:
    """A captured frame after the tracking stage.

    Attributes:
        item: The captured frame (index, capture time, media time).
        face: The tracked face (None: none in view, or ``crop="none"``).
        box: The crop box (None before the first face).
        crop: The backend-sized square crop (None without a box).
        keys: Hotkeys for the model stage, in the order pressed, to apply before this frame.
        error: What made tracking fail on this frame (the model stage then serves the held frame).
        landmarks: The crop's face mesh, 478 x 3 normalised (``live.landmarks``), for in-betweens; None when not
            asked for or not found.
        motion: The backend's ``detect`` of the crop when tracking ran it (``detected``; None: no face).
        detected: Whether tracking ran ``detect`` (``Backend.detect_beside_render``): the model stage then does not.
    """

    item: CapturedFrame
    face: Face | None = None
    box: CropBox | None = None
    crop: np.ndarray | None = None
    keys: list[str] = field(default_factory=list)
    error: Exception | None = None
    landmarks: np.ndarray | None = None
    motion: Any = None
    detected: bool = False

    @property
    def index(self) -> int:
        return self.item.index


def merge_keys(older: TrackedFrame, newer: TrackedFrame) -> TrackedFrame:
    """A newer tracked frame replacing an older one in a hand-off keeps the older one's model keys (first)."""
    newer.keys = older.keys + newer.keys
    return newer


def timed(stats: PipelineStats, stage: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    stats.add(stage, (time.perf_counter() - t0) * 1000)
    return result


class TrackingStage:
    """Face tracking and crop, on the CPU.

    Args:
        crop_mode: ``face`` or ``none`` (the centre square of the whole frame).
        detector: The face detector (``crop_mode="face"``).
        size: Side of the crops (the backend's input size).
        smoothing: Smooth the crop box.
        crop_tracking: How the crop box follows the face (``live.options.CROP_TRACKING``).
        controls: Where ``mirror`` lives (this stage owns it).
        stats: Receives the ``face_tracking``, ``crop``, ``face_mesh`` and (with ``detect``) ``keypoints`` times.
        face_mesh: Finds the crop's landmarks on every frame, for in-betweens (``live.landmarks.FaceMesh``, video
            mode); None: not needed.
        detect: The backend's ``detect`` when it declares ``detect_beside_render``: run here on each crop with a face
            (``keypoints``), beside the model stage's render of the frame before. None: the model stage runs it.
    """

    def __init__(self, *, crop_mode: str, detector: FaceDetector | None, size: int, smoothing: bool,
                 crop_tracking: str, controls: Controls, stats: PipelineStats, face_mesh: Any | None = None,
                 detect: Callable[[np.ndarray], Any] | None = None) -> None:
        self.face_mesh = face_mesh
        self.detect = detect
        self.crop_mode = crop_mode
        self.detector = detector
        self.size = size
        self.controls = controls
        self.stats = stats
        self.tracker = CropTracker(smoothing=smoothing, tracking=crop_tracking)

    def apply_key(self, key: str) -> None:
        apply_tracking_key(key, self.controls, self.tracker)
        if key == "m":  # the face is now on the other side: follow it from there instead of gliding across
            self.tracker.reset()

    def __call__(self, item: CapturedFrame, keys: list[str]) -> TrackedFrame:
        """Apply this frame's tracking keys (the others ride along to the model stage, followed by
        ``GEOMETRY_CHANGED`` when a tracking key changed the crops), then track and crop."""
        tracked = TrackedFrame(item)
        changed = False
        for key in keys:
            if is_tracking_key(key):
                self.apply_key(key)
                changed = True
            else:
                tracked.keys.append(key)
        if changed:
            tracked.keys.append(GEOMETRY_CHANGED)
        try:
            frame = item.image[:, ::-1] if self.controls.mirror else item.image
            if self.crop_mode == "face":
                assert self.detector is not None
                faces = timed(self.stats, "face_tracking", lambda: self.detector.detect(np.ascontiguousarray(frame)))
                tracked.face = faces[0] if faces else None
            t0 = time.perf_counter()
            tracked.box = (self.tracker.update(tracked.face, item.media_time) if self.crop_mode == "face"
                           else centre_crop_box(*frame.shape[:2]))
            tracked.crop = None if tracked.box is None else crop_square(frame, tracked.box, self.size)
            self.stats.add("crop", (time.perf_counter() - t0) * 1000)
            if self.face_mesh is not None and tracked.crop is not None:
                tracked.landmarks = timed(self.stats, "face_mesh",
                                          lambda: self.face_mesh.landmarks(tracked.crop, static=False))
            if (self.detect is not None and tracked.crop is not None and not self.controls.frozen
                    and (self.crop_mode != "face" or tracked.face is not None)):
                tracked.motion = timed(self.stats, "keypoints", lambda: self.detect(tracked.crop))
                tracked.detected = True
        except Exception as err:  # noqa: BLE001 - handed to the model stage's failure policy with the frame
            tracked.error = err
        return tracked


class _StillFaceType:
    """Stands in for a face with ``crop="none"``: the whole frame never moves, so calibration happens once the
    steady time has passed."""

    centre = (0.0, 0.0)
    size = 1.0
    points = None


_StillFace = _StillFaceType()


class ModelStage:
    """Keypoints, smoothing, calibration, render and composition, on the model's device.

    Args:
        backend: The animation backend.
        avatars: Prepared source photos (``live.avatars.Avatar``).
        output_size: (width, height) of output frames.
        crop_mode: ``face`` or ``none``.
        smoother: The motion smoother (None: no smoothing).
        calibrator: The automatic calibrator.
        controls: Best-frame mode and the preview toggles (this stage owns them).
        label: Draw the disclosure label on outputs.
        preview: Build the preview frame (a preview window is open).
        stats: Receives the ``keypoints`` (unless tracking ran ``detect``), ``generator`` and ``compose`` times.
        camera_lost: Tells whether the camera is being reconnected (for the preview).
        calibrate_first: Take the first frame with motion as the neutral pose when none is set yet.
        framing: ``face``: the model's square fitted to the output; ``photo``: the whole source photo framed for the
            output with the animated face pasted back (``live.framing.compositor``).
        detail: With photo framing, the photo's fine detail carried along the motion (``live.framing.pasteback``).
    """

    def __init__(self, *, backend: Backend, avatars: list, output_size: tuple[int, int], crop_mode: str,
                 smoother: MotionSmoother | None, calibrator: AutoCalibrator, controls: Controls, label: bool,
                 preview: bool, stats: PipelineStats, camera_lost: Callable[[], bool],
                 calibrate_first: bool = False, framing: str = "face", detail: bool = True) -> None:
        self.backend = backend
        self.avatars = avatars
        self.output_size = output_size
        self.crop_mode = crop_mode
        self.smoother = smoother
        self.calibrator = calibrator
        self.controls = controls
        self.label = label
        self.preview = preview
        self.stats = stats
        self.camera_lost = camera_lost
        self.calibrate_first = calibrate_first
        self.events: list[tuple[int, str]] = []  # (input frame index, what happened): calibrations, switches
        self.best_selector: BestFrameSelector | None = None
        self.avatar_index = 0
        self.frame_index = -1
        self._held: np.ndarray | None = None  # the last animated frame at the output size, held while no face
        self._strengths = (1.0, 1.0)  # what the backend was last given (``Controls`` says what is wanted)
        if smoother is not None and controls.kp_min_cutoff is None:
            controls.kp_min_cutoff = smoother.min_cutoff
        self.compositor = make_compositor(framing=framing, avatars=avatars, output_size=output_size, backend=backend,
                                          detail=detail)
        if backend.first_source_slow:
            self._prepare_avatars()
        self.select_avatar(0)

    @property
    def photo(self) -> PhotoCompositor | None:
        """The photo framing's compositor (its framed photo, framing and paste-back), None with ``framing="face"``."""
        return self.compositor if isinstance(self.compositor, PhotoCompositor) else None

    def _prepare_avatars(self) -> None:
        """Give the backend every avatar but the first once, before the first frame (``Backend.first_source_slow``):
        what it does for a new photo then happens at start, not when the avatar is switched to in a call."""
        for number, avatar in enumerate(self.avatars[1:], 2):
            logger.info("avatar %d of %d (%s): preparing it now, so that switching to it later is quick", number,
                        len(self.avatars), avatar.name)
            give_source(self.backend, avatar)

    # ------------------------------------------------------------------------------------------------ hotkeys
    def select_avatar(self, index: int) -> None:
        if not 0 <= index < len(self.avatars):
            return
        self.avatar_index = index
        avatar = self.avatars[index]
        give_source(self.backend, avatar)
        self._held = None  # with no face in view the new avatar shows (unanimated), not the old one's last frame
        self.compositor.select(index)
        self.best_selector = BestFrameSelector(avatar.points) if avatar.points is not None else None
        self.events.append((self.frame_index, f"avatar {index}"))
        logger.info("avatar %d: %s", index + 1, avatar.name)

    def apply_key(self, key: str) -> None:
        action = apply_model_key(key, self.controls)
        if action is None:
            return
        if action.kind == "recalibrate":
            self.calibrator.request()
            self.events.append((self.frame_index, "recalibrate requested"))
        elif action.kind == "avatar":
            self.select_avatar(action.value)
        elif action.kind == "step_avatar":
            self.select_avatar((self.avatar_index + action.value) % len(self.avatars))
        elif action.kind == "best_frame":
            if self.best_selector is not None:
                self.best_selector.reset()
            logger.info("best-frame mode %s", "on" if self.controls.best_frame else "off")
        elif action.kind == "geometry":
            self.recalibrate_from_scratch()
        elif action.kind == "freeze":
            self.events.append((self.frame_index, "frozen" if self.controls.frozen else "unfrozen"))
            logger.info("output %s", "frozen" if self.controls.frozen else "live again")

    def follow_controls(self) -> None:
        """Hand the backend and the smoother what the controls want now (hotkeys and sliders change ``controls``
        from the preview's side; this stage applies them at the start of a frame)."""
        wanted = (self.controls.head_strength, self.controls.expression_strength)
        if wanted != self._strengths:
            try:
                self.backend.set_strengths(*wanted)
            except ValueError as err:  # absolute motion: nothing to scale; the controls go back to 1
                logger.warning("%s", err)
                self.controls.head_strength = self.controls.expression_strength = 1.0
                wanted = (1.0, 1.0)
            else:
                logger.info("head strength %.1f, expression strength %.1f", *wanted)
            self._strengths = wanted
        cutoff = self.controls.kp_min_cutoff
        if self.smoother is not None and cutoff is not None and cutoff != self.smoother.min_cutoff:
            self.smoother.set_min_cutoff(cutoff)
            logger.info("keypoint smoothing cutoff %.2f Hz", cutoff)

    def recalibrate_from_scratch(self) -> None:
        """After the crop geometry or the mirror changed: forget the neutral pose and the smoothed motion (both
        belong to the old crops) and take a new neutral once the face is steady; meanwhile the last animated frame
        is held."""
        self.backend.reset_calibration()
        if self.smoother is not None:
            self.smoother.reset()
        if self.best_selector is not None:
            self.best_selector.reset()
        self.calibrator.request()
        self.events.append((self.frame_index, "crop changed: recalibrating"))
        logger.info("the crop or the mirror changed: taking the neutral pose again once the face is still")

    # ---------------------------------------------------------------------------------------------- per frame
    def begin(self, tracked: TrackedFrame) -> None:
        """Apply the hotkeys bound for this frame (before it is processed, even if it then fails)."""
        self.frame_index = tracked.index
        for key in tracked.keys:
            self.apply_key(key)
        self.follow_controls()

    def __call__(self, tracked: TrackedFrame) -> tuple[np.ndarray, FrameInfo]:
        """The output frame of a tracked frame and what is known about it."""
        status: list[str] = []
        with MODEL_TURNS.running():  # the recording's encoder waits for the end of this (live.threads)
            motion, rendered = self._model(tracked, status)
        t0 = time.perf_counter()
        still = self.compositor.still_outside() if rendered is not None or self._held is None else None  # not held
        if rendered is not None:
            self.stats.mark_keyframe(time.perf_counter())
            fitted = self._held = self.compositor.paste(rendered)
        else:
            fitted = self.held_frame()
        return self.output(tracked, fitted, status, t0, face=motion is not None, animated=rendered is not None,
                           still=still)

    def output(self, tracked: TrackedFrame, fitted: np.ndarray, status: list[str], t0: float, *, face: bool,
               animated: bool, inbetween: bool = False, still: StillOutside = None) -> tuple[np.ndarray, FrameInfo]:
        """The output frame (``fitted`` with the label), its info and preview; ``compose`` timed from ``t0``."""
        out = add_label(fitted) if self.label else fitted
        preview = (build_preview(out, tracked.crop, status, controls=self.controls, stats=self.stats,
                                 camera_lost=self.camera_lost()) if self.preview else None)
        self.stats.add("compose", (time.perf_counter() - t0) * 1000)
        box = tracked.box
        info = FrameInfo(tracked.index, tracked.item.captured_at, face=face, animated=animated, preview=preview,
                         status=status, crop_box=None if box is None else (box.cx, box.cy, box.side),
                         inbetween=inbetween, still_outside=still)
        return out, info

    def close(self) -> None:
        """Release what the stage holds beyond the backend (nothing here; see ``live.loop.keyframes``)."""

    def _model(self, tracked: TrackedFrame, status: list[str]) -> tuple[Any, Rendered | None]:
        """The model's calls for one frame: keypoints, smoothing, calibration, render. Returns the motion (None with
        no face, or frozen) and the rendered frame (None when not animated); says why not in ``status``."""
        face, crop, t = tracked.face, tracked.crop, tracked.item.media_time
        motion = None
        if self.controls.frozen:  # the outputs keep the frame they had: no model work until released
            status.append("frozen (f to go on)")
        elif crop is None or (self.crop_mode == "face" and face is None):
            self.stats.count("no_face")
            status.append("no face in view")
        else:
            motion = (tracked.motion if tracked.detected
                      else timed(self.stats, "keypoints", lambda: self.backend.detect(crop)))
            if motion is None:
                self.stats.count("no_face")
                status.append("no face in view")
        if motion is None:
            return None, None
        if self.smoother is not None:
            motion = self.smoother(motion, t)
        self._maybe_calibrate(motion, face, tracked.index, t)
        if not self.backend.calibrated:
            status.append("hold still: calibrating" if self.calibrator.pending else "press c to calibrate")
            return motion, None
        detail = self.compositor.detail
        return motion, timed(self.stats, "generator", lambda: self.backend.render(motion, detail=detail))

    def _maybe_calibrate(self, motion: Any, face: Face | None, index: int, t: float) -> None:
        if self.should_calibrate(face, t):
            self.take_neutral(motion, index)

    def should_calibrate(self, face: Face | None, t: float) -> bool:
        """Whether the frame with this face at media time ``t`` becomes the neutral pose (called once per frame)."""
        take = self.calibrator.update(face if self.crop_mode == "face" else _StillFace, t)
        if self.controls.best_frame and self.best_selector is not None and self.best_selector.update(face):
            take = True
        return take or (self.calibrate_first and not self.backend.calibrated)

    def take_neutral(self, motion: Any, index: int) -> None:
        self.backend.calibrate(motion)
        self.events.append((index, "calibrated"))
        logger.info("neutral pose calibrated at frame %d", index)

    def held_frame(self) -> np.ndarray:
        """Without a new animated frame: the last one, else the photo unanimated (output size, no label)."""
        return self._held if self._held is not None else self.compositor.unanimated()

    def fallback(self, tracked: TrackedFrame) -> tuple[np.ndarray, FrameInfo]:
        """The held frame after a stage failed on this frame."""
        fitted = self.held_frame()
        info = FrameInfo(tracked.index, tracked.item.captured_at, face=False, animated=False, status=["error"])
        return (add_label(fitted) if self.label else fitted), info
