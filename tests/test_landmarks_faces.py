"""The landmark backend's faces up close: lids, mouths, and drawn faces with anime proportions.

The anime test faces are drawn by ``live.assets.make_anime_faces`` (large eyes, small mouth and nose, a fringe over
one eye), which also gives each drawn eye's true outline; the driver is the bundled photo's own face mesh edited by
script (``live.democlip``), so the driver's motion is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from fomm_live.benchmarks.faces import (
    SIZE,
    drawn_closure,
    eye_amplitude,
    key_frames,
    laplacian_variance,
    scripts,
    sources,
)
from fomm_live.live.assets import make_anime_faces
from fomm_live.live.landmarks import LandmarkBackend, lids
from fomm_live.live.landmarks.eyes import eye_polygon
from fomm_live.live.landmarks.points import EYES, INNER_LOWER_LIP, OUTER_LOWER_LIP
from fomm_live.live.media import cv2


@pytest.fixture(scope="module")
def backend():
    with LandmarkBackend(size=SIZE) as animator:
        yield animator


@pytest.fixture(scope="module")
def faces(backend: LandmarkBackend) -> dict:
    return sources(backend)


@pytest.fixture(scope="module")
def poses(backend: LandmarkBackend, faces: dict) -> dict:
    return key_frames(backend.detect(faces["photo"][0]))


def use(backend: LandmarkBackend, faces: dict, poses: dict, name: str) -> None:
    backend.set_source(faces[name][0])
    backend.calibrate(poses["neutral"])


def lid_amounts(backend: LandmarkBackend, pose: np.ndarray) -> list[float]:
    return backend._lid_amounts(backend._closures(backend.moved_landmarks(pose)))


@pytest.mark.parametrize("name", ["anime_a", "anime_b", "anime_c"])
def test_the_drawn_eyes_outline_is_found_in_the_image(name: str, backend: LandmarkBackend, faces: dict,
                                                      poses: dict) -> None:
    """The eye found from the image is the eye that was drawn (not the mesh's, which is about half its size): it
    holds the drawn eye where the fringe leaves it visible, and not much more (its outline and a margin)."""
    use(backend, faces, poses, name)
    square, truths = faces[name]
    assert lids.is_drawn(square, backend._source_points)
    hair = np.abs(square.astype(np.int32) - make_anime_faces.VARIANTS[name]["hair"]).sum(2) < 40
    mesh = np.zeros((SIZE, SIZE), np.uint8)
    for eye in EYES:
        cv2().fillPoly(mesh, [np.round(eye_polygon(backend._source_points, eye)).astype(np.int32)], 1)
    for lid, truth in zip(backend._lids, truths, strict=True):
        visible = truth & ~hair
        region = lid.drawn.region > 0
        found = (region & visible).sum() / visible.sum()
        by_mesh = ((mesh > 0) & visible).sum() / visible.sum()
        extra = region.sum() / truth.sum()
        print(f"{name}: {found:.0%} of the drawn eye found (the mesh's eye: {by_mesh:.0%}), "
              f"{extra:.2f} times its area")
        assert found > 0.9 and by_mesh < 0.6 and extra < 2.5  # the thick outline and a 2 px margin


def test_the_photo_is_not_taken_for_a_drawing(backend: LandmarkBackend, faces: dict, poses: dict) -> None:
    use(backend, faces, poses, "photo")
    assert not lids.is_drawn(faces["photo"][0], backend._source_points)
    assert all(lid is not None and lid.drawn is None for lid in backend._lids)


@pytest.mark.parametrize("name", ["anime_a", "anime_b", "anime_c", "drawn"])
def test_a_blink_closes_the_drawn_eyes_and_half_closed_is_half(name: str, backend: LandmarkBackend, faces: dict,
                                                               poses: dict) -> None:
    """What shows of the drawn whites and iris inside the true outline: gone at the blink, about half at
    half-closed (the driver at 0.55 of its openness: the lid a little over halfway down, the thick lid line below
    it). Where strands of hair fall over the eye, the few eye pixels along their anti-aliased edge stay as drawn with
    the hair (anime_c, strands over both eyes: 0.78 at the blink). (The mesh alone closed 41-73% of the anime eyes
    and left a grey smear.)"""
    use(backend, faces, poses, name)
    square, truths = faces[name]
    neutral = backend.render(poses["neutral"]).frame
    shut = drawn_closure(backend.render(poses["blink"]).frame, neutral, square, truths)
    half = drawn_closure(backend.render(poses["half-closed"]).frame, neutral, square, truths)
    print(f"{name}: closed {np.round(shut, 2)} at the blink, {np.round(half, 2)} half-closed")
    assert min(shut) > 0.75
    assert all(0.2 < h < 0.85 for h in half)


def test_a_wink_stays_a_wink_and_a_blink_closes_both(backend: LandmarkBackend, faces: dict, poses: dict) -> None:
    use(backend, faces, poses, "photo")
    wink = lid_amounts(backend, poses["wink"])
    blink = lid_amounts(backend, poses["blink"])
    tilted = lid_amounts(backend, poses["tilt + blink"])
    print(f"lids: wink {np.round(wink, 2)}, blink {np.round(blink, 2)}, in a 30 degree tilt {np.round(tilted, 2)}")
    assert max(wink) == 1.0 and min(wink) < 0.1
    assert min(blink) == 1.0 and min(tilted) == 1.0
    # A blink that the face mesh reads unevenly closes both eyes; a wink is left alone.
    assert lids.couple([0.9, 0.6]) == [0.9, 0.9]
    assert lids.couple([0.9, 0.1]) == [0.9, 0.1]
    # Linear in the closure, so that every openness shows as a lid partly down.
    assert lids.lid_amount(lids.LID_START) == 0.0 and lids.lid_amount(lids.LID_FULL) == 1.0
    assert lids.lid_amount((lids.LID_START + lids.LID_FULL) / 2) == pytest.approx(0.5)


def test_the_closed_lid_is_skin_as_sharp_as_the_photo(backend: LandmarkBackend, faces: dict, poses: dict) -> None:
    """The closed lid (the upper half of the photo's eye opening) keeps the photo's grain: its Laplacian variance
    is well above that of the same lid blurred by 1 px (what the inpainted, stretched lid came to)."""
    use(backend, faces, poses, "photo")
    shut = backend.render(poses["blink"]).frame
    for eye in EYES:
        polygon = eye_polygon(backend._source_points, eye)
        lid = np.zeros((SIZE, SIZE), np.uint8)
        cv2().fillPoly(lid, [np.round(polygon).astype(np.int32)], 1)
        lid = cv2().erode(lid, np.ones((3, 3), np.uint8)) > 0
        lid[int(polygon[:, 1].mean()):] = False
        sharp = laplacian_variance(shut, lid)
        blurred = laplacian_variance(cv2().GaussianBlur(shut, (0, 0), 1.0), lid)
        print(f"eye {eye[0][0]}: lid Laplacian variance {sharp:.1f}, blurred {blurred:.1f}")
        assert sharp > 2.0 * blurred


@pytest.mark.parametrize("name", ["anime_a", "anime_b", "drawn"])
def test_a_drawn_mouth_opens_with_the_driver(name: str, backend: LandmarkBackend, faces: dict, poses: dict) -> None:
    """Relative mouth amplitude (the inner-lip gap over the outer eye corners, the output's range read by the face
    mesh over the driver's) at least 0.6. (Before lips and teeth were drawn around it: 0.24 and 0.42.)"""
    use(backend, faces, poses, name)
    driving = scripts(poses["neutral"])["mouth"][::2]  # the face check's mouth clip: open to 1.3 and back
    found = [backend.detect(backend.render(d).frame) for d in driving]
    assert all(f is not None for f in found)
    out = [eye_amplitude(f) for f in found]
    ratio = np.ptp(out) / np.ptp([eye_amplitude(d) for d in driving])
    print(f"{name}: relative mouth amplitude {ratio:.2f}")
    assert ratio >= 0.6


def test_the_lower_lip_moves_with_the_jaw_and_keeps_its_colour(backend: LandmarkBackend, faces: dict,
                                                               poses: dict) -> None:
    use(backend, faces, poses, "photo")
    source = faces["photo"][0]
    wide = backend.render(poses["mouth wide"]).frame
    moved = backend.moved_landmarks(poses["mouth wide"])

    def lower_lip(image: np.ndarray, points: np.ndarray) -> np.ndarray:
        band = np.zeros((SIZE, SIZE), np.uint8)
        polygon = np.concatenate([points[list(INNER_LOWER_LIP), :2], points[list(OUTER_LOWER_LIP[::-1]), :2]])
        cv2().fillPoly(band, [np.round(polygon).astype(np.int32)], 1)
        band = cv2().erode(band, np.ones((3, 3), np.uint8))
        return image[band > 0].astype(np.float64).mean(0)

    before, after = lower_lip(source, backend._source_points), lower_lip(wide, moved)
    print(f"lower lip RGB {np.round(before)} at rest, {np.round(after)} wide open")
    assert np.abs(after - before).max() < 30


def test_an_open_mouth_is_shaded_with_a_soft_edge(backend: LandmarkBackend, faces: dict, poses: dict) -> None:
    """Not a flat fill: the cavity's brightness varies (teeth, tongue, its back darker than near the lips), and the
    step from lip to cavity spans more than one pixel."""
    use(backend, faces, poses, "photo")
    wide = backend.render(poses["mouth wide"]).frame
    moved = backend.moved_landmarks(poses["mouth wide"])
    from fomm_live.live.landmarks.points import INNER_LIP_POLYGON

    inside = np.zeros((SIZE, SIZE), np.uint8)
    cv2().fillPoly(inside, [np.round(moved[list(INNER_LIP_POLYGON), :2]).astype(np.int32)], 1)
    core = cv2().erode(inside, np.ones((5, 5), np.uint8)) > 0
    grey = cv2().cvtColor(wide, cv2().COLOR_RGB2GRAY).astype(np.float64)
    print(f"cavity grey levels: std {grey[core].std():.1f}")
    assert grey[core].std() > 4.0
    # Across the edge: pixels with neither the lip's nor the cavity's brightness (within 25% of the step).
    edge = (cv2().dilate(inside, np.ones((3, 3), np.uint8)) - cv2().erode(inside, np.ones((3, 3), np.uint8))) > 0
    low, high = np.percentile(grey[edge], [5, 95])
    between = ((grey[edge] > low + 0.25 * (high - low)) & (grey[edge] < high - 0.25 * (high - low))).mean()
    print(f"edge pixels between lip and cavity: {between:.0%}")
    assert between > 0.2
