"""The crop tracker's steady mode (``live.face.CropTracker(tracking="steady")``): the box holds exactly while the face
stays near its centre, glides without a step when the face leaves that zone, holds with no face, and keeps the zoom and
move hotkeys. Faces are made by hand (a box in pixels), so no detector runs."""

from __future__ import annotations

import numpy as np
import pytest

from fomm_live.live.face import CropTracker, Face, face_crop_box
from fomm_live.live.loop.hotkeys import Controls, apply_tracking_key

FPS = 30.0
SIDE = 200.0  # the face box's side; the crop is twice that (DEFAULT_MARGIN)


def face_at(cx: float, cy: float, size: float = SIDE) -> Face:
    return Face((cx - size / 2, cy - size / 2, size, size), 0.9, np.zeros((6, 2)))


def box_tuple(box) -> tuple[float, float, float]:
    return (box.cx, box.cy, box.side)


def test_steady_box_is_exactly_still_while_the_face_moves_inside_the_dead_zone() -> None:
    tracker = CropTracker(tracking="steady", dead_zone=0.08, size_zone=1.15)
    first = box_tuple(tracker.update(face_at(640, 360), 0.0))
    crop_side = first[2]
    rng = np.random.default_rng(0)
    for i in range(1, 300):  # 10 s of a head nodding and swaying within 7% of the crop's side, its size within 10%
        dx, dy = rng.uniform(-0.07, 0.07, 2) * crop_side
        box = tracker.update(face_at(640 + dx, 360 + dy, SIDE * rng.uniform(0.91, 1.1)), i / FPS)
        assert box_tuple(box) == first, f"frame {i}: the box moved"


def test_follow_mode_moves_the_box_for_the_same_small_motion() -> None:
    """The stand-in for today's tracker: the One Euro filter moves the box on every frame the face moves."""
    tracker = CropTracker(tracking="follow")
    first = box_tuple(tracker.update(face_at(640, 360), 0.0))
    moved = [box_tuple(tracker.update(face_at(640 + 20 * np.sin(i / 5), 360), i / FPS)) != first for i in range(1, 30)]
    assert all(moved)


def test_steady_box_recentres_smoothly_when_the_face_leaves_the_dead_zone() -> None:
    """The face steps 30% of the crop's side to the right and stays: the box glides there with no step over
    ``max_speed`` sides a second (0.6: 8 px a frame at 30 fps for this 400 px crop), its step changes by at most
    ``max_accel`` / fps^2 sides from one frame to the next, from rest and back to rest (1.5 sides/s^2: 0.67 px a
    frame; it eases in and out, no jump), and it holds exactly once re-centred."""
    tracker = CropTracker(tracking="steady", max_speed=0.6, max_accel=1.5)
    start = tracker.update(face_at(640, 360), 0.0)
    crop_side = start.side
    target = face_crop_box(face_at(640 + 0.3 * crop_side, 360))
    boxes = [box_tuple(start)]
    for i in range(1, 200):
        boxes.append(box_tuple(tracker.update(face_at(640 + 0.3 * crop_side, 360), i / FPS)))
    xs = np.array(boxes)[:, 0]
    steps = np.diff(xs)
    assert np.all(steps >= -1e-9), "the glide went backwards"
    assert steps.max() <= 0.6 * crop_side / FPS + 1e-6
    speed_changes = np.abs(np.diff(np.concatenate([[0.0], steps])))
    assert speed_changes.max() <= 1.5 * crop_side / FPS**2 + 1e-6, f"a jerk of {speed_changes.max():.2f} px a frame"
    assert abs(xs[-1] - target.cx) < CropTracker.SETTLE * crop_side
    settled = int(np.argmax(steps[1:] == 0)) + 1
    assert settled < 90, "not re-centred within 3 s"
    assert np.all(steps[settled:] == 0), "the box moved again after it settled"
    assert not tracker.gliding


def test_steady_box_keeps_a_steadily_moving_face_inside_the_square() -> None:
    """A head moving across the frame at 0.4 crop sides a second for 3 s: its box never leaves the square."""
    tracker = CropTracker(tracking="steady")
    crop_side = tracker.update(face_at(300, 360), 0.0).side
    for i in range(1, 90):
        cx = 300 + 0.4 * crop_side * i / FPS
        box = tracker.update(face_at(cx, 360), i / FPS)
        assert abs(cx - box.cx) + SIDE / 2 <= box.side / 2, f"frame {i}: the face's box left the square"


def test_no_face_holds_the_box_also_mid_glide() -> None:
    tracker = CropTracker(tracking="steady")
    assert tracker.update(None, 0.0) is None  # nothing before the first face
    crop_side = tracker.update(face_at(640, 360), 0.0).side
    for i in range(1, 10):
        gliding = tracker.update(face_at(640 + 0.3 * crop_side, 360), i / FPS)
    assert tracker.gliding
    for i in range(10, 40):
        assert box_tuple(tracker.update(None, i / FPS)) == box_tuple(gliding)


def test_hotkeys_zoom_move_and_reset_apply_to_the_held_box() -> None:
    tracker, controls = CropTracker(tracking="steady"), Controls()
    held = tracker.update(face_at(640, 360), 0.0)
    apply_tracking_key("w", controls, tracker)
    zoomed = tracker.update(face_at(650, 360), 1 / FPS)  # inside the dead zone: the box stays, the zoom applies
    assert zoomed.side == pytest.approx(held.side / CropTracker.ZOOM_STEP) and zoomed.cx == held.cx
    apply_tracking_key("r", controls, tracker)
    apply_tracking_key("s", controls, tracker)
    assert tracker.update(None, 2 / FPS).side == pytest.approx(held.side * CropTracker.ZOOM_STEP)
    apply_tracking_key("r", controls, tracker)
    before = tracker.update(None, 3 / FPS)
    apply_tracking_key("right", controls, tracker)
    moved = tracker.update(face_at(645, 360), 4 / FPS)
    assert moved.cx == pytest.approx(before.cx + CropTracker.MOVE_STEP * before.side) and moved.side == before.side
    apply_tracking_key("r", controls, tracker)
    assert box_tuple(tracker.update(None, 5 / FPS)) == box_tuple(held)


def test_reset_frames_the_next_face_at_once() -> None:
    tracker = CropTracker(tracking="steady")
    tracker.update(face_at(300, 360), 0.0)
    tracker.reset()
    box = tracker.update(face_at(900, 360), 1 / FPS)
    assert box_tuple(box) == box_tuple(face_crop_box(face_at(900, 360)))


def test_an_unknown_tracking_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="tracking: expected one of (follow, steady|steady, follow), got 'still'"):
        CropTracker(tracking="still")


def test_crop_figures_count_the_box_motion_the_face_outside_and_the_head_motion_kept() -> None:
    """Made tracks (no detector): a still box with the face moving 10 square px right keeps all of the head's motion;
    a box that moves with the face keeps none of it (the square shows a still face) and its steps are counted; a face
    box reaching past the square's edge is counted in that frame."""
    from fomm_live.benchmarks.inbetween_crop import Track, crop_figures
    from fomm_live.live.face import CropBox

    size, side = 256, 400.0
    neutral = np.random.default_rng(1).uniform(0.3, 0.7, (478, 3))
    shifted = neutral.copy()
    shifted[:, 0] += 10 / size
    still = Track([CropBox(640, 360, side)] * 2, [face_at(640, 360), face_at(640 + 10 * side / size, 360)])
    figures = crop_figures(still, [neutral, shifted], size)
    assert figures["landmarks_from_neutral_px"]["mean"] == pytest.approx(5.0)  # mean over the two frames: 0 and 10
    assert figures["head_motion_kept"] == pytest.approx(1.0)
    assert figures["box_step_px"]["max"] == 0 and figures["face_outside_square_frames"] == 0
    following = Track([CropBox(640, 360, side), CropBox(640 + 10 * side / size, 360, side)], still.faces)
    figures = crop_figures(following, [neutral, neutral], size)
    assert figures["head_motion_kept"] == pytest.approx(0.0)
    assert figures["box_step_px"]["max"] == pytest.approx(10 * side / size)
    edge = Track([CropBox(640, 360, side)], [face_at(640 + 0.3 * side, 360)])  # its right edge 0.05 side outside
    assert crop_figures(edge, [neutral], size)["face_outside_square_frames"] == 1


def test_a_head_that_moves_and_stays_keeps_its_place_in_the_steady_square_but_drifts_back_in_follow() -> None:
    """The face steps 6% of the crop's side right and stays 3 s: in the steady square it stays 6% right of centre (the
    avatar, driven by the face's motion in the square, moves and stays); the follow tracker's box catches up, so the
    face drifts back to under 1% from centre (the avatar moves and slides back)."""
    offsets = {}
    for tracking in ("steady", "follow"):
        tracker = CropTracker(tracking=tracking)
        crop_side = tracker.update(face_at(640, 360), 0.0).side
        for i in range(1, 90):
            box = tracker.update(face_at(640 + 0.06 * crop_side, 360), i / FPS)
        offsets[tracking] = (640 + 0.06 * crop_side - box.cx) / box.side
    assert offsets["steady"] == pytest.approx(0.06)
    assert abs(offsets["follow"]) < 0.01
