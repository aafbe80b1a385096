"""Each message says one thing once and names the file it is about: a photo without a face, a bad photo in a folder,
a missing virtual camera. Where the message is what matters, the real command runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, golden_dir
from helpers.clips import moving_frames, portrait, write_clip

from fomm_live.live.cli import main
from fomm_live.live.media import cv2


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("messages") / "clip.mp4", moving_frames(4, still=4))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter, as a user runs it (no display: the preview cannot open)."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "fomm_live", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


def wall(path: Path) -> Path:
    """A photo with no face in it."""
    cv2().imwrite(str(path), np.full((300, 400, 3), 120, np.uint8))
    return path


def face(path: Path) -> Path:
    cv2().imwrite(str(path), portrait()[..., ::-1])
    return path


def tiny_fomm() -> list[str]:
    folder = golden_dir("tiny")
    return ["--checkpoint", str(folder / "checkpoint.pth.tar"), "--config", str(folder / "config.yaml"),
            "--precision", "fp32"]


def test_a_photo_without_a_face_is_refused_by_the_landmark_backend_in_one_line(clip: Path, tmp_path: Path) -> None:
    photo = wall(tmp_path / "wall.png")
    result = run_cli("run", "--source", "wall.png", "--camera", str(clip), "--output", "o.mp4", "--no-preview",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "fomm-live: error: wall.png: no face found in the photo; use one with a face seen from the front"
    assert "centre crop" not in result.stderr, "no promise of a crop that is not made"
    assert result.stderr.count("no face") == 1, result.stderr
    assert photo.exists() and not (tmp_path / "o.mp4").exists()


def test_a_photo_without_a_face_is_refused_naming_it_with_crop_none(clip: Path, tmp_path: Path) -> None:
    """Without face tracking the backend finds the photo faceless itself; the message still names the file."""
    wall(tmp_path / "wall.png")
    result = run_cli("run", "--source", "wall.png", "--crop", "none", "--camera", str(clip), "--output", "o.mp4",
                     "--no-preview", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fomm-live: error: wall.png: no face found"), last
    assert result.stderr.count("no face") == 1, result.stderr


def test_a_photo_without_a_face_is_animated_as_its_centre_crop_by_fomm(clip: Path, tmp_path: Path) -> None:
    wall(tmp_path / "wall.png")
    result = run_cli("run", "--source", "wall.png", *tiny_fomm(), "--camera", str(clip), "--output", "o.mp4",
                     "--no-preview", "--max-frames", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "face" in line and "wall.png" in line]
    assert said == ["fomm-live: wall.png: no face found in the photo; animating its centre crop"], result.stderr
    assert "fomm-live: error" not in result.stderr
    assert (tmp_path / "o.mp4").stat().st_size > 0


def test_a_folders_bad_photos_are_left_out_by_name(clip: Path, tmp_path: Path) -> None:
    """One unreadable and one faceless photo among good ones: each is named once as left out; the run goes on with
    the rest."""
    photos = tmp_path / "photos"
    photos.mkdir()
    face(photos / "a-me.png")
    (photos / "b-broken.png").write_text("not an image")
    wall(photos / "c-wall.png")
    result = run_cli("run", "--source", "photos", "--camera", str(clip), "--output", "o.mp4", "--no-preview",
                     "--max-frames", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if "left out" in line] == [
        "fomm-live: photos/b-broken.png is not an image (PNG, JPEG, BMP, TIFF or WebP expected); it is left out",
        "fomm-live: photos/c-wall.png: no face found in the photo; it is left out",
    ]
    assert "fomm-live: avatar 1: photos/a-me.png" in lines
    assert (tmp_path / "o.mp4").stat().st_size > 0


def test_a_folder_with_no_usable_photo_stops_naming_them(clip: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    wall(photos / "wall-1.png")
    wall(photos / "wall-2.png")
    assert main(["run", "--source", str(photos), "--camera", str(clip), "--output", str(tmp_path / "o.mp4"),
                 "--no-preview"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"fomm-live: error: no face found in any of the photos ({photos / 'wall-1.png'}, {photos / 'wall-2.png'})")


def test_a_photo_named_on_the_command_line_stops_the_run(clip: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    """A file the user named is not skipped quietly, even beside a good folder."""
    photos = tmp_path / "photos"
    photos.mkdir()
    face(photos / "me.png")
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    assert main(["run", "--source", str(photos), "--source", str(broken), "--camera", str(clip), "--output",
                 str(tmp_path / "o.mp4"), "--no-preview"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"fomm-live: error: {broken} is not an image (PNG, JPEG, BMP, TIFF or WebP expected)"


def test_a_missing_virtual_camera_is_said_once(clip: Path, tmp_path: Path) -> None:
    """Without any output (no display, no virtual camera here) the one error holds the how-to-install message."""
    import pyvirtualcam

    try:
        pyvirtualcam.Camera(width=64, height=64, fps=10).close()
    except RuntimeError:
        pass
    else:
        pytest.skip("this machine has a virtual camera: the message is not shown")
    result = run_cli("run", "--camera", str(clip), "--max-frames", "3", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("no virtual camera") == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fomm-live: error: nothing to show or send frames to: no virtual camera")
    assert last.endswith("add --output PATH.mp4 to record instead")


def test_an_unavailable_output_beside_a_working_one_is_one_warning(clip: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import fomm_live.live.output.sinks as sinks
    from fomm_live.live.errors import SinkUnavailable

    def unavailable(**kwargs: object) -> None:
        raise SinkUnavailable("no virtual camera (stand-in); to get one, install it")

    monkeypatch.setattr(sinks, "VirtualCamSink", unavailable)
    assert main(["run", "--camera", str(clip), "--output", "virtualcam", "--output", str(tmp_path / "o.mp4"),
                 "--no-preview", "--max-frames", "3"]) == 0
    said = [r.getMessage() for r in caplog.records if "no virtual camera" in r.getMessage()]
    assert said == ["no virtual camera (stand-in); to get one, install it"]
