"""Camera devices: what ``--camera`` names, which OpenCV backend opens it on this OS, and which cameras exist.

``--camera`` takes a device index (``0``), a device path (``/dev/video0``, ``/dev/v4l/by-id/...``), a video file or a
stream URL. Cameras are opened with the backend of the OS (V4L2 on Linux, DirectShow then Media Foundation on Windows,
AVFoundation on macOS) instead of OpenCV's default search, which also tries backends such as Orbbec's ``obsensor``
that print errors of their own for every index they do not find. Probing (listing, checking that a camera exists)
runs with OpenCV's log silenced: a probe expects most indices to be missing.

On Linux cameras are found, with their names, in sysfs (``/sys/class/video4linux``) without opening anything; on
Windows and macOS indices are probed by opening them (the OS gives no names to OpenCV). Real devices on Windows and
macOS are unverified: only the backend choice is tested there, with a faked platform.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fomm_live.live.errors import UserError
from fomm_live.live.media import check_video, cv2

logger = logging.getLogger(__name__)

SYSFS_V4L = Path("/sys/class/video4linux")  # one folder per video4linux node: videoN/name, videoN/index
DEV = Path("/dev")
V4L_MAJOR = 81  # the character-device major number of video4linux nodes (Linux devices.txt)
PROBE_INDICES = 8  # indices probed where the OS lists nothing (Windows, macOS)


@dataclass(frozen=True)
class CameraSpec:
    """What ``--camera`` names.

    Attributes:
        kind: ``index``, ``device`` (a device path), ``file`` or ``stream``.
        value: The index, or the path or URL as given.
    """

    kind: str
    value: int | str

    @property
    def is_camera(self) -> bool:
        return self.kind in ("index", "device")


@dataclass(frozen=True)
class CameraInfo:
    """A camera found on this machine.

    Attributes:
        index: The device index (``--camera INDEX``).
        path: The device path (Linux), else None.
        name: The name the OS gives it ("" when it gives none).
        width: Default frame width, 0 when not probed.
        height: Default frame height, 0 when not probed.
        fps: Default frame rate, 0 when not probed.
    """

    index: int
    path: str | None
    name: str
    width: int = 0
    height: int = 0
    fps: float = 0.0

    def line(self) -> str:
        mode = f"{self.width}x{self.height}@{self.fps:.3g}" if self.width else "mode unknown"
        return f"{self.index}  {self.path or '-'}  {self.name or '(no name)'}  {mode}"


def platform_name() -> str:
    """``linux``, ``windows``, ``macos`` or ``other``: read from ``sys.platform`` at each call (tests fake it)."""
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform in ("win32", "cygwin"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "other"


def capture_backends() -> list[tuple[str, int]]:
    """(name, OpenCV API id) of the capture backends tried for cameras on this OS, in order.

    Windows: DirectShow first (it opens in well under a second and honours MJPG), Media Foundation as the fallback
    for cameras that only it sees. Elsewhere one backend; ``CAP_ANY`` only on an OS none is known for.
    """
    cv = cv2()
    return {"linux": [("V4L2", cv.CAP_V4L2)],
            "windows": [("DirectShow", cv.CAP_DSHOW), ("Media Foundation", cv.CAP_MSMF)],
            "macos": [("AVFoundation", cv.CAP_AVFOUNDATION)]}.get(platform_name(), [("any", cv.CAP_ANY)])


def parse_camera_spec(camera: str | int) -> CameraSpec:
    """Classify ``--camera``: ``"0"`` -> index 0, ``/dev/...`` (or a link to a device node) -> a device, ``x://`` ->
    a stream, else a file."""
    if isinstance(camera, int):
        return CameraSpec("index", camera)
    text = camera.strip()
    if text.isdigit():
        return CameraSpec("index", int(text))
    if "://" in text:
        return CameraSpec("stream", text)
    if text.startswith("/dev/") or _is_char_device(text):
        return CameraSpec("device", text)
    return CameraSpec("file", text)


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _node_name(node: str) -> str:
    try:
        return (SYSFS_V4L / node / "name").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def check_device_path(path: str) -> str:
    """A device path resolved to its node (``/dev/v4l/by-id/...`` -> ``/dev/video2``), checked to be a camera.

    Raises:
        UserError: missing, or not a video4linux character device (``/dev/null``, a regular file, a folder).
    """
    if not os.path.exists(path):
        raise UserError(f"camera device {path} not found (unplugged?); 'fomm-live cameras' lists the cameras here")
    resolved = os.path.realpath(path)
    mode = os.stat(resolved).st_mode
    if not stat.S_ISCHR(mode):
        raise UserError(f"{path} is not a camera device (not a character device); give a /dev/videoN path, an "
                        "index, or a video file's own path")
    if platform_name() == "linux" and os.major(os.stat(resolved).st_rdev) != V4L_MAJOR:
        raise UserError(f"{path} is not a camera device (not a video4linux node); 'fomm-live cameras' lists the "
                        "cameras here")
    return resolved


def linux_cameras() -> list[CameraInfo]:
    """Capture nodes listed in sysfs, with their names; metadata nodes (``index`` 1 and up: a second node of the same
    camera that gives no pictures) are left out."""
    if not SYSFS_V4L.is_dir():  # no sysfs (some containers): the device nodes, without names
        nodes = [p for p in DEV.glob("video*") if p.name[5:].isdigit()]
        return sorted((CameraInfo(int(p.name[5:]), str(p), "") for p in nodes), key=lambda c: c.index)
    found = []
    for node in SYSFS_V4L.iterdir():
        if not node.name.startswith("video") or not node.name[5:].isdigit():
            continue
        try:
            sub_index = int((node / "index").read_text().strip() or 0)
        except (OSError, ValueError):
            sub_index = 0
        if sub_index != 0:
            continue
        found.append(CameraInfo(int(node.name[5:]), f"/dev/{node.name}", _node_name(node.name)))
    return sorted(found, key=lambda c: c.index)


@contextlib.contextmanager
def silent_opencv_log() -> Iterator[None]:
    """OpenCV logs an error for every camera a probe finds missing; a probe expects that."""
    cv = cv2()
    logging_api = getattr(getattr(cv, "utils", None), "logging", None)
    if logging_api is None:
        yield
        return
    previous = logging_api.getLogLevel()
    logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_api.setLogLevel(previous)


def probe_mode(target: int | str) -> tuple[int, int, float] | None:
    """(width, height, fps) of a camera at its default mode, or None when it does not open (missing or busy)."""
    cv = cv2()
    with silent_opencv_log():
        for _, api in capture_backends():
            cap = cv.VideoCapture(target, api)
            try:
                if cap.isOpened():
                    return (int(cap.get(cv.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv.CAP_PROP_FRAME_HEIGHT)),
                            float(cap.get(cv.CAP_PROP_FPS) or 0))
            finally:
                cap.release()
    return None


def list_cameras(*, probe: bool = True, max_index: int = PROBE_INDICES) -> list[CameraInfo]:
    """The cameras that open here, with names where the OS gives them.

    Args:
        probe: Open each camera for its default mode (and leave out those that do not open: busy, or not a capture
            device); False: Linux lists sysfs nodes without opening them (other systems have no other way).
        max_index: Indices probed where the OS lists nothing.
    """
    if platform_name() == "linux":
        listed = linux_cameras()
        if not probe:
            return listed
        found = []
        for camera in listed:
            mode = probe_mode(camera.path)
            if mode is not None and mode[0] > 0:
                found.append(CameraInfo(camera.index, camera.path, camera.name, *mode))
        return found
    found = []
    for index in range(max_index):
        mode = probe_mode(index)
        if mode is not None and mode[0] > 0:
            found.append(CameraInfo(index, None, "", *mode))
    return found


def describe_found(cameras: list[CameraInfo]) -> str:
    if not cameras:
        return "no camera found here"
    return "cameras here: " + ", ".join(f"{c.index}{f' ({c.name})' if c.name else ''}" for c in cameras)


def check_camera(spec: CameraSpec) -> None:
    """Fail early, before a model loads, when ``--camera`` names a camera or file that is not there.

    A camera is looked up without being opened where the OS allows it (Linux); elsewhere it is opened and released
    at once. Streams are not checked here (a server may need a moment).

    Raises:
        UserError: one line naming what is missing and what is there.
    """
    if spec.kind == "device":
        check_device_path(str(spec.value))
    elif spec.kind == "index":
        if platform_name() == "linux":
            present = [c.index for c in linux_cameras()]
            if spec.value not in present:
                raise UserError(f"camera {spec.value} not found; {describe_found(linux_cameras())} "
                                "('fomm-live cameras' lists them; a video file works too: --camera PATH)")
        elif probe_mode(spec.value) is None:
            raise UserError(f"camera {spec.value} cannot be opened (missing or busy); "
                            f"{describe_found(list_cameras())}")
    elif spec.kind == "file":
        path = Path(str(spec.value))
        if not path.exists():
            raise UserError(f"camera or video not found: {spec.value} (a camera is an index or a /dev path)")
        if not path.is_file():
            raise UserError(f"{spec.value} is a folder, not a video")
        check_video(path, what="camera or video")
