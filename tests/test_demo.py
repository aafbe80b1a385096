"""Out of the box: `fomm-live demo` and the landmark backend as the default when no checkpoint is given."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from helpers.clips import moving_frames, write_clip

from fomm_live.live.cli import main
from fomm_live.live.paths import DEFAULT_PORTRAIT


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FOMM_LIVE_CACHE", str(folder))
    return folder


def test_demo_runs_the_live_pipeline_on_the_bundled_clip(tmp_path: Path, cache: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    av = pytest.importorskip("av", reason="PyAV reads the result back")
    out = tmp_path / "demo.mp4"
    stats = tmp_path / "stats.json"
    assert main(["demo", "--output", str(out), "--no-preview", "--stats-json", str(stats)]) == 0
    printed = capsys.readouterr().out
    assert "end to end p50" in printed and f"wrote {out}" in printed
    assert list(cache.glob("demo-clip-v*.mp4")), "the driving clip is made once into the user cache folder"
    data = json.loads(stats.read_text())
    assert data["backend"] == "landmarks"
    assert data["frames_in"] == 125 and data["frames_out"] + data["frames_dropped"] == 125
    with av.open(str(out)) as container:
        assert "synthetic" in container.metadata.get("comment", "").lower()
        # A paced run on a loaded machine may resend the last frame while processing lags (frames_repeated).
        assert sum(1 for _ in container.decode(video=0)) == data["frames_out"] + data["frames_repeated"]


def test_no_checkpoint_means_the_landmark_backend(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(20, still=20))
    out = tmp_path / "frames"
    assert main(["animate", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip), "--output", str(out),
                 "--crop", "face"]) == 0
    assert len(list(out.iterdir())) == 20
    assert any("landmark backend" in r.getMessage() and "--checkpoint" in r.getMessage() for r in caplog.records)


def test_fomm_backend_without_checkpoint_is_a_clear_error(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, still=3))
    assert main(["animate", "--backend", "fomm", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip),
                 "--output", str(tmp_path / "o")]) == 1
    assert "--checkpoint is required" in capsys.readouterr().err


@pytest.mark.parametrize(("codec", "suffix"), [("aac", ".mp4"), ("pcm_s16le", ".mov")])
def test_animate_copies_the_driving_audio(tmp_path: Path, codec: str, suffix: str) -> None:
    """The driving video's audio ends up in the output MP4: copied when MP4 holds its codec, else as AAC."""
    av = pytest.importorskip("av", reason="PyAV muxes the audio")
    from helpers.clips import write_clip_with_audio

    clip = write_clip_with_audio(tmp_path / f"talk{suffix}", moving_frames(25, still=25), codec=codec)
    out = tmp_path / "out.mp4"
    assert main(["animate", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip), "--output", str(out),
                 "--crop", "face"]) == 0
    with av.open(str(out)) as container:
        assert "synthetic" in container.metadata.get("comment", "").lower()
        assert container.streams.audio[0].codec_context.name == "aac"
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(samples - 44100) < 0.1 * 44100, samples
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_find_best_frame_takes_the_frame_closest_to_the_photo(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A clip that starts mid-sway and passes through the photo's pose: the neutral is a frame near that pose, not
    frame 0."""
    caplog.set_level(logging.INFO)
    frames = moving_frames(40, still=0)[12:] + moving_frames(10, still=10)  # starts tilted, ends upright
    clip = write_clip(tmp_path / "sway.mp4", frames)
    assert main(["animate", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip), "--output",
                 str(tmp_path / "o"), "--crop", "face", "--find-best-frame"]) == 0
    chosen = [r.getMessage() for r in caplog.records if "neutral pose: driving frame" in r.getMessage()]
    assert chosen, "the chosen frame is logged"
    index = int(chosen[0].split("frame ")[1].split()[0])
    tilt = [abs(8 * np.sin(np.pi * (j + 12) / 25)) if j < 28 else 0.0 for j in range(len(frames))]  # degrees
    assert tilt[index] < tilt[0] - 2, (index, tilt[index], tilt[0])
