"""Head and expression strength on the landmark backend, measured on a clip with known motion.

The driving clip is the bundled photo's own face mesh rendered at known yaw, roll and mouth opening
(``tests/known_motion.py``); the output's head pose and mouth are measured by the same estimator as the driver's
(``cv2.solvePnP`` on the face mesh detected in each output frame; the lip gap over the inter-ocular distance).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.head import HeadRenderer, Pose, PoseEstimator, pearson

from fomm_live.live.democlip import portrait_crop
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.landmarks.motion import falloff, relative_motion, triangle_areas, unfolded_strengths
from fomm_live.live.media import read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT

SIZE = 256
FRAMES = 12
CLIP = [Pose(yaw=20 * math.sin(2 * math.pi * i / FRAMES), roll=12 * math.sin(2 * math.pi * i / FRAMES + 1),
             mouth=max(0.0, math.sin(2 * math.pi * i / 6))) for i in range(FRAMES)]
YAW, PITCH, ROLL, MOUTH = range(4)


@pytest.fixture(scope="module")
def backend():
    with LandmarkBackend(size=SIZE) as animator:
        yield animator


@pytest.fixture(scope="module")
def clip(backend: LandmarkBackend) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The source crop, the driver's neutral landmarks and every frame's landmarks."""
    image = read_image(DEFAULT_PORTRAIT)
    crop = portrait_crop(image, backend.detect(image), SIZE)
    renderer = HeadRenderer(crop, backend.detect(crop))
    neutral = backend.detect(renderer.render(Pose()))
    frames = [backend.detect(renderer.render(pose)) for pose in CLIP]
    assert neutral is not None and all(f is not None for f in frames), "the face mesh lost the driving face"
    return crop, neutral, frames


def measure_run(backend: LandmarkBackend, clip: tuple, head: float, expression: float) -> np.ndarray:
    """(yaw, pitch, roll, mouth) of each output frame at these strengths, F x 4."""
    crop, neutral, frames = clip
    backend.set_source(crop)
    backend.calibrate(neutral)
    backend.set_strengths(1.0, 1.0)
    estimator = PoseEstimator(backend.detect(backend.render(neutral).frame), SIZE)
    backend.set_strengths(head, expression)
    got = []
    for frame in frames:
        out = backend.detect(backend.render(frame).frame)
        assert out is not None, f"head {head}, expression {expression}: the face mesh lost the output face"
        got.append(estimator.measure(out))
    backend.set_strengths(1.0, 1.0)
    return np.array(got)


@pytest.fixture(scope="module")
def default_run(backend: LandmarkBackend, clip: tuple) -> np.ndarray:
    return measure_run(backend, clip, 1.0, 1.0)


def test_strengths_at_one_give_the_default_motion_to_the_bit(clip: tuple, backend: LandmarkBackend) -> None:
    crop, neutral, frames = clip
    backend.set_source(crop)
    source = backend._source_points
    for frame in frames[:4]:
        want = relative_motion(source, neutral.astype(np.float64), frame.astype(np.float64))
        got = relative_motion(source, neutral.astype(np.float64), frame.astype(np.float64), head=1.0, expression=1.0)
        assert np.array_equal(got, want)


def test_head_zero_holds_roll_and_yaw_while_the_mouth_follows(backend: LandmarkBackend, clip: tuple,
                                                             default_run: np.ndarray) -> None:
    """Roll and yaw vary by at most a quarter of the default run's variation; the mouth still follows it."""
    got = measure_run(backend, clip, 0.0, 1.0)
    for j, name in ((YAW, "yaw"), (ROLL, "roll")):
        print(f"head 0: {name} range {np.ptp(got[:, j]):.2f}, default {np.ptp(default_run[:, j]):.2f}")
        assert np.ptp(got[:, j]) <= 0.25 * np.ptp(default_run[:, j]), name
    r = pearson(default_run[:, MOUTH], got[:, MOUTH])
    print(f"head 0: mouth r {r:.3f}, range {np.ptp(got[:, MOUTH]):.3f}, default {np.ptp(default_run[:, MOUTH]):.3f}")
    assert r >= 0.9 and np.ptp(got[:, MOUTH]) >= 0.75 * np.ptp(default_run[:, MOUTH])


def test_expression_zero_holds_the_mouth_while_the_head_follows(backend: LandmarkBackend, clip: tuple,
                                                               default_run: np.ndarray) -> None:
    """The mouth opening varies by at most a quarter of the default run's range; yaw and roll still follow."""
    got = measure_run(backend, clip, 1.0, 0.0)
    print(f"expression 0: mouth range {np.ptp(got[:, MOUTH]):.3f}, default {np.ptp(default_run[:, MOUTH]):.3f}")
    assert np.ptp(got[:, MOUTH]) <= 0.25 * np.ptp(default_run[:, MOUTH])
    for j, name in ((YAW, "yaw"), (ROLL, "roll")):
        r = pearson(default_run[:, j], got[:, j])
        print(f"expression 0: {name} r {r:.3f}")
        assert r >= 0.95, name


def lip_gap(points: np.ndarray) -> float:
    """Inner-lip gap (13-14) over the outer eye corners' distance (33-263)."""
    return float(np.linalg.norm(points[13, :2] - points[14, :2]) / np.linalg.norm(points[33, :2] - points[263, :2]))


def test_expression_above_one_opens_the_mouth_wider(backend: LandmarkBackend, clip: tuple,
                                                    default_run: np.ndarray) -> None:
    """At 1.6 the moved lips open by at least 1.4x the copied opening over the clip (measured 1.45x: the fold bound
    pulls back only the lips' corners), and the face mesh read off the output frames sees a wider mouth too."""
    crop, neutral, frames = clip
    backend.set_source(crop)
    backend.calibrate(neutral)
    rest = lip_gap(backend.moved_landmarks(neutral))
    gaps = {}
    for strength in (1.0, 1.6):
        backend.set_strengths(1.0, strength)
        gaps[strength] = np.array([lip_gap(backend.moved_landmarks(frame)) - rest for frame in frames])
    backend.set_strengths(1.0, 1.0)
    ratio = np.ptp(gaps[1.6]) / np.ptp(gaps[1.0])
    got = measure_run(backend, clip, 1.0, 1.6)
    seen = np.ptp(got[:, MOUTH]) / np.ptp(default_run[:, MOUTH])
    print(f"expression 1.6: moved lip gap range {ratio:.2f}x the copied one; read off the output {seen:.2f}x")
    assert ratio >= 1.4
    assert seen >= 1.15


def test_exaggerated_expression_never_folds_the_mesh(backend: LandmarkBackend, clip: tuple) -> None:
    """At expression 2 on every frame of the clip, no mesh triangle that the copied motion keeps open turns over."""
    crop, neutral, frames = clip
    backend.set_source(crop)
    backend.calibrate(neutral)
    for frame in frames:
        backend.set_strengths(1.0, 1.0)
        _, copied, triangles = backend.moved_mesh(frame)
        backend.set_strengths(1.0, 2.0)
        _, moved, _ = backend.moved_mesh(frame)
        ref, area = triangle_areas(copied, triangles), triangle_areas(moved, triangles)
        open_ = np.abs(ref) > 1e-3
        assert np.all(area[open_] * np.sign(ref[open_]) > 0), "a triangle turned over"
    backend.set_strengths(1.0, 1.0)


def test_unfolded_strengths_pull_back_only_the_folding_triangles_landmarks() -> None:
    """Two triangles apart: the first's apex (landmark 2) moves down by 1 per unit of strength from height 1.5, so
    at strength 2 it would turn over; the second's apex (landmark 5) moves up. With no reach between landmarks,
    only the first triangle's landmarks are pulled back, to where it keeps 10% of its copied area; the second
    triangle keeps strength 2. With reach, the pull-back spreads by distance."""
    triangles = np.array([[0, 1, 2], [3, 4, 5]])
    still = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.5], [10.0, 0.0], [12.0, 0.0], [11.0, 1.0]])
    step = np.zeros_like(still)
    step[2, 1], step[5, 1] = -1.0, 0.5
    owner = np.arange(6)
    x = unfolded_strengths(still, still + step, triangles, owner, 2.0, np.eye(6))
    assert x[2] < 2.0 and 1.5 - x[2] >= 0.05, f"landmark 2 at strength {x[2]:.3f}"
    assert np.all(x[3:] == 2.0), x
    moved = still + x[:, None] * step
    assert np.all(triangle_areas(moved, triangles) * np.sign(triangle_areas(still + step, triangles)) > 0)
    assert np.all(unfolded_strengths(still, still + step, triangles, owner, 0.5, np.eye(6)) == 0.5)
    spread = unfolded_strengths(still, still + step, triangles, owner, 2.0, falloff(still, 3.0))
    assert spread[2] < 2.0 and 2.0 > spread[3] > spread[2] and spread[4] > spread[3] - 1e-9, spread


def test_strengths_are_validated(backend: LandmarkBackend) -> None:
    with pytest.raises(ValueError, match="head strength must be from 0 to 2"):
        backend.set_strengths(2.1, 1.0)
    with LandmarkBackend(size=64, relative=False) as absolute:
        with pytest.raises(ValueError, match="need relative motion"):
            absolute.set_strengths(1.0, 0.5)


def test_animate_head_zero_and_expression_zero_through_the_command(backend: LandmarkBackend, clip: tuple,
                                                                   tmp_path) -> None:
    """The issue's command: ``animate --backend landmarks --crop face --no-label`` on a driving folder of the
    known-motion clip (its first frame the neutral pose), read back from the PNGs it writes. ``--head-strength 0``:
    roll and yaw vary within a quarter of the default run's variation while the mouth still follows;
    ``--expression-strength 0``: the mouth opening within a quarter of the default run's range while the head
    still follows."""
    from fomm_live.live.cli import main
    from fomm_live.live.media import cv2

    crop, neutral, _ = clip
    renderer = HeadRenderer(crop, backend.detect(crop))
    driving = tmp_path / "driving"
    driving.mkdir()
    for i, pose in enumerate([Pose(), *CLIP]):
        cv2().imwrite(str(driving / f"{i:05d}.png"), cv2().cvtColor(renderer.render(pose), cv2().COLOR_RGB2BGR))
    photo = tmp_path / "photo.png"
    cv2().imwrite(str(photo), cv2().cvtColor(crop, cv2().COLOR_RGB2BGR))

    def measured(*extra: str) -> np.ndarray:
        out = tmp_path / ("out" + "".join(extra).replace("-", "_"))
        assert main(["animate", "--backend", "landmarks", "--source", str(photo), "--driving", str(driving),
                     "--output", str(out), "--crop", "face", "--no-label", *extra]) == 0
        frames = [cv2().cvtColor(cv2().imread(str(p)), cv2().COLOR_BGR2RGB) for p in sorted(out.glob("*.png"))]
        assert len(frames) == len(CLIP) + 1
        points = [backend.detect(f) for f in frames]
        assert all(p is not None for p in points), "the face mesh lost an output face"
        estimator = PoseEstimator(points[0], frames[0].shape[0])
        return np.array([estimator.measure(p) for p in points[1:]])

    default, head_zero, expression_zero = measured(), measured("--head-strength", "0"), \
        measured("--expression-strength", "0")
    for j, name in ((YAW, "yaw"), (ROLL, "roll")):
        print(f"animate: {name} range default {np.ptp(default[:, j]):.2f}, head 0 {np.ptp(head_zero[:, j]):.2f}, "
              f"expression 0 r {pearson(default[:, j], expression_zero[:, j]):.3f}")
        assert np.ptp(head_zero[:, j]) <= 0.25 * np.ptp(default[:, j]), name
        assert pearson(default[:, j], expression_zero[:, j]) >= 0.95, name
    print(f"animate: mouth range default {np.ptp(default[:, MOUTH]):.3f}, expression 0 "
          f"{np.ptp(expression_zero[:, MOUTH]):.3f}, head 0 r {pearson(default[:, MOUTH], head_zero[:, MOUTH]):.3f}")
    assert np.ptp(expression_zero[:, MOUTH]) <= 0.25 * np.ptp(default[:, MOUTH])
    assert pearson(default[:, MOUTH], head_zero[:, MOUTH]) >= 0.9
