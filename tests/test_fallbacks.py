"""Every fast path checks itself on the first real frame and falls back when it fails, on the CPU.

Each test breaks one path on purpose (a kernel that raises or returns wrong numbers, a compile that fails or is wrong,
a reduced-precision decode out of tolerance, ONNX Runtime off on the first frame, a compiled, reduced-precision or ONNX
Runtime decode whose frame is right but whose motion field is wrong, running out of memory) and proves
that the frames still equal the float32 reference within ``FP32_ATOL``, that exactly one warning names the path and
the measured error, and that ``engine.checks`` holds the verdict. Tests named ``stand_in`` replace the kernels or the
compiler by small Python functions (the real Triton kernels are slow in the CPU interpreter, and a real compile takes
longer than this file); one test runs the real kernels in Triton's interpreter and sees them pass.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import os

import numpy as np
import pytest
import torch
from conftest import golden_dir, read_rgb

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernel modules are imported

import fomm_live.models.engines.base as base  # noqa: E402
from fomm_live import kernels  # noqa: E402
from fomm_live.models import Animator, MotionOptions  # noqa: E402
from fomm_live.models.engines import FP32_ATOL, CheckResult, DeviceError, EagerEngine, device_failure  # noqa: E402

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
FRAMES = 2  # the first (checked) frame and one after it
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside PyTorch's exporter


def _env(monkeypatch: pytest.MonkeyPatch, *, compile_: str = "0", kernels_: str = "0") -> None:
    monkeypatch.setenv("FOMM_LIVE_COMPILE", compile_)
    monkeypatch.setenv("FOMM_LIVE_KERNELS", kernels_)
    monkeypatch.delenv("FOMM_LIVE_FAST", raising=False)


def make(precision: str = "fp32", engine: str = "eager") -> Animator:
    folder = golden_dir("tiny")
    return Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                    precision=precision, engine=engine, motion=MotionOptions(relative=True))


def animate(animator: Animator) -> list[np.ndarray]:
    """Predictions for the golden driving frames (source set, first frame calibrated)."""
    folder = golden_dir("tiny")
    frames = [read_rgb(folder / f"driving_{i}.png") for i in range(FRAMES)]
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(frames[0])
    return [animator.generate(animator.keypoints(f))["prediction"].numpy().astype(np.float64) for f in frames]


@pytest.fixture(scope="module")
def reference() -> list[np.ndarray]:
    """Float32 eager without kernels or compile: the networks as loaded."""
    with pytest.MonkeyPatch.context() as mp:
        _env(mp)
        mp.setenv("FOMM_LIVE_FAST", "0")
        animator = make()
        assert not animator.engine.fast and not animator.engine.use_kernels and not animator.engine.compiled
        return animate(animator)


def animate_detail(animator: Animator) -> list[dict[str, np.ndarray]]:
    """Predictions and motion fields (``deformation``) for the golden driving frames, as photo framing asks."""
    folder = golden_dir("tiny")
    frames = [read_rgb(folder / f"driving_{i}.png") for i in range(FRAMES)]
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(frames[0])
    outs = [animator.generate(animator.keypoints(f), with_motion=True) for f in frames]
    return [{k: out[k].numpy().astype(np.float64) for k in ("prediction", "deformation")} for out in outs]


@pytest.fixture(scope="module")
def reference_motion() -> list[dict[str, np.ndarray]]:
    """Float32 eager without kernels or compile, with the motion field."""
    with pytest.MonkeyPatch.context() as mp:
        _env(mp)
        mp.setenv("FOMM_LIVE_FAST", "0")
        return animate_detail(make())


def assert_reference_motion(got: list[dict[str, np.ndarray]], reference: list[dict[str, np.ndarray]]) -> None:
    for i, (g, w) in enumerate(zip(got, reference, strict=True)):
        for key in ("prediction", "deformation"):
            err = np.abs(g[key] - w[key]).max()
            assert err <= FP32_ATOL, f"frame {i} {key}: max abs error {err:.2e} from the float32 reference"


def assert_reference(got: list[np.ndarray], reference: list[np.ndarray]) -> None:
    for i, (g, w) in enumerate(zip(got, reference, strict=True)):
        err = np.abs(g - w).max()
        assert err <= FP32_ATOL, f"frame {i}: max abs error {err:.2e} from the float32 reference > {FP32_ATOL:.0e}"


def our_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Warnings logged by this program (PyTorch's exporter logs its own about optional packages)."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("fomm_live.")]


def one_warning(caplog: pytest.LogCaptureFixture, path: str, measured: str) -> str:
    """The single warning of the run; it names ``path`` and contains ``measured`` (the error, in words)."""
    warnings = our_warnings(caplog)
    assert len(warnings) == 1, f"expected one warning, got {warnings}"
    assert f"[{path}]" in warnings[0] and measured in warnings[0], warnings[0]
    return warnings[0]


def verdicts(animator: Animator) -> dict[str, list[bool]]:
    out: dict[str, list[bool]] = {}
    for check in animator.engine.checks:
        assert isinstance(check, CheckResult) and check.path in base.CHECK_PATHS
        out.setdefault(check.path, []).append(check.ok)
    return out


# --- fused kernels ---------------------------------------------------------------------------------------------------

def _stand_in_kernels(monkeypatch: pytest.MonkeyPatch, *, deform) -> None:
    """Kernels "on" for CPU tensors, played by stand-ins: the exact reference for the dense motion inputs, and
    ``deform`` for the warp."""
    monkeypatch.setattr(kernels, "kernels_enabled", lambda device: True)
    reference_inputs = kernels.dense_motion_inputs

    def exact_inputs(*args, use_kernel=None, **kwargs):
        return reference_inputs(*args, use_kernel=False, **kwargs)

    monkeypatch.setattr(kernels, "dense_motion_inputs", exact_inputs)
    monkeypatch.setattr(kernels, "deform_features", deform)


def test_stand_in_kernel_that_raises_is_turned_off(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                                   reference: list[np.ndarray]) -> None:
    _env(monkeypatch)
    calls = []

    def broken(*args, use_kernel=None):
        calls.append(1)
        raise RuntimeError("stand-in kernel: PTX compilation failed")

    _stand_in_kernels(monkeypatch, deform=broken)
    animator = make()
    assert animator.engine.use_kernels
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    message = one_warning(caplog, "kernel:deform_features", "failed to run: RuntimeError")
    assert "PTX compilation failed" in message
    assert verdicts(animator) == {"kernel:dense_motion_inputs": [True], "kernel:deform_features": [False]}
    assert len(calls) == 1, "a kernel that failed was tried again"


def test_stand_in_kernel_with_wrong_numbers_is_turned_off(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture,
                                                          reference: list[np.ndarray]) -> None:
    _env(monkeypatch)
    reference_deform = functools.partial(kernels.deform_features, use_kernel=False)

    def noisy(features, deformation, occlusion_map, use_kernel=None):
        out = reference_deform(features, deformation, occlusion_map)
        return out + 1e-2 * torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)

    _stand_in_kernels(monkeypatch, deform=noisy)
    animator = make()
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    one_warning(caplog, "kernel:deform_features", "max abs")
    (check,) = [c for c in animator.engine.checks if c.path == "kernel:deform_features"]
    assert not check.ok and check.max_abs > 1e-2 and check.psnr_db is None


def test_lost_device_in_a_kernel_is_a_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA error from a kernel poisons the device: no op helps, so it is not hidden by a fallback."""
    _env(monkeypatch)

    def lost(*args, use_kernel=None):
        raise RuntimeError("CUDA error: unspecified launch failure\nCUDA kernel errors might be asynchronously ...")

    _stand_in_kernels(monkeypatch, deform=lost)
    animator = make()
    folder = golden_dir("tiny")
    animator.set_source(read_rgb(folder / "source.png"))
    with pytest.raises(DeviceError) as caught:
        animator.animate(read_rgb(folder / "driving_0.png"))
    assert "\n" not in str(caught.value) and "was lost" in str(caught.value)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_real_kernels_pass_their_checks(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                        reference: list[np.ndarray]) -> None:
    """The real Triton kernels (Triton's CPU interpreter without a GPU) pass their own first-frame checks."""
    _env(monkeypatch, kernels_="1")
    if not HAS_CUDA and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA GPU, and TRITON_INTERPRET was set to something other than 1 before the tests")
    animator = make()
    assert animator.engine.use_kernels
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    assert not our_warnings(caplog)
    assert verdicts(animator) == {"kernel:dense_motion_inputs": [True], "kernel:deform_features": [True]}
    assert all(c.max_abs is not None and c.max_abs < 1e-4 for c in animator.engine.checks)


# --- compile and CUDA graphs ------------------------------------------------------------------------------------------

def compile_that_raises(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """A stand-in ``torch.compile`` whose compiled function raises ``error`` when first called (where inductor and
    CUDA graphs fail in practice)."""

    def stand_in_compile(fn, **kwargs):
        def compiled(*args):
            raise error

        return compiled

    monkeypatch.setattr(torch, "compile", stand_in_compile)


def test_compile_that_fails_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                               reference: list[np.ndarray]) -> None:
    _env(monkeypatch, compile_="1")
    compile_that_raises(monkeypatch, RuntimeError("stand-in: inductor lowering failed"))
    animator = make()
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    one_warning(caplog, "compile", "inductor lowering failed")
    assert verdicts(animator) == {"compile": [False]} and not animator.engine.compile_active


def test_compile_call_that_raises_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture,
                                                      reference: list[np.ndarray]) -> None:
    _env(monkeypatch, compile_="1")

    def compile_raises(fn, **kwargs):
        raise RuntimeError("stand-in: dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", compile_raises)
    animator = make()  # starting is not the failure: the first frame is
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    one_warning(caplog, "compile", "not supported")
    assert verdicts(animator) == {"compile": [False]}


def spoiling_compile(key: str, offset: float):
    """A stand-in ``torch.compile``: the decode itself, with ``offset`` added to its output ``key``."""

    def stand_in(fn, **kwargs):
        def compiled(*args):
            out = fn(*args)
            return {**out, key: out[key] + offset}

        return compiled

    return stand_in


def test_compile_with_wrong_numbers_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture,
                                                        reference: list[np.ndarray]) -> None:
    _env(monkeypatch, compile_="1")
    monkeypatch.setattr(torch, "compile", spoiling_compile("prediction", 1e-3))
    animator = make()
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    one_warning(caplog, "compile", "max abs 1.0e-03")
    (check,) = animator.engine.checks
    assert check.path == "compile" and not check.ok and check.psnr_db is not None


def test_stand_in_compile_with_a_wrong_motion_field_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture,
                                                                        reference_motion: list[dict]) -> None:
    """A compiled decode whose frame is exact but whose motion field is off by 0.05 grid units (1.6 pixels of the
    64 x 64 field) fails its check on the field, like one with a wrong frame."""
    _env(monkeypatch, compile_="1")
    monkeypatch.setattr(torch, "compile", spoiling_compile("deformation", 0.05))
    animator = make()
    with caplog.at_level(logging.WARNING):
        got = animate_detail(animator)
    assert_reference_motion(got, reference_motion)
    message = one_warning(caplog, "compile", "max abs 5.0e-02")
    assert "deformation" in message
    (check,) = animator.engine.checks
    assert check.path == "compile" and not check.ok and check.psnr_db is None and check.detail == "deformation"
    assert not animator.engine.compile_active


def test_stand_in_cuda_graphs_fall_back_to_plain_compile(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """CUDA graphs -> compile -> eager. Stand-ins play both compiled decodes (CUDA graphs need a GPU): the graphs
    fail to capture, the plain compile is exact and stays in use."""
    _env(monkeypatch)
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)  # a plain "compile" that is exact
    folder = golden_dir("tiny")
    animator = make()
    engine: EagerEngine = animator.engine

    def capture_fails(*args):
        raise RuntimeError("stand-in: CUDA graph capture failed (operation not permitted when stream is capturing)")

    engine._compiled, engine.cuda_graphs, engine.compiled = capture_fails, True, True
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: None)
    animator.set_source(read_rgb(folder / "source.png"))
    with caplog.at_level(logging.WARNING):
        animator.animate(read_rgb(folder / "driving_1.png"))
    one_warning(caplog, "cuda_graphs", "capture failed")
    assert verdicts(animator) == {"cuda_graphs": [False], "compile": [True]}
    assert engine.compile_active and not engine.cuda_graphs


# --- reduced precision ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_out_of_tolerance_falls_back_to_float32(precision: str, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture,
                                                                  reference: list[np.ndarray]) -> None:
    """The reduced-precision copy of the generator is spoiled (its last layer shifted); the check sees it below
    40 dB and the engine goes float32, re-encoding the source, to the reference's numbers."""
    _env(monkeypatch)
    animator = make(precision)
    engine: EagerEngine = animator.engine
    assert engine.generator is not engine.reference_generator
    engine.generator.final.register_forward_hook(lambda module, inputs, output: output + 0.5)
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    one_warning(caplog, precision, " dB")
    (check,) = engine.checks
    assert check.path == precision and not check.ok and check.psnr_db < base.MIN_PSNR_DB
    assert engine.precision == "fp32" and animator.precision == "fp32"  # what the log and /stats then report


def test_reduced_precision_with_a_wrong_motion_field_falls_back_to_float32(monkeypatch: pytest.MonkeyPatch,
                                                                            caplog: pytest.LogCaptureFixture,
                                                                            reference_motion: list[dict]) -> None:
    """The bf16 decode is played by a stand-in whose frame is right but whose motion field is off by 0.1 grid units
    (beyond bf16's 2e-2): the check fails on the field, the engine goes float32."""
    _env(monkeypatch)
    animator = make("bf16")
    engine: EagerEngine = animator.engine
    real_decode = engine.generator.decode

    def spoiled_field(*args, **kwargs):
        out = real_decode(*args, **kwargs)
        return {**out, "deformation": out["deformation"] + 0.1} if "deformation" in out else out

    monkeypatch.setattr(engine.generator, "decode", spoiled_field)
    with caplog.at_level(logging.WARNING):
        got = animate_detail(animator)
    assert_reference_motion(got, reference_motion)
    message = one_warning(caplog, "bf16", "needs max abs <= 2e-02")  # 0.1 plus bf16's own error
    assert "deformation" in message and "float32" in message
    (check,) = engine.checks
    assert check.path == "bf16" and not check.ok and check.detail == "deformation" and check.max_abs >= 0.09
    assert engine.precision == "fp32"


def test_reduced_precision_within_tolerance_is_kept(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    _env(monkeypatch)
    animator = make("bf16")
    assert animator.engine.checks == []  # nothing checked before the first real frame
    with caplog.at_level(logging.WARNING):
        animate(animator)
    assert not our_warnings(caplog)
    (check,) = animator.engine.checks
    assert dataclasses.asdict(check).keys() == {"path", "ok", "max_abs", "psnr_db", "tolerance", "detail"}
    assert check.path == "bf16" and check.ok and check.psnr_db >= base.MIN_PSNR_DB
    assert check.tolerance == "PSNR >= 40 dB" and animator.engine.precision == "bf16"


def test_checks_run_on_the_first_frame_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 reference runs once, for the first frame; later frames run the checked path alone."""
    _env(monkeypatch)
    animator = make("bf16")
    engine: EagerEngine = animator.engine
    calls = []
    real_decode = engine.reference_generator.decode

    def counted(*args, **kwargs):
        calls.append(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(engine.reference_generator, "decode", counted)
    animate(animator)  # FRAMES frames
    assert FRAMES > 1 and len(calls) == 1 and len(engine.checks) == 1


# --- ONNX Runtime -----------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime are not installed (pip install -e '.[test]')")
@pytest.mark.usefixtures("onnx_export_once")
def test_onnxruntime_failing_its_first_frame_check_falls_back_to_eager(caplog: pytest.LogCaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       reference: list[np.ndarray]) -> None:
    _env(monkeypatch)
    animator = make(engine="onnxruntime")
    engine = animator.engine
    real_run = engine._run

    def off_generator(name, feeds):  # the exported generator is off by 1e-3 on real inputs
        out = real_run(name, feeds)
        return {**out, "prediction": out["prediction"] + 1e-3} if name == "generator" else out

    engine._run = off_generator
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    one_warning(caplog, "onnxruntime", "max abs 1.0e-03")
    assert verdicts(animator) == {"onnxruntime": [True, False]}  # keypoints passed, the frame did not
    assert engine.name == "eager" and engine.reason.startswith("fallback:")


@pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime are not installed (pip install -e '.[test]')")
@pytest.mark.usefixtures("onnx_export_once")
def test_onnxruntime_with_a_wrong_motion_field_falls_back_to_eager(caplog: pytest.LogCaptureFixture,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   reference_motion: list[dict]) -> None:
    _env(monkeypatch)
    animator = make(engine="onnxruntime")
    engine = animator.engine
    real_run = engine._run

    def off_field(name, feeds):  # the exported generator's frame is right, its motion field off by 0.05
        out = real_run(name, feeds)
        return {**out, "deformation": out["deformation"] + 0.05} if name == "generator" else out

    engine._run = off_field
    with caplog.at_level(logging.WARNING):
        got = animate_detail(animator)
    assert_reference_motion(got, reference_motion)
    assert "deformation" in one_warning(caplog, "onnxruntime", "max abs 5.0e-02")
    assert verdicts(animator) == {"onnxruntime": [True, False]}
    assert engine.name == "eager" and engine.reason.startswith("fallback:")


# --- device failures --------------------------------------------------------------------------------------------------

def test_out_of_memory_in_the_compiled_decode_drops_it(monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture,
                                                       reference: list[np.ndarray]) -> None:
    _env(monkeypatch, compile_="1")
    compile_that_raises(monkeypatch, torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    animator = make()
    with caplog.at_level(logging.WARNING):
        got = animate(animator)
    assert_reference(got, reference)
    one_warning(caplog, "compile", "OutOfMemoryError")
    assert verdicts(animator) == {"compile": [False]} and not animator.engine.compile_active


def test_out_of_memory_with_nothing_to_drop_is_one_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch)
    animator = make()
    folder = golden_dir("tiny")
    animator.set_source(read_rgb(folder / "source.png"))

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8 GiB total)\n"
                                          "If reserved but unallocated memory is large try setting ...")

    monkeypatch.setattr(animator.engine.generator, "decode", oom)
    with pytest.raises(DeviceError) as caught:
        animator.animate(read_rgb(folder / "driving_0.png"))
    message = str(caught.value)
    assert "\n" not in message and "ran out of memory while decoding a frame" in message


@pytest.mark.parametrize(("message", "what"), [
    ("CUDA out of memory. Tried to allocate 20.00 MiB", "ran out of memory"),
    ("CUDA error: device-side assert triggered", "hit a device-side assert"),
    ("CUDA error: unspecified launch failure", "was lost (unspecified launch failure)"),
    ("CUDA error: an illegal memory access was encountered", "hit an illegal memory access"),
    ("The NVIDIA driver on your system is too old (CUDA driver version is insufficient)", "reported a driver error"),
    ("CUDA error: misaligned address", "reported a CUDA error"),
    ("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED", "reported a cuDNN error"),
    ("shape '[1, 3]' is invalid for input of size 4", None),
    ("stand-in: inductor lowering failed", None),
])
def test_device_failures_are_recognised(message: str, what: str | None) -> None:
    assert device_failure(RuntimeError(message)) == what
    assert device_failure(torch.cuda.OutOfMemoryError("anything")) == "ran out of memory"
