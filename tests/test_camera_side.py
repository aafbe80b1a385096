"""The camera-rate threads' lower OS priority (``live.threads.CameraSide``): with keyframes and in-betweens beside the
FOMM networks on the CPU, the threads that run at the camera's rate (capture, tracking, the in-between stage, the
recording's encoder) run at a higher niceness than the generator's thread when ``FOMM_LIVE_CAMERA_NICE`` asks (off by
default); without in-betweens, at 0 or unset, and for a backend that leaves the cores free (the landmark backend)
nothing changes. The
niceness is read back from the kernel (``os.getpriority`` on each thread's id)."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from helpers.clips import moving_frames, portrait
from helpers.inbetweens import StandInInbetweener
from helpers.options import pipeline_options
from helpers.standins import ListSource, SlowBackend, tiny_backend

from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.pipeline import LivePipeline, prepare_avatars
from fomm_live.live.output.sinks import RecordingSink
from fomm_live.live.threads import CAMERA_NICE, CAMERA_SIDE, CameraSide, camera_nice

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")


def niceness() -> int:
    """This thread's niceness, as the kernel has it."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_thread(work) -> object:
    """``work()``'s result on a new thread (which ends with it, so its niceness goes with it)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def test_a_thread_that_joins_takes_the_camera_sides_niceness_and_others_keep_theirs() -> None:
    side = CameraSide()
    base = in_thread(niceness)
    side.lower(3)

    def joined() -> tuple[int, int]:
        side.join()
        child = in_thread(niceness)  # a thread it starts (mediapipe's graph threads) inherits it
        side.join()  # a second join at the same setting changes nothing
        return niceness(), child

    assert in_thread(joined) == (min(19, base + 3), min(19, base + 3))
    assert in_thread(niceness) == base
    side.lower(0)

    def joined_when_off() -> int:
        side.join()
        return niceness()

    assert in_thread(joined_when_off) == base


def test_the_switch_sets_the_niceness_and_it_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FOMM_LIVE_CAMERA_NICE", raising=False)
    assert camera_nice() == CAMERA_NICE == 0
    monkeypatch.setenv("FOMM_LIVE_CAMERA_NICE", "0")
    assert camera_nice() == 0
    monkeypatch.setenv("FOMM_LIVE_CAMERA_NICE", "9")
    assert camera_nice() == 9


class NiceInbetweener(StandInInbetweener):
    """The stand-in renderer, noting the niceness of the thread each in-between is rendered on (the stage's)."""

    def __init__(self) -> None:
        super().__init__()
        self.nice: set[int] = set()

    def render(self, landmarks):
        self.nice.add(niceness())
        return super().render(landmarks)


class NiceBackend(SlowBackend):
    """A slow FOMM backend on the CPU (``uses_all_cores``), noting the niceness of each thread it renders on, by
    name (with in-betweens the generator's is ``keyframes``; the neutral pose's frame is rendered on the stage's own
    thread, ``model``, at its niceness)."""

    def __init__(self, animator, delay: float) -> None:
        super().__init__(animator, delay)
        self.nice: dict[str, set[int]] = {}

    def render(self, motion, *, detail=False):
        self.nice.setdefault(threading.current_thread().name, set()).add(niceness())
        return super().render(motion, detail=detail)


class NiceSink(RecordingSink):
    """Notes the niceness of the capture and tracking threads, found by name, while frames go out."""

    def __init__(self) -> None:
        super().__init__()
        self.nice: dict[str, set[int]] = {}

    def send(self, frame, info) -> None:
        for thread in threading.enumerate():
            if thread.name in ("capture", "tracking") and thread.native_id is not None:
                try:
                    value = os.getpriority(os.PRIO_PROCESS, thread.native_id)
                except OSError:  # ended meanwhile
                    continue
                self.nice.setdefault(thread.name, set()).add(value)
        super().send(frame, info)


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


class TenFps(ListSource):
    fps = 10.0


def _run(detector, *, inbetweens: bool) -> tuple[LivePipeline, NiceBackend, NiceInbetweener, NiceSink, dict]:
    backend = NiceBackend(tiny_backend().animator, delay=0.3)
    inbetweener, sink = NiceInbetweener(), NiceSink()
    pipeline = LivePipeline(TenFps(moving_frames(30, still=6)), backend,
                            prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=pipeline_options(realtime=True, steady_seconds=0.1, inbetweens=inbetweens,
                                                     framing="photo", output_size=(320, 240)),
                            detector=detector, inbetweener=inbetweener)
    summary = pipeline.run()
    return pipeline, backend, inbetweener, sink, summary


def test_with_inbetweens_the_camera_rate_threads_run_below_the_generators(detector,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOMM_LIVE_CAMERA_NICE", "5")
    base = niceness()
    pipeline, backend, inbetweener, sink, summary = _run(detector, inbetweens=True)
    assert pipeline.inbetweens and pipeline.backend.uses_all_cores and summary["inbetweens"] > 0
    lower = min(19, base + 5)
    assert inbetweener.nice == {lower}
    assert sink.nice == {"capture": {lower}, "tracking": {lower}}
    assert backend.nice["keyframes"] == {base}  # the generator's thread keeps the process's niceness
    assert niceness() == base and CAMERA_SIDE.nice == 0  # the caller's own thread, and the setting after the run


def test_without_inbetweens_by_default_or_at_zero_no_thread_is_lowered(detector,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    base = niceness()
    monkeypatch.setenv("FOMM_LIVE_CAMERA_NICE", "5")
    _, backend, _, sink, summary = _run(detector, inbetweens=False)
    # Without in-betweens the FOMM networks on the CPU track and render on one thread (``processing``).
    assert summary["inbetweens"] == 0 and set(backend.nice) == {"processing"}
    assert backend.nice["processing"] == set().union(*sink.nice.values()) == {base}
    for value in ("0", None):  # the switch at zero, and unset (the default)
        if value is None:
            monkeypatch.delenv("FOMM_LIVE_CAMERA_NICE")
        else:
            monkeypatch.setenv("FOMM_LIVE_CAMERA_NICE", value)
        _, backend, inbetweener, sink, summary = _run(detector, inbetweens=True)
        assert summary["inbetweens"] > 0
        assert backend.nice["keyframes"] == inbetweener.nice == set().union(*sink.nice.values()) == {base}


def test_the_landmark_backend_leaves_every_thread_as_it_was(detector, monkeypatch: pytest.MonkeyPatch) -> None:
    from fomm_live.live.landmarks import LandmarkBackend

    monkeypatch.setenv("FOMM_LIVE_CAMERA_NICE", "5")
    base = niceness()
    sink = NiceSink()
    with LandmarkBackend(size=128) as backend:
        assert not backend.uses_all_cores and not backend.inbetweens
        pipeline = LivePipeline(TenFps(moving_frames(12, still=6)), backend,
                                prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                                options=pipeline_options(realtime=True, steady_seconds=0.1), detector=detector)
        pipeline.run()
    assert sink.nice and set().union(*sink.nice.values()) == {base}


class NiceRecording:
    """A stand-in for ``FragmentedRecording``: notes the niceness of the thread each frame is encoded on."""

    path = "stand-in.mp4"
    fps = 25.0

    def __init__(self) -> None:
        self.nice: list[int] = []
        self.written = threading.Condition()

    def write(self, frame, *, t: float, index: int) -> None:
        with self.written:
            self.nice.append(niceness())
            self.written.notify_all()

    def wait_for(self, count: int) -> None:
        with self.written:
            assert self.written.wait_for(lambda: len(self.nice) >= count, timeout=10.0)

    def hold_until(self, t: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_recordings_encoder_takes_the_niceness_of_the_run_that_sends_its_frames() -> None:
    from fomm_live.live.output.recording import QueuedRecording

    base = niceness()
    frame = np.zeros((8, 8, 3), np.uint8)
    recording = NiceRecording()
    queued = QueuedRecording(recording, lossless=True)  # its thread starts before any run sets the niceness
    try:
        queued.write(frame, t=0.0, index=0)
        recording.wait_for(1)
        CAMERA_SIDE.lower(4)
        queued.write(frame, t=0.04, index=1)
        recording.wait_for(2)  # the niceness is the one set when the frame is encoded
    finally:
        CAMERA_SIDE.lower(0)
        queued.close()
    assert recording.nice == [base, min(19, base + 4)]
