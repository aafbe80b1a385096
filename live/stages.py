"""The two stages of the live loop and what each one owns.

- ``TrackingStage`` (CPU): the hotkeys that change the crop geometry or the mirror, the mirror itself, face
  detection, the crop box (``CropTracker``) and the crop. It owns the tracker and ``Controls.mirror``.
- ``ModelStage`` (the model's device): every other hotkey, the backend's ``detect`` (keypoints), motion smoothing,
  calibration (it needs the face and the media time from tracking and the motion from ``detect``), ``render``
  (generator), composition to the output size and the preview. It owns the backend, the smoother, the calibrators,
  the avatar choice, the held frame and the event log.

A ``TrackedFrame`` carries everything the model stage needs from tracking, including the hotkeys bound for it, so
each key applies at the same input frame whether the stages run one after the other or in two threads.
``FailurePolicy`` is the rule for frames that fail in either stage.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from live.backends import Backend
from live.calibration import AutoCalibrator, BestFrameSelector
from live.capture import CapturedFrame
from live.compose import add_label, fit_to_output
from live.face import CropBox, CropTracker, Face, FaceDetector, centre_crop_box, crop_square
from live.hotkeys import GEOMETRY_CHANGED, Controls, apply_model_key, apply_tracking_key, is_tracking_key
from live.overlay import build_preview
from live.photoframe import PhotoCompositor
from live.sinks import FrameInfo
from live.smoothing import MotionSmoother
from live.stats import PipelineStats

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 25  # a stage failing this many frames in a row stops the run
OVERLAP_PASTE_ENV = "FOMM_LIVE_OVERLAP_PASTE"


def overlap_paste_default() -> bool:
    """Whether photo framing's host paste-back runs beside the next frame's model work: ``FOMM_LIVE_OVERLAP_PASTE=1``
    (on) or ``0`` (off, the default: no clear gain on the 2-core test CPU, ``benchmarks.loop --overlap``)."""
    return os.environ.get(OVERLAP_PASTE_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


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
    """

    item: CapturedFrame
    face: Face | None = None
    box: CropBox | None = None
    crop: np.ndarray | None = None
    keys: list[str] = field(default_factory=list)
    error: Exception | None = None

    @property
    def index(self) -> int:
        return self.item.index


def merge_keys(older: TrackedFrame, newer: TrackedFrame) -> TrackedFrame:
    """A newer tracked frame replacing an older one in a hand-off keeps the older one's model keys (first)."""
    if older.keys:
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
        controls: Where ``mirror`` lives (this stage owns it).
        stats: Receives the ``face_tracking`` and ``crop`` times.
    """

    def __init__(self, *, crop_mode: str, detector: FaceDetector | None, size: int, smoothing: bool,
                 controls: Controls, stats: PipelineStats) -> None:
        self.crop_mode = crop_mode
        self.detector = detector
        self.size = size
        self.controls = controls
        self.stats = stats
        self.tracker = CropTracker(smoothing=smoothing)

    def apply_key(self, key: str) -> None:
        apply_tracking_key(key, self.controls, self.tracker)
        if key == "m":  # the face is now on the other side: follow it from there instead of gliding across
            self.tracker.last = None
            if self.tracker.filter is not None:
                self.tracker.filter.reset()

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
        except Exception as err:  # noqa: BLE001 - handed to the model stage's failure policy with the frame
            tracked.error = err
        return tracked


class FailurePolicy:
    """A frame that fails in either stage is logged (once per kind of error) and replaced by the held frame;
    ``MAX_CONSECUTIVE_ERRORS`` failed frames in a row stop the run."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_ERRORS) -> None:
        self.limit = limit
        self.consecutive = 0
        self.counts: dict[str, int] = {}

    def succeeded(self) -> None:
        self.consecutive = 0

    def failed(self, index: int, err: BaseException) -> str | None:
        """Count a failed frame; returns the message that stops the run once the limit is reached, or at once for
        a device failure (``models.engines.DeviceError``: the GPU ran out of memory with nothing left to drop, or
        was lost), which would fail the same way on every following frame."""
        self.consecutive += 1
        kind = type(err).__name__
        engines = sys.modules.get("models.engines.base")  # never imported: no model engine, so no DeviceError
        if engines is not None and isinstance(err, engines.DeviceError):
            logger.error("processing frame %d failed: %s", index, err)
            logger.debug("the device error, with its traceback:", exc_info=err)  # shown with --debug
            return str(err)
        if kind not in self.counts:
            logger.error("processing frame %d failed: %s: %s (serving the last good frame)", index, kind, err)
            logger.debug("the first %s, with its traceback:", kind, exc_info=err)  # shown with --debug
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.consecutive >= self.limit:
            return f"processing failed {self.consecutive} frames in a row ({kind}: {err}); stopping"
        return None


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
        stats: Receives the ``keypoints``, ``generator`` and ``compose`` times.
        camera_lost: Tells whether the camera is being reconnected (for the preview).
        calibrate_first: Take the first frame with motion as the neutral pose when none is set yet.
        framing: ``face``: the model's square fitted to the output; ``photo``: the whole source photo framed for the
            output with the animated face pasted back (``live.photoframe``).
        detail: With photo framing, the photo's fine detail carried along the motion (``live.pasteback``).
        overlap_paste: Photo framing pasted on the host, no preview: paste and label on a thread of their own while
            this stage starts the next frame, handing on a ``Future`` of (frame, labelled frame). None: the default.
    """

    def __init__(self, *, backend: Backend, avatars: list, output_size: tuple[int, int], crop_mode: str,
                 smoother: MotionSmoother | None, calibrator: AutoCalibrator, controls: Controls, label: bool,
                 preview: bool, stats: PipelineStats, camera_lost: Callable[[], bool],
                 calibrate_first: bool = False, framing: str = "face", detail: bool = True,
                 overlap_paste: bool | None = None) -> None:
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
        self._held: np.ndarray | Future | None = None  # the last animated frame at the output size (held: no face)
        self._fitted_avatars: dict[int, np.ndarray] = {}
        self.photo = (PhotoCompositor(avatars=avatars, output_size=output_size, backend=backend, detail=detail)
                      if framing == "photo" else None)
        overlap = overlap_paste_default() if overlap_paste is None else overlap_paste
        self._pasting = (ThreadPoolExecutor(1, thread_name_prefix="paste")
                         if overlap and self.photo is not None and self.photo.pastes_on_host and not preview else None)
        self.select_avatar(0)

    # ------------------------------------------------------------------------------------------------ hotkeys
    def select_avatar(self, index: int) -> None:
        if not 0 <= index < len(self.avatars):
            return
        self.avatar_index = index
        avatar = self.avatars[index]
        self.backend.set_source(avatar.crop)
        self._held = None  # with no face in view the new avatar shows (unanimated), not the old one's last frame
        if self.photo is not None:
            self.photo.select(index)
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

    def __call__(self, tracked: TrackedFrame) -> tuple[np.ndarray, FrameInfo]:
        """The output frame of a tracked frame and what is known about it."""
        face, crop, t = tracked.face, tracked.crop, tracked.item.media_time
        status: list[str] = []
        animated = False
        motion = None
        if crop is None or (self.crop_mode == "face" and face is None):
            self.stats.count("no_face")
            status.append("no face in view")
        else:
            motion = timed(self.stats, "keypoints", lambda: self.backend.detect(crop))
            if motion is None:
                self.stats.count("no_face")
                status.append("no face in view")
        fitted = square = rendered = None
        if motion is not None:
            if self.smoother is not None:
                motion = self.smoother(motion, t)
            self._maybe_calibrate(motion, face, tracked.index, t)
            if self.backend.calibrated:
                if self.photo is not None:
                    rendered = timed(self.stats, "generator", lambda: self.photo.render(motion))
                else:
                    fitted, square = self._render(motion)
                animated = True
            else:
                status.append("hold still: calibrating" if self.calibrator.pending else "press c to calibrate")
        info = FrameInfo(tracked.index, tracked.item.captured_at, face=motion is not None, animated=animated,
                         status=status, crop_box=None if (box := tracked.box) is None else (box.cx, box.cy, box.side))
        if rendered is not None and self._pasting is not None:
            self._held = self._pasting.submit(self._paste, rendered)
            return self._held, info
        t0 = time.perf_counter()
        if square is not None:
            fitted = fit_to_output(square, *self.output_size)
        if rendered is not None:
            assert self.photo is not None
            fitted = self.photo.paste(rendered)
        if animated:
            self._held = fitted
        else:
            fitted = self.held_frame()
        out = add_label(fitted) if self.label else fitted
        if self.preview:
            info.preview = build_preview(out, crop, status, controls=self.controls, stats=self.stats,
                                         camera_lost=self.camera_lost())
        self.stats.add("compose", (time.perf_counter() - t0) * 1000)
        return out, info

    def _paste(self, rendered: Any) -> tuple[np.ndarray, np.ndarray]:
        """Photo framing's paste-back and the label, on the paste thread: (the frame, the frame labelled)."""
        t0 = time.perf_counter()
        try:
            fitted = self.photo.paste(rendered)
        except Exception as err:  # noqa: BLE001 - as the failure policy would: this frame shows the photo unanimated
            logger.error("pasting frame %d failed: %s: %s", self.frame_index, type(err).__name__, err)
            fitted = self.photo.framed
        out = add_label(fitted) if self.label else fitted
        self.stats.add("compose", (time.perf_counter() - t0) * 1000)
        return fitted, out

    def close(self) -> None:
        """Finish the paste-backs under way."""
        if self._pasting is not None:
            self._pasting.shutdown(wait=True)

    def _maybe_calibrate(self, motion: Any, face: Face | None, index: int, t: float) -> None:
        take = self.calibrator.update(face if self.crop_mode == "face" else _StillFace, t)
        if self.controls.best_frame and self.best_selector is not None and self.best_selector.update(face):
            take = True
        if self.calibrate_first and not self.backend.calibrated:
            take = True
        if take:
            self.backend.calibrate(motion)
            self.events.append((index, "calibrated"))
            logger.info("neutral pose calibrated at frame %d", index)

    def _render(self, motion: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(the animated frame fitted to the output size, None) when the backend composes on its device (one
        download of the finished frame); else (None, the square frame) for OpenCV to fit."""
        if getattr(self.backend, "composes_on_device", False):
            width, height = self.output_size
            return timed(self.stats, "generator", lambda: self.backend.render_fitted(motion, width, height)), None
        return None, timed(self.stats, "generator", lambda: self.backend.render(motion))

    def held_frame(self) -> np.ndarray:
        """What to show without a new animated frame: the last one, else the source photo unanimated (both at the
        output size, without the label)."""
        if isinstance(self._held, Future):  # pasted on the paste thread: done by now, or soon (one at a time)
            self._held = self._held.result()[0]
        if self._held is not None:
            return self._held
        if self.photo is not None:
            return self.photo.framed
        index = self.avatar_index
        if index not in self._fitted_avatars:
            self._fitted_avatars[index] = fit_to_output(self.avatars[index].crop, *self.output_size)
        return self._fitted_avatars[index]

    def fallback(self, tracked: TrackedFrame) -> tuple[np.ndarray, FrameInfo]:
        """The held frame after a stage failed on this frame."""
        fitted = self.held_frame()
        info = FrameInfo(tracked.index, tracked.item.captured_at, face=False, animated=False, status=["error"])
        return (add_label(fitted) if self.label else fitted), info
