"""Cameras without a camera: what ``--camera`` names, the OS's capture backend (with a faked platform: real devices on
Windows and macOS are unverified), names from a faked sysfs tree, device paths that are not cameras, MJPG asked
before the size, a zero size refused, reopening by the same name without probing, the ``cameras`` command, and the
camera checked before the model loads and opened after it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.clips import moving_frames, write_clip

import fomm_live.live.capture.cameras as cameras
from fomm_live.live.capture.cameras import (
    CameraSpec,
    capture_backends,
    check_camera,
    check_device_path,
    list_cameras,
    parse_camera_spec,
)
from fomm_live.live.capture.sources import OpenCVSource
from fomm_live.live.cli import main
from fomm_live.live.errors import UserError
from fomm_live.live.media import cv2


def test_camera_specs() -> None:
    assert parse_camera_spec("0") == CameraSpec("index", 0)
    assert parse_camera_spec(" 3 ") == CameraSpec("index", 3)
    assert parse_camera_spec("/dev/video2") == CameraSpec("device", "/dev/video2")
    assert parse_camera_spec("/dev/v4l/by-id/usb-Cam-video-index0").kind == "device"
    assert parse_camera_spec("rtsp://10.0.0.2/live").kind == "stream"
    assert parse_camera_spec("clip.mp4") == CameraSpec("file", "clip.mp4")


@pytest.mark.parametrize(("platform", "names"), [
    ("linux", ["V4L2"]), ("win32", ["DirectShow", "Media Foundation"]), ("darwin", ["AVFoundation"]),
    ("freebsd14", ["any"])])
def test_capture_backend_per_os(platform: str, names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert [name for name, _ in capture_backends()] == names


def fake_sysfs(root: Path, nodes: dict[str, tuple[str, int]]) -> Path:
    for node, (name, index) in nodes.items():
        (root / node).mkdir(parents=True)
        (root / node / "name").write_text(name + "\n")
        (root / node / "index").write_text(f"{index}\n")
    return root


@pytest.fixture()
def linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(sys, "platform", "linux")
    root = fake_sysfs(tmp_path / "video4linux", {"video0": ("Integrated Camera: Integrated C", 0),
                                                 "video1": ("Integrated Camera: Integrated C", 1),
                                                 "video4": ("fomm-live", 0)})
    monkeypatch.setattr(cameras, "SYSFS_V4L", root)
    return root


def test_names_come_from_sysfs_and_metadata_nodes_are_left_out(linux: Path, monkeypatch) -> None:
    listed = list_cameras(probe=False)
    assert [(c.index, c.path, c.name) for c in listed] == [(0, "/dev/video0", "Integrated Camera: Integrated C"),
                                                          (4, "/dev/video4", "fomm-live")]
    modes = {"/dev/video0": (1280, 720, 30.0), "/dev/video4": None}  # video4 busy: not listed as openable
    monkeypatch.setattr(cameras, "probe_mode", lambda target: modes[target])
    found = list_cameras()
    assert [c.line() for c in found] == ["0  /dev/video0  Integrated Camera: Integrated C  1280x720@30"]


def test_cameras_command_lists_one_line_each_or_says_none(linux: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cameras, "probe_mode", lambda target: (640, 480, 30.0))
    assert main(["cameras"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["0  /dev/video0  Integrated Camera: Integrated C  640x480@30",
                   "4  /dev/video4  fomm-live  640x480@30"]
    monkeypatch.setattr(cameras, "SYSFS_V4L", linux / "missing")
    assert main(["cameras"]) == 0
    assert capsys.readouterr().out.strip() == "no camera found"


def test_without_sysfs_the_device_nodes_are_listed(linux: Path, tmp_path: Path, monkeypatch) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("video2", "video0", "vhci", "video-meta"):
        (dev / name).write_bytes(b"")
    monkeypatch.setattr(cameras, "SYSFS_V4L", tmp_path / "no-sysfs")
    monkeypatch.setattr(cameras, "DEV", dev)
    assert [(c.index, c.path, c.name) for c in list_cameras(probe=False)] == [(0, str(dev / "video0"), ""),
                                                                              (2, str(dev / "video2"), "")]


def test_a_missing_index_is_refused_naming_what_is_there(linux: Path) -> None:
    check_camera(CameraSpec("index", 4))
    with pytest.raises(UserError, match=r"camera 7 not found; cameras here: 0 \(Integrated Camera"):
        check_camera(CameraSpec("index", 7))


@pytest.mark.parametrize("what", ["null", "regular", "folder", "missing", "link to null"])
def test_a_device_path_that_is_not_a_camera(what: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    path = {"null": "/dev/null", "missing": str(tmp_path / "video9")}.get(what, str(tmp_path / "node"))
    if what == "regular":
        Path(path).write_bytes(b"\x00" * 10)
    elif what == "folder":
        Path(path).mkdir()
    elif what == "link to null":
        Path(path).symlink_to("/dev/null")
    message = "not found" if what == "missing" else "is not a camera device"
    with pytest.raises(UserError, match=message):
        check_device_path(path)
    # Through --camera a regular file is a video and a folder is neither: each refused with its own line.
    message = {"regular": "is not a video that can be read", "folder": "is a folder, not a video",
               "missing": "camera or video not found"}.get(what, message)
    with pytest.raises(UserError, match=message):
        OpenCVSource(path)


class FakeCapture:
    """Stands in for cv2.VideoCapture on a camera: records what is asked of it, in order, and grants a size."""

    opened: list[tuple[object, int]] = []
    opens_with: set[int] | None = None  # API ids that open; None: all
    grant: tuple[int, int] | None = None  # the size granted whatever is asked

    def __init__(self, target, api=None, *params) -> None:
        FakeCapture.opened.append((target, api))
        self.api = api
        self.calls: list[tuple[str, float]] = []
        self.props = {cv2().CAP_PROP_FRAME_WIDTH: 640, cv2().CAP_PROP_FRAME_HEIGHT: 480, cv2().CAP_PROP_FPS: 30,
                      cv2().CAP_PROP_FOURCC: 0}
        FakeCapture.last = self

    def isOpened(self) -> bool:  # noqa: N802 - the OpenCV API
        return FakeCapture.opens_with is None or self.api in FakeCapture.opens_with

    def set(self, prop: int, value: float) -> bool:
        names = {cv2().CAP_PROP_FOURCC: "fourcc", cv2().CAP_PROP_FRAME_WIDTH: "width",
                 cv2().CAP_PROP_FRAME_HEIGHT: "height", cv2().CAP_PROP_FPS: "fps"}
        self.calls.append((names[prop], value))
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        if FakeCapture.grant and prop in (cv2().CAP_PROP_FRAME_WIDTH, cv2().CAP_PROP_FRAME_HEIGHT):
            return FakeCapture.grant[prop == cv2().CAP_PROP_FRAME_HEIGHT]
        return self.props[prop]

    def read(self):
        return True, np.zeros((480, 640, 3), np.uint8)

    def release(self) -> None:
        pass


@pytest.fixture()
def fake_capture(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cv2(), "VideoCapture", FakeCapture)
    FakeCapture.opened, FakeCapture.opens_with, FakeCapture.grant = [], None, None
    return FakeCapture


def test_v4l2_asks_mjpg_before_the_size(fake_capture, monkeypatch, caplog) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    caplog.set_level("INFO", logger="fomm_live.live.capture.sources")
    source = OpenCVSource("0", resolution=(1280, 720), fps=30)
    assert fake_capture.opened == [(0, cv2().CAP_V4L2)]
    names = [name for name, _ in fake_capture.last.calls]
    assert names == ["fourcc", "width", "height", "fps"]
    assert fake_capture.last.calls[0][1] == cv2().VideoWriter_fourcc(*"MJPG")
    assert (source.width, source.height, source.fps) == (1280, 720, 30)
    assert any("1280x720 @ 30 fps" in r.getMessage() and "V4L2" in r.getMessage() for r in caplog.records)


def test_windows_falls_back_to_media_foundation(fake_capture, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    fake_capture.opens_with = {cv2().CAP_MSMF}
    source = OpenCVSource("1", resolution=(1280, 720))
    assert fake_capture.opened == [(1, cv2().CAP_DSHOW), (1, cv2().CAP_MSMF)]
    assert source.backend_name == "Media Foundation"
    assert "fourcc" not in [name for name, _ in fake_capture.last.calls], "MJPG is asked only where it is honoured"


def test_a_zero_size_is_refused(fake_capture, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(UserError, match="0x480 is not possible"):
        OpenCVSource("0", resolution=(0, 480))
    fake_capture.grant = (0, 0)
    with pytest.raises(UserError, match="reports a 0x0 picture"):
        OpenCVSource("0")


def test_reopening_a_camera_tries_only_that_camera(fake_capture, monkeypatch) -> None:
    """A camera that cannot be opened (as when a reconnect tries too early) is retried by the same name: no probe of
    the other indices, one attempt per backend of the OS."""
    monkeypatch.setattr(sys, "platform", "win32")
    fake_capture.opens_with = set()
    with pytest.raises(UserError, match="camera 2 cannot be opened"):
        OpenCVSource("2")
    assert fake_capture.opened == [(2, cv2().CAP_DSHOW), (2, cv2().CAP_MSMF)]


def test_the_camera_is_checked_before_the_model_loads_and_opened_after(tmp_path: Path, monkeypatch) -> None:
    import fomm_live.live.capture.sources as capture
    import fomm_live.live.wiring as wiring

    order: list[str] = []
    real_backend, real_source = wiring.make_backend, capture.OpenCVSource

    def make_backend(*args, **kwargs):
        order.append("model")
        return real_backend(*args, **kwargs)

    def open_source(*args, **kwargs):
        order.append("camera")
        return real_source(*args, **kwargs)

    monkeypatch.setattr(wiring, "make_backend", make_backend)
    monkeypatch.setattr(capture, "OpenCVSource", open_source)
    with pytest.raises(UserError, match="camera or video not found"):
        main(["--camera", str(tmp_path / "gone.mp4"), "--no-preview", "--output", str(tmp_path / "o.mp4"), "--debug"])
    assert order == [], "a missing camera fails before the model loads"
    clip = write_clip(tmp_path / "clip.mp4", moving_frames(3, still=3))
    assert main(["--camera", str(clip), "--no-preview", "--output", str(tmp_path / "o.mp4"), "--max-frames", "3",
                 "--crop", "none"]) == 0
    assert order == ["model", "camera"]


class CountingCapture(FakeCapture):
    releases = 0

    def release(self) -> None:
        CountingCapture.releases += 1


@pytest.mark.parametrize("ending", ["max frames", "bad output", "bad model"])
def test_the_camera_is_released_exactly_once_on_every_way_out(ending: str, linux: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Camera 0 (a stand-in capture behind a faked sysfs) through the real command: released once whether the run
    ends normally or fails after opening it; never opened when the model fails to load."""
    from conftest import golden_dir

    monkeypatch.setattr(cv2(), "VideoCapture", CountingCapture)
    FakeCapture.opened, FakeCapture.opens_with, FakeCapture.grant = [], None, None
    CountingCapture.releases = 0
    folder = golden_dir("tiny")
    checkpoint = folder / "checkpoint.pth.tar"
    if ending == "bad model":
        checkpoint = tmp_path / "broken.pth.tar"
        checkpoint.write_bytes(b"not a checkpoint")
    output = str(tmp_path / ("o.flv" if ending == "bad output" else "o.mp4"))
    code = main(["--camera", "0", "--checkpoint", str(checkpoint), "--config", str(folder / "config.yaml"),
                 "--device", "cpu", "--crop", "none", "--no-preview", "--output", output, "--max-frames", "3"])
    assert code == (0 if ending == "max frames" else 1)
    opened = [target for target, _ in FakeCapture.opened]
    # A bad model fails before the camera opens; a bad output's suffix is refused before anything starts.
    assert opened == ([0] if ending == "max frames" else [])
    assert CountingCapture.releases == len(opened)
