"""`fomm-live animate --keyframe-every N`: the generator on frames 0, N, 2N, ... and in-betweens for the rest.

The generator is the tiny golden checkpoint (random weights: its faces are blobs, which is enough to tell a keyframe
from an in-between and to compare frames exactly); the motion of the in-betweens is the face mesh of a driving clip
of the bundled portrait turning and sliding, with the portrait as the photo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import golden_dir, read_rgb

from fomm_live.live.cli import main
from fomm_live.live.paths import DEFAULT_PORTRAIT

FRAMES = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.clips import moving_frames, write_clip

    return write_clip(tmp_path_factory.mktemp("clip") / "sway.mp4", moving_frames(FRAMES, still=1))


def animate(clip: Path, out: Path, *extra: str) -> list[np.ndarray]:
    folder = golden_dir("tiny")
    assert main(["animate", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip), "--checkpoint",
                 str(folder / "checkpoint.pth.tar"), "--config", str(folder / "config.yaml"), "--device", "cpu",
                 "--precision", "fp32", "--no-label", "--output", str(out), *extra]) == 0
    return [read_rgb(path) for path in sorted(out.iterdir())]


def test_keyframe_every_1_is_todays_output_and_keyframes_are_the_generators_frames(clip: Path,
                                                                                   tmp_path: Path) -> None:
    today = animate(clip, tmp_path / "today")
    every_1 = animate(clip, tmp_path / "every1", "--keyframe-every", "1")
    every_4 = animate(clip, tmp_path / "every4", "--keyframe-every", "4")
    assert len(today) == len(every_1) == len(every_4) == FRAMES
    assert all(np.array_equal(a, b) for a, b in zip(today, every_1, strict=True))
    for i in range(0, FRAMES, 4):  # a keyframe at its own time is the generator's frame, exactly
        assert np.array_equal(every_4[i], today[i]), f"keyframe {i}"
    # The frames between are the last keyframe moved: neither the generator's frame nor the keyframe held (frame 1
    # is the still frame 0 again, so it may be the keyframe itself).
    for i in (2, 3, 5, 6, 7, 9):
        key = every_4[i // 4 * 4]
        assert not np.array_equal(every_4[i], today[i]), f"frame {i} is the generator's"
        assert np.abs(every_4[i].astype(np.int16) - key).mean() > 0.01, f"frame {i} holds keyframe {i // 4 * 4}"


@pytest.mark.parametrize("options", [["--framing", "photo", "--output-size", "640x360"], ["--crop", "face"]],
                         ids=["photo-framing", "crop-face-smoothed"])
def test_keyframes_stay_exact_with_photo_framing_and_with_smoothed_face_crops(clip: Path, tmp_path: Path,
                                                                            options: list[str]) -> None:
    """With photo framing the in-betweens carry the keyframe's motion field to the paste-back (its detail
    transfer); with ``--crop face`` the keypoints are smoothed over every frame as today. Either way the keyframes are
    the generator's frames as today, exactly, and only they."""
    size = options
    today = animate(clip, tmp_path / "today", *size)
    every_3 = animate(clip, tmp_path / "every3", *size, "--keyframe-every", "3")
    assert every_3[0].shape == today[0].shape
    for i in range(FRAMES):
        same = np.array_equal(every_3[i], today[i])
        assert same == (i % 3 == 0), f"frame {i}: {'equal' if same else 'differs'}"


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_keyframe_every_refuses_what_is_not_a_positive_whole_number(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["animate", "--driving", "clip.mp4", "--output", "o", "--keyframe-every", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--keyframe-every" in err and ("1 or more" in err or "whole number" in err), err


def test_the_generator_runs_only_on_keyframes_and_where_the_face_mesh_sees_no_face() -> None:
    """``KeyframeEvery`` over the tiny FOMM backend, driven by hand: with every=3 the generator (inner ``render``)
    runs on frames 0, 3 and 6, and also on frame 4, a grey frame where the face mesh finds no face (it cannot be an
    in-between); the keypoint detector (inner ``detect``) on every frame, as the loop's smoothing needs; the other
    frames are in-betweens of the square's size."""
    from helpers.clips import moving_frames
    from helpers.standins import tiny_backend

    from fomm_live.live.inbetween import KeyframeEvery
    from fomm_live.live.media import cv2

    inner = tiny_backend()
    calls: list[tuple[str, int]] = []
    index = {"frame": 0}
    detect, render = inner.detect, inner.render
    inner.detect = lambda crop: calls.append(("detect", index["frame"])) or detect(crop)
    inner.render = lambda motion, detail=False: (calls.append(("render", index["frame"]))
                                                 or render(motion, detail=detail))
    backend = KeyframeEvery(inner, every=3)
    try:
        frames = moving_frames(7, still=1)
        frames[4] = np.full_like(frames[4], 90)
        crops = [cv2().resize(frame[:, 80:560], (inner.size, inner.size)) for frame in frames]
        backend.set_source(crops[0])
        outputs = []
        for i, crop in enumerate(crops):
            index["frame"] = i
            motion = backend.detect(crop)
            if i == 0:
                backend.calibrate(motion)
            outputs.append(backend.render(motion).image())
    finally:
        backend.close()
    assert sorted({i for kind, i in calls if kind == "render"}) == [0, 3, 4, 6]
    assert sorted({i for kind, i in calls if kind == "detect"}) == list(range(7))
    assert all(out.shape == (inner.size, inner.size, 3) for out in outputs)


def test_keyframe_every_on_a_photo_without_a_face_says_so_in_one_line(clip: Path, tmp_path: Path, capsys) -> None:
    folder = golden_dir("tiny")
    code = main(["animate", "--source", str(folder / "source.png"), "--driving", str(clip), "--checkpoint",
                 str(folder / "checkpoint.pth.tar"), "--config", str(folder / "config.yaml"), "--device", "cpu",
                 "--precision", "fp32", "--output", str(tmp_path / "out"), "--keyframe-every", "2"])
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "fomm-live: error: --keyframe-every needs a face in the photo, and the face mesh found none: leave the option "
        "out to render every frame with the generator")
    assert not (tmp_path / "out").exists()
