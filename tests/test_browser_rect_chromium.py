"""Sending only what changed (the browser output's ``jpeg-rect`` format, the default) in a real Chromium, with the
harness of tests/test_browser_extension.py: the extension's camera and the output's own page keep a copy of the whole
frame and put each rectangle at its place; the frames read back through a canvas match what was sent (>= 30 dB) when
only a rectangle changes, when everything changes, across a still frame, and for a viewer that joins mid-stream.

Screenshots of the test page are written to the test's tmp folder (``--basetemp`` to keep them).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from fomm_live.benchmarks.chromium import decode_data_url, psnr
from tests.helpers.browser import SIZE, Feeder, grab, require_chromium, wait_for
from tests.helpers.clips import place, portrait


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    require_chromium()


SQUARE = (slice(100, 160), slice(200, 290))  # rows, columns of the square drawn on the portrait (inside the face)


def with_square(frame: np.ndarray, colour: tuple[int, int, int], shift: int = 0) -> np.ndarray:
    out = frame.copy()
    out[SQUARE[0].start + shift:SQUARE[0].stop + shift, SQUARE[1].start + shift:SQUARE[1].stop + shift] = colour
    return out


def matches(sent: np.ndarray):
    """The whole frame and the square's region (where the frames of these tests differ) both >= 30 dB."""
    return lambda frame: (frame.shape == sent.shape and psnr(frame, sent) >= 30
                          and psnr(frame[SQUARE], sent[SQUARE]) >= 30)


def test_camera_shows_a_rectangle_a_whole_change_and_a_change_after_a_still_frame(browser, page, tmp_path) -> None:
    _, _, port = browser
    still = place(portrait(), width=SIZE[0], height=SIZE[1])
    red, blue = with_square(still, (230, 40, 40)), with_square(still, (40, 60, 230), shift=8)
    moved = place(portrait(), width=SIZE[0], height=SIZE[1], angle=10, tx=-40)
    # These tests would not tell a stale square from a fresh one otherwise.
    assert psnr(red[SQUARE], still[SQUARE]) < 20 and psnr(blue[SQUARE], red[SQUARE]) < 20
    feeder = Feeder(port, still, "jpeg-rect")
    try:
        page.evaluate("fl.open('fomm-live')")
        wait_for(page, matches(still), "the first frame, whole")
        rects = feeder.sink.rects
        feeder.frame = red
        wait_for(page, matches(red), "the red square, sent as a rectangle")
        assert feeder.sink.rects > rects, "the square's change went whole, not as a rectangle"
        page.screenshot(path=str(tmp_path / "rect-red.png"))
        feeder.frame = moved
        wait_for(page, matches(moved), "the portrait moved, sent whole")
        feeder.frame = blue  # from the moved portrait back to the still one with a square: most of it changes
        wait_for(page, matches(blue), "the blue square")
        repeats = feeder.sink.repeats
        page.wait_for_timeout(1000)  # the same frame a second: repeats, the header alone
        assert feeder.sink.repeats > repeats, "a still frame was not sent as repeats"
        assert matches(blue)(grab(page)), "the still frame changed on the page"
        rects = feeder.sink.rects
        feeder.frame = red
        got = wait_for(page, matches(red), "the red square after the still frame")
        assert feeder.sink.rects > rects, "the change after the still frame went whole, not as a rectangle"
        shown = page.evaluate("fl.frames")
    finally:
        feeder.close()
    page.screenshot(path=str(tmp_path / "rect-after-still.png"))
    copies = {f["copy"] for f in shown if not f["repeat"]}
    assert copies == {"planes"}, f"the page's copy of the frame was kept as {copies}, not as I420 planes"
    assert psnr(got, red) >= 30


def test_a_viewer_that_joins_mid_stream_shows_the_whole_frame(browser, page, tmp_path) -> None:
    """A second tab opens the camera while only a moving square is being sent: it starts from a whole frame, so the
    rest of the picture is there too, not black."""
    context, url, port = browser
    still = place(portrait(), width=SIZE[0], height=SIZE[1])
    feeder = Feeder(port, still, "jpeg-rect")
    late = context.new_page()
    try:
        page.evaluate("fl.open('fomm-live')")
        wait_for(page, matches(still), "the first frame")
        stop = time.monotonic() + 6
        late.goto(url)
        opened = False
        shift = 0
        while time.monotonic() < stop:  # the square moves every 0.1 s: rectangles only
            shift = (shift + 4) % 40
            feeder.frame = with_square(still, (230, 40, 40), shift)
            if not opened and time.monotonic() > stop - 4:
                late.evaluate("fl.open('fomm-live')")
                opened = True
            late.wait_for_timeout(100)
        last = feeder.frame
        rects = feeder.sink.rects
        got = wait_for(late, matches(last), "the last frame in the tab that joined")
        first_page = wait_for(page, matches(last), "the last frame in the first tab")
        late.screenshot(path=str(tmp_path / "joined.png"))
    finally:
        late.evaluate("fl.stop()")
        late.close()
        feeder.close()
    assert rects > 20, f"only {rects} rectangles were sent while the square moved"
    assert psnr(got, last) >= 30 and psnr(first_page, last) >= 30


def test_the_outputs_own_page_shows_rectangles_at_their_place(browser, tmp_path) -> None:
    context, _, port = browser
    still = place(portrait(), width=SIZE[0], height=SIZE[1])
    red = with_square(still, (230, 40, 40))
    feeder = Feeder(port, still, "jpeg-rect")
    tab = context.new_page()

    def canvas_shows(sent: np.ndarray) -> np.ndarray:
        deadline = time.monotonic() + 15
        while True:
            shown = decode_data_url(tab.evaluate("document.getElementById('view').toDataURL('image/png')"))
            if matches(sent)(shown) or time.monotonic() > deadline:
                return shown
            tab.wait_for_timeout(100)

    try:
        tab.goto(feeder.sink.url)
        first = canvas_shows(still)
        rects = feeder.sink.rects
        feeder.frame = red
        second = canvas_shows(red)
        tab.screenshot(path=str(tmp_path / "output-page-rect.png"))
    finally:
        tab.close()
        feeder.close()
    assert psnr(first, still) >= 30, f"{psnr(first, still):.1f} dB"
    assert psnr(second, red) >= 30 and psnr(second[SQUARE], red[SQUARE]) >= 30, f"{psnr(second, red):.1f} dB"
    assert feeder.sink.rects > rects, "the square's change went whole, not as a rectangle"
