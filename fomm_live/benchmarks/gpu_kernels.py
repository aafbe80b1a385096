"""Kernel rows of ``benchmarks.gpu_report``: each fused op of ``kernels/`` against its reference on odd shapes, with
fp32 / fp16 / bf16 inputs, at the dtype tolerances of ``tests/test_kernels.py``.

The ops take plain tensors (``kernels.dense_motion_inputs(source_small, value_driving, value_source,
motion_jacobian, variance=...)``); the motion jacobians ``J_src @ inv(J_drv)`` are formed here as the model forms
them (``models.dense_motion.motion_jacobians``), with the model's gaussian variance (``models.blocks.KP_VARIANCE``).

On CUDA the kernels run on the GPU. On the CPU they run only under Triton's interpreter (``TRITON_INTERPRET=1``, set
before the first kernel module is imported): far too slow for the report's shapes, but with ``shapes`` cut to one
tiny shape per op it is how the tests prove this code before a GPU runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from fomm_live.benchmarks.gpu_correctness import missing_package
from fomm_live.models.blocks import KP_VARIANCE
from fomm_live.models.dense_motion import motion_jacobians
from fomm_live.models.keypoint_detector import Keypoints

# dtype of a kernel's inputs -> (atol, rtol) against the float32 reference (as tests/test_kernels.py).
KERNEL_TOLERANCES = {torch.float32: (2e-5, 1e-5), torch.float16: (1e-3, 1e-3), torch.bfloat16: (8e-3, 8e-3)}
# B, K, C, h, w, jacobian, keypoint spread (1.3: some keypoints outside the image), as tests/test_kernels.py.
DENSE_SHAPES = [(1, 10, 3, 32, 32, True, 1.0), (2, 5, 3, 17, 23, True, 1.3), (1, 3, 1, 9, 31, False, 1.0),
                (3, 1, 2, 7, 5, True, 1.3)]
# B of the deformation, B of the features, C, H, W, occlusion, channels_last, deformation size (None: H x W); the
# last row is the generator's real size at vox-256 (256 channels at 64 x 64) made odd.
DEFORM_SHAPES = [(1, 1, 40, 13, 19, True, False, None), (3, 1, 17, 8, 8, True, True, None),
                 (2, 2, 5, 11, 7, False, False, None), (1, 1, 16, 16, 12, True, False, (8, 6)),
                 (1, 1, 256, 63, 65, True, True, None)]


def kernels_unavailable(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on ``device`` here, or None."""
    if missing_package("triton"):
        return "triton is not installed"
    from fomm_live import kernels
    if device.type != "cuda" and not kernels.triton_interpreted():
        return ("Triton kernels run on CUDA only here (on the CPU the tests check them with Triton's interpreter, "
                "TRITON_INTERPRET=1, too slow for this report)")
    return None


def _random_keypoints(b: int, k: int, *, jacobian: bool, spread: float, gen: torch.Generator,
                      device: torch.device) -> Keypoints:
    value = (torch.rand(b, k, 2, generator=gen) * 2 - 1) * spread  # B x K x 2, some outside [-1, 1] when spread > 1
    jac = torch.eye(2) + 0.4 * torch.randn(b, k, 2, 2, generator=gen) if jacobian else None  # B x K x 2 x 2
    return Keypoints(value.to(device), None if jac is None else jac.to(device))


def compare(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> dict:
    """One row: max abs error, the tolerance of ``dtype``, passed, and the first mismatching index on failure."""
    atol, rtol = KERNEL_TOLERANCES[dtype]
    got64, want64 = got.detach().double().cpu(), want.detach().double().cpu()
    if got64.shape != want64.shape:
        return {"passed": False, "detail": f"shape {tuple(got64.shape)} != {tuple(want64.shape)}"}
    bad = ~((got64 - want64).abs() <= atol + rtol * want64.abs())  # NaN counts as a mismatch
    row = {"max_abs": float(f"{(got64 - want64).abs().nan_to_num(float('inf')).max().item():.3g}"),
           "tolerance": f"atol {atol:.0e} + rtol {rtol:.0e}", "passed": not bool(bad.any())}
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        row["first_mismatch"] = f"{first}: got {got64[first].item():.6f}, expected {want64[first].item():.6f}"
    return row


def _guarded(check: Callable[[], dict]) -> dict:
    try:
        return check()
    except Exception as err:  # noqa: BLE001 - a kernel that fails to compile or launch is a failed row
        return {"passed": False, "error": f"{type(err).__name__}: {str(err)[:200]}"}


def _dense_row(shape: tuple, dtype: torch.dtype, device: torch.device) -> tuple[str, dict]:
    from fomm_live import kernels
    from fomm_live.kernels.reference import dense_motion_inputs_reference

    b, k, c, h, w, jacobian, spread = shape
    gen = torch.Generator().manual_seed(h * w)
    kp_driving, kp_source = (_random_keypoints(b, k, jacobian=jacobian, spread=spread, gen=gen, device=device)
                             for _ in range(2))
    jac = motion_jacobians(kp_driving, kp_source)  # B x K x 2 x 2 J_src @ inv(J_drv), or None
    source = torch.rand(b, c, h, w, generator=gen).to(device, dtype)
    name = f"dense_motion_inputs {b}x{k}x{c}x{h}x{w}{'-jac' if jacobian else ''} {str(dtype)[6:]}"

    def check() -> dict:
        got = kernels.dense_motion_inputs(source, kp_driving.value, kp_source.value, jac, variance=KP_VARIANCE,
                                          use_kernel=True)
        want = dense_motion_inputs_reference(source.float(), kp_driving.value, kp_source.value, jac,
                                             variance=KP_VARIANCE)
        # The kernel computes in float32 from the same rounded source: float32 tolerances throughout.
        checks = [compare(g, r, torch.float32) for g, r in zip(got, want, strict=True)]
        return min(checks, key=lambda r: (r["passed"], -r.get("max_abs", 0)))

    return name, _guarded(check)


def _deform_row(shape: tuple, dtype: torch.dtype, device: torch.device) -> tuple[str, dict]:
    from fomm_live import kernels
    from fomm_live.kernels.reference import deform_features_reference

    b, bf, c, h, w, occlusion, channels_last, deform_size = shape
    gen = torch.Generator().manual_seed(c * h)
    features = torch.randn(bf, c, h, w, generator=gen).to(device, dtype)  # Bf x C x H x W
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    dh, dw = deform_size or (h, w)
    deformation = (torch.rand(b, dh, dw, 2, generator=gen) * 2.6 - 1.3).to(device)  # B x h x w x 2, some outside
    occlusion_map = torch.rand(b, 1, dh, dw, generator=gen).to(device) if occlusion else None  # B x 1 x h x w
    resized = f"-from{dh}x{dw}" if deform_size else ""
    name = f"deform_features {b}x{c}x{h}x{w}{'-cl' if channels_last else ''}{resized} {str(dtype)[6:]}"

    def check() -> dict:
        got = kernels.deform_features(features, deformation, occlusion_map, use_kernel=True)
        row = compare(got, deform_features_reference(features.float(), deformation, occlusion_map), dtype)
        if got.dtype != dtype:
            row.update(passed=False, detail=f"output dtype {got.dtype} != {dtype}")
        return row

    return name, _guarded(check)


def kernel_checks(device: torch.device, *, dense_shapes: Iterable[tuple] = DENSE_SHAPES,
                  deform_shapes: Iterable[tuple] = DEFORM_SHAPES,
                  dtypes: Iterable[torch.dtype] = tuple(KERNEL_TOLERANCES)) -> dict:
    """Each fused kernel against its reference, every shape in every dtype; ``{"skipped": why}`` where Triton cannot
    run on ``device`` (see ``kernels_unavailable``).

    Args:
        device: CUDA, or the CPU under ``TRITON_INTERPRET=1``.
        dense_shapes: ``dense_motion_inputs`` shapes, as ``DENSE_SHAPES``.
        deform_shapes: ``deform_features`` shapes, as ``DEFORM_SHAPES``.
        dtypes: Input dtypes, keys of ``KERNEL_TOLERANCES``.

    Returns:
        ``rows["op shape dtype"]`` (``passed``, ``max_abs``, ``tolerance``, ``first_mismatch`` or ``error``),
        ``passed`` (every row), ``interpreted`` (Triton's CPU interpreter ran them).
    """
    why = kernels_unavailable(device)
    if why is not None:
        return {"skipped": why}
    from fomm_live import kernels
    rows: dict = {}
    for dtype in dtypes:
        jobs = [(_dense_row, shape) for shape in dense_shapes] + [(_deform_row, shape) for shape in deform_shapes]
        for make, shape in jobs:
            name, row = make(shape, dtype, device)
            rows[name] = row
    return {"rows": rows, "passed": bool(rows) and all(r.get("passed") for r in rows.values()),
            "interpreted": kernels.triton_interpreted()}
