"""Keypoint detector of the First Order Motion Model (Siarohin et al., NeurIPS 2019, section 3.1).

Upstream: github.com/AliaksandrSiarohin/first-order-model (MIT licence). Parameter names and shapes match the
original ``KPDetector`` so that original checkpoints load strictly.

An hourglass predicts one heatmap per keypoint; a softmax over space turns each into a distribution whose mean is
the keypoint (x, y) in [-1, 1]. Optionally a second head predicts four numbers per pixel, averaged under the same
distribution, giving each keypoint a 2x2 jacobian (the local affine part of the first-order motion model).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fomm_live.models.blocks import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid


class Keypoints(NamedTuple):
    """Keypoints of a batch of images.

    Attributes:
        value: B x K x 2, (x, y) in [-1, 1].
        jacobian: B x K x 2 x 2, or None for models without jacobians.
    """

    value: torch.Tensor
    jacobian: torch.Tensor | None = None


class KPDetector(nn.Module):
    """Detects K keypoints (and their jacobians) in an image.

    Args:
        block_expansion: Width of the first hourglass level.
        num_kp: Number of keypoints K.
        num_channels: Image channels.
        max_features: Hourglass width cap.
        num_blocks: Hourglass depth.
        temperature: Softmax temperature of the heatmaps (0.1 in every published config).
        estimate_jacobian: Predict a 2x2 jacobian per keypoint.
        scale_factor: The image is blurred and downscaled by this factor first (0.25: 256 -> 64).
        single_jacobian_map: One jacobian map shared by all keypoints instead of one each.
        pad: Padding of the 7x7 heads (0 in the original's default: a 64x64 input gives 58x58 heatmaps).
    """

    def __init__(self, *, block_expansion: int, num_kp: int, num_channels: int, max_features: int, num_blocks: int,
                 temperature: float, estimate_jacobian: bool = False, scale_factor: float = 1,
                 single_jacobian_map: bool = False, pad: int = 0) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, max_features=max_features,
                                   num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=(7, 7),
                                      padding=pad)
            # Start from identity jacobians, as the original does; real weights overwrite this.
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * self.num_jacobian_maps))
        else:
            self.num_jacobian_maps = 0
            self.jacobian = None
        self.num_kp = num_kp
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, image: torch.Tensor) -> Keypoints:
        """Args: image: B x C x H x W in [0, 1]. Returns: the image's keypoints."""
        if self.scale_factor != 1:
            image = self.down(image)
        features = self.predictor(image)  # B x F x h x w
        logits = self.kp(features)  # B x K x h' x w'
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, h * w) / self.temperature, dim=2).view(b, k, h, w)
        grid = make_coordinate_grid(h, w, dtype=heatmap.dtype, device=heatmap.device)  # h' x w' x 2
        # A plain weighted sum rather than an einsum: the reduction order matches the original to the last bit
        # of float32, which matters because every warp downstream amplifies keypoint error ~128x.
        value = (heatmap.unsqueeze(-1) * grid.view(1, 1, h, w, 2)).sum(dim=(2, 3))  # B x K x 2
        if self.jacobian is None:
            return Keypoints(value, None)
        jacobian_map = self.jacobian(features).view(b, self.num_jacobian_maps, 4, h, w)  # B x (K|1) x 4 x h' x w'
        jacobian = (heatmap.unsqueeze(2) * jacobian_map).view(b, k, 4, h * w).sum(dim=-1)  # B x K x 4
        return Keypoints(value, jacobian.view(b, k, 2, 2))  # B x K x 2 x 2
