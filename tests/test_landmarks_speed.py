"""The landmark render's faster steps give the same frames as the plain numpy versions they replaced.

Each test keeps the former implementation here as the reference and runs it beside the backend's on the same input,
taken from real renders: the bundled photo's own 3-D face mesh turned by a test-side renderer
(``tests/helpers/head.py``), so that the warp folds and tears as in a strong head turn.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from helpers.head import HeadRenderer, Pose

import fomm_live.live.landmarks.backend as backend_module
from fomm_live.live.democlip import portrait_crop
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.landmarks.points import MESH_POINTS, OUTER_LIP_POLYGON
from fomm_live.live.landmarks.warp import TEAR_BLUR, TEAR_JUMP, SourceMesh, soften_tears
from fomm_live.live.media import cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT

SIZE = 256


def soften_tears_reference(out: np.ndarray, pmap: np.ndarray, index: np.ndarray, mesh: SourceMesh,
                           targets: np.ndarray) -> None:
    """``warp.soften_tears`` as it was: the neighbour pairs where the triangle changes gathered by ``np.nonzero``
    and compared one by one, the band's pixels copied from the blurred box by index."""
    cv = cv2()
    n = index.shape[0]
    x0, y0 = np.clip(np.floor(targets[:MESH_POINTS].min(0)).astype(int) - 4, 0, n - 1)
    x1, y1 = np.clip(np.ceil(targets[:MESH_POINTS].max(0)).astype(int) + 5, 1, n)
    tris = index[y0:y1, x0:x1]
    box = pmap[y0:y1, x0:x1]
    tear = np.zeros(tris.shape, np.uint8)
    for dy, dx in ((0, 1), (1, 0)):
        ys, xs = np.nonzero(tris[dy:, dx:] != tris[:tris.shape[0] - dy, :tris.shape[1] - dx])
        torn = np.abs(box[ys + dy, xs + dx] - box[ys, xs]).sum(1) > TEAR_JUMP
        tear[ys[torn], xs[torn]] = 1
        tear[ys[torn] + dy, xs[torn] + dx] = 1
    if not tear.any():
        return
    lips = np.round(targets[list(OUTER_LIP_POLYGON)] - (x0, y0)).astype(np.int32)
    cv.fillPoly(tear, [lips], 0)
    band = cv.dilate(tear, np.ones((3, 3), np.uint8))
    cv.fillPoly(band, [lips], 0)
    ys, xs = np.nonzero(band)
    if not len(ys):
        return
    region = out[y0:y1, x0:x1]
    region[ys, xs] = cv.GaussianBlur(region, (0, 0), TEAR_BLUR)[ys, xs]


@pytest.fixture(scope="module")
def turning() -> Iterator[tuple[LandmarkBackend, list[np.ndarray]]]:
    """A backend on the bundled photo, calibrated, and the driving landmarks of turns from -30 to 30 degrees of yaw
    with some pitch and an open mouth."""
    with LandmarkBackend(size=SIZE) as backend:
        image = read_image(DEFAULT_PORTRAIT)
        crop = portrait_crop(image, backend.detect(image), SIZE)
        points = backend.detect(crop)
        renderer = HeadRenderer(crop, points)
        backend.set_source(crop)
        backend.calibrate(backend.detect(renderer.render(Pose())))
        poses = [Pose(yaw=yaw, pitch=pitch, mouth=mouth) for yaw, pitch, mouth in
                 ((-30.0, 0.0, 0.0), (-20.0, 10.0, 0.5), (20.0, -10.0, 0.0), (30.0, 5.0, 1.0), (25.0, 0.0, 0.3))]
        motions = [backend.detect(renderer.render(pose)) for pose in poses]
        assert all(m is not None for m in motions), "the face mesh lost the turned driving face"
        yield backend, motions


def test_softened_tears_are_the_reference_ones_to_the_bit(turning: tuple,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    backend, motions = turning
    calls: list[tuple[int, int]] = []  # per call: pixels the reference softened, pixels where the two differ

    def both(out, pmap, index, mesh, targets):
        expected = out.copy()
        soften_tears_reference(expected, pmap, index, mesh, targets)
        before = out.copy()
        soften_tears(out, pmap, index, mesh, targets)
        differ = np.argwhere((out != expected).any(2))
        assert not len(differ), f"{len(differ)} pixels differ from the reference, the first at (y, x) {differ[0]}"
        calls.append(int((expected != before).any(2).sum()))

    monkeypatch.setattr(backend_module, "soften_tears", both)
    for motion in motions:
        backend.render(motion, detail=True)
    print(f"softened pixels per call: {calls}")
    assert len(calls) >= 3, "too few turns tore the warp: the test would prove little"
    assert sum(calls) > 100, "the reference softened almost nothing: the test would prove little"


def test_the_painted_mask_is_what_differs_from_a_second_remap_of_the_warp(turning: tuple) -> None:
    """The render keeps a copy of its warped frame from before the painting instead of remapping the photo again;
    the mask of painted pixels must be the one the second remap gives (lids, eyeballs, mouth, softened tears)."""
    backend, motions = turning
    cv = cv2()
    source = backend._source  # the photo at the render's size, as the backend holds it
    painted_pixels = 0
    for motion in motions:
        rendered = backend.render(motion, detail=True)
        plain = cv.remap(source, rendered.warp.source_map, None, cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)
        expected = (rendered.frame != plain).any(2)
        differ = np.argwhere(rendered.warp.painted != expected)
        assert not len(differ), f"{len(differ)} pixels of the painted mask differ, the first at (y, x) {differ[0]}"
        painted_pixels += int(expected.sum())
    assert painted_pixels > 500, "almost nothing was painted: the test would prove little"


def test_landmarks_read_from_the_wire_are_the_attributes_values() -> None:
    """The face mesh's landmarks read from their serialised bytes equal those read attribute by attribute, on the
    face mesh's own output and on lists it would not write (a visibility set, a zero left out: the slow path)."""
    from mediapipe.framework.formats import landmark_pb2

    from fomm_live.live.landmarks.facemesh import landmark_array

    with LandmarkBackend(size=SIZE) as backend:
        image = read_image(DEFAULT_PORTRAIT)
        crop = portrait_crop(image, backend.detect(image), SIZE)
        faces = backend.face_mesh.graph(True).process(crop).multi_face_landmarks
    assert faces, "no face found: the test would prove nothing"
    assert len(faces[0].SerializeToString()) == 17 * len(faces[0].landmark), \
        "the face mesh's output is not in the layout the fast read expects: only the slow path was tested"
    rng = np.random.default_rng(5)
    visible = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in rng.normal(size=(20, 3)):
        visible.landmark.add(x=x, y=y, z=z, visibility=0.5)
    zero = landmark_pb2.NormalizedLandmarkList()
    zero.landmark.add(x=0.25, y=0.5)  # z never set: not written
    for landmarks in (faces[0], visible, zero):
        expected = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32)
        got = landmark_array(landmarks)
        assert got.dtype == np.float32 and got.shape == expected.shape
        differ = np.argwhere(got != expected)
        assert not len(differ), f"{len(differ)} values differ, the first at {differ[0]}"


def test_the_maps_products_with_a_complex_grid_are_those_with_the_float_grid() -> None:
    """``Warp`` keeps its grid as complex64 so that numpy does not cast it on every frame; the backward map's
    products must be the bits the float32 grid gave (complex64 maps of every magnitude, signs and zeros)."""
    rng = np.random.default_rng(11)
    maps = (rng.normal(size=4096) * 10.0 ** rng.integers(-3, 3, 4096)
            + 1j * rng.normal(size=4096) * 10.0 ** rng.integers(-3, 3, 4096)).astype(np.complex64)
    maps[:8] = [0, 1, -1, 1j, -1j, 0.5 - 0.25j, -0.0, 3e-8 + 2e7j]
    grid = np.arange(4096, dtype=np.float32) * np.float32(0.5) - np.float32(7.0)  # with 0 and negatives
    former = maps * grid
    ours = maps.copy()
    ours *= grid.astype(np.complex64)
    assert former.dtype == ours.dtype == np.complex64
    differ = np.argwhere(former.view(np.float32) != ours.view(np.float32))
    assert not len(differ), f"{len(differ)} components differ, the first at {differ[0]}"
