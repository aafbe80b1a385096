"""Building blocks shared by the First Order Motion Model networks.

First Order Motion Model for Image Animation, Siarohin et al., NeurIPS 2019 (arXiv:1912.00969). The original
implementation is github.com/AliaksandrSiarohin/first-order-model (MIT licence); the published weights carry that
repository's terms. This is an independent implementation whose parameter names and shapes match the original's,
so that its checkpoints load strictly.

Convention: coordinates are (x, y) pairs in [-1, 1]. ``make_coordinate_grid`` puts -1 and 1 at the *centres* of the
first and last pixels, while every ``grid_sample`` and ``interpolate`` call runs with ``align_corners=False``, for which
-1 and 1 are the outer *edges* of those pixels. The original mixes the two conventions, and its checkpoints were
trained that way, so both are kept exactly as they are: "fixing" either one moves every warp by half a pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Variance of the keypoint gaussians, in the [-1, 1] coordinate units; a constant of the original, not in the configs.
KP_VARIANCE = 0.01


def make_coordinate_grid(height: int, width: int, *, dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Return an H x W x 2 grid of (x, y) coordinates, -1 and 1 at the centres of the border pixels."""
    x = torch.arange(width, dtype=dtype, device=device)
    y = torch.arange(height, dtype=dtype, device=device)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    xx = x.view(1, width).expand(height, width)
    yy = y.view(height, 1).expand(height, width)
    return torch.stack([xx, yy], dim=-1)  # H x W x 2


def kp2gaussian(kp_value: torch.Tensor, height: int, width: int, variance: float = KP_VARIANCE) -> torch.Tensor:
    """Unnormalised isotropic gaussians centred on keypoints.

    Args:
        kp_value: B x K x 2 keypoints, (x, y) in [-1, 1].
        height: Output height.
        width: Output width.
        variance: Gaussian variance in coordinate units.

    Returns:
        B x K x H x W heatmaps, 1 at the keypoint.
    """
    grid = make_coordinate_grid(height, width, dtype=kp_value.dtype, device=kp_value.device)
    diff = grid.view(1, 1, height, width, 2) - kp_value.view(*kp_value.shape[:2], 1, 1, 2)  # B x K x H x W x 2
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / variance)  # B x K x H x W


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur followed by nearest-neighbour downsampling by ``scale``.

    The gaussian's sigma is ``(1 / scale - 1) / 2`` and its size ``2 * round(4 * sigma) + 1``; the kernel is a
    registered buffer named ``weight`` because original checkpoints store it under that name.

    Args:
        channels: Number of image channels (the blur is depthwise).
        scale: Downsampling factor, e.g. 0.25.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad_before = size // 2
        self.pad_after = self.pad_before - 1 if size % 2 == 0 else self.pad_before
        coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
        kernel = g.view(size, 1) * g.view(1, size)
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1))  # C x 1 x k x k
        self.groups = channels
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after))
        out = F.conv2d(out, weight=self.weight, groups=self.groups)
        return F.interpolate(out, scale_factor=(self.scale, self.scale))  # nearest, as the original


class ResBlock2d(nn.Module):
    """Pre-activation residual block: BN-ReLU-conv twice, plus the input."""

    def __init__(self, in_features: int, kernel_size: int | tuple[int, int], padding: int | tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class UpBlock2d(nn.Module):
    """Nearest-neighbour x2 upsampling, then conv-BN-ReLU."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int] = 3,
                 padding: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x, scale_factor=2)
        return F.relu(self.norm(self.conv(out)))


class DownBlock2d(nn.Module):
    """Conv-BN-ReLU, then 2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int] = 3,
                 padding: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class SameBlock2d(nn.Module):
    """Conv-BN-ReLU at the same resolution."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int] = 3,
                 padding: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


def feature_width(block_expansion: int, max_features: int, level: int) -> int:
    """Channels at depth ``level`` of an encoder: ``block_expansion * 2**level``, capped at ``max_features``."""
    return min(max_features, block_expansion * (2 ** level))


class Encoder(nn.Module):
    """Hourglass encoder: returns the input and the output of every down block (for the skip connections)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else feature_width(block_expansion, max_features, i),
                        feature_width(block_expansion, max_features, i + 1))
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: upsamples and concatenates the matching encoder output after every block."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * feature_width(block_expansion, max_features, i + 1)
            blocks.append(UpBlock2d(in_filters, feature_width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for i, block in enumerate(self.up_blocks):
            out = block(out)
            out = torch.cat([out, skips[-2 - i]], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net style encoder-decoder; the output has ``out_filters = block_expansion + in_features`` channels."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
