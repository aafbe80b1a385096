"""Bad input ends in one clear line (exit 1, no traceback) and nothing written; odd but valid photos just work.

Runs the real command (`live.cli.main`, in process; one case through a fresh interpreter) on files made here."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from helpers.clips import moving_frames, place, portrait, write_clip

from fomm_live.live.cli import main
from fomm_live.live.errors import UserError
from fomm_live.live.media import cv2, read_image


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("bad") / "clip.mp4", moving_frames(4, still=4))


def run(args: list[str], out: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(args + ["--output", str(out), "--no-preview", "--max-frames", "3"])
    return code, capsys.readouterr().err


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_bad_source(kind: str, folder: Path) -> Path:
    cv = cv2()
    path = folder / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image\n")
    elif kind == "truncated_png":
        cv.imwrite(str(path), portrait())
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "truncated_jpeg":
        path = folder / "cut.jpg"
        cv.imwrite(str(path), portrait())
        path.write_bytes(path.read_bytes()[:8000])
    elif kind == "bomb":  # a valid PNG header announcing 60000 x 60000 pixels (3.6 GB decoded)
        ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
                         png_chunk(b"IDAT", zlib.compress(b"\x00" * 60001 * 4)) + png_chunk(b"IEND", b""))
    elif kind == "folder":
        path = folder / "photos.png"
        path.mkdir()
    return path


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "image not found"),
    ("empty", "is empty, not an image"),
    ("text", "is not an image (PNG, JPEG, BMP, TIFF or WebP expected)"),
    ("truncated_png", "is a truncated PNG file"),
    ("truncated_jpeg", "is a truncated JPEG file"),
    ("bomb", "larger than 50 megapixels; refused before decoding"),
    ("folder", "holds no image files"),
])
def test_bad_source_image(kind: str, message: str, clip: Path, tmp_path: Path, capsys) -> None:
    source = tmp_path / "missing.png" if kind == "missing" else make_bad_source(kind, tmp_path)
    out = tmp_path / "out.mp4"
    code, err = run(["--source", str(source), "--camera", str(clip)], out, capsys)
    assert code == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fomm-live: error: ") and message in last, last
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*")), "nothing is written"


def test_decompression_bomb_is_refused_without_allocating(tmp_path: Path) -> None:
    """The 60000 x 60000 header is refused by the decoder's pixel limit, before any pixel buffer exists."""
    bomb = make_bad_source("bomb", tmp_path)
    with pytest.raises(UserError, match="refused before decoding"):
        read_image(bomb)


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "sixteen_bit", "cmyk_jpeg"])
def test_odd_but_valid_photos_load_as_rgb(kind: str, tmp_path: Path) -> None:
    from PIL import Image

    rgb = portrait()
    path = tmp_path / f"{kind}.png"
    cv = cv2()
    if kind == "grayscale":
        cv.imwrite(str(path), cv.cvtColor(rgb, cv.COLOR_RGB2GRAY))
    elif kind == "rgba":
        cv.imwrite(str(path), np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 100, np.uint8)]))
    elif kind == "sixteen_bit":
        cv.imwrite(str(path), rgb[..., ::-1].astype(np.uint16) * 257)
    else:
        path = tmp_path / "cmyk.jpg"
        Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == rgb.shape
    if kind != "grayscale":
        assert np.abs(image.astype(int) - rgb.astype(int)).mean() < 6, "colours survive the conversion"


def test_exif_rotated_photo_is_turned_as_the_user_sees_it(tmp_path: Path) -> None:
    from PIL import Image

    wide = np.ascontiguousarray(portrait()[:300])  # 300 x 512, landscape as stored
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    assert read_image(path).shape == (512, 300, 3)


def test_source_without_a_face(clip: Path, tmp_path: Path, caplog, capsys) -> None:
    """FOMM animates whatever it is given: a centre crop, with a warning. The landmark backend needs a face mesh on
    the photo, so it says in one line that there is none."""
    from conftest import golden_dir

    blank = tmp_path / "wall.png"
    cv2().imwrite(str(blank), np.full((300, 400, 3), 120, np.uint8))
    folder = golden_dir("tiny")
    code, _ = run(["--source", str(blank), "--camera", str(clip), "--checkpoint", str(folder / "checkpoint.pth.tar"),
                   "--config", str(folder / "config.yaml")], tmp_path / "o.mp4", capsys)
    assert code == 0
    assert any("no face found in the photo; animating its centre crop" in r.getMessage() for r in caplog.records)
    code, err = run(["--source", str(blank), "--camera", str(clip)], tmp_path / "p.mp4", capsys)
    assert code == 1 and "face" in err.strip().splitlines()[-1] and "Traceback" not in err


def test_source_with_several_faces_uses_the_largest(clip: Path, tmp_path: Path, caplog, capsys) -> None:
    cv = cv2()
    canvas = place(portrait(), width=900, height=512, scale=1.0, tx=-190)
    canvas[60:400, 540:880] = cv.resize(portrait(), (340, 340))
    path = tmp_path / "two.png"
    cv.imwrite(str(path), canvas[..., ::-1])
    code, _ = run(["--source", str(path), "--camera", str(clip)], tmp_path / "o.mp4", capsys)
    assert code == 0
    assert any("2 faces in the source photo; using the largest" in r.getMessage() for r in caplog.records)


def test_camera_that_does_not_exist_is_one_line_before_the_model_loads(tmp_path: Path) -> None:
    """`--camera 7` on a machine without that device: exit 1, at most two non-empty lines on stderr (none of
    OpenCV's own), the one that matters naming what is there; nothing written. The time it takes is printed, not
    asserted."""
    import time

    out = tmp_path / "x.mp4"
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fomm_live", "--camera", "7", "--no-preview", "--output", str(out),
                             "--max-frames", "5"], capture_output=True, text=True, cwd=REPO, timeout=120)
    print(f"--camera 7 failed in {time.perf_counter() - started:.2f} s")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert 1 <= len(lines) <= 2, lines
    assert lines[-1].startswith("fomm-live: error: camera 7 "), lines
    assert "cameras" in lines[-1], "it says what is there or how to list it"
    assert "obsensor" not in result.stderr and "Traceback" not in result.stderr and not out.exists()


@pytest.mark.parametrize(("what", "message"), [("text", "is not a video that can be read"),
                                               ("missing", "camera or video not found")])
def test_driving_input_that_is_not_a_video(what: str, message: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "notes.mp4"
    if what == "text":
        path.write_text("hello\n")
    code, err = run(["--camera", str(path)], tmp_path / "o.mp4", capsys)
    assert code == 1 and message in err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["animate", "run"])
def test_unreadable_driving_video_fails_in_one_line_before_the_model_loads(command: str, tmp_path: Path) -> None:
    """A text file named .mp4 as `animate --driving` or `run --camera`, with a checkpoint path that does not exist:
    the video's error comes, alone on stderr, and the checkpoint's does not. The checkpoint is read when the model
    loads, so the input was refused before that (today's order printed FFmpeg's "moov atom not found" after the
    model had loaded). Exit 1, nothing written."""
    video = tmp_path / "notes.mp4"
    video.write_text("hello, this is text\n")
    out = tmp_path / "o.mp4"
    missing = tmp_path / "no-such-checkpoint.pth.tar"
    if command == "animate":
        args = ["animate", "--source", str(REPO / "fomm_live/live/assets/astronaut.jpg"), "--driving", str(video),
                "--output", str(out)]
    else:
        args = ["run", "--camera", str(video), "--output", str(out), "--no-preview", "--max-frames", "3"]
    result = subprocess.run([sys.executable, "-m", "fomm_live", *args, "--checkpoint", str(missing)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert lines == [f"fomm-live: error: {video} is not a video that can be read (not a video file, or damaged)"], \
        lines
    assert "moov" not in result.stderr and "checkpoint" not in result.stderr and not out.exists()


def test_check_video_accepts_a_real_clip_and_refuses_an_empty_file(clip: Path, tmp_path: Path) -> None:
    from fomm_live.live.media import check_video

    check_video(clip)  # a readable clip passes without a word
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="is empty, not a video"):
        check_video(empty)


def test_unwritable_or_full_output_is_refused_up_front(clip: Path, tmp_path: Path, capsys,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = run(["--camera", str(clip)], tmp_path / "no" / "such" / "dir" / "o.mp4", capsys)
    assert code == 1 and "output folder does not exist" in err

    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10 << 20))
    code, err = run(["--camera", str(clip)], tmp_path / "o.mp4", capsys)
    assert code == 1 and "only 10 MB free" in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--no-preview", "--output", "window"], "contradict"),
    (["--output", "stream.flv"],
     "--output stream.flv: a .flv file is not written here; use virtualcam, window, browser[:PORT] or"),
])
def test_conflicting_or_unknown_output_options(args: list[str], message: str, clip: Path, capsys) -> None:
    code = main(["--camera", str(clip), *args])
    assert code == 1 and message in capsys.readouterr().err


def test_yaml_that_is_not_a_fomm_config(tmp_path: Path, clip: Path, capsys) -> None:
    bad = tmp_path / "train.yaml"
    bad.write_text("dataset_params:\n  root_dir: data/vox\n")
    code = main(["--camera", str(clip), "--checkpoint", str(tmp_path / "x.pth.tar"), "--config", str(bad),
                 "--output", str(tmp_path / "o.mp4"), "--no-preview"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and "is not a First Order Motion Model config (no model_params section)" in err


def test_second_interrupt_exits_at_once(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import fomm_live.live.cli.interrupts as interrupts

    exits = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    interrupts._interrupts = 0
    with pytest.raises(KeyboardInterrupt):
        interrupts._on_interrupt(2, None)  # the first: a clean stop
    interrupts._on_interrupt(2, None)  # the second: out now
    assert exits == [130]
    assert "interrupted again: exiting now" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["truncated", "malicious"])
def test_bad_checkpoint_through_the_command(kind: str, clip: Path, tmp_path: Path, capsys) -> None:
    """A cut-short checkpoint and one whose pickle would run code: one line each, and the payload never runs."""
    import torch
    from conftest import golden_dir

    path = tmp_path / "model.pth.tar"
    marker = tmp_path / "PWNED"
    if kind == "truncated":
        data = (golden_dir("tiny") / "checkpoint.pth.tar").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        torch.save({"generator": Payload(), "kp_detector": {}}, path)
    code, err = run(["--camera", str(clip), "--checkpoint", str(path)], tmp_path / "o.mp4", capsys)
    last = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err
    assert ("truncated or corrupt" in last) if kind == "truncated" else ("refused" in last and "load code" in last)
    assert not marker.exists(), "the pickle's payload never ran"
    assert not (tmp_path / "o.mp4").exists()
