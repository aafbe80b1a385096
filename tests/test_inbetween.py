"""The in-between renderer (``live.inbetween``): the keyframe at its own landmarks, a driver moving by a similarity,
the strengths, and the frame outside the model's square.

The avatar's landmarks are found once by the face mesh on the bundled portrait; the driver's landmarks are built
from them directly (the neutral pose is the avatar's own, then moved by known transforms), so what each in-between
should show is known exactly. Keyframes are the portrait framed at 1280 x 720 with the model's square at a
fractional placement, as photo framing puts it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fomm_live.live.errors import UserError
from fomm_live.live.inbetween import Inbetweener
from fomm_live.live.inbetween.fade import FADE_AGREE
from fomm_live.live.landmarks.points import FACE_OVAL
from fomm_live.live.media import cv2, read_image
from fomm_live.live.paths import DEFAULT_PORTRAIT
from tests.helpers.inbetweens import FACE_SQUARE, portrait_square

SIZE = 256
OUTPUT = (1280, 720)
PLACEMENT = (400.3, 40.7, 480.0)  # the model's square in the output: x0, y0, side (edge coordinates)


@pytest.fixture(scope="module")
def avatar() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the model's square, its 478 x 3 normalised landmarks, a 1280 x 720 keyframe showing that square at
    PLACEMENT)."""
    cv = cv2()
    photo = read_image(DEFAULT_PORTRAIT)
    cx, cy, side = FACE_SQUARE
    square, points = portrait_square(SIZE)
    # The keyframe: the photo scaled so that the face square lands on PLACEMENT (square pixel j at output
    # x0 + (j + 0.5) * side / SIZE - 0.5), the rest of the output the photo around it.
    x0, y0, out_side = PLACEMENT
    s = out_side / side
    matrix = np.array([[s, 0.0, x0 - (cx - side / 2) * s + 0.5 * s - 0.5],
                       [0.0, s, y0 - (cy - side / 2) * s + 0.5 * s - 0.5]])
    frame = cv.warpAffine(photo, matrix, OUTPUT, flags=cv.INTER_LINEAR, borderMode=cv.BORDER_REFLECT)
    return square, points, frame


def similarity(points: np.ndarray, *, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """``points`` (478 x 3 normalised) turned by ``degrees`` in the image plane and scaled about their centre, then
    shifted (normalised units); depth scaled with them, as a face coming closer."""
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # counter-clockwise on screen (y down)
    centre = points[:, :2].mean(0)
    moved = points.astype(np.float64).copy()
    moved[:, :2] = (points[:, :2] - centre) @ rot.T * scale + centre + np.asarray(shift)
    moved[:, 2] *= scale
    return moved.astype(np.float32)


def ready(avatar, *, head: float = 1.0, expression: float = 1.0) -> Inbetweener:
    square, points, frame = avatar
    renderer = Inbetweener(size=SIZE)
    renderer.set_source(square, points=points)
    renderer.calibrate(points)
    renderer.set_strengths(head, expression)
    renderer.keyframe(frame, points, PLACEMENT)
    return renderer


def test_render_at_the_keyframes_own_landmarks_is_the_keyframe_exactly(avatar) -> None:
    renderer = ready(avatar)
    _, points, frame = avatar
    out = renderer.render(points)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.array_equal(out, frame)
    assert out is not frame  # a new array: the caller may draw on it


def test_a_driver_moving_by_a_similarity_moves_the_face_by_that_similarity(avatar) -> None:
    """Every face triangle moves by the same similarity, so inside the face the in-between is the keyframe moved by
    that similarity; only the two resamplings (the map enlarged from every other output pixel, and the frame at
    1/32 pixel fixed point in cv2.remap) differ. Tolerance: mean absolute difference under 0.25 level, 99th
    percentile at most 1 level (of 255); measured 0.004 and 0 (0.01 and 0 with the map at the square's pixels)."""
    cv = cv2()
    _, points, frame = avatar
    renderer = ready(avatar)
    driven = similarity(points, degrees=4.0, scale=1.04, shift=(0.012, -0.008))
    out = renderer.render(driven)
    # The expected motion in square pixels: the avatar's landmarks at the keyframe and now (the avatar is the
    # driver's own face here, so the relative motion is the driver's motion times SIZE: S = SIZE * D).
    before, after = points[:, :2].astype(np.float64) * SIZE, driven[:, :2].astype(np.float64) * SIZE
    a, residual = np.linalg.lstsq(np.column_stack([before, np.ones(len(before))]), after, rcond=None)[:2]
    assert residual.max() < 1e-6  # the driver's motion is a similarity indeed
    # Square pixel p -> output pixel o = x0 + (p + 0.5) k - 0.5 (k = side / SIZE); the similarity in output pixels:
    x0, y0, side = PLACEMENT
    k = side / SIZE
    to_out = np.array([[k, 0.0, x0 + 0.5 * k - 0.5], [0.0, k, y0 + 0.5 * k - 0.5], [0.0, 0.0, 1.0]])
    motion = np.vstack([a.T, [0.0, 0.0, 1.0]])
    expected_matrix = (to_out @ motion @ np.linalg.inv(to_out))[:2]
    expected = cv.warpAffine(frame, expected_matrix, OUTPUT, flags=cv.INTER_LINEAR, borderMode=cv.BORDER_REFLECT)
    # Inside the face: the moved face oval, shrunk by a tenth about its centre (its edge meets the head ring, whose
    # triangles follow the oval only partly).
    oval = (after[list(FACE_OVAL)] - 0.5) * k + [x0 + 0.5 * k, y0 + 0.5 * k]
    oval = oval.mean(0) + 0.9 * (oval - oval.mean(0))
    inside = np.zeros(frame.shape[:2], np.uint8)
    cv.fillPoly(inside, [np.round(oval).astype(np.int32)], 1)
    diff = np.abs(out.astype(np.int16) - expected.astype(np.int16))[inside.astype(bool)]
    held = np.abs(frame.astype(np.int16) - expected.astype(np.int16))[inside.astype(bool)]
    assert held.mean() > 10, "the motion is too small to tell a moved face from a held one"
    assert diff.mean() < 0.25, f"mean {diff.mean():.2f} levels from the keyframe moved by the similarity"
    assert np.percentile(diff, 99) <= 1, f"99th percentile {np.percentile(diff, 99):.1f} levels"


def test_the_frame_outside_the_models_square_is_the_keyframes_own(avatar) -> None:
    _, points, frame = avatar
    out = ready(avatar).render(similarity(points, degrees=3.0, scale=1.0, shift=(0.01, 0.0)))
    x0, y0, side = PLACEMENT
    outside = np.ones(frame.shape[:2], bool)
    outside[int(y0):int(np.ceil(y0 + side)), int(x0):int(np.ceil(x0 + side))] = False
    assert np.array_equal(out[outside], frame[outside])
    assert not np.array_equal(out, frame)


def test_head_strength_zero_holds_the_face_still_under_a_head_motion(avatar) -> None:
    _, points, frame = avatar
    moved = similarity(points, degrees=5.0, scale=1.05, shift=(0.02, 0.01))
    held = ready(avatar, head=0.0).render(moved)
    copied = ready(avatar).render(moved)
    assert np.abs(held.astype(np.int16) - frame).max() <= 1  # float rounding of the fit only
    assert np.abs(copied.astype(np.int16) - frame).mean() > 1.0


def test_render_without_a_keyframe_after_a_reset_and_a_source_without_a_face_say_so(avatar) -> None:
    square, points, _ = avatar
    renderer = Inbetweener(size=SIZE)
    renderer.set_source(square, points=points)
    renderer.calibrate(points)
    with pytest.raises(RuntimeError, match="keyframe"):
        renderer.render(points)
    renderer.keyframe(avatar[2], points, PLACEMENT)
    renderer.reset_calibration()
    assert not renderer.calibrated and not renderer.has_keyframe
    with pytest.raises(RuntimeError, match="keyframe"):
        renderer.render(points)
    blank = Inbetweener(size=SIZE)
    with pytest.raises(UserError, match="no face"):
        blank.set_source(np.full((SIZE, SIZE, 3), 128, np.uint8))
    blank.close()
    blank.close()  # safe twice


def test_the_quality_benchmark_prints_its_three_keys_last_and_beats_holding_on_a_swaying_head(
        tmp_path, capsys) -> None:
    """The benchmark on a short clip of the portrait turning and sliding (a similarity per frame, so the face mesh's
    motion is the true motion): its last line holds the three keys, and the in-betweens beat holding the keyframe."""
    from fomm_live.benchmarks import inbetween as bench
    from tests.helpers.clips import moving_frames, write_clip

    clip = write_clip(tmp_path / "sway.mp4", moving_frames(14, still=2))
    bench.main(["--clip", str(clip), "--every", "4", "--json", str(tmp_path / "figures.json")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    values = dict(pair.split("=") for pair in last.split())
    assert list(values) == ["inbetween_psnr", "held_psnr", "gain_db"]
    inbetween, held, gain = (float(values[k]) for k in ("inbetween_psnr", "held_psnr", "gain_db"))
    assert abs(gain - (inbetween - held)) < 0.011
    assert gain > 1.0, last
    figures = json.loads((tmp_path / "figures.json").read_text(encoding="utf-8"))
    assert sorted(figures["offsets"]) == ["1", "2", "3"]


def test_the_quality_benchmark_start_and_frames_take_that_stretch_of_the_clip(tmp_path, capsys) -> None:
    """A clip of the still portrait brightening by 8 levels a frame: ``start=4, limit=5`` gives 5 squares, each as
    bright as frames 4-8's of the whole clip (so frames 0-3 were left out, not just counted); ``--start`` past the
    end is one line naming it."""
    from fomm_live.benchmarks import inbetween as bench
    from tests.helpers.clips import place, portrait

    still = place(portrait()).astype(np.int16)
    frames = [np.clip(still + 8 * i - 40, 0, 255).astype(np.uint8) for i in range(12)]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2().imwrite(str(folder / f"{i:03d}.png"), cv2().cvtColor(frame, cv2().COLOR_RGB2BGR))
    whole, _, _ = bench.tracked_squares(folder, size=bench.SIZE)
    stretch, _, _ = bench.tracked_squares(folder, size=bench.SIZE, start=4, limit=5)
    assert len(whole) == 12 and len(stretch) == 5
    means = np.array([square.mean() for square in whole])  # about 8 levels apart (the crop moves a little)
    assert [int(np.argmin(np.abs(means - square.mean()))) for square in stretch] == [4, 5, 6, 7, 8]
    with pytest.raises(SystemExit, match="--start 20 is past the clip's end .12 frames."):
        bench.main(["--clip", str(folder), "--start", "20"])
    bench.main(["--clip", str(folder), "--start", "4", "--frames", "7", "--every", "3",
                "--json", str(tmp_path / "figures.json")])
    figures = json.loads((tmp_path / "figures.json").read_text(encoding="utf-8"))
    assert (figures["frames"], figures["start"], sorted(figures["offsets"])) == (7, 4, ["1", "2"])
    assert "7 frames from frame 4" in capsys.readouterr().out


def test_the_quality_benchmark_splits_psnr_into_the_face_hull_and_the_rest_of_the_square(avatar) -> None:
    """A made clip whose frames differ only outside the face mesh's hull (fresh noise there each frame, the face and
    its landmarks the same): inside the hull the in-between and holding are both exact (the 100 dB cap), outside
    both are the noise's PSNR, and the hull's share of the square is the mask's."""
    from fomm_live.benchmarks import inbetween as bench

    square, points, _ = avatar
    face = bench.face_hull(points)
    rng = np.random.default_rng(0)
    squares = []
    for _ in range(6):
        frame = square.copy()
        frame[~face] = rng.integers(0, 256, size=(int((~face).sum()), 3), dtype=np.uint8)
        squares.append(frame)
    result, sheet = bench.measure(squares, [points] * 6, 3, sheet_rows=2)
    inside, outside = result["face_region"], result["outside_face"]
    assert inside["inbetween_psnr"] == inside["held_psnr"] == 100.0, inside
    assert outside["inbetween_psnr"] == outside["held_psnr"] < 20.0, outside
    assert inside["share_of_square"] == pytest.approx(face.mean())
    assert sorted(result["offsets"]) == [1, 2]
    assert all(row["face_inbetween_psnr"] == row["face_held_psnr"] == 100.0 > row["held_psnr"]
               for row in result["offsets"].values())
    assert 0.1 < face.mean() < 0.6
    assert len(sheet) == 2 and all(row.shape == (SIZE, 3 * SIZE, 3) for row in sheet)


@pytest.mark.parametrize(("sheet_by", "frame"), [("mouth", 2), ("eyes", 4)])
def test_the_quality_benchmark_sheet_by_eyes_or_mouth_shows_the_frame_whose_opening_changed_most(
        avatar, sheet_by, frame) -> None:
    """Six frames of the still portrait, each marked in a corner pixel with its index (frame 5 also changed in
    another corner, so that holding does worst there); in the landmarks frame 2 opens the mouth and frame 4 shuts
    both eyes (keyframes 0 and 3). A one-row sheet picked by the mouth shows frame 2, by the eyes frame 4 (its first
    tile is that frame's square)."""
    from fomm_live.benchmarks import inbetween as bench
    from fomm_live.live.landmarks.points import EYES, INNER_LOWER_LIP

    square, points, _ = avatar
    squares, landmarks = [], []
    for index in range(6):
        marked = square.copy()
        marked[-1, -1] = index
        if index == 5:  # the worst holding is frame 5's: a pick by holding would show it
            marked[-8:, :8] = 255 - marked[-8:, :8]
        squares.append(marked)
        landmarks.append(points.copy())
    landmarks[2][list(INNER_LOWER_LIP[1:-1]), 1] += 0.02  # the lower lip down 5 px: the mouth opens
    for _, upper, lower in EYES:
        landmarks[4][list(upper), :2] = landmarks[4][list(lower), :2]  # the upper lids onto the lower: shut
    assert bench.openings(landmarks[2])[1] > bench.openings(points)[1] + 0.05
    assert bench.openings(landmarks[4])[0] == 0.0
    _, sheet = bench.measure(squares, landmarks, 3, sheet_rows=1, sheet_by=sheet_by)
    assert len(sheet) == 1 and sheet[0][-1, SIZE - 1, 0] == frame
    with pytest.raises(ValueError, match="sheet_by"):
        bench.measure(squares, landmarks, 3, sheet_rows=1, sheet_by="nose")


def test_crossfade_blends_the_previous_keyframe_out_over_the_next_renders(avatar) -> None:
    """With ``crossfade=2`` the two renders after a new keyframe blend in the previous keyframe (moved to the same
    geometry: here both keyframes were taken at the landmarks rendered, so no move) at 2/3 then 1/3; the third is the
    new keyframe alone, exactly."""
    cv = cv2()
    square, points, frame = avatar
    renderer = Inbetweener(size=SIZE, crossfade=2)
    renderer.set_source(square, points=points)
    renderer.calibrate(points)
    renderer.keyframe(frame, points, PLACEMENT)
    newer = np.ascontiguousarray(frame[::-1])  # another frame of the same size
    renderer.keyframe(newer, points, PLACEMENT)
    first, second, third = (renderer.render(points) for _ in range(3))
    assert np.array_equal(first, cv.addWeighted(frame, 2 / 3, newer, 1 / 3, 0.0))
    assert np.array_equal(second, cv.addWeighted(frame, 1 / 3, newer, 2 / 3, 0.0))
    assert np.array_equal(third, newer)


def square_moved_12_levels(frame: np.ndarray) -> tuple[slice, slice, np.ndarray]:
    """The square's rows and columns in the output frame (``PLACEMENT``), and a copy of ``frame`` whose square differs
    from it by 12 levels at every pixel (up in the dark half, down in the light)."""
    x0, y0, side = PLACEMENT
    rows, cols = slice(int(y0), int(np.ceil(y0 + side))), slice(int(x0), int(np.ceil(x0 + side)))
    newer = frame.copy()
    inside = frame[rows, cols]
    newer[rows, cols] = np.where(inside < 128, inside + 12, inside - 12)
    return rows, cols, newer


def test_crossfade_with_the_same_photo_around_the_square_blends_the_two_keyframes_moved(avatar) -> None:
    """Photo framing: two keyframes that differ only inside the model's square (here every pixel of the second's
    square 12 levels from the first's, so that the fade's agreement is the same everywhere: exp(-(12/40)^2) =
    0.914), taken at the same landmarks, then a driver moving by a similarity. The cross-fade warps the blend of the
    two squares once; what it should show is the blend of each keyframe's own in-between (a fresh renderer per
    keyframe, no cross-fade), at 2/3 then 1/3 of the previous one times that agreement. Tolerance: mean absolute
    difference under 0.25 level, 99.9th percentile at most 2 levels (the blend is rounded to 8 bits before it is
    resampled; measured 0.04 and 1); outside the square, the keyframe's own pixels exactly."""
    cv = cv2()
    square, points, frame = avatar
    rows, cols, newer = square_moved_12_levels(frame)
    agree = float(np.exp(-(12 / FADE_AGREE) ** 2))
    driven = similarity(points, degrees=3.0, scale=1.03, shift=(0.01, -0.006))

    def alone(keyframe: np.ndarray) -> np.ndarray:
        renderer = Inbetweener(size=SIZE)
        renderer.set_source(square, points=points)
        renderer.calibrate(points)
        renderer.keyframe(keyframe, points, PLACEMENT)
        return renderer.render(driven)

    old_moved, new_moved = alone(frame), alone(newer)
    renderer = Inbetweener(size=SIZE, crossfade=2)
    renderer.set_source(square, points=points)
    renderer.calibrate(points)
    renderer.keyframe(frame, points, PLACEMENT)
    renderer.keyframe(newer, points, PLACEMENT)
    for share in (2 / 3 * agree, 1 / 3 * agree):
        out = renderer.render(driven)
        expected = cv.addWeighted(old_moved, share, new_moved, 1 - share, 0.0)
        diff = np.abs(out.astype(np.int16) - expected.astype(np.int16))
        assert diff.mean() < 0.25 and np.percentile(diff, 99.9) <= 2, (share, diff.mean(), np.percentile(diff, 99.9))
        outside = np.ones(frame.shape[:2], bool)
        outside[rows, cols] = False
        assert np.array_equal(out[outside], newer[outside])
    np.testing.assert_array_equal(renderer.render(driven), new_moved)  # the fade is over: the new keyframe alone


def test_crossfade_shows_the_new_keyframe_alone_where_the_previous_one_disagrees_with_it(avatar) -> None:
    """Two keyframes at the same landmarks whose squares differ by 12 levels everywhere but in a patch below the face,
    where they differ by 100 (a collar that moved between them, far past FADE_AGREE). Where they agree the first
    faded render blends them as the fade does (2/3 x 0.914 of the previous keyframe); inside the patch (8 square
    pixels clear of its edge, past the smoothing) it is the new keyframe within 1 level, where an even blend would
    show two thirds of the old collar over the new."""
    square, points, frame = avatar
    rows, cols, newer = square_moved_12_levels(frame)
    scale = PLACEMENT[2] / SIZE
    top, bottom, left, right = (round(v * scale) for v in (190, 250, 40, 200))  # the patch, region pixels
    was = frame[rows, cols][top:bottom, left:right]
    newer[rows, cols][top:bottom, left:right] = np.where(was < 128, was + 100, was - 100)
    renderer = Inbetweener(size=SIZE, crossfade=2)
    renderer.set_source(square, points=points)
    renderer.calibrate(points)
    renderer.keyframe(frame, points, PLACEMENT)
    renderer.keyframe(newer, points, PLACEMENT)
    out = renderer.render(points)[rows, cols].astype(np.int16)
    clear = round(8 * scale)
    got = out[top + clear:bottom - clear, left + clear:right - clear]
    want = newer[rows, cols][top + clear:bottom - clear, left + clear:right - clear]
    assert np.abs(got - want).max() <= 1, np.abs(got - want).max()
    share = 2 / 3 * np.exp(-(12 / FADE_AGREE) ** 2)
    away = slice(0, round(150 * scale))  # the top of the square, far from the patch
    expected = share * frame[rows, cols][away] + (1 - share) * newer[rows, cols][away]
    assert np.abs(out[away] - expected).max() <= 1


def test_a_face_that_moved_less_than_the_still_threshold_shows_the_keyframe_itself(avatar) -> None:
    """Face-mesh noise of a still face (0.2 px at 256, under STILL's 0.3) leaves the keyframe as it is, not
    resampled; a 2 px move does not."""
    _, points, frame = avatar
    renderer = ready(avatar)
    noise = np.random.default_rng(0).uniform(-0.2, 0.2, points.shape).astype(np.float32) / SIZE
    assert np.array_equal(renderer.render(points + noise), frame)
    moved = points.copy()
    moved[:, 0] += 2.0 / SIZE
    assert not np.array_equal(renderer.render(moved), frame)


def test_a_mouth_opening_past_the_keyframes_gets_its_new_gap_painted_dark(avatar) -> None:
    """The driver's jaw drops (the demo clip's mouth opening) after a keyframe of the photo's own mouth (slightly open,
    teeth showing: 0.15 of the mouth's width, 0.53 now): inside the moved inner-lip polygon the in-between is darkened
    towards the cavity colour by the new share of the gap (0.73), where the keyframe there showed the lips and teeth
    (much brighter); measured 53 levels from the cavity colour against 167 for the keyframe."""
    from fomm_live.live.democlip import open_mouth
    from fomm_live.live.landmarks.mouth import THROAT
    from fomm_live.live.landmarks.points import INNER_LIP_POLYGON

    cv = cv2()
    _, points, frame = avatar
    opened = open_mouth(points, 1.0).astype(np.float32)
    out = ready(avatar).render(opened)
    x0, y0, side = PLACEMENT
    k = side / SIZE
    polygon = (opened[list(INNER_LIP_POLYGON), :2].astype(np.float64) * SIZE + 0.5) * k + [x0 - 0.5, y0 - 0.5]
    centre = polygon.mean(0)
    inner = centre + 0.6 * (polygon - centre)  # well inside the gap, away from its soft edge
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv.fillPoly(mask, [np.round(inner).astype(np.int32)], 1)
    inside = mask.astype(bool)
    assert inside.sum() > 100, "the opening is too small to measure"
    painted = np.abs(out[inside].astype(np.float32) - THROAT).mean()
    before = np.abs(frame[inside].astype(np.float32) - THROAT).mean()
    assert before > 60 and painted < 0.45 * before, (painted, before)


def test_the_painted_share_of_a_mouth_gap_is_the_share_the_keyframe_had_no_pixels_for() -> None:
    """A keyframe with the mouth closed: the whole new gap darkens (eased in up to MOUTH_NEW_GAP_FULL); half as open
    at the keyframe: half; as open or more: nothing."""
    from fomm_live.live.inbetween.uncovered import MOUTH_NEW_GAP_FULL, gap_amount

    assert gap_amount(0.3, 0.0) == pytest.approx(1.0)
    assert gap_amount(MOUTH_NEW_GAP_FULL / 2, 0.0) == pytest.approx(0.5)
    assert gap_amount(0.4, 0.2) == pytest.approx(0.5)
    assert gap_amount(0.2, 0.2) == 0.0 and gap_amount(0.1, 0.3) == 0.0
