"""The fused Triton kernels of ``kernels/`` against their PyTorch references, and the switch that turns them on.

Without a GPU the kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``, set below before any kernel module
is imported), which executes the same kernel code on CPU tensors, slowly; so the shapes here are small, with odd
sizes that leave partial blocks. On a CUDA machine the kernels run on the GPU instead.
"""

from __future__ import annotations

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

from helpers.fast_paths import assert_fast_path_ran  # noqa: E402

from fomm_live import kernels  # noqa: E402
from fomm_live.kernels.reference import deform_features_reference, dense_motion_inputs_reference  # noqa: E402
from fomm_live.models import Animator, Keypoints, MotionOptions  # noqa: E402
from fomm_live.models.blocks import KP_VARIANCE  # noqa: E402
from fomm_live.models.dense_motion import dense_motion_inputs as model_dense_motion_inputs  # noqa: E402
from fomm_live.models.dense_motion import motion_jacobians  # noqa: E402
from fomm_live.models.engines import decode_with_kernels, psnr  # noqa: E402
from fomm_live.models.generator import deform_features as model_deform_features  # noqa: E402

DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
# dtype of the tensors fed to a kernel -> (atol, rtol) against the float32 reference on the same (rounded) values.
# float32: reordered float32 arithmetic only. fp16/bf16: the warp's output is stored in that dtype, so its rounding
# (2^-11 and 2^-8 relative) bounds the error.
TOLERANCES = {
    torch.float32: (2e-5, 1e-5),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (8e-3, 8e-3),
}
IMAGE_TOL = 1e-4  # as tests/test_golden.py


def _triton_missing() -> str | None:
    """None when Triton (on a GPU, or its CPU interpreter) is here to run the kernels, else what is missing.

    Only a missing piece skips: a kernel that is installed but fails to launch or compute fails its tests."""
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install -e '.[test]')"
    if HAS_CUDA:
        return None
    if os.environ.get("TRITON_INTERPRET") != "1":
        return "no CUDA GPU, and TRITON_INTERPRET was set to something other than 1 before the tests"
    if importlib.util.find_spec("triton.runtime.interpreter") is None:
        return "no CUDA GPU, and this triton release has no CPU interpreter (triton.runtime.interpreter)"
    return None


_SKIP = _triton_missing()
needs_triton = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def assert_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, name: str) -> None:
    """Compare within the dtype's tolerance; on failure name the first mismatching index (in index order)."""
    atol, rtol = TOLERANCES[dtype]
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != expected {tuple(want.shape)}"
    got64, want64 = got.detach().double().cpu(), want.detach().double().cpu()
    bad = ~((got64 - want64).abs() <= atol + rtol * want64.abs())  # NaN counts as a mismatch
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        err = (got64 - want64).abs().nan_to_num(float("inf"))
        raise AssertionError(f"{name} ({dtype}): {int(bad.sum())} of {bad.numel()} elements beyond atol {atol:.0e} "
                             f"+ rtol {rtol:.0e}; first at {first}: got {got64[first].item():.6f}, expected "
                             f"{want64[first].item():.6f}; max abs error {err.max().item():.3e}")


def fused_inputs(source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints, *, use_kernel: bool | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``kernels.dense_motion_inputs`` on the model's keypoints (plain tensors, the model's variance)."""
    return kernels.dense_motion_inputs(source, kp_driving.value, kp_source.value,
                                       motion_jacobians(kp_driving, kp_source), variance=KP_VARIANCE,
                                       use_kernel=use_kernel)


def reference_inputs(source: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``kernels.reference.dense_motion_inputs_reference`` on the model's keypoints."""
    return dense_motion_inputs_reference(source, kp_driving.value, kp_source.value,
                                         motion_jacobians(kp_driving, kp_source), variance=KP_VARIANCE)


def _keypoints(b: int, k: int, *, jacobian: bool, spread: float = 1.0, seed: int = 0) -> tuple[Keypoints, Keypoints]:
    gen = torch.Generator().manual_seed(seed)

    def one() -> Keypoints:
        value = (torch.rand(b, k, 2, generator=gen) * 2 - 1) * spread
        jac = torch.eye(2) + 0.4 * torch.randn(b, k, 2, 2, generator=gen) if jacobian else None
        return Keypoints(value.to(DEVICE), None if jac is None else jac.to(DEVICE))

    return one(), one()


DENSE_SHAPES = [  # B, K, C, h, w, jacobian, keypoint spread (1.3: some keypoints outside the image)
    (1, 10, 3, 32, 32, True, 1.0),
    (2, 5, 3, 17, 23, True, 1.3),
    (1, 3, 1, 9, 31, False, 1.0),
    (3, 1, 2, 7, 5, True, 1.3),
]


@needs_triton
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s[:5])) + ("-jac" if s[5] else ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_dense_motion_inputs_kernel_matches_reference(shape: tuple, dtype: torch.dtype) -> None:
    b, k, c, h, w, jacobian, spread = shape
    kp_driving, kp_source = _keypoints(b, k, jacobian=jacobian, spread=spread, seed=h * w)
    source = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(k)).to(DEVICE, dtype)
    got_in, got_motion = fused_inputs(source, kp_driving, kp_source, use_kernel=True)
    want_in, want_motion = reference_inputs(source.float(), kp_driving, kp_source)
    assert got_in.dtype == torch.float32 and got_motion.dtype == torch.float32
    # The kernel computes in float32 from the same rounded source values, so float32 tolerances apply throughout.
    assert_close(got_motion, want_motion, torch.float32, "motions")
    assert_close(got_in, want_in, torch.float32, "hourglass input")


@needs_triton
def test_dense_motion_inputs_kernel_with_degenerate_jacobians() -> None:
    """Near-singular driving jacobians send the sparse motions far outside the image: zeros, as in grid_sample."""
    kp_driving, kp_source = _keypoints(1, 4, jacobian=True, seed=3)
    kp_driving = Keypoints(kp_driving.value, kp_driving.jacobian * torch.tensor([1.0, 1e-6], device=DEVICE)[:, None])
    source = torch.rand(1, 3, 11, 13, device=DEVICE)
    got_in, got_motion = fused_inputs(source, kp_driving, kp_source, use_kernel=True)
    want_in, want_motion = reference_inputs(source, kp_driving, kp_source)
    assert want_motion.abs().max() > 100  # the case is real: coordinates far outside [-1, 1]
    assert torch.isfinite(got_in).all()
    assert_close(got_in, want_in, torch.float32, "hourglass input")


DEFORM_SHAPES = [  # B (deformation), B (features), C, H, W, occlusion, channels_last, deformation size
    (1, 1, 40, 13, 19, True, False, None),
    (3, 1, 17, 8, 8, True, True, None),
    (2, 2, 5, 11, 7, False, False, None),
    (1, 1, 16, 16, 12, True, False, (8, 6)),
]


@needs_triton
@pytest.mark.parametrize("shape", DEFORM_SHAPES, ids=lambda s: "x".join(map(str, s[:5])) + ("-cl" if s[6] else ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_deform_features_kernel_matches_reference(shape: tuple, dtype: torch.dtype) -> None:
    b, bf, c, h, w, occlusion, channels_last, deform_size = shape
    gen = torch.Generator().manual_seed(c * h)
    features = torch.randn(bf, c, h, w, generator=gen).to(DEVICE, dtype)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    dh, dw = deform_size or (h, w)
    deformation = (torch.rand(b, dh, dw, 2, generator=gen) * 2.6 - 1.3).to(DEVICE)  # some samples outside
    occlusion_map = torch.rand(b, 1, dh, dw, generator=gen).to(DEVICE) if occlusion else None
    got = kernels.deform_features(features, deformation, occlusion_map, use_kernel=True)
    want = deform_features_reference(features.float(), deformation, occlusion_map)
    assert got.dtype == dtype
    if channels_last:
        assert got.is_contiguous(memory_format=torch.channels_last)
    assert_close(got, want, dtype, "deformed features")


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s[:5])) + ("-jac" if s[5] else ""))
def test_dense_motion_reference_equals_the_model(shape: tuple) -> None:
    """The kernels' own reference (plain tensors) computes exactly what the model's ``dense_motion_inputs`` does, so
    the kernel checks cannot drift from the model."""
    b, k, c, h, w, jacobian, spread = shape
    kp_driving, kp_source = _keypoints(b, k, jacobian=jacobian, spread=spread, seed=h + w)
    source = torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(c)).to(DEVICE)
    for variance in (KP_VARIANCE, 0.03):
        got = dense_motion_inputs_reference(source, kp_driving.value, kp_source.value,
                                            motion_jacobians(kp_driving, kp_source), variance=variance)
        want = model_dense_motion_inputs(source, kp_driving, kp_source, variance)
        for name, g, v in zip(("hourglass input", "motions"), got, want, strict=True):
            assert_close(g, v, torch.float32, name)
            assert (g - v).abs().max().item() <= 1e-6, f"{name}: the reference drifted from the model"


@pytest.mark.parametrize("shape", DEFORM_SHAPES, ids=lambda s: "x".join(map(str, s[:5])) + ("-cl" if s[6] else ""))
def test_deform_reference_equals_the_model(shape: tuple) -> None:
    """The kernels' reference warp equals the model's ``deform_features`` (also resized and broadcast inputs)."""
    b, bf, c, h, w, occlusion, channels_last, deform_size = shape
    gen = torch.Generator().manual_seed(h * w)
    features = torch.randn(bf, c, h, w, generator=gen).to(DEVICE)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    dh, dw = deform_size or (h, w)
    deformation = (torch.rand(b, dh, dw, 2, generator=gen) * 2.6 - 1.3).to(DEVICE)
    occlusion_map = torch.rand(b, 1, dh, dw, generator=gen).to(DEVICE) if occlusion else None
    got = deform_features_reference(features, deformation, occlusion_map)
    want = model_deform_features(features, deformation, occlusion_map)
    assert torch.equal(got, want), f"max abs difference {(got - want).abs().max().item():.2e}"


def test_kernels_import_nothing_from_models() -> None:
    """``kernels/`` is below ``models/`` in the import direction: none of its files imports ``models``."""
    import ast
    from pathlib import Path

    for path in sorted(Path(kernels.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "models" or n.startswith("models.") for n in names), f"{path.name} imports {names}"


def test_switch_follows_the_environment(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FOMM_LIVE_KERNELS", "0")
    assert not kernels.kernels_enabled("cuda")
    monkeypatch.delenv("FOMM_LIVE_KERNELS")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not kernels.kernels_enabled("cpu")  # auto: CUDA only
    assert kernels.kernels_enabled("cuda") == kernels.triton_available()
    monkeypatch.setenv("FOMM_LIVE_KERNELS", "1")
    with caplog.at_level(logging.WARNING, logger="fomm_live.kernels"):
        assert not kernels.kernels_enabled("cpu")  # asked for, but Triton cannot run on CPU tensors natively
    if kernels.triton_available():
        assert "TRITON_INTERPRET" in caplog.text
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert kernels.kernels_enabled("cpu")
        monkeypatch.setenv("FOMM_LIVE_KERNELS", "auto")
        assert not kernels.kernels_enabled("cpu")  # auto never picks the interpreter
    monkeypatch.setenv("FOMM_LIVE_KERNELS", "sometimes")  # not understood: warned about, then auto
    with caplog.at_level(logging.WARNING, logger="fomm_live.kernels"):
        assert not kernels.kernels_enabled("cpu")
    assert "'sometimes' is not 0, 1 or auto" in caplog.text


def test_reference_is_used_when_triton_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With triton reported missing the switch says no even when asked, and the ops run their references."""
    monkeypatch.setenv("FOMM_LIVE_KERNELS", "1")
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    assert not kernels.kernels_enabled("cuda")
    kp_driving, kp_source = _keypoints(1, 2, jacobian=True)
    source = torch.rand(1, 3, 6, 6, device=DEVICE)
    got = fused_inputs(source, kp_driving, kp_source, use_kernel=None)
    want = reference_inputs(source, kp_driving, kp_source)
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


@pytest.mark.parametrize("use_kernel", [pytest.param(True, marks=needs_triton), False], ids=["triton", "reference"])
@pytest.mark.parametrize("variant", ["tiny", "tiny_zero_order"])
def test_decode_with_kernels_matches_golden(variant: str, use_kernel: bool) -> None:
    """The generator decode rebuilt around the fused ops reproduces the original's frame (golden data)."""
    folder = golden_dir(variant)
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device=str(DEVICE),
                                        precision="fp32", engine="eager", motion=MotionOptions(relative=False))
    expected = np.load(folder / "expected.npz")
    animator.set_source(read_rgb(folder / "source.png"))
    jac = expected.get("kp_norm_absolute_2_jacobian")
    kp = Keypoints(torch.from_numpy(expected["kp_norm_absolute_2_value"]).to(DEVICE),
                   None if jac is None else torch.from_numpy(jac).to(DEVICE))
    state = animator.generator.encode_source(animator.to_tensor(read_rgb(folder / "source.png")))
    with torch.inference_mode():
        out = decode_with_kernels(animator.generator, state, kp, animator.kp_source, use_kernel=use_kernel)
    for key in ("prediction", "mask", "occlusion_map"):
        name = f"absolute_2_{key}"
        if name not in expected:
            assert key not in out
            continue
        err = np.abs(out[key].cpu().numpy().astype(np.float64) - expected[name]).max()
        assert err <= IMAGE_TOL, f"{key}: max abs error {err:.2e} > {IMAGE_TOL:.0e}"


# Found when this test started asserting that the kernels ran (2026-12-06, Triton's CPU interpreter, golden tiny): under
# fp16 autocast the fused dense_motion_inputs fails its first-frame check (max abs 3.3e-2 from its float32 reference,
# bar 1e-4 for its float32 output) and the engine falls back to the PyTorch op; the frames still pass, which is why
# the test passed before. Strict: the day the kernel (or its bar) is fixed, this fails and the mark goes.
FP16_DENSE_MOTION_FALLS_BACK = pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="known: fp16 dense_motion_inputs kernel misses its 1e-4 check on golden tiny and falls back")


@needs_triton
@pytest.mark.parametrize("precision", ["fp32", pytest.param("fp16", marks=FP16_DENSE_MOTION_FALLS_BACK)])
def test_eager_engine_with_kernels_matches_golden(precision: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine path the CUDA default takes (folded networks, channels_last, fused kernels; fp16 autocast) on the
    golden frames: fp32 within the parity tolerance, fp16 within 40 dB. Without a GPU this runs the kernels in the
    interpreter and fp16 on the CPU, so it checks the numerics, not CUDA itself."""
    monkeypatch.setenv("FOMM_LIVE_KERNELS", "1")
    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device=str(DEVICE),
                                        precision=precision, engine="eager")
    assert animator.engine.use_kernels and animator.engine.fast
    expected = np.load(folder / "expected.npz")
    frames = [read_rgb(folder / f"driving_{i}.png") for i in range(3)]
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(frames[0])
    for i, frame in enumerate(frames):
        got = animator.generate(animator.keypoints(frame))["prediction"].cpu().numpy().astype(np.float64)
        want = expected[f"relative_{i}_prediction"]
        if precision == "fp32":
            err = np.abs(got - want).max()
            assert err <= IMAGE_TOL, f"frame {i}: max abs error {err:.2e} > {IMAGE_TOL:.0e}"
        else:
            quality = psnr(got, want)
            assert quality >= 40.0, f"frame {i}: {quality:.1f} dB"
    precision_path = () if precision == "fp32" else (precision,)
    assert_fast_path_ran(animator.engine, name="eager", precision=precision,
                         paths=("kernel:dense_motion_inputs", "kernel:deform_features", *precision_path))
