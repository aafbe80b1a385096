"""Where output frames go: the virtual camera, the preview window, MP4 recordings, and a recording sink for tests.

Every sink takes H x W x 3 uint8 RGB frames of the output size through ``send(frame, info)`` and is closed once with
``close()`` (safe to call twice). A sink that cannot open raises ``SinkUnavailable`` with a message that says how to
fix it, so the run can go on with the other outputs.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from live.media import VIDEO_SUFFIXES, Mp4Writer, cv2, open_writer

logger = logging.getLogger(__name__)

VIRTUALCAM_HELP = {
    "linux": "install v4l2loopback and load it: sudo modprobe v4l2loopback exclusive_caps=1 card_label=fomm-live",
    "win32": "install OBS Studio (26 or newer) and start its Virtual Camera once, then close OBS",
    "darwin": "install OBS Studio (26.1 or newer) and start its Virtual Camera once, then close OBS",
}


class SinkUnavailable(RuntimeError):
    """A sink could not be opened; the message says how to make it available."""


@dataclass
class FrameInfo:
    """What the pipeline knows about an output frame.

    Attributes:
        index: Input frame number.
        captured_at: ``perf_counter`` time the input frame was captured.
        face: Whether a face was tracked in it.
        animated: False while the output is the unanimated source (before calibration).
        preview: The frame the preview window shows instead, with HUD overlays (None: same as the output).
        status: Short HUD text lines.
        crop_box: (centre x, centre y, side) of the face crop in the input frame, None before the first face.
    """

    index: int
    captured_at: float
    face: bool = True
    animated: bool = True
    preview: np.ndarray | None = None
    status: list[str] = field(default_factory=list)
    crop_box: tuple[float, float, float] | None = None


class Sink(Protocol):
    name: str

    def send(self, frame: np.ndarray, info: FrameInfo) -> None: ...

    def close(self) -> None: ...


def check_frame(frame: np.ndarray, size: tuple[int, int] | None = None) -> None:
    """Frames are H x W x 3 uint8; with ``size`` (width, height) they must have that size."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 uint8 frame, got {frame.dtype} {frame.shape}")
    if size is not None and (frame.shape[1], frame.shape[0]) != tuple(size):
        raise ValueError(f"expected a {size[0]}x{size[1]} frame, got {frame.shape[1]}x{frame.shape[0]}")


class RecordingSink:
    """Keeps every frame (and its info) in memory: for tests and benchmarks.

    Args:
        keep_frames: Store copies of the frames.
        keep_infos: Store the frames' infos (both off: only count, for long runs).
    """

    name = "recording"

    def __init__(self, *, keep_frames: bool = True, keep_infos: bool = True) -> None:
        self.keep_frames = keep_frames
        self.keep_infos = keep_infos
        self.frames: list[np.ndarray] = []
        self.infos: list[FrameInfo] = []
        self.count = 0
        self.closed = 0

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        check_frame(frame)
        self.count += 1
        if self.keep_frames:
            self.frames.append(frame.copy())
        if self.keep_infos:
            self.infos.append(info)

    def close(self) -> None:
        self.closed += 1


class Mp4Sink:
    """Records to an MP4 file (tagged as synthetic), finalised on ``close()``."""

    name = "mp4"

    def __init__(self, path: str | Path, *, fps: float) -> None:
        self.path = Path(path)
        self.writer = Mp4Writer(self.path, fps=fps, metadata={"title": "fomm-live recording"})

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.close()


class FileSink:
    """Every frame into a file output, for file-to-file animation: an MP4 (``*.mp4``, ``*.mov``, ``*.mkv``, tagged as
    synthetic) or a folder that receives 00000.png, 00001.png, ... (anything else).

    Args:
        path: The output file or folder.
        fps: Frame rate of an MP4.
    """

    def __init__(self, path: str | Path, *, fps: float) -> None:
        self.path = Path(path)
        self.is_video = self.path.suffix.lower() in VIDEO_SUFFIXES
        self.name = "mp4" if self.is_video else "png frames"
        self.writer = open_writer(self.path, fps=fps)

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.close()


class VirtualCamSink:
    """A virtual camera that Zoom, Meet, Teams or OBS can select (pyvirtualcam: v4l2loopback on Linux, OBS Virtual
    Camera on Windows and macOS).

    Args:
        width: Output width.
        height: Output height.
        fps: Frame rate announced to the consumers.
        device: A specific device (e.g. /dev/video10), else the backend's first free one.
    """

    name = "virtualcam"

    def __init__(self, *, width: int, height: int, fps: float, device: str | None = None) -> None:
        try:
            import pyvirtualcam
        except ImportError as err:
            raise SinkUnavailable("pyvirtualcam is not installed (pip install pyvirtualcam)") from err
        self.size = (width, height)
        try:
            self.camera = pyvirtualcam.Camera(width=width, height=height, fps=fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                              device=device)
        except (RuntimeError, ValueError, OSError) as err:
            hint = VIRTUALCAM_HELP.get(sys.platform, VIRTUALCAM_HELP["linux"])
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SinkUnavailable(f"no virtual camera ({first}); to get one, {hint}") from err
        logger.info("virtual camera: %s", self.camera.device)
        self._closed = False

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        check_frame(frame, self.size)
        self.camera.send(frame)  # the pipeline paces frames; no sleep here

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.camera.close()


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
    import os

    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class WindowSink:
    """The preview window. Must be driven from the main thread; ``poll_keys`` returns the hotkeys pressed."""

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

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        shown = info.preview if info.preview is not None else frame
        size = (shown.shape[1], shown.shape[0])
        if size != self._size:  # fit the window to the picture (the camera view beside it changes the width)
            self._size = size
            self.cv.resizeWindow(self.title, *size)
        self.cv.imshow(self.title, self.cv.cvtColor(shown, self.cv.COLOR_RGB2BGR))

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
            try:
                self.cv.destroyWindow(self.title)
                self.cv.waitKey(1)
            except self.cv.error:
                logger.debug("preview window already gone")
