"""Head and expression strength on FOMM keypoints (models.strength): the split of the driving motion into its
best-fitting similarity (head) and the rest (expression), each scaled, on constructed keypoints and on the golden
models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import golden_dir, read_rgb

from fomm_live.models import Animator, Keypoints, MotionNormalizer, MotionOptions, Strengths
from fomm_live.models.strength import MAX_HEAD_ANGLE, MIN_DET, Similarity, apply_strengths, fit_similarity

K = 10


def rotation(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def constructed(seed: int = 0, angle: float = 0.3, scale: float = 1.2, shift=(0.1, -0.05), expression: float = 0.05
                ) -> tuple[Keypoints, Keypoints, torch.Tensor]:
    """A neutral pose with jacobians, and a driving pose = a known similarity of (neutral + an expression offset).

    Returns the neutral and driving keypoints (batch 1, float64) and the similarity's linear part.
    """
    gen = torch.Generator().manual_seed(seed)
    neutral = torch.rand(1, K, 2, generator=gen, dtype=torch.float64) * 1.2 - 0.6  # 1 x K x 2
    jac_n = torch.eye(2, dtype=torch.float64) + 0.2 * torch.randn(1, K, 2, 2, generator=gen, dtype=torch.float64)
    offset = expression * torch.randn(1, K, 2, generator=gen, dtype=torch.float64)  # 1 x K x 2
    linear = scale * rotation(angle)
    centre = neutral.mean(dim=1, keepdim=True)
    value = (neutral + offset - centre) @ linear.T + centre + torch.tensor(shift, dtype=torch.float64)
    local = torch.eye(2, dtype=torch.float64) + 0.1 * torch.randn(1, K, 2, 2, generator=gen, dtype=torch.float64)
    jacobian = linear @ local @ jac_n  # 1 x K x 2 x 2
    return Keypoints(neutral, jac_n), Keypoints(value, jacobian), linear


def assert_identity(fit: Similarity, atol: float = 1e-9) -> None:
    assert abs(float(fit.angle)) < atol, f"angle {float(fit.angle):.3e} != 0"
    assert abs(float(fit.scale) - 1) < atol, f"scale {float(fit.scale):.6f} != 1"
    assert float(fit.shift.abs().max()) < atol, f"shift {fit.shift.tolist()} != 0"


def test_fit_similarity_recovers_a_known_transform() -> None:
    neutral, _, _ = constructed()
    transform = Similarity(torch.tensor([0.4], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64),
                           neutral.value.mean(dim=1), torch.tensor([[0.2, 0.1]], dtype=torch.float64))
    fit = fit_similarity(neutral.value, transform.apply(neutral.value))
    assert float(fit.angle) == pytest.approx(0.4, abs=1e-12)
    assert float(fit.scale) == pytest.approx(0.8, abs=1e-12)
    assert fit.shift.tolist()[0] == pytest.approx([0.2, 0.1], abs=1e-12)


def test_both_strengths_at_one_return_the_driving_keypoints_themselves() -> None:
    neutral, driving, _ = constructed()
    out = apply_strengths(driving, neutral, Strengths(1.0, 1.0))
    assert out is driving


def test_near_one_strengths_stay_continuous_with_the_copied_motion() -> None:
    """The split and its reassembly are exact: strengths a hair from 1 give the driving keypoints within 1e-6."""
    neutral, driving, _ = constructed()
    out = apply_strengths(driving, neutral, Strengths(1.0 - 1e-9, 1.0 + 1e-9))
    assert torch.allclose(out.value, driving.value, atol=1e-6)
    assert torch.allclose(out.jacobian, driving.jacobian, atol=1e-6)


def test_head_zero_keeps_the_similarity_fit_at_the_neutral_pose_and_the_expression() -> None:
    neutral, driving, _ = constructed(angle=0.5, scale=1.3, shift=(0.2, 0.1))
    out = apply_strengths(driving, neutral, Strengths(head=0.0, expression=1.0))
    assert_identity(fit_similarity(neutral.value, out.value))
    # The expression is the driving pose's residual from its own fit, moved back into the neutral frame.
    head = fit_similarity(neutral.value, driving.value)
    residual_driving = driving.value - head.apply(neutral.value)
    residual_out = out.value - neutral.value
    back = (residual_out @ head.linear()[0].T)  # the out residual carried into the driving frame
    assert torch.allclose(back, residual_driving, atol=1e-12)


def test_expression_zero_keeps_only_the_fitted_head_motion() -> None:
    neutral, driving, linear = constructed(angle=-0.4, scale=0.9)
    out = apply_strengths(driving, neutral, Strengths(head=1.0, expression=0.0))
    head = fit_similarity(neutral.value, driving.value)
    assert torch.allclose(out.value, head.apply(neutral.value), atol=1e-12)
    # Jacobians: the head's linear part applied to the neutral jacobians, no local expression left.
    assert torch.allclose(out.jacobian, head.linear()[:, None] @ neutral.jacobian, atol=1e-12)
    assert not torch.allclose(out.value, driving.value, atol=1e-3), "the constructed pose has an expression to drop"


def test_both_zero_gives_the_neutral_pose() -> None:
    neutral, driving, _ = constructed()
    out = apply_strengths(driving, neutral, Strengths(0.0, 0.0))
    assert torch.allclose(out.value, neutral.value, atol=1e-12)
    assert torch.allclose(out.jacobian, neutral.jacobian, atol=1e-12)


def test_head_two_doubles_the_angle_log_scale_and_shift() -> None:
    neutral, driving, _ = constructed(angle=0.2, scale=1.1, shift=(0.05, 0.02), expression=0.0)
    out = apply_strengths(driving, neutral, Strengths(head=2.0, expression=1.0))
    fit = fit_similarity(neutral.value, out.value)
    assert float(fit.angle) == pytest.approx(0.4, abs=1e-9)
    assert float(fit.scale) == pytest.approx(1.21, abs=1e-9)
    assert fit.shift.tolist()[0] == pytest.approx([0.1, 0.04], abs=1e-9)


def test_expression_scales_the_residual_linearly() -> None:
    neutral, driving, _ = constructed(angle=0.0, scale=1.0, shift=(0.0, 0.0))
    half = apply_strengths(driving, neutral, Strengths(head=0.0, expression=0.5))
    full = apply_strengths(driving, neutral, Strengths(head=0.0, expression=1.0))
    double = apply_strengths(driving, neutral, Strengths(head=0.0, expression=1.6))
    step = full.value - neutral.value
    assert torch.allclose(half.value - neutral.value, 0.5 * step, atol=1e-12)
    assert torch.allclose(double.value - neutral.value, 1.6 * step, atol=1e-12)


def test_head_angle_is_bounded_when_exaggerated() -> None:
    neutral, driving, _ = constructed(angle=0.9, expression=0.0)  # 52 degrees, doubled would be 103
    out = apply_strengths(driving, neutral, Strengths(head=2.0, expression=1.0))
    assert float(fit_similarity(neutral.value, out.value).angle) == pytest.approx(MAX_HEAD_ANGLE, abs=1e-9)


def test_exaggerated_jacobians_never_fold() -> None:
    """A driver whose local motion squeezes a keypoint's neighbourhood to 30% area: doubling that would fold it
    (det 1 + 2 * (0.3 - 1) < 0); the bound keeps every determinant positive and above its floor."""
    neutral, _, _ = constructed()
    squeeze = torch.diag(torch.tensor([0.3, 1.0], dtype=torch.float64))
    driving = Keypoints(neutral.value.clone(), squeeze @ neutral.jacobian)
    out = apply_strengths(driving, neutral, Strengths(head=1.0, expression=2.0))
    local = out.jacobian @ torch.linalg.inv(neutral.jacobian)
    det = torch.linalg.det(local)
    assert float(det.min()) >= min(MIN_DET, 0.25 * 0.3) - 1e-12, f"a folded jacobian: det {det.min():.3f}"
    assert float(det.max()) < 0.3, "the squeeze is still exaggerated (pulled back only as far as needed)"


def test_out_of_range_strength_is_refused() -> None:
    with pytest.raises(ValueError, match="head strength must be from 0 to 2"):
        Strengths(head=2.5)
    with pytest.raises(ValueError, match="expression strength"):
        Strengths(expression=-0.1)


def test_absolute_motion_refuses_strengths() -> None:
    normalizer = MotionNormalizer(MotionOptions(relative=False))
    with pytest.raises(ValueError, match="need relative motion"):
        normalizer.strengths = Strengths(head=0.0)


def golden_animator(variant: str) -> tuple[Animator, list[np.ndarray]]:
    folder = golden_dir(variant)
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager",
                                        motion=MotionOptions(relative=True, adapt_scale=True))
    animator.set_source(read_rgb(folder / "source.png"))
    frames = [read_rgb(folder / f"driving_{i}.png") for i in range(3)]
    animator.calibrate(frames[0])
    return animator, frames


@pytest.mark.parametrize("variant", ["tiny", "tiny_zero_order"])
def test_golden_strengths_at_one_give_the_original_output_exactly(variant: str) -> None:
    animator, frames = golden_animator(variant)
    expected = dict(np.load(golden_dir(variant) / "expected.npz"))
    animator.strengths = Strengths(1.0, 1.0)
    for i in (1, 2):
        out = animator.generate(animator.keypoints(frames[i]))
        err = float(np.abs(out["prediction"].numpy() - expected[f"relative_{i}_prediction"]).max())
        assert err < 1e-4, f"frame {i}: {err:.2e} from the original"


@pytest.mark.parametrize("variant", ["tiny", "tiny_zero_order"])
def test_golden_head_zero_keeps_the_fit_at_the_neutral_and_both_zero_render_the_neutral_frame(variant: str) -> None:
    animator, frames = golden_animator(variant)
    neutral_out = animator.generate(animator.keypoints(frames[0]))
    kp_source, kp_neutral = animator.kp_source.value.double(), animator.normalizer.neutral.value.double()
    for i in (1, 2):
        kp = animator.keypoints(frames[i])
        animator.strengths = Strengths(head=0.0, expression=1.0)
        head_zero = animator.generate(kp)
        # kp_norm = kp_source + (kp' - kp_neutral) * s, so kp' is recovered from it; kp' fits the neutral pose with
        # the identity similarity (the head held at the neutral pose, the expression kept).
        moved = (head_zero["kp_norm_value"].double() - kp_source) / animator.normalizer.scale + kp_neutral
        assert_identity(fit_similarity(kp_neutral, moved), atol=1e-5)
        animator.strengths = Strengths(head=1.0, expression=1.0)
        copied = animator.generate(kp)
        assert not torch.allclose(head_zero["kp_norm_value"], copied["kp_norm_value"], atol=1e-4)
        animator.strengths = Strengths(head=0.0, expression=0.0)
        still = animator.generate(kp)
        err = float((still["prediction"] - neutral_out["prediction"]).abs().max())
        assert err < 1e-5, f"frame {i} with both strengths 0: {err:.2e} from the neutral frame's output"
