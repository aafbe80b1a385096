"""Fused Triton kernel for the dense motion network's input stage (needs ``triton``; import through ``kernels``).

One pass per (pixel block, motion k, batch item) computes what ``kernels.reference.dense_motion_inputs_reference``
builds from five PyTorch ops and three B x (K+1) x h x w intermediates: the coordinate grid, the gaussian difference
of keypoint k, the sparse motion T_k (first-order with jacobians), and the bilinear warp of every source channel by
T_k. At vox-256 size (K = 10, C = 3, 64 x 64) that replaces about a dozen kernel launches and ~2 MB of temporaries
with one launch.

Convention: see ``kernels.reference``. Grid coordinates are ``2 * (i / (n - 1)) - 1`` (the pixel centres of the first
and last pixels at -1 and 1), but sampling unnormalises with ``((x + 1) * n - 1) / 2`` (``align_corners=False``),
exactly like the model, half a pixel apart on purpose.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fomm_live.kernels.bilinear import bilinear_taps

BLOCK = 256


@triton.jit
def _bilinear_zero_pad(base_ptr, gx, gy, H, W, valid):
    """Bilinear sample of one H x W plane at normalised (gx, gy), zero outside; float32."""
    cx0, cx1, cy0, cy1, wx0, wx1, wy0, wy1, in_x0, in_x1, in_y0, in_y1 = bilinear_taps(gx, gy, H, W)
    v00 = tl.load(base_ptr + cy0 * W + cx0, mask=valid & in_y0 & in_x0, other=0.0).to(tl.float32)
    v01 = tl.load(base_ptr + cy0 * W + cx1, mask=valid & in_y0 & in_x1, other=0.0).to(tl.float32)
    v10 = tl.load(base_ptr + cy1 * W + cx0, mask=valid & in_y1 & in_x0, other=0.0).to(tl.float32)
    v11 = tl.load(base_ptr + cy1 * W + cx1, mask=valid & in_y1 & in_x1, other=0.0).to(tl.float32)
    return v00 * (wx0 * wy0) + v01 * (wx1 * wy0) + v10 * (wx0 * wy1) + v11 * (wx1 * wy1)


@triton.jit
def _dense_motion_inputs_kernel(src_ptr, kpd_ptr, kps_ptr, jac_ptr, hourglass_ptr, motion_ptr, H, W, variance,
                                K: tl.constexpr, C: tl.constexpr, HAS_JACOBIAN: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    k = tl.program_id(1)  # 0: identity (background), 1..K: keypoint k - 1
    b = tl.program_id(2)
    hw = H * W
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    valid = offs < hw
    gx = 2.0 * ((offs % W).to(tl.float32) / (W - 1)) - 1.0  # make_coordinate_grid
    gy = 2.0 * ((offs // W).to(tl.float32) / (H - 1)) - 1.0

    j = tl.maximum(k - 1, 0)  # keypoint index; its values are ignored for k = 0
    kd = kpd_ptr + (b * K + j) * 2
    ks = kps_ptr + (b * K + j) * 2
    kdx = tl.load(kd)
    kdy = tl.load(kd + 1)
    ksx = tl.load(ks)
    ksy = tl.load(ks + 1)
    dx = gx - kdx
    dy = gy - kdy
    if HAS_JACOBIAN:
        jp = jac_ptr + (b * K + j) * 4  # J_src @ inv(J_drv), row-major 2 x 2
        mx = tl.load(jp) * dx + tl.load(jp + 1) * dy
        my = tl.load(jp + 2) * dx + tl.load(jp + 3) * dy
    else:
        mx = dx
        my = dy
    is_kp = k > 0
    mx = tl.where(is_kp, mx + ksx, gx)
    my = tl.where(is_kp, my + ksy, gy)
    sx = gx - ksx
    sy = gy - ksy
    heat = tl.exp(-0.5 * (dx * dx + dy * dy) / variance) - tl.exp(-0.5 * (sx * sx + sy * sy) / variance)
    heat = tl.where(is_kp, heat, 0.0)

    motion_base = motion_ptr + ((b * (K + 1) + k) * hw + offs) * 2  # B x (K+1) x H x W x 2
    tl.store(motion_base, mx, mask=valid)
    tl.store(motion_base + 1, my, mask=valid)
    out_base = hourglass_ptr + (b * (K + 1) + k) * (C + 1) * hw  # channel k * (C+1) of B x (K+1)(C+1) x H x W
    tl.store(out_base + offs, heat, mask=valid)
    for c in tl.static_range(C):
        value = _bilinear_zero_pad(src_ptr + (b * C + c) * hw, mx, my, H, W, valid)
        tl.store(out_base + (1 + c) * hw + offs, value, mask=valid)


def dense_motion_inputs_triton(source_small: torch.Tensor, value_driving: torch.Tensor, value_source: torch.Tensor,
                               motion_jacobian: torch.Tensor | None = None, *, variance: float
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton version of ``kernels.reference.dense_motion_inputs_reference`` (same arguments, same results).

    ``motion_jacobian`` (B x K x 2 x 2, ``J_src @ inv(J_drv)``) comes formed by the caller (a few dozen numbers);
    everything per pixel happens in the kernel. Outputs are float32.
    """
    b, c, h, w = source_small.shape
    if value_driving.shape[0] != b or value_source.shape[0] != b:
        raise ValueError(f"batch sizes differ: source {b}, driving {value_driving.shape[0]}, source keypoints "
                         f"{value_source.shape[0]} (expand them first)")
    k = value_driving.shape[1]
    has_jacobian = motion_jacobian is not None
    if has_jacobian:
        if tuple(motion_jacobian.shape) != (b, k, 2, 2):
            raise ValueError(f"motion_jacobian must be {b} x {k} x 2 x 2, got {tuple(motion_jacobian.shape)}")
        jac = motion_jacobian.float().contiguous()  # B x K x 2 x 2
    else:
        jac = value_driving.new_empty(1, dtype=torch.float32)  # unused
    device = source_small.device
    hourglass_in = torch.empty(b, (k + 1) * (c + 1), h, w, device=device, dtype=torch.float32)
    motions = torch.empty(b, k + 1, h, w, 2, device=device, dtype=torch.float32)
    grid = (triton.cdiv(h * w, BLOCK), k + 1, b)
    _dense_motion_inputs_kernel[grid](source_small.contiguous(), value_driving.float().contiguous(),
                                      value_source.float().contiguous(), jac, hourglass_in, motions, h, w,
                                      float(variance), K=k, C=c, HAS_JACOBIAN=has_jacobian, BLOCK=BLOCK)
    return hourglass_in, motions  # B x (K+1)(C+1) x h x w, B x (K+1) x h x w x 2
