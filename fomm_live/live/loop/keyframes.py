"""Keyframes and in-betweens: the generator renders keyframes as fast as it can, on a thread of its own, and every
camera frame it cannot render in time gets an in-between, the newest keyframe moved by the face's motion since that
keyframe's camera frame (``live.inbetween.Inbetweener``, at the output size; about 9 ms p50 at 1280x720 in the loop
on a quiet 2-core CPU beside the generator, 5 ms alone, RESULTS).

Per tracked frame, in capture order, on the model stage's thread (``KeyframeStage``):

1. hotkeys and controls as in ``ModelStage``; one that changes what the generator uses (avatar, recalibration, crop
   geometry, strengths) first waits for the keyframe in flight, so that no keyframe mixes two states;
2. while the output cannot be animated (no face, no face mesh, frozen, before the neutral pose) the frame takes
   ``ModelStage``'s own path, the generator's keyframe in flight finished first;
3. else, when the generator is free, the frame goes to it (keypoints, generator: ``KeyframeWorker``; the paste-back
   is the stage's, when it takes the keyframe), and
   the stage waits for that keyframe until the next camera frame is waiting: in time, the keyframe itself goes out
   (a model faster than the camera gives keyframes only, as without in-betweens); late, the frame gets an in-between
   from the keyframe before, and the late keyframe is the base of the in-betweens that follow;
4. while the generator is busy, the frame gets an in-between at once, and is offered to the generator as its next
   job: the generator starts the newest frame offered as soon as it finishes, without waiting for the next camera
   frame to reach the stage (that wait idled it for half a camera interval, about 20 ms, per keyframe).

So every camera frame that reaches the stage gives one output frame, in order, and an in-between never waits for the
keyframe in flight: it extrapolates from the newest finished keyframe (no interpolation, which would wait a whole
keyframe interval), and the renderer cross-fades from the previous keyframe for a few frames after a new one
(``INBETWEEN_CROSSFADE``). A render that is only the last frame again (``Rendered.held``: a
remote server away) is not a new keyframe. The neutral pose,
the head and expression strengths, the avatar and the label apply to in-betweens as to keyframes: the in-between
renderer is calibrated on the face mesh of the frame whose keypoints calibrate the model. The face mesh runs on the
tracking side (``TrackingStage(face_mesh=...)``), never on the model's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fomm_live.live.backends import Backend
from fomm_live.live.errors import UserError
from fomm_live.live.loop.stages import ModelStage, TrackedFrame, timed
from fomm_live.live.options import PipelineOptions
from fomm_live.live.output.sinks import FrameInfo
from fomm_live.live.threads import MODEL_TURNS

logger = logging.getLogger(__name__)

# In-betweens blend the previous keyframe (moved to the same face) out over this many renders after a new keyframe:
# at 2 the step where a keyframe takes over came near an ordinary frame-to-frame step (demo clip, keyframe 5 frames
# late: 3.91 / 3.15 levels against 7.74 / 2.56 without) for about 0.2 dB of PSNR (``benchmarks.inbetween``, RESULTS).
INBETWEEN_CROSSFADE = 2
# How often a wait for the keyframe in flight looks whether the next camera frame has come: at most this late
# after it (4 ms of a 33-40 ms camera interval).
WAIT_STEP_S = 0.004


def inbetweens_wanted(options: PipelineOptions, backend: Backend, *, paced: bool) -> bool:
    """Whether the loop makes keyframes and in-betweens: asked for (the default), allowed by the backend
    (``Backend.inbetweens``), and a live or paced input, whose frames the generator cannot all render in time. A file
    read losslessly has every frame rendered, as before."""
    return options.inbetweens and backend.inbetweens and paced


def open_inbetweens(backend: Backend, inbetweener: Any, face_mesh: Any, owned: list[Any]) -> tuple[Any, Any]:
    """The in-between renderer and the tracking side's face mesh: those given, else new ones (added to ``owned``,
    for the caller to close when the run ends)."""
    if inbetweener is None:
        from fomm_live.live.inbetween import Inbetweener

        inbetweener = Inbetweener(size=backend.size, crossfade=INBETWEEN_CROSSFADE)
        owned.append(inbetweener)
    if face_mesh is None:
        from fomm_live.live.landmarks.facemesh import FaceMesh

        face_mesh = FaceMesh()
        owned.append(face_mesh)
    logger.info("keyframes and in-betweens: the generator renders keyframes as fast as it can, every camera frame in "
                "between is the newest keyframe moved by the face (--no-inbetweens: every frame waits for it)")
    return inbetweener, face_mesh


@dataclass
class Keyframe:
    """A finished job of the generator's thread.

    Attributes:
        tracked: The camera frame it was rendered from.
        rendered: The generator's render (``live.backends.Rendered``), pasted into the output frame when the stage
            takes it (None: the keypoint detector found no face, or the backend gave its last frame again,
            ``Rendered.held``).
        error: What the job raised (handed to the loop's failure policy with the next frame).
    """

    tracked: TrackedFrame
    rendered: Any | None = None
    error: Exception | None = None


class KeyframeWorker:
    """One keyframe at a time on a thread of its own: ``submit`` a tracked frame, ``wait`` until it is finished,
    ``take`` returns it; ``offer`` a frame while one is in flight and it starts as soon as that one finishes (the
    newest offer wins; ``drop_offer`` withdraws it). ``close()`` stops the thread (safe to call twice).

    Args:
        render: Renders the keyframe of a tracked frame (None when there is none); runs on the worker.
    """

    def __init__(self, render: Callable[[TrackedFrame], Any | None]) -> None:
        self._render = render
        self._cond = threading.Condition()
        self._job: TrackedFrame | None = None
        self._offer: TrackedFrame | None = None  # the next job, started when the one in flight finishes
        self._result: Keyframe | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="keyframes", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A job is in flight, or finished and not taken yet."""
        with self._cond:
            return self._job is not None or self._result is not None

    def offer(self, tracked: TrackedFrame) -> None:
        """The job to start when the one in flight finishes (replacing an earlier offer); started at once when none
        is in flight (a finished one not taken yet stays to be taken)."""
        with self._cond:
            if self._job is None:
                self._job, self._offer = tracked, None
            else:
                self._offer = tracked
            self._cond.notify_all()

    def drop_offer(self) -> None:
        """Withdraw the offer not started yet (what it was rendered with is about to change)."""
        with self._cond:
            self._offer = None

    def submit(self, tracked: TrackedFrame) -> None:
        with self._cond:
            if self._job is not None or self._result is not None:
                raise RuntimeError("a keyframe is already in flight")
            self._job, self._offer = tracked, None
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> bool:
        """Block until the job in flight is finished (or there is none), at most ``timeout`` seconds; whether it is."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None or self._closed, timeout)

    def take(self) -> Keyframe | None:
        """The newest finished keyframe, once (None when none has finished since the last ``take``; an offered job
        may be in flight meanwhile)."""
        with self._cond:
            result, self._result = self._result, None
            return result

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._closed)
                if self._closed:
                    return
                job = self._job
            assert job is not None
            result = Keyframe(job)
            try:
                result.rendered = self._render(job)
            except Exception as err:  # noqa: BLE001 - handed to the loop's failure policy
                result.error = err
            with self._cond:
                # A finished keyframe not taken yet is replaced by this newer one (the stage takes one a camera
                # frame; a keyframe takes several); the offer, if any, starts at once.
                self._result, self._job, self._offer = result, self._offer, None
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)


class KeyframeStage(ModelStage):
    """``ModelStage`` with keyframes and in-betweens (see the module docstring).

    Args:
        inbetweener: The in-between renderer (``live.inbetween.Inbetweener``: ``set_source``, ``calibrate``,
            ``reset_calibration``, ``set_strengths``, ``keyframe``, ``render``, ``has_keyframe``); owned by the
            caller.
        next_waiting: Whether the next camera frame is waiting for this stage (ends the wait for a keyframe).
        **stage: ``ModelStage``'s arguments.
    """

    def __init__(self, *, inbetweener: Any, next_waiting: Callable[[], bool], **stage: Any) -> None:
        self.inbetweener = inbetweener
        self.next_waiting = next_waiting
        self.source_ok = False  # the in-between renderer has the current avatar (its face mesh found a face)
        self.neutral_ok = False  # ... and the neutral pose's face mesh
        self.landmarks: np.ndarray | None = None  # the face mesh of the frame being processed
        self.worker: KeyframeWorker | None = None  # started after ``ModelStage`` has set the first avatar
        super().__init__(**stage)
        self.worker = KeyframeWorker(self._render_keyframe)

    # ------------------------------------------------------------------------ what the generator uses, settled
    def settle(self) -> None:
        """Withdraw the offered frame, wait for the keyframe in flight and take it (its error, if any, is raised
        here)."""
        if self.worker is not None and self.worker.busy:
            self.worker.drop_offer()
            self.worker.wait(None)
            self._install(self.worker.take())

    def select_avatar(self, index: int) -> None:
        if not 0 <= index < len(self.avatars):
            return
        self.settle()
        super().select_avatar(index)
        try:
            self.inbetweener.set_source(self.avatars[index].crop)
            self.source_ok = True
        except UserError as err:  # no face mesh on this avatar: its frames are all keyframes
            logger.warning("%s: keyframes only for this avatar", err)
            self.source_ok = False

    def apply_key(self, key: str) -> None:
        self.settle()
        super().apply_key(key)

    def follow_controls(self) -> None:
        wanted = (self.controls.head_strength, self.controls.expression_strength)
        if wanted != self._strengths:
            self.settle()
        super().follow_controls()
        self.inbetweener.set_strengths(*self._strengths)

    def recalibrate_from_scratch(self) -> None:
        self.settle()
        super().recalibrate_from_scratch()
        self.inbetweener.reset_calibration()  # its neutral pose and keyframe belong to the old crops too
        self.neutral_ok = False

    def take_neutral(self, motion: Any, index: int) -> None:
        """The model's neutral pose, and the same frame's face mesh as the in-between renderer's."""
        super().take_neutral(motion, index)
        self.neutral_ok = self.landmarks is not None
        if self.landmarks is not None:
            self.inbetweener.calibrate(self.landmarks)

    def _calibrate_now(self, tracked: TrackedFrame) -> None:
        """Take this frame as the neutral pose (the generator's keyframe in flight finished first)."""
        self.settle()
        motion = timed(self.stats, "keypoints", lambda: self.backend.detect(tracked.crop))
        if motion is None:
            return
        if self.smoother is not None:
            motion = self.smoother(motion, tracked.item.media_time)
        self.take_neutral(motion, tracked.index)

    # ------------------------------------------------------------------------------------------------ keyframes
    def placement(self) -> tuple[float, float, float]:
        """Where the model's square lies in the output frame: (x0, y0, side), output edge coordinates."""
        photo = self.photo
        if photo is not None:
            return photo.framing.box
        width, height = self.output_size
        side = round(self.backend.size * min(width / self.backend.size, height / self.backend.size))
        return float((width - side) // 2), float((height - side) // 2), float(side)  # as ``fit_to_output`` pads

    def _render_keyframe(self, tracked: TrackedFrame) -> Any | None:
        """On the generator's thread: keypoints, smoothing, generator (the loop's other calls to the backend wait for
        it: ``settle``). The paste-back is the stage's, when it takes the keyframe (``_install``): on the other core,
        beside the generator's next keyframe, rather than 17 ms of each keyframe's own time (1280x720, 2-core
        Xeon)."""
        with MODEL_TURNS.running():  # the recording's encoder waits for the end of this (live.threads)
            motion = timed(self.stats, "keypoints", lambda: self.backend.detect(tracked.crop))
            if motion is None:
                return None
            if self.smoother is not None:
                motion = self.smoother(motion, tracked.item.media_time)
            detail = self.compositor.detail
            rendered = timed(self.stats, "generator", lambda: self.backend.render(motion, detail=detail))
        if rendered.held:  # not a render of this frame (a remote server away): the newest keyframe stays
            return None
        return rendered

    def _install(self, key: Keyframe | None) -> np.ndarray | None:
        """Make a finished keyframe the base of the in-betweens; its frame (None when there was none). The held
        frame stays what was last shown (a freeze holds that, not a keyframe nobody saw)."""
        if key is None:
            return None
        if key.error is not None:
            raise key.error
        if key.rendered is None:
            return None
        rendered = key.rendered
        # Timed as ``compose`` as in ``ModelStage`` (there with the label; here the label is the output's).
        frame = timed(self.stats, "compose", lambda: self.compositor.paste(rendered))
        self.stats.mark_keyframe(time.perf_counter())
        assert key.tracked.landmarks is not None
        self.inbetweener.keyframe(frame, key.tracked.landmarks, self.placement())
        return frame

    def _animatable(self, tracked: TrackedFrame) -> bool:
        return (not self.controls.frozen and tracked.crop is not None and tracked.landmarks is not None
                and (self.crop_mode != "face" or tracked.face is not None) and self.backend.calibrated
                and self.source_ok and self.neutral_ok)

    def __call__(self, tracked: TrackedFrame) -> tuple[np.ndarray, FrameInfo]:
        """The output frame of a tracked frame: a keyframe, an in-between, or ``ModelStage``'s own."""
        self.landmarks = tracked.landmarks
        assert self.worker is not None
        if not self._animatable(tracked):
            self.settle()
            out, info = super().__call__(tracked)
            if info.animated and self._animatable(tracked):  # the neutral pose's frame: the first keyframe
                assert self._held is not None and tracked.landmarks is not None
                self.inbetweener.keyframe(self._held, tracked.landmarks, self.placement())
            return out, info
        self._install(self.worker.take())  # a keyframe finished since the last frame
        if self.should_calibrate(tracked.face, tracked.item.media_time):
            self._calibrate_now(tracked)
        if not self.worker.busy:
            self.worker.submit(tracked)
            while not self.worker.wait(WAIT_STEP_S):
                if self.next_waiting():
                    break
            else:
                t0 = time.perf_counter()
                frame = self._install(self.worker.take())
                if frame is not None:
                    self._held = frame
                    return self.output(tracked, frame, [], t0, face=True, animated=True)
        else:
            self.worker.offer(tracked)  # the generator's next job, started the moment it is free
        if not self.inbetweener.has_keyframe:  # the first keyframe is not ready yet
            return self.output(tracked, self.held_frame(), [], time.perf_counter(), face=True, animated=False)
        frame = timed(self.stats, "inbetween", lambda: self.inbetweener.render(tracked.landmarks))
        t0 = time.perf_counter()  # ``compose``: the label and the preview, as for a keyframe
        self._held = frame
        return self.output(tracked, frame, [], t0, face=True, animated=True, inbetween=True)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
