"""Fused kernels for the per-frame hot spots of the First Order Motion Model, with their PyTorch references.

What this room is for: the fused ops, their pure-PyTorch references (``kernels.reference``) and the switch that
decides whether the kernels run. What it may import: torch, triton and ``common`` (the switch's declaration) only;
nothing from ``models/`` (models import kernels, never the other way). The ops take plain tensors and constants:
keypoint values, the B x K x 2 x 2 motion jacobians ``J_src @ inv(J_drv)`` and the gaussian variance come from the
caller (``models.engines.kernel_ops`` adapts the model's keypoints). That the references equal the model's own
functions is proven by ``tests/test_kernels.py``.

Two ops, each a Triton kernel beside its reference:

- ``dense_motion_inputs``: keypoint gaussians + the K+1 sparse motions (with jacobians) + the (K+1)-way warp of the
  downscaled source, i.e. the dense motion network's whole input stage (``kernels/dense_motion.py``).
- ``deform_features``: the final dense deformation of the encoder features (bilinear ``grid_sample``,
  ``align_corners=False``, zero padding) times the occlusion map (``kernels/deform.py``).

This module is the one switch that decides whether the kernels run (``kernels_enabled``):

- ``FOMM_LIVE_KERNELS=0``: never; ``FOMM_LIVE_KERNELS=1``: whenever Triton can run on the tensors' device
  (a CUDA GPU, or any device under ``TRITON_INTERPRET=1``, Triton's CPU interpreter used by the tests);
- unset or ``auto``: on CUDA devices when ``triton`` imports.

When Triton is missing or cannot run there, the references run instead, with one warning if the kernels were asked
for explicitly. The engine that uses them (``models.engines``) also checks each op against its reference on its first
real inputs and turns an op off when it raises or differs. Status: the kernels are checked against the references
with Triton's interpreter on CPU; they have not been run or timed on a GPU yet.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os

import torch

from fomm_live.common.switches import switch
from fomm_live.kernels.reference import deform_features_reference, dense_motion_inputs_reference

logger = logging.getLogger(__name__)

_warned: set[str] = set()

__all__ = [
    "deform_features",
    "deform_features_reference",
    "dense_motion_inputs",
    "dense_motion_inputs_reference",
    "kernels_enabled",
    "triton_available",
    "triton_interpreted",
]


@functools.cache
def triton_available() -> bool:
    """True when the ``triton`` package is installed (checked once, without importing it)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``, read when a kernel module is
    first imported)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def kernels_enabled(device: torch.device | str) -> bool:
    """Whether the fused kernels run for tensors on ``device`` (see the module docstring for the rules)."""
    device = torch.device(device)
    setting = switch("FOMM_LIVE_KERNELS")
    if setting == "0":
        return False
    if setting == "auto":
        return device.type == "cuda" and triton_available()
    if not triton_available():
        _warn_once("FOMM_LIVE_KERNELS=1 but triton is not installed; using the PyTorch reference ops")
        return False
    if device.type != "cuda" and not triton_interpreted():
        _warn_once(f"FOMM_LIVE_KERNELS=1 but Triton cannot run on {device.type} tensors without TRITON_INTERPRET=1; "
                   "using the PyTorch reference ops")
        return False
    return True


def _use(use_kernel: bool | None, device: torch.device) -> bool:
    """An explicit choice wins; None asks ``kernels_enabled`` for the tensors' device."""
    return kernels_enabled(device) if use_kernel is None else use_kernel


def dense_motion_inputs(source_small: torch.Tensor, value_driving: torch.Tensor, value_source: torch.Tensor,
                        motion_jacobian: torch.Tensor | None = None, *, variance: float,
                        use_kernel: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense motion network's input stage; see ``kernels.reference.dense_motion_inputs_reference``.

    Args:
        use_kernel: Force the Triton kernel (True) or the reference (False); None asks ``kernels_enabled``.
    """
    if _use(use_kernel, source_small.device):
        from fomm_live.kernels.dense_motion import dense_motion_inputs_triton

        return dense_motion_inputs_triton(source_small, value_driving, value_source, motion_jacobian,
                                          variance=variance)
    return dense_motion_inputs_reference(source_small, value_driving, value_source, motion_jacobian,
                                         variance=variance)


def deform_features(features: torch.Tensor, deformation: torch.Tensor, occlusion_map: torch.Tensor | None, *,
                    use_kernel: bool | None = None) -> torch.Tensor:
    """The generator's dense warp times the occlusion map; see ``kernels.reference.deform_features_reference``.

    Args:
        use_kernel: Force the Triton kernel (True) or the reference (False); None asks ``kernels_enabled``.
    """
    if _use(use_kernel, features.device):
        from fomm_live.kernels.deform import deform_features_triton

        return deform_features_triton(features, deformation, occlusion_map)
    return deform_features_reference(features, deformation, occlusion_map)
