"""Where output frames go: the virtual camera, MP4 recordings, and a recording sink for tests (the preview window is
``live.output.window``).

Every sink takes H x W x 3 uint8 RGB frames of the output size through ``send(frame, info)`` and is closed once with
``close()`` (safe to call twice). A sink that cannot open raises ``SinkUnavailable`` with a message that says how to
fix it, so the run can go on with the other outputs.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from fomm_live.live.capture.cameras import platform_name
from fomm_live.live.errors import SinkUnavailable
from fomm_live.live.media import VIDEO_SUFFIXES, cv2, open_writer
from fomm_live.live.output.recording import FragmentedRecording, live_recording
from fomm_live.live.stats import PipelineStats

logger = logging.getLogger(__name__)

VIRTUALCAM_HELP = {
    "linux": "install v4l2loopback and load it: sudo modprobe v4l2loopback exclusive_caps=1 card_label=fomm-live",
    "win32": "install OBS Studio (26 or newer) and start its Virtual Camera once, then close OBS",
    "darwin": "install OBS Studio (26.1 or newer) and start its Virtual Camera once, then close OBS",
}


StillOutside = tuple[int, tuple[int, int, int, int]] | None  # FrameInfo.still_outside: (background, box) or None


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
        inbetween: An animated frame made from the newest keyframe moved by the face's motion since, not by the
            generator (``live.loop.inbetweens``); False for a keyframe and for a frame that is not animated.
        still_outside: (background, (x0, y0, x1, y1)): outside the box (pixels, x1 and y1 excluded) the frame is its
            background, the same in every frame naming the same ``background`` number (photo framing: the framed
            photo and the label; ``Compositor.still_outside``); None when not known. The browser output looks for
            what changed only inside the two frames' boxes.
    """

    index: int
    captured_at: float
    face: bool = True
    animated: bool = True
    preview: np.ndarray | None = None
    status: list[str] = field(default_factory=list)
    crop_box: tuple[float, float, float] | None = None
    inbetween: bool = False
    still_outside: StillOutside = None


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
    """Records the live loop to an MP4 file (tagged as synthetic) that survives any stop, encoded on its own thread
    (``live.output.recording.live_recording``: frames it has no room for are dropped and counted in ``stats``).

    Frames are timed by capture time, so the recording lasts as long as the input whatever the model's speed. A frame
    repeated while the camera was silent is not written: the last frame is held instead, until the next real frame
    or, at the end, until the last repeat.

    Args:
        path: The output file.
        fps: The input's frame rate.
        clock: ``capture`` (live sources and paced files) or ``frames`` (a file read losslessly: frame number / fps).
        stats: Counts the frames the encoder had no room for.
    """

    name = "mp4"

    def __init__(self, path: str | Path, *, fps: float, clock: str = "capture",
                 stats: PipelineStats | None = None) -> None:
        self.path = Path(path)
        self.recording = live_recording(self.path, fps=fps, clock=clock, stats=stats)
        self._last_index = -1

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        if info.index <= self._last_index:
            self.recording.hold_until(info.captured_at)
            return
        self._last_index = info.index
        self.recording.write(frame, t=info.captured_at, index=info.index)

    def close(self) -> None:
        self.recording.close()


class FileSink:
    """Every frame into a file output, for file-to-file animation: an MP4 (``*.mp4``, tagged as synthetic, fragmented
    while it is written so that a crash or a kill leaves a playable file, as ``Mp4Sink``'s recordings; ``*.mov`` and
    ``*.mkv`` are written whole at the end) or a folder that receives 00000.png, 00001.png, ... (anything else).

    Args:
        path: The output file or folder.
        fps: Frame rate of a video: each frame lasts 1 / fps.
    """

    def __init__(self, path: str | Path, *, fps: float) -> None:
        self.path = Path(path)
        self.is_video = self.path.suffix.lower() in VIDEO_SUFFIXES
        self.name = "mp4" if self.is_video else "png frames"
        self.fragmented = self.path.suffix.lower() == ".mp4"
        self.count = 0
        self.writer = (FragmentedRecording(self.path, fps=fps, clock="frames", metadata={"title": "fomm-live video"})
                       if self.fragmented else open_writer(self.path, fps=fps))

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        if self.fragmented:  # every frame, one after another at 1 / fps
            self.writer.write(frame, t=0.0, index=self.count)
        else:
            self.writer.write(frame)
        self.count += 1

    def close(self) -> None:
        self.writer.close()


# The pixel format each virtual camera backend uses inside (pyvirtualcam's ``native_fmt``): frames converted to it
# here (OpenCV's SIMD conversion) pass through pyvirtualcam unconverted. RGB is the fallback every backend takes.
NATIVE_FORMATS = {"linux": "I420", "windows": "NV12", "macos": "NV12"}
BUSY_WORDS = ("busy", "in use", "already started", "already running")


def to_pixel_format(frame: np.ndarray, fmt: str) -> np.ndarray:
    """An RGB frame in ``fmt``: RGB, BGR, I420 (planar Y, U, V) or NV12 (Y, then interleaved U V); even sizes for
    the 4:2:0 formats."""
    if fmt == "RGB":
        return frame
    if fmt == "BGR":
        return np.ascontiguousarray(frame[..., ::-1])
    yuv = cv2().cvtColor(frame, cv2().COLOR_RGB2YUV_I420)  # (H * 3 / 2) x W: Y, then U and V planes
    if fmt == "I420":
        return yuv
    if fmt == "NV12":
        h, w = frame.shape[:2]
        chroma = yuv[h:].reshape(2, h // 2 * w // 2)  # U plane, V plane
        return np.concatenate([yuv[:h].reshape(-1), chroma.T.reshape(-1)]).reshape(h * 3 // 2, w)
    raise ValueError(f"unsupported pixel format {fmt}")


def virtualcam_error(err: BaseException, device: str | None) -> SinkUnavailable:
    """One message holding every backend error pyvirtualcam collected (one line each, joined), and what to do: a
    device another program holds says so; a missing one says how to install it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    said = "; ".join(lines)
    if any(word in said.lower() for word in BUSY_WORDS):
        where = f"{device} " if device else ""
        return SinkUnavailable(f"the virtual camera {where}is in use by another program (another fomm-live, OBS "
                               f"or a second virtual camera tool); close it and start again ({said})")
    hint = VIRTUALCAM_HELP.get(sys.platform, VIRTUALCAM_HELP["linux"])
    return SinkUnavailable(f"no virtual camera ({said}); to get one, {hint}")


class VirtualCamSink:
    """A virtual camera that Zoom, Meet, Teams or OBS can select (pyvirtualcam: v4l2loopback on Linux, OBS Virtual
    Camera on Windows and macOS).

    The device is promised ``fps`` frames a second; the pipeline delivers what the model manages. A pacing thread
    sends the newest frame every 1/fps s (``perf_counter`` deadlines, as pyvirtualcam's ``sleep_until_next_frame``),
    repeating it when the pipeline is slower, so consumers that expect a steady rate (browsers drop a camera that goes
    quiet) see one; the rate the pipeline really achieves is logged once measured and again at close.

    Args:
        width: Output width.
        height: Output height.
        fps: Frame rate announced to the consumers.
        device: A specific device (e.g. /dev/video10), else the backend's first free one.
        mirror: Flip what the call shows left to right (``--mirror-output``).
    """

    name = "virtualcam"

    def __init__(self, *, width: int, height: int, fps: float, device: str | None = None,
                 mirror: bool = False) -> None:
        try:
            import pyvirtualcam
        except ImportError as err:
            raise SinkUnavailable("pyvirtualcam is not installed (pip install pyvirtualcam)") from err
        self.size = (width, height)
        self.fps = float(fps)
        self.mirror = mirror
        formats = ["RGB"]
        native = NATIVE_FORMATS.get(platform_name())
        if native and width % 2 == 0 and height % 2 == 0 and hasattr(pyvirtualcam.PixelFormat, native):
            formats.insert(0, native)
        errors = []
        self.camera = None
        for fmt in formats:
            try:
                self.camera = pyvirtualcam.Camera(width=width, height=height, fps=fps,
                                                  fmt=getattr(pyvirtualcam.PixelFormat, fmt), device=device)
                self.fmt = fmt
                break
            except (RuntimeError, ValueError, OSError) as err:
                errors.append(err)
                if not any(word in str(err).lower() for word in ("format", "fourcc")):
                    break  # not about the format: another format would fail the same way
        if self.camera is None:
            raise virtualcam_error(errors[-1], device) from errors[-1]
        self.backend = str(getattr(self.camera, "backend", "?"))
        logger.info("virtual camera: %s (%s backend), %dx%d %s at %.3g fps%s", self.camera.device, self.backend,
                    width, height, self.fmt, fps, ", mirrored" if mirror else "")
        self._closed = False
        self._lock = threading.Lock()
        self._latest: np.ndarray | None = None
        self._received = 0
        self._first_at: float | None = None
        self._rate_logged = False
        self.sent = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pace, name="virtualcam", daemon=True)
        self._thread.start()

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        if self.error is not None:
            raise RuntimeError(f"the virtual camera failed: {self.error}") from self.error
        check_frame(frame, self.size)
        if self.mirror:
            frame = frame[:, ::-1]
        converted = to_pixel_format(np.ascontiguousarray(frame), self.fmt)
        now = time.perf_counter()
        with self._lock:
            self._latest = converted
            self._received += 1
            self._first_at = self._first_at or now
            received, first = self._received, self._first_at
        if not self._rate_logged and now - first >= 5.0:
            self._rate_logged = True
            self._log_rate(received, now - first)

    def achieved_fps(self) -> float:
        """Frames a second the pipeline has delivered so far."""
        with self._lock:
            if self._first_at is None or self._received < 2:
                return 0.0
            return (self._received - 1) / max(time.perf_counter() - self._first_at, 1e-6)

    def _log_rate(self, received: int, seconds: float) -> None:
        rate = (received - 1) / max(seconds, 1e-6)
        if rate < 0.9 * self.fps:
            logger.info("virtual camera: the pipeline delivers %.1f fps; each frame is repeated to the %.3g fps the "
                        "device announces", rate, self.fps)

    def _pace(self) -> None:
        period = 1.0 / max(self.fps, 1.0)
        due = None
        while not self._stop.is_set():
            with self._lock:
                frame = self._latest
            if frame is None:  # nothing to show yet
                self._stop.wait(period / 4)
                continue
            try:
                self.camera.send(frame)
            except Exception as err:  # noqa: BLE001 - reported by the next send(), which the pipeline handles
                self.error = err
                return
            self.sent += 1
            now = time.perf_counter()
            due = now + period if due is None or now - due > period else due + period  # late: start afresh
            self._stop.wait(max(0.0, due - now))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=2.0)
        if self._thread.is_alive():  # a send blocked in the driver: closing under it could crash the process
            logger.error("the virtual camera did not stop within 2 s; it is left open")
            return
        if self._received > 1 and self._first_at is not None:
            logger.info("virtual camera: %d frames from the pipeline (%.1f fps), %d sent to the device",
                        self._received, self.achieved_fps(), self.sent)
        self.camera.close()

