"""Sending only what changed (the browser output's ``jpeg-rect`` format), on the Python side: the rectangle is exactly
the changed pixels' bounding box on JPEG's 16-pixel grid, and a viewer rebuilt from the messages, as the extension's
page does, has the frames sent. The pages' side, in a real Chromium, is tests/test_browser_rect_chromium.py."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from websockets.sync.client import connect

from fomm_live.benchmarks.chromium import psnr
from fomm_live.live.media import cv2
from fomm_live.live.output import browser as browser_module
from fomm_live.live.output.browser import EXTENSION_ORIGIN, PROTOCOL, RECT_HEADER, BrowserSink
from fomm_live.live.output.changed import Rect, changed_rect
from fomm_live.live.output.sinks import FrameInfo
from tests.helpers.clips import place, portrait


def expected_rect(new: np.ndarray, old: np.ndarray) -> Rect | None:
    """The reference: the bounding box of the pixels where any channel differs, grown to multiples of 16 and clipped
    to the frame."""
    ys, xs = np.nonzero((new != old).any(axis=2))
    if not ys.size:
        return None
    height, width = new.shape[:2]
    left, top = xs.min() // 16 * 16, ys.min() // 16 * 16
    right, bottom = min(-(-(xs.max() + 1) // 16) * 16, width), min(-(-(ys.max() + 1) // 16) * 16, height)
    return Rect(int(left), int(top), int(right - left), int(bottom - top))


# Widths whose rows divide into 8-byte words (compared word by word) and others (byte by byte); heights not a
# multiple of 16 (the last block row is cut).
@pytest.mark.parametrize("size", [(1280, 720), (320, 240), (648, 360), (100, 60), (642, 362), (30, 18)])
def test_changed_rect_is_the_changed_pixels_bounding_box_aligned_to_16(size: tuple[int, int]) -> None:
    width, height = size
    rng = np.random.default_rng(width * 7 + height)
    old = rng.integers(0, 256, (height, width, 3), np.uint8)
    assert changed_rect(old.copy(), old) is None
    cases = [[(0, 0)], [(height - 1, width - 1)], [(0, width - 1), (height - 1, 0)]]
    for x in {15, 16, 17, 31, 32, width - 17, width - 16, width - 1}:  # either side of a block edge
        cases.append([(height // 2, min(max(x, 0), width - 1))])
    cases += [list(zip(rng.integers(0, height, n), rng.integers(0, width, n), strict=True)) for n in (1, 2, 5, 40)]
    for pixels in cases:
        for channel in range(3):  # a change in one channel only counts
            new = old.copy()
            for y, x in pixels:
                new[y, x, channel] ^= 1
            got, want = changed_rect(new, old), expected_rect(new, old)
            assert got == want, f"{width}x{height}, pixels {pixels}, channel {channel}: {got} != {want}"


def test_changed_rect_refuses_frames_of_different_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(240, 320, 3\) != \(240, 322, 3\)"):
        changed_rect(np.zeros((240, 320, 3), np.uint8), np.zeros((240, 322, 3), np.uint8))


class Viewer:
    """A viewer on the extension's origin that keeps the whole frame as the extension's page does: each whole frame
    replaces it, each rectangle goes at its place, and only on the picture it says it goes on."""

    def __init__(self, sink: BrowserSink, socket) -> None:
        self.socket = socket
        self.description = self.socket.recv(timeout=5)
        width, height = sink.size
        self.frame = np.zeros((height, width, 3), np.uint8)
        self.picture = 0
        self.sizes: list[int] = []  # each message's length

    def receive(self) -> tuple:
        message = self.socket.recv(timeout=5)
        header = RECT_HEADER.unpack_from(message)
        self.sizes.append(len(message))
        if len(message) > RECT_HEADER.size:
            number, _, base, x, y, w, h = header
            assert base in (0, self.picture), f"a rectangle on picture {base}; this viewer has {self.picture}"
            part = cv2().imdecode(np.frombuffer(message[RECT_HEADER.size:], np.uint8), cv2().IMREAD_COLOR)
            assert part.shape[:2] == (h, w), f"the JPEG is {part.shape[:2]}, the header says {(h, w)}"
            self.frame[y:y + h, x:x + w] = part[..., ::-1]
            self.picture = number
        return header


def stream(sink: BrowserSink):
    return connect(f"ws://127.0.0.1:{sink.port}/stream?protocol={PROTOCOL}", origin=EXTENSION_ORIGIN, open_timeout=5,
                   max_size=None)


@contextlib.contextmanager
def watching(still: np.ndarray):
    """A 320x240 browser output and one viewer that has had ``still`` as its first picture: (sink, viewer)."""
    sink = BrowserSink(width=320, height=240, fps=30, port=0)
    try:
        with stream(sink) as connection:
            viewer = Viewer(sink, connection)
            sink.send(still, FrameInfo(0, 0.0))
            viewer.receive()
            yield sink, viewer
    finally:
        sink.close()


def frames_with_a_moving_square() -> list[np.ndarray]:
    """A 320x240 portrait, then the same with a square drawn at two places: each differs from the one before only
    inside a known box."""
    still = place(portrait(), width=320, height=240)
    first, second = still.copy(), still.copy()
    first[50:70, 100:133] = (250, 30, 30)
    second[58:90, 120:150] = (30, 30, 250)
    return [still, first, second]


def test_a_viewer_rebuilds_the_frames_from_rectangles_and_a_late_one_starts_from_a_whole_frame() -> None:
    still, first, second = frames_with_a_moving_square()
    sink = BrowserSink(width=320, height=240, fps=30, port=0)
    stack = contextlib.ExitStack()
    try:
        viewer = Viewer(sink, stack.enter_context(stream(sink)))
        assert '"format": "jpeg-rect"' in viewer.description
        sink.send(still, FrameInfo(0, 0.0))
        whole = viewer.receive()
        sink.send(first, FrameInfo(1, 0.0))
        rect = viewer.receive()
        assert psnr(viewer.frame, first) >= 30, f"{psnr(viewer.frame, first):.1f} dB after the rectangle"
        # Joins while the newest picture is a rectangle, and no new frame comes.
        late = Viewer(sink, stack.enter_context(stream(sink)))
        late_first = late.receive()
        late_had_first = psnr(late.frame, first)
        viewer.receive()  # the same picture made whole for the late viewer: this one has it
        sink.send(second, FrameInfo(2, 0.0))
        late_rect, rect_again = late.receive(), viewer.receive()
        sink.send(second.copy(), FrameInfo(3, 0.0))  # a still frame: the header alone
        repeat = viewer.receive()
    finally:
        stack.close()
        sink.close()
    assert whole[2:] == (0, 0, 0, 320, 240), f"the first picture is whole: {whole}"
    assert rect[2:] == (whole[0], 96, 48, 48, 32), f"the square at x 100-132, y 50-69 on block edges: {rect}"
    assert late_first[2:] == (0, 0, 0, 320, 240), f"a viewer that joined gets a whole frame first: {late_first}"
    assert late_had_first >= 30, f"{late_had_first:.1f} dB: the late viewer's whole frame is not the newest picture"
    assert viewer.sizes[2] == RECT_HEADER.size, "the viewer that had the picture got more than the header"
    assert late_rect[2:] == rect_again[2:] == (first_number := rect[0], 96, 48, 64, 48), (late_rect, rect_again)
    assert psnr(late.frame, second) >= 30 and psnr(viewer.frame, second) >= 30
    assert first_number == late_first[0]
    assert viewer.sizes[-1] == RECT_HEADER.size and repeat[2:] == (0, 0, 0, 0, 0)
    assert sink.rects == 2, sink.rects


def test_most_of_the_frame_changed_or_the_refresh_due_sends_it_whole(monkeypatch) -> None:
    still, first, _ = frames_with_a_moving_square()
    with watching(still) as (sink, viewer):
        moved = place(portrait(), width=320, height=240, tx=12)  # the whole portrait moved: most pixels differ
        sink.send(moved, FrameInfo(1, 0.0))
        most = viewer.receive()
        monkeypatch.setattr(browser_module, "WHOLE_EVERY_S", 0.0)  # every picture is due for a refresh
        sink.send(first, FrameInfo(2, 0.0))
        due = viewer.receive()
    assert expected_rect(moved, still).area > browser_module.WHOLE_ABOVE * 320 * 240
    assert most[2:] == (0, 0, 0, 320, 240), f"most of it changed: whole, not {most}"
    assert due[2:] == (0, 0, 0, 320, 240), f"the refresh is due: whole, not {due}"
    assert psnr(viewer.frame, first) >= 30


def test_frames_faster_than_the_pictures_send_every_change_since_the_last_picture() -> None:
    """A burst of frames, each adding a square at another place, comes faster than the pictures (about 33 a second):
    the pictures skip frames, and each rectangle must hold every change since the picture before, or the squares of
    the frames skipped would be missing from the viewer's copy."""
    still = place(portrait(), width=320, height=240)
    burst, squares = [], []
    for i in range(12):  # 16 x 16 squares, each a block of its own, on a 4 x 3 grid of 32 x 32 cells
        square = (slice(32 * (i // 4) + 48, 32 * (i // 4) + 64), slice(32 * (i % 4) + 48, 32 * (i % 4) + 64))
        frame = (burst[-1] if burst else still).copy()
        frame[square] = 40 + 15 * i  # grey: a flat block that JPEG keeps (a saturated one loses 23-30 dB)
        burst.append(frame)
        squares.append(square)
    with watching(still) as (sink, viewer):
        for i, frame in enumerate(burst):
            sink.send(frame, FrameInfo(i + 1, 0.0))
        last = 1 + len(burst)  # the output's number of the last frame sent
        headers = [viewer.receive()]
        while headers[-1][0] != last:
            headers.append(viewer.receive())
    skipped = len(burst) - len(headers)
    assert skipped > 0, "every frame of the burst got its own picture: the burst did not test skipping"
    assert all(h[2] != 0 for h in headers if h[6]), f"a picture of the burst went whole: {headers}"
    missing = [i for i, square in enumerate(squares) if psnr(viewer.frame[square], burst[-1][square]) < 30]
    assert not missing, f"the squares of frames {missing} are missing from the viewer's copy"
