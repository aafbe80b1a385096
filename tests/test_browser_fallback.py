"""The extension's camera and the output's own page in a Chromium without WebCodecs' newer APIs: ``ImageDecoder``,
``MediaStreamTrackGenerator`` and ``VideoFrame`` deleted from the page's world before its scripts run (Playwright's
``add_init_script``), as in browsers that lack them. The camera then draws on a captured canvas (and decodes with
``createImageBitmap``); it shows its card before fomm-live starts, and its frames read back through the test page's
canvas still match what was sent (>= 30 dB), whole and after a rectangle changed (the default ``jpeg-rect`` format).

Screenshots of the test page are written to the test's tmp folder (``--basetemp`` to keep them).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from fomm_live.benchmarks.chromium import decode_data_url, psnr
from tests.helpers.browser import SIZE, Feeder, require_chromium, wait_for
from tests.helpers.clips import place, portrait


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    require_chromium()


CARD_RGB = (29, 35, 48)  # the "not running" card's background (#1d2330 in inject.js)
# What is removed -> how the camera's track is fed, and where it keeps its copy of the frame ("jpeg-rect").
REMOVED = {
    "ImageDecoder": ("generator", "canvas"),
    "MediaStreamTrackGenerator": ("canvas", "planes"),
    "ImageDecoder,MediaStreamTrackGenerator,VideoFrame": ("canvas", "canvas"),
}


def removing(names: str) -> str:
    return "".join(f"delete window.{name};" for name in names.split(","))


def frames() -> tuple[np.ndarray, np.ndarray]:
    """A portrait, then the same with a square changed inside it (sent as a rectangle)."""
    still = place(portrait(), width=SIZE[0], height=SIZE[1])
    squared = still.copy()
    squared[100:160, 200:290] = (230, 40, 40)
    return still, squared


def shows(sent: np.ndarray):
    return lambda f: f.shape == sent.shape and psnr(f, sent) >= 30 and psnr(f[100:160, 200:290],
                                                                                sent[100:160, 200:290]) >= 30


@pytest.mark.parametrize("names", list(REMOVED))
def test_the_camera_without_webcodecs_shows_the_frames_sent(browser, tmp_path, names: str) -> None:
    context, url, port = browser
    still, squared = frames()
    tab = context.new_page()
    tab.add_init_script(removing(names))
    feeder = None
    try:
        tab.goto(url)
        assert all(tab.evaluate(f"typeof window.{n}") == "undefined" for n in names.split(","))
        tab.evaluate("fl.open('fomm-live')")  # before fomm-live starts: the card
        wait_for(tab, lambda f: np.abs(f[:10, :10].reshape(-1, 3).astype(int) - CARD_RGB).max() <= 8, "the card")
        feeder = Feeder(port, still, "jpeg-rect")
        whole = wait_for(tab, shows(still), "the first frame")
        rects = feeder.sink.rects
        feeder.frame = squared
        rect = wait_for(tab, shows(squared), "the square, sent as a rectangle")
        assert feeder.sink.rects > rects, "the square's change went whole, not as a rectangle"
        shown = tab.evaluate("fl.frames[fl.frames.length - 1]")
        tab.screenshot(path=str(tmp_path / f"without-{names.replace(',', '-')}.png"))
    finally:
        tab.evaluate("fl.stop()")
        tab.close()
        if feeder is not None:
            feeder.close()
    assert psnr(whole, still) >= 30 and psnr(rect, squared) >= 30
    assert (shown["track"], shown["copy"]) == REMOVED[names]


@pytest.mark.parametrize("names", ["ImageDecoder", "ImageDecoder,MediaStreamTrackGenerator,VideoFrame"])
def test_the_outputs_own_page_without_webcodecs_shows_the_frames_sent(browser, tmp_path, names: str) -> None:
    context, _, port = browser
    still, squared = frames()
    feeder = Feeder(port, still, "jpeg-rect")
    tab = context.new_page()
    tab.add_init_script(removing(names))
    try:
        tab.goto(feeder.sink.url)
        assert all(tab.evaluate(f"typeof window.{n}") == "undefined" for n in names.split(","))
        got = {}
        for name, sent in (("whole", still), ("rect", squared)):
            feeder.frame = sent
            deadline = time.monotonic() + 15
            while True:
                got[name] = decode_data_url(tab.evaluate("document.getElementById('view').toDataURL('image/png')"))
                if shows(sent)(got[name]) or time.monotonic() > deadline:
                    break
                tab.wait_for_timeout(100)
        tab.screenshot(path=str(tmp_path / f"output-page-without-{names.replace(',', '-')}.png"))
    finally:
        tab.close()
        feeder.close()
    assert shows(still)(got["whole"]), f"{psnr(got['whole'], still):.1f} dB"
    assert shows(squared)(got["rect"]), f"{psnr(got['rect'], squared):.1f} dB"
    assert feeder.sink.rects > 0, "no rectangle was sent: the page's rectangle path was not run"
