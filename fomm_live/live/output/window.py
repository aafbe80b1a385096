"""The preview window (``WindowSink``) and its slider panel (hotkey t).

The window shows the preview frame (the output with the HUD) and returns the hotkeys pressed. The slider panel is a
second window with OpenCV trackbars for the head and expression strength (0 to 2 in steps of 0.1) and the keypoint
smoothing's cutoff at rest (0.1 to 10 Hz): a trackbar sets its field of the loop's ``Controls`` from the GUI thread
(each is one attribute; the model stage reads them at the start of a frame), and a change made by a hotkey moves the
trackbar to match.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Protocol

import numpy as np

from fomm_live.live.errors import SinkUnavailable
from fomm_live.live.media import cv2

logger = logging.getLogger(__name__)

PANEL_TITLE = "fomm-live controls"


class SliderTarget(Protocol):
    """What the slider panel sets (the loop's ``live.loop.hotkeys.Controls``)."""

    head_strength: float
    expression_strength: float
    kp_min_cutoff: float | None
    show_sliders: bool
    changed_at: float | None


# (trackbar, field, positions, value of a position, position of a value): strengths 0..2 in tenths, the cutoff
# 0.1..10 Hz in tenths.
SLIDERS = (
    ("head strength x10", "head_strength", 20, lambda p: p / 10, lambda v: round(v * 10)),
    ("expression strength x10", "expression_strength", 20, lambda p: p / 10, lambda v: round(v * 10)),
    ("smoothing cutoff Hz x10", "kp_min_cutoff", 100, lambda p: max(p, 1) / 10, lambda v: round(v * 10)),
)


class SliderPanel:
    """The trackbar window for ``target``'s strengths and cutoff; ``sync`` opens, closes and matches it to
    ``target.show_sliders`` and the values (call it from the GUI thread, as ``WindowSink.send`` does).

    Args:
        target: The controls the trackbars set.
    """

    def __init__(self, target: SliderTarget) -> None:
        self.target = target
        self.cv = cv2()
        self.open = False
        self._shown: dict[str, int] = {}  # trackbar -> the position last set or read

    def _moved(self, name: str, field: str, value_of, position: int) -> None:
        if self._shown.get(name) == position:
            return  # the echo of a position set by ``sync``
        self._shown[name] = position
        setattr(self.target, field, value_of(position))
        self.target.changed_at = time.monotonic()

    def sync(self) -> None:
        if self.target.show_sliders and not self.open:
            self.cv.namedWindow(PANEL_TITLE, self.cv.WINDOW_AUTOSIZE)
            for name, field, count, value_of, _ in SLIDERS:
                self.cv.createTrackbar(name, PANEL_TITLE, 0, count,
                                       lambda p, n=name, f=field, v=value_of: self._moved(n, f, v, p))
            self.open = True
            self._shown.clear()
        elif self.open and not self.target.show_sliders:
            self.close()
            return
        if not self.open:
            return
        for name, field, _, _, position_of in SLIDERS:
            value = getattr(self.target, field)
            if value is None:
                continue
            position = position_of(value)
            if self._shown.get(name) != position:  # a hotkey moved it: move the trackbar to match
                self._shown[name] = position
                self.cv.setTrackbarPos(name, PANEL_TITLE, position)

    def close(self) -> None:
        if self.open:
            self.open = False
            try:
                self.cv.destroyWindow(PANEL_TITLE)
            except self.cv.error:
                logger.debug("slider panel already gone")

# cv2.waitKeyEx codes of the arrow keys: GTK/Qt on Linux, Windows, macOS.
_ARROWS = {65361: "left", 65362: "up", 65363: "right", 65364: "down",
           2424832: "left", 2490368: "up", 2555904: "right", 2621440: "down",
           63234: "left", 63232: "up", 63235: "right", 63233: "down"}


def key_name(code: int) -> str | None:
    """A cv2.waitKeyEx code as a hotkey name: 'c', '1', 'left', 'esc'... (None for no key)."""
    if code < 0:
        return None
    if code in _ARROWS:
        return _ARROWS[code]
    code &= 0xFF  # modifier bits (Num Lock, ...) sit above the low byte
    if code == 27:
        return "esc"
    return chr(code).lower() if 32 <= code < 127 else None


def display_available() -> bool:
    """Whether a preview window can open (a display on Linux; assumed on Windows and macOS)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class WindowSink:
    """The preview window. Must be driven from the main thread; ``poll_keys`` returns the hotkeys pressed.

    ``controls`` (set by the loop that drives it): the slider panel's target (hotkey t); None: no panel.
    """

    name = "window"

    def __init__(self, title: str = "fomm-live") -> None:
        if not display_available():
            raise SinkUnavailable("no display for the preview window (use --no-preview or run on a desktop)")
        self.cv = cv2()
        self.title = title
        try:
            self.cv.namedWindow(title, self.cv.WINDOW_NORMAL)
        except self.cv.error as err:
            raise SinkUnavailable(f"the preview window cannot open ({str(err).strip()[:100]})") from err
        self._closed = False
        self._size: tuple[int, int] | None = None
        self.controls: SliderTarget | None = None
        self._panel: SliderPanel | None = None

    def send(self, frame: np.ndarray, info: Any) -> None:  # info: a ``live.output.sinks.FrameInfo``
        shown = info.preview if info.preview is not None else frame
        size = (shown.shape[1], shown.shape[0])
        if size != self._size:  # fit the window to the picture (the camera view beside it changes the width)
            self._size = size
            self.cv.resizeWindow(self.title, *size)
        self.cv.imshow(self.title, self.cv.cvtColor(shown, self.cv.COLOR_RGB2BGR))
        if self.controls is not None:
            if self._panel is None:
                self._panel = SliderPanel(self.controls)
            self._panel.sync()

    def poll_keys(self) -> list[str]:
        name = key_name(self.cv.waitKeyEx(1))
        return [name] if name else []

    def closed_by_user(self) -> bool:
        try:
            return self.cv.getWindowProperty(self.title, self.cv.WND_PROP_VISIBLE) < 1
        except self.cv.error:
            return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._panel is not None:
                self._panel.close()
            try:
                self.cv.destroyWindow(self.title)
                self.cv.waitKey(1)
            except self.cv.error:
                logger.debug("preview window already gone")
