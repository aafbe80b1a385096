"""Paste-back: the photo's own pixels outside the mask, the OpenCV and PyTorch paths held to each other, no box at the
square's border, and the FOMM detail transfer on a known motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.pasteback import known_motion, square_of, textured
from helpers.seam import sharpness, support_bbox

from fomm_live.live.backends import MotionField, Rendered
from fomm_live.live.framing.pasteback import PasteBack, change_mask, window
from fomm_live.live.framing.pasteback_torch import TensorPasteBack

N = 64  # a small model square keeps these tests fast; the paste-back does not depend on it


@pytest.mark.parametrize("box", [(100.0, 20.0, 150.0), (-40.5, -30.25, 170.0), (230.3, 90.7, 97.0)])
@pytest.mark.parametrize("path", ["opencv", "torch"])
def test_outside_the_mask_support_every_pixel_is_the_framed_photo(box: tuple[float, float, float], path: str) -> None:
    framed = textured(180, 320, 0)
    reference = textured(N, N, 1)
    animated = textured(N, N, 2)  # differs everywhere: the mask is the whole window
    if path == "opencv":
        paster = PasteBack(framed=framed, reference=reference, box=box)
    else:
        paster = TensorPasteBack(framed=framed, reference=reference, box=box, device="cpu", detail=False)
    out = paster.paste(Rendered(animated if path == "opencv" else torch.from_numpy(animated).permute(2, 0, 1)[None]))
    mask = paster.full_mask()
    outside = mask == 0
    assert (mask > 0).any() and outside.any()
    np.testing.assert_array_equal(out[outside], framed[outside])
    inside = mask > 0.99
    assert np.abs(out[inside].astype(int) - framed[inside].astype(int)).mean() > 10  # the animation shows there


def test_an_unchanged_animation_leaves_the_photo_exactly() -> None:
    framed = textured(180, 320, 3)
    reference = square_of(framed, (100, 20, 150), N)
    out = PasteBack(framed=framed, reference=reference, box=(100.0, 20.0, 150.0)).paste(Rendered(reference.copy()))
    np.testing.assert_array_equal(out, framed)
    pasted = TensorPasteBack(framed=framed, reference=reference, box=(100.0, 20.0, 150.0), device="cpu")
    np.testing.assert_array_equal(pasted.paste(Rendered(torch.from_numpy(reference).permute(2, 0, 1)[None])), framed)


def test_the_mask_is_zero_along_the_square_border_and_one_inside() -> None:
    w = window(256)
    assert w[0].max() == 0 and w[-1].max() == 0 and w[:, 0].max() == 0 and w[:, -1].max() == 0
    assert w[64:192, 64:192].min() == 1  # the middle half is fully animated
    animated, reference = textured(256, 256, 4), textured(256, 256, 5)
    mask = change_mask(animated, reference)
    assert mask[0].max() == 0 and mask[128, 128] == pytest.approx(1)
    # A small change lights only its neighbourhood.
    moved = reference.copy()
    moved[120:136, 120:136] = 255 - moved[120:136, 120:136]
    mask = change_mask(moved, reference)
    assert mask[128, 128] == pytest.approx(1) and mask[20:60, 20:60].max() == 0 and mask[200:, 200:].max() == 0


@pytest.mark.parametrize("box", [(100.0, 20.0, 150.0), (-40.5, -30.25, 170.0), (231.3, 91.7, 97.0)])
def test_opencv_and_torch_paste_backs_agree(box: tuple[float, float, float]) -> None:
    """The two paths within four levels, mean under 0.2: OpenCV samples the mask with 5-bit fixed-point weights, and
    a mask weight off by 1/64 where the animation and the photo differ by 200 levels is 3 levels."""
    framed = textured(181, 317, 6)
    reference = textured(N, N, 7)
    animated = reference.copy()
    animated[10:40, 15:50] = textured(30, 35, 8)  # a moving part: the change mask's edges are exercised too
    want = PasteBack(framed=framed, reference=reference, box=box).paste(Rendered(animated)).astype(int)
    pasted = TensorPasteBack(framed=framed, reference=reference, box=box, device="cpu", detail=False)
    got = pasted.paste(Rendered(torch.from_numpy(animated).permute(2, 0, 1)[None].float() / 255)).astype(int)
    err = np.abs(got - want)
    if err.max() > 4:
        idx = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError(f"max error {err.max()} at {idx}: torch {got[idx]}, opencv {want[idx]}")
    assert err.mean() < 0.2


def test_detail_transfer_on_a_known_motion_is_sharper_and_closer_to_the_truth() -> None:
    framed, truth, prediction, reference, box, deformation = known_motion()
    tensor = torch.from_numpy(prediction).permute(2, 0, 1)[None].float() / 255
    occlusion = torch.ones(1, 1, 64, 64)
    results = {}
    for detail in (False, True):
        paster = TensorPasteBack(framed=framed, reference=reference, box=box, device="cpu", detail=detail)
        results[detail] = paster.paste(Rendered(tensor, MotionField(deformation, occlusion)))
    mask = paster.full_mask()
    full = mask > 0.999
    full[:, :400] = False  # away from the frame's left edge, where the shifted truth has no source pixels
    bbox = support_bbox(mask)
    errors = {d: float(np.abs(results[d].astype(int) - truth.astype(int))[full].mean()) for d in results}
    sharp = {d: sharpness(results[d], bbox) / sharpness(truth, bbox) for d in results}
    print(f"known motion: error {errors[False]:.1f} -> {errors[True]:.1f} levels; "
          f"sharpness {sharp[False]:.0%} -> {sharp[True]:.0%} of the truth's")
    assert errors[True] < 0.8 * errors[False]
    assert sharp[True] > 1.3 * sharp[False]
    assert sharp[True] < 1.3  # detail restored, not invented: no oversharpening past the truth


def test_detail_is_left_out_where_the_occlusion_map_says_the_source_is_hidden() -> None:
    framed, _, prediction, reference, box, deformation = known_motion()
    tensor = torch.from_numpy(prediction).permute(2, 0, 1)[None].float() / 255
    paster = TensorPasteBack(framed=framed, reference=reference, box=box, device="cpu", detail=True)
    hidden = paster.paste(Rendered(tensor, MotionField(deformation, torch.zeros(1, 1, 64, 64))))
    plain = TensorPasteBack(framed=framed, reference=reference, box=box, device="cpu", detail=False)
    np.testing.assert_array_equal(hidden, plain.paste(Rendered(tensor)))


@pytest.mark.parametrize("n", [64, 97, 256])
def test_the_devices_change_mask_matches_the_hosts(n: int) -> None:
    """``pasteback_torch.change_mask`` (the CUDA path; a CPU paste uses OpenCV's) against ``pasteback.change_mask``,
    within 1e-3 (float32 sums in another order)."""
    from fomm_live.live.framing.pasteback_torch import change_mask as device_change_mask

    reference = textured(n, n, 10)
    animated = reference.copy()
    animated[n // 4:n // 2, n // 3:n // 2 + 5] = textured(n // 2 - n // 4, n // 2 + 5 - n // 3, 11)
    want = change_mask(animated, reference)

    def levels(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float()

    got = device_change_mask(levels(animated), levels(reference), torch.from_numpy(window(n))[None, None])[0, 0]
    err = np.abs(got.numpy() - want)
    where = np.unravel_index(err.argmax(), err.shape)
    assert want.max() > 0.9 and err.max() < 1e-3, f"max error {err.max():.2e} at {where}"


def test_the_host_field_paste_back_matches_the_torch_one_with_detail() -> None:
    """``live.framing.pasteback_field`` (FOMM on the CPU) against ``live.framing.pasteback_torch`` on the known motion,
    detail on, with a partial occlusion map: within 3 levels, mean under 0.3 (OpenCV's 5-bit fixed-point sampling
    weights, and the animated face rounded to 8 bits before the blend)."""
    from fomm_live.live.framing.pasteback_field import FieldPasteBack

    framed, _, prediction, reference, box, deformation = known_motion()
    occlusion = torch.ones(1, 1, 64, 64)
    occlusion[..., 20:40, 10:30] = 0.25  # a half-hidden patch: the band is scaled there
    tensor = torch.from_numpy(prediction).permute(2, 0, 1)[None].float() / 255
    want = TensorPasteBack(framed=framed, reference=reference, box=box, device="cpu", detail=True)
    want = want.paste(Rendered(tensor, MotionField(deformation, occlusion))).astype(int)
    host = FieldPasteBack(framed=framed, reference=reference, box=box, detail=True)
    got = host.paste(Rendered(tensor, MotionField(deformation, occlusion))).astype(int)
    err = np.abs(got - want)
    assert err.max() <= 3 and err.mean() < 0.3, f"max {err.max()}, mean {err.mean():.3f}"
    outside = host.full_mask() == 0
    assert outside.any()
    np.testing.assert_array_equal(got[outside], framed[outside])
    plain = FieldPasteBack(framed=framed, reference=reference, box=box, detail=False).paste(Rendered(prediction))
    shown = host.full_mask() > 0.99
    assert np.abs(plain.astype(int) - got)[shown].mean() > 1  # the band restored where the face shows (1.5 levels)


def test_the_host_field_paste_back_leaves_detail_out_where_the_source_is_hidden() -> None:
    from fomm_live.live.framing.pasteback_field import FieldPasteBack

    framed, _, prediction, reference, box, deformation = known_motion()
    hidden = FieldPasteBack(framed=framed, reference=reference, box=box, detail=True)
    hidden = hidden.paste(Rendered(prediction, MotionField(deformation[0].numpy(), np.zeros((64, 64), np.float32))))
    plain = FieldPasteBack(framed=framed, reference=reference, box=box, detail=False).paste(Rendered(prediction))
    np.testing.assert_array_equal(hidden, plain)
