"""Pure-PyTorch references of the fused ops in ``kernels/``: the numbers the Triton kernels must reproduce.

They take plain tensors and constants (no model types) and are written out here, not imported from ``models/``:
``kernels/`` imports nothing from ``models/``. ``tests/test_kernels.py`` proves they equal the model's own functions
(``models.dense_motion.dense_motion_inputs``, ``models.generator.deform_features``), so they cannot drift apart. Tests
and benchmarks import these; nothing else duplicates them.

Convention: keypoints and sampling grids are (x, y) in [-1, 1]; the coordinate grid puts -1 and 1 at the centres of
the border pixels; every sampling is bilinear ``grid_sample`` with ``align_corners=False`` and zero padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["coordinate_grid", "deform_features_reference", "dense_motion_inputs_reference"]


def coordinate_grid(height: int, width: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """H x W x 2 grid of (x, y) coordinates, -1 and 1 at the centres of the border pixels."""
    x = 2 * (torch.arange(width, dtype=dtype, device=device) / (width - 1)) - 1
    y = 2 * (torch.arange(height, dtype=dtype, device=device) / (height - 1)) - 1
    return torch.stack([x.view(1, width).expand(height, width), y.view(height, 1).expand(height, width)],
                       dim=-1)  # H x W x 2


def dense_motion_inputs_reference(source_small: torch.Tensor, value_driving: torch.Tensor, value_source: torch.Tensor,
                                  motion_jacobian: torch.Tensor | None = None, *, variance: float
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense motion network's input stage: keypoint gaussians, the K+1 sparse motions, the K+1 source warps.

    Motion k (k = 1..K) is ``T_k(z) = kp_src_k + M_k @ (z - kp_drv_k)`` with ``M_k = J_src_k @ inv(J_drv_k)``
    (identity without jacobians); motion 0 is the identity (background).

    Args:
        source_small: B x C x h x w source at the network's resolution.
        value_driving: B x K x 2 driving keypoints.
        value_source: B x K x 2 source keypoints.
        motion_jacobian: B x K x 2 x 2 ``J_src @ inv(J_drv)``, or None for zero-order motion.
        variance: Variance of the keypoint gaussians (coordinate units).

    Returns:
        ``hourglass_in`` B x (K+1)(C+1) x h x w (per motion: the gaussian difference, then the C warped channels)
        and ``motions`` B x (K+1) x h x w x 2 (identity first).
    """
    b, c, h, w = source_small.shape
    k = value_driving.shape[1]
    grid = coordinate_grid(h, w, dtype=value_driving.dtype, device=value_driving.device)  # h x w x 2

    def gaussians(value: torch.Tensor) -> torch.Tensor:
        diff = grid.view(1, 1, h, w, 2) - value.view(b, k, 1, 1, 2)  # B x K x h x w x 2
        return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)  # B x K x h x w

    heat = gaussians(value_driving) - gaussians(value_source)  # B x K x h x w
    heatmap = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1).unsqueeze(2)  # B x (K+1) x 1 x h x w
    coords = grid.view(1, 1, h, w, 2) - value_driving.view(b, k, 1, 1, 2)  # B x K x h x w x 2
    if motion_jacobian is not None:
        coords = (motion_jacobian.view(b, k, 1, 1, 2, 2) @ coords.unsqueeze(-1)).squeeze(-1)  # B x K x h x w x 2
    identity = grid.view(1, 1, h, w, 2).expand(b, 1, h, w, 2)
    motions = torch.cat([identity, coords + value_source.view(b, k, 1, 1, 2)], dim=1)  # B x (K+1) x h x w x 2
    k1 = k + 1
    repeated = source_small.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)  # B(K+1) x C x h x w
    deformed = F.grid_sample(repeated, motions.reshape(b * k1, h, w, 2), align_corners=False)  # B(K+1) x C x h x w
    deformed = deformed.view(b, k1, c, h, w)  # B x (K+1) x C x h x w
    hourglass_in = torch.cat([heatmap, deformed], dim=2).view(b, k1 * (c + 1), h, w)  # B x (K+1)(C+1) x h x w
    return hourglass_in, motions


def deform_features_reference(features: torch.Tensor, deformation: torch.Tensor,
                              occlusion_map: torch.Tensor | None) -> torch.Tensor:
    """The dense warp of the encoder features times the occlusion map.

    Args:
        features: B x C x H x W encoder features (batch 1 is broadcast over the deformation's batch).
        deformation: B x h x w x 2 backward deformation; resized bilinearly to H x W when it differs.
        occlusion_map: B x 1 x h x w in [0, 1], resized bilinearly to H x W when it differs; None for none.

    Returns:
        B x C x H x W warped (and occluded) features.
    """
    if features.shape[0] != deformation.shape[0]:
        features = features.expand(deformation.shape[0], *features.shape[1:])
    h, w = features.shape[2:]
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=False).permute(0, 2, 3, 1)  # B x H x W x 2
    out = F.grid_sample(features, deformation, align_corners=False)  # B x C x H x W
    if occlusion_map is None:
        return out
    if occlusion_map.shape[2:] != (h, w):
        occlusion_map = F.interpolate(occlusion_map, size=(h, w), mode="bilinear", align_corners=False)
    return out * occlusion_map  # B x C x H x W
