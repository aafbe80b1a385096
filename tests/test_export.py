"""Export of the two per-frame networks: ``torch.export`` whole graphs without a matrix inverse, and ONNX files that
ONNX Runtime runs to the original's numbers (golden data) within 1e-4."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import GOLDEN_VARIANTS, golden_dir, read_rgb
from torch import nn

from fomm_live.models import Animator, MotionOptions
from fomm_live.models.export import (
    ExportError,
    FrameGraph,
    KeypointGraph,
    _check_no_inverse,
    example_inputs,
    export_onnx,
    export_programs,
    onnx_session,
    verify_onnx,
)
from fomm_live.models.generator import warp

IMAGE_TOL = 1e-4  # as tests/test_golden.py
KP_TOL = 1e-5
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
# PyTorch 2.13's own exporter code trips a deprecation of its pytree module; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
needs_ort = pytest.mark.skipif(not HAS_ORT, reason="onnx / onnxruntime are not installed (pip install -e '.[test]')")


def golden_animator(variant: str) -> tuple[Animator, dict]:
    folder = golden_dir(variant)
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager", motion=MotionOptions(relative=False))
    animator.set_source(read_rgb(folder / "source.png"))
    return animator, dict(np.load(folder / "expected.npz"))


@pytest.mark.parametrize("variant", GOLDEN_VARIANTS)
def test_torch_export_whole_graphs_without_inverse(variant: str) -> None:
    """strict=True traces with TorchDynamo, which fails on any graph break; the programs reproduce eager."""
    animator, _ = golden_animator(variant)
    programs = export_programs(animator.kp_detector, animator.generator, strict=True)
    assert set(programs) == {"kp_detector", "generator"}
    for program in programs.values():
        targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
        assert not any("linalg_inv" in t for t in targets), "inverse_2x2 did not take its export branch"
    kp_in, gen_in = example_inputs(animator.kp_detector, animator.generator)
    with torch.no_grad():
        for name, graph, args in (("kp_detector", KeypointGraph(animator.kp_detector), kp_in),
                                  ("generator", FrameGraph(animator.generator,
                                                           has_jacobian=animator.kp_detector.jacobian is not None),
                                   gen_in)):
            got = programs[name].module()(*args)
            want = graph(*args)
            for g, w, out in zip(got, want, graph.output_names, strict=True):
                err = (g - w).abs().max().item()
                assert err <= 1e-5, f"{name}/{out}: exported program differs from eager by {err:.2e}"


def test_export_check_catches_a_matrix_inverse() -> None:
    """The guard that keeps ONNX/TensorRT graphs free of inverses is not vacuous."""

    class Inverts(nn.Module):
        def forward(self, m: torch.Tensor) -> torch.Tensor:
            return torch.linalg.inv(m)

    program = torch.export.export(Inverts(), (torch.eye(2).expand(3, 2, 2).clone(),))
    with pytest.raises(ExportError, match="inverse"):
        _check_no_inverse(program, "test")


@pytest.fixture(scope="module", params=GOLDEN_VARIANTS)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    if not HAS_ORT:
        pytest.skip("onnx / onnxruntime are not installed (pip install -e '.[test]')")
    animator, expected = golden_animator(request.param)
    paths = export_onnx(animator, tmp_path_factory.mktemp(request.param))  # verifies against PyTorch itself
    return request.param, animator, expected, paths


@needs_ort
def test_onnx_files_named_inputs_and_outputs(exported: tuple) -> None:
    variant, animator, expected, paths = exported
    import onnx

    assert set(paths) == {"kp_detector", "generator"}
    has_jacobian = "kp_source_jacobian" in expected
    has_occlusion = "absolute_0_occlusion_map" in expected
    kp = onnx_session(paths["kp_detector"])
    assert [i.name for i in kp.get_inputs()] == ["image"]
    assert [o.name for o in kp.get_outputs()] == ["kp_value"] + (["kp_jacobian"] if has_jacobian else [])
    gen = onnx_session(paths["generator"])
    want_inputs = {"features", "source_small", "kp_source_value", "kp_driving_value"}
    if has_jacobian:
        want_inputs |= {"kp_source_jacobian", "kp_driving_jacobian"}
    assert {i.name for i in gen.get_inputs()} == want_inputs
    assert [o.name for o in gen.get_outputs()] == (["prediction", "mask"] + (["occlusion_map"] if has_occlusion else [])
                                                   + ["deformation"])
    for path in paths.values():
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert "Inverse" not in ops
        assert not {"Loop", "If"} & ops, f"{path.name}: control flow in the graph ({ops & {'Loop', 'If'}})"


@needs_ort
def test_onnx_runtime_reproduces_the_original(exported: tuple) -> None:
    """Keypoints of the driving frames and generated frames from the golden normalised keypoints, by ONNX Runtime,
    against the original implementation's outputs."""
    variant, animator, expected, paths = exported
    folder = golden_dir(variant)
    kp_session, gen_session = onnx_session(paths["kp_detector"]), onnx_session(paths["generator"])
    source = animator.source
    kp_s = animator.kp_source
    for i in range(3):
        image = animator.to_tensor(read_rgb(folder / f"driving_{i}.png")).numpy()
        kp_out = dict(zip([o.name for o in kp_session.get_outputs()], kp_session.run(None, {"image": image}),
                          strict=True))
        err = np.abs(kp_out["kp_value"] - expected[f"kp_driving_{i}_value"]).max()
        assert err <= KP_TOL, f"kp_driving_{i}_value: {err:.2e}"
        feeds = {"features": source.features.float().contiguous().numpy(),
                 "source_small": source.image_small.float().contiguous().numpy(),
                 "kp_source_value": kp_s.value.numpy(),
                 "kp_driving_value": expected[f"kp_norm_absolute_{i}_value"]}
        if kp_s.jacobian is not None:
            feeds["kp_source_jacobian"] = kp_s.jacobian.numpy()
            feeds["kp_driving_jacobian"] = expected[f"kp_norm_absolute_{i}_jacobian"]
        names = [o.name for o in gen_session.get_outputs()]
        out = dict(zip(names, gen_session.run(None, feeds), strict=True))
        for key in names:
            if key == "deformation":  # the original keeps the source warped by the field (``deformed``), not the field
                got, key = warp(source.image, torch.from_numpy(out[key])).numpy(), "deformed"
            else:
                got = out[key]
            err = np.abs(got.astype(np.float64) - expected[f"absolute_{i}_{key}"]).max()
            assert err <= IMAGE_TOL, f"absolute_{i}_{key}: ONNX Runtime {err:.2e} from the original"


@needs_ort
@pytest.mark.parametrize("exported", ["tiny"], indirect=True)
def test_onnx_check_fails_when_the_file_is_stale(exported: tuple) -> None:
    """verify_onnx is a real check: after the PyTorch weights change, the exported file no longer passes."""
    _, animator, _, paths = exported
    graphs = {"generator": FrameGraph(animator.generator, has_jacobian=True).eval()}
    _, gen_in = example_inputs(animator.kp_detector, animator.generator, source=animator.source,
                               kp_source=animator.kp_source)
    final = animator.generator.final
    original = final.bias.detach().clone()
    try:
        with torch.no_grad():
            final.bias.add_(0.05)
        with pytest.raises(ExportError, match="generator/prediction"):
            verify_onnx({"generator": paths["generator"]}, graphs, {"generator": gen_in})
    finally:
        with torch.no_grad():
            final.bias.copy_(original)
