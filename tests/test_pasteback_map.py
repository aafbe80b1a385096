"""The paste-back along the landmark backend's warp (``live.framing.pasteback_map``): the photo's own pixels wherever
nothing moved, the full-resolution photo moved on a known motion, painted parts shown from the rendered frame."""

from __future__ import annotations

import numpy as np
from helpers.pasteback import known_motion, square_of, textured
from helpers.seam import sharpness, support_bbox

from fomm_live.live.backends import Rendered, WarpMap
from fomm_live.live.framing.pasteback import PasteBack
from fomm_live.live.framing.pasteback_map import MapPasteBack

N = 64


def identity(n: int) -> np.ndarray:
    grid = np.arange(n, dtype=np.float32)
    return np.stack(np.meshgrid(grid, grid), axis=-1)  # n x n x 2


def layers(frame: np.ndarray, source_map: np.ndarray, painted: np.ndarray | None = None) -> Rendered:
    """A warping backend's render with its warp map (``LandmarkBackend.render(..., detail=True)``)."""
    painted = np.zeros(frame.shape[:2], bool) if painted is None else painted
    return Rendered(frame, warp=WarpMap(source_map=source_map, painted=painted))


def bump(n: int, amplitude: float) -> np.ndarray:
    """A smooth backward displacement in the square's middle, exactly 0 from a third of the side outwards."""
    c = (np.arange(n, dtype=np.float64) + 0.5) / n - 0.5
    r = np.hypot(c[None, :], c[:, None]) / (1 / 3)
    fall = np.where(r < 1, (1 - r * r) ** 2, 0.0)
    return np.stack([amplitude * fall, 0.5 * amplitude * fall], axis=-1).astype(np.float32)  # n x n x 2


def test_a_warp_that_moves_nothing_leaves_the_photo_exactly() -> None:
    framed = textured(180, 320, 20)
    box = (100.3, 20.6, 150.0)
    reference = square_of(framed, (100, 20, 150), N)
    paster = MapPasteBack(framed=framed, size=N, box=box)
    np.testing.assert_array_equal(paster.paste(layers(reference, identity(N))), framed)
    assert not paster.full_mask().any()


def test_outside_the_moved_part_every_pixel_is_the_framed_photo() -> None:
    framed = textured(180, 320, 21)
    box = (-20.5, 15.25, 170.0)  # past the frame's left edge
    reference = textured(N, N, 22)
    painted = np.zeros((N, N), bool)
    painted[40:44, 30:36] = True
    paster = MapPasteBack(framed=framed, size=N, box=box)
    out = paster.paste(layers(reference, identity(N) + bump(N, 3.0), painted))
    mask = paster.full_mask()
    outside = mask == 0
    assert mask.any() and outside.any()
    np.testing.assert_array_equal(out[outside], framed[outside])
    assert np.abs(out[mask > 0].astype(int) - framed[mask > 0].astype(int)).mean() > 5  # the photo moved there
    # The moved part stays inside the square's middle: the border ring of the square is untouched.
    ys, xs = np.nonzero(mask)
    side = box[2]
    assert xs.min() > box[0] + side / 6 - 2 and xs.max() < box[0] + 5 * side / 6 + 2


def test_painted_parts_show_the_rendered_frame() -> None:
    framed = textured(180, 320, 23)
    box = (100.0, 20.0, 150.0)
    frame = square_of(framed, (100, 20, 150), N)
    painted = np.zeros((N, N), bool)
    painted[20:40, 24:44] = True
    frame[painted] = (250, 10, 10)
    paster = MapPasteBack(framed=framed, size=N, box=box)
    out = paster.paste(layers(frame, identity(N), painted))
    k = box[2] / N
    centre = out[int(20 + 30 * k), int(100 + 34 * k)]
    np.testing.assert_array_equal(centre, (250, 10, 10))
    outside = paster.full_mask() == 0
    np.testing.assert_array_equal(out[outside], framed[outside])


def test_on_a_known_motion_the_moved_photo_is_the_truth_at_full_resolution() -> None:
    """The photo shifted by 6.25 model pixels (12.5 output pixels at 2x): moving the full-resolution photo along the
    map is closer to the truth and sharper than upscaling the ideal 256 x 256 render (``live.framing.pasteback``)."""
    framed, truth, prediction, reference, box, _ = known_motion()
    n = prediction.shape[0]
    shifted = identity(n)
    shifted[..., 0] -= 6.25  # each pixel comes from 6.25 model pixels to its left
    paster = MapPasteBack(framed=framed, size=n, box=box)
    moved = paster.paste(layers(prediction, shifted))
    plain_paster = PasteBack(framed=framed, reference=reference, box=box)
    plain = plain_paster.paste(Rendered(prediction))
    full = plain_paster.full_mask() > 0.999
    full[:, :400] = False  # away from the frame's left edge, where the shifted truth has no source pixels
    bbox = support_bbox(plain_paster.full_mask())
    errors = {name: float(np.abs(out.astype(int) - truth.astype(int))[full].mean())
              for name, out in (("plain", plain), ("map", moved))}
    sharp = {name: sharpness(out, bbox) / sharpness(truth, bbox) for name, out in (("plain", plain), ("map", moved))}
    print(f"known motion along the map: error {errors['plain']:.1f} -> {errors['map']:.1f} levels; "
          f"sharpness {sharp['plain']:.0%} -> {sharp['map']:.0%} of the truth's")
    assert errors["map"] < 0.5 * errors["plain"]
    assert sharp["map"] > 1.3 * sharp["plain"] and sharp["map"] < 1.2


def test_the_enlarged_photo_keeps_its_pixels_and_holds_bicubic_values_between() -> None:
    """``upsample``: the photo's own pixels at every f-th place, OpenCV's bicubic interpolation between (the values
    the paste-back samples bilinearly instead of remapping bicubically)."""
    from fomm_live.live.framing.pasteback_map import upsample
    from fomm_live.live.media import cv2

    cv = cv2()
    image = textured(37, 53, 24)
    factor = 4
    big = upsample(image, factor)
    assert big.shape == (factor * 36 + 1, factor * 52 + 1, 3) and big.dtype == np.uint8
    np.testing.assert_array_equal(big[::factor, ::factor], image)
    ys, xs = np.mgrid[0:36, 0:52].astype(np.float32)
    for ky, kx in ((0, 1), (2, 0), (1, 3), (2, 2)):
        truth = cv.remap(image.astype(np.float32), xs + kx / factor, ys + ky / factor, cv.INTER_CUBIC,
                         borderMode=cv.BORDER_REPLICATE).clip(0, 255)  # saturated, as the uint8 result is
        got = big[ky:-1:factor, kx:-1:factor].astype(np.float32)
        assert np.abs(got - truth).max() <= 0.51, (ky, kx, np.abs(got - truth).max())
