"""In-betweens of an eye shut since the keyframe (``live.inbetween.closing``): the lid painted over the warp's slit
where the iris showed, one-sided for a wink, and today's warp exactly wherever no eye shut.

The avatar is the bundled portrait's face square with its own face mesh; the keyframe is that square at the neutral
pose. The stand-in driver's blink moves each upper lid's landmarks most of the way onto the lower lid's (what the face
mesh reports for a shut eye, a little more closed), so the warp alone squeezes the keyframe's open eye into a slit.
"Today's in-between" is the same renderer with the lid painting switched off (``closing`` returning 0 for both eyes):
the warp alone, as before this room existed.
"""

from __future__ import annotations

import numpy as np
import pytest

import fomm_live.live.inbetween.renderer as renderer_room
from fomm_live.live.inbetween import Inbetweener
from fomm_live.live.landmarks.points import EYES
from fomm_live.live.media import cv2
from tests.helpers.inbetweens import portrait_square

SIZE = 256
BRIGHT = 150  # grey level above which a pixel in the squeezed eye is its white (or a catchlight), not the lid's shade
PLACEMENT = (400.3, 40.7, 480.0)  # a 1280 x 720 output with the square at a fractional place, as photo framing


@pytest.fixture(scope="module")
def avatar() -> tuple[np.ndarray, np.ndarray]:
    """(the model's square, its 478 x 3 normalised landmarks)."""
    return portrait_square(SIZE)


def blink(points: np.ndarray, eyes: tuple[int, ...] = (0, 1), fraction: float = 0.95) -> np.ndarray:
    """The stand-in driver: ``points`` with these eyes' (``EYES`` order) upper lids moved ``fraction`` of the way onto
    their lower lids."""
    moved = points.copy()
    for index in eyes:
        _, upper, lower = EYES[index]
        moved[list(upper), :2] += fraction * (points[list(lower), :2] - points[list(upper), :2])
    return moved


def renderer(avatar, *, frame: np.ndarray | None = None, placement=(0.0, 0.0, float(SIZE)),
             key_points: np.ndarray | None = None) -> Inbetweener:
    square, points = avatar
    r = Inbetweener(size=SIZE)
    r.set_source(square, points=points)
    r.calibrate(points)
    r.keyframe(square if frame is None else frame, points if key_points is None else key_points, placement)
    return r


def both(r: Inbetweener, driver: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, np.ndarray]:
    """(the in-between, today's in-between: the warp alone) for ``driver``, from the same keyframe."""
    lidded = r.render(driver)
    with monkeypatch.context() as patch:
        patch.setattr(renderer_room, "closing", lambda key, closures: [0.0, 0.0])
        plain = r.render(driver)
    return lidded, plain


def slit(r: Inbetweener, driver: np.ndarray, index: int) -> np.ndarray:
    """SIZE x SIZE bool: one eye's opening where the mesh puts it now (the warp's slit)."""
    corners, upper, lower = EYES[index]
    moved = r.moved_landmarks(driver)
    polygon = moved[[corners[0], *upper, corners[1], *lower[::-1]], :2]
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2().fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, cv2().LINE_8, 4)
    return mask.astype(bool)


def eye_box(points: np.ndarray, index: int, pad: int = 6) -> tuple[slice, slice]:
    """Rows and columns around one eye of normalised landmarks, ``pad`` pixels wider."""
    corners, upper, lower = EYES[index]
    xy = points[[*corners, *upper, *lower], :2] * SIZE
    (x0, y0), (x1, y1) = np.floor(xy.min(0)).astype(int) - pad, np.ceil(xy.max(0)).astype(int) + pad
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


def test_an_eye_shut_since_the_keyframe_shows_lid_skin_where_the_squeezed_iris_was(avatar, monkeypatch) -> None:
    """Both eyes shut by the stand-in driver: in each eye's slit, today's in-between shows the keyframe's open eye
    squeezed (the white and the iris side by side: bright and dark pixels, high contrast); with the lid painted there
    the white's bright pixels are gone and the slit is smooth skin with a lash line. Away from the eyes the two are
    the same frame."""
    _, points = avatar
    r = renderer(avatar)
    driver = blink(points)
    lidded, plain = both(r, driver, monkeypatch)
    grey = {name: cv2().cvtColor(image, cv2().COLOR_RGB2GRAY).astype(np.float64)
            for name, image in (("lid", lidded), ("plain", plain))}
    for index in (0, 1):
        mask = slit(r, driver, index)
        bright = {name: int((g[mask] > BRIGHT).sum()) for name, g in grey.items()}
        spread = {name: float(g[mask].std()) for name, g in grey.items()}
        print(f"eye {index}: pixels brighter than {BRIGHT} in the slit {bright['plain']} -> {bright['lid']}, "
              f"grey spread {spread['plain']:.1f} -> {spread['lid']:.1f}")
        assert bright["plain"] >= 3, "the stand-in's warp should squeeze the eye's white into the slit"
        assert bright["lid"] <= bright["plain"] // 2
        assert spread["lid"] < 0.75 * spread["plain"]
    changed = np.abs(lidded.astype(np.int16) - plain).max(2) > 0  # SIZE x SIZE
    around = np.zeros_like(changed)
    for index in (0, 1):
        rows, cols = eye_box(driver, index, pad=12)
        around[rows, cols] = True
    assert changed.any() and not changed[~around].any(), "the lids changed pixels away from the eyes"


def test_a_wink_paints_one_lid_and_leaves_the_open_eye_as_today(avatar, monkeypatch) -> None:
    """Only the first eye shut: its slit is painted, the other eye's pixels are today's in-between's exactly."""
    _, points = avatar
    r = renderer(avatar)
    driver = blink(points, eyes=(0,))
    lidded, plain = both(r, driver, monkeypatch)
    shut_rows, shut_cols = eye_box(driver, 0)
    open_rows, open_cols = eye_box(driver, 1)
    assert not np.array_equal(lidded[shut_rows, shut_cols], plain[shut_rows, shut_cols])
    np.testing.assert_array_equal(lidded[open_rows, open_cols], plain[open_rows, open_cols])


@pytest.mark.parametrize("case", ["open eyes, head moved", "more open than the keyframe", "half closed",
                                  "expression strength 0.5"])
def test_no_eye_shut_since_the_keyframe_is_todays_in_between_exactly(avatar, monkeypatch, case: str) -> None:
    """Where no eye is shut now after an open keyframe, the in-between is the warp alone, to the bit: eyes open in
    both (the head moved), an eye opening after a half-closed keyframe, an eye half closed (the warp's narrowing is
    kept: it measured better than a painted lid), and a shut eye at expression strength 0.5 (half the closure)."""
    square, points = avatar
    key_points = None
    if case == "open eyes, head moved":
        driver = points.copy()
        driver[:, 0] += 0.02
    elif case == "more open than the keyframe":
        key_points, driver = blink(points, fraction=0.5), points.copy()
    elif case == "half closed":
        driver = blink(points, fraction=0.5)
    else:
        driver = blink(points)
    r = renderer(avatar, key_points=key_points)
    if case == "expression strength 0.5":
        r.set_strengths(1.0, 0.5)
    lidded, plain = both(r, driver, monkeypatch)
    assert not np.array_equal(plain, square), "the stand-in driver should move the warp"
    np.testing.assert_array_equal(lidded, plain)


def test_the_lid_is_painted_at_the_outputs_placement_too(avatar, monkeypatch) -> None:
    """At 1280 x 720 with the square at a fractional place (the live loop's case), the shut eyes' lids are painted
    inside the square where the eyes are, the frame outside the square untouched."""
    square, points = avatar
    x0, y0, side = PLACEMENT
    s = side / SIZE
    frame = cv2().warpAffine(square, np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]]),
                             (1280, 720), flags=cv2().INTER_LINEAR, borderMode=cv2().BORDER_REPLICATE)
    r = renderer(avatar, frame=frame, placement=PLACEMENT)
    lidded, plain = both(r, blink(points), monkeypatch)
    ys, xs = np.nonzero(np.abs(lidded.astype(np.int16) - plain).max(2) > 0)
    assert len(ys) > 50
    eyes = points[[i for eye in EYES for part in eye for i in part], :2] * side + (x0, y0)  # output pixels
    assert xs.min() >= eyes[:, 0].min() - 0.2 * side and xs.max() <= eyes[:, 0].max() + 0.2 * side
    assert ys.min() >= eyes[:, 1].min() - 0.1 * side and ys.max() <= eyes[:, 1].max() + 0.1 * side


def test_the_benchmarks_eye_region_covers_the_eyes_and_picks_the_in_betweens_whose_eyes_changed_most(avatar) -> None:
    """``benchmarks.inbetween``'s eye region: every eye landmark of the portrait inside it, the mouth outside, a small
    share of the square; its figures over the PICKED rows of largest change (their frames listed) and over all."""
    from fomm_live.benchmarks.inbetween_eyes import PICKED, eye_figures, eye_mask
    from fomm_live.live.landmarks.points import INNER_LIP_POLYGON

    _, points = avatar
    mask = eye_mask(points, SIZE)
    eyes = np.round(points[[i for eye in EYES for part in eye for i in part], :2] * SIZE).astype(int)
    mouth = np.round(points[list(INNER_LIP_POLYGON), :2] * SIZE).astype(int)
    assert mask[eyes[:, 1], eyes[:, 0]].all() and not mask[mouth[:, 1], mouth[:, 0]].any()
    assert 0.01 < mask.mean() < 0.15
    rows = [(float(i), 100 + i, 30.0 + i, 20.0) for i in range(PICKED + 3)]  # (change, frame, in-between, held)
    figures = eye_figures(rows)
    assert figures["most_change"]["frames"] == list(range(103, 100 + PICKED + 3))
    assert figures["most_change"]["gain_db"] == pytest.approx(np.mean(range(3, PICKED + 3)) + 10.0)
    assert figures["all"]["count"] == PICKED + 3 and eye_figures([]) is None
