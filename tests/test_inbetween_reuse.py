"""What the in-between renderer keeps from render to render (scratch maps, the keyframe mesh's source triangles)
changes no output: each render equals a fresh renderer's, and a frame already returned is never written again."""

from __future__ import annotations

import numpy as np
import pytest

from fomm_live.live.inbetween import Inbetweener
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.media import cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT

SIZE = 256
OUTPUT = (1280, 720)
PLACEMENT = (322.1, 12.0, 480.0)  # the bundled portrait's square in photo framing at 1280 x 720
FACE_SQUARE = (225, 122, 240)  # the portrait's face square (centre x, centre y, side) in its 512 x 512 pixels


@pytest.fixture(scope="module")
def avatar() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the model's square, its 478 x 3 normalised landmarks, a 1280 x 720 frame with that square at PLACEMENT)."""
    cv = cv2()
    photo = read_image(DEFAULT_PORTRAIT)
    cx, cy, side = FACE_SQUARE
    square = cv.resize(photo[cy - side // 2:cy + side // 2, cx - side // 2:cx + side // 2], (SIZE, SIZE),
                       interpolation=cv.INTER_AREA)
    mesh = FaceMesh()
    try:
        points = mesh.landmarks(square, static=True)
    finally:
        mesh.close()
    assert points is not None, "the face mesh found no face in the bundled portrait"
    x0, y0, out_side = PLACEMENT
    s = out_side / side
    matrix = np.array([[s, 0.0, x0 - (cx - side / 2) * s + 0.5 * s - 0.5],
                       [0.0, s, y0 - (cy - side / 2) * s + 0.5 * s - 0.5]])
    frame = cv.warpAffine(photo, matrix, OUTPUT, flags=cv.INTER_LINEAR, borderMode=cv.BORDER_REFLECT)
    return square, points, frame


def moved(points: np.ndarray, *, degrees: float, shift: tuple[float, float], mouth: float = 0.0) -> np.ndarray:
    """``points`` turned about their centre and shifted (normalised units), the lower half of the face pulled down by
    ``mouth`` (an expression, so that the mesh changes shape and not only place)."""
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    centre = points[:, :2].mean(0)
    out = points.astype(np.float64).copy()
    out[:, :2] = (points[:, :2] - centre) @ rot.T + centre + np.asarray(shift)
    out[:, 1] += mouth * np.clip(points[:, 1] - centre[1], 0.0, None)
    return out.astype(np.float32)


def fresh(avatar, key_points: np.ndarray, *, frame: np.ndarray | None = None) -> Inbetweener:
    square, points, own = avatar
    renderer = Inbetweener(size=SIZE)
    renderer.set_source(square, points=points)
    renderer.calibrate(points)
    renderer.keyframe(own if frame is None else frame, key_points, PLACEMENT)
    return renderer


def test_each_render_equals_a_fresh_renderers_and_leaves_the_frames_it_returned_before_alone(avatar) -> None:
    _, points, _ = avatar
    drivers = [moved(points, degrees=d, shift=(0.004 * d, -0.003 * d), mouth=0.02 * d) for d in (1.0, 3.0, -2.0)]
    renderer = fresh(avatar, points)
    outs, copies = [], []
    for driver in drivers:
        outs.append(renderer.render(driver))
        copies.append(outs[-1].copy())
    for i, driver in enumerate(drivers):
        assert not np.array_equal(outs[i], avatar[2]), f"render {i} did not move the face: the test shows nothing"
        assert np.array_equal(outs[i], copies[i]), f"render {i}'s frame was written by a later render"
        assert np.array_equal(outs[i], fresh(avatar, points).render(driver)), \
            f"render {i} differs from a fresh renderer's first render of the same landmarks"


def test_renders_after_a_new_keyframe_use_its_mesh_not_the_one_the_shared_warp_saw_first(avatar) -> None:
    """Keyframes at one placement share the warp (its grid), which keeps the source triangles of the last mesh it
    mapped: the second keyframe's in-betweens must equal those of a renderer that never saw the first."""
    _, points, frame = avatar
    second_key = moved(points, degrees=4.0, shift=(0.02, 0.01), mouth=0.05)
    later = moved(points, degrees=6.0, shift=(0.03, 0.0), mouth=0.02)
    renderer = fresh(avatar, points)
    renderer.render(moved(points, degrees=2.0, shift=(0.01, 0.0)))
    second_frame = np.roll(frame, 3, axis=1)  # another keyframe's frame
    renderer.keyframe(second_frame, second_key, PLACEMENT)
    got = renderer.render(later)
    want = fresh(avatar, second_key, frame=second_frame).render(later)
    assert not np.array_equal(want, second_frame), "the in-between did not move: the test shows nothing"
    diff = np.argwhere(np.any(got != want, axis=2))
    assert not len(diff), f"{len(diff)} pixels differ from a fresh renderer's, first at (row, column) {diff[0]}"
