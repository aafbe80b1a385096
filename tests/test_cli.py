"""The command line: `fomm-live animate` reproduces the original's frames, writes tagged MP4s, and answers bad
input with one line instead of a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GOLDEN_VARIANTS, REPO, golden_dir, read_rgb
from helpers.fast_paths import assert_fast_path_ran, record_engines

from fomm_live.live.cli import main
from fomm_live.live.paths import DEFAULT_PORTRAIT


def driving_dir(variant: str, tmp_path: Path) -> Path:
    folder = tmp_path / "driving"
    folder.mkdir()
    for i in range(3):
        shutil.copy(golden_dir(variant) / f"driving_{i}.png", folder / f"driving_{i}.png")
    return folder


def model_args(variant: str) -> list[str]:
    folder = golden_dir(variant)
    return ["--source", str(folder / "source.png"), "--checkpoint", str(folder / "checkpoint.pth.tar"),
            "--config", str(folder / "config.yaml"), "--device", "cpu", "--precision", "fp32"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "fomm_live", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


@pytest.mark.parametrize("mode", ["relative", "absolute"])
@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_png_frames_equal_original_within_one_level(variant: str, mode: str, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    code = main(["animate", *model_args(variant), "--driving", str(driving_dir(variant, tmp_path)),
                 "--output", str(out), f"--{mode}", "--no-label"])
    assert code == 0
    expected = np.load(golden_dir(variant) / "expected.npz")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00000.png", "00001.png", "00002.png"]
    for i in range(3):
        got = read_rgb(out / f"{i:05d}.png").astype(np.int32)
        want = np.round(expected[f"{mode}_{i}_prediction"][0].transpose(1, 2, 0) * 255).astype(np.int32)
        diff = np.abs(got - want)
        assert diff.max() <= 1, f"frame {i}: {int((diff > 1).sum())} pixels off by more than 1 level"


def test_crop_none_smooths_nothing(tmp_path: Path) -> None:
    """With `--crop none` (the default) `--no-smoothing` changes nothing: the frames are byte for byte the same."""
    drv = driving_dir("tiny", tmp_path)
    for name, extra in (("default", []), ("unsmoothed", ["--no-smoothing"])):
        assert main(["animate", *model_args("tiny"), "--driving", str(drv), "--output", str(tmp_path / name),
                     "--no-label", *extra]) == 0
    for i in range(3):
        assert (tmp_path / "default" / f"{i:05d}.png").read_bytes() == \
            (tmp_path / "unsmoothed" / f"{i:05d}.png").read_bytes(), f"frame {i}"


def test_label_is_drawn_unless_removed(tmp_path: Path) -> None:
    drv = driving_dir("tiny", tmp_path)
    main(["animate", *model_args("tiny"), "--driving", str(drv), "--output", str(tmp_path / "plain"), "--no-label"])
    main(["animate", *model_args("tiny"), "--driving", str(drv), "--output", str(tmp_path / "labelled")])
    plain = read_rgb(tmp_path / "plain" / "00001.png").astype(np.int32)
    labelled = read_rgb(tmp_path / "labelled" / "00001.png").astype(np.int32)
    changed = np.argwhere(np.abs(plain - labelled).max(-1) > 0)
    assert len(changed) > 100, "no label drawn"
    assert changed[:, 0].min() > 200 and changed[:, 1].min() > 128, "the label belongs in the bottom-right corner"


def test_mp4_output_is_complete_and_tagged_synthetic(tmp_path: Path) -> None:
    av = pytest.importorskip("av", reason="PyAV writes the MP4 files")
    out = tmp_path / "result.mp4"
    result = run_cli("animate", *model_args("tiny"), "--driving", str(driving_dir("tiny", tmp_path)), "--output",
                     str(out))
    assert result.returncode == 0, result.stderr
    assert "animated 3 frames" in result.stdout
    with av.open(str(out)) as container:
        assert "synthetic" in container.metadata.get("comment", "").lower()
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (256, 256, 3)
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_help_lists_the_shared_options() -> None:
    result = run_cli("animate", "--help")
    assert result.returncode == 0
    for option in ("--source", "--checkpoint", "--config", "--backend", "--device", "--precision", "--relative",
                   "--absolute", "--adapt-scale", "--no-adapt-scale", "--no-label", "--debug", "--driving", "--output"):
        assert option in result.stdout, option


def test_top_level_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "run" in result.stdout and "animate" in result.stdout


def test_no_command_means_run(capsys: pytest.CaptureFixture) -> None:
    """`fomm-live --config X` is `fomm-live run --config X`: here it stops at the missing checkpoint."""
    assert main(["--config", "vox-256", "--camera", "no-such-clip.mp4"]) == 1
    assert "camera or video not found: no-such-clip.mp4" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--checkpoint": None, "--backend": "fomm"}, "--checkpoint is required"),
        ({"--backend": "landmarks"}, "--checkpoint is for the fomm backend"),
        ({"--precision": "fp16"}, "--precision fp16 is for CUDA"),
        ({"--checkpoint": "missing.pth.tar"}, "checkpoint not found"),
        ({"--source": "missing.png"}, "image not found"),
        ({"--config": "no-such-preset"}, "unknown preset 'no-such-preset'; presets: bair-256"),
        ({"--config": "vox-256"}, "does not fit vox-256"),
    ],
)
def test_bad_input_is_one_line_without_traceback(change: dict, message: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    args = dict(zip(model_args("tiny")[::2], model_args("tiny")[1::2], strict=True))
    args.update(change)
    argv = ["animate", "--driving", str(driving_dir("tiny", tmp_path)), "--output", str(tmp_path / "out")]
    for key, value in args.items():
        if value is not None:
            argv += [key, value]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fomm-live: error: ") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists(), "nothing is written when the input is bad"


def test_bad_checkpoint_file_from_the_real_command(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pth.tar"
    bogus.write_text("not a checkpoint\n")
    args = model_args("tiny")
    args[args.index("--checkpoint") + 1] = str(bogus)
    result = run_cli("animate", *args, "--driving", str(driving_dir("tiny", tmp_path)), "--output", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"fomm-live: error: {bogus} is not a PyTorch checkpoint"


def test_empty_driving_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["animate", *model_args("tiny"), "--driving", str(empty), "--output", str(tmp_path / "o")]) == 1
    assert "holds no image files" in capsys.readouterr().err


def test_animate_crop_face_uses_the_live_tracker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`animate --crop face` runs the live pipeline's face tracker: on a clip whose face slides to the right,
    every frame carries a face crop box (smaller than the frame): with `--no-smoothing` exactly the box around the
    face found in that frame, smoothed a little behind it, while `--crop none` uses the whole frame, resized to the
    model's 256 x 256; the animated frames differ accordingly."""
    from helpers.clips import moving_frames, write_clip

    import fomm_live.live.output.sinks as sinks
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.face import FaceDetector, face_crop_box

    boxes: dict[str, list] = {}

    class BoxRecordingSink(sinks.FileSink):
        """The real writer sink, also keeping the crop box the pipeline reports with each frame."""

        def send(self, frame: np.ndarray, info: sinks.FrameInfo) -> None:
            boxes.setdefault(self.path.name, []).append(info.crop_box)
            super().send(frame, info)

    monkeypatch.setattr(sinks, "FileSink", BoxRecordingSink)
    frames = moving_frames(16, still=4)  # the face sways and slides right from frame 4
    clip = write_clip(tmp_path / "clip.mp4", frames)
    folder = golden_dir("tiny")
    common = ["animate", "--source", str(DEFAULT_PORTRAIT), "--driving", str(clip), "--checkpoint",
              str(folder / "checkpoint.pth.tar"), "--config", str(folder / "config.yaml"), "--no-label"]
    assert main([*common, "--output", str(tmp_path / "face"), "--crop", "face"]) == 0
    assert main([*common, "--output", str(tmp_path / "raw"), "--crop", "face", "--no-smoothing"]) == 0
    assert main([*common, "--output", str(tmp_path / "none")]) == 0
    assert [len(boxes[name]) for name in ("face", "raw", "none")] == [16, 16, 16]
    assert all(box is not None and box[2] < 0.9 * 480 for box in boxes["face"] + boxes["raw"]), boxes
    assert all(box == (128.0, 128.0, 256.0) for box in boxes["none"]), "--crop none: the whole frame, model-sized"
    # The unsmoothed boxes are the tracker's boxes around the faces found in the decoded clip.
    source, expected = OpenCVSource(str(clip)), []
    with FaceDetector() as detector:
        while (frame := source.read()) is not None:
            box = face_crop_box(detector.detect(frame)[0])
            expected.append((box.cx, box.cy, box.side))
    source.close()
    np.testing.assert_allclose(np.array(boxes["raw"]), np.array(expected), atol=0.5)
    assert expected[-1][0] - expected[3][0] > 10, "the face slides right"
    start, end, smoothed = expected[3][0], expected[-1][0], boxes["face"][-1][0]
    assert start < smoothed < end - 1, ("smoothed: the box follows the face, a little behind", start, smoothed, end)
    face = sorted((tmp_path / "face").iterdir())
    none = sorted((tmp_path / "none").iterdir())
    assert len(face) == len(none) == 16
    a, b = read_rgb(face[6]).astype(int), read_rgb(none[6]).astype(int)
    assert a.shape == (256, 256, 3) and np.abs(a - b).mean() > 1


def test_export_command_writes_checked_onnx(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("onnxruntime", reason="the export is checked with ONNX Runtime")
    folder = golden_dir("tiny")
    out = tmp_path / "onnx"
    assert main(["export", "--checkpoint", str(folder / "checkpoint.pth.tar"), "--config",
                 str(folder / "config.yaml"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checked with ONNX Runtime against PyTorch" in printed
    assert sorted(p.name for p in out.iterdir()) == ["generator.onnx", "kp_detector.onnx"]


@pytest.mark.usefixtures("onnx_export_once")
def test_animate_with_the_onnxruntime_engine_matches_the_original(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime", reason="the onnxruntime engine needs it")
    engines = record_engines(monkeypatch)  # the frames must be ONNX Runtime's, not a fallback's
    out = tmp_path / "frames"
    assert main(["animate", *model_args("tiny"), "--driving", str(driving_dir("tiny", tmp_path)), "--output", str(out),
                 "--no-label", "--engine", "onnxruntime"]) == 0
    expected = np.load(golden_dir("tiny") / "expected.npz")
    got = read_rgb(out / "00002.png").astype(np.int32)
    want = np.round(expected["relative_2_prediction"][0].transpose(1, 2, 0) * 255).astype(np.int32)
    assert np.abs(got - want).max() <= 1
    assert_fast_path_ran(engines[-1], name="onnxruntime", precision="fp32", paths=("onnxruntime",))


def test_a_failing_writer_ends_animate_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The live pipeline drops an output that fails and goes on; for animate the writer is the only output, so its
    failure is the command's failure."""
    import fomm_live.live.output.sinks as sinks

    def full_disk(self, frame, info) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sinks.FileSink, "send", full_disk)
    out = tmp_path / "frames"
    assert main(["animate", *model_args("tiny"), "--driving", str(driving_dir("tiny", tmp_path)), "--output",
                 str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"fomm-live: error: writing {out} failed (see the error above); the output is incomplete"
    assert any("No space left on device" in r.getMessage() for r in caplog.records), "the cause is logged"
