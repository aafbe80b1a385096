"""The live controls: head and expression strength on hotkeys (and the starting values from the command line), the
smoothing cutoff, freeze, and the command line's checks; the live loop with the tiny FOMM model on a clip of the
bundled portrait swaying, every frame recorded."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.clips import moving_frames, portrait
from helpers.options import pipeline_options
from helpers.standins import ListSource, WrappedBackend, tiny_backend

from fomm_live.live.cli import main
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.hotkeys import Controls, apply_model_key
from fomm_live.live.loop.pipeline import LivePipeline, prepare_avatars
from fomm_live.live.loop.smoothing import MotionSmoother
from fomm_live.live.output.sinks import RecordingSink


class StrengthLog(WrappedBackend):
    """The tiny FOMM backend, logging every ``set_strengths`` call it passes on."""

    def __init__(self, backend) -> None:
        super().__init__(backend)
        self.calls: list[tuple[float, float]] = []

    def set_strengths(self, head: float, expression: float) -> None:
        self.calls.append((head, expression))
        self.inner.set_strengths(head, expression)


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as found:
        yield found


def run(detector, frames: list[np.ndarray], backend=None, **options) -> tuple[LivePipeline, RecordingSink]:
    backend = backend or tiny_backend()
    sink = RecordingSink()
    pipeline = LivePipeline(ListSource(frames), backend, prepare_avatars([("astronaut", portrait())], backend.size,
                                                                          detector),
                            [sink], options=pipeline_options(**options), detector=detector)
    pipeline.run()
    return pipeline, sink


def test_strength_keys_step_by_a_tenth_within_zero_and_two() -> None:
    controls = Controls()
    for _ in range(3):
        apply_model_key("[", controls)
    assert controls.head_strength == 0.7 and controls.changed_at is not None
    for _ in range(15):
        apply_model_key("=", controls)
    assert controls.expression_strength == 2.0, "past 2 it stays at 2"
    for _ in range(25):
        apply_model_key("-", controls)
    assert controls.expression_strength == 0.0
    apply_model_key("]", controls)
    assert controls.head_strength == 0.8
    assert apply_model_key("f", controls).kind == "freeze" and controls.frozen
    apply_model_key("t", controls)
    assert controls.show_sliders and controls.showing_changes()


def test_the_smoother_takes_a_new_cutoff_into_its_filters() -> None:
    smoother = MotionSmoother(min_cutoff=1.0, beta=0.5)
    smoother(np.zeros((10, 2)), 0.0)
    smoother.set_min_cutoff(0.3)
    assert smoother.min_cutoff == 0.3 and all(f.min_cutoff == 0.3 for f in smoother.filters.values())
    with pytest.raises(ValueError, match="> 0"):
        smoother.set_min_cutoff(0.0)


def test_hotkeys_and_the_start_values_reach_the_backend_and_change_the_face(detector) -> None:
    """Started at head 0.5, the backend gets (0.5, 1) before the first frame it renders; ``[`` at frame 30 makes it
    (0.4, 1) and ``-`` at 40 (0.4, 0.9), each from the frame it was pressed at; the faces then differ from a run at
    (1, 1) on the same swaying clip, and the run at (1, 1) never calls ``set_strengths``."""
    frames = moving_frames(50, still=20)
    logged = StrengthLog(tiny_backend())
    _, sink = run(detector, frames, backend=logged, steady_seconds=0.2, head_strength=0.5,
                  scripted_keys={30: ["["], 40: ["-"]})
    assert logged.calls == [(0.5, 1.0), (0.4, 1.0), (0.4, 0.9)]
    plain = StrengthLog(tiny_backend())
    _, reference = run(detector, frames, backend=plain, steady_seconds=0.2)
    assert plain.calls == []
    moved = [i for i in range(25, 50) if sink.infos[i].animated and reference.infos[i].animated]
    assert moved, "no animated frames to compare"
    assert max(np.abs(sink.frames[i].astype(int) - reference.frames[i].astype(int)).max() for i in moved) > 8


def test_freeze_repeats_the_same_frame_until_released(detector) -> None:
    """f at frame 30 holds frame 29's output on every frame to 39 (the face keeps swaying in the input, and no model
    work is done); f at 40 lets the face move again."""
    frames = moving_frames(55, still=20)
    pipeline, sink = run(detector, frames, steady_seconds=0.2, scripted_keys={30: ["f"], 40: ["f"]})
    assert [info.index for info in sink.infos] == list(range(55)), "every frame still goes out"
    held = sink.frames[29]
    for i in range(30, 40):
        assert np.array_equal(sink.frames[i], held), f"frame {i} is not the frozen frame"
        assert any("frozen" in line for line in sink.infos[i].status)
    assert not np.array_equal(sink.frames[45], held), "released, the face moves again"
    assert (30, "frozen") in pipeline.events and (40, "unfrozen") in pipeline.events
    generator_calls = pipeline.stats.summary()["stages_ms"]["generator"]["count"]
    animated = sum(1 for info in sink.infos if info.animated)
    assert generator_calls == animated and not any(sink.infos[i].animated for i in range(30, 40))


@pytest.mark.parametrize(("args", "message"), [
    (["--head-strength", "2.5"], "--head-strength 2.5: choose a strength from 0 to 2"),
    (["--expression-strength", "-0.1"], "--expression-strength -0.1: choose a strength from 0 to 2"),
    (["--expression-strength", "nan"], "--expression-strength nan: choose a strength from 0 to 2"),
    (["--absolute", "--head-strength", "0"], "--head-strength needs relative motion"),
])
def test_a_strength_out_of_range_is_refused_in_one_line(args: list[str], message: str, tmp_path,
                                                         capsys: pytest.CaptureFixture) -> None:
    code = main(["animate", "--backend", "landmarks", "--source", "photo.png", "--driving", "clip.mp4",
                 "--output", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err
