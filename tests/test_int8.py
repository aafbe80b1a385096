"""The int8 engine: calibration cache and keys, the first-frame check and its fallback, the re-check of poses beyond
the calibration, auto's choice, the CLI's refusal of int8 on CUDA; and one real int8 runtime on the golden tiny model.

Most tests run the engine with a stand-in runtime (``ExactStandIn``: the float32 per-frame graph in PyTorch, which
records what it was calibrated with), so that they exercise the engine's own logic in well under a second each;
``SpoiledStandIn`` adds an error that the checks must catch. The real-runtime test quantises the golden tiny
generator with the default runtime (OpenVINO + NNCF, else ONNX Runtime) and holds its first frame to the real bar.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import fomm_live.models.animator as animator_module
import fomm_live.models.engines.int8 as int8_module
from fomm_live.live.cli import main
from fomm_live.models import Animator, build_networks, load_config
from fomm_live.models.checkpoint import load_into, read_checkpoint
from fomm_live.models.engines.int8 import INT8_MIN_PSNR_DB, Int8Engine, int8_unavailable
from fomm_live.models.engines.int8_calibration import (
    META_FILE,
    Reach,
    cache_key,
    calibration_poses,
    pose_reach,
)
from fomm_live.models.engines.int8_keypoints import PATH as KEYPOINT_PATH
from fomm_live.models.engines.int8_runtimes import Int8Runtime
from fomm_live.models.export import FrameGraph
from fomm_live.models.keypoint_detector import Keypoints
from tests.conftest import golden_dir, read_rgb, require

POSES = 6  # calibration poses in the stand-in tests (the count only has to reach the runtime)


class ExactStandIn(Int8Runtime):
    """A stand-in runtime: 'quantises' to the float32 graph itself, run by PyTorch; records its calibration."""

    name = "standin"
    needs_onnx = False
    builds = 0

    def missing(self):
        return None

    def version(self):
        return "standin-1"

    def build(self, folder, *, onnx_path, graph, example, samples, threads):
        type(self).builds += 1
        names = sorted(samples[0])
        assert names == sorted(graph.input_names), (names, graph.input_names)
        (folder / "standin.json").write_text(json.dumps({"samples": len(list(samples))}), encoding="utf-8")

    def load(self, folder, *, threads):
        assert (folder / "standin.json").exists(), "load reads what build wrote"
        graph = self.graph

        def run(feeds):
            with torch.no_grad():
                outs = graph(*(torch.from_numpy(feeds[n]) for n in graph.input_names))
            return {n: self.spoil(n, o.numpy(), feeds) for n, o in zip(graph.output_names, outs, strict=True)}

        return run

    def spoil(self, name, value, feeds):
        return value


class SpoiledStandIn(ExactStandIn):
    """The stand-in with 0.2 of noise on every prediction: about 15 dB, far below the 35 dB bar."""

    def spoil(self, name, value, feeds):
        if name != "prediction":
            return value
        return value + np.random.default_rng(0).normal(0, 0.2, value.shape).astype(value.dtype)


class SpoiledFarStandIn(ExactStandIn):
    """Exact within a keypoint shift of 0.6 of the photo's, spoiled beyond it (a pose the calibration missed)."""

    def spoil(self, name, value, feeds):
        shift = np.abs(feeds["kp_driving_value"] - feeds["kp_source_value"]).max()
        return value + 0.3 if name == "prediction" and shift > 0.6 else value


def tiny():
    folder = golden_dir("tiny")
    kp_detector, generator = build_networks(load_config(str(require(folder / "config.yaml"))))
    load_into(kp_detector, generator, read_checkpoint(folder / "checkpoint.pth.tar"), source="tiny",
              config_name="tiny")
    source = torch.from_numpy(read_rgb(folder / "source.png").copy()).permute(2, 0, 1)[None].float() / 255
    return kp_detector.eval(), generator.eval(), source


def engine_with(standin: type[ExactStandIn], cache: Path, monkeypatch: pytest.MonkeyPatch):
    kp_detector, generator, source = tiny()
    runtime = standin()
    runtime.graph = FrameGraph(generator, has_jacobian=True).eval()
    monkeypatch.setattr(int8_module, "pick_runtime", lambda requested=None: runtime)
    engine = Int8Engine(kp_detector, generator, device=torch.device("cpu"), poses=POSES, cache_dir=cache,
                        fallback_precision="fp32")
    return engine, kp_detector, source


def moved(kp: Keypoints, shift: float) -> Keypoints:
    return Keypoints(kp.value + shift, kp.jacobian)


@torch.inference_mode()
def test_calibration_is_cached_and_keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ExactStandIn.builds = 0
    engine, kp_detector, source = engine_with(ExactStandIn, tmp_path, monkeypatch)
    engine.encode(source)
    assert engine.cache_hit is False and ExactStandIn.builds == 1
    folders = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and (folders[0] / META_FILE).exists(), "one whole folder, no temporary left"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "the temporary folder was renamed"
    assert json.loads((folders[0] / "standin.json").read_text())["samples"] == POSES
    engine.encode(source)  # same checkpoint, photo, runtime: a hit
    assert engine.cache_hit is True and ExactStandIn.builds == 1
    again, _, _ = engine_with(ExactStandIn, tmp_path, monkeypatch)  # a new run: the hit comes from the folder
    again.encode(source)
    assert again.cache_hit is True and ExactStandIn.builds == 1
    engine.encode(source.flip(-1))  # another photo: a miss, a second folder
    assert engine.cache_hit is False and ExactStandIn.builds == 2
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2
    base = {"weights": "w", "architecture": "a", "photo": "p", "runtime": "openvino", "runtime_version": "1",
            "poses": 32}
    keys = {cache_key(**base)} | {cache_key(**{**base, field: "other"}) for field in base if field != "poses"}
    keys.add(cache_key(**{**base, "poses": 8}))
    assert len(keys) == len(base) + 1, "each of checkpoint, architecture, photo, runtime, version, poses changes it"


@torch.inference_mode()
def test_broken_cache_is_calibrated_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    engine, _, source = engine_with(ExactStandIn, tmp_path, monkeypatch)
    engine.encode(source)
    folder = next(p for p in tmp_path.iterdir() if not p.name.startswith("."))
    (folder / "standin.json").unlink()
    again, _, _ = engine_with(ExactStandIn, tmp_path, monkeypatch)  # the next run finds the damaged folder
    with caplog.at_level(logging.WARNING):
        again.encode(source)
    assert again.cache_hit is False and (folder / "standin.json").exists()
    assert "does not load" in caplog.text


@torch.inference_mode()
def test_first_frame_check_passes_and_frames_match_float32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, kp_detector, source = engine_with(ExactStandIn, tmp_path, monkeypatch)
    state = engine.encode(source)
    kp_source = kp_detector(source)
    out = engine.decode(state, moved(kp_source, 0.05), kp_source, with_deformation=True)
    assert engine.name == "int8" and len(engine.checks) == 1 and engine.checks[0].ok
    assert engine.checks[0].psnr_db >= INT8_MIN_PSNR_DB
    want = engine.generator.decode(state, moved(kp_source, 0.05), kp_source, with_deformation=True)
    assert (out["prediction"] - want["prediction"]).abs().max() < 1e-5
    assert "deformation" in out and "deformation" not in engine.decode(state, kp_source, kp_source)


@torch.inference_mode()
def test_spoiled_int8_falls_back_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    engine, kp_detector, source = engine_with(SpoiledStandIn, tmp_path, monkeypatch)
    state = engine.encode(source)
    kp_source = kp_detector(source)
    with caplog.at_level(logging.WARNING):
        first = engine.decode(state, moved(kp_source, 0.05), kp_source)
        engine.decode(state, moved(kp_source, 0.02), kp_source)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "int8" in warnings[0].getMessage() and "dB" in warnings[0].getMessage(), "names the measured error"
    assert engine.name == "eager" and engine.precision == "fp32" and not engine.checks[0].ok
    want = engine.generator.decode(state, moved(kp_source, 0.05), kp_source)
    assert (first["prediction"] - want["prediction"]).abs().max() < 1e-4, "the fallback's frame, not the spoiled one"


@torch.inference_mode()
def test_pose_beyond_calibration_is_checked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, kp_detector, source = engine_with(ExactStandIn, tmp_path, monkeypatch)
    state = engine.encode(source)
    kp_source = kp_detector(source)
    covered = engine.covered
    engine.decode(state, moved(kp_source, 0.01), kp_source)  # first frame: checked
    engine.decode(state, moved(kp_source, 0.02), kp_source)  # within: not checked
    assert len(engine.checks) == 1
    far = moved(kp_source, covered.shift + 0.1)
    assert pose_reach(far, kp_source).beyond(covered)
    engine.decode(state, far, kp_source)
    assert len(engine.checks) == 2 and engine.checks[1].ok and "beyond the calibration" in engine.checks[1].detail
    assert engine.covered.shift > covered.shift, "a passing far pose widens what is covered"
    engine.decode(state, far, kp_source)
    assert len(engine.checks) == 2, "the same pose again is not checked again"
    other = engine.encode(source.flip(-1))  # another photo: its own calibration, its own first-frame check
    engine.decode(other, kp_source, kp_source)
    assert len(engine.checks) == 3 and "first frame" in engine.checks[2].detail


@torch.inference_mode()
def test_far_pose_that_fails_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    engine, kp_detector, source = engine_with(SpoiledFarStandIn, tmp_path, monkeypatch)
    state = engine.encode(source)
    kp_source = kp_detector(source)
    engine.decode(state, moved(kp_source, 0.01), kp_source)
    assert engine.name == "int8" and engine.covered.shift < 0.6
    with caplog.at_level(logging.WARNING):
        engine.decode(state, moved(kp_source, 0.7), kp_source)
    assert engine.name == "eager" and not engine.checks[-1].ok
    assert "beyond the calibration" in caplog.text


def test_calibration_poses_spread_around_the_photo() -> None:
    kp = Keypoints(torch.rand(1, 10, 2) - 0.5, torch.eye(2).expand(1, 10, 2, 2).clone())
    poses = calibration_poses(kp, 16)
    assert len(poses) == 16 and torch.equal(poses[0].value, kp.value), "the photo's own pose first"
    reaches = [pose_reach(p, kp) for p in poses[1:]]
    assert all(0.0 < r.shift < 0.9 and 0.0 < r.turn < 1.0 for r in reaches), reaches
    assert max(r.shift for r in reaches) > 0.15, "head turns, not jitter only"
    assert calibration_poses(kp, 16)[5].value.equal(poses[5].value), "deterministic: the cache key holds"
    assert Reach(0.2, 0.1).beyond(Reach(0.1, 0.5)) and not Reach(0.1, 0.1).beyond(Reach(0.1, 0.1))


def test_auto_picks_int8_only_where_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.delenv("FOMM_LIVE_INT8", raising=False)
    monkeypatch.setattr(animator_module, "int8_unavailable", lambda device: None)
    monkeypatch.setattr(animator_module, "int8_instructions", lambda: frozenset({"avx512_vnni"}))
    assert animator_module.resolve_precision("auto", cpu) == "int8"
    assert animator_module.resolve_precision("auto", cpu, engine="onnxruntime") != "int8", "named engines keep theirs"
    assert animator_module.resolve_precision("auto", torch.device("cuda")) == "fp16"
    monkeypatch.setattr(animator_module, "int8_instructions", lambda: frozenset())
    assert animator_module.resolve_precision("auto", cpu) != "int8", "no VNNI / AMX: not int8"
    monkeypatch.setattr(animator_module, "int8_instructions", lambda: frozenset({"amx_int8"}))
    monkeypatch.setattr(animator_module, "int8_unavailable", lambda device: "openvino is not installed")
    assert animator_module.auto_int8(cpu) == "openvino is not installed"
    assert animator_module.resolve_precision("auto", cpu) != "int8"
    monkeypatch.setattr(animator_module, "int8_unavailable", lambda device: None)
    monkeypatch.setenv("FOMM_LIVE_INT8", "0")
    assert animator_module.resolve_precision("auto", cpu) != "int8", "the switch turns it off"


def test_int8_on_cuda_is_refused() -> None:
    with pytest.raises(animator_module.PrecisionError, match="use fp16"):
        animator_module.resolve_precision("int8", torch.device("cuda"))
    assert "on cuda use fp16" in int8_unavailable(torch.device("cuda"))


def test_cli_refuses_int8_on_cuda_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = golden_dir("tiny")
    argv = ["animate", "--source", str(folder / "source.png"), "--driving", str(folder), "--output",
            str(tmp_path / "out"), "--checkpoint", str(folder / "checkpoint.pth.tar"), "--config",
            str(folder / "config.yaml"), "--device", "cuda", "--precision", "int8"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision int8 is for the CPU" in err[0] and "fp16" in err[0], err


def _default_runtime() -> str | None:
    for name in ("openvino", "onnxruntime"):
        if int8_unavailable(torch.device("cpu"), name) is None:
            return name
    return None


@pytest.mark.skipif(_default_runtime() is None, reason="no int8 runtime installed (pip install openvino nncf)")
@torch.inference_mode()
def test_real_runtime_passes_its_first_frame_on_golden_tiny(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """The default runtime, for real: calibration, the cached graph, and the first frame against float32; the
    runtime's own progress bar stays out of the output (the engine shows its own, on a terminal only)."""
    kp_detector, generator, _ = tiny()
    folder = golden_dir("tiny")
    animator = Animator(kp_detector, generator, device="cpu", precision="fp32")
    engine = Int8Engine(kp_detector, generator, device=torch.device("cpu"), runtime_name=_default_runtime(),
                        poses=8, cache_dir=tmp_path)
    animator.engine = engine
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(read_rgb(folder / "driving_0.png"))
    frames = [animator.animate(read_rgb(folder / f"driving_{i}.png")) for i in range(3)]
    assert engine.name == "int8", engine.reason
    generator_checks = [c for c in engine.checks if c.path == "int8"]
    assert generator_checks[0].ok and generator_checks[0].psnr_db >= INT8_MIN_PSNR_DB, generator_checks[0]
    assert all(f.shape == (256, 256, 3) and f.dtype == np.uint8 for f in frames)
    printed = capfd.readouterr()
    assert "Statistics collection" not in printed.out + printed.err, "NNCF's bar is silenced"
    if engine.runtime.float_keypoints:  # the keypoint detector ran as the runtime's float32 graph, checked once
        keypoint_checks = [c for c in engine.checks if c.path == KEYPOINT_PATH]
        assert len(keypoint_checks) == 1 and keypoint_checks[0].ok, keypoint_checks
        assert engine.keypoint_path.state == "checked"


# --- the keypoint detector as the runtime's float32 graph ---------------------------------------------------------

class KeypointStandIn(ExactStandIn):
    """A stand-in runtime that runs the keypoint detector too: 'converts' it to the PyTorch module itself (after the
    real ONNX export, which it checks exists), optionally moving every keypoint by ``error``."""

    float_keypoints = True
    error = 0.0
    fail_build = False
    conversions = 0

    def build_keypoints(self, folder, *, onnx_path):
        if self.fail_build:
            raise RuntimeError("conversion failed (stand-in)")
        assert Path(onnx_path).stat().st_size > 0, "the keypoint detector was exported to ONNX"
        type(self).conversions += 1
        (folder / "kp_standin.txt").write_text("converted", encoding="utf-8")

    def load_keypoints(self, folder, *, threads):
        if not (folder / "kp_standin.txt").exists():
            raise FileNotFoundError(folder / "kp_standin.txt")
        kp_detector, error = self.kp_detector, self.error

        def run(feeds):
            with torch.no_grad():
                kp = kp_detector(torch.from_numpy(feeds["image"]))
            out = {"kp_value": kp.value.numpy() + error}
            if kp.jacobian is not None:
                out["kp_jacobian"] = kp.jacobian.numpy()
            return out

        return run


def keypoint_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **attributes):
    kp_detector, generator, source = tiny()
    runtime = KeypointStandIn()
    runtime.graph = FrameGraph(generator, has_jacobian=True).eval()
    runtime.kp_detector = kp_detector
    for name, value in attributes.items():
        setattr(runtime, name, value)
    monkeypatch.setattr(int8_module, "pick_runtime", lambda requested=None: runtime)
    engine = Int8Engine(kp_detector, generator, device=torch.device("cpu"), poses=POSES, cache_dir=tmp_path,
                        fallback_precision="fp32")
    return engine, kp_detector, source


@torch.inference_mode()
def test_runtime_keypoints_are_checked_once_and_converted_once_per_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    KeypointStandIn.conversions = 0
    engine, kp_detector, source = keypoint_engine(tmp_path, monkeypatch)
    batch = torch.cat([source, source.flip(-1)])  # two images: the graph takes one at a time
    got = engine.keypoints(batch)
    want = kp_detector(batch)
    # one image at a time against a batch of two: equal but for the batch's reordered float32 sums
    torch.testing.assert_close(got.value, want.value, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.jacobian, want.jacobian, rtol=0, atol=1e-6)
    assert engine.keypoint_path.state == "checked" and engine.keypoint_path.cache_hit is False
    checks = [c for c in engine.checks if c.path == KEYPOINT_PATH]
    assert len(checks) == 1 and checks[0].ok and checks[0].max_abs <= 1e-6, checks
    engine.keypoints(source)
    assert len(engine.checks) == 1, "checked on the first input only"
    assert [p.name[:3] for p in tmp_path.iterdir()] == ["kp-"], "one folder, for the checkpoint, not the photo"
    again, _, _ = keypoint_engine(tmp_path, monkeypatch)  # the next start: converted already
    again.keypoints(source.flip(-2))
    assert again.keypoint_path.cache_hit is True and KeypointStandIn.conversions == 1
    again.close()
    again.close()  # safe twice; the compiled graph is let go
    assert again.keypoint_path.state == "eager"


@torch.inference_mode()
def test_runtime_keypoints_off_by_more_than_float32_fall_back_to_pytorch_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    engine, kp_detector, source = keypoint_engine(tmp_path, monkeypatch, error=1e-3)  # 10x the float32 bound
    with caplog.at_level(logging.WARNING):
        first = engine.keypoints(source)
        later = engine.keypoints(source.flip(-1))
    assert torch.equal(first.value, kp_detector(source).value), "the failed first input gets PyTorch's keypoints"
    assert torch.equal(later.value, kp_detector(source.flip(-1)).value), "and so does every later one"
    assert engine.keypoint_path.state == "eager"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "keypoint detector" in warnings[0].getMessage(), warnings
    assert "1.0e-03" in warnings[0].getMessage(), "names the measured error"


@torch.inference_mode()
def test_runtime_keypoints_that_fail_to_convert_or_load_leave_pytorch_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    engine, kp_detector, source = keypoint_engine(tmp_path / "a", monkeypatch, fail_build=True)
    with caplog.at_level(logging.WARNING):
        got = engine.keypoints(source)
    assert torch.equal(got.value, kp_detector(source).value) and engine.keypoint_path.state == "eager"
    assert "conversion failed" in caplog.text
    KeypointStandIn.conversions = 0
    engine, _, _ = keypoint_engine(tmp_path / "b", monkeypatch)
    engine.keypoints(source)
    folder = next((tmp_path / "b").glob("kp-*"))
    (folder / "kp_standin.txt").unlink()  # a damaged cache: converted again, not given up
    again, _, _ = keypoint_engine(tmp_path / "b", monkeypatch)
    again.keypoints(source)
    assert again.keypoint_path.state == "checked" and KeypointStandIn.conversions == 2


def test_doctor_says_whether_int8_runs_and_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from fomm_live.live.doctor import WARN, check_int8

    monkeypatch.setattr(int8_module, "int8_unavailable", lambda device, name=None: "openvino is not installed")
    check = check_int8()
    assert check.status == WARN and "not available: openvino is not installed" in check.detail
    if int8_unavailable(torch.device("cpu")) is None:
        monkeypatch.undo()
        monkeypatch.setenv("FOMM_LIVE_INT8", "0")
        check = check_int8()
        assert check.status == "OK" and "auto does not use it (FOMM_LIVE_INT8=0)" in check.detail
