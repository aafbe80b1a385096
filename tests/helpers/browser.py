"""The harness of the browser tests (tests/test_browser_*.py): a ``BrowserSink`` fed by a thread, and the test
page's video read back; the fixtures that start Chromium (``playwright``, ``browser``, ``page``) are in conftest.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from conftest import ON_CI

from fomm_live.benchmarks.chromium import decode_data_url, missing_reason
from fomm_live.live.output.browser import BrowserSink
from fomm_live.live.output.sinks import FrameInfo

REASON = missing_reason()


def require_chromium() -> None:
    """Without Chromium or Playwright these tests skip, saying which is missing; on CI (which installs them) they
    fail instead: a CI run that skipped the browser would prove nothing about the extension."""
    if REASON is None:
        return
    if ON_CI:
        pytest.fail(f"{REASON}; CI=true: .ci/run installs Chromium, the test extra Playwright", pytrace=False)
    pytest.skip(f"{REASON}: the extension is tested in Chromium")


CAMERA_RGB = (40, 160, 60)  # the fake real camera's colour
SIZE = (640, 360)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Feeder:
    """A BrowserSink on ``port`` sent ``frame`` at 30 fps from a thread: a stand-in for the live loop."""

    def __init__(self, port: int, frame: np.ndarray, picture_format: str = "jpeg") -> None:
        self.frame = frame
        self.sink = BrowserSink(width=frame.shape[1], height=frame.shape[0], fps=30, port=port,
                                picture_format=picture_format)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        i = 0
        while not self._stop.wait(1 / 30):
            self.sink.send(self.frame, FrameInfo(i, time.perf_counter()))
            i += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sink.close()


def grab(page) -> np.ndarray:
    return decode_data_url(page.evaluate("fl.grab()"))


def wait_for(page, test: Callable[[np.ndarray], bool], what: str, timeout: float = 15.0) -> np.ndarray:
    """Grabs the page's video until ``test`` holds (polled every 0.1 s); fails saying ``what`` it waited for."""
    deadline = time.monotonic() + timeout
    while True:
        frame = grab(page)
        if frame.size and test(frame):
            return frame
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}; the last frame was {frame.shape}, mean colour "
                        f"{frame.reshape(-1, 3).mean(0).round() if frame.size else None}")
        page.wait_for_timeout(100)
