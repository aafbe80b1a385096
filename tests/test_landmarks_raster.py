"""The triangle index image (``live.landmarks.raster``): every pixel of a triangulated frame covered, by a triangle
at its centre; later triangles over earlier ones; the reference (one ``cv2.fillConvexPoly`` per
triangle) matched away from edges; and the landmark warp's frames within a stated tolerance of the reference's.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import Delaunay

from fomm_live.live.landmarks.raster import triangle_index, triangle_index_filled

# The warp's frames with the new edge ownership against the fills' (test_the_warp_stays_within_tolerance...): edge
# pixels change owner, which shows only where neighbouring maps differ (the face's outline over the background in a
# turn, folds, tears). Measured on the poses below: at most 0.042 levels mean and 52 of 65536 pixels (0.08%) more
# than 8 levels apart, along the face's outline at 30 degrees of yaw.
MEAN_LEVELS = 0.1  # mean absolute difference over the frame, grey levels
FAR_PIXELS = 0.002  # the fraction of pixels more than 8 levels apart
# How far outside a triangle the centre of a pixel it takes may lie: half a pixel across an edge, the diagonal at
# a rounded corner row, and the corners' 1/16 pixel rounding.
EDGE_REACH = 0.85


def triangulation(size: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """A Delaunay triangulation (scipy's) of random points and the frame's corners and border points (as the warp's
    mesh has its border anchors): T x 3 x 2 float64 corners in pixels."""
    height, width = size
    rng = np.random.default_rng(seed)
    last_x, last_y = width - 1.0, height - 1.0
    border = [(0.0, 0.0), (last_x, 0.0), (0.0, last_y), (last_x, last_y), (last_x / 2, 0.0), (0.0, last_y / 3),
              (last_x, last_y / 2), (last_x / 3, last_y)]
    inner = rng.uniform((1.0, 1.0), (last_x - 1.0, last_y - 1.0), size=(count, 2))
    points = np.concatenate([np.array(border), inner])
    return points[Delaunay(points).simplices]


def contains(triangle: np.ndarray, x: np.ndarray, y: np.ndarray, slack: float) -> np.ndarray:
    """Whether the points (x, y) lie inside the triangle or within ``slack`` pixels of its edges."""
    inside = np.ones(x.shape, bool)
    sign = np.sign(np.cross(triangle[1] - triangle[0], triangle[2] - triangle[0]))
    for i in range(3):
        a, b = triangle[i], triangle[(i + 1) % 3]
        edge = b - a
        side = sign * (edge[0] * (y - a[1]) - edge[1] * (x - a[0])) / np.hypot(*edge)
        inside &= side >= -slack
    return inside


@pytest.mark.parametrize("size,count,seed", [((97, 131), 60, 0), ((256, 256), 400, 1), ((33, 17), 5, 2)])
def test_a_triangulated_frame_is_covered_each_pixel_by_a_triangle_at_its_centre(size, count, seed) -> None:
    """No gap; every pixel shows a triangle its centre lies in or within EDGE_REACH of (the edge pixels a triangle
    takes), and a pixel more than a pixel inside a triangle shows that triangle."""
    corners = triangulation(size, count, seed)
    image = triangle_index(corners, size, background=-1)
    uncovered = np.argwhere(image < 0)
    assert not len(uncovered), f"{len(uncovered)} pixels uncovered, the first at (y, x) {uncovered[0]}"
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    for t, triangle in enumerate(corners):
        mine = image == t
        wrong = np.argwhere(mine & ~contains(triangle, xs, ys, EDGE_REACH))
        assert not len(wrong), f"triangle {t} holds pixel (y, x) {wrong[0]}, whose centre is far outside it"
        missed = np.argwhere(contains(triangle, xs, ys, -1.0) & ~mine)
        assert not len(missed), f"pixel (y, x) {missed[0]} lies well inside triangle {t} but shows another"


def test_later_triangles_are_drawn_over_earlier_ones_and_labels_name_them() -> None:
    a = np.array([[2.0, 2.0], [30.0, 3.0], [10.0, 28.0]])
    b = np.array([[8.0, 6.0], [28.0, 20.0], [4.0, 26.0]])
    both = contains(a, *np.mgrid[0:32, 0:32][::-1].astype(np.float64), -1e-6) & contains(
        b, *np.mgrid[0:32, 0:32][::-1].astype(np.float64), -1e-6)
    assert both.sum() > 50, "the two triangles barely overlap: the test would prove little"
    first = triangle_index(np.stack([a, b]), (32, 32), background=9, labels=np.array([5, 7]))
    second = triangle_index(np.stack([b, a]), (32, 32), background=9, labels=np.array([7, 5]))
    assert (first[both] == 7).all() and (second[both] == 5).all()
    assert set(np.unique(first)) == {5, 7, 9}


def test_inside_the_triangles_the_index_is_the_reference_fills() -> None:
    """Away from the edges (a pixel from any), the spans and the fills agree; on the edges the owner may differ."""
    size = (120, 90)
    corners = triangulation(size, 80, 3)
    ours = triangle_index(corners, size, background=-1)
    reference = triangle_index_filled(corners, size, background=-1)
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    deep = np.zeros(size, bool)
    for triangle in corners:
        deep |= contains(triangle, xs, ys, -1.0)
    assert deep.mean() > 0.3, "too few pixels a pixel away from every edge: the test would prove little"
    differ = np.argwhere(deep & (ours != reference))
    assert not len(differ), f"{len(differ)} interior pixels differ from the fills, the first at (y, x) {differ[0]}"


@pytest.fixture(scope="module")
def turning():
    """The landmark backend on the bundled photo and driving landmarks of turns, nods and an open mouth (the
    warp folds and tears there, where edge ownership shows most)."""
    from helpers.head import HeadRenderer, Pose

    from fomm_live.live.democlip import portrait_crop
    from fomm_live.live.landmarks import LandmarkBackend
    from fomm_live.live.media import read_image
    from fomm_live.live.paths import DEFAULT_PORTRAIT

    with LandmarkBackend(size=256) as backend:
        image = read_image(DEFAULT_PORTRAIT)
        crop = portrait_crop(image, backend.detect(image), 256)
        renderer = HeadRenderer(crop, backend.detect(crop))
        backend.set_source(crop)
        backend.calibrate(backend.detect(renderer.render(Pose())))
        poses = [Pose(yaw=yaw, pitch=pitch, mouth=mouth) for yaw, pitch, mouth in
                 ((-30.0, 0.0, 0.0), (-15.0, 10.0, 0.5), (0.0, 0.0, 1.0), (15.0, -10.0, 0.2), (30.0, 5.0, 1.0))]
        motions = [backend.detect(renderer.render(pose)) for pose in poses]
        assert all(m is not None for m in motions), "the face mesh lost the turned driving face"
        yield backend, motions


def test_the_warp_stays_within_tolerance_of_the_reference_fills(turning, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend's warp with FOMM_LIVE_RASTER=spans (its warp's ``spans``) against its default, the fills."""
    backend, motions = turning
    monkeypatch.setattr(backend._warp, "spans", True)
    ours = [backend.render(m).frame.astype(int) for m in motions]
    monkeypatch.setattr(backend._warp, "spans", False)
    reference = [backend.render(m).frame.astype(int) for m in motions]
    for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
        diff = np.abs(a - b).max(2)
        print(f"pose {i}: mean {diff.mean():.4f} levels, {(diff > 8).sum()} pixels over 8 levels")
        assert diff.mean() < MEAN_LEVELS, f"pose {i}: mean difference {diff.mean():.3f} levels"
        assert (diff > 8).mean() < FAR_PIXELS, f"pose {i}: {(diff > 8).sum()} pixels differ by more than 8 levels"
    assert any((a != b).any() for a, b in zip(ours, reference, strict=True)), \
        "no difference at all: the reference was not the one used"
