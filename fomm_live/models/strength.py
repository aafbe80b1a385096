"""Head and expression strength: how much of the driving face's motion the animated face copies.

The driving keypoints' motion away from the calibrated neutral pose is split in two parts:

- **head**: the similarity transform (rotation, uniform scale, translation) that best maps the neutral keypoints onto
  the driving ones, in the least-squares sense (the closed-form 2-D Procrustes fit, with the scale);
- **expression**: what that transform leaves over, mapped back into the neutral pose's frame (the eyes, brows and
  mouth moving against the head).

Each part is scaled by its strength (0 holds it at the neutral pose, 1 copies it, 2 doubles it) and the two are put
together again: ``drv' = T_h(neutral + x * residual)``, where ``T_h`` is the head transform with its angle, log-scale
and translation multiplied by ``h``. Both strengths at 1 return the driving keypoints untouched (the same tensors,
so the output is today's to the bit). Head 0 leaves a residual that is orthogonal to every similarity of the neutral
keypoints, so the similarity fit of the result is the identity: the head stays at the neutral pose.

Jacobians (FOMM's local affine motion at each keypoint) follow the same split: the relative jacobian
``J_drv @ inv(J_neutral)`` is the head's linear part ``L`` times a local expression part ``E = inv(L) @ J_drv @
inv(J_neutral)``; the result is ``L_h @ (I + x * (E - I)) @ J_neutral``.

Bounds that never fold the face: the head's angle stays within +-60 degrees and its scale within [0.5, 2] after
scaling; an exaggerated local jacobian whose determinant would fall below a quarter of the copied one's (or below 0.1)
is pulled back toward the copied motion (strength 1), keypoint by keypoint.

Convention: keypoints are (x, y) in [-1, 1], B x K x 2; jacobians B x K x 2 x 2 act on column vectors (x, y)^T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fomm_live.models.keypoint_detector import Keypoints

MIN_STRENGTH, MAX_STRENGTH = 0.0, 2.0
MAX_HEAD_ANGLE = math.radians(60.0)
HEAD_SCALE_RANGE = (0.5, 2.0)
# A local jacobian that keeps at least this fraction of the copied motion's determinant (and at least MIN_DET) is
# taken as it is; below, the exaggeration is halved toward strength 1 until it holds (4 halvings at most).
DET_FRACTION, MIN_DET = 0.25, 0.1


@dataclass(frozen=True)
class Strengths:
    """How strongly each part of the driving motion is copied; each from 0 to 2, 1 copies it as it is.

    Attributes:
        head: The face's rigid motion relative to the neutral pose (rotation, translation, scale).
        expression: Everything else (eyes, brows, mouth).
    """

    head: float = 1.0
    expression: float = 1.0

    def __post_init__(self) -> None:
        for name in ("head", "expression"):
            value = getattr(self, name)
            if not (MIN_STRENGTH <= float(value) <= MAX_STRENGTH):
                raise ValueError(f"{name} strength must be from {MIN_STRENGTH:g} to {MAX_STRENGTH:g}, got {value:g}")

    @property
    def identity(self) -> bool:
        """True when both strengths are 1: the motion is copied as it is."""
        return self.head == 1.0 and self.expression == 1.0


@dataclass(frozen=True)
class Similarity:
    """A batch of 2-D similarity transforms ``p -> L @ (p - centre) + centre + shift``, ``L = scale * R(angle)``.

    Attributes:
        angle: B rotation angles in radians.
        scale: B uniform scales.
        centre: B x 2, the centroid of the points the transform was fitted from.
        shift: B x 2, the centroid's displacement.
    """

    angle: torch.Tensor
    scale: torch.Tensor
    centre: torch.Tensor
    shift: torch.Tensor

    def linear(self) -> torch.Tensor:
        """B x 2 x 2: ``scale * R(angle)``."""
        c, s = torch.cos(self.angle) * self.scale, torch.sin(self.angle) * self.scale
        return torch.stack([torch.stack([c, -s], dim=-1), torch.stack([s, c], dim=-1)], dim=-2)  # B x 2 x 2

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """B x K x 2 points -> B x K x 2."""
        centred = points - self.centre[:, None, :]  # B x K x 2
        moved = torch.einsum("bij,bkj->bki", self.linear(), centred)  # B x K x 2
        return moved + (self.centre + self.shift)[:, None, :]

    def scaled(self, strength: float) -> Similarity:
        """The transform with its angle, log-scale and shift multiplied by ``strength``, within the bounds."""
        angle = (self.angle * strength).clamp(-MAX_HEAD_ANGLE, MAX_HEAD_ANGLE)
        scale = self.scale.clamp_min(1e-6).pow(strength).clamp(*HEAD_SCALE_RANGE)
        return Similarity(angle, scale, self.centre, self.shift * strength)


def fit_similarity(source: torch.Tensor, target: torch.Tensor) -> Similarity:
    """The least-squares similarity mapping B x K x 2 ``source`` points onto ``target`` (closed form).

    With centred points p (source) and q (target), the best ``a*p + b*perp(p)`` has ``a = sum(p . q) / sum(|p|^2)``
    and ``b = sum(p x q) / sum(|p|^2)``; then ``scale = |(a, b)|`` and ``angle = atan2(b, a)``.
    """
    centre_s, centre_t = source.mean(dim=1), target.mean(dim=1)  # B x 2
    p, q = source - centre_s[:, None, :], target - centre_t[:, None, :]  # B x K x 2
    norm = (p * p).sum(dim=(1, 2)).clamp_min(1e-12)  # B
    a = (p * q).sum(dim=(1, 2)) / norm  # B
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(dim=1) / norm  # B
    return Similarity(torch.atan2(b, a), torch.hypot(a, b), centre_s, centre_t - centre_s)


def _expression_jacobian(relative: torch.Tensor, head_linear: torch.Tensor, strength: float) -> torch.Tensor:
    """``I + x * (inv(L) @ relative - I)`` for B x K x 2 x 2 ``relative``, pulled back toward x = 1 where it folds."""
    local = torch.linalg.inv(head_linear)[:, None] @ relative  # B x K x 2 x 2
    eye = torch.eye(2, dtype=local.dtype, device=local.device)
    floor = torch.clamp(DET_FRACTION * torch.linalg.det(local), min=MIN_DET)  # B x K: the copied motion's, bounded
    x = torch.full(local.shape[:2], float(strength), dtype=local.dtype, device=local.device)  # B x K
    for _ in range(4):
        scaled = eye + x[..., None, None] * (local - eye)  # B x K x 2 x 2
        bad = (x > 1) & (torch.linalg.det(scaled) < floor)
        x = torch.where(bad, 1 + (x - 1) / 2, x)
    x = torch.where((x > 1) & (torch.linalg.det(eye + x[..., None, None] * (local - eye)) < floor),
                    torch.ones_like(x), x)
    return eye + x[..., None, None] * (local - eye)  # B x K x 2 x 2


def fit_inverse(transform: Similarity) -> Similarity:
    """The inverse similarity: maps the fitted target points back onto the source points' frame."""
    centre = transform.centre + transform.shift
    return Similarity(-transform.angle, 1.0 / transform.scale.clamp_min(1e-6), centre, -transform.shift)


def apply_strengths(driving: Keypoints, neutral: Keypoints, strengths: Strengths) -> Keypoints:
    """Driving keypoints with their head and expression motion (relative to ``neutral``) scaled by ``strengths``.

    Returns ``driving`` itself when both strengths are 1. ``neutral`` has batch size 1 or that of ``driving``.
    """
    if strengths.identity:
        return driving
    value_n = neutral.value.expand_as(driving.value).to(driving.value.dtype)  # B x K x 2
    head = fit_similarity(value_n, driving.value)
    residual_n = fit_inverse(head).apply(driving.value) - value_n  # B x K x 2, in the neutral pose's frame
    head_h = head.scaled(strengths.head)
    value = head_h.apply(value_n + strengths.expression * residual_n)  # B x K x 2

    jacobian = driving.jacobian
    if jacobian is not None and neutral.jacobian is not None:
        jac_n = neutral.jacobian.expand_as(jacobian).to(jacobian.dtype)  # B x K x 2 x 2
        relative = jacobian @ torch.linalg.inv(jac_n)  # B x K x 2 x 2
        local = _expression_jacobian(relative, head.linear(), strengths.expression)
        jacobian = head_h.linear()[:, None] @ local @ jac_n  # B x K x 2 x 2
    return Keypoints(value, jacobian)
