"""The dense motion field (``deformation``, with ``occlusion_map``) that photo framing asks for every frame.

``Animator.generate(..., with_motion=True)`` gives it beside the same prediction, and it is the field the generator
warps with (the original's ``deformed`` is the source warped by it). ``Engine.decode(..., with_deformation=True)``
runs each engine's own checked fast path, not the plain PyTorch decode: the fused kernels (real Triton kernels, in
Triton's CPU interpreter here), the compiled decode (a real ``torch.compile`` once, and a stand-in that counts its
calls), reduced precision (bf16 and fp16 autocast on the CPU) and ONNX Runtime; each returns the plain decode's
field within the bound its first-frame check uses (``base.DEFORMATION_ATOL``).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from conftest import GOLDEN_VARIANTS, golden_dir, read_rgb

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernel modules are imported

from fomm_live.models import Animator, MotionOptions  # noqa: E402
from fomm_live.models.engines import FP32_ATOL, EagerEngine  # noqa: E402
from fomm_live.models.engines.base import DEFORMATION_ATOL  # noqa: E402
from fomm_live.models.generator import SourceState, warp  # noqa: E402
from fomm_live.models.keypoint_detector import Keypoints  # noqa: E402

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
HAS_TRITON = importlib.util.find_spec("triton") is not None
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside PyTorch's exporter


def test_the_motion_field_comes_with_the_same_prediction() -> None:
    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32")
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(read_rgb(folder / "driving_0.png"))
    kp = animator.keypoints(read_rgb(folder / "driving_1.png"))
    plain = animator.generate(kp)
    assert "deformation" not in plain  # opt-in: the default output is unchanged
    moved = animator.generate(kp, with_motion=True, with_deformed=True)
    torch.testing.assert_close(moved["prediction"], plain["prediction"], atol=1e-5, rtol=0)
    torch.testing.assert_close(moved["occlusion_map"], plain["occlusion_map"], atol=1e-5, rtol=0)
    deformation = moved["deformation"]
    assert deformation.shape == (1, 64, 64, 2)  # the dense motion network's resolution (scale_factor 0.25 of 256)
    assert animator.source is not None
    torch.testing.assert_close(warp(animator.source.image, deformation), moved["deformed"], atol=1e-6, rtol=0)


# --- each fast path gives the field ----------------------------------------------------------------------------------

def frames(animator: Animator, variant: str = "tiny") -> list[Keypoints]:
    """Source set, first driving frame calibrated; the normalised keypoints of driving frames 1 and 2."""
    folder = golden_dir(variant)
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(read_rgb(folder / "driving_0.png"))
    assert animator.kp_source is not None
    return [animator.normalizer(animator.keypoints(read_rgb(folder / f"driving_{i}.png")), animator.kp_source)
            for i in (1, 2)]


def make(precision: str = "fp32", variant: str = "tiny", **engine_options) -> Animator:
    folder = golden_dir(variant)
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision=precision, engine="eager", motion=MotionOptions(relative=True))
    if engine_options:  # an eager engine with the asked-for fast paths, on the same networks
        animator.engine = EagerEngine(animator.kp_detector, animator.generator, device=torch.device("cpu"),
                                      precision=precision, **engine_options)
    return animator


def plain(animator: Animator, kp: Keypoints) -> dict[str, torch.Tensor]:
    """The plain PyTorch decode in float32: the networks as loaded, the source encoded in float32."""
    generator = animator.generator
    assert animator.source is not None and animator.kp_source is not None
    with torch.inference_mode():
        state: SourceState = generator.encode_source(animator.source.image.float().contiguous())
        return generator.decode(state, kp, animator.kp_source, with_deformed=False, with_deformation=True)


def decode_detail(animator: Animator, kp: Keypoints) -> dict[str, torch.Tensor]:
    assert animator.source is not None and animator.kp_source is not None
    with torch.inference_mode():
        return animator.engine.decode(animator.source, kp, animator.kp_source, with_deformation=True)


def assert_same_field(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], atol: float) -> None:
    assert set(want) >= {"deformation", "occlusion_map"}  # the tiny model estimates an occlusion map
    for key in ("deformation", "occlusion_map"):
        assert got[key].shape == want[key].shape, key
        err = (got[key].float() - want[key]).abs().max().item()
        assert err <= atol, f"{key}: {err:.2e} from the plain float32 decode > {atol:.0e}"


class Counted:
    """Wraps a callable and counts its calls (the fast path's own function)."""

    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FOMM_LIVE_COMPILE", "FOMM_LIVE_KERNELS", "FOMM_LIVE_FAST"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_the_real_kernels_give_the_motion_field(no_env: None) -> None:
    """The fused Triton kernels (Triton's CPU interpreter here) run for frames with the motion field, pass their
    checks, and the field is the plain decode's."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA GPU, and TRITON_INTERPRET was set to something other than 1 before the tests")
    animator = make(use_kernels=True, use_compile=False)
    engine: EagerEngine = animator.engine
    assert engine.use_kernels
    for op in engine._ops.values():
        op.fast = Counted(op.fast)
    kp = frames(animator)[0]
    got = decode_detail(animator, kp)
    assert [op.fast.calls for op in engine._ops.values()] == [1, 1], "the fused kernels did not run"
    assert [(c.path, c.ok) for c in engine.checks] == [("kernel:dense_motion_inputs", True),
                                                       ("kernel:deform_features", True)]
    assert_same_field(got, plain(animator, kp), FP32_ATOL)


def test_a_stand_in_compiled_decode_gives_the_motion_field(monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    """The compiled decode (an exact stand-in that counts its calls) runs for frames with the motion field, is
    checked on the field too, and gives it only when asked for."""
    compiled: list[Counted] = []

    def stand_in_compile(fn, **kwargs):
        compiled.append(Counted(fn))
        return compiled[-1]

    monkeypatch.setattr(torch, "compile", stand_in_compile)
    animator = make(use_compile=True, use_kernels=False)
    engine: EagerEngine = animator.engine
    first, second = frames(animator)
    got = decode_detail(animator, first)
    (check,) = engine.checks
    assert check.path == "compile" and check.ok and "deformation max abs" in check.detail
    assert_same_field(got, plain(animator, first), FP32_ATOL)
    assert_same_field(decode_detail(animator, second), plain(animator, second), FP32_ATOL)
    with torch.inference_mode():
        without = engine.decode(animator.source, second, animator.kp_source)
    assert "deformation" not in without and "occlusion_map" in without  # as the plain decode without the field
    assert engine.compile_active and compiled[0].calls == 3


def test_a_real_torch_compile_gives_the_motion_field(no_env: None) -> None:
    """A real ``torch.compile`` (inductor, CPU) of the decode returns the field, within float32 tolerance."""
    animator = make(use_compile=True, use_kernels=False)
    engine: EagerEngine = animator.engine
    kp = frames(animator)[0]
    got = decode_detail(animator, kp)
    assert [(c.path, c.ok) for c in engine.checks] == [("compile", True)], engine.checks
    assert engine.compile_active
    assert_same_field(got, plain(animator, kp), FP32_ATOL)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_reduced_precision_gives_the_motion_field_within_its_bound(precision: str, variant: str,
                                                                   no_env: None) -> None:
    """The reduced-precision decode's field, on every golden model and two frames, is within the bound its check
    uses (``DEFORMATION_ATOL``, about three times the largest error measured here), and the check ran on it."""
    animator = make(precision, variant)
    engine: EagerEngine = animator.engine
    for kp in frames(animator, variant):
        got, want = decode_detail(animator, kp), plain(animator, kp)
        err = (got["deformation"].float() - want["deformation"]).abs().max().item()
        assert err <= DEFORMATION_ATOL[precision], f"{precision} deformation {err:.2e}"
        assert ("occlusion_map" in got) == ("occlusion_map" in want)
    (check,) = engine.checks
    assert check.path == precision and check.ok and "deformation max abs" in check.detail
    assert engine.precision == precision


@pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime are not installed (pip install -e '.[test]')")
@pytest.mark.usefixtures("onnx_export_once")
def test_onnxruntime_gives_the_motion_field_from_its_graph(no_env: None) -> None:
    """ONNX Runtime's exported generator gives the field; PyTorch's decode runs only for the first frame's check."""
    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="onnxruntime", motion=MotionOptions(relative=True))
    engine = animator.engine
    assert engine.name == "onnxruntime"
    engine._run = Counted(engine._run)
    engine.generator.decode = Counted(engine.generator.decode)
    first, second = frames(animator)
    got = decode_detail(animator, first)
    assert engine.generator.decode.calls == 1  # the float32 reference of the first-frame check
    assert [(c.path, c.ok) for c in engine.checks][-1] == ("onnxruntime", True)
    assert "deformation max abs" in engine.checks[-1].detail
    assert_same_field(got, plain(animator, first), FP32_ATOL)
    runs, decodes = engine._run.calls, engine.generator.decode.calls  # the test's own plain decode counts too
    got = decode_detail(animator, second)
    assert engine._run.calls == runs + 1 and engine.generator.decode.calls == decodes, "the plain decode ran"
    assert_same_field(got, plain(animator, second), FP32_ATOL)
