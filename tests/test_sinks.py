"""Sinks: the virtual camera wrapper against a stand-in pyvirtualcam (no loopback device here): pixel formats, pacing,
mirroring, errors; frame checks, the MP4 sink's tag, and key-code decoding of the preview window."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from fomm_live.live.media import cv2
from fomm_live.live.output.sinks import (
    FrameInfo,
    Mp4Sink,
    SinkUnavailable,
    VirtualCamSink,
    check_frame,
    to_pixel_format,
)
from fomm_live.live.output.window import key_name


class StandInCamera:
    """A stand-in for pyvirtualcam.Camera (no loopback device here): records what would reach the device.

    ``fail`` makes construction raise that message; ``refuse`` lists pixel formats it rejects as pyvirtualcam does
    (a ValueError naming the format); ``send_error`` makes ``send`` raise.
    """

    instances: list[StandInCamera] = []
    fail: str | None = None
    refuse: tuple[str, ...] = ()
    send_error: str | None = None

    def __init__(self, width: int, height: int, fps: float, *, fmt=None, device=None, **kw) -> None:
        if StandInCamera.fail:
            raise RuntimeError(StandInCamera.fail)
        if fmt in StandInCamera.refuse:
            raise ValueError(f"'v4l2loopback' backend: unsupported pixel format {fmt}")
        self.args = (width, height, fps, fmt, device)
        self.device = device or "/dev/video9"
        self.backend = "v4l2loopback"
        self.sent: list[np.ndarray] = []
        self.closes = 0
        StandInCamera.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        if StandInCamera.send_error:
            raise RuntimeError(StandInCamera.send_error)
        self.sent.append(frame)

    def close(self) -> None:
        self.closes += 1


@pytest.fixture()
def standin_pyvirtualcam(monkeypatch: pytest.MonkeyPatch):
    formats = types.SimpleNamespace(RGB="RGB", BGR="BGR", I420="I420", NV12="NV12")
    module = types.SimpleNamespace(Camera=StandInCamera, PixelFormat=formats)
    monkeypatch.setitem(sys.modules, "pyvirtualcam", module)
    monkeypatch.setattr(sys, "platform", "linux")
    StandInCamera.instances.clear()
    StandInCamera.fail, StandInCamera.refuse, StandInCamera.send_error = None, (), None
    return module


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def picture(width: int = 320, height: int = 240) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2().GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (9, 9), 3)


def test_virtual_camera_gets_the_native_format_and_repeats_frames_to_its_rate(standin_pyvirtualcam) -> None:
    """On Linux the v4l2loopback backend works in I420: frames are converted here; a pipeline slower than the
    announced rate has its frames repeated (the stand-in records each send)."""
    sink = VirtualCamSink(width=320, height=240, fps=100)
    camera = StandInCamera.instances[0]
    assert camera.args == (320, 240, 100, "I420", None) and sink.fmt == "I420"
    frame = picture()
    sink.send(frame, FrameInfo(0, 0.0))
    assert wait_for(lambda: len(camera.sent) >= 3), "one pipeline frame is sent again until the next"
    assert all(sent is camera.sent[0] for sent in camera.sent)
    back = cv2().cvtColor(camera.sent[0], cv2().COLOR_YUV2RGB_I420)
    assert camera.sent[0].shape == (360, 320) and np.abs(back.astype(int) - frame).mean() < 3
    with pytest.raises(ValueError, match="expected a 320x240 frame, got 640x480"):
        sink.send(np.zeros((480, 640, 3), np.uint8), FrameInfo(1, 0.0))
    sink.close()
    sink.close()
    assert camera.closes == 1
    count = len(camera.sent)
    time.sleep(0.05)
    assert len(camera.sent) == count, "nothing is sent after close"


def test_nv12_is_y_then_interleaved_chroma() -> None:
    frame = picture(64, 32)
    i420 = to_pixel_format(frame, "I420")
    nv12 = to_pixel_format(frame, "NV12")
    assert nv12.shape == (48, 64) and np.array_equal(nv12[:32], i420[:32])
    u, v = i420[32:40].reshape(-1), i420[40:48].reshape(-1)
    assert np.array_equal(nv12[32:].reshape(-1)[0::2], u) and np.array_equal(nv12[32:].reshape(-1)[1::2], v)
    assert np.array_equal(to_pixel_format(frame, "BGR"), frame[..., ::-1])


def test_a_backend_refusing_the_native_format_gets_rgb(standin_pyvirtualcam) -> None:
    StandInCamera.refuse = ("I420",)
    sink = VirtualCamSink(width=320, height=240, fps=100)
    camera = StandInCamera.instances[0]
    assert sink.fmt == "RGB" and camera.args[3] == "RGB"
    frame = picture()
    sink.send(frame, FrameInfo(0, 0.0))
    assert wait_for(lambda: len(camera.sent) >= 1)
    assert np.array_equal(camera.sent[0], frame)
    sink.close()


def test_mirror_output_flips_what_the_call_sees(standin_pyvirtualcam) -> None:
    StandInCamera.refuse = ("I420",)
    sink = VirtualCamSink(width=320, height=240, fps=100, mirror=True)
    frame = picture()
    sink.send(frame, FrameInfo(0, 0.0))
    camera = StandInCamera.instances[0]
    assert wait_for(lambda: len(camera.sent) >= 1)
    assert np.array_equal(camera.sent[0], frame[:, ::-1])
    sink.close()


def test_every_backend_error_reaches_the_user(standin_pyvirtualcam) -> None:
    StandInCamera.fail = ("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]\n"
                          "'unitycapture' backend: not available on this platform")
    with pytest.raises(SinkUnavailable) as err:
        VirtualCamSink(width=320, height=240, fps=30)
    message = str(err.value)
    assert "No v4l2 loopback device found" in message and "'unitycapture' backend: not available" in message
    assert "\n" not in message, "one line"
    assert "modprobe v4l2loopback" in message


def test_a_device_held_by_another_program_says_so(standin_pyvirtualcam) -> None:
    StandInCamera.fail = "'v4l2loopback' backend: error opening /dev/video10: Device or resource busy"
    with pytest.raises(SinkUnavailable, match="virtual camera /dev/video10 is in use by another program") as err:
        VirtualCamSink(width=320, height=240, fps=30, device="/dev/video10")
    assert "Device or resource busy" in str(err.value)


def test_a_device_error_while_sending_fails_the_next_send(standin_pyvirtualcam) -> None:
    sink = VirtualCamSink(width=320, height=240, fps=100)
    StandInCamera.send_error = "write failed: No such device"
    sink.send(picture(), FrameInfo(0, 0.0))
    assert wait_for(lambda: sink.error is not None)
    with pytest.raises(RuntimeError, match="No such device"):
        sink.send(picture(), FrameInfo(1, 0.0))
    sink.close()


def test_missing_virtual_camera_says_how_to_install_it(standin_pyvirtualcam, monkeypatch: pytest.MonkeyPatch) -> None:
    StandInCamera.fail = "'v4l2loopback' backend: No v4l2 loopback device found"
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
        sink.send(np.full((64, 96, 3), i * 40, np.uint8), FrameInfo(i, i / 25))
    sink.send(np.full((64, 96, 3), 200, np.uint8), FrameInfo(4, 0.5))  # a repeat while the camera was silent
    sink.close()
    sink.close()
    with av.open(str(path)) as container:
        assert container.metadata.get("title") == "fomm-live recording"
        assert "synthetic" in container.metadata.get("comment", "").lower()
        frames = list(container.decode(video=0))
    assert len(frames) == 5, "a repeat is held, not written"
    assert float(frames[-1].pts * frames[-1].time_base) == pytest.approx(4 / 25)


def test_mirror_options_reach_the_loop_and_the_virtual_camera(standin_pyvirtualcam, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`--mirror` flips the input as the m key does; `--mirror-output` flips only what the virtual camera sends."""
    from helpers.clips import moving_frames, write_clip

    import fomm_live.live.loop.pipeline as pipeline
    import fomm_live.live.output.sinks as sinks
    from fomm_live.live.cli import main

    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, still=3))
    seen = {}
    real = pipeline.LivePipeline

    def spy(*args, **kwargs):
        made = real(*args, **kwargs)
        seen["mirror"] = made.controls.mirror
        return made

    def sink_spy(**kwargs):
        made = VirtualCamSink(**kwargs)
        seen["mirror_output"] = made.mirror
        return made

    monkeypatch.setattr(pipeline, "LivePipeline", spy)
    monkeypatch.setattr(sinks, "VirtualCamSink", sink_spy)
    StandInCamera.refuse = ("I420",)
    assert main(["--camera", str(clip), "--no-preview", "--output", "virtualcam", "--max-frames", "3", "--crop", "none",
                 "--mirror", "--mirror-output"]) == 0
    assert seen == {"mirror": True, "mirror_output": True}
    camera = StandInCamera.instances[0]
    assert camera.sent and camera.closes == 1
