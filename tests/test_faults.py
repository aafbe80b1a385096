"""Faults in the running loop: a failing stage is logged once and the last good frame is served; repeated failures
stop the run with a clear message; a failing output is closed while the others go on; a camera that gives black
frames or vanishes for good is reported and the outputs go on."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers.clips import moving_frames, portrait
from helpers.standins import FlakyBackend, FlakyCamera, ListSource, tiny_backend

from fomm_live.live.errors import UserError
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.pipeline import MAX_CONSECUTIVE_ERRORS, LivePipeline, PipelineOptions, prepare_avatars
from fomm_live.live.options import CalibrationOptions, PacingOptions
from fomm_live.live.output.sinks import RecordingSink


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
                        options=PipelineOptions(calibration=CalibrationOptions(steady_seconds=0.2)), detector=detector)


def test_a_failing_frame_is_logged_once_and_the_last_good_frame_served(detector, caplog) -> None:
    backend = FlakyBackend(tiny_backend(), fail_on={5, 6, 7})
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
    pipeline = make(detector, FlakyBackend(tiny_backend(), always=True), [sink], n=80)
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


class BlackThenFaceCamera:
    """A live source (paced by itself): ``black`` black frames, then the moving face."""

    is_file = False
    fps = 25.0
    description = "camera 0"

    def __init__(self, black: int, faces: int) -> None:
        self.frames = [np.zeros((480, 640, 3), np.uint8)] * black + moving_frames(faces, still=faces)
        self.height, self.width = 480, 640
        self.position = 0

    def read(self):
        if self.position >= len(self.frames):
            return None
        time.sleep(0.04)
        self.position += 1
        return self.frames[self.position - 1]

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_a_camera_giving_black_frames_is_reported_once_and_the_output_goes_on(detector, caplog, monkeypatch) -> None:
    import fomm_live.live.capture.sources as capture

    monkeypatch.setattr(capture, "BLACK_SECONDS", 0.3)
    backend = tiny_backend()
    sink = RecordingSink(keep_frames=False)
    pipeline = LivePipeline(BlackThenFaceCamera(black=15, faces=10), backend,
                            prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=PipelineOptions(calibration=CalibrationOptions(steady_seconds=0.1)),
                            detector=detector)
    pipeline.run()
    warnings = [r.getMessage() for r in caplog.records if "only black frames" in r.getMessage()]
    assert len(warnings) == 1 and "camera 0" in warnings[0]
    assert sink.count > 0 and any(info.status == ["no face in view"] for info in sink.infos)
    assert any(info.face for info in sink.infos), "faces are tracked once the picture is back"


def test_a_camera_that_vanishes_for_good_keeps_the_outputs_fed_until_stopped(detector) -> None:
    """The camera dies after 8 frames and never comes back: capture keeps retrying, the outputs get the last frame
    marked "camera lost: reconnecting", and a stop (here from the test, as Ctrl-C would, once a second try and a
    marked frame have happened) ends the run cleanly."""
    tries = []

    def reopen():
        tries.append(time.perf_counter())
        if len(tries) >= 2 and any(info.status == ["camera lost: reconnecting"] for info in list(sink.infos)):
            pipeline.stop_event.set()
        raise UserError("camera 0 cannot be opened (missing, or busy in another program)")

    backend = tiny_backend()
    sink = RecordingSink(keep_frames=False)
    pipeline = LivePipeline(FlakyCamera(moving_frames(20, still=20), fail_at=8), backend,
                            prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=PipelineOptions(pacing=PacingOptions(fps=25)), detector=detector, reopen=reopen)
    deadline = threading.Timer(60, pipeline.stop_event.set)  # a bound should the stop above never come
    deadline.start()
    try:
        pipeline.run()
    finally:
        deadline.cancel()
    assert len(tries) >= 2, "it keeps trying, with back-off"
    lost = [info for info in sink.infos if info.status == ["camera lost: reconnecting"]]
    assert lost and pipeline.stats.summary()["frames_repeated"] >= len(lost)
    assert pipeline.camera_lost and sink.closed == 1
