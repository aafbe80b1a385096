"""Paste-back in PyTorch, on the model's device, with the First Order Motion Model's detail transfer.

The same mask and blend as ``live.pasteback`` (whose constants define them), computed where the model ran, so that
on CUDA only the finished output frame is downloaded. It runs on the CPU as well (tests, and the FOMM backend on a
CPU, where its cost is small beside the generator's).

Detail transfer (FOMM). The generator paints an n x n frame (n = 256); brought to the face's size in the output it
holds no detail finer than the model's pixel. The photo has that detail, and the dense motion network says where
each output pixel comes from in the source: ``deformation`` (1 x h x w x 2, grid_sample coordinates of the source
square, align_corners=False) and ``occlusion_map`` (1 x 1 x h x w, 1 where the source is visible, 0 where the
generator must inpaint). So:

    detail = photo - upscale(source crop)        # over the square: exactly what the n x n path loses
    animated = upscale(prediction) + occlusion * warp(detail, deformation)

(``live.pasteback.detail_band``; with a perfect reconstruction at rest the output is the photo itself.) Detail is
left out where the occlusion map is 0. On a known motion (a textured photo shifted by 6 model pixels, the
prediction the ideal 256 x 256 render of that shift, 1280 x 720 output with s = 2.1) the error to the photo shifted
at full resolution falls from 5.7 to 0.4 levels (mean absolute where the animation shows fully) and the face's
variance of the Laplacian rises from 50% to 99% of the truth's (``tests/test_pasteback.py``). That is the ideal
case: a real checkpoint must confirm it on real motion, where the prediction is not the ideal render, the deformation
is only as sharp as the 64 x 64 motion field, and the occlusion map decides where detail is left out.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from live.pasteback import (
    DIFF_HIGH,
    DIFF_LOW,
    DIFF_SIGMA,
    SPREAD_SIGMA,
    kernel_size,
    region,
    window,
)


@functools.lru_cache(maxsize=16)
def _gaussian(sigma: float, device: str) -> torch.Tensor:
    """The 1-D Gaussian OpenCV's ``GaussianBlur`` uses for this sigma and ``kernel_size(sigma)`` taps."""
    k = kernel_size(sigma)
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return (g / g.sum()).to(device=device, dtype=torch.float32)  # k


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """B x C x H x W separable Gaussian blur, borders reflected as OpenCV's default (BORDER_REFLECT_101)."""
    g = _gaussian(sigma, str(image.device))
    k = g.numel()
    c = image.shape[1]
    pad = k // 2
    out = F.pad(image, (pad, pad, 0, 0), mode="reflect")
    out = F.conv2d(out, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)  # B x C x H x W
    out = F.pad(out, (0, 0, pad, pad), mode="reflect")
    return F.conv2d(out, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)  # B x C x H x W


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def change_mask(animated: torch.Tensor, reference: torch.Tensor, window_mask: torch.Tensor) -> torch.Tensor:
    """``live.pasteback.change_mask`` in PyTorch: 1 x 3 x n x n levels (float) -> 1 x 1 x n x n in [0, 1]."""
    diff = gaussian_blur(animated - reference, DIFF_SIGMA).abs().amax(dim=1, keepdim=True)  # 1 x 1 x n x n levels
    moved = smoothstep((diff - DIFF_LOW) / (DIFF_HIGH - DIFF_LOW))
    return window_mask * (2 * gaussian_blur(moved, SPREAD_SIGMA)).clamp(max=1)  # 1 x 1 x n x n


class TensorPasteBack:
    """Pastes the generator's frames into one framed photo on the model's device, with optional detail transfer.

    Args:
        framed: H x W x 3 uint8, the framed photo.
        reference: n x n x 3 uint8, the avatar's unanimated crop.
        box: The square in output edge coordinates (x0, y0, side).
        device: Where the model runs.
        detail: Carry the photo's fine detail along the motion field (FOMM; needs ``deformation``).
    """

    def __init__(self, *, framed: np.ndarray, reference: np.ndarray, box: tuple[float, float, float],
                 device: torch.device | str, detail: bool = True) -> None:
        self.device = torch.device(device)
        self.box = box
        self.n = n = reference.shape[0]
        height, width = framed.shape[:2]
        self.output_size = (width, height)
        self.bounds = x0, y0, x1, y1 = region(box, self.output_size)
        self.framed = torch.from_numpy(np.ascontiguousarray(framed)).to(self.device)  # H x W x 3 uint8
        photo = self.framed.permute(2, 0, 1)[None].float()  # 1 x 3 x H x W levels
        self.reference = torch.from_numpy(np.ascontiguousarray(reference)).to(self.device).permute(2, 0, 1)[None]
        self.reference = self.reference.float()  # 1 x 3 x n x n levels
        self.window = torch.from_numpy(window(n)).to(self.device)[None, None]  # 1 x 1 x n x n
        self.region_photo = photo[:, :, y0:y1, x0:x1]  # 1 x 3 x rh x rw
        bx, by, side = box
        # The region's pixel centres in the square's grid_sample coordinates (align_corners=False): edge coordinate
        # x + 0.5 in the output is 2 (x + 0.5 - bx) / side - 1 in the square.
        xs = (torch.arange(x0, x1, dtype=torch.float64) + 0.5 - bx) * 2 / side - 1
        ys = (torch.arange(y0, y1, dtype=torch.float64) + 0.5 - by) * 2 / side - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        self.grid = torch.stack([gx, gy], dim=-1)[None].to(self.device, torch.float32)  # 1 x rh x rw x 2
        self.upscale = side / n
        self.detail_band = None
        if detail and x1 > x0 and y1 > y0:
            self.detail_band = self.region_photo - self._sample(self.reference, "border")  # 1 x 3 x rh x rw
        self.last_mask: torch.Tensor | None = None

    def _sample(self, image: torch.Tensor, padding: str) -> torch.Tensor:
        """An n x n (or h x w) map sampled at the region's pixels: B x C x rh x rw."""
        return F.grid_sample(image, self.grid, mode="bilinear", padding_mode=padding, align_corners=False)

    def _detail(self, deformation: torch.Tensor, occlusion: torch.Tensor | None) -> torch.Tensor:
        """The photo's detail band carried along ``deformation`` to the region: 1 x 3 x rh x rw levels."""
        bx, by, side = self.box
        # B x h x w x 2 -> 1 x 2 x rh x rw: where each region pixel comes from, in the square's coordinates.
        source = self._sample(deformation[:1].permute(0, 3, 1, 2).float(), "border")
        # Square grid_sample coordinates g -> output edge coordinate bx + (g + 1) side / 2 -> the region's.
        x0, y0, x1, y1 = self.bounds
        fx = (bx - x0 + (source[:, 0] + 1) * side / 2) * 2 / (x1 - x0) - 1  # 1 x rh x rw
        fy = (by - y0 + (source[:, 1] + 1) * side / 2) * 2 / (y1 - y0) - 1  # 1 x rh x rw
        assert self.detail_band is not None
        band = F.grid_sample(self.detail_band, torch.stack([fx, fy], dim=-1), mode="bilinear",
                             padding_mode="zeros", align_corners=False)  # 1 x 3 x rh x rw
        if occlusion is not None:
            band = band * self._sample(occlusion[:1].float(), "border")  # 1 x 1 x rh x rw broadcast
        return band

    @torch.inference_mode()
    def paste_tensor(self, prediction: torch.Tensor, deformation: torch.Tensor | None = None,
                     occlusion: torch.Tensor | None = None) -> torch.Tensor:
        """The output frame on the device: H x W x 3 uint8.

        Args:
            prediction: 1 x 3 x n x n float in [0, 1] (the generator's) or uint8 levels.
            deformation: 1 x h x w x 2, the dense motion (FOMM), for the detail transfer.
            occlusion: 1 x 1 x h x w, the occlusion map (FOMM).
        """
        if prediction.dtype == torch.uint8:
            levels = prediction[:1].float()
        else:
            levels = (prediction[:1].float().clamp(0, 1) * 255).round()  # 1 x 3 x n x n, as tensor_to_image rounds
        out = self.framed.clone()
        x0, y0, x1, y1 = self.bounds
        if x1 <= x0 or y1 <= y0:
            return out
        mask = self._sample(change_mask(levels, self.reference, self.window), "zeros")  # 1 x 1 x rh x rw
        self.last_mask = mask[0, 0]
        animated = self._sample(levels, "border")  # 1 x 3 x rh x rw
        if self.detail_band is not None and deformation is not None:
            animated = animated + self._detail(deformation, occlusion)
        blended = mask * animated + (1 - mask) * self.region_photo  # 1 x 3 x rh x rw
        out[y0:y1, x0:x1] = blended[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
        return out  # H x W x 3 uint8

    def paste(self, prediction: torch.Tensor, deformation: torch.Tensor | None = None,
              occlusion: torch.Tensor | None = None) -> np.ndarray:
        """``paste_tensor``, downloaded once: H x W x 3 uint8 numpy."""
        from models.animator import download_image

        return download_image(self.paste_tensor(prediction, deformation, occlusion))

    def full_mask(self) -> np.ndarray:
        """The last paste's mask over the whole output: H x W float32 numpy (zeros before the first paste)."""
        width, height = self.output_size
        full = np.zeros((height, width), np.float32)
        if self.last_mask is not None:
            x0, y0, x1, y1 = self.bounds
            full[y0:y1, x0:x1] = self.last_mask.cpu().numpy()
        return full
