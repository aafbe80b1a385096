"""The live loop: camera frame -> face crop -> keypoints -> motion normalisation -> generator -> compose -> sinks.

Threads, so that the model never waits on the camera, the face tracker or the outputs:

- capture (``CaptureThread``): reads frames, timestamps them, and hands the newest to tracking (live sources drop
  stale frames and count them; files are read losslessly unless paced with ``realtime``);
- tracking (``live.loop.stages.TrackingStage``, CPU): crop hotkeys, mirror, face detection, crop box and crop;
- model (``live.loop.stages.ModelStage``): the other hotkeys, keypoints, smoothing, calibration, generator, composition;
- output (the calling thread, ``run``): hands frames to the sinks and polls the preview window's keys (GUI toolkits
  want the main thread), and repeats the last frame while the camera is lost or silent (``live.loop.stall``).

Pipelined (the default), tracking and model run in two threads joined by a one-slot hand-off, so the CPU tracks
frame N+1 while the model renders frame N: lossless for a file read losslessly, newest-frame-wins (drops counted)
for a live or paced input. ``FOMM_LIVE_PIPELINING=0`` (or ``PipelineOptions.pipelining=False``) runs the same two
stage functions one after the other in one thread; on a file read losslessly both give the same frames. By default
the FOMM model on the CPU runs one-thread (it keeps every core busy itself; see ``pipelining_default``).

Until the neutral pose is calibrated the output is the source photo, unanimated, so frames out = frames in. With no
face in view the last good frame is repeated and the HUD says so.

With a backend slower than a camera (``Backend.inbetweens``: FOMM) on a live or paced input, the model stage is
``live.loop.keyframes.KeyframeStage``: the generator renders keyframes on a thread of its own and every frame it
cannot render in time gets an in-between; the tracking stage then also finds each crop's face mesh.
``PipelineOptions.inbetweens=False`` (``--no-inbetweens``) keeps the plain ``ModelStage``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from fomm_live.common.switches import switch
from fomm_live.live.avatars import Avatar, prepare_avatars
from fomm_live.live.backends import Backend
from fomm_live.live.capture.sources import CapturedFrame, CaptureThread, FrameQueue, FrameSource
from fomm_live.live.compose import draw_text_lines
from fomm_live.live.errors import UserError
from fomm_live.live.face import CropTracker, FaceDetector
from fomm_live.live.loop.calibration import AutoCalibrator
from fomm_live.live.loop.failures import MAX_CONSECUTIVE_ERRORS, FailurePolicy
from fomm_live.live.loop.handoff import OneSlot
from fomm_live.live.loop.hotkeys import QUIT_KEYS, Controls, is_tracking_key
from fomm_live.live.loop.keyframes import KeyframeStage, inbetweens_wanted, open_inbetweens
from fomm_live.live.loop.shutdown import close_quietly, join_and_release
from fomm_live.live.loop.smoothing import MotionSmoother
from fomm_live.live.loop.stages import ModelStage, TrackedFrame, TrackingStage, merge_keys
from fomm_live.live.loop.stall import StallRule
from fomm_live.live.options import PipelineOptions
from fomm_live.live.output.sinks import FrameInfo, Sink
from fomm_live.live.output.window import WindowSink
from fomm_live.live.stats import INBETWEEN_E2E, PipelineStats

__all__ = ["MAX_CONSECUTIVE_ERRORS", "Avatar", "LivePipeline", "MotionSmoother", "PipelineOptions",
           "pipelining_default", "prepare_avatars"]

logger = logging.getLogger(__name__)

def pipelining_default(backend: Backend | None = None, *, inbetweens: bool = False) -> bool:
    """Whether the loop runs its stages in two threads unless told otherwise.

    ``FOMM_LIVE_PIPELINING=1`` (``true``, ``yes``, ``on``) or ``0`` (``false``, ``no``, ``off``) decides. Unset (or
    ``auto``): on, unless the backend's model already keeps every CPU core busy (``backend.uses_all_cores``: the
    FOMM networks on the CPU, one PyTorch thread per core). There, tracking beside the model only takes cores from
    it: on the 2-core test CPU with the tiny golden model, unpaced, the two-thread loop made 25.9 frames a second
    against 28.2-28.8 for the one-thread loop (keypoints 11.5 -> 17.6 ms), while the landmark backend, whose stages
    leave room, went from 89-91 to 111-113 (``python -m fomm_live.benchmarks.pipeline``, 2026-11-30, RESULTS.md).
    On a GPU the model's work is off the CPU and the two threads overlap as meant. With keyframes and in-betweens
    (``inbetweens``) the generator has a thread of its own and the model stage makes the in-betweens: on, tracking
    beside them (``run --realtime``, tiny golden model, 1280x720, two pairs at load 9.5-12.2: animated 8.4 and 14.0
    frames a second against 5.5 and 4.8 one-thread, keyframes 2.1 and 4.3 a second against 2.05 and 1.6; RESULTS).
    """
    setting = switch("FOMM_LIVE_PIPELINING")
    if setting != "auto":
        return setting == "1"
    return backend is None or not backend.uses_all_cores or inbetweens


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
        inbetweener: The in-between renderer when keyframes and in-betweens are on (``inbetweens_wanted``), the
            caller's to close; None: a new ``live.inbetween.Inbetweener``, closed when the run ends.
        face_mesh: The face mesh the tracking stage runs on every crop for in-betweens, the caller's to close; None:
            a new ``live.landmarks.FaceMesh``, closed when the run ends.
    """

    def __init__(self, source: FrameSource, backend: Backend, avatars: list[Avatar], sinks: list[Sink], *,
                 options: PipelineOptions | None = None, detector: FaceDetector | None = None,
                 window: WindowSink | None = None, stats: PipelineStats | None = None,
                 reopen: Callable[[], FrameSource] | None = None, inbetweener: Any | None = None,
                 face_mesh: Any | None = None) -> None:
        if not avatars:
            raise ValueError("at least one avatar is needed")
        self.source = source
        self.backend = backend
        self.avatars = avatars
        self.sinks = list(sinks)
        self.options = options or PipelineOptions()
        tracking, calibration, frame = self.options.tracking, self.options.calibration, self.options.frame
        if tracking.crop == "face" and detector is None:
            raise ValueError("crop='face' needs a face detector")
        self.detector = detector
        self.window = window
        self.stats = stats or PipelineStats()
        self.reopen = reopen
        self.output_size = frame.size or (source.width, source.height)
        self.inbetweens = inbetweens_wanted(self.options, backend, paced=self.options.pacing.realtime
                                            or not source.is_file)
        self.pipelining = (pipelining_default(backend, inbetweens=self.inbetweens) if self.options.pipelining is None
                           else self.options.pipelining)
        self._owned: list[Any] = []  # what this pipeline opened for in-betweens, closed when the run ends
        self._next: FrameQueue | None = None  # where the model stage's next frame waits (set by ``run``)
        if self.inbetweens:
            inbetweener, face_mesh = open_inbetweens(backend, inbetweener, face_mesh, self._owned)
        self.stop_event = threading.Event()
        self._keys: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.camera_lost = False
        self.error: str | None = None
        self.controls = Controls(mirror=tracking.mirror, best_frame=calibration.best_frame,
                                 show_help=self.options.show_help, head_strength=self.options.head_strength,
                                 expression_strength=self.options.expression_strength)
        if window is not None:
            window.controls = self.controls  # the slider panel (hotkey t) sets them
        self.tracking = TrackingStage(crop_mode=tracking.crop, detector=detector, size=backend.size,
                                      smoothing=tracking.smoothing, crop_tracking=tracking.crop_tracking,
                                      controls=self.controls, stats=self.stats,
                                      face_mesh=face_mesh if self.inbetweens else None,
                                      # the keyframe stage finds its own motion (``live.loop.keyframes``)
                                      detect=backend.detect if backend.detect_beside_render and not self.inbetweens
                                      else None)
        smoother = (MotionSmoother(min_cutoff=tracking.kp_min_cutoff, beta=tracking.kp_beta,
                                   fast_rows=tuple(backend.fast_rows))
                    if tracking.smoothing else None)
        calibrator = AutoCalibrator(steady_seconds=calibration.steady_seconds)
        if not calibration.auto:
            calibrator.cancel()
        stage = dict(backend=backend, avatars=avatars, output_size=self.output_size, crop_mode=tracking.crop,
                     smoother=smoother, calibrator=calibrator, controls=self.controls, label=frame.label,
                     preview=window is not None, stats=self.stats, camera_lost=lambda: self.camera_lost,
                     calibrate_first=calibration.first, framing=frame.framing, detail=frame.detail)
        if self.inbetweens:
            self.model: ModelStage = KeyframeStage(inbetweener=inbetweener, next_waiting=self._next_waiting, **stage)
        else:
            self.model = ModelStage(**stage)
        self.failures = FailurePolicy()
        self.stuck: list[str] = []  # threads that did not stop in time at shutdown (see ``live.loop.shutdown``)

    def _next_waiting(self) -> bool:
        """Whether the model stage's next frame is already waiting (ends its wait for a keyframe)."""
        return self._next is not None and self._next.pending()

    # The stages own these; they are read here by the CLI, tests and demos.
    @property
    def tracker(self) -> CropTracker:
        return self.tracking.tracker

    @property
    def calibrator(self) -> AutoCalibrator:
        return self.model.calibrator

    @property
    def events(self) -> list[tuple[int, str]]:
        """(input frame index, what happened): calibrations, avatar switches, recalibration requests."""
        return self.model.events

    @property
    def avatar_index(self) -> int:
        return self.model.avatar_index

    # ----------------------------------------------------------------------------------------------- hotkeys
    def post_key(self, key: str) -> None:
        """Queue a hotkey from any thread; it is applied before the next frame is processed."""
        if key in QUIT_KEYS:
            self.stop_event.set()
        else:
            self._keys.put(key)

    def apply_key(self, key: str) -> None:
        """Apply a hotkey now, in the stage that owns what it changes (for a loop that is not running)."""
        if key in QUIT_KEYS:
            self.stop_event.set()
        elif is_tracking_key(key):
            self.tracking.apply_key(key)
        else:
            self.model.apply_key(key)

    def _take_keys(self, index: int) -> list[str]:
        for key in self.options.scripted_keys.get(index, []):
            self.post_key(key)
        keys = []
        while not self._keys.empty():
            keys.append(self._keys.get())
        return keys

    # ------------------------------------------------------------------------------------------------ stages
    def _track(self, item: CapturedFrame) -> TrackedFrame:
        return self.tracking(item, self._take_keys(item.index))

    def _model_step(self, tracked: TrackedFrame) -> tuple[np.ndarray, FrameInfo] | None:
        """The model stage on one frame under the failure policy; None once the run must stop."""
        err = tracked.error  # tracking failed on this frame
        try:
            self.model.begin(tracked)
            if err is None:
                result = self.model(tracked)
                self.failures.succeeded()
                return result
        except Exception as caught:  # noqa: BLE001 - a stage error must not silently kill the loop
            err = caught
        assert err is not None
        fatal = self.failures.failed(tracked.index, err)
        if fatal is not None:
            self.error = fatal
            self.stop_event.set()
            return None
        return self.model.fallback(tracked)

    def _arrivals(self, source: FrameQueue | OneSlot) -> Iterator:
        """What ``source`` hands over, until it is closed and empty or the run stops (polled every 0.1 s)."""
        while not self.stop_event.is_set():
            item = source.get(timeout=0.1)
            if item is not None:
                yield item
            elif source.closed:
                return

    def _sequential_loop(self, in_queue: FrameQueue, out_queue: FrameQueue) -> None:
        """Tracking then model, one frame at a time, in one thread (``pipelining=False``)."""
        self._model_loop(map(self._track, self._arrivals(in_queue)), out_queue)

    def _tracking_loop(self, in_queue: FrameQueue, slot: OneSlot[TrackedFrame]) -> None:
        try:
            for item in self._arrivals(in_queue):
                dropped = slot.put(self._track(item), stop=self.stop_event)
                if dropped:
                    self.stats.count("frames_dropped", dropped)
                    self.stats.count("dropped_before_model", dropped)
        finally:
            slot.close()

    def _model_loop(self, tracked_frames: Iterable[TrackedFrame], out_queue: FrameQueue) -> None:
        """The model stage over ``tracked_frames`` into ``out_queue``, until they end or the failure policy stops."""
        try:
            for tracked in tracked_frames:
                result = self._model_step(tracked)
                if result is None:
                    return
                out_queue.put(result, lossless=True, stop=self.stop_event)
        finally:
            out_queue.close()

    def _start_stages(self, in_queue: FrameQueue, out_queue: FrameQueue, lossless: bool) -> list[threading.Thread]:
        if not self.pipelining:
            self._next = in_queue
            threads = [threading.Thread(target=self._sequential_loop, args=(in_queue, out_queue), name="processing",
                                        daemon=True)]
        else:
            slot: OneSlot[TrackedFrame] = OneSlot(lossless=lossless, merge=merge_keys)
            self._next = slot
            threads = [threading.Thread(target=self._tracking_loop, args=(in_queue, slot), name="tracking",
                                        daemon=True),
                       threading.Thread(target=self._model_loop, args=(self._arrivals(slot), out_queue), name="model",
                                        daemon=True)]
        for thread in threads:
            thread.start()
        return threads

    # --------------------------------------------------------------------------------------------------- run
    def _deliver(self, frame: np.ndarray, info: FrameInfo) -> None:
        """Hand a frame to every sink; a sink that fails is logged, closed and dropped, the others go on."""
        for sink in list(self.sinks):
            try:
                sink.send(frame, info)
            except Exception as err:  # noqa: BLE001 - one failing output must not stop the others
                logger.error("output %s failed and is closed: %s: %s", sink.name, type(err).__name__, err)
                logger.debug("output %s failed with:", sink.name, exc_info=err)  # the traceback, with --debug
                self.sinks.remove(sink)
                close_quietly(sink)

    def _send(self, frame: np.ndarray, info: FrameInfo) -> None:
        t0 = time.perf_counter()
        self._deliver(frame, info)
        if self.window is not None:
            self.window.send(frame, info)
        now = time.perf_counter()
        self.stats.add("output", (now - t0) * 1000)
        self.stats.add_end_to_end((now - info.captured_at) * 1000)
        if info.inbetween:
            self.stats.add(INBETWEEN_E2E, (now - info.captured_at) * 1000)
        self.stats.count("frames_out")
        self.stats.mark_output(now, animated=info.animated, inbetween=info.inbetween)

    def _on_lost(self, lost: bool) -> None:
        self.camera_lost = lost

    def _repeat(self, last: tuple[np.ndarray, FrameInfo], status: str, now: float) -> None:
        """Send the last frame again, marked as a repeat (a meeting shows a still picture instead of freezing)."""
        frame, info = last
        repeat = FrameInfo(info.index, now, face=False, animated=False, status=[status], crop_box=info.crop_box)
        self._deliver(frame, repeat)
        if self.window is not None:
            self.window.send(frame, FrameInfo(info.index, now, preview=draw_text_lines(frame, repeat.status)))
        self.stats.count("frames_repeated")

    def run(self) -> dict:
        """Run until the input ends, ``max_frames``, a quit key, Ctrl-C/SIGTERM (KeyboardInterrupt) or a fatal
        error; always closes the capture and every sink. Returns the stats summary."""
        # A live (or paced) source hands over one frame at a time at every hand-off: a waiting frame is replaced by
        # a newer one, so each stage starts on the freshest. A file read losslessly may run two frames ahead.
        paced = self.options.pacing.realtime or not self.source.is_file
        in_queue = FrameQueue(maxsize=1 if paced else 2)
        out_queue = FrameQueue(maxsize=1 if paced else 2)
        pacing = self.options.pacing
        capture = CaptureThread(self.source, in_queue, self.stats, self.stop_event, realtime=pacing.realtime,
                                loop=pacing.loop, max_frames=pacing.max_frames, reopen=self.reopen,
                                on_lost=self._on_lost)
        stall = StallRule(fps=pacing.fps or self.source.fps or 30.0, live=paced)
        last: tuple[np.ndarray, FrameInfo] | None = None
        frames_in = 0
        capture.start()
        stages = self._start_stages(in_queue, out_queue, lossless=not paced)
        try:
            while True:
                if self.window is not None:
                    for key in self.window.poll_keys():
                        self.post_key(key)
                    if self.window.closed_by_user():
                        self.stop_event.set()
                item = out_queue.get(timeout=0.02)
                now = time.perf_counter()
                seen = self.stats.counter("frames_in")
                if seen != frames_in:
                    frames_in = seen
                    stall.input_seen(now)
                if item is None:
                    if out_queue.closed or self.stop_event.is_set():
                        break
                    in_flight = frames_in > self.stats.counter("frames_out") + self.stats.counter("frames_dropped")
                    decision = stall.decide(now, camera_lost=self.camera_lost, in_flight=in_flight)
                    if decision is not None and last is not None:
                        self._repeat(last, decision.status, now)
                        stall.repeated(now)
                    continue
                self._send(*item)
                last = item
                stall.output_sent(time.perf_counter())
        finally:
            self.stop_event.set()
            in_queue.close()
            out_queue.close()
            # Threads joined before their source is released; a stuck one keeps it (see live.loop.shutdown).
            self.stuck = join_and_release(capture, stages, [*self.sinks, *([self.window] if self.window else [])])
            if not self.stuck:  # a stage still running may still use them
                for held in [self.model, *self._owned]:
                    close_quietly(held)
        if capture.error is not None and self.error is None:
            self.error = f"capture failed: {capture.error}"
        if self.error:
            raise UserError(self.error)
        return self.stats.summary()
