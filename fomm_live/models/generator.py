"""Occlusion-aware generator of the First Order Motion Model (Siarohin et al., NeurIPS 2019, section 3.3).

Upstream: github.com/AliaksandrSiarohin/first-order-model (MIT licence). Parameter names match the original
``OcclusionAwareGenerator``.

The source is encoded to a feature map; the dense motion network's deformation warps that map, the occlusion map
multiplies it, and a decoder paints the frame. Everything before the warp depends on the source alone, so
``encode_source`` runs once per source image and ``decode`` once per frame: same numbers as the uncached path,
about a fifth less work per frame at vox-256 size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fomm_live.models.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, feature_width
from fomm_live.models.dense_motion import DenseMotionNetwork, InputsOp
from fomm_live.models.keypoint_detector import Keypoints


class SourceState(NamedTuple):
    """What the generator keeps of an encoded source image.

    Attributes:
        image: B x C x H x W source, [0, 1] (only needed for the visualisation-only ``deformed`` output).
        image_small: B x C x h x w source at the dense motion network's resolution.
        features: B x F x h_f x w_f encoder output, the input of the warp.
    """

    image: torch.Tensor
    image_small: torch.Tensor
    features: torch.Tensor


def warp(inp: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``inp`` (B x C x H x W) by ``deformation`` (B x h x w x 2, resized bilinearly to H x W)."""
    _, h_def, w_def, _ = deformation.shape
    _, _, h, w = inp.shape
    if (h_def, w_def) != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=False).permute(0, 2, 3, 1)  # B x H x W x 2
    return F.grid_sample(inp, deformation, align_corners=False)  # B x C x H x W


def deform_features(features: torch.Tensor, deformation: torch.Tensor,
                    occlusion_map: torch.Tensor | None) -> torch.Tensor:
    """The dense warp of the encoder features times the occlusion map (``kernels.deform_features`` fuses it;
    ``tests/test_kernels.py`` proves its reference equal to this).

    Args:
        features: B x C x H x W encoder features (batch 1 is broadcast over the deformation's batch).
        deformation: B x h x w x 2 backward deformation; resized bilinearly to H x W when it differs.
        occlusion_map: B x 1 x h x w in [0, 1], resized bilinearly to H x W when it differs; None for none.

    Returns:
        B x C x H x W warped (and occluded) features.
    """
    if features.shape[0] != deformation.shape[0]:
        features = features.expand(deformation.shape[0], *features.shape[1:])
    out = warp(features, deformation)  # B x C x H x W
    if occlusion_map is None:
        return out
    if occlusion_map.shape[2:] != out.shape[2:]:
        occlusion_map = F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear", align_corners=False)
    return out * occlusion_map  # B x C x H x W


DeformOp = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class OcclusionAwareGenerator(nn.Module):
    """Generates the source image moved by the motion between source and driving keypoints.

    Args:
        num_channels: Image channels.
        num_kp: Number of keypoints.
        block_expansion: Width of the first encoder level.
        max_features: Width cap.
        num_down_blocks: Encoder (and decoder) depth.
        num_bottleneck_blocks: Residual blocks between encoder and decoder.
        estimate_occlusion_map: Multiply the warped features by a predicted occlusion map.
        dense_motion_params: Keyword arguments of ``DenseMotionNetwork``; None for a generator without motion.
        estimate_jacobian: Accepted for config compatibility; jacobians are used whenever keypoints carry them.
    """

    def __init__(self, *, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, estimate_occlusion_map: bool = False,
                 dense_motion_params: dict | None = None, estimate_jacobian: bool = False) -> None:
        super().__init__()
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                           estimate_occlusion_map=estimate_occlusion_map,
                                                           **dense_motion_params)
        else:
            self.dense_motion_network = None
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        def width(level: int) -> int:
            return feature_width(block_expansion, max_features, level)

        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(i), width(i + 1), kernel_size=(3, 3), padding=(1, 1)) for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1), kernel_size=(3, 3), padding=(1, 1))
            for i in range(num_down_blocks)
        )
        bottleneck_features = width(num_down_blocks)
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(bottleneck_features, kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels

    def encode_source(self, source_image: torch.Tensor) -> SourceState:
        """Encode a source image (B x C x H x W in [0, 1]) once; reuse the state for every frame."""
        features = self.first(source_image)
        for block in self.down_blocks:
            features = block(features)
        small = source_image if self.dense_motion_network is None else self.dense_motion_network.downscale(source_image)
        return SourceState(source_image, small, features)

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *,
               with_deformed: bool = True, inputs_op: InputsOp | None = None, deform_op: DeformOp | None = None,
               with_deformation: bool = False) -> dict[str, torch.Tensor]:
        """Generate frames for ``kp_driving`` from an encoded source.

        Args:
            state: From ``encode_source``; batch 1 is broadcast over a batch of driving keypoints.
            kp_driving: The (normalised) driving keypoints, batch B.
            kp_source: The source's keypoints.
            with_deformed: Also return ``deformed``, the source image warped by the dense motion (for
                visualisation only; the live path skips it).
            inputs_op: Replaces the dense motion network's input stage (``dense_motion_inputs``).
            deform_op: Replaces the feature warp times occlusion (``deform_features``).
            with_deformation: Also return ``deformation``, the dense motion field (B x h x w x 2, grid_sample
                coordinates of the source), for carrying the photo's detail along it at output resolution.

        Returns:
            ``prediction`` B x C x H x W in [0, 1]; with dense motion also ``mask``, ``sparse_deformed``,
            ``occlusion_map`` (if estimated), ``deformed`` and ``deformation`` (if asked).
        """
        out = state.features
        result: dict[str, torch.Tensor] = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network.forward_downscaled(state.image_small, kp_driving, kp_source,
                                                                  inputs_op=inputs_op)
            result["mask"] = motion["mask"]
            result["sparse_deformed"] = motion["sparse_deformed"]
            deformation = motion["deformation"]  # B x h x w x 2
            occlusion_map = motion.get("occlusion_map")
            if occlusion_map is not None:
                result["occlusion_map"] = occlusion_map
            if with_deformation:
                result["deformation"] = deformation
            out = (deform_op or deform_features)(out, deformation, occlusion_map)
            if with_deformed:
                image = state.image
                if image.shape[0] != deformation.shape[0]:
                    image = image.expand(deformation.shape[0], *image.shape[1:])
                result["deformed"] = warp(image, deformation)
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        result["prediction"] = torch.sigmoid(self.final(out))
        return result

    def forward(self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints
                ) -> dict[str, torch.Tensor]:
        """The original's uncached call: encode the source, then decode one batch of frames."""
        return self.decode(self.encode_source(source_image), kp_driving, kp_source)
