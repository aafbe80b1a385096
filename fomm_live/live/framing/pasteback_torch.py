"""Paste-back in PyTorch, on the model's device, with the First Order Motion Model's detail transfer.

The same mask (``live.framing.pasteback.mask_from_change``, its one definition) and blend as
``live.framing.pasteback``, computed where the model ran, so that on CUDA only the finished output frame is
downloaded. It runs on the CPU as well, in the tests; the live loop pastes a CPU model's frames with
``live.framing.pasteback_field`` instead (OpenCV: several times faster there, ``benchmarks/framing.py``).

Detail transfer (FOMM). The generator paints an n x n frame (n = 256); brought to the face's size in the output it
holds no detail finer than the model's pixel. The photo has that detail, and the dense motion network says where
each output pixel comes from in the source: ``deformation`` (1 x h x w x 2, grid_sample coordinates of the source
square, align_corners=False) and ``occlusion_map`` (1 x 1 x h x w, 1 where the source is visible, 0 where the
generator must inpaint). So:

    detail = photo - upscale(source crop)        # over the square: exactly what the n x n path loses
    animated = upscale(prediction) + occlusion * warp(detail, deformation)

(With a perfect reconstruction at rest the output is the photo itself.) Detail is
left out where the occlusion map is 0. The band is sampled bicubic: bilinear at sub-pixel offsets halves its finest
part. On a known motion (a textured photo shifted by 6.25 model pixels, 12.5 output pixels at 2x, the prediction the
ideal 256 x 256 render of the shifted photo, 1280 x 720 output) the error to the truth falls from 1.9 to 0.4 levels
(mean absolute where the animation shows fully; 0.5 sampled bilinear) and the face's variance of the Laplacian rises
from 55% to 86% of the truth's (79% bilinear) (``tests/test_pasteback.py``). That is the ideal case: a real
checkpoint must confirm it on real motion, where the prediction is not the ideal render, the deformation is only as
sharp as the 64 x 64 motion field, and the occlusion map decides where detail is left out.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from fomm_live.live.backends import Rendered
from fomm_live.live.framing.pasteback import DIFF_SIGMA, kernel_size, mask_from_change, region, whole_frame, window
from fomm_live.live.framing.pasteback import change_mask as host_change_mask


@functools.lru_cache(maxsize=16)
def _blur_matrix(n: int, sigma: float, device: str) -> torch.Tensor:
    """n x n matrix of OpenCV's ``GaussianBlur`` along one axis: ``kernel_size(sigma)`` taps, borders reflected
    (BORDER_REFLECT_101) folded into the matrix. A matrix product, because PyTorch's grouped 1-D convolution is slow
    on a CPU (100 ms for 3 x 256 x 256 on the 2-core test CPU, against 1 ms for the two products)."""
    k = kernel_size(sigma)
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    taps = torch.exp(-x * x / (2 * sigma * sigma))
    taps = taps / taps.sum()  # k
    matrix = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for t in range(k):
            j = i + t - (k - 1) // 2
            while j < 0 or j >= n:  # reflect without repeating the edge pixel
                j = -j if j < 0 else 2 * (n - 1) - j
            matrix[i, j] += taps[t]
    return matrix.to(device=device, dtype=torch.float32)  # n x n: out[i] = sum_j matrix[i, j] in[j]


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """B x C x H x W Gaussian blur, as OpenCV's ``GaussianBlur`` with ``kernel_size(sigma)`` taps and its default
    borders (BORDER_REFLECT_101)."""
    rows = _blur_matrix(image.shape[2], sigma, str(image.device))  # H x H
    cols = _blur_matrix(image.shape[3], sigma, str(image.device))  # W x W
    return rows @ image @ cols.T  # B x C x H x W


def change_mask(animated: torch.Tensor, reference: torch.Tensor, window_mask: torch.Tensor) -> torch.Tensor:
    """``live.framing.pasteback.change_mask`` in PyTorch: 1 x 3 x n x n levels (float) -> 1 x 1 x n x n in [0, 1]."""
    diff = gaussian_blur(animated - reference, DIFF_SIGMA).abs().amax(dim=1, keepdim=True)  # 1 x 1 x n x n levels
    return mask_from_change(diff, window_mask, gaussian_blur)  # 1 x 1 x n x n


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
        self.reference_image = np.ascontiguousarray(reference)
        self.reference = torch.from_numpy(self.reference_image).to(self.device).permute(2, 0, 1)[None]
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
        # B x h x w x 2 -> 1 x 2 x rh x rw: where each region pixel comes from, in the square's coordinates (and the
        # occlusion map beside it: one sampling for both).
        field = deformation[:1].permute(0, 3, 1, 2).float()  # 1 x 2 x h x w
        if occlusion is not None:
            field = torch.cat([field, occlusion[:1].float()], dim=1)  # 1 x 3 x h x w
        source = self._sample(field, "border")  # 1 x (2 or 3) x rh x rw
        # Square grid_sample coordinates g -> output edge coordinate bx + (g + 1) side / 2 -> the region's.
        x0, y0, x1, y1 = self.bounds
        fx = (bx - x0 + (source[:, 0] + 1) * side / 2) * 2 / (x1 - x0) - 1  # 1 x rh x rw
        fy = (by - y0 + (source[:, 1] + 1) * side / 2) * 2 / (y1 - y0) - 1  # 1 x rh x rw
        assert self.detail_band is not None
        band = F.grid_sample(self.detail_band, torch.stack([fx, fy], dim=-1), mode="bicubic",
                             padding_mode="zeros", align_corners=False)  # 1 x 3 x rh x rw
        if occlusion is not None:
            band = band * source[:, 2:3]  # 1 x 1 x rh x rw broadcast
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
        if self.device.type == "cpu":  # OpenCV's blurs are ~50x faster than PyTorch's on a CPU; same definition
            square = levels[0].permute(1, 2, 0).to(torch.uint8).numpy()  # n x n x 3
            small = torch.from_numpy(host_change_mask(square, self.reference_image))[None, None]  # 1 x 1 x n x n
        else:
            small = change_mask(levels, self.reference, self.window)  # 1 x 1 x n x n
        # One sampling for the frame and its mask; the window is 0 along the square's border, so the border padding
        # (for the region's outermost pixels, under one pixel past the square) keeps the mask 0 there.
        both = self._sample(torch.cat([levels, small.to(levels.device)], dim=1), "border")  # 1 x 4 x rh x rw
        animated, mask = both[:, :3], both[:, 3:]
        self.last_mask = mask[0, 0]
        if self.detail_band is not None and deformation is not None:
            animated = animated + self._detail(deformation, occlusion)
        blended = mask * animated + (1 - mask) * self.region_photo  # 1 x 3 x rh x rw
        out[y0:y1, x0:x1] = blended[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
        return out  # H x W x 3 uint8

    def paste(self, rendered: Rendered) -> np.ndarray:
        """``paste_tensor`` of a render (its frame, and its motion field when it has one), downloaded once: H x W x 3
        uint8 numpy. Host arrays (n x n x 3 uint8, an h x w x 2 field) are uploaded first."""
        from fomm_live.models.animator import download_image

        frame = rendered.frame
        if isinstance(frame, np.ndarray):
            frame = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]  # 1 x 3 x n x n uint8
        deformation = occlusion = None
        if rendered.field is not None:
            deformation = torch.as_tensor(rendered.field.deformation, device=self.device)
            deformation = deformation if deformation.ndim == 4 else deformation[None]  # 1 x h x w x 2
            if rendered.field.occlusion is not None:
                occlusion = torch.as_tensor(rendered.field.occlusion, device=self.device)
                occlusion = occlusion.reshape(1, 1, *occlusion.shape[-2:])  # 1 x 1 x h x w
        return download_image(self.paste_tensor(frame.to(self.device), deformation, occlusion))

    def full_mask(self) -> np.ndarray:
        """The last paste's mask over the whole output: H x W float32 numpy (zeros before the first paste)."""
        return whole_frame(None if self.last_mask is None else self.last_mask.cpu().numpy(), self.output_size,
                           self.bounds)
