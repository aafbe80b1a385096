"""The live loop with real devices in mind: mirroring recalibrates, switching avatars with no face in view shows the
new avatar, shutdown joins the threads before releasing the source they use (the current one after a reconnect;
none under a read that does not return), first errors carry their traceback under --debug, and a recording keeps
the frames the model could not render in their place in time."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from helpers.clips import moving_frames, portrait
from helpers.standins import FlakyBackend, FlakyCamera, ListSource, tiny_backend

import fomm_live.live.loop.shutdown as shutdown
from fomm_live.live.compose import fit_to_output
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.failures import FailurePolicy
from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
from fomm_live.live.options import CalibrationOptions, FrameOptions, PacingOptions
from fomm_live.live.output.sinks import Mp4Sink, RecordingSink


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


def test_mirroring_recalibrates_so_a_still_face_stays_at_rest(detector) -> None:
    """A still face, mirrored at frame 20: the neutral pose is taken again from mirrored frames, so once it is the
    avatar is back at rest (as before the flip); in between the last animated frame is held."""
    backend = tiny_backend()
    sink = RecordingSink()
    pipeline = LivePipeline(ListSource(moving_frames(50, still=50)), backend,
                            prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=PipelineOptions(calibration=CalibrationOptions(steady_seconds=0.2),
                                                    frame=FrameOptions(label=False),
                                                    scripted_keys={20: ["m"]}),
                            detector=detector)
    pipeline.run()
    events = pipeline.events
    assert (20, "crop changed: recalibrating") in events
    recalibrated = [index for index, what in events if what == "calibrated" and index > 20]
    assert recalibrated, events
    again = recalibrated[0]
    between = sink.infos[20:again]
    assert between and not any(info.animated for info in between), "no frame compares mirrored with unmirrored"
    assert all(np.array_equal(frame, sink.frames[19]) for frame in sink.frames[20:again]), "the last frame is held"
    rest_before, rest_after = sink.frames[19].astype(int), sink.frames[-1].astype(int)
    # 0.0 with the recalibration; 2.4 levels without it (mirrored keypoints against the unmirrored neutral)
    assert np.abs(rest_after - rest_before).mean() < 0.5, "a still face is at rest after the flip too"


def test_switching_avatars_with_no_face_in_view_shows_the_new_avatar(detector) -> None:
    frames = moving_frames(40, still=40, blank=(25, 40))
    backend = tiny_backend()
    sink = RecordingSink()
    second = np.ascontiguousarray(portrait()[:, ::-1])
    avatars = prepare_avatars([("a", portrait()), ("b", second)], backend.size, detector)
    pipeline = LivePipeline(ListSource(frames), backend, avatars, [sink],
                            options=PipelineOptions(calibration=CalibrationOptions(steady_seconds=0.2),
                                                    frame=FrameOptions(label=False),
                                                    scripted_keys={30: ["2"]}),
                            detector=detector)
    pipeline.run()
    assert any(info.animated for info in sink.infos[:25]), "animated while the face was in view"
    assert np.array_equal(sink.frames[29], sink.frames[24]), "no face: the last animated frame is held"
    expected = fit_to_output(avatars[1].crop, *pipeline.output_size)
    assert all(np.array_equal(frame, expected) for frame in sink.frames[30:]), "the new avatar shows"


class CountingCamera(FlakyCamera):
    instances: list[CountingCamera] = []

    def __init__(self, frames, fail_at) -> None:
        super().__init__(frames, fail_at)
        self.closes = 0
        CountingCamera.instances.append(self)

    def close(self) -> None:
        self.closes += 1


def test_after_a_reconnect_the_current_source_is_closed_and_the_lost_one_once(detector) -> None:
    CountingCamera.instances.clear()
    frames = moving_frames(20, still=20)
    first = CountingCamera(frames, fail_at=5)
    backend = tiny_backend()
    pipeline = LivePipeline(first, backend, prepare_avatars([("a", portrait())], backend.size, detector),
                            [RecordingSink(keep_frames=False)],
                            options=PipelineOptions(pacing=PacingOptions(max_frames=15, fps=25)),
                            detector=detector, reopen=lambda: CountingCamera(frames, fail_at=None))
    pipeline.run()
    assert len(CountingCamera.instances) == 2
    assert [camera.closes for camera in CountingCamera.instances] == [1, 1]
    assert pipeline.stuck == []


class BlockingCamera(ListSource):
    """A live source whose third read blocks until ``release`` is set (a driver that hangs)."""

    is_file = False
    description = "hanging camera"

    def __init__(self) -> None:
        super().__init__(moving_frames(3, still=3))
        self.release = threading.Event()
        self.closes = 0

    def read(self):
        if self.position >= 2:
            self.release.wait()
            return None
        time.sleep(0.04)
        return super().read()

    def close(self) -> None:
        self.closes += 1


def test_a_capture_thread_that_does_not_stop_is_reported_and_its_source_left_open(detector, caplog,
                                                                                  monkeypatch) -> None:
    monkeypatch.setattr(shutdown, "CAPTURE_JOIN_SECONDS", 0.3)
    camera = BlockingCamera()
    backend = tiny_backend()
    sink = RecordingSink(keep_frames=False)
    pipeline = LivePipeline(camera, backend, prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=PipelineOptions(pacing=PacingOptions(fps=25)), detector=detector)
    timer = threading.Timer(1.0, pipeline.stop_event.set)
    timer.start()
    try:
        pipeline.run()
        assert pipeline.stuck == ["capture"]
        assert camera.closes == 0, "nothing is released under a blocked read"
        assert sink.closed == 1, "the outputs are closed (recordings finalised) all the same"
        assert any("capture thread did not stop" in r.getMessage() and "hanging camera" in r.getMessage()
                   for r in caplog.records)
    finally:
        timer.cancel()
        camera.release.set()


def test_debug_logging_shows_the_traceback_of_each_first_error(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="fomm_live.live.loop.failures")
    policy = FailurePolicy()
    for index, err in enumerate([RuntimeError("first"), RuntimeError("again"), ValueError("other kind")]):
        try:
            raise err
        except Exception as caught:  # noqa: BLE001 - the policy takes any stage error
            policy.failed(index, caught)
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert [r.exc_info[1].args[0] for r in with_traceback] == ["first", "other kind"]
    assert all(r.levelno == logging.DEBUG for r in with_traceback), "shown only with --debug"


def test_a_recording_keeps_failed_frames_in_their_place(detector, tmp_path) -> None:
    """Frames the generator could not render are recorded as the held frame at their own time: the recording has
    every input frame at frame-number times."""
    av = pytest.importorskip("av", reason="PyAV reads the recording back")
    backend = FlakyBackend(tiny_backend(), fail_on={3, 4, 5})
    out = tmp_path / "rec.mp4"
    sink = Mp4Sink(out, fps=25, clock="frames")
    pipeline = LivePipeline(ListSource(moving_frames(20, still=20)), backend,
                            prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=PipelineOptions(calibration=CalibrationOptions(steady_seconds=0.1)),
                            detector=detector)
    pipeline.run()
    with av.open(str(out)) as container:
        times = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert times == pytest.approx([i / 25 for i in range(20)])
