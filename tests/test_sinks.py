"""Sinks: the virtual camera wrapper against a stand-in pyvirtualcam (no loopback device here), frame checks, the
MP4 sink's tag, and key-code decoding of the preview window."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from live.sinks import FrameInfo, Mp4Sink, SinkUnavailable, VirtualCamSink, check_frame, key_name


class FakeCamera:
    """Records what pyvirtualcam.Camera would send to the device."""

    instances: list[FakeCamera] = []

    def __init__(self, width: int, height: int, fps: float, *, fmt=None, device=None, **kw) -> None:
        if FakeCamera.fail:
            raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found")
        self.args = (width, height, fps, fmt, device)
        self.device = "/dev/video9"
        self.sent: list[np.ndarray] = []
        self.closes = 0
        FakeCamera.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.sent.append(frame)

    def close(self) -> None:
        self.closes += 1

    fail = False


@pytest.fixture()
def fake_pyvirtualcam(monkeypatch: pytest.MonkeyPatch):
    module = types.SimpleNamespace(Camera=FakeCamera, PixelFormat=types.SimpleNamespace(RGB="RGB"))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", module)
    FakeCamera.instances.clear()
    FakeCamera.fail = False
    return module


def test_virtual_camera_sends_rgb_frames_of_its_size_and_closes_once(fake_pyvirtualcam) -> None:
    sink = VirtualCamSink(width=320, height=240, fps=30)
    camera = FakeCamera.instances[0]
    assert camera.args == (320, 240, 30, "RGB", None)
    frame = np.zeros((240, 320, 3), np.uint8)
    sink.send(frame, FrameInfo(0, 0.0))
    assert len(camera.sent) == 1 and camera.sent[0] is frame
    with pytest.raises(ValueError, match="expected a 320x240 frame, got 640x480"):
        sink.send(np.zeros((480, 640, 3), np.uint8), FrameInfo(1, 0.0))
    sink.close()
    sink.close()
    assert camera.closes == 1


def test_missing_virtual_camera_says_how_to_install_it(fake_pyvirtualcam, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeCamera.fail = True
    for platform, hint in (("linux", "modprobe v4l2loopback exclusive_caps=1 card_label=fomm-live"),
                           ("win32", "OBS Studio"), ("darwin", "OBS Studio")):
        monkeypatch.setattr(sys, "platform", platform)
        with pytest.raises(SinkUnavailable, match="no virtual camera") as err:
            VirtualCamSink(width=320, height=240, fps=30)
        assert hint in str(err.value)


def test_frame_checks() -> None:
    check_frame(np.zeros((4, 6, 3), np.uint8), (6, 4))
    with pytest.raises(ValueError, match="uint8"):
        check_frame(np.zeros((4, 6, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        check_frame(np.zeros((4, 6), np.uint8))


def test_key_codes_of_the_preview_window() -> None:
    assert key_name(-1) is None
    assert key_name(ord("c")) == "c" and key_name(ord("Q")) == "q" and key_name(27) == "esc"
    assert key_name(0x100000 | ord("h")) == "h", "modifier bits (Num Lock) are ignored"
    assert [key_name(c) for c in (65361, 65362, 65363, 65364)] == ["left", "up", "right", "down"]
    assert [key_name(c) for c in (2424832, 2490368, 2555904, 2621440)] == ["left", "up", "right", "down"]


def test_mp4_sink_tags_the_recording(tmp_path: Path) -> None:
    av = pytest.importorskip("av", reason="PyAV writes and reads the MP4")
    path = tmp_path / "rec.mp4"
    sink = Mp4Sink(path, fps=25)
    for i in range(5):
        sink.send(np.full((64, 96, 3), i * 40, np.uint8), FrameInfo(i, 0.0))
    assert not path.exists(), "the file appears under its name only once complete"
    sink.close()
    sink.close()
    with av.open(str(path)) as container:
        assert container.metadata.get("title") == "fomm-live recording"
        assert "synthetic" in container.metadata.get("comment", "").lower()
        assert sum(1 for _ in container.decode(video=0)) == 5
