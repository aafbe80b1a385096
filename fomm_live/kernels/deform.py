"""Fused Triton kernel for the generator's dense warp (needs ``triton``; import through ``kernels``).

``grid_sample(features, deformation, align_corners=False, padding_mode="zeros") * occlusion_map`` in one pass: each
program computes the four bilinear taps and weights of a block of pixels once and reuses them for a block of
channels, and multiplies by the occlusion map before the single store. At vox-256 size (256 channels at 64 x 64)
PyTorch writes the 4 MB warped map and reads it back for the product; the kernel does not.

The reference is ``kernels.reference.deform_features_reference``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from fomm_live.kernels.bilinear import bilinear_taps

BLOCK_C = 16
BLOCK_P = 64


@triton.jit
def _deform_kernel(feat_ptr, grid_ptr, occ_ptr, out_ptr, C, H, W, sf_b, sf_c, sf_h, sf_w, so_b, so_c, so_h, so_w,
                   HAS_OCCLUSION: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    pid_p = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2)
    hw = H * W
    offs = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    valid_p = offs < hw
    gp = grid_ptr + (b * hw + offs) * 2  # deformation is contiguous B x H x W x 2
    gx = tl.load(gp, mask=valid_p, other=0.0).to(tl.float32)
    gy = tl.load(gp + 1, mask=valid_p, other=0.0).to(tl.float32)
    cx0, cx1, cy0, cy1, wx0, wx1, wy0, wy1, in_x0, in_x1, in_y0, in_y1 = bilinear_taps(gx, gy, H, W)

    chans = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    valid_c = chans < C
    base = feat_ptr + b * sf_b + chans[:, None] * sf_c  # BLOCK_C x 1
    m = valid_c[:, None] & valid_p[None, :]  # BLOCK_C x BLOCK_P
    v00 = tl.load(base + (cy0 * sf_h + cx0 * sf_w)[None, :], mask=m & (in_y0 & in_x0)[None, :], other=0.0)
    v01 = tl.load(base + (cy0 * sf_h + cx1 * sf_w)[None, :], mask=m & (in_y0 & in_x1)[None, :], other=0.0)
    v10 = tl.load(base + (cy1 * sf_h + cx0 * sf_w)[None, :], mask=m & (in_y1 & in_x0)[None, :], other=0.0)
    v11 = tl.load(base + (cy1 * sf_h + cx1 * sf_w)[None, :], mask=m & (in_y1 & in_x1)[None, :], other=0.0)
    acc = (v00.to(tl.float32) * (wx0 * wy0)[None, :] + v01.to(tl.float32) * (wx1 * wy0)[None, :]
           + v10.to(tl.float32) * (wx0 * wy1)[None, :] + v11.to(tl.float32) * (wx1 * wy1)[None, :])
    if HAS_OCCLUSION:
        occ = tl.load(occ_ptr + b * hw + offs, mask=valid_p, other=0.0).to(tl.float32)  # B x 1 x H x W contiguous
        acc = acc * occ[None, :]
    py = offs // W
    px = offs % W
    out = out_ptr + b * so_b + chans[:, None] * so_c + (py * so_h + px * so_w)[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=m)


def deform_features_triton(features: torch.Tensor, deformation: torch.Tensor,
                           occlusion_map: torch.Tensor | None) -> torch.Tensor:
    """Triton version of ``kernels.reference.deform_features_reference`` (same arguments, same results).

    Works on any memory format of ``features`` (its strides are passed in; channels_last needs no copy) and on a
    batch-1 feature map broadcast over a batch of deformations. The output has the features' dtype and layout.
    """
    bf, c, h, w = features.shape
    b = deformation.shape[0]
    if bf not in (1, b):
        raise ValueError(f"features batch {bf} != deformation batch {b}")
    if deformation.shape[1:3] != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=False).permute(0, 2, 3, 1)  # B x H x W x 2, as models.generator
    deformation = deformation.contiguous()
    if occlusion_map is not None:
        if occlusion_map.shape[2:] != (h, w):
            occlusion_map = F.interpolate(occlusion_map, size=(h, w), mode="bilinear", align_corners=False)
        occlusion_map = occlusion_map.contiguous()
    layout = (torch.channels_last if features.is_contiguous(memory_format=torch.channels_last)
              and not features.is_contiguous() else torch.contiguous_format)
    out = torch.empty((b, c, h, w), device=features.device, dtype=features.dtype, memory_format=layout)
    sf = features.stride()
    stride_b = 0 if bf == 1 else sf[0]  # one source broadcast over the batch
    grid = (triton.cdiv(h * w, BLOCK_P), triton.cdiv(c, BLOCK_C), b)
    _deform_kernel[grid](features, deformation, occlusion_map if occlusion_map is not None else deformation, out,
                         c, h, w, stride_b, sf[1], sf[2], sf[3], *out.stride(),
                         HAS_OCCLUSION=occlusion_map is not None, BLOCK_C=BLOCK_C, BLOCK_P=BLOCK_P)
    return out  # B x C x H x W
