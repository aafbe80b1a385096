"""The soak benchmark's short version: the FOMM backend (tiny golden weights) on a clip played by a stand-in camera
that vanishes every few seconds, recording as it goes. Checks that the loop reconnects, the recording decodes end to
end and plays as long as the run; the figures themselves are benchmark output, not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import golden_dir
from helpers.clips import moving_frames, write_clip

from fomm_live.benchmarks.soak import main
from fomm_live.live.output.recording import mp4_boxes


def test_short_fomm_soak_with_camera_drops_and_a_recording(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("av", reason="PyAV writes and reads the recording")
    folder = golden_dir("tiny")
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(25, still=10), fps=25)
    record, figures = tmp_path / "soak.mp4", tmp_path / "soak.json"
    code = main(["--backend", "fomm", "--checkpoint", str(folder / "checkpoint.pth.tar"), "--config",
                 str(folder / "config.yaml"), "--device", "cpu", "--clip", str(clip), "--minutes", "0.14",
                 "--record", str(record), "--drop-camera-every", "2.5", "--sample-seconds", "1",
                 "--json", str(figures)])
    assert code == 0
    result = json.loads(figures.read_text())
    assert result["camera_drops"] >= 2 and result["reconnect_attempts_refused"] >= 1, "the camera dropped and came back"
    assert result["frames_out"] > 0 and result["frames_repeated"] > 0, "the outputs were fed while it was away"
    recording = result["recording"]
    assert recording["decodes_end_to_end"] and recording["frames"] > 0, recording
    assert abs(recording["plays_seconds"] - recording["run_seconds"]) < 1.0, recording
    assert "moof" not in mp4_boxes(record), "a clean stop leaves an ordinary MP4"
    assert '"camera_drops"' in capsys.readouterr().out
