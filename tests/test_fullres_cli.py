"""The framing options on the command line: defaults per command, the demo's 1280 x 720 photo-framed video, and
``animate --framing photo``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.clips import moving_frames, write_clip

from fomm_live.live.cli import main
from fomm_live.live.cli.parser import build_parser
from fomm_live.live.options import AnimateOptions
from fomm_live.live.paths import DEFAULT_PORTRAIT


def test_run_and_demo_default_to_photo_framing_and_animate_to_face() -> None:
    parser = build_parser()
    assert parser.parse_args(["run"]).framing == "photo"
    assert parser.parse_args(["demo"]).framing == "photo"
    args = parser.parse_args(["animate", "--source", "a.png", "--driving", "d.mp4", "--output", "o"])
    assert args.framing == "face" and args.output_size is None and args.detail
    args = parser.parse_args(["run", "--framing", "face", "--output-size", "800x600", "--no-detail"])
    assert (args.framing, args.output_size, args.detail) == ("face", (800, 600), False)


def test_animate_output_size_follows_the_framing() -> None:
    from fomm_live.live.animate import animate_pipeline_options

    job = AnimateOptions(source="a", driving="d", out="o")
    assert animate_pipeline_options(job, size=256, fps=25).frame.size == (256, 256)
    photo = AnimateOptions(source="a", driving="d", out="o", framing="photo")
    options = animate_pipeline_options(photo, size=256, fps=25)
    assert options.frame.size == (1280, 720) and options.frame.framing == "photo" and options.frame.detail
    sized = AnimateOptions(source="a", driving="d", out="o", framing="photo", output_size=(320, 180), detail=False)
    options = animate_pipeline_options(sized, size=256, fps=25)
    assert options.frame.size == (320, 180) and not options.frame.detail


def test_animate_with_photo_framing_writes_the_framed_photo_size(tmp_path: Path) -> None:
    from fomm_live.live.media import read_image

    clip = write_clip(tmp_path / "clip.mp4", moving_frames(12, still=6))
    out = tmp_path / "frames"
    assert main(["animate", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip), "--output", str(out),
                 "--framing", "photo", "--output-size", "320x180", "--no-label"]) == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 12
    first = read_image(frames[0])
    assert first.shape == (180, 320, 3)
    # The sway in the last frames animates the face.
    assert np.abs(first.astype(int) - read_image(frames[-1]).astype(int)).mean() > 0.1


def test_demo_writes_a_1280x720_photo_framed_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    av = pytest.importorskip("av", reason="PyAV reads the result back")
    monkeypatch.setenv("FOMM_LIVE_CACHE", str(tmp_path / "cache"))
    out, stats = tmp_path / "demo.mp4", tmp_path / "stats.json"
    assert main(["demo", "--output", str(out), "--no-preview", "--stats-json", str(stats)]) == 0
    assert json.loads(stats.read_text())["output_size"] == [1280, 720]
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (1280, 720)
