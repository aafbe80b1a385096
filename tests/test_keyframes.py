"""Keyframes and in-betweens in the live loop (``live.loop.keyframes``): with a generator slower than the camera, the
frames that arrive while it works get in-betweens (counted), keyframes still come, every camera frame gives one
output in order; ``inbetweens=False`` (``--no-inbetweens``) is today's loop. The in-between renderer is a stand-in
here (``helpers.inbetweens``), so that what is tested is the loop, not the warp."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers.clips import moving_frames, portrait
from helpers.inbetweens import StandInInbetweener
from helpers.options import pipeline_options
from helpers.standins import ListSource, SlowBackend, tiny_backend

from fomm_live.live.backends import FommBackend, Rendered
from fomm_live.live.capture.sources import CapturedFrame
from fomm_live.live.compose import add_label
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.keyframes import KeyframeStage
from fomm_live.live.loop.pipeline import LivePipeline, prepare_avatars
from fomm_live.live.loop.stages import ModelStage
from fomm_live.live.output.sinks import RecordingSink


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as det:
        yield det


class SlowCameraClip(ListSource):
    """Frames in memory paced at 10 fps: on the loaded shared test CPU the face tracker alone can take 40 ms, so a
    25 fps pace would leave the loop too little room to calibrate within a short clip."""

    fps = 10.0


def _run(frames, detector, *, backend, inbetweener=None, **options):
    sink = RecordingSink()
    source = SlowCameraClip(frames) if options.get("realtime") else ListSource(frames)
    pipeline = LivePipeline(source, backend, prepare_avatars([("a", portrait())], backend.size, detector),
                            [sink], options=pipeline_options(**options), detector=detector, inbetweener=inbetweener)
    summary = pipeline.run()
    return pipeline, sink, summary


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-thread", "pipelined"])
def test_slow_generator_on_a_paced_input_gives_in_betweens_for_the_frames_it_cannot_render(detector,
                                                                                            pipelining: bool) -> None:
    """A generator that takes 0.35 s a frame on a 10 fps paced input: the frames that come while it works get
    in-betweens from the newest keyframe (the stand-in's marks say which), keyframes still come, every output is in
    capture order, and the stats count what the sink got."""
    inbetweener = StandInInbetweener()
    backend = SlowBackend(tiny_backend().animator, delay=0.35)
    pipeline, sink, summary = _run(moving_frames(50, still=6), detector, backend=backend, inbetweener=inbetweener,
                                   realtime=True, steady_seconds=0.1, framing="photo", output_size=(320, 240),
                                   pipelining=pipelining)
    assert isinstance(pipeline.model, KeyframeStage) and pipeline.pipelining == pipelining
    indices = [info.index for info in sink.infos]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert summary["frames_out"] + summary["frames_dropped"] == summary["frames_in"] == 50
    inbetweens = [i for i, info in enumerate(sink.infos) if info.inbetween]
    shown_keys = [i for i, info in enumerate(sink.infos) if info.animated and not info.inbetween]
    assert len(inbetweens) > 0 and all(sink.infos[i].animated for i in inbetweens)
    assert summary["inbetweens"] == len(inbetweens) == summary["stages_ms"]["inbetween"]["count"]
    assert summary["keyframes_shown"] == len(shown_keys)
    assert summary["frames_animated"] == len(inbetweens) + len(shown_keys)
    # Keyframes kept coming while the in-betweens went out: each became the base of the in-betweens after it.
    # (The generator may have two more renders: the one finished when the input ended, which no frame came to take,
    # replaced by the offered one that started at once.)
    assert 3 <= summary["keyframes"] <= summary["stages_ms"]["generator"]["count"] <= summary["keyframes"] + 2
    print("".join("K" if info.animated and not info.inbetween else "i" if info.inbetween else "." for info in
                  sink.infos), summary["keyframes"], "keyframes")
    marks = [int(sink.frames[i][0, 0, 1]) for i in inbetweens]  # without the label: the frame's own corner
    assert marks == sorted(marks) and marks[-1] >= 2, marks
    # Each in-between was rendered with its own frame's face mesh (a 478-point mesh of the driving crop).
    assert len(inbetweener.rendered) == len(inbetweens)
    assert all(points.shape == (478, 3) for points in inbetweener.rendered)
    assert inbetweener.neutral is not None and inbetweener.neutral.shape == (478, 3)
    # Placement: photo framing's face square, where the paste-back puts the model's square.
    assert all(key[2] == pipeline.model.photo.framing.box for key in inbetweener.keyframes)
    assert summary["end_to_end_inbetween_ms"]["count"] == len(inbetweens)
    assert summary["stages_ms"]["face_mesh"]["count"] > 0


def test_no_inbetweens_is_todays_loop(detector) -> None:
    """``inbetweens=False`` on the same paced input: the plain model stage, no face mesh, no in-betweens, every
    animated frame a keyframe shown as it is."""
    backend = SlowBackend(tiny_backend().animator, delay=0.15)
    pipeline, sink, summary = _run(moving_frames(25, still=6), detector, backend=backend, realtime=True,
                                   steady_seconds=0.1, inbetweens=False)
    assert type(pipeline.model) is ModelStage and pipeline.tracking.face_mesh is None
    assert summary["inbetweens"] == 0 and not any(info.inbetween for info in sink.infos)
    assert summary["keyframes"] == summary["keyframes_shown"] == summary["frames_animated"] > 0
    assert summary["stages_ms"]["face_mesh"]["count"] == summary["stages_ms"]["inbetween"]["count"] == 0


def test_a_file_read_losslessly_is_rendered_frame_by_frame_as_before(detector) -> None:
    """Unpaced, every frame waits for the generator with or without in-betweens asked for: the same frames, bit for
    bit (in-betweens are for frames the generator cannot render in time; a file has time for all)."""
    frames = moving_frames(20, still=6)
    outputs = []
    for inbetweens in (True, False):
        pipeline, sink, summary = _run(frames, detector, backend=tiny_backend(), steady_seconds=0.1,
                                       inbetweens=inbetweens)
        assert type(pipeline.model) is ModelStage and summary["inbetweens"] == 0
        outputs.append(sink.frames)
    assert len(outputs[0]) == len(outputs[1]) == 20
    for a, b in zip(*outputs, strict=True):
        np.testing.assert_array_equal(a, b)


class GatedBackend(FommBackend):
    """The tiny FOMM backend whose ``render`` waits until the test opens its gate (a generator that takes as long as
    the test says), and gives its last frame again, marked ``held``, when ``away`` is set (a remote server away)."""

    def __init__(self, animator) -> None:
        super().__init__(animator)
        self.gate = threading.Event()
        self.started = threading.Event()
        self.away = False
        self.last = None

    def render(self, motion, *, detail=False):
        self.started.set()
        assert self.gate.wait(60), "the test never opened the gate"
        if self.away and self.last is not None:
            return Rendered(self.last.frame, field=self.last.field, held=True)
        self.last = super().render(motion, detail=detail)
        return self.last


class LiveFrames(ListSource):
    is_file = False  # a camera: keyframes and in-betweens are on


def _stage(detector, backend, inbetweener, frames, avatars=None):
    """The pipeline's model stage, driven frame by frame by the test: (step(i, keys) -> (output, info), the stage)."""
    pipeline = LivePipeline(LiveFrames(frames), backend,
                            prepare_avatars(avatars or [("a", portrait())], backend.size, detector), [RecordingSink()],
                            options=pipeline_options(calibrate_first=True, auto_calibrate=False),
                            detector=detector, inbetweener=inbetweener)
    waiting = {"next": False}
    pipeline.model.next_waiting = lambda: waiting["next"]

    def step(i: int, keys: tuple[str, ...] = ()):
        tracked = pipeline.tracking(CapturedFrame(frames[i], i, time.perf_counter(), i / 25), list(keys))
        assert tracked.landmarks is not None, "the face mesh finds the portrait"
        pipeline.model.begin(tracked)
        return pipeline.model(tracked)

    return step, pipeline.model, waiting


def _gated_stage(detector, count: int, avatars=None):
    """The model stage over ``count`` moving frames with a gated generator (open at first) and the stand-in
    in-between renderer: (step, stage, waiting, backend, inbetweener)."""
    backend = GatedBackend(tiny_backend().animator)
    inbetweener = StandInInbetweener()
    step, stage, waiting = _stage(detector, backend, inbetweener, moving_frames(count, still=0), avatars=avatars)
    backend.gate.set()
    return step, stage, waiting, backend, inbetweener


def test_keyframe_in_time_goes_out_as_it_is_and_a_late_one_is_the_base_of_the_next_in_betweens(detector) -> None:
    """Frame by frame, the generator's gate held by the test:

    0: the neutral pose (the first frame): a keyframe, shown, and the in-betweens' first base;
    1: the generator finishes before the next frame comes: frame 1's own keyframe goes out, unmoved, exactly the
       generator's frame (the keyframe at its own time equals the generator's frame);
    2: the next frame comes first: an in-between from keyframe 1 (the stand-in marks it 2: the second keyframe);
    3: the generator is still busy: an in-between at once, still from keyframe 1;
    4: the generator has finished frame 2's keyframe meanwhile: it is taken, and frame 4 is its in-between."""
    step, stage, waiting, backend, inbetweener = _gated_stage(detector, 6)
    _, info = step(0)
    assert info.animated and not info.inbetween and inbetweener.neutral is not None
    assert len(inbetweener.keyframes) == 1
    out, info = step(1)
    assert info.animated and not info.inbetween and len(inbetweener.keyframes) == 2
    np.testing.assert_array_equal(stage.held_frame(), inbetweener.keyframes[-1][0])
    backend.gate.clear()
    backend.started.clear()
    waiting["next"] = True
    out, info = step(2)  # frame 2 goes to the generator, which waits at the gate
    assert info.inbetween and info.animated and out[0, 0, 1] == 2
    assert backend.started.wait(30)
    out, info = step(3)
    assert info.inbetween and out[0, 0, 1] == 2 and len(inbetweener.keyframes) == 2
    backend.gate.set()
    assert stage.worker.wait(30)
    backend.gate.clear()  # frame 4's keyframe waits at the gate: frame 4 goes out as an in-between
    out, info = step(4)  # takes frame 2's keyframe, then sends frame 4 to the generator
    assert info.inbetween and out[0, 0, 1] == 3 and len(inbetweener.keyframes) == 3
    stage.close()


def test_a_frame_offered_while_the_generator_is_busy_starts_the_moment_it_finishes(detector) -> None:
    """Frames that come while the generator works are offered as its next job, the newest winning: when the keyframe
    in flight finishes, the newest offer starts at once, before the stage has seen another camera frame (waiting for
    the next frame idled the generator about half a camera interval per keyframe); the stage then takes the newest
    finished keyframe as the in-betweens' base."""
    step, stage, waiting, backend, inbetweener = _gated_stage(detector, 8)
    step(0)
    step(1)
    backend.gate.clear()
    backend.started.clear()
    waiting["next"] = True
    out, info = step(2)  # frame 2 goes to the generator, which waits at the gate
    assert info.inbetween and backend.started.wait(30)
    step(3)  # offered
    out, info = step(4)  # offered instead of frame 3
    assert info.inbetween and len(inbetweener.keyframes) == 2
    backend.started.clear()
    backend.gate.set()  # frame 2's keyframe finishes; frame 4's starts without another step of the stage
    assert backend.started.wait(30), "the offered frame did not start when the generator became free"
    assert stage.worker.wait(30)
    key = stage.worker.take()  # the newest finished keyframe: frame 4's (frame 2's, not taken in time, replaced)
    assert key is not None and key.tracked.index == 4
    assert stage.worker.take() is None and not stage.worker.busy  # frame 3 never went to the generator
    stage.close()


def test_a_held_frame_from_a_server_away_is_not_a_new_keyframe(detector) -> None:
    """A remote backend whose server is away gives its last frame again (``Rendered.held``): the in-betweens go on
    from the newest real keyframe, which is not replaced by the stale face paired with a newer face mesh."""
    step, stage, waiting, backend, inbetweener = _gated_stage(detector, 6)
    step(0)
    step(1)
    assert len(inbetweener.keyframes) == 2
    backend.away = True
    for i in (2, 3, 4):
        out, info = step(i)  # each one's render comes back held: an in-between from keyframe 2
        assert info.inbetween and out[0, 0, 1] == 2, i
    assert len(inbetweener.keyframes) == 2
    stage.close()


def test_strengths_freeze_and_avatar_switching_apply_to_in_betweens(detector) -> None:
    """The head and expression strength keys reach the in-between renderer; freeze holds the picture (no
    in-between, no new keyframe); an avatar switch gives the renderer the new avatar's square and the next frames
    are in-betweens of the new avatar's keyframes; the label is on every in-between."""
    avatars = [("a", portrait()), ("b", portrait()[:, ::-1].copy())]
    step, stage, waiting, backend, inbetweener = _gated_stage(detector, 10, avatars=avatars)
    step(0)
    waiting["next"] = True
    step(1, ("[", "="))
    assert inbetweener.strengths == pytest.approx((0.9, 1.1)) and backend.strengths == pytest.approx((0.9, 1.1))
    assert stage.worker.wait(30)
    backend.gate.clear()  # frame 2's keyframe waits at the gate: frame 2 goes out as an in-between
    out, info = step(2)
    assert info.inbetween and stage.label
    np.testing.assert_array_equal(out, add_label(stage.held_frame()))  # the in-between, labelled
    assert not np.array_equal(out, stage.held_frame())
    held = stage.held_frame().copy()
    backend.gate.set()  # the freeze key waits for the keyframe in flight
    out, info = step(3, ("f",))
    assert not info.animated and not info.inbetween and "frozen (f to go on)" in info.status
    np.testing.assert_array_equal(stage.held_frame(), held)
    out, info = step(4, ("f", "2"))  # unfrozen, second avatar
    assert len(inbetweener.sources) == 2
    np.testing.assert_array_equal(inbetweener.sources[-1], stage.avatars[1].crop)
    assert stage.worker.wait(30)
    out, info = step(5)
    assert info.animated and len(inbetweener.keyframes) >= 1  # keyframes of the new avatar (the list was cleared)
    stage.close()


def test_a_crop_change_takes_the_in_betweens_neutral_pose_and_keyframe_again(detector) -> None:
    """Zooming the crop (w) changes what the neutral pose and the keyframes were measured on: the in-between renderer
    forgets both and takes them again from the frame the model recalibrates on (here at once: calibrate-first)."""
    step, stage, waiting, backend, inbetweener = _gated_stage(detector, 6)
    step(0)
    step(1)
    first_neutral = inbetweener.neutral.copy()
    assert len(inbetweener.keyframes) == 2
    out, info = step(2, ("w",))
    assert any(what == "crop changed: recalibrating" for _, what in stage.events)
    assert inbetweener.neutral is not None and not np.array_equal(inbetweener.neutral, first_neutral)
    assert len(inbetweener.keyframes) == 1 and info.animated and not info.inbetween  # the recalibration frame's
    stage.close()


def test_the_remote_client_declares_in_betweens() -> None:
    """The client's frames are keyframes of the loop (its in-betweens are made locally, not on the server)."""
    from fomm_live.live.remote.client import RemoteBackend

    assert RemoteBackend.inbetweens and FommBackend.inbetweens
    from fomm_live.live.landmarks import LandmarkBackend

    assert not LandmarkBackend.inbetweens  # the landmark backend is unchanged


@pytest.mark.parametrize(("command", "flag", "wanted"), [("run", [], True), ("run", ["--no-inbetweens"], False),
                                                         ("demo", [], True), ("demo", ["--no-inbetweens"], False)])
def test_no_inbetweens_flag_reaches_the_loop_options(command: str, flag: list[str], wanted: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` and `demo` hand `--no-inbetweens` to the loop's options (in-betweens are on by default)."""
    import fomm_live.live.cli.demo as demo_cli
    import fomm_live.live.cli.run as run_cli
    from fomm_live.live.cli import main

    seen = {}

    def fake_run_live(sources, *, loop, **kwargs):
        seen["inbetweens"] = loop.inbetweens
        return 0

    monkeypatch.setattr(run_cli, "run_live", fake_run_live)
    monkeypatch.setattr(demo_cli, "run_live", fake_run_live)
    monkeypatch.setattr("fomm_live.live.democlip.demo_clip_path", lambda: __import__("pathlib").Path("clip.mp4"))
    assert main([command, *flag, "--no-preview"]) == 0
    assert seen == {"inbetweens": wanted}


def test_a_keyframe_that_fails_on_the_generators_thread_is_raised_in_the_loop(detector) -> None:
    """An error inside the generator's thread is not lost: it comes out of the model stage (with the frame that waited
    for it, or the next one), where the loop's failure policy counts it and serves the held frame."""
    step, stage, waiting, backend, inbetweener = _gated_stage(detector, 6)
    step(0)

    def broken(motion, *, detail=False):
        raise RuntimeError("the generator broke (stand-in failure)")

    backend.render = broken
    waiting["next"] = True
    with pytest.raises(RuntimeError, match="stand-in failure"):
        step(1)  # sent to the generator's thread, which fails: raised here if it fails before frame 1 goes out,
        assert stage.worker.wait(30)
        step(2)  # else with the next frame
    stage.close()


def test_the_loop_with_the_real_in_between_renderer(detector) -> None:
    """No stand-in: the pipeline opens the in-between renderer and the face mesh itself, the in-betweens come out
    at the output size, different from the keyframe before them where the face moved, and what it opened is closed
    at the end."""
    backend = SlowBackend(tiny_backend().animator, delay=0.35)
    pipeline, sink, summary = _run(moving_frames(40, still=6), detector, backend=backend, realtime=True,
                                   steady_seconds=0.1, framing="photo", output_size=(320, 240))
    inbetweens = [i for i, info in enumerate(sink.infos) if info.inbetween]
    assert len(inbetweens) >= 3 and summary["inbetweens"] == len(inbetweens)
    assert all(sink.frames[i].shape == (240, 320, 3) for i in inbetweens)
    moved = [i for i in inbetweens if not np.array_equal(sink.frames[i], sink.frames[i - 1])]
    assert moved, "the swaying face moved some in-betweens"
    assert len(pipeline._owned) == 2  # the renderer and the face mesh it opened
    assert pipeline.model.inbetweener.crossfade == 2
