"""An extension and an output of different versions (the handshake in ``live/output/browser_wire.py``): an extension
too old for the output shows a card saying to update it, not its "fomm-live is not running" card; an extension that
meets a picture format newer than it knows says so on its own card. First without a browser (a WebSocket client in
place of the extension's frame), then in a real Chromium with a stand-in old extension: a copy of the package's
extension whose frame.js names protocol 1.

Screenshots of the test page are written to the test's tmp folder (``--basetemp`` to keep them).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from fomm_live.benchmarks.chromium import chromium_with_extension, psnr, serve_page, write_y4m
from fomm_live.live.media import cv2
from fomm_live.live.output.browser import EXTENSION_DIR, EXTENSION_ORIGIN, HEADER, PROTOCOL, BrowserSink
from fomm_live.live.output.browser_wire import MIN_PROTOCOL, update_card, viewer_protocol
from tests.helpers.browser import CAMERA_RGB, SIZE, Feeder, free_port, grab, require_chromium, wait_for
from tests.helpers.clips import place, portrait

CARD_RGB = (29, 35, 48)  # the extension's own card's background (#1d2330 in inject.js)


def card_rgb(width: int, height: int, protocol: int) -> np.ndarray:
    return cv2().cvtColor(update_card(width, height, protocol), cv2().COLOR_BGR2RGB)


def corner_is(frame: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(np.abs(frame[:10, :10].reshape(-1, 3).astype(int) - rgb).max() <= 8)


def test_the_protocol_a_viewer_names_is_read_from_its_address_and_none_is_1() -> None:
    assert viewer_protocol("/stream?protocol=2") == 2
    assert viewer_protocol("/stream?x=1&protocol=7") == 7
    assert viewer_protocol("/stream") == 1
    assert viewer_protocol("/stream?protocol=two") == 1
    assert MIN_PROTOCOL > 1  # the extensions before the handshake (they name none) are outdated


def test_a_viewer_naming_no_protocol_gets_whole_jpegs_of_the_update_card_and_is_not_counted() -> None:
    sink = BrowserSink(width=320, height=240, fps=30, port=0)
    try:
        with connect(f"ws://127.0.0.1:{sink.port}/stream", origin=EXTENSION_ORIGIN, open_timeout=5) as old:
            info = json.loads(old.recv(timeout=5))
            message = old.recv(timeout=5)
            viewers = sink.viewers
        with connect(f"ws://127.0.0.1:{sink.port}/stream?protocol={PROTOCOL}", origin=EXTENSION_ORIGIN,
                     open_timeout=5) as current:
            current_info = json.loads(current.recv(timeout=5))
    finally:
        sink.close()
    # "jpeg" (with its 12-byte header) is the format every extension version shows.
    assert info == {"width": 320, "height": 240, "fps": 30.0, "format": "jpeg", "protocol": PROTOCOL,
                    "update": "extension"}
    assert viewers == 0, "an outdated viewer made the output convert frames for it"
    number, _ = HEADER.unpack_from(message)
    got = cv2().imdecode(np.frombuffer(message, np.uint8, offset=HEADER.size), cv2().IMREAD_COLOR)
    assert number == 1
    assert psnr(got, update_card(320, 240, 1)) >= 30
    assert current_info["format"] == "jpeg-rect" and "update" not in current_info


def test_the_update_card_names_the_two_protocols() -> None:
    # Different protocols draw different text (the card is not one fixed picture whatever it says).
    assert psnr(update_card(640, 360, 1), update_card(640, 360, PROTOCOL - 1 if PROTOCOL > 2 else 0)) < 60
    assert corner_is(card_rgb(640, 360, 1), (58, 42, 16))


@pytest.fixture
def old_extension(tmp_path: Path) -> Path:
    """A copy of the package's extension that names protocol 1, as the extensions before the handshake do (they name
    none): the same key, so the same id and Origin, which the output allows."""
    folder = shutil.copytree(EXTENSION_DIR, tmp_path / "old-extension")
    script = folder / "frame.js"
    text = script.read_text()
    assert f"const PROTOCOL = {PROTOCOL};" in text
    script.write_text(text.replace(f"const PROTOCOL = {PROTOCOL};", "const PROTOCOL = 1;"))
    return folder


def test_an_old_extension_shows_update_the_extension_not_fomm_live_is_not_running(playwright, tmp_path,
                                                                                  old_extension) -> None:
    require_chromium()
    port = free_port()
    clip = write_y4m(tmp_path / "camera.y4m", [np.full((240, 320, 3), CAMERA_RGB, np.uint8)] * 3)
    feeder = Feeder(port, place(portrait(), width=SIZE[0], height=SIZE[1]), "jpeg-rect")
    try:
        with serve_page() as url, chromium_with_extension(tmp_path / "profile", camera_clip=clip, port=port,
                                                          playwright=playwright, extension=old_extension) as context:
            tab = context.new_page()
            tab.goto(url)
            tab.evaluate("fl.open('fomm-live')")
            expected = card_rgb(*SIZE, 1)
            got = wait_for(tab, lambda f: f.shape == expected.shape and psnr(f, expected) >= 30,
                           "the update card")
            tab.wait_for_timeout(2500)  # past the 2 s after which a stream without pictures shows its own card
            later = grab(tab)
            tab.screenshot(path=str(tmp_path / "old-extension.png"))
            tab.evaluate("fl.stop()")
            viewers = feeder.sink.viewers
    finally:
        feeder.close()
    assert not corner_is(got, CARD_RGB)
    assert psnr(later, expected) >= 30, "the update card gave way to another picture"
    assert viewers == 0


def test_a_picture_format_newer_than_the_extension_shows_its_card_saying_to_update_it(browser, page,
                                                                                    tmp_path) -> None:
    _, _, port = browser
    page.evaluate("fl.open('fomm-live')")
    at_size = lambda f: f.shape == (SIZE[1], SIZE[0], 3) and corner_is(f, CARD_RGB)  # noqa: E731
    # A stand-in for a newer fomm-live: the description names a format this extension does not know.
    feeder = Feeder(port, place(portrait(), width=SIZE[0], height=SIZE[1]), "jpeg")
    feeder.sink.format = "jpeg-xl"
    try:
        newer = wait_for(page, at_size, "a card at the output's size")
        page.screenshot(path=str(tmp_path / "newer-format.png"))
    finally:
        feeder.close()
    try:  # fomm-live gone: the card says it is not running again, at the same size
        not_running = wait_for(page, lambda f: at_size(f) and np.abs(f.astype(int) - newer).max() > 40,
                               "the 'not running' card after the stop")
    finally:
        page.evaluate("fl.stop()")
    # The two cards differ in their text only: between the title's and the hint's rows, none above.
    rows = np.abs(not_running.astype(int) - newer).max(axis=(1, 2)) > 40
    assert rows[int(SIZE[1] * 0.35):int(SIZE[1] * 0.62)].any() and not rows[:int(SIZE[1] * 0.3)].any()
