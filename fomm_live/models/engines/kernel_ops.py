"""The fused kernels of ``kernels/`` hooked into the generator's decode, each op checked on its own first real input.

``kernels/`` takes plain tensors; this room adapts the model's keypoints to them (values, the motion jacobians
``J_src @ inv(J_drv)`` formed by ``models.dense_motion.motion_jacobians``, the network's gaussian variance).
``CheckedOp`` runs one fused op and, the first time, its PyTorch reference on the same inputs in float32; an op
that raises or differs beyond ``base.OP_TOLERANCES`` is turned off for the rest of the run (the reference op runs
instead), with one warning.

Imports ``kernels``, ``models.engines.base`` and the model's networks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch

from fomm_live import kernels
from fomm_live.models.blocks import KP_VARIANCE
from fomm_live.models.dense_motion import InputsOp, dense_motion_inputs, motion_jacobians
from fomm_live.models.engines.base import (
    OUT_OF_MEMORY,
    CheckResult,
    Engine,
    compare,
    device_failure,
    failed_to_run,
    free_device_memory,
    op_tolerance,
)
from fomm_live.models.generator import DeformOp, OcclusionAwareGenerator, SourceState, deform_features
from fomm_live.models.keypoint_detector import Keypoints

logger = logging.getLogger(__name__)

OPS = ("dense_motion_inputs", "deform_features")


def dense_motion_inputs_op(*, variance: float, use_kernel: bool | None) -> InputsOp:
    """``kernels.dense_motion_inputs`` with the model's call signature (source, driving and source keypoints)."""

    def op(source_small: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
           ) -> tuple[torch.Tensor, torch.Tensor]:
        return kernels.dense_motion_inputs(source_small, kp_driving.value, kp_source.value,
                                           motion_jacobians(kp_driving, kp_source), variance=variance,
                                           use_kernel=use_kernel)

    return op


def _variance(generator: OcclusionAwareGenerator) -> float:
    network = generator.dense_motion_network
    return network.kp_variance if network is not None else KP_VARIANCE


def kernel_ops(generator: OcclusionAwareGenerator, *, use_kernel: bool | None) -> dict[str, Callable]:
    """The two fused ops for ``generator`` (kernel when ``use_kernel``; None asks ``kernels.kernels_enabled``)."""
    variance = _variance(generator)
    return {"dense_motion_inputs": dense_motion_inputs_op(variance=variance, use_kernel=use_kernel),
            "deform_features": functools.partial(kernels.deform_features, use_kernel=use_kernel)}


def decode_with_kernels(generator: OcclusionAwareGenerator, state: SourceState, kp_driving: Keypoints,
                        kp_source: Keypoints, *, use_kernel: bool | None = None,
                        ops: dict[str, Callable] | None = None, with_deformation: bool = False
                        ) -> dict[str, torch.Tensor]:
    """``generator.decode(..., with_deformed=False)`` with its two per-pixel stages done by ``kernels/``: the dense
    motion input stage (gaussians + sparse motions + K+1 warps) by ``kernels.dense_motion_inputs``, the final warp
    times the occlusion map by ``kernels.deform_features``.

    Args:
        use_kernel: Force the Triton kernels (True) or the references (False); None asks ``kernels_enabled``.
        ops: The two ops to use instead (e.g. ``CheckedOp``s), keyed as ``OPS``.
        with_deformation: Also return the dense motion field ``deformation``, as ``generator.decode`` does (it is
            formed from the fused input stage's motions, so it is the field the fused warp used).
    """
    ops = ops or kernel_ops(generator, use_kernel=use_kernel)
    inputs_op: InputsOp = ops["dense_motion_inputs"]
    deform_op: DeformOp = ops["deform_features"]
    return generator.decode(state, kp_driving, kp_source, with_deformed=False, inputs_op=inputs_op,
                            deform_op=deform_op, with_deformation=with_deformation)


def _float32(value: Any) -> Any:
    """Floating tensors (also inside tuples such as ``Keypoints``) as float32; everything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, tuple):
        items = [_float32(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


class CheckedOp:
    """One fused op, checked against its reference op on its first real inputs before it is trusted.

    The reference runs in float32 with autocast off, on the same input values (so the comparison measures the kernel,
    not the precision); the bar is ``base.op_tolerance`` of the dtype the fused op stores. A failure (an exception, or
    numbers out of tolerance) turns the op off for the rest of the run: ``reference`` runs instead.

    Args:
        name: The op (``dense_motion_inputs`` or ``deform_features``); its check is ``kernel:<name>``.
        fast: The fused op.
        reference: The model's PyTorch op with the same signature.
        engine: Where the verdict is recorded.
    """

    def __init__(self, name: str, fast: Callable, reference: Callable, *, engine: Engine) -> None:
        self.name = name
        self.path = f"kernel:{name}"
        self.fast = fast
        self.reference = reference
        self.engine = engine
        self.active = True
        self.checked = False

    def _turn_off(self, result: CheckResult) -> None:
        self.active = False
        self.engine.record(result, label=f"fused kernel {self.name}", fallback="the PyTorch op")

    def __call__(self, *args: Any) -> Any:
        if not self.active:
            return self.reference(*args)
        try:
            got = self.fast(*args)
        except Exception as err:  # a failed import, compile or launch: all mean "use the reference op"
            what = device_failure(err)
            if what is not None and what != OUT_OF_MEMORY:
                raise  # the device itself failed: no op helps (the engine turns it into a DeviceError)
            if what == OUT_OF_MEMORY:
                free_device_memory(self.engine.device)
            self._turn_off(failed_to_run(self.path, err, op_tolerance(torch.float32)))
            return self.reference(*args)
        if self.checked:
            return got
        self.checked = True
        with torch.autocast(device_type=self.engine.device.type, enabled=False):
            want = self.reference(*_float32(args))
        outs, refs = (got, want) if isinstance(got, tuple) else ((got,), (want,))
        results = [compare(self.path, g, w, op_tolerance(g.dtype), image=False, detail=f"output {i}")
                   for i, (g, w) in enumerate(zip(outs, refs, strict=True))]
        worst = max(results, key=lambda r: (not r.ok, r.max_abs if r.max_abs is not None else float("inf")))
        if not all(r.ok for r in results):
            self._turn_off(worst)
            return self.reference(*args)
        self.engine.record(worst, label=f"fused kernel {self.name}", fallback="the PyTorch op")
        return got


def checked_kernel_ops(generator: OcclusionAwareGenerator, *, engine: Engine) -> dict[str, CheckedOp]:
    """The two fused ops for ``generator`` as ``CheckedOp``s recording into ``engine``; their references (and what
    runs once an op is off) are the model's own functions."""
    fast = kernel_ops(generator, use_kernel=True)
    reference = {"dense_motion_inputs": functools.partial(dense_motion_inputs, variance=_variance(generator)),
                 "deform_features": deform_features}
    return {name: CheckedOp(name, fast[name], reference[name], engine=engine) for name in OPS}
