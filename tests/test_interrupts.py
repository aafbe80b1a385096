"""Ctrl-C while recording, with the real command and real signals: an impatient second press still leaves a
finalised MP4; only a third exits at once, and then leaves the fragmented MP4 written so far, which plays. The test
waits on the command's own output lines, never on fixed sleeps."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO
from helpers.clips import moving_frames, write_clip

from fomm_live.live.output.recording import mp4_boxes

av = pytest.importorskip("av", reason="PyAV writes and reads the recordings")
WAIT_S = 240  # the most any line is waited for (a loaded 2-core machine starts mediapipe slowly)


class Command:
    """``fomm-live run`` in a fresh interpreter, its stderr read line by line on a thread."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env["PYTHONPATH"] = str(REPO)
        self.proc = subprocess.Popen([sys.executable, "-m", "fomm_live", *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, *texts: str, end_ok: bool = False) -> str | None:
        """The first line holding one of ``texts``; None if the command ends first and ``end_ok``."""
        while True:
            line = self._queue.get(timeout=WAIT_S)
            if line is None:
                self._queue.put(None)  # for finish()
                assert end_ok, f"the command ended before saying {texts}:\n" + "\n".join(self.lines)
                return None
            self.lines.append(line)
            if any(text in line for text in texts):
                return line

    def finish(self) -> int:
        code = self.proc.wait(timeout=WAIT_S)
        while (line := self._queue.get(timeout=WAIT_S)) is not None:
            self.lines.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def recording_run(tmp_path: Path):
    """A live run recording rec.mp4 from a looped clip, paced like a camera, until it is stopped."""
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(20, still=4))
    command = Command("run", "--camera", str(clip), "--realtime", "--loop", "--output", "rec.mp4", "--no-preview",
                      cwd=tmp_path)
    try:
        command.wait_for("recording rec.mp4")
        yield command, tmp_path / "rec.mp4"
    finally:
        command.kill()


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_second_ctrl_c_still_finalises_the_recording(recording_run) -> None:
    command, rec = recording_run
    command.proc.send_signal(signal.SIGINT)
    command.wait_for("interrupted: stopping")  # the first press is taken; the second is its own press
    command.proc.send_signal(signal.SIGINT)
    assert command.finish() == 130, "\n".join(command.lines)
    boxes = mp4_boxes(rec)
    assert "moof" not in boxes and boxes.index("moov") < boxes.index("mdat"), ("an ordinary MP4", boxes)
    assert decoded_frames(rec) >= 1
    assert sorted(p.name for p in rec.parent.iterdir()) == ["clip.mp4", "rec.mp4"], "no half-made file is left"
    assert not any("exiting now" in line for line in command.lines), command.lines
    assert sum("interrupted" in line for line in command.lines) == 1, command.lines


def wait_for_a_fragment(path: Path) -> None:
    """Until the recording's first fragment (about a second of video) is on disk: what an exit at once keeps."""
    deadline = time.monotonic() + WAIT_S
    while not (path.exists() and "moof" in mp4_boxes(path)):
        assert time.monotonic() < deadline, f"{path} has no fragment after {WAIT_S} s"
        time.sleep(0.05)  # polls the file; the condition, not the interval, decides


def test_a_third_ctrl_c_exits_at_once_and_leaves_a_playable_file(recording_run) -> None:
    command, rec = recording_run
    wait_for_a_fragment(rec)
    command.proc.send_signal(signal.SIGINT)
    command.wait_for("interrupted: stopping")
    command.proc.send_signal(signal.SIGINT)
    # Either the recording is still being finished (the command says so, and a third press exits at once), or it
    # was done before the second press was handled (the command then exits at once on it).
    said = command.wait_for("finishing rec.mp4 first", "exiting now", end_ok=True)
    if said is not None and "finishing rec.mp4 first" in said:
        assert said == ("fomm-live: finishing rec.mp4 first; press Ctrl-C again to exit at once (it then stays a "
                        "fragmented MP4, which plays)")
        command.proc.send_signal(signal.SIGINT)
    code = command.finish()
    assert code == 130, "\n".join(command.lines)
    assert rec.exists(), ("\n".join(command.lines), sorted(p.name for p in rec.parent.iterdir()))
    assert decoded_frames(rec) >= 1, "the recording plays, fragmented or not"
    assert [p.name for p in rec.parent.iterdir() if "partial" in p.name] == [], "no half-made file is left"


def test_the_handler_waits_once_for_an_unfinished_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The handler alone (os._exit replaced by a stand-in that records the code): with a recording that has frames
    and is not finalised, the second press waits, the third exits and removes the half-made ordinary copy."""
    import numpy as np

    import fomm_live.live.cli.interrupts as interrupts
    from fomm_live.live.output.recording import FragmentedRecording, unfinished_recordings

    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    monkeypatch.setattr(interrupts, "_interrupts", 0)
    monkeypatch.setattr(interrupts, "_waited", False)
    recording = FragmentedRecording(tmp_path / "rec.mp4", fps=25.0)
    try:
        recording.write(np.zeros((64, 64, 3), np.uint8), t=0.0, index=0)
        assert unfinished_recordings() == [tmp_path / "rec.mp4"]
        recording.partial.write_bytes(b"half a remux")
        with pytest.raises(KeyboardInterrupt):
            interrupts._on_interrupt(signal.SIGINT, None)
        interrupts._on_interrupt(signal.SIGINT, None)
        assert exits == [] and "finishing" in capsys.readouterr().err
        interrupts._on_interrupt(signal.SIGINT, None)
        assert exits == [130] and not recording.partial.exists()
        assert "exiting now" in capsys.readouterr().err
    finally:
        recording.close()
    assert unfinished_recordings() == [], "a closed recording is finalised"
    assert "moof" not in mp4_boxes(tmp_path / "rec.mp4")
