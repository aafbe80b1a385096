"""Keypoint motion maths of the First Order Motion Model (Siarohin et al., NeurIPS 2019, sections 3.1 and 3.4).

Convention: keypoints are (x, y) in [-1, 1]; jacobians are 2x2 matrices acting on column vectors (x, y)^T.

Relative motion (the paper's eq. 8, used to animate a face photo with someone else's face): with a neutral driving
frame n taken at calibration,

    kp_new = kp_src + (kp_drv - kp_n) * s
    J_new  = J_drv @ inv(J_n) @ J_src
    s      = sqrt(hull_area(kp_src)) / sqrt(hull_area(kp_n))     (adapted movement scale, else 1)

Head and expression strengths (``models.strength``) scale the driving keypoints' rigid motion and the rest apart,
relative to the neutral pose, before eq. 8; both at 1 (the default) leave them untouched. Absolute motion hands the
driving keypoints to the generator unchanged, and takes no strengths (it has no neutral pose to measure them from).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fomm_live.models.keypoint_detector import Keypoints
from fomm_live.models.strength import Strengths, apply_strengths


def _exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # PyTorch >= 2.5
    return bool((is_exporting is not None and is_exporting()) or torch.onnx.is_in_onnx_export())


def inverse_2x2(m: torch.Tensor) -> torch.Tensor:
    """Inverse of ... x 2 x 2 matrices.

    Eager runs use ``torch.linalg.inv_ex``, whose LU rounding the original's outputs carry (the closed form differs by
    ~1e-7, which the 256x256 warp amplifies to ~4e-5 in the deformed image). ``torch.export`` / ONNX graphs get the
    closed form (adjugate over determinant), since ONNX and TensorRT have no matrix inverse.
    """
    if not _exporting():
        # inv_ex: the same LU as inv, without the device-to-host sync inv does on CUDA to check for singularity.
        return torch.linalg.inv_ex(m).inverse
    a, b = m[..., 0, 0], m[..., 0, 1]
    c, d = m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    adj = torch.stack([torch.stack([d, -b], dim=-1), torch.stack([-c, a], dim=-1)], dim=-2)  # ... x 2 x 2
    return adj / det[..., None, None]


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of N x 2 points (Andrew's monotone chain); 0 for fewer than 3 non-collinear points."""
    pts = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return 0.0

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    def half(seq: np.ndarray) -> list[np.ndarray]:
        chain: list[np.ndarray] = []
        for p in seq:
            while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    hull = np.array(half(pts)[:-1] + half(pts[::-1])[:-1])  # counter-clockwise, no repeated ends
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def movement_scale(kp_source: Keypoints, kp_neutral: Keypoints) -> float:
    """sqrt(hull area of the source keypoints / hull area of the neutral keypoints), from the first batch item.

    Raises:
        ValueError: when the neutral keypoints span no area (degenerate calibration frame).
    """
    source_area = convex_hull_area(kp_source.value[0].detach().float().cpu().numpy())
    neutral_area = convex_hull_area(kp_neutral.value[0].detach().float().cpu().numpy())
    if neutral_area <= 0:
        raise ValueError("the neutral keypoints span no area, so the movement scale is undefined")
    return float(np.sqrt(source_area) / np.sqrt(neutral_area))


@dataclass
class MotionOptions:
    """How driving keypoints become the keypoints handed to the generator.

    Attributes:
        relative: Relative motion from a neutral frame (the paper's eq. 8); False hands over the driving keypoints.
        adapt_scale: Scale the relative movement by the source/neutral keypoint hull size ratio.
        relative_jacobian: Transfer jacobians relatively too (only with ``relative``).
    """

    relative: bool = True
    adapt_scale: bool = True
    relative_jacobian: bool = True


class MotionNormalizer:
    """Turns driving keypoints into generator keypoints, holding the calibrated neutral pose as state.

    The neutral pose can be set again at any time (recalibration); the movement scale is computed once per
    calibration, not per frame.

    Args:
        options: Relative/absolute motion and scale adaptation.
        strengths: Head and expression strength (relative motion only); can be changed between frames.
    """

    def __init__(self, options: MotionOptions | None = None, strengths: Strengths | None = None) -> None:
        self.options = options or MotionOptions()
        self._strengths = Strengths()
        self.strengths = strengths or Strengths()
        self.neutral: Keypoints | None = None
        self._neutral_jacobian_inv: torch.Tensor | None = None
        self.scale = 1.0

    @property
    def strengths(self) -> Strengths:
        return self._strengths

    @strengths.setter
    def strengths(self, strengths: Strengths) -> None:
        """Takes effect from the next frame; a single attribute swap, so the live controls may set it any time."""
        if not self.options.relative and not strengths.identity:
            raise ValueError("head and expression strengths need relative motion (a neutral pose to measure from)")
        self._strengths = strengths

    @property
    def calibrated(self) -> bool:
        return self.neutral is not None

    def calibrate(self, kp_neutral: Keypoints, kp_source: Keypoints) -> None:
        """Take ``kp_neutral`` as the neutral driving pose for the source whose keypoints are ``kp_source``."""
        self.neutral = Keypoints(kp_neutral.value.detach(),
                                 None if kp_neutral.jacobian is None else kp_neutral.jacobian.detach())
        self._neutral_jacobian_inv = None if kp_neutral.jacobian is None else inverse_2x2(self.neutral.jacobian)
        self.scale = movement_scale(kp_source, kp_neutral) if self.options.adapt_scale else 1.0

    def reset(self) -> None:
        """Forget the neutral pose."""
        self.neutral = None
        self._neutral_jacobian_inv = None
        self.scale = 1.0

    def __call__(self, kp_driving: Keypoints, kp_source: Keypoints) -> Keypoints:
        if not self.options.relative:
            return kp_driving
        if self.neutral is None:
            raise RuntimeError("relative motion needs a neutral pose: call calibrate() first")
        kp_driving = apply_strengths(kp_driving, self.neutral, self._strengths)
        value = (kp_driving.value - self.neutral.value) * self.scale + kp_source.value  # B x K x 2
        jacobian = kp_driving.jacobian
        if self.options.relative_jacobian and jacobian is not None and kp_source.jacobian is not None:
            jacobian = jacobian @ self._neutral_jacobian_inv @ kp_source.jacobian  # B x K x 2 x 2
        return Keypoints(value, jacobian)
