"""Photo framing: where the output frame lies in the photo, the framed photo's pixels, and photo framing in the
model stage (held frames, avatars of different sizes, the label on the final frame)."""

from __future__ import annotations

import numpy as np
import pytest

from fomm_live.live.avatars import Avatar, prepare_avatars
from fomm_live.live.backends import Backend, Rendered, WarpMap
from fomm_live.live.face import CropBox, centre_crop_box, crop_square
from fomm_live.live.framing.layout import FACE_CENTRE_Y, FACE_SHARE, frame_rect, make_framing, render_framed
from fomm_live.live.media import cv2


def test_face_sits_in_the_upper_third_at_a_third_of_the_height_when_the_photo_allows() -> None:
    # A 4000 x 3000 photo with a 300 px face at (2100, 1400): room for the ideal framing.
    rect = frame_rect((3000, 4000), (1280, 720), (2100.0, 1400.0, 300.0))
    assert rect.height == pytest.approx(300 / FACE_SHARE)
    assert rect.width / rect.height == pytest.approx(1280 / 720)
    assert (1400 - rect.y0) / rect.height == pytest.approx(FACE_CENTRE_Y)
    assert rect.x0 + rect.width / 2 == pytest.approx(2100)


def test_a_tight_photo_is_used_as_it_is_covering_the_output_without_bars() -> None:
    # The face fills most of a 600 x 500 photo: the largest 16:9 rectangle inside it, shifted to stay inside.
    rect = frame_rect((500, 600), (1280, 720), (300.0, 120.0, 400.0))
    assert rect.width == pytest.approx(600) and rect.height == pytest.approx(600 * 720 / 1280)
    assert rect.x0 >= 0 and rect.y0 == 0 and rect.x0 + rect.width <= 600 + 1e-9
    # A portrait photo into a landscape frame: full width, cut top and bottom.
    rect = frame_rect((1200, 800), (640, 480), (400.0, 500.0, 100.0))
    assert rect.y0 >= 0 and rect.y0 + rect.height <= 1200 + 1e-9 and rect.x0 >= 0 and rect.x0 + rect.width <= 800


def test_without_a_face_the_centred_rectangle_is_shown() -> None:
    rect = frame_rect((480, 640), (1280, 720), None)
    assert rect.width == 640 and rect.height == pytest.approx(360)
    assert rect.x0 == 0 and rect.y0 == pytest.approx(60)


def test_framed_photo_at_scale_one_is_the_photo_itself() -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    framing = make_framing((200, 300), (160, 90), CropBox(150, 100, 80), (150.0, 100.0, 30.0))
    assert framing.scale == pytest.approx(1)
    x0, y0 = round(framing.photo_rect.x0), round(framing.photo_rect.y0)
    np.testing.assert_array_equal(render_framed(photo, framing), photo[y0:y0 + 90, x0:x0 + 160])


def test_shrinking_a_large_photo_averages_like_opencv_area_resize() -> None:
    rng = np.random.default_rng(1)
    photo = cv2().GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (5, 5), 2)
    framing = make_framing((720, 1280), (320, 180), centre_crop_box(720, 1280), None)
    want = cv2().resize(photo, (320, 180), interpolation=cv2().INTER_AREA).astype(int)
    got = render_framed(photo, framing).astype(int)
    assert np.abs(got - want).max() <= 1


def test_the_face_square_maps_to_where_the_photo_shows_it() -> None:
    # The square's pixels cut from the framed photo match the crop made from the photo (up to resampling).
    rng = np.random.default_rng(2)
    photo = cv2().GaussianBlur(rng.integers(0, 256, (900, 1200, 3), dtype=np.uint8), (0, 0), 6)
    box = CropBox(610.0, 420.0, 300.0)
    framing = make_framing((900, 1200), (1280, 720), box, (610.0, 450.0, 150.0))
    framed = render_framed(photo, framing)
    bx, by, side = framing.box
    assert 0 <= bx and bx + side <= 1280 and 0 <= by and by + side <= 720
    from_framed = crop_square(framed, CropBox(bx + side / 2, by + side / 2, side), 64).astype(int)
    from_photo = crop_square(photo, box, 64).astype(int)
    assert np.abs(from_framed - from_photo).mean() < 1.5


def _stage(avatars: list[Avatar], backend, *, label: bool = False, size: tuple[int, int] = (320, 180),
           detail: bool = True):
    from fomm_live.live.loop.calibration import AutoCalibrator
    from fomm_live.live.loop.hotkeys import Controls
    from fomm_live.live.loop.stages import ModelStage
    from fomm_live.live.stats import PipelineStats

    return ModelStage(backend=backend, avatars=avatars, output_size=size, crop_mode="none", smoother=None,
                      calibrator=AutoCalibrator(), controls=Controls(), label=label, preview=False,
                      stats=PipelineStats(), camera_lost=lambda: False, framing="photo", detail=detail)


class ShiftBackend(Backend):
    """A stand-in backend: ``render`` returns the source crop rolled by ``motion`` pixels (a known motion)."""

    name = "shift"
    size = 64
    calibrated = True

    def set_source(self, image: np.ndarray) -> None:
        self.source = image

    def detect(self, frame: np.ndarray) -> int:
        return 4

    def calibrate(self, motion: int) -> None:
        pass

    def render(self, motion: int, *, detail: bool = False) -> Rendered:
        return Rendered(np.roll(self.source, motion, axis=1))


def _photo(seed: int, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2().GaussianBlur(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), (0, 0), 2)


def test_avatars_of_different_sizes_each_hold_their_own_framed_photo_until_animated() -> None:
    photos = [("a", _photo(0, (300, 400))), ("b", _photo(1, (1000, 700)))]
    avatars = prepare_avatars(photos, 64, None, crop="none")
    stage = _stage(avatars, ShiftBackend())
    first = stage.held_frame()
    assert first.shape == (180, 320, 3)
    np.testing.assert_array_equal(first, stage.photo.framed)
    stage.select_avatar(1)
    second = stage.held_frame()
    assert second.shape == (180, 320, 3) and not np.array_equal(first, second)
    stage.select_avatar(0)
    np.testing.assert_array_equal(stage.held_frame(), first)  # the frame changes only with the avatar


def test_crop_none_with_photo_framing_animates_the_centre_square() -> None:
    photo = _photo(3, (300, 500))
    avatar = prepare_avatars([("a", photo)], 64, None, crop="none")[0]
    assert avatar.box == centre_crop_box(300, 500)
    stage = _stage([avatar], ShiftBackend())
    bx, by, side = stage.photo.framing.box
    scale = stage.photo.framing.scale
    assert side == pytest.approx(300 * scale)
    assert bx + side / 2 == pytest.approx(160) and by + side / 2 == pytest.approx(90)


def test_the_label_is_drawn_on_the_final_photo_frame() -> None:
    from fomm_live.live.capture.sources import CapturedFrame
    from fomm_live.live.loop.stages import TrackedFrame

    avatars = prepare_avatars([("a", _photo(4, (360, 640)))], 64, None, crop="none")
    plain, labelled = _stage(avatars, ShiftBackend()), _stage(avatars, ShiftBackend(), label=True)
    tracked = TrackedFrame(CapturedFrame(np.zeros((64, 64, 3), np.uint8), 0, 0.0, 0.0),
                           crop=np.zeros((64, 64, 3), np.uint8))
    out_plain, info = plain(tracked)
    out_label, _ = labelled(tracked)
    assert info.animated and out_plain.shape == (180, 320, 3)
    differs = np.any(out_plain != out_label, axis=2)
    ys, xs = np.nonzero(differs)
    assert differs.any() and ys.min() > 180 * 0.8 and xs.min() > 320 * 0.5  # the bottom-right corner only
    assert not np.array_equal(out_plain, plain.photo.framed)  # the face moved: the paste shows


class LayeredShiftBackend(ShiftBackend):
    """A stand-in warping backend: ``render(..., detail=True)`` hands over the shifted square with its backward
    map (each pixel from ``motion`` pixels to its left, the identity along the square's border) and nothing
    painted."""

    motion_kind = "warp"

    def render(self, motion: int, *, detail: bool = False) -> Rendered:
        frame = super().render(motion).frame
        if not detail:
            return Rendered(frame)
        n = self.size
        grid = np.arange(n, dtype=np.float32)
        source_map = np.stack(np.meshgrid(grid, grid), axis=-1)
        source_map[8:-8, 8:-8, 0] -= motion
        return Rendered(frame, warp=WarpMap(source_map=source_map, painted=np.zeros((n, n), bool)))


def test_a_warping_backend_moves_the_full_resolution_photo_and_no_detail_upscales_its_square() -> None:
    from fomm_live.live.capture.sources import CapturedFrame
    from fomm_live.live.framing.pasteback import PasteBack
    from fomm_live.live.framing.pasteback_map import MapPasteBack
    from fomm_live.live.loop.stages import TrackedFrame

    photo = _photo(5, (720, 1280))  # 4x the output: the framed photo has detail the 64-pixel square has not
    avatars = prepare_avatars([("a", photo)], 64, None, crop="none")
    tracked = TrackedFrame(CapturedFrame(np.zeros((64, 64, 3), np.uint8), 0, 0.0, 0.0),
                           crop=np.zeros((64, 64, 3), np.uint8))
    size = (256, 144)  # the 64-pixel square is 144 output pixels: a 4-pixel shift is 9 whole output pixels
    moving = _stage(avatars, LayeredShiftBackend(), size=size)
    plain = _stage(avatars, LayeredShiftBackend(), size=size, detail=False)
    assert isinstance(moving.photo.paster, MapPasteBack) and isinstance(plain.photo.paster, PasteBack)
    out, info = moving(tracked)
    assert info.animated
    framed = moving.photo.framed
    bx, by, side = moving.photo.framing.box
    shift = 4 * side / 64  # output pixels
    # Inside the moved part, the output is the framed photo itself moved by the shift (not an upscaled square).
    x0, x1, y0, y1 = int(bx + side / 4), int(bx + 3 * side / 4), int(by + side / 4), int(by + 3 * side / 4)
    assert shift == int(shift), "choose sizes that make the shift whole output pixels"
    np.testing.assert_array_equal(out[y0:y1, x0:x1], framed[y0:y1, x0 - int(shift):x1 - int(shift)])
    upscaled, _ = plain(tracked)
    assert np.abs(upscaled[y0:y1, x0:x1].astype(int) - out[y0:y1, x0:x1].astype(int)).mean() > 1


class SourceLog(ShiftBackend):
    """The shift stand-in, noting every source it is given (by the crop's mean level)."""

    def __init__(self, *, first_source_slow: bool) -> None:
        self.first_source_slow = first_source_slow
        self.sources: list[int] = []

    def set_source(self, image: np.ndarray) -> None:
        super().set_source(image)
        self.sources.append(int(round(float(image.mean()))))


@pytest.mark.parametrize("slow", [True, False])
def test_a_backend_slow_on_new_photos_gets_every_avatar_before_the_first_frame(slow: bool) -> None:
    avatars = [Avatar(f"p{level}", np.full((64, 64, 3), level, np.uint8), None) for level in (10, 20, 30)]
    backend = SourceLog(first_source_slow=slow)
    _stage(avatars, backend)
    # slow (int8): the others first, then the first one, which the run starts with; else the first one only
    assert backend.sources == ([20, 30, 10] if slow else [10])
