"""Dense motion network of the First Order Motion Model (Siarohin et al., NeurIPS 2019, section 3.2).

Upstream: github.com/AliaksandrSiarohin/first-order-model (MIT licence). Parameter names match the original
``DenseMotionNetwork``.

For each keypoint k, the first-order approximation of the backward motion near the driving keypoint is

    T_k(z) = kp_src_k + J_src_k @ inv(J_drv_k) @ (z - kp_drv_k)

plus the identity for the background. The source (downscaled) is warped by each of these K+1 motions; an hourglass
sees the warped copies and the difference of keypoint gaussians, and predicts a softmax mask that blends the K+1
motions into one dense deformation, and optionally an occlusion map.

Convention: see ``models.blocks``; grids are B x H x W x 2 (x, y) in [-1, 1] for ``grid_sample(align_corners=False)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fomm_live.models.blocks import KP_VARIANCE, AntiAliasInterpolation2d, Hourglass, kp2gaussian, make_coordinate_grid
from fomm_live.models.keypoint_detector import Keypoints
from fomm_live.models.motion import inverse_2x2


def motion_jacobians(kp_driving: Keypoints, kp_source: Keypoints) -> torch.Tensor | None:
    """``J_src @ inv(J_drv)`` per keypoint, B x K x 2 x 2 (None for keypoints without jacobians): the linear part of
    the sparse motions, also what the fused kernel ``kernels.dense_motion_inputs`` takes."""
    if kp_driving.jacobian is None:
        return None
    return kp_source.jacobian @ inverse_2x2(kp_driving.jacobian)  # B x K x 2 x 2


def sparse_motions(height: int, width: int, kp_driving: Keypoints, kp_source: Keypoints) -> torch.Tensor:
    """The K+1 candidate backward motions (identity first).

    Returns:
        B x (K+1) x H x W x 2 sampling grids.
    """
    value_d, value_s = kp_driving.value, kp_source.value
    b, k, _ = value_d.shape
    identity = make_coordinate_grid(height, width, dtype=value_d.dtype, device=value_d.device)  # H x W x 2
    coords = identity.view(1, 1, height, width, 2) - value_d.view(b, k, 1, 1, 2)  # B x K x H x W x 2
    jac = motion_jacobians(kp_driving, kp_source)  # B x K x 2 x 2
    if jac is not None:
        coords = (jac.view(b, k, 1, 1, 2, 2) @ coords.unsqueeze(-1)).squeeze(-1)  # B x K x H x W x 2
    driving_to_source = coords + value_s.view(b, k, 1, 1, 2)  # B x K x H x W x 2
    identity = identity.view(1, 1, height, width, 2).expand(b, 1, height, width, 2)
    return torch.cat([identity, driving_to_source], dim=1)  # B x (K+1) x H x W x 2


def heatmap_representation(height: int, width: int, kp_driving: Keypoints, kp_source: Keypoints,
                           variance: float = KP_VARIANCE) -> torch.Tensor:
    """Difference of keypoint gaussians (driving minus source), with a zero map for the background.

    Returns:
        B x (K+1) x 1 x H x W.
    """
    heat = kp2gaussian(kp_driving.value, height, width, variance) - kp2gaussian(kp_source.value, height, width,
                                                                               variance)  # B x K x H x W
    zeros = heat.new_zeros(heat.shape[0], 1, height, width)
    return torch.cat([zeros, heat], dim=1).unsqueeze(2)  # B x (K+1) x 1 x H x W


def dense_motion_inputs(source_small: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints,
                        variance: float = KP_VARIANCE) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input stage: keypoint gaussians, the K+1 sparse motions, the K+1 warps of the source.

    ``kernels.reference.dense_motion_inputs_reference`` computes the same from plain tensors for the fused kernel
    (``tests/test_kernels.py`` proves the two equal).

    Args:
        source_small: B x C x h x w source at the network's resolution.
        kp_driving: Driving keypoints, batch B.
        kp_source: Source keypoints, batch B.
        variance: Variance of the keypoint gaussians.

    Returns:
        ``hourglass_in`` B x (K+1)(C+1) x h x w (per motion: the gaussian difference, then the C warped channels)
        and ``motions`` B x (K+1) x h x w x 2 (identity first).
    """
    b, c, h, w = source_small.shape
    heatmap = heatmap_representation(h, w, kp_driving, kp_source, variance)  # B x (K+1) x 1 x h x w
    motions = sparse_motions(h, w, kp_driving, kp_source)  # B x (K+1) x h x w x 2
    k1 = motions.shape[1]
    repeated = source_small.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)  # B(K+1) x C x h x w
    deformed = F.grid_sample(repeated, motions.reshape(b * k1, h, w, 2), align_corners=False)  # B(K+1) x C x h x w
    deformed = deformed.view(b, k1, c, h, w)  # B x (K+1) x C x h x w
    hourglass_in = torch.cat([heatmap, deformed], dim=2).view(b, k1 * (c + 1), h, w)  # B x (K+1)(C+1) x h x w
    return hourglass_in, motions


InputsOp = Callable[[torch.Tensor, Keypoints, Keypoints], tuple[torch.Tensor, torch.Tensor]]


class DenseMotionNetwork(nn.Module):
    """Predicts the dense backward deformation and the occlusion map from sparse keypoint motions.

    Args:
        block_expansion: Width of the first hourglass level.
        num_blocks: Hourglass depth.
        max_features: Hourglass width cap.
        num_kp: Number of keypoints K.
        num_channels: Image channels.
        estimate_occlusion_map: Predict an occlusion map.
        scale_factor: The source is blurred and downscaled by this factor first (0.25: 256 -> 64).
        kp_variance: Variance of the keypoint gaussians.
    """

    def __init__(self, *, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, num_channels: int,
                 estimate_occlusion_map: bool = False, scale_factor: float = 1, kp_variance: float = KP_VARIANCE
                 ) -> None:
        super().__init__()
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        else:
            self.occlusion = None
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def downscale(self, source_image: torch.Tensor) -> torch.Tensor:
        """The source at the network's working resolution; depends on the source only, so it can be cached."""
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def forward_downscaled(self, source_small: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints, *,
                           inputs_op: InputsOp | None = None) -> dict[str, torch.Tensor]:
        """Run on an already downscaled source (see ``downscale``).

        Args:
            inputs_op: Computes the input stage instead of ``dense_motion_inputs`` (the fused kernel).

        Returns:
            ``mask`` B x (K+1) x h x w, ``deformation`` B x h x w x 2, ``sparse_deformed`` B x (K+1) x C x h x w,
            and ``occlusion_map`` B x 1 x h x w when the model has one.
        """
        b, c, h, w = source_small.shape
        kp_b = kp_driving.value.shape[0]
        if kp_b != b:  # one cached source animated by a batch of driving frames
            source_small = source_small.expand(kp_b, c, h, w)
            kp_source = Keypoints(*(t if t is None else t.expand(kp_b, *t.shape[1:]) for t in kp_source))
            b = kp_b
        if inputs_op is None:
            hourglass_in, motions = dense_motion_inputs(source_small, kp_driving, kp_source, self.kp_variance)
        else:
            hourglass_in, motions = inputs_op(source_small, kp_driving, kp_source)
        k1 = self.num_kp + 1
        deformed = hourglass_in.view(b, k1, c + 1, h, w)[:, :, 1:]  # B x (K+1) x C x h x w, the warped sources
        prediction = self.hourglass(hourglass_in)
        mask = F.softmax(self.mask(prediction), dim=1)  # B x (K+1) x h x w
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)  # B x h x w x 2
        out = {"mask": mask, "deformation": deformation, "sparse_deformed": deformed}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))  # B x 1 x h x w
        return out

    def forward(self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
                ) -> dict[str, torch.Tensor]:
        return self.forward_downscaled(self.downscale(source_image), kp_driving, kp_source)
