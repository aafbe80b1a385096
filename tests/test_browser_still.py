"""Where the browser output looks for what changed (``FrameInfo.still_outside``): photo framing's compositor says
that its frames are the framed photo outside the paste-back's region, and the browser output then compares only
inside the two frames' regions. Exactness is what these prove: every changed pixel is inside the region, for each
paste-back and in the real live loop, and the output's copy of the frame equals every frame sent (a change the
region missed would stay out of it).
"""

from __future__ import annotations

import numpy as np
import pytest

from fomm_live.live.avatars import Avatar
from fomm_live.live.backends import Backend, MotionField, Rendered, WarpMap
from fomm_live.live.face import CropBox
from fomm_live.live.framing.compositor import PhotoCompositor, make_compositor
from fomm_live.live.output.browser import BrowserSink
from fomm_live.live.output.changed import Rect, changed_rect
from fomm_live.live.output.sinks import FrameInfo
from tests.helpers.clips import moving_frames, write_clip

OUTPUT = (320, 180)


class Declared(Backend):
    """A stand-in backend that only declares its fields (the compositor reads nothing else)."""

    def __init__(self, *, motion_kind: str) -> None:
        self.motion_kind = motion_kind
        self.device = "cpu"
        self.composes_on_device = False


def avatar(n: int = 64) -> Avatar:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    crop = np.ascontiguousarray(photo[40:40 + n, 120:120 + n])
    return Avatar(name="a", crop=crop, photo=photo, box=CropBox(152.0, 72.0, 64.0), face=None, points=None)


def render(kind: str, n: int, rng: np.random.Generator) -> Rendered:
    square = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
    if kind in ("field", "tensor"):
        grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, 16, dtype=np.float32),) * 2), axis=-1)
        deformation = grid + rng.normal(0, 0.05, grid.shape).astype(np.float32)
        return Rendered(square, MotionField(deformation, rng.uniform(0, 1, (16, 16)).astype(np.float32)))
    if kind == "map":
        ys, xs = np.mgrid[0:n, 0:n].astype(np.float32)
        source = np.stack([xs, ys], axis=-1) + rng.normal(0, 2, (n, n, 2)).astype(np.float32)
        return Rendered(square, warp=WarpMap(source, rng.uniform(0, 1, (n, n)) > 0.9))
    return Rendered(square)


def outside(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.ones(frame.shape[:2], bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = False
    return mask


@pytest.mark.parametrize(("kind", "motion_kind"), [("plain", "none"), ("field", "field"), ("map", "warp"),
                                                   ("tensor", "field")])
def test_each_paste_back_changes_only_what_its_region_holds(kind: str, motion_kind: str) -> None:
    if kind == "tensor":  # the device paste-back, run on the CPU
        compositor = PhotoCompositor(avatars=[avatar()], output_size=OUTPUT, kind="tensor", device="cpu")
    else:
        compositor = make_compositor(framing="photo", avatars=[avatar()], output_size=OUTPUT,
                                     backend=Declared(motion_kind=motion_kind), detail=True)
    compositor.select(0)
    assert isinstance(compositor, PhotoCompositor) and compositor.kind == kind
    background, box = compositor.still_outside()
    framed = compositor.unanimated()
    assert background == id(framed)
    rng = np.random.default_rng(3)
    changed = 0
    for _ in range(4):
        frame = compositor.paste(render(kind, 64, rng))
        differs = (frame != framed).any(axis=2)
        where = np.argwhere(differs & outside(frame, box))
        assert not where.size, f"{kind}: pixels changed outside {box}, the first at (y, x) {where[0].tolist()}"
        changed += int(differs.sum())
    assert changed > 0, "no paste changed anything: the test would prove nothing"
    assert (box[2] - box[0]) * (box[3] - box[1]) < 0.5 * OUTPUT[0] * OUTPUT[1]


@pytest.mark.parametrize("width", [320, 317])  # 8-byte words, and byte by byte
def test_changed_rect_within_a_box_is_the_same_rectangle(width: int) -> None:
    rng = np.random.default_rng(width)
    for _ in range(200):
        old = rng.integers(0, 256, (96, width, 3), dtype=np.uint8)
        new = old.copy()
        x0, y0 = int(rng.integers(0, width - 2)), int(rng.integers(0, 94))
        x1, y1 = int(rng.integers(x0 + 1, width + 1)), int(rng.integers(y0 + 1, 97))
        for _ in range(int(rng.integers(0, 4))):  # 0 to 3 changed pixels inside the box
            y, x = int(rng.integers(y0, y1)), int(rng.integers(x0, x1))
            new[y, x, int(rng.integers(0, 3))] ^= 1 << int(rng.integers(0, 8))
        within = Rect(x0, y0, x1 - x0, y1 - y0)
        assert changed_rect(new, old, within=within) == changed_rect(new, old), (within, changed_rect(new, old))


def feed(sink: BrowserSink, frames: list[np.ndarray], boxes: list[tuple[int, int, int, int] | None]) -> list[bool]:
    """Each frame sent with its box (background 1), the output's copy compared with it after each."""
    sink.viewers = 1  # as if a viewer watched: send() keeps its copy (no connection needed for that)
    kept = []
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        sink.send(frame, FrameInfo(i, 0.0, still_outside=None if box is None else (1, box)))
        expected = frame[:, ::-1] if sink.mirror else frame
        kept.append(bool(np.array_equal(sink._kept, expected)))  # noqa: SLF001 - the copy the pictures come from
    return kept


def squares(n: int) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    """Frames of a still background with a square of noise moving inside boxes that move too."""
    rng = np.random.default_rng(5)
    background = rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)
    frames, boxes = [], []
    for i in range(n):
        x0, y0 = 40 + 13 * i, 30 + 7 * i
        frame = background.copy()
        frame[y0 + 5:y0 + 45, x0 + 3:x0 + 50] = rng.integers(0, 256, (40, 47, 3), dtype=np.uint8)
        frames.append(frame)
        boxes.append((x0, y0, x0 + 60, y0 + 50))
    return frames, boxes


@pytest.mark.parametrize("mirror", [False, True])
def test_the_outputs_copy_equals_every_frame_when_it_looks_only_inside_the_boxes(mirror: bool) -> None:
    frames, boxes = squares(8)
    sink = BrowserSink(width=320, height=180, fps=30, port=0, mirror=mirror)
    try:
        assert all(feed(sink, frames, boxes))
    finally:
        sink.close()


def test_a_box_that_lies_is_believed_so_the_search_is_only_inside_the_boxes() -> None:
    # A stand-in for a compositor that breaks its word: the changed square is outside the boxes given. The copy
    # misses it (the search was limited), unless the output searches everywhere (the benchmarks' "before").
    frames, _ = squares(3)
    lying = [(0, 0, 16, 16)] * 3
    believed = BrowserSink(width=320, height=180, fps=30, port=0)
    everywhere = BrowserSink(width=320, height=180, fps=30, port=0, search_everywhere=True)
    try:
        assert feed(believed, frames, lying) == [True, False, False]
        assert all(feed(everywhere, frames, lying))
    finally:
        believed.close()
        everywhere.close()


def test_the_live_loops_frames_change_only_inside_their_boxes(tmp_path) -> None:
    """The landmark backend, photo framing, the label on: consecutive frames of the same background differ only
    inside their two boxes, and most frames carry a box."""
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.landmarks import LandmarkBackend
    from fomm_live.live.loop.pipeline import LivePipeline, prepare_avatars
    from fomm_live.live.options import FrameOptions, PipelineOptions
    from fomm_live.live.wiring import load_sources

    clip = write_clip(tmp_path / "driving.mp4", moving_frames(30, still=8))
    got: list[tuple[np.ndarray, FrameInfo]] = []

    class Keep:
        name = "keep"

        def send(self, frame: np.ndarray, info: FrameInfo) -> None:
            got.append((frame.copy(), info))

        def close(self) -> None:
            pass

    with FaceDetector() as detector, LandmarkBackend(tracking=True) as backend:
        avatars = prepare_avatars(load_sources(None), backend.size, detector)
        LivePipeline(OpenCVSource(str(clip)), backend, avatars, [Keep()], detector=detector,
                     options=PipelineOptions(frame=FrameOptions(size=(640, 360), framing="photo"),
                                             pipelining=False)).run()
    pairs = 0
    for (old, before), (new, after) in zip(got, got[1:], strict=False):
        if before.still_outside is None or after.still_outside is None or before.still_outside[0] != \
                after.still_outside[0]:
            continue
        pairs += 1
        mask = outside(new, before.still_outside[1]) & outside(new, after.still_outside[1])
        where = np.argwhere((new != old).any(axis=2) & mask)
        assert not where.size, f"frame {after.index}: changed outside both boxes, first at (y, x) {where[0].tolist()}"
    assert pairs >= len(got) // 2, f"only {pairs} of {len(got) - 1} pairs carried boxes"
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(got, got[1:], strict=False)), "nothing moved"
