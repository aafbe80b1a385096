"""``Animator.generate(..., with_motion=True)``: the dense motion field comes out beside the same prediction, and it
is the field the generator warps with (the original's ``deformed`` is the source warped by it)."""

from __future__ import annotations

import torch
from conftest import golden_dir, read_rgb

from models import Animator
from models.generator import warp


def test_the_motion_field_comes_with_the_same_prediction() -> None:
    folder = golden_dir("tiny")
    animator = Animator.from_checkpoint(folder / "checkpoint.pth.tar", folder / "config.yaml", device="cpu",
                                        precision="fp32")
    animator.set_source(read_rgb(folder / "source.png"))
    animator.calibrate(read_rgb(folder / "driving_0.png"))
    kp = animator.keypoints(read_rgb(folder / "driving_1.png"))
    plain = animator.generate(kp)
    assert "deformation" not in plain  # opt-in: the default output is unchanged
    moved = animator.generate(kp, with_motion=True, with_deformed=True)
    torch.testing.assert_close(moved["prediction"], plain["prediction"], atol=1e-5, rtol=0)
    torch.testing.assert_close(moved["occlusion_map"], plain["occlusion_map"], atol=1e-5, rtol=0)
    deformation = moved["deformation"]
    assert deformation.shape == (1, 64, 64, 2)  # the dense motion network's resolution (scale_factor 0.25 of 256)
    assert animator.source is not None
    torch.testing.assert_close(warp(animator.source.image, deformation), moved["deformed"], atol=1e-6, rtol=0)
