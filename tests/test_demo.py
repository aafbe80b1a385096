"""Out of the box: `fomm-live demo` and the landmark backend as the default when no checkpoint is given."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from clips import moving_frames, write_clip

from live.cli import main
from live.paths import DEFAULT_PORTRAIT


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
    assert main(["demo", "--out", str(out), "--no-preview", "--stats-json", str(stats)]) == 0
    printed = capsys.readouterr().out
    assert "end to end p50" in printed and f"wrote {out}" in printed
    assert list(cache.glob("demo-clip-v*.mp4")), "the driving clip is made once into the user cache folder"
    data = json.loads(stats.read_text())
    assert data["backend"] == "landmarks"
    assert data["frames_in"] == 125 and data["frames_out"] + data["frames_dropped"] == 125
    with av.open(str(out)) as container:
        assert "synthetic" in container.metadata.get("comment", "").lower()
        assert sum(1 for _ in container.decode(video=0)) == data["frames_out"]


def test_no_checkpoint_means_the_landmark_backend(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(20, still=20))
    out = tmp_path / "frames"
    assert main(["animate", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip), "--out", str(out),
                 "--crop", "face"]) == 0
    assert len(list(out.iterdir())) == 20
    assert any("landmark backend" in r.getMessage() and "--checkpoint" in r.getMessage() for r in caplog.records)


def test_fomm_backend_without_checkpoint_is_a_clear_error(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, still=3))
    assert main(["animate", "--backend", "fomm", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip),
                 "--out", str(tmp_path / "o")]) == 1
    assert "--checkpoint is required" in capsys.readouterr().err
