"""Engines and fast paths: selection and fallback, CPU tuning, parity of every path with the original (golden data),
and the TensorRT cache logic (with stand-in builders: TensorRT itself needs a GPU)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOLDEN_VARIANTS, golden_dir, read_rgb
from helpers.fast_paths import assert_fast_path_ran

import fomm_live.models.engines as engines
import fomm_live.models.engines.cpu as engines_cpu
from fomm_live.models import Animator, MotionOptions, build_networks, load_config
from fomm_live.models.engines import (
    EagerEngine,
    Engine,
    EngineError,
    create_engine,
    decode_with_kernels,
    default_precision,
    fold_batch_norm,
    prepare_generator,
    psnr,
)
from fomm_live.models.engines.tensorrt import (
    TensorRTEngine,
    architecture_digest,
    cache_key,
    load_or_build,
    weights_digest,
)

IMAGE_TOL = 1e-4  # fp32 paths, as tests/test_golden.py
KP_TOL = 1e-5
MIN_PSNR_DB = 40.0  # reduced-precision paths
HAS_CUDA = torch.cuda.is_available()
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside PyTorch's exporter


def run_golden(variant: str, mode: str, **kwargs) -> tuple[dict[str, list[np.ndarray]], dict, Engine]:
    """The cached path of an Animator on the golden inputs: keypoints and generator outputs for the 3 frames, and the
    engine that made them (for ``assert_fast_path_ran``)."""
    folder = golden_dir(variant)
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml",
                                        motion=MotionOptions(relative=mode == "relative"), **kwargs)
    expected = dict(np.load(folder / "expected.npz"))
    frames = [read_rgb(folder / f"driving_{i}.png") for i in range(3)]
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(frames[0])
    got: dict[str, list[np.ndarray]] = {}
    for frame in frames:
        kp = animator.keypoints(frame)
        got.setdefault("kp_value", []).append(kp.value.cpu().numpy())
        for key, value in animator.generate(kp).items():
            got.setdefault(key, []).append(value.cpu().numpy())
    animator.close()
    return got, expected, animator.engine


def check_fp32(got: dict, expected: dict, mode: str, label: str) -> None:
    for i in range(3):
        err = np.abs(got["kp_value"][i] - expected[f"kp_driving_{i}_value"]).max()
        assert err <= KP_TOL, f"{label}: kp_driving_{i}_value {err:.2e}"
        for key in ("prediction", "mask", "occlusion_map"):
            name = f"{mode}_{i}_{key}"
            if name in expected:
                err = np.abs(got[key][i].astype(np.float64) - expected[name]).max()
                assert err <= IMAGE_TOL, f"{label}: {name} max abs error {err:.2e} > {IMAGE_TOL:.0e}"


@pytest.mark.parametrize("mode", ["relative", "absolute"])
@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_cpu_fp32_fast_path_matches_original(variant: str, mode: str) -> None:
    """Folded batch norms + channels_last + cached source, float32: the original's numbers within 1e-4."""
    got, expected, engine = run_golden(variant, mode, device="cpu", precision="fp32", engine="eager")
    assert_fast_path_ran(engine, name="eager", precision="fp32")
    check_fp32(got, expected, mode, "eager fp32 fast path")


def test_fast_path_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """FOMM_LIVE_FAST=0 runs the networks as loaded (no tuned copy), still to the original's numbers."""
    monkeypatch.setenv("FOMM_LIVE_FAST", "0")
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    engine = EagerEngine(kp, gen, device=torch.device("cpu"), precision="fp32")
    assert not engine.fast and engine.generator is gen
    monkeypatch.setenv("FOMM_LIVE_FAST", "1")
    engine = EagerEngine(kp, gen, device=torch.device("cpu"), precision="fp32")
    assert engine.fast and engine.generator is not gen
    monkeypatch.setenv("FOMM_LIVE_FAST", "0")
    got, expected, engine = run_golden("tiny", "relative", device="cpu", precision="fp32", engine="eager")
    assert_fast_path_ran(engine, name="eager", precision="fp32")
    check_fp32(got, expected, "relative", "eager fp32, fast path off")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_cpu_reduced_precision_within_40_db(variant: str, precision: str) -> None:
    """bf16 (the CPU default where native) and fp16 (the CUDA default; its numerics checked here on the CPU) keep
    the prediction within PSNR 40 dB of the original; keypoints stay float32 and exact. The frames come from that
    precision: a failed first-frame check (which switches to float32, whose frames would pass too) fails the test."""
    got, expected, engine = run_golden(variant, "relative", device="cpu", precision=precision, engine="eager")
    assert_fast_path_ran(engine, name="eager", precision=precision, paths=(precision,))
    for i in range(3):
        err = np.abs(got["kp_value"][i] - expected[f"kp_driving_{i}_value"]).max()
        assert err <= KP_TOL, f"kp_driving_{i}_value {err:.2e}"
        quality = psnr(got["prediction"][i], expected[f"relative_{i}_prediction"])
        assert quality >= MIN_PSNR_DB, f"{precision} frame {i}: PSNR {quality:.1f} dB < {MIN_PSNR_DB} dB"


@pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime are not installed (pip install -e '.[test]')")
@pytest.mark.parametrize("mode", ["relative", "absolute"])
@pytest.mark.usefixtures("onnx_export_once")
def test_onnxruntime_engine_matches_original(mode: str) -> None:
    """ONNX Runtime ran every frame (its first-frame check passed, no fallback to eager) and gave the original's."""
    got, expected, engine = run_golden("tiny", mode, device="cpu", precision="auto", engine="onnxruntime")
    assert_fast_path_ran(engine, name="onnxruntime", precision="fp32", paths=("onnxruntime",))
    check_fp32(got, expected, mode, "onnxruntime engine")


@pytest.mark.usefixtures("onnx_export_once")
def test_onnxruntime_engine_is_float32_and_batches() -> None:
    if not HAS_ORT:
        pytest.skip("onnx / onnxruntime are not installed (pip install -e '.[test]')")
    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="bf16", engine="onnxruntime")
    assert animator.engine.name == "onnxruntime" and animator.precision == "fp32"
    animator.set_source(read_rgb(folder / "source.png"))
    frames = torch.stack([torch.from_numpy(np.array(read_rgb(folder / f"driving_{i}.png"))).permute(2, 0, 1)
                          for i in range(3)]).float() / 255
    out = animator.animate_tensor(frames)  # a batch of 3 runs frame by frame through batch-1 graphs
    assert_fast_path_ran(animator.engine, name="onnxruntime", precision="fp32", paths=("onnxruntime",))
    expected = np.load(folder / "expected.npz")
    for i in range(3):
        err = np.abs(out["prediction"][i:i + 1].numpy().astype(np.float64) - expected[f"relative_{i}_prediction"])
        assert err.max() <= IMAGE_TOL, f"batch item {i}: {err.max():.2e}"


def test_engine_selection_on_cpu(caplog: pytest.LogCaptureFixture) -> None:
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    with caplog.at_level(logging.INFO, logger="fomm_live.models.engines"):
        engine = create_engine(kp, gen, device=torch.device("cpu"), precision="fp32", engine="auto")
    assert engine.name == "eager"
    assert "engine: eager on cpu" in caplog.text and "TensorRT needs CUDA" in caplog.text
    with pytest.raises(ValueError, match="unknown engine"):
        create_engine(kp, gen, device=torch.device("cpu"), precision="fp32", engine="fastest")
    with pytest.raises(ValueError, match="unknown engine"):
        Animator(kp, gen, device="cpu", engine="fastest")


def test_tensorrt_without_cuda_falls_back_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    with caplog.at_level(logging.WARNING):
        engine = create_engine(kp, gen, device=torch.device("cpu"), precision="fp32", engine="tensorrt")
    assert engine.name == "eager"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "falling back to eager" in warnings[0].getMessage()
    with pytest.raises(EngineError, match="CUDA"):
        TensorRTEngine(kp, gen, device=torch.device("cpu"), precision="fp16", image_size=256)


def test_missing_onnxruntime_falls_back(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import builtins

    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    with caplog.at_level(logging.WARNING):
        engine = create_engine(kp, gen, device=torch.device("cpu"), precision="fp32", engine="onnxruntime")
    assert engine.name == "eager" and "onnxruntime is not installed" in engine.reason
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1


def test_precision_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_precision(torch.device("cuda")) == "fp16"
    monkeypatch.setattr(engines_cpu, "cpu_bf16_support", lambda: "avx512_bf16")
    assert default_precision(torch.device("cpu")) == "bf16"
    monkeypatch.setattr(engines_cpu, "cpu_bf16_support", lambda: None)
    assert default_precision(torch.device("cpu")) == "fp32"


def test_cpu_bf16_detection_reads_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines_cpu, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "avx512_bf16"}))
    assert engines_cpu.cpu_bf16_support() == "amx_bf16"
    monkeypatch.setattr(engines_cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert engines_cpu.cpu_bf16_support() == "avx512_bf16"
    flags = engines.cpu_flags()
    if Path("/proc/cpuinfo").exists():
        assert flags, "/proc/cpuinfo exists but no flags were read"


def test_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("FOMM_LIVE_THREADS", "1")
        assert engines.configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("FOMM_LIVE_THREADS")
        assert engines.configure_threads() == engines.physical_cores() == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(before)
        assert engines.configure_threads() == before  # the user's OMP_NUM_THREADS wins: left alone
    finally:
        torch.set_num_threads(before)


def test_fold_batch_norm_counts_and_keeps_outputs() -> None:
    torch.manual_seed(0)
    kp, gen = build_networks(load_config("vox-256"))
    for module in gen.modules():  # non-trivial statistics, or folding would be an identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    # vox-256: generator first + 2 down + 2 up = 5, 6 residual blocks (norm2 each) = 6, dense motion hourglass 5 + 5.
    tuned = prepare_generator(gen, device=torch.device("cpu"), precision="fp32")
    remaining = sum(isinstance(m, torch.nn.BatchNorm2d) for m in tuned.modules())
    assert remaining == 6, "only the residual blocks' norm1 (on the residual input) should remain"
    assert fold_batch_norm(tuned) == 0  # nothing left to fold
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in gen.modules()) == 27  # the original is untouched
    source, driving = torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        kp_source, kp_driving = kp(source), kp(driving)
        want = gen.decode(gen.encode_source(source), kp_driving, kp_source)
        got = tuned.decode(tuned.encode_source(source.contiguous(memory_format=torch.channels_last)), kp_driving,
                           kp_source)
    for key in ("prediction", "mask", "occlusion_map", "deformed"):
        err = (got[key] - want[key]).abs().max().item()
        assert err <= IMAGE_TOL, f"{key}: folded network differs by {err:.2e}"


@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_decode_composition_matches_generator_decode(variant: str) -> None:
    """``decode_with_kernels`` with the reference ops is the same computation as ``generator.decode``."""
    folder = golden_dir(variant)
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    animator.set_source(read_rgb(folder / "source.png"))
    kp = animator.keypoints(read_rgb(folder / "driving_1.png"))
    with torch.inference_mode():
        state = animator.generator.encode_source(animator.to_tensor(read_rgb(folder / "source.png")))
        want = animator.generator.decode(state, kp, animator.kp_source, with_deformed=False)
        got = decode_with_kernels(animator.generator, state, kp, animator.kp_source, use_kernel=False)
    assert set(got) == set(want)
    for key in got:
        assert torch.allclose(got[key], want[key], atol=1e-6, rtol=0), key


def test_compiled_decode_is_checked_against_eager(caplog: pytest.LogCaptureFixture) -> None:
    """The first compiled frame is compared with eager; a compiled decode that is off is dropped, with a warning.
    (A stand-in plays the compiled function: compiling the real one takes longer than this whole test file.)"""
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    engine = EagerEngine(kp, gen, device=torch.device("cpu"), precision="fp32", use_compile=False)
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        state, kp_source, kp_driving = engine.encode(source), kp(source), kp(driving)
        want = engine.decode(state, kp_driving, kp_source)["prediction"]

        def off_by_a_little(*args):
            out = engine._decode_frames(*args)
            return {**out, "prediction": out["prediction"] + 2e-4}

        engine._compiled, engine._compile_checked = off_by_a_little, False
        with caplog.at_level(logging.WARNING, logger="fomm_live.models.engines"):
            got = engine.decode(state, kp_driving, kp_source)["prediction"]
        assert not engine.compile_active and "differs from eager" in caplog.text
        assert torch.equal(got, want)
        engine._compiled, engine._compile_checked = engine._decode_frames, False  # an exact one stays in use
        engine.decode(state, kp_driving, kp_source)
        assert engine.compile_active


# --- TensorRT: cache logic here, the engine itself only where there is a GPU ----------------------------------------

def test_tensorrt_cache_key_covers_every_field() -> None:
    base = {"weights": "w", "architecture": "a", "gpu": "NVIDIA H100", "tensorrt_version": "10.9",
            "torch_tensorrt_version": "2.13.0", "precision": "fp16"}
    key = cache_key(**base)
    for field in base:
        assert cache_key(**{**base, field: base[field] + "x"}) != key, f"{field} does not change the key"
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    kp2, gen2 = build_networks(load_config(golden_dir("tiny_zero_order") / "config.yaml"))
    assert weights_digest(kp, gen) == weights_digest(kp, gen)
    with torch.no_grad():
        gen.final.bias.add_(1e-3)
    changed = weights_digest(kp, gen)
    with torch.no_grad():
        gen.final.bias.sub_(1e-3)
    assert changed != weights_digest(kp, gen)
    assert architecture_digest(kp, gen, 256) != architecture_digest(kp2, gen2, 256)
    assert architecture_digest(kp, gen, 256) != architecture_digest(kp, gen, 512)


def test_tensorrt_cache_rebuilds_a_corrupt_file_with_a_stand_in_builder(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    builds = []

    def build(path: Path) -> None:
        builds.append(path)
        path.write_text("engine")

    def load(path: Path) -> str:
        text = path.read_text()
        if text != "engine":
            raise RuntimeError("bad magic")
        return text

    target = tmp_path / "cache" / "generator.ep"
    assert load_or_build(target, build, load) == "engine" and len(builds) == 1  # missing: built
    assert load_or_build(target, build, load) == "engine" and len(builds) == 1  # cached: loaded
    target.write_text("garbage")  # corrupt
    with caplog.at_level(logging.WARNING):
        assert load_or_build(target, build, load) == "engine"
    assert len(builds) == 2 and "rebuilding" in caplog.text
    assert builds[-1].name == "generator.tmp.ep" and not builds[-1].exists()  # built aside, then moved into place

    def failing_build(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("builder crashed")

    target.unlink()
    with pytest.raises(RuntimeError, match="crashed"):
        load_or_build(target, failing_build, load)
    assert list(target.parent.iterdir()) == []  # no half-written file left to be loaded next time


@pytest.mark.skipif(not HAS_CUDA or importlib.util.find_spec("torch_tensorrt") is None,
                    reason="TensorRT needs an NVIDIA GPU and torch-tensorrt (pip install -e '.[tensorrt]')")
def test_tensorrt_engine_matches_original(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOMM_LIVE_CACHE", str(tmp_path))
    got, expected, engine = run_golden("tiny", "relative", device="cuda", precision="fp16", engine="tensorrt")
    assert_fast_path_ran(engine, name="tensorrt", precision="fp16", paths=("tensorrt",))
    for i in range(3):
        quality = psnr(got["prediction"][i], expected[f"relative_{i}_prediction"])
        assert quality >= MIN_PSNR_DB, f"TensorRT fp16 frame {i}: PSNR {quality:.1f} dB"


@pytest.mark.skipif(not HAS_CUDA, reason="the CUDA eager path needs an NVIDIA GPU")
@pytest.mark.parametrize("kernels_env", ["0", "1"])
def test_cuda_eager_fp16_matches_original(kernels_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOMM_LIVE_KERNELS", kernels_env)
    kernels = ("kernel:dense_motion_inputs", "kernel:deform_features") if kernels_env == "1" else ()
    got, expected, engine = run_golden("tiny", "relative", device="cuda", precision="fp16", engine="eager")
    assert_fast_path_ran(engine, name="eager", precision="fp16", paths=("fp16", *kernels))
    for i in range(3):
        quality = psnr(got["prediction"][i], expected[f"relative_{i}_prediction"])
        assert quality >= MIN_PSNR_DB, f"CUDA fp16 (kernels {kernels_env}) frame {i}: PSNR {quality:.1f} dB"
    got, expected, engine = run_golden("tiny", "relative", device="cuda", precision="fp32", engine="eager")
    assert_fast_path_ran(engine, name="eager", precision="fp32", paths=kernels)
    check_fp32(got, expected, "relative", f"CUDA fp32 (kernels {kernels_env})")


# --- TensorRT engine life cycle on the CPU, with a stand-in torch-tensorrt ------------------------------------------
# The stand-in "compiles" an exported program into its own module and saves it as torch-tensorrt does (an exported
# program file). What this checks is everything around the builder: cache folders and keys, reuse, corrupt files,
# both self-checks, output binding, fallback. The real builder and its numbers need a GPU.

class StandInTensorRT:
    """Stand-ins for the ``tensorrt`` and ``torch_tensorrt`` modules; counts builds; ``offset`` spoils predictions."""

    def __init__(self) -> None:
        import importlib.machinery
        import types

        self.builds: list[str] = []
        self.offset = 0.0
        self.tensorrt = types.ModuleType("tensorrt")
        self.torch_tensorrt = types.ModuleType("torch_tensorrt")
        for module in (self.tensorrt, self.torch_tensorrt):
            module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)  # the exporter looks for it
        self.tensorrt.__version__ = "10.0-standin"
        self.torch_tensorrt.__version__ = "2.13-standin"
        self.torch_tensorrt.save = self.save
        self.torch_tensorrt.load = torch.export.load
        self.torch_tensorrt.dynamo = types.SimpleNamespace(compile=self.compile)

    def compile(self, program, *, arg_inputs, min_block_size=5, truncate_double=False, disable_tf32=False,
                enabled_precisions=None):
        self.builds.append("kp_detector" if len(arg_inputs) == 1 else "generator")
        module, offset = program.module(), self.offset
        if not offset or len(arg_inputs) == 1:
            return module

        class Spoiled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = module

            def forward(self, *inputs):
                outs = self.inner(*inputs)
                return (outs[0] + offset, *outs[1:])

        return Spoiled()

    def save(self, module, file_path, *, output_format, arg_inputs):
        assert output_format == "exported_program"
        torch.export.save(torch.export.export(module, tuple(arg_inputs)), file_path)


@pytest.fixture
def standin_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> StandInTensorRT:
    import sys

    import fomm_live.models.engines.tensorrt as trt

    fake = StandInTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.tensorrt)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake.torch_tensorrt)
    monkeypatch.setattr(trt, "require_cuda", lambda device: None)
    monkeypatch.setattr(trt, "gpu_name", lambda device: "Stand-in GPU")
    monkeypatch.setenv("FOMM_LIVE_CACHE", str(tmp_path))
    return fake


def test_tensorrt_stand_in_builder_is_cached_rebuilt_and_its_export_round_trip_matches_original(
        standin_tensorrt: StandInTensorRT, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The TensorRT engine around a stand-in builder that returns the exported program unchanged: what this proves
    is everything but TensorRT itself (export, save, load and the cache: a build per weights, none when cached, one
    after a corrupt file), with the golden outputs kept at float32 tolerance through that round trip."""
    with caplog.at_level(logging.INFO):
        got, expected, engine = run_golden("tiny", "relative", device="cpu", precision="fp32", engine="tensorrt")
    assert "engine: tensorrt on cpu" in caplog.text and "checked against PyTorch on its first real input" in caplog.text
    assert_fast_path_ran(engine, name="tensorrt", precision="fp32", paths=("tensorrt",))
    check_fp32(got, expected, "relative", "TensorRT engine (stand-in builder)")
    assert sorted(standin_tensorrt.builds) == ["generator", "kp_detector"]
    (folder,) = (tmp_path / "tensorrt").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["generator.pt2", "kp_detector.pt2"]

    run_golden("tiny", "relative", device="cpu", precision="fp32", engine="tensorrt")
    assert len(standin_tensorrt.builds) == 2, "the cached engines were built again"

    (folder / "generator.pt2").write_bytes(b"not an exported program")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        got, _, engine = run_golden("tiny", "relative", device="cpu", precision="fp32", engine="tensorrt")
    assert standin_tensorrt.builds[2:] == ["generator"] and "rebuilding" in caplog.text
    assert_fast_path_ran(engine, name="tensorrt", precision="fp32", paths=("tensorrt",))
    check_fp32(got, expected, "relative", "TensorRT engine rebuilt after a corrupt cache file")

    run_golden("tiny_zero_order", "relative", device="cpu", precision="fp32", engine="tensorrt")  # other weights
    assert len(standin_tensorrt.builds) == 5 and len(list((tmp_path / "tensorrt").iterdir())) == 2


def test_tensorrt_stand_in_engine_that_fails_its_build_check_is_not_used(standin_tensorrt: StandInTensorRT,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    standin_tensorrt.offset = 0.05  # every prediction off by 0.05: ~26 dB, below the 40 dB bar
    with caplog.at_level(logging.WARNING):
        got, expected, engine = run_golden("tiny", "relative", device="cpu", precision="fp16", engine="tensorrt")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "dB from PyTorch float32" in warnings[0] and "falling back to eager" in warnings[0]
    for i in range(3):
        assert psnr(got["prediction"][i], expected[f"relative_{i}_prediction"]) >= MIN_PSNR_DB


def test_tensorrt_stand_in_engine_checked_again_on_real_inputs(standin_tensorrt: StandInTensorRT,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="tensorrt")
    engine = animator.engine
    assert engine.name == "tensorrt"
    good = engine.modules["generator"]
    engine.modules["generator"] = lambda *inputs: (good(*inputs)[0] + 0.01, *good(*inputs)[1:])  # right at build only
    animator.set_source(read_rgb(folder / "source.png"))
    frames = [read_rgb(folder / f"driving_{i}.png") for i in range(3)]
    animator.calibrate(frames[0])
    expected = dict(np.load(folder / "expected.npz"))
    with caplog.at_level(logging.WARNING):
        for i, frame in enumerate(frames):
            prediction = animator.generate(animator.keypoints(frame))["prediction"].numpy()
            err = np.abs(prediction.astype(np.float64) - expected[f"relative_{i}_prediction"]).max()
            assert err <= IMAGE_TOL, f"frame {i} after the fallback: {err:.2e}"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "first real input" in warnings[0] and "CUDA eager" in warnings[0]
    assert engine.name == "eager" and engine.reason.startswith("fallback:") and engine.modules == {}
    # Both engines passed at build; on real inputs the keypoints passed, the generator did not.
    assert [(c.path, c.ok) for c in engine.checks] == [("tensorrt", True)] * 3 + [("tensorrt", False)]
    assert "first real input" in engine.checks[-1].detail and engine.checks[-1].max_abs > 5e-3
    animator.close()


def test_exact_float32_turns_tf32_off_on_cuda_only() -> None:
    from fomm_live.models.engines import exact_float32

    before = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        with exact_float32(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32
        with exact_float32(torch.device("cuda")):
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32, "the switch was not put back"
    finally:
        torch.backends.cudnn.allow_tf32 = before


def test_compile_and_cuda_graph_switches(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """``FOMM_LIVE_COMPILE`` and the constructor's options; compiling itself is lazy, so nothing compiles here."""
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    cpu = torch.device("cpu")
    monkeypatch.delenv("FOMM_LIVE_COMPILE", raising=False)
    engine = EagerEngine(kp, gen, device=cpu, precision="fp32")
    assert not engine.compiled and not engine.cuda_graphs
    monkeypatch.setenv("FOMM_LIVE_COMPILE", "1")
    assert EagerEngine(kp, gen, device=cpu, precision="fp32").compiled
    assert not EagerEngine(kp, gen, device=cpu, precision="fp32", use_compile=False).compiled
    monkeypatch.setenv("FOMM_LIVE_COMPILE", "cudagraphs")
    with caplog.at_level(logging.WARNING, logger="fomm_live.models.engines"):
        engine = EagerEngine(kp, gen, device=cpu, precision="fp32")
    assert engine.compiled and not engine.cuda_graphs and "CUDA graphs need a CUDA device" in caplog.text
    assert not EagerEngine(kp, gen, device=cpu, precision="fp32", use_compile=False).compiled
    assert not EagerEngine(kp, gen, device=cpu, precision="fp32", use_compile=True, use_kernels=True).use_kernels


def test_cuda_graph_outputs_are_copied_out() -> None:
    """With CUDA graphs the compiled decode's outputs live in buffers the next replay overwrites; the engine returns
    copies, the motion field too. (A stand-in plays the compiled function, which shares one output buffer between
    calls.)"""
    kp, gen = build_networks(load_config(golden_dir("tiny") / "config.yaml"))
    engine = EagerEngine(kp, gen, device=torch.device("cpu"), precision="fp32", use_compile=False)
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    buffers: dict[str, torch.Tensor] = {}

    def replay(*args):
        for key, value in engine._decode_frames(*args).items():
            buffers.setdefault(key, torch.empty_like(value)).copy_(value)
        return buffers

    with torch.inference_mode():
        state, kp_source = engine.encode(source), kp(source)
        first_kp, second_kp = kp(driving), kp(source)
        want = {k: v.clone() for k, v in engine.decode(state, first_kp, kp_source, with_deformation=True).items()}
        engine._compiled, engine._compile_checked, engine.cuda_graphs = replay, True, True
        first = engine.decode(state, first_kp, kp_source, with_deformation=True)
        engine.decode(state, second_kp, kp_source, with_deformation=True)
    for key in ("prediction", "deformation", "occlusion_map"):
        assert first[key].data_ptr() != buffers[key].data_ptr(), key
        assert torch.equal(first[key], want[key]), f"the first frame's {key} was overwritten by the second"


def test_one_cache_folder_for_the_whole_program(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TensorRT engines and the demo clip share ``models.paths.cache_root`` on every platform."""
    import sys

    from fomm_live.live.paths import cache_dir
    from fomm_live.models.paths import cache_root

    monkeypatch.setenv("FOMM_LIVE_CACHE", str(tmp_path / "override"))
    assert cache_root() == tmp_path / "override" and not cache_root().exists()
    assert cache_dir() == tmp_path / "override" and cache_dir().is_dir()  # created on demand
    monkeypatch.delenv("FOMM_LIVE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert cache_root() == tmp_path / "xdg" / "fomm-live"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_root() == tmp_path / ".cache" / "fomm-live"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cache_root() == tmp_path / "Library" / "Caches" / "fomm-live"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert cache_root() == tmp_path / "local" / "fomm-live"


def test_tensorrt_precision_options_follow_the_installed_release() -> None:
    """fp16 is asked for the way the installed torch-tensorrt takes it; a release with no way at all is refused."""
    import types

    from fomm_live.models.engines.tensorrt import _compile_settings

    def release(compile_fn):
        return types.SimpleNamespace(__version__="x", dynamo=types.SimpleNamespace(compile=compile_fn))

    def old(program, *, arg_inputs=None, enabled_precisions=None, disable_tf32=False, min_block_size=5,
            truncate_double=False):
        pass

    def typed(program, *, arg_inputs=None, use_explicit_typing=False, enable_autocast=False, low_precision_type=None,
              enabled_precisions=None, disable_tf32=False, min_block_size=5, truncate_double=False):
        pass

    def newest(program, *, arg_inputs=None, enable_autocast=False, autocast_low_precision_type=None,
               disable_tf32=False, min_block_size=5, truncate_double=False, **kwargs):
        pass

    def neither(program, *, arg_inputs=None, min_block_size=5, **kwargs):
        pass

    assert _compile_settings(release(old), "fp16") == {"min_block_size": 1, "truncate_double": True,
                                                       "enabled_precisions": {torch.float16}}
    assert _compile_settings(release(typed), "fp16") == {
        "min_block_size": 1, "truncate_double": True, "enable_autocast": True, "low_precision_type": torch.float16,
        "use_explicit_typing": True}
    assert _compile_settings(release(newest), "bf16") == {
        "min_block_size": 1, "truncate_double": True, "enable_autocast": True,
        "autocast_low_precision_type": torch.bfloat16}
    assert _compile_settings(release(newest), "fp32") == {"min_block_size": 1, "truncate_double": True,
                                                         "disable_tf32": True}
    assert _compile_settings(release(neither), "fp32") == {"min_block_size": 1}
    with pytest.raises(EngineError, match="no option for fp16"):
        _compile_settings(release(neither), "fp16")


def test_tensorrt_stand_in_engine_gives_the_motion_field_and_checks_it(standin_tensorrt: StandInTensorRT,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """``with_deformation`` runs the generator engine (its graph has the ``deformation`` output) and the first real
    input's check covers the field: a field off by 0.05 grid units on real inputs means CUDA eager, one warning."""
    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="tensorrt")
    engine = animator.engine
    assert engine.name == "tensorrt" and engine.graphs["generator"].output_names[-1] == "deformation"
    good, calls = engine.modules["generator"], []

    def counted(*inputs):
        calls.append(1)
        return good(*inputs)

    engine.modules["generator"] = counted
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(read_rgb(folder / "driving_0.png"))
    kps = [animator.keypoints(read_rgb(folder / f"driving_{i}.png")) for i in (1, 2)]

    def plain_field(kp) -> torch.Tensor:
        with torch.inference_mode():
            kp_norm = animator.normalizer(kp, animator.kp_source)
            return animator.generator.decode(animator.source, kp_norm, animator.kp_source,
                                             with_deformation=True)["deformation"]

    out = animator.generate(kps[0], with_motion=True)
    assert len(calls) == 1 and engine.checks[-1].ok and "deformation max abs" in engine.checks[-1].detail
    assert (out["deformation"] - plain_field(kps[0])).abs().max().item() <= IMAGE_TOL
    assert "deformation" not in animator.generate(kps[0]) and len(calls) == 2

    # The same engines, but the field off by 0.05 from the next real input on (its check runs again).
    engine._checked.discard("generator")
    engine.modules["generator"] = lambda *inputs: (*good(*inputs)[:-1], good(*inputs)[-1] + 0.05)
    with caplog.at_level(logging.WARNING):
        out = animator.generate(kps[1], with_motion=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "motion field" in warnings[0] and "CUDA eager" in warnings[0], warnings
    assert engine.name == "eager" and not engine.checks[-1].ok and engine.checks[-1].max_abs >= 0.05 - 1e-6
    assert (out["deformation"] - plain_field(kps[1])).abs().max().item() <= IMAGE_TOL
    animator.close()
