"""Motion normalisation maths: convex hull area, 2x2 inverse, relative/absolute keypoints, calibration state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fomm_live.models import Keypoints, MotionNormalizer, MotionOptions
from fomm_live.models.motion import convex_hull_area, inverse_2x2, movement_scale


def test_hull_area_of_known_shapes() -> None:
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5], [0.2, 0.7]])  # interior points ignored
    assert convex_hull_area(square) == pytest.approx(1.0)
    triangle = np.array([[0, 0], [4, 0], [0, 3]])
    assert convex_hull_area(triangle) == pytest.approx(6.0)
    assert convex_hull_area(np.array([[0, 0], [1, 1], [2, 2]])) == 0.0  # collinear
    assert convex_hull_area(np.array([[0, 0], [0, 0], [1, 0]])) == 0.0  # duplicates


def test_hull_area_matches_shoelace_of_a_regular_polygon() -> None:
    rng = np.random.default_rng(0)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    ring = np.stack([np.cos(angles), np.sin(angles)], 1) * 0.7
    inside = rng.uniform(-0.3, 0.3, (20, 2))
    x, y = ring[:, 0], ring[:, 1]
    shoelace = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert convex_hull_area(np.concatenate([inside, ring])) == pytest.approx(shoelace)


def test_closed_form_inverse_matches_linalg() -> None:
    m = torch.randn(4, 10, 2, 2, dtype=torch.float64) + 2 * torch.eye(2, dtype=torch.float64)
    want = torch.linalg.inv(m)
    torch.testing.assert_close(inverse_2x2(m), want)
    # The export branch (closed form) gives the same matrices.
    monkey = pytest.MonkeyPatch()
    monkey.setattr("fomm_live.models.motion._exporting", lambda: True)
    try:
        torch.testing.assert_close(inverse_2x2(m), want)
    finally:
        monkey.undo()


def _kp(values: list[list[float]], jac: torch.Tensor | None = None) -> Keypoints:
    return Keypoints(torch.tensor([values], dtype=torch.float32), jac)


def test_relative_motion_follows_the_paper() -> None:
    src = _kp([[0, 0], [0.5, 0], [0, 0.5]])
    neutral = _kp([[0, 0], [1, 0], [0, 1]])  # hull 4x the source's: scale 0.5
    drv = _kp([[0.2, 0.2], [1.2, 0.2], [0.2, 1.2]])
    norm = MotionNormalizer(MotionOptions(relative=True, adapt_scale=True))
    norm.calibrate(neutral, src)
    assert norm.scale == pytest.approx(0.5)
    out = norm(drv, src)
    torch.testing.assert_close(out.value, src.value + 0.1)
    norm_noscale = MotionNormalizer(MotionOptions(relative=True, adapt_scale=False))
    norm_noscale.calibrate(neutral, src)
    torch.testing.assert_close(norm_noscale(drv, src).value, src.value + 0.2)


def test_relative_jacobian_is_drv_inv_neutral_src() -> None:
    torch.manual_seed(0)
    jn, jd, js = (torch.randn(1, 3, 2, 2) + 2 * torch.eye(2) for _ in range(3))
    pts = [[0, 0], [1, 0], [0, 1]]
    norm = MotionNormalizer()
    norm.calibrate(_kp(pts, jn), _kp(pts, js))
    out = norm(_kp(pts, jd), _kp(pts, js))
    torch.testing.assert_close(out.jacobian, jd @ torch.linalg.inv(jn) @ js)


def test_absolute_mode_passes_keypoints_through_and_needs_no_calibration() -> None:
    drv = _kp([[0.1, 0.2], [0.3, 0.4], [0.5, 0.1]])
    out = MotionNormalizer(MotionOptions(relative=False))(drv, _kp([[0, 0], [1, 0], [0, 1]]))
    assert out is drv


def test_relative_mode_without_calibration_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="calibrate"):
        MotionNormalizer()(_kp([[0, 0], [1, 0], [0, 1]]), _kp([[0, 0], [1, 0], [0, 1]]))


def test_degenerate_neutral_pose_is_refused() -> None:
    with pytest.raises(ValueError, match="no area"):
        movement_scale(_kp([[0, 0], [1, 0], [0, 1]]), _kp([[0, 0], [0.5, 0.5], [1, 1]]))


def test_scale_is_computed_once_per_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    import fomm_live.models.motion as motion

    real = motion.movement_scale
    monkeypatch.setattr(motion, "movement_scale", lambda *a: calls.append(1) or real(*a))
    src, neutral = _kp([[0, 0], [1, 0], [0, 1]]), _kp([[0, 0], [2, 0], [0, 2]])
    norm = MotionNormalizer()
    norm.calibrate(neutral, src)
    for _ in range(5):
        norm(neutral, src)
    assert len(calls) == 1
    norm.reset()
    assert not norm.calibrated
