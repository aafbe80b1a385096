"""The landmark backend (`--backend landmarks`): face mesh detection, relative motion measured on the output frames,
a fixed frame border, blinks, mouth opening, and the deterministic demo clip.

Driving clips are the bundled astronaut portrait moved by known affine transforms (cv2.warpAffine of the crop), so
the motion each frame should carry is known. Landmarks are in mediapipe's normalised units (x, y as fractions of
the frame's side); pixel figures below are at the 256 px crop size.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from fomm_live.live import democlip
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.media import cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT

SIZE = 256
# Square regions of the 512 x 512 portrait as (centre x, centre y, side) in its pixels: the face spans about
# x 180-270, y 70-180 there. The driver sees the face smaller (a wider crop) and off-centre, so the motion has to be
# scaled by 300 / 240 to fit the source's face.
SOURCE_CROP = (225.0, 122.0, 240.0)
DRIVING_CROP = (232.0, 130.0, 300.0)
SCALE = DRIVING_CROP[2] / SOURCE_CROP[2]
# Eyelid pairs (upper, lower) and corners, written out here rather than taken from live.landmarks so that the
# measurement does not share the code it measures: the classic six-point eye aspect ratio per eye.
EYES = (((160, 144), (158, 153), (33, 133)), ((385, 380), (387, 373), (362, 263)))
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
UPPER_LIDS = (246, 161, 160, 159, 158, 157, 173, 466, 388, 387, 386, 385, 384, 398)
LOWER_LIDS = (7, 163, 144, 145, 153, 154, 155, 249, 390, 373, 374, 380, 381, 382)
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
LOWER_JAW = (95, 88, 178, 87, 14, 317, 402, 318, 324, 146, 91, 181, 84, 17, 314, 405, 321, 375, 200, 199, 175,
             152, 148, 176, 377, 400, 18, 83, 313, 201, 421, 208, 428, 171, 396)


def crop(image: np.ndarray, region: tuple[float, float, float], *, degrees: float = 0.0,
         shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A SIZE x SIZE crop of ``region``, then rotated by ``degrees`` about the crop's centre (counter-clockwise on
    screen) and shifted by ``shift`` crop pixels: one affine warp of the photo, edges replicated."""
    cx, cy, side = region
    s = SIZE / side
    to_crop = np.array([[s, 0, SIZE / 2 - s * cx], [0, s, SIZE / 2 - s * cy], [0, 0, 1]])
    turn = np.vstack([cv2().getRotationMatrix2D(((SIZE - 1) / 2, (SIZE - 1) / 2), degrees, 1.0), [0, 0, 1]])
    matrix = (turn @ to_crop)[:2]
    matrix[:, 2] += shift
    return cv2().warpAffine(image, matrix, (SIZE, SIZE), flags=cv2().INTER_LINEAR,
                            borderMode=cv2().BORDER_REPLICATE)


def eye_aspect_ratio(points: np.ndarray) -> float:
    xy = points[:, :2]
    ratios = [(np.linalg.norm(xy[a] - xy[b]) + np.linalg.norm(xy[c] - xy[d])) / (2 * np.linalg.norm(xy[e] - xy[f]))
              for (a, b), (c, d), (e, f) in EYES]
    return float(np.mean(ratios))


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres (means of each eye's contour), in the units of ``points``."""
    return float(np.linalg.norm(points[list(RIGHT_EYE), :2].mean(0) - points[list(LEFT_EYE), :2].mean(0)))


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return read_image(DEFAULT_PORTRAIT)


@pytest.fixture(scope="module")
def source(portrait: np.ndarray) -> np.ndarray:
    return crop(portrait, SOURCE_CROP)


@pytest.fixture(scope="module")
def backend(source: np.ndarray):
    with LandmarkBackend(size=SIZE) as animator:
        animator.set_source(source)
        yield animator


def test_detect_finds_478_landmarks_on_the_portrait_and_none_on_a_blank_image(backend: LandmarkBackend,
                                                                               portrait: np.ndarray) -> None:
    points = backend.detect(portrait)
    assert points is not None and points.shape == (478, 3) and points.dtype == np.float32
    x0, y0 = points[:468, :2].min(0) * 512
    x1, y1 = points[:468, :2].max(0) * 512
    assert 160 < x0 < x1 < 290 and 50 < y0 < y1 < 200, f"face box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f})"
    assert backend.detect(np.zeros((SIZE, SIZE, 3), np.uint8)) is None
    assert backend.detect(np.full((SIZE, SIZE, 3), 128, np.uint8)) is None
    with pytest.raises(ValueError, match="uint8"):
        backend.detect(np.zeros((SIZE, SIZE, 3), np.float32))


def test_calibration_state_and_errors(source: np.ndarray) -> None:
    with LandmarkBackend(size=128) as fresh:
        assert fresh.name == "landmarks" and fresh.size == 128
        assert not fresh.calibrated
        neutral = fresh.detect(source)
        with pytest.raises(RuntimeError, match="set_source"):
            fresh.render(neutral)
        fresh.set_source(source)
        with pytest.raises(RuntimeError, match="calibrate"):
            fresh.render(neutral)
        fresh.calibrate(neutral)
        assert fresh.calibrated
        with pytest.raises(ValueError, match="478 x 3"):
            fresh.render(neutral[:, :2])
        fresh.reset_calibration()
        assert not fresh.calibrated
        fresh.close()
    fresh.close()  # twice is fine
    assert LandmarkBackend(relative=False).calibrated  # absolute motion needs no neutral pose


def test_neutral_frame_renders_the_source(backend: LandmarkBackend, portrait: np.ndarray,
                                          source: np.ndarray) -> None:
    neutral = backend.detect(crop(portrait, DRIVING_CROP))
    backend.calibrate(neutral)
    out = backend.render(neutral).frame
    diff = np.abs(out.astype(np.int32) - source)
    assert diff.mean() < 0.5 and diff.max() <= 2, f"mean {diff.mean():.3f}, max {diff.max()}"


@pytest.mark.parametrize("size", [SIZE, 512, 200])
def test_render_shape_and_dtype(size: int, source: np.ndarray) -> None:
    with LandmarkBackend(size=size) as animator:
        animator.set_source(source)
        motion = animator.detect(source)
        animator.calibrate(motion)
        out = animator.render(motion).frame
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
    with LandmarkBackend(size=size, relative=False) as absolute:
        absolute.set_source(source)
        out = absolute.render(motion).frame
        assert out.shape == (size, size, 3) and out.dtype == np.uint8


# (degrees, shift in driving-crop pixels)
MOTIONS = [(0.0, (8.0, 0.0)), (0.0, (0.0, -8.0)), (6.0, (0.0, 0.0)), (-5.0, (-6.0, 5.0)), (4.0, (7.0, 6.0))]


def test_affine_motion_moves_the_output_landmarks_like_the_driver_scaled_to_the_source(
        backend: LandmarkBackend, portrait: np.ndarray) -> None:
    neutral = backend.detect(crop(portrait, DRIVING_CROP))
    backend.calibrate(neutral)
    rest = backend.detect(backend.render(neutral).frame)  # the output's own landmarks at rest
    iod = inter_ocular(rest)
    errors, moves = [], []
    for degrees, shift in MOTIONS:
        driving = backend.detect(crop(portrait, DRIVING_CROP, degrees=degrees, shift=shift))
        moved = backend.detect(backend.render(driving).frame)
        assert driving is not None and moved is not None, f"face lost at {degrees} degrees, shift {shift}"
        want = SCALE * (driving[:468, :2] - neutral[:468, :2])  # the driver's displacement, at the source's scale
        got = moved[:468, :2] - rest[:468, :2]
        errors.append(np.linalg.norm(got - want, axis=1).mean() / iod)
        moves.append(np.linalg.norm(want, axis=1).mean() / iod)
    report = ", ".join(f"{d:+.0f} deg {s}: error {e:.1%} of IOD (motion {m:.0%})"
                       for (d, s), e, m in zip(MOTIONS, errors, moves, strict=True))
    print(report)
    assert min(moves) > 0.05, f"a motion too small to tell anything: {report}"
    assert max(errors) < 0.03, report


def test_corners_far_from_the_face_stay_put(portrait: np.ndarray, source: np.ndarray) -> None:
    patch = SIZE // 16
    textured = source.copy()
    rng = np.random.default_rng(0)
    for ys in (slice(0, patch), slice(SIZE - patch, SIZE)):
        for xs in (slice(0, patch), slice(SIZE - patch, SIZE)):
            textured[ys, xs] = rng.integers(0, 256, (patch, patch, 3), dtype=np.uint8)  # noise: any shift shows
    with LandmarkBackend(size=SIZE) as animator:
        animator.set_source(textured)
        animator.calibrate(animator.detect(crop(portrait, DRIVING_CROP)))
        out = animator.render(animator.detect(crop(portrait, DRIVING_CROP, degrees=6.0, shift=(8.0, 6.0)))).frame
    diff = np.abs(out.astype(np.int32) - textured)
    face = diff[70:200, 70:190].mean()
    assert face > 8, f"the face barely moved (mean change {face:.1f}): the test would prove nothing"
    for ys in (slice(0, patch), slice(SIZE - patch, SIZE)):
        for xs in (slice(0, patch), slice(SIZE - patch, SIZE)):
            assert diff[ys, xs].max() <= 1, f"corner {ys.start}, {xs.start} changed by up to {diff[ys, xs].max()}"


def test_blink_closes_the_eyes(backend: LandmarkBackend, source: np.ndarray) -> None:
    neutral = backend.detect(source)
    backend.calibrate(neutral)
    shut = neutral.copy()
    shut[list(UPPER_LIDS)] = shut[list(LOWER_LIDS)] - np.array([0.0, 0.5 / SIZE, 0.0], np.float32)
    ear_open = eye_aspect_ratio(backend.detect(backend.render(neutral).frame))
    ear_shut = eye_aspect_ratio(backend.detect(backend.render(shut).frame))
    print(f"eye aspect ratio on the output: {ear_open:.3f} open, {ear_shut:.3f} blinking")
    assert ear_shut < 0.5 * ear_open, f"eye aspect ratio {ear_open:.3f} -> {ear_shut:.3f}"


def test_closed_eyes_show_lids_not_a_smear(backend: LandmarkBackend, source: np.ndarray) -> None:
    """Where the open eye was, a shut one shows skin: few pixels as dark as the iris, lashes or lid shadow. (Closing
    the mesh alone stretched the lash line over the eye: 42% and 30% of the pixels stayed that dark.)"""
    neutral = backend.detect(source)
    backend.calibrate(neutral)
    shut = neutral.copy()
    shut[list(UPPER_LIDS)] = shut[list(LOWER_LIDS)] - np.array([0.0, 0.5 / SIZE, 0.0], np.float32)
    half = neutral.copy()
    half[list(UPPER_LIDS)] = 0.8 * neutral[list(UPPER_LIDS)] + 0.2 * neutral[list(LOWER_LIDS)]
    def lids(motion: np.ndarray) -> list[float]:
        return backend._lid_amounts(backend._closures(backend.moved_landmarks(motion)))

    assert lids(neutral) == [0.0, 0.0]
    # A fifth closed: the lid a fifth of the way down (every openness shows its lid; it used to wait until a
    # quarter closed, and a half-closed eye looked open).
    assert lids(half) == pytest.approx([0.2, 0.2], abs=0.05)
    assert lids(shut) == [1.0, 1.0]
    lum_open, lum_shut = luminance(backend.render(neutral).frame), luminance(backend.render(shut).frame)
    for eye in (RIGHT_EYE, LEFT_EYE):
        inside = np.zeros((SIZE, SIZE), np.uint8)
        hull = cv2().convexHull(np.round(neutral[list(eye), :2] * SIZE).astype(np.int32))
        cv2().fillConvexPoly(inside, hull, 1)
        around = cv2().dilate(inside, np.ones((15, 15), np.uint8)) - cv2().dilate(inside, np.ones((7, 7), np.uint8))
        skin = np.median(lum_open[around > 0])
        dark_open = (lum_open[inside > 0] < 0.6 * skin).mean()
        dark_shut = (lum_shut[inside > 0] < 0.6 * skin).mean()
        print(f"eye {eye[0]}: dark pixels {dark_open:.0%} open, {dark_shut:.0%} shut")
        assert dark_open > 0.2, "the open eye should have dark pixels (iris, lashes): the measure would say nothing"
        assert dark_shut < 0.1, f"eye {eye[0]}: {dark_shut:.0%} of the shut eye is as dark as an open one"


def test_opening_mouth_shows_a_dark_interior(backend: LandmarkBackend, source: np.ndarray) -> None:
    neutral = backend.detect(source)
    backend.calibrate(neutral)
    opened = neutral.copy()
    opened[list(LOWER_JAW), 1] += 12.0 / SIZE  # the jaw and the lower lip drop 12 px
    out = backend.render(opened).frame
    # The newly opened part: inside the moved inner lips, outside the source's own (her smile shows teeth).
    # Driver and source are the same framing here, so the moved lips are the driving landmarks times SIZE.
    new_mouth = np.zeros((SIZE, SIZE), np.uint8)
    old_mouth = np.zeros((SIZE, SIZE), np.uint8)
    cv2().fillPoly(new_mouth, [np.round(opened[list(INNER_LIPS), :2] * SIZE).astype(np.int32)], 1)
    cv2().fillPoly(old_mouth, [np.round(neutral[list(INNER_LIPS), :2] * SIZE).astype(np.int32)], 1)
    region = (new_mouth > 0) & (cv2().dilate(old_mouth, np.ones((5, 5), np.uint8)) == 0)
    assert region.sum() > 100, f"only {region.sum()} newly opened pixels"
    before = luminance(source)[region].mean()
    after = luminance(out)[region].mean()
    backend.mouth_interior = False
    try:
        stretched = luminance(backend.render(opened).frame)[region].mean()
    finally:
        backend.mouth_interior = True
    print(f"mouth interior luminance: {before:.0f} at rest, {stretched:.0f} stretched lips, {after:.0f} painted")
    assert after < 0.6 * before and after < 0.6 * stretched


def test_smoothing_blends_with_the_previous_frame(portrait: np.ndarray, source: np.ndarray) -> None:
    with LandmarkBackend(size=SIZE, smoothing=0.5) as smooth, LandmarkBackend(size=SIZE) as plain:
        neutral = plain.detect(source)
        moved = neutral + np.array([4.0 / SIZE, 0.0, 0.0], np.float32)
        for animator in (smooth, plain):
            animator.set_source(source)
            animator.calibrate(neutral)
        rest = plain.moved_landmarks(neutral)
        smooth.moved_landmarks(neutral)
        halfway = smooth.moved_landmarks(moved)
        np.testing.assert_allclose(halfway, (rest + plain.moved_landmarks(moved)) / 2, atol=1e-6)


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, float(stream.average_rate)


def test_demo_clip_is_deterministic_and_as_long_as_asked(tmp_path: Path) -> None:
    fps, size = 10, 128
    first = democlip.make_demo_clip(tmp_path / "a.mp4", fps=fps, size=size)
    second = democlip.make_demo_clip(tmp_path / "b.mp4", fps=fps, size=size)
    frames_a, rate = decode(first)
    frames_b, _ = decode(second)
    assert rate == fps
    assert len(frames_a) == len(frames_b) == round(democlip.SCRIPT["end"][1] * fps) == 50
    assert frames_a[0].shape == (size, size, 3)
    for i, (a, b) in enumerate(zip(frames_a, frames_b, strict=True)):
        assert np.array_equal(a, b), f"frame {i} differs between two runs"
    # It moves: the head turn differs from the first frame; the last frame is back at rest (up to coding noise).
    start, end = democlip.SCRIPT["turn"]
    turned = np.abs(frames_a[round((0.75 * start + 0.25 * end) * fps)].astype(np.int32) - frames_a[0]).mean()
    rest = np.abs(frames_a[-1].astype(np.int32) - frames_a[0]).mean()
    assert turned > 3 and rest < 0.3 * turned, f"mean change: {turned:.2f} turned, {rest:.2f} at rest"


def test_demo_clip_path_is_cached_by_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOMM_LIVE_CACHE", str(tmp_path))
    made = []
    original = democlip.make_demo_clip

    def small_clip(path: Path, **kwargs: object) -> Path:
        made.append(path)
        return original(path, fps=5, size=96)

    monkeypatch.setattr(democlip, "make_demo_clip", small_clip)
    path = democlip.demo_clip_path()
    assert path.parent == tmp_path and democlip.DEMO_CLIP_VERSION in path.name and path.is_file()
    assert democlip.demo_clip_path() == path and len(made) == 1  # the second call reuses the file
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    monkeypatch.setattr(democlip, "DEMO_CLIP_VERSION", "test-next")
    assert democlip.demo_clip_path() != path and len(made) == 2


def test_gaze_moves_the_irises_and_leaves_a_still_eye_alone(backend: LandmarkBackend, source: np.ndarray) -> None:
    """The driver's irises moved sideways by 0.15 of an eye's width, each way: the darkest quarter of each output
    eye (the iris) follows. At rest the eyes are the photo's, within about a level."""
    neutral = backend.detect(source)
    backend.calibrate(neutral)
    rest = backend.render(neutral).frame
    for eye, corners in ((RIGHT_EYE, (33, 133)), (LEFT_EYE, (263, 362))):
        hull = cv2().convexHull(np.round(neutral[list(eye), :2] * SIZE).astype(np.int32))
        inside = np.zeros((SIZE, SIZE), np.uint8)
        cv2().fillConvexPoly(inside, hull, 1)
        x, y, w, h = cv2().boundingRect(hull)
        change = np.abs(rest[y:y + h, x:x + w].astype(np.int32) - source[y:y + h, x:x + w]).mean()
        assert change < 0.5, f"eye {eye[0]} at rest differs from the photo by {change:.1f} levels on average"
        width = np.linalg.norm(neutral[corners[0], :2] - neutral[corners[1], :2])
        centres = []
        for shift in (-0.15, 0.15):
            looking = neutral.copy()
            looking[468:478, 0] += shift * width  # both irises, all ten iris points
            lum = luminance(backend.render(looking).frame)
            ys, xs = np.nonzero((inside > 0) & (lum <= np.percentile(lum[inside > 0], 25)))
            centres.append(xs.mean() / SIZE)
        moved = (centres[1] - centres[0]) / width
        print(f"eye {eye[0]}: rest change {change:.2f} levels, iris moved {moved:.2f} eye widths")
        assert moved > 0.1, f"eye {eye[0]}: the iris moved {moved:.2f} eye widths for a gaze change of 0.3"


def test_head_ring_joins_the_face_only_at_its_oval(backend: LandmarkBackend, source: np.ndarray) -> None:
    """Triangles that reach out to the head ring or the frame's border touch the face only at its oval. Long
    triangles from the ring to landmarks inside the oval (20 of them on this photo, before landmarks hugging the
    oval stopped being vertices) sheared into background-coloured notches along the far jaw in a 20-degree turn."""
    from fomm_live.live.landmarks import FACE_OVAL, MESH_POINTS

    backend.set_source(source)
    triangles = backend._mesh.triangles
    oval = np.isin(triangles, FACE_OVAL)
    outer = triangles >= MESH_POINTS
    crossing = outer.any(1) & ~(oval | outer).all(1)
    assert outer.any(1).sum() > 30, "the mesh has no head ring to speak of: the test would prove nothing"
    assert not crossing.any(), f"{crossing.sum()} triangles join the ring to inner landmarks: {triangles[crossing][:5]}"


def test_mediapipe_start_up_lines_stay_quiet() -> None:
    """mediapipe's graphs start their calculators asynchronously, which then print TFLite and absl lines on the
    native stderr (three lines per start-up, before the graphs were warmed up inside the quiet block)."""
    import subprocess
    import sys

    code = ("import time\n"
            "from fomm_live.live.face import FaceDetector\n"
            "from fomm_live.live.landmarks import LandmarkBackend\n"
            "detector = FaceDetector()\n"
            "backend = LandmarkBackend(tracking=True)\n"
            "backend.face_mesh.graph(False)\n"
            "time.sleep(0.5)\n"
            "print('ran')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0 and "ran" in result.stdout, result.stderr[-2000:]
    assert result.stderr.strip() == "", f"start-up lines leaked: {result.stderr[:500]}"
