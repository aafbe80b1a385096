"""Faults in the running loop: a failing stage is logged once and the last good frame is served; repeated failures
stop the run with a clear message; a failing output is closed while the others go on."""

from __future__ import annotations

import numpy as np
import pytest
from clips import moving_frames, portrait
from test_pipeline import ListSource, tiny_backend

from live.errors import UserError
from live.face import FaceDetector
from live.pipeline import MAX_CONSECUTIVE_ERRORS, LivePipeline, PipelineOptions, prepare_avatars
from live.sinks import RecordingSink


class Flaky:
    """Wraps a backend; ``render`` raises on the frames listed (counting render calls)."""

    def __init__(self, backend, fail_on: set[int] | None = None, always: bool = False) -> None:
        self.inner = backend
        self.name, self.size = backend.name, backend.size
        self.fail_on = fail_on or set()
        self.always = always
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def calibrated(self) -> bool:
        return self.inner.calibrated

    def render(self, motion):
        self.calls += 1
        if self.always or self.calls in self.fail_on:
            raise RuntimeError("simulated failure in the generator")
        return self.inner.render(motion)


class BrokenSink(RecordingSink):
    name = "broken"

    def send(self, frame, info) -> None:
        raise OSError("device vanished")


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


def make(detector, backend, sinks, n=40):
    return LivePipeline(ListSource(moving_frames(n, still=n)), backend,
                        prepare_avatars([("a", portrait())], backend.size, detector), sinks,
                        options=PipelineOptions(steady_seconds=0.2), detector=detector)


def test_a_failing_frame_is_logged_once_and_the_last_good_frame_served(detector, caplog) -> None:
    backend = Flaky(tiny_backend(), fail_on={5, 6, 7})
    sink = RecordingSink()
    pipeline = make(detector, backend, [sink])
    pipeline.run()
    assert len(sink.frames) == 40, "every frame still comes out"
    errors = [r for r in caplog.records if "simulated failure" in r.getMessage()]
    assert len(errors) == 1, "logged once, not once per frame"
    failed = [i for i, info in enumerate(sink.infos) if info.status == ["error"]]
    assert len(failed) == 3
    first = failed[0]
    assert all(np.array_equal(sink.frames[i], sink.frames[first - 1]) for i in failed)


def test_repeated_failures_stop_the_run_with_a_clear_message(detector) -> None:
    sink = RecordingSink()
    pipeline = make(detector, Flaky(tiny_backend(), always=True), [sink], n=80)
    with pytest.raises(UserError, match=f"processing failed {MAX_CONSECUTIVE_ERRORS} frames in a row"):
        pipeline.run()
    assert sink.closed >= 1, "outputs are closed (recordings finalised) on the way out"


def test_a_failing_output_is_closed_and_the_others_go_on(detector, caplog) -> None:
    good, bad = RecordingSink(), BrokenSink()
    pipeline = make(detector, tiny_backend(), [bad, good], n=20)
    pipeline.run()
    assert len(good.frames) == 20
    assert bad.closed >= 1
    assert sum("output broken failed" in r.getMessage() for r in caplog.records) == 1
