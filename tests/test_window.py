"""The real preview window on a virtual X display: it opens, each key pressed has its effect on the window, and q
ends the run cleanly.

Needs Xvfb and xdotool (.ci/run installs them where it can); skips with that reason otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from helpers.clips import moving_frames, write_clip

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                reason="needs Xvfb and xdotool for a real window on a virtual display")


@pytest.fixture()
def display():
    """A virtual X display, once it accepts clients: Xvfb picks a free display number and writes it to the pipe given
    by ``-displayfd`` when it is ready (no fixed wait, no number that another display may hold)."""
    ready, ready_write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(ready_write), "-screen", "0", "1280x720x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(ready_write,))
    os.close(ready_write)
    try:
        with os.fdopen(ready, encoding="ascii") as pipe:
            number = pipe.readline().strip()  # empty when Xvfb exited without starting
        assert number, f"Xvfb exited with status {server.wait(timeout=10)} before its display was ready"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def xdotool(display: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                          timeout=30)


def window_geometry(display: str, window: str) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a window on the screen."""
    shell = xdotool(display, "getwindowgeometry", "--shell", window).stdout
    values = dict(line.split("=", 1) for line in shell.split())
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def grab(display: str, window: str) -> np.ndarray:
    """What the window shows now, H x W x 3 int (the screen read back from the X server)."""
    from PIL import ImageGrab

    x, y, w, h = window_geometry(display, window)
    screen = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"), dtype=np.int32)
    return screen[y:y + h, x:x + w]


def change(before: np.ndarray, after: np.ndarray, rows: slice, cols: slice) -> float:
    """Mean absolute change (levels) in a region given as fractions of the picture: rows/cols slices of 0-12."""
    def region(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        return image[h * rows.start // 12:h * rows.stop // 12, w * cols.start // 12:w * cols.stop // 12]

    return float(np.abs(region(after) - region(before)).mean())


def wait_for(lines: list[str], text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert time.monotonic() < deadline, f"{text!r} never logged; log: {lines[-5:]}"
        time.sleep(0.1)


def press(display: str, window: str, key: str, shown, timeout: float = 30.0) -> np.ndarray:
    """Press ``key`` in the window, then wait (a bounded poll, not a fixed wait) until ``shown(window_picture)`` is
    true, and return that picture; the caller's assertions then say what was missing when it never was."""
    xdotool(display, "windowfocus", "--sync", window)
    xdotool(display, "key", key)
    deadline = time.monotonic() + timeout
    while True:
        picture = grab(display, window)
        if shown(picture) or time.monotonic() > deadline:
            return picture
        time.sleep(0.1)


def overlay_in(before: np.ndarray, region: tuple[slice, slice]):
    """True once ``region`` of the window differs from ``before`` by far more than the still top-right corner does."""
    return lambda now: now.shape == before.shape and change(before, now, *region) > 4 * change(before, now,
                                                                                                 *TOP_RIGHT) + 5


TOP_LEFT, BOTTOM_LEFT, TOP_RIGHT = (slice(0, 2), slice(0, 4)), (slice(7, 12), slice(0, 4)), (slice(0, 2), slice(9, 12))


def settled(display: str, window: str, timeout: float = 30.0) -> np.ndarray:
    """The window's picture once two grabs 0.2 s apart agree (the still clip's frames shown, no status line
    fading): a condition polled to a deadline rather than a fixed wait."""
    deadline = time.monotonic() + timeout
    last = grab(display, window)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = grab(display, window)
        if now.shape == last.shape and float(np.abs(now - last).mean()) < 1.0:
            return now
        last = now
    return last


def test_preview_window_takes_keys_and_q_quits(display: str, tmp_path: Path) -> None:
    """Each key's effect is checked on the window itself: h draws the help at the bottom left, i the timings at the
    top left, o puts the camera beside the avatar (a wider window), q ends the run cleanly with a playable
    recording."""
    av = pytest.importorskip("av", reason="PyAV reads the recording back")
    pytest.importorskip("PIL.ImageGrab", reason="Pillow reads the window back from the X server")
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(25, still=25))
    out = tmp_path / "rec.mp4"
    env = {**os.environ, "DISPLAY": display}
    proc = subprocess.Popen([sys.executable, "-m", "fomm_live", "--camera", str(clip), "--output", str(out),
                             "--realtime", "--loop"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        window = xdotool(display, "search", "--sync", "--name", "fomm-live").stdout.split()[0]
        wait_for(log, "neutral pose calibrated", timeout=60)  # the HUD's status line is gone once calibrated
        before = settled(display, window)
        with_help = press(display, window, "h", overlay_in(before, BOTTOM_LEFT))
        still = change(before, with_help, *TOP_RIGHT)
        assert change(before, with_help, *BOTTOM_LEFT) > 4 * still + 5, "h: no help overlay at the bottom left"
        with_timing = press(display, window, "i", overlay_in(with_help, TOP_LEFT))
        assert change(with_help, with_timing, *TOP_LEFT) > 4 * still + 5, "i: no timing overlay at the top left"
        width = window_geometry(display, window)[2]
        press(display, window, "o", lambda picture: picture.shape[1] > width * 1.3)
        assert window_geometry(display, window)[2] > width * 1.3, "o: the camera view is not beside the avatar"
        xdotool(display, "key", "q")
        stdout = proc.stdout.read()
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        proc.kill()
    stderr = "".join(log)
    assert proc.returncode == 0, stderr
    assert "hotkeys (in the preview window)" in stdout and re.search(r"\d+ frames in, \d+ out", stdout)
    assert "preview window" in stderr
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 10


def test_the_slider_panel_sets_the_controls_and_follows_the_hotkeys(display: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """On a real window: t opens the panel; moving a trackbar sets its control (head 0.5, cutoff 2.5 Hz); a hotkey's
    change moves the trackbar to match; t again closes the panel."""
    monkeypatch.setenv("DISPLAY", display)
    from fomm_live.live.loop.hotkeys import Controls, apply_model_key
    from fomm_live.live.media import cv2
    from fomm_live.live.output.sinks import FrameInfo
    from fomm_live.live.output.window import PANEL_TITLE, WindowSink

    cv = cv2()
    window = WindowSink(title="fomm-live slider test")
    controls = Controls(kp_min_cutoff=1.0)
    window.controls = controls
    frame = np.zeros((120, 160, 3), np.uint8)
    try:
        window.send(frame, FrameInfo(0, 0.0))
        with pytest.raises(cv.error):
            cv.getTrackbarPos("head strength x10", PANEL_TITLE)  # no panel before t
        apply_model_key("t", controls)
        window.send(frame, FrameInfo(1, 0.0))
        window.poll_keys()
        assert cv.getTrackbarPos("head strength x10", PANEL_TITLE) == 10
        assert cv.getTrackbarPos("smoothing cutoff Hz x10", PANEL_TITLE) == 10
        cv.setTrackbarPos("head strength x10", PANEL_TITLE, 5)
        cv.setTrackbarPos("smoothing cutoff Hz x10", PANEL_TITLE, 25)
        window.poll_keys()
        assert controls.head_strength == 0.5 and controls.kp_min_cutoff == 2.5
        apply_model_key("=", controls)
        window.send(frame, FrameInfo(2, 0.0))
        window.poll_keys()
        assert cv.getTrackbarPos("expression strength x10", PANEL_TITLE) == 11
        apply_model_key("t", controls)
        window.send(frame, FrameInfo(3, 0.0))
        window.poll_keys()
        with pytest.raises(cv.error):
            cv.getTrackbarPos("head strength x10", PANEL_TITLE)
    finally:
        window.close()
