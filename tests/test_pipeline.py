"""The live loop end to end: a real video file through the real face tracker, the tiny golden FOMM model and a
recording sink: frame counts, calibration (automatic and by hotkey), avatar switching, no-face segments, shutdown,
pacing, output size, stats, jitter."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import golden_dir
from helpers.clips import moving_frames, portrait, still_noisy_frames, write_clip
from helpers.options import pipeline_options
from helpers.standins import FlakyCamera, ListSource, SlowBackend, tiny_backend

from fomm_live.live.capture.sources import OpenCVSource
from fomm_live.live.cli import main
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
from fomm_live.live.options import PacingOptions
from fomm_live.live.output.recording import mp4_boxes
from fomm_live.live.output.sinks import RecordingSink
from fomm_live.live.stats import STAGES


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """60 frames: 20 still, then a head sway; frames 40-44 hold no face."""
    return write_clip(tmp_path_factory.mktemp("clips") / "move.mp4", moving_frames(60, still=20, blank=(40, 45)))


def run_pipeline(source, detector, *, avatars=None, backend=None, **options) -> tuple[LivePipeline, RecordingSink]:
    backend = backend or tiny_backend()
    images = avatars or [("astronaut", portrait())]
    sink = RecordingSink()
    pipeline = LivePipeline(source, backend, prepare_avatars(images, backend.size, detector), [sink],
                            options=pipeline_options(**options), detector=detector)
    pipeline.run()
    return pipeline, sink


def test_every_frame_of_a_file_comes_out_with_calibration_and_no_face_segments(clip: Path, detector) -> None:
    pipeline, sink = run_pipeline(OpenCVSource(str(clip)), detector)
    summary = pipeline.stats.summary()
    assert summary["frames_in"] == summary["frames_out"] == len(sink.frames) == 60
    assert summary["frames_dropped"] == 0
    assert sink.closed >= 1
    assert [info.index for info in sink.infos] == list(range(60))
    # Automatic calibration once the face is still for 0.5 s (13 frames at 25 fps), during the still start.
    calibrations = [i for i, what in pipeline.events if what == "calibrated"]
    assert len(calibrations) == 1 and 10 <= calibrations[0] < 20, pipeline.events
    # Before it: the source photo, unanimated; after it: animated frames.
    assert not sink.infos[0].animated and sink.infos[calibrations[0] + 1].animated
    assert np.array_equal(sink.frames[0], sink.frames[1])
    # No face in 40-44: reported, and the last good frame is repeated.
    assert [i.index for i in sink.infos if not i.face] == [40, 41, 42, 43, 44]
    assert all("no face in view" in sink.infos[i].status for i in range(40, 45))
    assert all(np.array_equal(sink.frames[39], sink.frames[i]) for i in range(40, 45))
    assert sink.infos[46].face and sink.infos[46].animated
    assert summary["frames_no_face"] == 5
    assert sink.frames[0].shape == (480, 640, 3)


def test_recalibrate_hotkey_and_avatar_switching(detector) -> None:
    flipped = portrait()[:, ::-1].copy()
    frames = moving_frames(60, still=16, sway_until=35)  # still, sway from 16 to 35, still again
    pipeline, sink = run_pipeline(ListSource(frames), detector, avatars=[("a", portrait()), ("b", flipped)],
                                  scripted_keys={5: ["2"], 25: ["c"], 50: ["n"]})
    events = pipeline.events
    assert (5, "avatar 1") in events and (50, "avatar 0") in events
    assert (25, "recalibrate requested") in events
    calibrations = [i for i, what in events if what == "calibrated"]
    # Calibrated automatically in the still start, then again once still after the hotkey: not during the sway.
    assert len(calibrations) == 2 and calibrations[0] < 16 and calibrations[1] > 35, events
    # Switching avatars changes the picture: the flipped avatar's frames differ from the first one's.
    assert np.abs(sink.frames[4].astype(int) - sink.frames[6].astype(int)).mean() > 5


def test_quit_key_stops_cleanly_and_the_recording_is_playable(clip: Path, tmp_path: Path) -> None:
    av = pytest.importorskip("av", reason="PyAV reads the recording back")
    out = tmp_path / "live.mp4"
    stats = tmp_path / "stats.json"
    folder = golden_dir("tiny")
    code = main(["run", "--camera", str(clip), "--checkpoint", str(folder / "checkpoint.pth.tar"),
                 "--config", str(folder / "config.yaml"), "--device", "cpu", "--output", str(out), "--no-preview",
                 "--output-size", "320x240", "--max-frames", "30", "--stats-json", str(stats)])
    assert code == 0
    with av.open(str(out)) as container:
        assert "synthetic" in container.metadata.get("comment", "").lower()
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 30 and frames[0].shape == (240, 320, 3)
    data = json.loads(stats.read_text())
    assert data["frames_in"] == data["frames_out"] == 30
    for stage in STAGES:
        figures = data["stages_ms"][stage]
        if stage in ("face_mesh", "inbetween"):  # a file read losslessly: the generator renders every frame
            assert figures["count"] == 0 and data["inbetweens"] == 0
            continue
        assert figures["count"] > 0, stage
        assert 0 <= figures["p50"] <= figures["p95"] <= figures["p99"], (stage, figures)
    assert data["end_to_end_ms"]["p50"] > 0


def test_scripted_quit_ends_the_run_early(clip: Path, detector) -> None:
    """q before frame 10 of the 60: the frames before it come out in order, none after it, capture stops soon after
    (a pipelined loop may have read a few frames ahead) and the outputs are closed once."""
    pipeline, sink = run_pipeline(OpenCVSource(str(clip)), detector, scripted_keys={10: ["q"]})
    indices = [info.index for info in sink.infos]
    assert indices and indices == list(range(len(indices))), indices
    assert indices[-1] <= 10, "no frame after the quit is processed"
    assert pipeline.stats.summary()["frames_in"] < 30, "capture stopped at the quit, not at the end of the file"
    assert sink.closed == 1


def test_realtime_pacing_drops_stale_frames_and_counts_them(detector) -> None:
    frames = moving_frames(40, still=5)
    backend = SlowBackend(tiny_backend().animator, delay=0.12)  # ~8 fps against a 25 fps input
    pipeline, sink = run_pipeline(ListSource(frames), detector, backend=backend, realtime=True, steady_seconds=0.1)
    summary = pipeline.stats.summary()
    assert summary["frames_in"] == 40
    assert summary["frames_dropped"] > 0
    assert summary["frames_out"] + summary["frames_dropped"] == summary["frames_in"]
    indices = [info.index for info in sink.infos]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)


def test_loop_repeats_a_file(detector) -> None:
    pipeline, sink = run_pipeline(ListSource(moving_frames(8, still=8)), detector, loop=True, max_frames=20)
    assert len(sink.frames) == 20


def _box_motion(pipeline_boxes: list) -> float:
    boxes = np.array(pipeline_boxes)
    return float(np.abs(np.diff(boxes, axis=0)).sum(axis=1).mean())


def test_smoothing_cuts_jitter_on_a_still_noisy_face(detector) -> None:
    """On a still face with camera noise, the crop box's and the output's frame-to-frame change with smoothing are at
    most a third of what they are without."""
    frames = still_noisy_frames(45, sigma=5.0)
    results = {}
    for smoothing in (False, True):
        pipeline, sink = run_pipeline(ListSource(frames), detector, smoothing=smoothing, steady_seconds=0.2)
        boxes = [info.crop_box for info in sink.infos]  # the crop boxes the pipeline itself used
        assert len(boxes) == len(frames) and all(box is not None for box in boxes)
        animated = [f.astype(np.float32) for f, info in zip(sink.frames, sink.infos, strict=True) if info.animated]
        assert len(animated) > 30
        change = float(np.mean([np.abs(b - a).mean() for a, b in zip(animated[5:], animated[6:], strict=False)]))
        results[smoothing] = (_box_motion(boxes[10:]), change)
    (box_raw, out_raw), (box_smooth, out_smooth) = results[False], results[True]
    assert box_raw > 0.2, f"the raw detections should jitter on noisy frames ({box_raw:.3f} px/frame)"
    assert box_smooth <= box_raw / 3, (box_smooth, box_raw)
    assert out_smooth <= out_raw / 3, (out_smooth, out_raw)


def test_no_output_at_all_is_one_clear_error(clip: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    folder = golden_dir("tiny")
    code = main(["run", "--camera", str(clip), "--checkpoint", str(folder / "checkpoint.pth.tar"),
                 "--config", str(folder / "config.yaml")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fomm-live: error: nothing to show or send frames to")
    assert "--output PATH.mp4" in err and "virtual camera" in err


class FakeWindow:
    """Stands in for the preview window: records what it shows and hands out scripted key presses."""

    name = "window"

    def __init__(self, keys_at: dict[int, list[str]]) -> None:
        self.keys_at = keys_at
        self.shown: list[np.ndarray] = []
        self.closed = False

    def send(self, frame: np.ndarray, info) -> None:
        self.shown.append(info.preview if info.preview is not None else frame)

    def poll_keys(self) -> list[str]:
        return self.keys_at.pop(len(self.shown), [])

    def closed_by_user(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def test_preview_window_keys_overlays_and_quit(detector) -> None:
    """Keys pressed in the preview reach the loop: h shows help, o puts the camera beside the avatar, q quits."""
    backend = tiny_backend()
    window = FakeWindow({5: ["h"], 10: ["o"], 20: ["q"]})
    sink = RecordingSink()
    pipeline = LivePipeline(ListSource(moving_frames(60, still=60)), backend,
                            prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=PipelineOptions(), detector=detector, window=window)
    pipeline.run()
    assert window.closed and sink.closed
    assert 20 <= len(window.shown) < 60, "q stops the run"
    plain, helped = window.shown[2], window.shown[-1]
    assert helped.shape[1] > plain.shape[1], "o shows the camera beside the avatar"
    assert pipeline.controls.show_help and pipeline.controls.show_camera
    # The outputs (virtual camera, recordings) never carry the preview's overlays.
    assert all(f.shape == (480, 640, 3) for f in sink.frames)


def test_best_frame_mode_picks_the_pose_closest_to_the_photo(detector) -> None:
    """Best-frame mode (no automatic calibration): the neutral is the frame whose face points match the source's
    best, measured independently here on the same frames."""
    from fomm_live.live.loop.calibration import BestFrameSelector

    frames = moving_frames(50, still=0, sway_until=40)
    pipeline, sink = run_pipeline(ListSource(frames), detector, auto_calibrate=False, best_frame=True)
    calibrations = [i for i, what in pipeline.events if what == "calibrated"]
    assert calibrations, "best-frame mode calibrates without the hotkey"
    selector = BestFrameSelector(pipeline.avatars[0].points)
    detections = [detector.detect(f) for f in frames]
    distances = [selector.distance(d[0].points) if d else np.inf for d in detections]
    chosen = distances[calibrations[-1]]
    assert chosen <= min(distances) + selector.min_gain, (calibrations, chosen, min(distances))
    assert chosen < float(np.median(distances)), "a sway frame far from the photo's pose is not the neutral"
    assert np.isfinite(chosen)


def test_lost_camera_reconnects_and_the_output_keeps_going(detector) -> None:
    """The camera dies after 10 frames and is gone for two reconnect tries: the outputs keep getting the last frame
    (a meeting does not freeze), the preview says so, and frames flow again once it is back."""
    frames = moving_frames(30, still=30)
    opened = []

    def reopen():
        if len(opened) < 2:  # the device is still gone for two tries
            opened.append("fail")
            raise OSError("no such device")
        opened.append("ok")
        return FlakyCamera(frames, fail_at=None)

    backend = tiny_backend()
    sink = RecordingSink()
    pipeline = LivePipeline(FlakyCamera(frames, fail_at=10), backend,
                            prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                            options=PipelineOptions(pacing=PacingOptions(max_frames=25, fps=25)), detector=detector,
                            reopen=reopen)
    pipeline.run()
    summary = pipeline.stats.summary()
    assert opened == ["fail", "fail", "ok"]
    assert summary["frames_in"] == 25
    assert summary["frames_out"] + summary["frames_dropped"] == 25
    repeats = [info for info in sink.infos if info.status and info.status[0] in ("camera lost: reconnecting",
                                                                                 "waiting for the camera")]
    assert repeats, "while the camera is gone the last frame is repeated, marked as such"
    assert summary["frames_repeated"] == len(repeats)
    assert sink.infos[-1].index == 24 and not sink.infos[-1].status
    assert not pipeline.camera_lost


def test_virtual_camera_missing_is_reported_and_the_recording_goes_on(clip: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The virtual camera cannot open: its reason is logged as a warning, and the recording still gets every frame."""
    import logging

    import fomm_live.live.output.sinks as sinks

    av = pytest.importorskip("av", reason="PyAV reads the recording back")
    reason = "no virtual camera (no loopback device); to get one, install v4l2loopback"

    def no_backend(**kwargs):
        raise sinks.SinkUnavailable(reason)

    monkeypatch.setattr(sinks, "VirtualCamSink", no_backend)
    folder = golden_dir("tiny")
    out = tmp_path / "rec.mp4"
    code = main(["run", "--camera", str(clip), "--checkpoint", str(folder / "checkpoint.pth.tar"), "--config",
                 str(folder / "config.yaml"), "--output", "virtualcam", "--output", str(out), "--no-preview",
                 "--max-frames", "10"])
    assert code == 0
    assert any(r.levelno >= logging.WARNING and reason in r.getMessage() for r in caplog.records), caplog.text
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_sigterm_finalises_the_recording(clip: Path, tmp_path: Path) -> None:
    """SIGTERM mid-run: exit without a traceback and a playable MP4 holding the frames so far."""
    import signal
    import subprocess
    import sys

    av = pytest.importorskip("av", reason="PyAV reads the recording back")
    folder = golden_dir("tiny")
    out = tmp_path / "term.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "fomm_live", "run", "--camera", str(clip), "--checkpoint",
                             str(folder / "checkpoint.pth.tar"), "--config", str(folder / "config.yaml"),
                             "--output", str(out), "--no-preview", "--loop", "--realtime"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Mid-run: once the first fragment (about a second of video) is in the file, at its name from the start.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and "mdat" in mp4_boxes(out)):
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it was stopped"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 5


def test_hotkeys_change_the_loop_state(detector) -> None:
    """Every hotkey of the help text does what it says, in the stage that owns what it changes."""
    from fomm_live.live.loop.hotkeys import HOTKEYS

    backend = tiny_backend()
    pipeline = LivePipeline(ListSource(moving_frames(2, still=2)), backend,
                            prepare_avatars([("a", portrait()), ("b", portrait()[:, ::-1].copy())], backend.size,
                                            detector), [RecordingSink()], detector=detector)
    keys = {k for key, _ in HOTKEYS for k in key.replace("/", " ").split()}
    assert {"c", "1-9", "n", "p", "b", "o", "w", "s", "arrows", "r", "m", "i", "h", "q", "Esc"} <= keys
    apply = pipeline.apply_key
    apply("2")
    assert pipeline.avatar_index == 1
    apply("n")
    assert pipeline.avatar_index == 0
    apply("p")
    assert pipeline.avatar_index == 1
    apply("9")  # no ninth avatar: nothing happens
    assert pipeline.avatar_index == 1
    pipeline.calibrator.cancel()
    apply("c")
    assert pipeline.calibrator.pending
    for key, attribute in (("b", "best_frame"), ("o", "show_camera"), ("m", "mirror"), ("i", "show_timing"),
                           ("h", "show_help")):
        before = getattr(pipeline.controls, attribute)
        apply(key)
        assert getattr(pipeline.controls, attribute) != before, key
    apply("w")
    assert pipeline.tracker.zoom > 1
    apply("s")
    apply("s")
    assert pipeline.tracker.zoom < 1
    apply("right")
    apply("up")
    assert pipeline.tracker.offset[0] > 0 and pipeline.tracker.offset[1] < 0
    apply("r")
    assert pipeline.tracker.zoom == 1 and not pipeline.tracker.offset.any()
    pipeline.post_key("esc")
    assert pipeline.stop_event.is_set()


def test_stats_memory_is_bounded_and_percentiles_cover_the_recent_window() -> None:
    """A live session runs for hours: stats keep a fixed window of samples, and `frames_*` still count them all."""
    from fomm_live.live.stats import PipelineStats, RingBuffer

    ring = RingBuffer(5)
    for v in range(12):
        ring.append(float(v))
    assert ring.values().tolist() == [7.0, 8.0, 9.0, 10.0, 11.0] and ring.total == 12 and ring.last() == 11.0
    stats = PipelineStats(window=100)
    for i in range(1000):
        stats.add("generator", 1000.0 if i < 900 else 10.0)  # an old slow stretch, then fast
        stats.add_end_to_end(5.0)
        stats.count("frames_out")
    summary = stats.summary()
    assert summary["frames_out"] == 1000
    assert summary["stages_ms"]["generator"]["count"] == 100
    assert summary["stages_ms"]["generator"]["p99"] == 10.0, "only the recent window is described"


def test_fast_rows_follow_a_blink_and_stay_steady_at_rest() -> None:
    """A backend's fast rows (eyelids) get through a two-frame step that the common filter holds back, and are still
    smoothed at rest. 25 fps, motion in normalised landmark units (a lid travels about 0.02 in a blink)."""
    from fomm_live.live.loop.smoothing import MotionSmoother

    rng = np.random.default_rng(0)
    rows, fast = 20, (3, 4)
    smoother = MotionSmoother(min_cutoff=1.0, beta=2.0, fast_rows=fast)
    rest = np.full((rows, 3), 0.5)
    out = [smoother(rest + rng.normal(0, 5e-4, rest.shape), i / 25) for i in range(50)]
    noisy = np.array([o for o in out[25:]])  # settled
    step = 0.02
    closed = rest.copy()
    closed[:, 1] += step  # every row moves down by a lid's travel
    reached = [smoother(closed, (50 + i) / 25) for i in range(2)][-1]
    fast_share = (reached[list(fast), 1] - 0.5).mean() / step
    slow_share = (np.delete(reached, list(fast), axis=0)[:, 1] - 0.5).mean() / step
    print(f"after two frames: fast rows {fast_share:.0%} of the step, others {slow_share:.0%}")
    assert fast_share > 0.75 and slow_share < 0.5
    jitter_fast = noisy[:, list(fast)].std(0).mean()
    assert jitter_fast < 0.8 * 5e-4, f"fast rows at rest: jitter {jitter_fast:.1e} of an input's 5e-4"
