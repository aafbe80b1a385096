"""The figures that count what the call sees: animated frames (keyframes and in-betweens after the neutral pose),
their rates, apart from the output's rate (``achieved_fps``), in ``PipelineStats`` and in a real run of the loop."""

from __future__ import annotations

import pytest
from helpers.clips import moving_frames, portrait
from helpers.options import pipeline_options
from helpers.standins import ListSource, tiny_backend

from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.pipeline import LivePipeline, prepare_avatars
from fomm_live.live.output.sinks import RecordingSink
from fomm_live.live.stats import STAGES, PipelineStats


def _out(stats: PipelineStats, at: float, *, animated: bool = False, inbetween: bool = False) -> None:
    stats.count("frames_out")
    stats.mark_output(at, animated=animated, inbetween=inbetween)


def test_unanimated_frames_count_in_the_output_rate_but_not_in_the_animated_rate() -> None:
    """10 unanimated frames (before the neutral pose) at 20 fps, then 5 keyframes rendered every 0.1 s, each shown
    and followed by 3 in-betweens, at 40 fps: achieved_fps is the output's rate over all 30 frames, animated_fps only
    over the 20 animated ones, and keyframe_fps the generator's own rate."""
    stats = PipelineStats()
    t = 100.0
    for _ in range(10):
        _out(stats, t)
        t += 0.05
    for k in range(5):
        stats.mark_keyframe(t)
        for i in range(4):
            _out(stats, t, animated=True, inbetween=i > 0)
            if not (k == 4 and i == 3):
                t += 0.025
    summary = stats.summary()
    assert summary["frames_out"] == 30
    assert summary["frames_animated"] == 20
    assert summary["keyframes"] == summary["keyframes_shown"] == 5 and summary["inbetweens"] == 15
    assert summary["animated_fps"] == pytest.approx(40.0)
    assert summary["keyframe_fps"] == pytest.approx(10.0)
    assert summary["achieved_fps"] == pytest.approx(29 / (10 * 0.05 + 19 * 0.025), abs=0.01)
    assert "inbetween" in summary["stages_ms"]


def test_a_keyframe_shown_only_through_in_betweens_counts_as_rendered_not_as_shown() -> None:
    """A slow generator's keyframe that came after its camera frame had gone out: counted in ``keyframes`` (the
    generator's rate) but not in ``frames_animated``, which holds only what the call saw."""
    stats = PipelineStats()
    for i in range(6):
        _out(stats, 10.0 + i * 0.04, animated=True, inbetween=True)
    stats.mark_keyframe(10.1)
    stats.mark_keyframe(10.3)
    summary = stats.summary()
    assert summary["frames_animated"] == summary["inbetweens"] == 6
    assert summary["keyframes"] == 2 and summary["keyframes_shown"] == 0
    assert summary["keyframe_fps"] == pytest.approx(5.0)
    assert summary["animated_fps"] == pytest.approx(25.0)


def test_rates_are_none_before_two_frames_of_their_kind() -> None:
    stats = PipelineStats()
    _out(stats, 1.0)
    stats.mark_keyframe(1.1)
    _out(stats, 1.1, animated=True)
    summary = stats.summary()
    assert summary["frames_animated"] == summary["keyframes"] == 1 and summary["inbetweens"] == 0
    assert summary["animated_fps"] is None and summary["keyframe_fps"] is None
    assert summary["achieved_fps"] == pytest.approx(10.0)


def test_the_loop_counts_the_frames_it_animated_and_not_the_photo_before_calibration() -> None:
    """A file read losslessly through the tiny golden model: the frames before the neutral pose are the photo,
    unanimated, and are not counted as animated; every animated frame the sink got is a keyframe (no in-betweens
    without a camera to keep up with), and the stats' counts equal what the sink received."""
    backend = tiny_backend()
    sink = RecordingSink()
    with FaceDetector() as detector:
        pipeline = LivePipeline(ListSource(moving_frames(30, still=12)), backend,
                                prepare_avatars([("a", portrait())], backend.size, detector), [sink],
                                options=pipeline_options(steady_seconds=0.2), detector=detector)
        summary = pipeline.run()
    animated = [info for info in sink.infos if info.animated]
    assert 0 < len(animated) < summary["frames_out"] == 30, "some frames before calibration, then animated ones"
    assert summary["frames_animated"] == summary["keyframes"] == summary["keyframes_shown"] == len(animated)
    assert summary["inbetweens"] == 0 and not any(info.inbetween for info in sink.infos)
    assert summary["stages_ms"]["generator"]["count"] == len(animated)
    assert set(STAGES) == set(summary["stages_ms"])
