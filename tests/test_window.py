"""The real preview window on a virtual X display: it opens, takes key presses, and q ends the run cleanly.

Needs Xvfb and xdotool (.ci/run installs them where it can); skips with that reason otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clips import moving_frames, write_clip
from conftest import REPO

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                reason="needs Xvfb and xdotool for a real window on a virtual display")


@pytest.fixture()
def display():
    number = 90 + os.getpid() % 100
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x720x24"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    if server.poll() is not None:
        pytest.skip(f"Xvfb could not start on display :{number}")
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def xdotool(display: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                          timeout=30)


def test_preview_window_takes_keys_and_q_quits(display: str, tmp_path: Path) -> None:
    av = pytest.importorskip("av", reason="PyAV reads the recording back")
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(25, still=25))
    out = tmp_path / "rec.mp4"
    env = {**os.environ, "DISPLAY": display}
    proc = subprocess.Popen([sys.executable, "-m", "live.cli", "--camera", str(clip), "--output", str(out),
                             "--realtime", "--loop"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        found = xdotool(display, "search", "--sync", "--name", "fomm-live")
        window = found.stdout.split()[0]
        time.sleep(1.5)  # let it run a while
        xdotool(display, "windowfocus", "--sync", window)
        for key in ("h", "o", "i", "q"):
            xdotool(display, "key", key)
            time.sleep(0.3)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "hotkeys (in the preview window)" in stdout and re.search(r"\d+ frames in, \d+ out", stdout)
    assert "preview window" in stderr
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 10
