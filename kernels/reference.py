"""Pure-PyTorch references of the fused ops in ``kernels/``: the numbers the Triton kernels must reproduce.

They are built from the model's own functions (``models.dense_motion``, ``models.generator``), not copies of them, so
a reference cannot drift from what the model computes. Tests and benchmarks import these; nothing is duplicated.

Convention: see ``models.blocks``; keypoints and sampling grids are (x, y) in [-1, 1], every sampling is bilinear with
``align_corners=False`` and zero padding.
"""

from __future__ import annotations

from models.dense_motion import dense_motion_inputs as dense_motion_inputs_reference
from models.generator import deform_features as deform_features_reference

__all__ = ["deform_features_reference", "dense_motion_inputs_reference"]
