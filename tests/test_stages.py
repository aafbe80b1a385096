"""The pipelined live loop: the same frames as the one-thread loop on a file, the one-slot hand-off, the stall rule,
the failure policy across both stages, and composition on the model's device checked against OpenCV.

No timing is asserted; throughput and latency figures come from ``python -m fomm_live.benchmarks.pipeline``."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from helpers.clips import moving_frames, portrait
from helpers.options import pipeline_options
from helpers.standins import ListSource, SlowBackend, WrappedBackend, tiny_backend

from fomm_live.live.capture.sources import CapturedFrame
from fomm_live.live.compose import fit_to_output, fit_to_output_tensor
from fomm_live.live.errors import UserError
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.handoff import OneSlot
from fomm_live.live.loop.pipeline import MAX_CONSECUTIVE_ERRORS, LivePipeline, PipelineOptions, prepare_avatars
from fomm_live.live.loop.stages import TrackedFrame, merge_keys
from fomm_live.live.loop.stall import CAMERA_LOST, CAMERA_SILENT, StallRule
from fomm_live.live.options import CalibrationOptions
from fomm_live.live.output.sinks import RecordingSink
from fomm_live.live.stats import PipelineStats
from fomm_live.models import tensor_to_image


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


def _run(frames, detector, *, backend=None, avatars=None, **options) -> tuple[LivePipeline, RecordingSink]:
    backend = backend or tiny_backend()
    sink = RecordingSink()
    images = avatars or [("a", portrait())]
    pipeline = LivePipeline(ListSource(frames), backend, prepare_avatars(images, backend.size, detector), [sink],
                            options=pipeline_options(**options), detector=detector)
    pipeline.run()
    return pipeline, sink


def test_pipelined_and_one_thread_loops_give_identical_frames_on_a_file(detector) -> None:
    """A file read losslessly, with hotkeys of both stages (zoom, move, mirror; recalibrate, avatar switch) and a
    no-face stretch: every output frame, its info and the event log are the same in both modes."""
    frames = moving_frames(40, still=12, blank=(30, 33))
    keys = {6: ["w"], 9: ["right", "2"], 18: ["c"], 24: ["m", "i"], 27: ["n", "m"]}
    avatars = [("a", portrait()), ("b", portrait()[:, ::-1].copy())]
    runs = {}
    for pipelining in (False, True):
        pipeline, sink = _run(frames, detector, avatars=avatars, scripted_keys=keys, pipelining=pipelining,
                              steady_seconds=0.2)
        assert pipeline.pipelining is pipelining
        runs[pipelining] = (pipeline, sink)
    (one, one_sink), (two, two_sink) = runs[False], runs[True]
    assert len(one_sink.frames) == len(two_sink.frames) == 40
    assert one.events == two.events
    assert any(what == "calibrated" for _, what in one.events), "the run reaches animated frames"
    assert (9, "avatar 1") in one.events and (27, "avatar 0") in one.events
    for i, (a, b) in enumerate(zip(one_sink.frames, two_sink.frames, strict=True)):
        if not np.array_equal(a, b):
            where = tuple(int(v[0]) for v in np.nonzero(a != b))
            pytest.fail(f"frame {i} differs first at {where}: {a[where[:2]]} != {b[where[:2]]}")
    for a, b in zip(one_sink.infos, two_sink.infos, strict=True):
        assert (a.index, a.face, a.animated, a.status, a.crop_box) == (b.index, b.face, b.animated, b.status,
                                                                        b.crop_box)
    assert two.stats.summary()["frames_dropped"] == 0


def test_the_environment_switches_pipelining_and_options_override_it(detector, monkeypatch) -> None:
    backend = tiny_backend()
    avatars = prepare_avatars([("a", portrait())], backend.size, detector)

    def made(**options) -> LivePipeline:
        return LivePipeline(ListSource(moving_frames(2, still=2)), backend, avatars, [RecordingSink()],
                            options=pipeline_options(**options), detector=detector)

    monkeypatch.delenv("FOMM_LIVE_PIPELINING", raising=False)
    assert made().pipelining is False, "the FOMM networks on the CPU keep both cores busy: one thread by default"
    monkeypatch.setenv("FOMM_LIVE_PIPELINING", "1")
    assert made().pipelining is True
    monkeypatch.setenv("FOMM_LIVE_PIPELINING", "0")
    assert made().pipelining is False
    assert made(pipelining=True).pipelining is True


def test_pipelining_is_on_by_default_unless_the_model_keeps_every_core_busy(monkeypatch) -> None:
    from fomm_live.live.backends import Backend
    from fomm_live.live.loop.pipeline import pipelining_default

    class CpuLight(Backend):
        pass

    class CpuHeavy(Backend):
        uses_all_cores = True

    monkeypatch.delenv("FOMM_LIVE_PIPELINING", raising=False)
    assert pipelining_default(CpuLight()) is True
    assert pipelining_default(CpuHeavy()) is False
    monkeypatch.setenv("FOMM_LIVE_PIPELINING", "auto")
    assert pipelining_default(CpuHeavy()) is False
    monkeypatch.setenv("FOMM_LIVE_PIPELINING", "on")
    assert pipelining_default(CpuHeavy()) is True
    monkeypatch.setenv("FOMM_LIVE_PIPELINING", "off")
    assert pipelining_default(CpuLight()) is False


def _tracked(index: int, keys: list[str]) -> TrackedFrame:
    return TrackedFrame(CapturedFrame(np.zeros((2, 2, 3), np.uint8), index, 0.0, index / 25), keys=keys)


def test_newest_wins_hand_off_replaces_the_waiting_frame_and_keeps_its_keys() -> None:
    slot = OneSlot(lossless=False, merge=merge_keys)
    assert slot.put(_tracked(0, ["c"])) == 0
    assert slot.put(_tracked(1, [])) == 1
    assert slot.put(_tracked(2, ["n"])) == 1
    got = slot.get(timeout=0)
    assert got.index == 2 and got.keys == ["c", "n"], "the model-stage keys of dropped frames are applied in order"
    assert slot.get(timeout=0) is None


def test_lossless_hand_off_waits_for_room_and_close_wakes_the_reader() -> None:
    slot = OneSlot(lossless=True)
    slot.put(_tracked(0, []))
    done = threading.Event()

    def second() -> None:
        slot.put(_tracked(1, []))
        done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not done.wait(0.2), "a lossless put waits while the slot is full"
    assert slot.get(timeout=1).index == 0
    assert done.wait(5)
    assert slot.get(timeout=1).index == 1
    thread.join()
    slot.close()
    assert slot.get(timeout=5) is None


def test_stall_rule_tells_a_slow_model_from_a_silent_camera() -> None:
    """25 fps input. A model at 2 fps with the camera delivering, or with a frame still in flight: no repeats. The
    camera silent: repeats at the output rate, said as such. A lost camera: repeats at once. A file read losslessly:
    never."""
    fps = 25.0
    slow = StallRule(fps=fps, live=True)
    repeats = 0
    for step in range(200):  # 8 s in 40 ms steps; an output every 0.5 s
        now = step * 0.04
        slow.input_seen(now)
        if step % 12 == 0:
            slow.output_sent(now)
        elif slow.decide(now, camera_lost=False) is not None:
            repeats += 1
    assert repeats == 0, "a slow model is not a stall"

    silent = StallRule(fps=fps, live=True)
    for step in range(10):
        silent.input_seen(step * 0.04)
        silent.output_sent(step * 0.04)
    assert silent.decide(0.4, camera_lost=False) is None, "one frame late is not silence"
    decision = silent.decide(0.36 + silent.silence_limit() + 0.01, camera_lost=False)
    assert decision is not None and decision.status == CAMERA_SILENT
    lost = silent.decide(0.41, camera_lost=True)
    assert lost is not None and lost.status == CAMERA_LOST
    silent.repeated(0.41)
    assert silent.decide(0.42, camera_lost=True) is None, "repeats come at the output rate, not faster"

    slow_then_silent = StallRule(fps=fps, live=True)
    for step in range(5):  # outputs every 0.5 s: silence needs 3 such intervals without output
        slow_then_silent.input_seen(step * 0.5)
        slow_then_silent.output_sent(step * 0.5)
    assert slow_then_silent.decide(2.0 + 1.0, camera_lost=False) is None
    assert slow_then_silent.decide(2.0 + 1.6, camera_lost=False) is not None

    in_flight = StallRule(fps=fps, live=True)
    in_flight.output_sent(0.0)
    assert in_flight.decide(5.0, camera_lost=False, in_flight=True) is None, "the model is still on a frame"
    assert in_flight.decide(5.0, camera_lost=False, in_flight=False) is not None

    file = StallRule(fps=fps, live=False)
    file.output_sent(0.0)
    assert file.decide(10.0, camera_lost=False) is None


class FlakyDetector:
    """Wraps the face detector; ``detect`` raises on the calls listed, or always."""

    def __init__(self, inner: FaceDetector, fail_on: set[int] | None = None, always: bool = False) -> None:
        self.inner, self.fail_on, self.always, self.calls = inner, fail_on or set(), always, 0

    def detect(self, image):
        self.calls += 1
        if self.always or self.calls in self.fail_on:
            raise RuntimeError("simulated failure in the face tracker")
        return self.inner.detect(image)


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_tracking_failure_serves_the_held_frame_and_counts_toward_the_stop(detector, pipelining) -> None:
    backend = tiny_backend()
    avatars = prepare_avatars([("a", portrait())], backend.size, detector)
    sink = RecordingSink()
    flaky = FlakyDetector(detector, fail_on={20, 21})
    LivePipeline(ListSource(moving_frames(30, still=30)), backend, avatars, [sink],
                 options=PipelineOptions(calibration=CalibrationOptions(steady_seconds=0.2),
                                         pipelining=pipelining), detector=flaky).run()
    assert len(sink.frames) == 30
    failed = [info.index for info in sink.infos if info.status == ["error"]]
    assert failed == [19, 20]
    assert np.array_equal(sink.frames[19], sink.frames[18]) and np.array_equal(sink.frames[20], sink.frames[18])

    stopping = LivePipeline(ListSource(moving_frames(60, still=60)), backend, avatars, [RecordingSink()],
                            options=PipelineOptions(pipelining=pipelining),
                            detector=FlakyDetector(detector, always=True))
    with pytest.raises(UserError, match=f"processing failed {MAX_CONSECUTIVE_ERRORS} frames in a row"):
        stopping.run()


class LostDeviceBackend(WrappedBackend):
    """Wraps the tiny FOMM backend; ``render`` raises the engines' DeviceError from the third call on, as a GPU that
    fell off the bus would."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.renders = 0

    def render(self, motion, *, detail=False):
        from fomm_live.models.engines import DeviceError

        self.renders += 1
        if self.renders >= 3:
            raise DeviceError("the GPU (cuda:0) was lost while decoding a frame (stand-in failure)")
        return self.inner.render(motion, detail=detail)


@pytest.mark.parametrize("pipelining", [False, True])
def test_a_device_failure_stops_the_run_at_once_with_its_own_line(detector, pipelining) -> None:
    """A DeviceError would fail the same way on every frame: the run stops on the first one, not after 25 retries,
    and the user sees the engine's one-line message."""
    backend = LostDeviceBackend(tiny_backend())
    avatars = prepare_avatars([("a", portrait())], backend.size, detector)
    pipeline = LivePipeline(ListSource(moving_frames(60, still=60)), backend, avatars, [RecordingSink()],
                            options=PipelineOptions(calibration=CalibrationOptions(steady_seconds=0.2),
                                                    pipelining=pipelining), detector=detector)
    with pytest.raises(UserError, match=r"^the GPU \(cuda:0\) was lost while decoding a frame"):
        pipeline.run()
    assert backend.renders == 3


@pytest.mark.parametrize(("size", "width", "height"), [(256, 640, 480), (256, 320, 240), (256, 256, 256),
                                                       (64, 100, 37), (31, 45, 80), (256, 1280, 720),
                                                       (256, 128, 128), (17, 17, 90)])
def test_device_compose_matches_opencv_within_one_level(size: int, width: int, height: int) -> None:
    """The PyTorch fit (run here on the CPU, on CUDA in use) against ``fit_to_output``: uint8 and float inputs."""
    rng = np.random.default_rng(size + width)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    prediction = torch.from_numpy(rng.random((1, 3, size, size), dtype=np.float32))
    for name, reference, got in (
            ("uint8", fit_to_output(image, width, height),
             fit_to_output_tensor(torch.from_numpy(image).permute(2, 0, 1), width, height)),
            ("float", fit_to_output(tensor_to_image(prediction), width, height),
             fit_to_output_tensor(prediction, width, height))):
        got = got.numpy()
        assert got.shape == reference.shape == (height, width, 3) and got.dtype == np.uint8, name
        diff = np.abs(got.astype(int) - reference.astype(int))
        if diff.max() > 1:
            where = tuple(int(v[0]) for v in np.nonzero(diff > 1))
            pytest.fail(f"{name}: first mismatch beyond one level at {where}: {got[where]} != {reference[where]}")


def test_the_device_compose_path_through_the_loop_matches_the_host_path(detector) -> None:
    """The device fit (``composes_on_device``, forced on here on the CPU) gives the host path's frames within one
    level."""
    frames = moving_frames(24, still=24)
    outputs = {}
    for on_device in (False, True):
        backend = tiny_backend()
        backend.composes_on_device = on_device
        _, sink = _run(frames, detector, backend=backend, steady_seconds=0.2, output_size=(320, 240))
        assert any(info.animated for info in sink.infos)
        outputs[on_device] = sink.frames
    for a, b in zip(outputs[False], outputs[True], strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_stats_give_throughput_beside_latency() -> None:
    stats = PipelineStats()
    assert stats.achieved_fps() is None and stats.output_fps() is None
    for i in range(11):
        stats.count("frames_out")
        stats.mark_output(100.0 + i * 0.05)  # 20 fps
        stats.add_end_to_end(120.0)
    summary = stats.summary()
    assert summary["achieved_fps"] == pytest.approx(20.0)
    assert stats.output_fps() == pytest.approx(20.0)
    assert summary["end_to_end_ms"]["p50"] == 120.0
    assert summary["frames_dropped_before_model"] == 0


def test_pipelined_realtime_run_drops_stale_tracked_frames_at_the_hand_off(detector) -> None:
    """Paced input with a model slower than the input: the tracking stage keeps up, and the model stage takes the
    newest tracked frame (the ones it replaced are counted), so nothing queues up and nothing is lost from the
    counts. Without in-betweens (``tests/test_keyframes.py`` has them), every animated frame is a render."""
    backend = SlowBackend(tiny_backend().animator, delay=0.12)
    pipeline, sink = _run(moving_frames(40, still=5), detector, backend=backend, realtime=True, steady_seconds=0.1,
                          pipelining=True, inbetweens=False)
    summary = pipeline.stats.summary()
    assert summary["frames_out"] + summary["frames_dropped"] == summary["frames_in"] == 40
    assert summary["frames_dropped_before_model"] > 0
    indices = [info.index for info in sink.infos]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    # Each animated output is a render of its own, one after another, and each render sleeps 0.12 s: the achieved
    # rate can be no more than one frame per 0.12 s between the first output and the last, whatever the load.
    animated = sum(info.animated for info in sink.infos)
    assert animated >= 3, "the run calibrates and animates"
    ceiling = (len(sink.infos) - 1) / (backend.delay * (animated - 1))
    assert summary["achieved_fps"] is not None and 0 < summary["achieved_fps"] <= ceiling * 1.001, (summary, ceiling)


class ThreadNoting(WrappedBackend):
    """Wraps a backend and notes the thread each ``detect`` and ``render`` runs on."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.threads: dict[str, set[str]] = {"detect": set(), "render": set()}

    def detect(self, image):
        self.threads["detect"].add(threading.current_thread().name)
        return self.inner.detect(image)

    def render(self, motion, *, detail=False):
        self.threads["render"].add(threading.current_thread().name)
        return self.inner.render(motion, detail=detail)


def test_a_backend_that_detects_beside_render_has_its_motion_found_on_the_tracking_thread(detector) -> None:
    """The landmark backend declares ``detect_beside_render``: pipelined, its face mesh runs on the tracking thread
    (beside the render of the frame before) and only ``render`` on the model thread; FOMM's keypoint detector stays
    on the model thread. The frames are those of the one-thread loop, bit for bit (the face mesh in image mode gives
    the same answer for the same crop)."""
    from fomm_live.live.landmarks import LandmarkBackend

    frames = moving_frames(30, still=8)
    sinks = {}
    with LandmarkBackend(size=128) as landmarks:
        for pipelining in (True, False):
            noting = ThreadNoting(landmarks)
            landmarks.reset_calibration()
            _, sinks[pipelining] = _run(frames, detector, backend=noting, pipelining=pipelining, steady_seconds=0.1)
            if pipelining:
                assert noting.threads == {"detect": {"tracking"}, "render": {"model"}}, noting.threads
    assert sum(info.animated for info in sinks[True].infos) >= 10, "the run calibrates and animates"
    for i, (a, b) in enumerate(zip(sinks[True].frames, sinks[False].frames, strict=True)):
        assert np.array_equal(a, b), f"frame {i} differs between the pipelined and the one-thread loop"
    fomm = ThreadNoting(tiny_backend())
    _run(moving_frames(12, still=4), detector, backend=fomm, pipelining=True, steady_seconds=0.1)
    assert fomm.threads == {"detect": {"model"}, "render": {"model"}}, fomm.threads
