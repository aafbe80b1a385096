"""The live loop's recordings encode on a thread of their own: every frame kept and in order while the encoder keeps
up; when it cannot, new frames are dropped, counted and logged once, and the caller never waits; a file read
losslessly keeps every frame; the helper threads are bounded. (The crash-safety of the recordings the live loop writes
is tests/test_recording.py's kill test, which runs the real command.)"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import fomm_live.live.output.recording as recording_module
from fomm_live.live.output.recording import LIVE_X264, FragmentedRecording, QueuedRecording
from fomm_live.live.output.sinks import FrameInfo, Mp4Sink
from fomm_live.live.stats import PipelineStats
from fomm_live.live.threads import ModelTurns, bound_helper_threads

HELPER_THREADS_ENV = "FOMM_LIVE_HELPER_THREADS"

av = pytest.importorskip("av", reason="PyAV writes and reads the recordings")


def frame_of(level: int) -> np.ndarray:
    return np.full((48, 64, 3), level, np.uint8)


class GatedEncoder:
    """Stands in for a ``FragmentedRecording`` whose encoder is stuck until ``gate`` is set: it notes the level of
    each frame it is handed, in order."""

    fps = 25.0

    def __init__(self) -> None:
        self.path = Path("stand-in.mp4")
        self.gate = threading.Event()
        self.busy = threading.Event()  # set once the first frame reached the encoder
        self.levels: list[int] = []
        self.closed = False
        self.held_until: float | None = None

    def write(self, frame: np.ndarray, *, t: float, index: int) -> None:
        self.busy.set()
        assert self.gate.wait(30), "the test never let the encoder go"
        self.levels.append(int(frame[0, 0, 0]))

    def hold_until(self, t: float) -> None:
        self.held_until = t

    def close(self) -> None:
        self.closed = True


def decoded_levels(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [int(round(float(f.to_ndarray(format="gray").mean()))) for f in container.decode(video=0)]


def test_every_frame_is_written_in_order_while_the_encoder_keeps_up(tmp_path: Path) -> None:
    """A queue with room for every frame: the encoder always keeps up, so nothing may be dropped."""
    path = tmp_path / "rec.mp4"
    levels = list(range(20, 240, 4))  # 55 frames, each its own grey
    recording = QueuedRecording(FragmentedRecording(path, fps=25, x264=LIVE_X264), capacity=len(levels))
    for i, level in enumerate(levels):
        recording.write(frame_of(level), t=i / 25, index=i)
    recording.close()
    recording.close()
    assert recording.dropped == 0
    got = decoded_levels(path)
    assert len(got) == len(levels)
    assert max(abs(g - want) for g, want in zip(got, levels, strict=True)) <= 2, got


def test_a_frame_written_is_a_copy_the_caller_may_reuse(tmp_path: Path) -> None:
    encoder = GatedEncoder()
    recording = QueuedRecording(encoder)  # type: ignore[arg-type]
    frame = frame_of(10)
    recording.write(frame, t=0.0, index=0)
    frame[:] = 200  # the caller's buffer changes before the encoder ran
    encoder.gate.set()
    recording.close()
    assert encoder.levels == [10] and encoder.closed


def test_a_stuck_encoder_drops_new_frames_counts_and_logs_once_and_never_blocks(caplog) -> None:
    encoder = GatedEncoder()
    stats = PipelineStats()
    recording = QueuedRecording(encoder, capacity=4,  # type: ignore[arg-type]
                                on_drop=lambda: stats.count("recording_dropped"))
    caplog.set_level(logging.WARNING, logger="fomm_live.live.output.recording")
    recording.write(frame_of(0), t=0.0, index=0)
    assert encoder.busy.wait(10), "the encoder took the first frame"
    done = threading.Event()

    def caller() -> None:
        for i in range(1, 15):  # 4 fit in the queue, 10 find it full
            recording.write(frame_of(i * 10), t=i / 25, index=i)
        done.set()

    threading.Thread(target=caller, daemon=True).start()
    assert done.wait(10), "write waited on the stuck encoder"
    assert not encoder.gate.is_set() and encoder.levels == [], "all of that happened while the encoder was stuck"
    assert recording.dropped == 10
    assert stats.summary()["frames_dropped_by_recording"] == 10
    assert encoder.held_until == pytest.approx(15 / 25), "the last frame kept lasts until the last dropped one ends"
    warnings = [r for r in caplog.records if "cannot keep up" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    encoder.gate.set()
    recording.close()
    assert encoder.levels == [0, 10, 20, 30, 40], "the frames kept are the first ones, in order"


def test_a_lossless_recording_waits_for_the_encoder_and_keeps_every_frame() -> None:
    encoder = GatedEncoder()
    recording = QueuedRecording(encoder, capacity=2, lossless=True)  # type: ignore[arg-type]
    done = threading.Event()

    def caller() -> None:
        for i in range(8):
            recording.write(frame_of(i), t=0.0, index=i)
        done.set()

    threading.Thread(target=caller, daemon=True).start()
    assert encoder.busy.wait(10)
    assert not done.wait(0.3), "with the encoder stuck and the queue full, a lossless write waits"
    encoder.gate.set()
    assert done.wait(10)
    recording.close()
    assert encoder.levels == list(range(8)) and recording.dropped == 0


def test_an_encoder_failure_reaches_the_caller_and_close_still_finishes() -> None:
    class Failing(GatedEncoder):
        def write(self, frame, *, t, index) -> None:
            raise OSError("disk full")

    encoder = Failing()
    recording = QueuedRecording(encoder)  # type: ignore[arg-type]
    recording.write(frame_of(1), t=0.0, index=0)
    for _ in range(200):
        if recording.error is not None:
            break
        threading.Event().wait(0.01)
    with pytest.raises(RuntimeError, match="disk full"):
        recording.write(frame_of(2), t=0.04, index=1)
    recording.close()
    assert encoder.closed


def test_the_live_sink_times_a_repeat_as_a_hold_and_counts_drops_in_the_runs_stats(tmp_path: Path) -> None:
    stats = PipelineStats()
    sink = Mp4Sink(tmp_path / "rec.mp4", fps=25, stats=stats)
    assert sink.recording.on_drop is not None and not sink.recording.lossless
    for i in range(3):
        sink.send(frame_of(50 * i), FrameInfo(i, i / 25))
    sink.send(frame_of(50), FrameInfo(2, 1.0))  # a repeat while the camera was silent
    sink.close()
    assert decoded_levels(tmp_path / "rec.mp4") == pytest.approx([0, 50, 100], abs=2)
    with av.open(str(tmp_path / "rec.mp4")) as container:
        stream = container.streams.video[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(1.0, abs=0.002), "held until the repeat"
    assert Mp4Sink(tmp_path / "file.mp4", fps=25, clock="frames").recording.lossless, "a file read losslessly"


def x264_settings(path: Path) -> dict[str, str]:
    """The settings x264 wrote into the stream (its SEI message: ``options: cabac=1 ref=1 ...``)."""
    data = path.read_bytes()
    start = data.index(b"options: ") + len(b"options: ")
    text = data[start:data.index(b"\x00", start)].decode("ascii")
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def test_the_live_encoder_is_real_time_x264_on_one_thread_and_animate_keeps_the_default(tmp_path: Path) -> None:
    for name, x264 in (("live.mp4", LIVE_X264), ("file.mp4", None)):
        recording = FragmentedRecording(tmp_path / name, fps=25, x264=x264)
        recording.write(frame_of(30), t=0.0, index=0)
        recording.close()
    live, file = x264_settings(tmp_path / "live.mp4"), x264_settings(tmp_path / "file.mp4")
    assert live["threads"] == "1" and live["lookahead_threads"] == "1", live
    assert live["subme"] == "1" and live["me"] == "dia", "superfast"
    assert live["bframes"] == "0" == file["bframes"], "zerolatency: each frame leaves the encoder at once"
    assert file["subme"] == "7" and file["me"] == "hex", "x264's default preset for animate"


def test_helper_threads_are_bounded(monkeypatch) -> None:
    import cv2

    before = cv2.getNumThreads()
    try:
        monkeypatch.delenv(HELPER_THREADS_ENV, raising=False)
        assert bound_helper_threads() == 1 == cv2.getNumThreads()  # the FOMM networks keep every core busy
        cv2.setNumThreads(-1)  # OpenCV's own count
        default = cv2.getNumThreads()
        cv2.setNumThreads(1)
        assert bound_helper_threads(cores_busy=False) == default == cv2.getNumThreads(), "the landmark backend's"
        monkeypatch.setenv(HELPER_THREADS_ENV, "3")
        assert bound_helper_threads() == 3 == cv2.getNumThreads()
        assert bound_helper_threads(cores_busy=False) == 3 == cv2.getNumThreads(), "the variable wins"
    finally:
        cv2.setNumThreads(before)


def test_a_model_break_is_the_end_of_a_call_running_now_or_later_and_nothing_waits_past_the_timeout() -> None:
    turns = ModelTurns()
    assert turns.wait_for_break(0.01) is False, "no call ended: the wait gives up at its timeout"
    inside, ended = threading.Event(), threading.Event()

    def model() -> None:
        with turns.running():
            inside.set()
            assert ended.wait(30)

    worker = threading.Thread(target=model)
    worker.start()
    assert inside.wait(30)
    waiter = threading.Thread(target=lambda: results.append(turns.wait_for_break(30)))
    results: list[bool] = []
    waiter.start()
    ended.set()  # the model's call ends: the waiter wakes
    waiter.join(30)
    worker.join(30)
    assert results == [True]


def model_calls_until(turns: ModelTurns, done: Callable[[], bool]) -> bool:
    """Run empty model calls until ``done()`` (the encoder may start waiting a moment after a frame is queued: a
    call that ended before then is not its break); False if 10 s pass first."""
    for _ in range(200):
        with turns.running():
            pass
        if done():
            return True
        time.sleep(0.05)
    return False


def test_the_live_encoder_waits_for_the_models_break_unless_it_is_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the model mid-call, a lone queued frame reaches the encoder only when a call ends (the encoder runs
    beside the paste-back, not beside the keypoint detector); frames queued behind it do not wait."""
    monkeypatch.setattr(recording_module, "BREAK_WAIT_S", 30.0)  # only the model's break lets a lone frame go
    turns = ModelTurns()
    encoder = GatedEncoder()
    encoder.gate.set()  # this encoder is quick: only the wait can hold a frame up
    queued = QueuedRecording(encoder, turns=turns)
    with turns.running():
        queued.write(frame_of(10), t=0.0, index=0)
        assert not encoder.busy.wait(0.3), "the frame waits while the model's call runs"
    assert model_calls_until(turns, encoder.busy.is_set), "the end of a call let it go"
    queued.close()
    assert encoder.levels == [10]

    behind = GatedEncoder()  # stuck on its first frame while three more queue up behind it
    queued = QueuedRecording(behind, turns=turns)
    queued.write(frame_of(1), t=0.0, index=0)
    assert model_calls_until(turns, behind.busy.is_set)
    for level in (2, 3, 4):
        queued.write(frame_of(level), t=level / 25, index=level)
    behind.gate.set()  # no model call now: the two with a frame behind them go at once, the last waits alone
    deadline = time.monotonic() + 10
    while behind.levels != [1, 2, 3] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert behind.levels == [1, 2, 3], behind.levels
    assert model_calls_until(turns, lambda: behind.levels == [1, 2, 3, 4])
    queued.close()
