"""The live loop: camera frame -> face crop -> keypoints -> motion normalisation -> generator -> compose -> sinks.

Three threads, so that the model never waits on the camera or the outputs:

- capture (``CaptureThread``): reads frames, timestamps them, and hands the newest to processing (live sources drop
  stale frames and count them; files are read losslessly unless paced with ``realtime``);
- processing (``_process_loop``): face tracking, crop, the backend's ``detect`` (keypoints) and ``render``
  (generator), composition; hotkey actions are applied here, between frames;
- output (the calling thread, ``run``): hands frames to the sinks and polls the preview window's keys (GUI toolkits
  want the main thread).

Until the neutral pose is calibrated the output is the source photo, unanimated, so frames out = frames in. With no
face in view the last good frame is repeated and the HUD says so.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from live.backends import Backend
from live.calibration import AutoCalibrator, BestFrameSelector
from live.capture import CapturedFrame, CaptureThread, FrameQueue, FrameSource
from live.compose import add_label, draw_text_lines, fit_to_output, side_by_side
from live.errors import UserError
from live.face import CropTracker, FaceDetector, centre_crop_box, crop_source_image, crop_square
from live.filters import OneEuroFilter
from live.hotkeys import QUIT_KEYS, help_lines
from live.sinks import FrameInfo, Sink, WindowSink
from live.stats import PipelineStats

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 25  # a stage failing this many frames in a row stops the run


# The fast rows' filter (see MotionSmoother): speed in the motion's units per second (normalised landmarks here).
FAST_BETA = 60.0
FAST_D_CUTOFF = 5.0


@dataclass
class PipelineOptions:
    """Runtime options of the live loop.

    Attributes:
        output_size: (width, height) of output frames; None: the input's (the camera's granted) resolution.
        crop: ``face`` (track and crop the face) or ``none`` (the whole frame, centre square).
        smoothing: Smooth the crop box and the keypoints (One Euro filters).
        kp_min_cutoff: Keypoint filter cutoff at rest, Hz (lower: steadier, laggier).
        kp_beta: Keypoint filter speed coefficient (higher: less lag in fast motion).
        auto_calibrate: Take the neutral pose once the face is steady after start (else only on the hotkey).
        steady_seconds: How long the face must be still for automatic calibration.
        calibrate_first: Take the first frame with motion as the neutral pose when none is set yet (file-to-file
            animation, as the original demo does).
        best_frame: Start in best-frame mode.
        label: Draw the "AI-generated" label on every output frame.
        mirror: Mirror the camera image before processing.
        realtime: Pace a file input at its fps like a camera.
        loop: Repeat a file input.
        max_frames: Stop after this many input frames.
        fps: Output frame rate announced to sinks; None: the input's.
        scripted_keys: Input frame index -> hotkeys applied just before that frame is processed (tests, demos).
        show_help: Show the help overlay in the preview from the start.
    """

    output_size: tuple[int, int] | None = None
    crop: str = "face"
    smoothing: bool = True
    kp_min_cutoff: float = 1.0
    kp_beta: float = 2.0
    auto_calibrate: bool = True
    steady_seconds: float = 0.5
    calibrate_first: bool = False
    best_frame: bool = False
    label: bool = True
    mirror: bool = False
    realtime: bool = False
    loop: bool = False
    max_frames: int | None = None
    fps: float | None = None
    scripted_keys: dict[int, list[str]] = field(default_factory=dict)
    show_help: bool = False


class MotionSmoother:
    """One Euro filtering of a backend's motion: numpy arrays, or named tuples of tensors (FOMM keypoints).

    Args:
        min_cutoff: Cutoff at rest, Hz.
        beta: How fast the cutoff opens with speed.
        fast_rows: Rows of an array motion that move fast and briefly (a backend's ``fast_rows``: eyelids). They
            get their own filter, with the same cutoff at rest but a speed estimate that reacts within a frame
            (``FAST_D_CUTOFF``) and a cutoff that opens much more with speed (``FAST_BETA``): with the common
            filter, a 160 ms blink on a 25 fps stream reached 61% of its closure one frame late instead of 85%.
    """

    def __init__(self, *, min_cutoff: float, beta: float, fast_rows: tuple[int, ...] = ()) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.fast_rows = np.asarray(fast_rows, dtype=np.intp)
        self.filters: dict[str, OneEuroFilter] = {}

    def _filter(self, name: str) -> OneEuroFilter:
        if name not in self.filters:
            if name == "fast":
                self.filters[name] = OneEuroFilter(min_cutoff=self.min_cutoff, beta=FAST_BETA,
                                                   d_cutoff=FAST_D_CUTOFF)
            else:
                self.filters[name] = OneEuroFilter(min_cutoff=self.min_cutoff, beta=self.beta, d_cutoff=1.0)
        return self.filters[name]

    def reset(self) -> None:
        self.filters.clear()

    def __call__(self, motion: Any, t: float) -> Any:
        if motion is None:
            return None
        if isinstance(motion, np.ndarray):
            smoothed = self._filter("array")(motion, t)
            if self.fast_rows.size and motion.ndim and motion.shape[0] > self.fast_rows.max():
                smoothed[self.fast_rows] = self._filter("fast")(motion[self.fast_rows], t)
            return smoothed.astype(motion.dtype)
        if hasattr(motion, "_fields"):
            import torch

            smoothed = {}
            for name in motion._fields:
                value = getattr(motion, name)
                if isinstance(value, torch.Tensor):
                    filtered = self._filter(name)(value.detach().cpu().numpy(), t)
                    smoothed[name] = torch.as_tensor(filtered, dtype=value.dtype, device=value.device)
            return motion._replace(**smoothed)
        return motion


@dataclass
class Avatar:
    """A source photo prepared for animation: its face crop and its face points (None when it has no face)."""

    name: str
    crop: np.ndarray
    points: np.ndarray | None


def prepare_avatars(images: list[tuple[str, np.ndarray]], size: int, detector: FaceDetector | None,
                    crop: str = "face") -> list[Avatar]:
    """Crop each source photo the way driving frames are cropped (warning when it holds no face or several)."""
    avatars = []
    for name, image in images:
        if crop == "face":
            cropped, warning = crop_source_image(image, size, detector)
            if warning:
                logger.warning("%s: %s", name, warning)
            faces = detector.detect(cropped) if detector is not None else []
            points = faces[0].points if faces else None
        else:
            h, w = image.shape[:2]
            cropped, points = crop_square(image, centre_crop_box(h, w), size), None
        avatars.append(Avatar(name, cropped, points))
    return avatars


class LivePipeline:
    """Runs the live loop from a frame source through a backend to sinks.

    Args:
        source: Camera, file or stream.
        backend: The animation backend.
        avatars: Prepared source photos (hotkeys 1-9, n, p switch between them).
        sinks: Outputs (virtual camera, MP4, recording...).
        options: Runtime options.
        detector: Face detector for ``crop="face"`` (None with ``crop="none"``).
        window: The preview window, if any (driven from the thread that calls ``run``).
        stats: Where timings go (a new collector if None).
        reopen: Reopens a lost live source (camera unplugged); None: a lost source ends the run.
    """

    def __init__(self, source: FrameSource, backend: Backend, avatars: list[Avatar], sinks: list[Sink], *,
                 options: PipelineOptions | None = None, detector: FaceDetector | None = None,
                 window: WindowSink | None = None, stats: PipelineStats | None = None,
                 reopen: Callable[[], FrameSource] | None = None) -> None:
        if not avatars:
            raise ValueError("at least one avatar is needed")
        self.source = source
        self.backend = backend
        self.avatars = avatars
        self.sinks = list(sinks)
        self.options = options or PipelineOptions()
        if self.options.crop == "face" and detector is None:
            raise ValueError("crop='face' needs a face detector")
        self.detector = detector
        self.window = window
        self.stats = stats or PipelineStats()
        self.reopen = reopen
        self.output_size = self.options.output_size or (source.width, source.height)
        self.stop_event = threading.Event()
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.tracker = CropTracker(smoothing=self.options.smoothing)
        self.smoother = (MotionSmoother(min_cutoff=self.options.kp_min_cutoff, beta=self.options.kp_beta,
                                        fast_rows=tuple(getattr(backend, "fast_rows", ())))
                         if self.options.smoothing else None)
        self.calibrator = AutoCalibrator(steady_seconds=self.options.steady_seconds)
        if not self.options.auto_calibrate:
            self.calibrator.cancel()
        self.best_frame = self.options.best_frame
        self.best_selector: BestFrameSelector | None = None
        self.avatar_index = 0
        self.mirror = self.options.mirror
        self.show_camera = False
        self.show_timing = False
        self.show_help = self.options.show_help
        self.camera_lost = False
        self.error: str | None = None
        self.events: list[tuple[int, str]] = []  # (input frame index, what happened): calibrations, switches
        self._stage_errors: dict[str, int] = {}
        self._last_square: np.ndarray | None = None  # the last animated frame, held while no face is in view
        self._frame_index = -1
        self._select_avatar(0)

    # ----------------------------------------------------------------------------------------------- hotkeys
    def post_key(self, key: str) -> None:
        """Queue a hotkey from any thread; it is applied before the next frame is processed."""
        if key in QUIT_KEYS:
            self.stop_event.set()
        else:
            self._keys.put(key)

    def _select_avatar(self, index: int) -> None:
        if not 0 <= index < len(self.avatars):
            return
        self.avatar_index = index
        avatar = self.avatars[index]
        self.backend.set_source(avatar.crop)
        self.best_selector = BestFrameSelector(avatar.points) if avatar.points is not None else None
        self.events.append((self._frame_index, f"avatar {index}"))
        logger.info("avatar %d: %s", index + 1, avatar.name)

    def _apply_key(self, key: str) -> None:
        if key == "c":
            self.calibrator.request()
            self.events.append((self._frame_index, "recalibrate requested"))
        elif key.isdigit() and key != "0":
            self._select_avatar(int(key) - 1)
        elif key in ("n", "p"):
            step = 1 if key == "n" else -1
            self._select_avatar((self.avatar_index + step) % len(self.avatars))
        elif key == "b":
            self.best_frame = not self.best_frame
            if self.best_selector is not None:
                self.best_selector.reset()
            logger.info("best-frame mode %s", "on" if self.best_frame else "off")
        elif key == "o":
            self.show_camera = not self.show_camera
        elif key == "w":
            self.tracker.zoom_in()
        elif key == "s":
            self.tracker.zoom_out()
        elif key in ("left", "right", "up", "down"):
            dx = {"left": -1, "right": 1}.get(key, 0)
            dy = {"up": -1, "down": 1}.get(key, 0)
            self.tracker.move(dx, dy)
        elif key == "r":
            self.tracker.reset_view()
        elif key == "m":
            self.mirror = not self.mirror
        elif key == "i":
            self.show_timing = not self.show_timing
        elif key == "h":
            self.show_help = not self.show_help

    # ------------------------------------------------------------------------------------------- processing
    def _timed(self, stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        self.stats.add(stage, (time.perf_counter() - t0) * 1000)
        return result

    def _process(self, item: CapturedFrame) -> tuple[np.ndarray, FrameInfo]:
        self._frame_index = item.index
        for key in self.options.scripted_keys.get(item.index, []):
            self.post_key(key)
        while not self._keys.empty():
            self._apply_key(self._keys.get())
        frame = item.image[:, ::-1] if self.mirror else item.image
        t = item.media_time
        size = self.backend.size
        face = None
        if self.options.crop == "face":
            faces = self._timed("face_tracking", lambda: self.detector.detect(np.ascontiguousarray(frame)))
            face = faces[0] if faces else None
        t0 = time.perf_counter()
        box = self.tracker.update(face, t) if self.options.crop == "face" else centre_crop_box(*frame.shape[:2])
        crop = None if box is None else crop_square(frame, box, size)
        self.stats.add("crop", (time.perf_counter() - t0) * 1000)
        status = []
        animated = False
        if crop is None or (self.options.crop == "face" and face is None):
            self.stats.count("no_face")
            status.append("no face in view")
            motion = None
        else:
            motion = self._timed("keypoints", lambda: self.backend.detect(crop))
            if motion is None:
                self.stats.count("no_face")
                status.append("no face in view")
        if motion is not None:
            if self.smoother is not None:
                motion = self.smoother(motion, t)
            take = self.calibrator.update(face if self.options.crop == "face" else _StillFace, t)
            if self.best_frame and self.best_selector is not None and self.best_selector.update(face):
                take = True
            if self.options.calibrate_first and not self.backend.calibrated:
                take = True
            if take:
                self.backend.calibrate(motion)
                self.events.append((item.index, "calibrated"))
                logger.info("neutral pose calibrated at frame %d", item.index)
            if self.backend.calibrated:
                square = self._timed("generator", lambda: self.backend.render(motion))
                animated = True
                self._last_square = square
            else:
                square = self.avatars[self.avatar_index].crop
                status.append("hold still: calibrating" if self.calibrator.pending else "press c to calibrate")
        else:
            square = self._held_square()
        t0 = time.perf_counter()
        out = self._compose(square)
        preview = self._preview(out, crop, status) if self.window is not None else None
        self.stats.add("compose", (time.perf_counter() - t0) * 1000)
        info = FrameInfo(item.index, item.captured_at, face=motion is not None, animated=animated, preview=preview,
                         status=status, crop_box=None if box is None else (box.cx, box.cy, box.side))
        return out, info

    def _preview(self, out: np.ndarray, crop: np.ndarray | None, status: list[str]) -> np.ndarray:
        shown = out
        if self.show_camera and crop is not None:
            shown = side_by_side(crop, out)
        lines = list(status)
        if self.camera_lost:
            lines.insert(0, "camera lost: reconnecting")
        if self.best_frame:
            lines.append("best-frame mode")
        if self.show_timing:
            for stage in ("face_tracking", "keypoints", "generator", "output"):
                last = self.stats.last(stage)
                if last is not None:
                    lines.append(f"{stage}: {last:.1f} ms")
        shown = draw_text_lines(shown, lines)
        if self.show_help:
            shown = draw_text_lines(shown, help_lines(), corner="bottom-left")
        return shown

    def _held_square(self) -> np.ndarray:
        """What to show without a new animated frame: the last one, else the source photo unanimated."""
        return self._last_square if self._last_square is not None else self.avatars[self.avatar_index].crop

    def _compose(self, square: np.ndarray) -> np.ndarray:
        """The square frame fitted to the output size, with the disclosure label unless it was turned off."""
        out = fit_to_output(square, *self.output_size)
        return add_label(out) if self.options.label else out

    def _fallback(self, item: CapturedFrame) -> tuple[np.ndarray, FrameInfo]:
        """The last good frame (or the source) after a stage failed."""
        info = FrameInfo(item.index, item.captured_at, face=False, animated=False, status=["error"])
        return self._compose(self._held_square()), info

    def _process_loop(self, in_queue: FrameQueue, out_queue: FrameQueue) -> None:
        consecutive = 0
        try:
            while not self.stop_event.is_set():
                item = in_queue.get(timeout=0.1)
                if item is None:
                    if in_queue.closed:
                        return
                    continue
                try:
                    result = self._process(item)
                    consecutive = 0
                except Exception as err:  # noqa: BLE001 - a stage error must not silently kill the loop
                    consecutive += 1
                    stage = type(err).__name__
                    if stage not in self._stage_errors:
                        logger.error("processing frame %d failed: %s: %s (serving the last good frame)",
                                     item.index, type(err).__name__, err)
                    self._stage_errors[stage] = self._stage_errors.get(stage, 0) + 1
                    if consecutive >= MAX_CONSECUTIVE_ERRORS:
                        self.error = (f"processing failed {consecutive} frames in a row "
                                      f"({type(err).__name__}: {err}); stopping")
                        self.stop_event.set()
                        return
                    result = self._fallback(item)
                out_queue.put(result, lossless=True, stop=self.stop_event)
        finally:
            out_queue.close()

    # --------------------------------------------------------------------------------------------------- run
    def _deliver(self, frame: np.ndarray, info: FrameInfo) -> None:
        """Hand a frame to every sink; a sink that fails is logged, closed and dropped, the others go on."""
        for sink in list(self.sinks):
            try:
                sink.send(frame, info)
            except Exception as err:  # noqa: BLE001 - one failing output must not stop the others
                logger.error("output %s failed and is closed: %s: %s", sink.name, type(err).__name__, err)
                self.sinks.remove(sink)
                _close_quietly(sink)

    def _send(self, frame: np.ndarray, info: FrameInfo) -> None:
        t0 = time.perf_counter()
        self._deliver(frame, info)
        if self.window is not None:
            self.window.send(frame, info)
        now = time.perf_counter()
        self.stats.add("output", (now - t0) * 1000)
        self.stats.add_end_to_end((now - info.captured_at) * 1000)
        self.stats.count("frames_out")

    def _on_lost(self, lost: bool) -> None:
        self.camera_lost = lost

    def _repeat_last(self, last: tuple[np.ndarray, FrameInfo] | None, fps: float, last_real_at: float,
                     last_sent_at: float) -> float:
        """While a live source is lost or silent (a stalled stream, a camera gone), keep sending the last frame at
        the output rate, so a meeting shows a still picture instead of freezing. Returns when a frame was last sent.

        Silent means no new frame for ``max(0.25 s, 3 frames)``: a slow model (a few frames a second) is not a stall.
        """
        now = time.perf_counter()
        live = self.options.realtime or not self.source.is_file
        stalled = live and now - last_real_at > max(0.25, 3.0 / fps)
        if last is None or not (self.camera_lost or stalled) or now - last_sent_at < 1.0 / fps:
            return last_sent_at
        frame, info = last
        status = ["camera lost: reconnecting" if self.camera_lost else "waiting for the camera"]
        repeat = FrameInfo(info.index, now, face=False, animated=False, status=status, crop_box=info.crop_box)
        self._deliver(frame, repeat)
        if self.window is not None:
            self.window.send(frame, FrameInfo(info.index, now, preview=draw_text_lines(frame, repeat.status)))
        self.stats.count("frames_repeated")
        return now

    def run(self) -> dict:
        """Run until the input ends, ``max_frames``, a quit key, Ctrl-C/SIGTERM (KeyboardInterrupt) or a fatal
        error; always closes the capture and every sink. Returns the stats summary."""
        # A live (or paced) source hands over one frame at a time: a waiting frame is replaced by a newer one, so
        # processing always starts on the freshest. A file read losslessly may run two frames ahead.
        paced = self.options.realtime or not self.source.is_file
        in_queue = FrameQueue(maxsize=1 if paced else 2)
        out_queue = FrameQueue(maxsize=2)
        capture = CaptureThread(self.source, in_queue, self.stats, self.stop_event, realtime=self.options.realtime,
                                loop=self.options.loop, max_frames=self.options.max_frames, reopen=self.reopen,
                                on_lost=self._on_lost)
        processing = threading.Thread(target=self._process_loop, args=(in_queue, out_queue), name="processing",
                                      daemon=True)
        fps = self.options.fps or self.source.fps or 30.0
        last, last_real_at, last_sent_at = None, 0.0, 0.0
        capture.start()
        processing.start()
        try:
            while True:
                if self.window is not None:
                    for key in self.window.poll_keys():
                        self.post_key(key)
                    if self.window.closed_by_user():
                        self.stop_event.set()
                item = out_queue.get(timeout=0.02)
                if item is None:
                    if out_queue.closed or self.stop_event.is_set():
                        break
                    last_sent_at = self._repeat_last(last, fps, last_real_at, last_sent_at)
                    continue
                self._send(*item)
                last, last_real_at = item, time.perf_counter()
                last_sent_at = last_real_at
        finally:
            self.stop_event.set()
            in_queue.close()
            out_queue.close()
            capture.join(timeout=5)
            processing.join(timeout=30)
            self.source.close()
            for sink in self.sinks:
                _close_quietly(sink)
            if self.window is not None:
                _close_quietly(self.window)
        if capture.error is not None and self.error is None:
            self.error = f"capture failed: {capture.error}"
        if self.error:
            raise UserError(self.error)
        return self.stats.summary()


class _StillFaceType:
    """Stands in for a face with ``crop="none"``: the whole frame never moves, so calibration happens once the
    steady time has passed."""

    centre = (0.0, 0.0)
    size = 1.0
    points = None


_StillFace = _StillFaceType()


def _close_quietly(sink: Any) -> None:
    try:
        sink.close()
    except Exception as err:  # noqa: BLE001 - closing must go on for the other outputs
        logger.error("closing %s failed: %s", getattr(sink, "name", sink), err)
