"""Frame capture: cameras, video files and streams behind one interface, read in a thread of their own (the driving
frame folders of ``animate`` are ``live.capture.driving``; which camera and backend, ``live.capture.cameras``).

Each frame is timestamped at capture (``time.perf_counter``) and carries its media time (position in a file, or the
capture time for a camera), which drives the time-based filters so that a file gives the same result at any speed.

Files are read as fast as the pipeline consumes them, every frame, none dropped, unless ``realtime`` paces them at
their own fps like a camera; then, as with a camera, the newest frame wins and stale ones are dropped and counted.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fomm_live.live.capture.cameras import (
    capture_backends,
    check_camera,
    check_device_path,
    parse_camera_spec,
    silent_opencv_log,
)
from fomm_live.live.errors import UserError
from fomm_live.live.media import cv2
from fomm_live.live.stats import PipelineStats

logger = logging.getLogger(__name__)


STREAM_TIMEOUT_MS = 5000  # a network stream silent this long is treated as lost
# A live frame whose brightest pixel (on a 1-in-16 grid) is under this is black: a closed privacy shutter or a covered
# lens reads 0-10 on the webcams we know of, a dark room still has highlights well above it.
BLACK_LEVEL = 16
BLACK_SECONDS = 2.0  # black this long is reported once (a blink of the shutter is not)


@dataclass
class CapturedFrame:
    """A frame as captured.

    Attributes:
        image: H x W x 3 uint8 RGB.
        index: Running number from 0 (over loops too).
        captured_at: ``time.perf_counter()`` when the frame was read.
        media_time: Seconds: position in the file (index / fps), or the capture time for live sources.
    """

    image: np.ndarray
    index: int
    captured_at: float
    media_time: float


class FrameSource(Protocol):
    """A camera, file or stream. ``read`` returns an RGB frame, or None at the end (or loss) of the stream."""

    fps: float
    width: int
    height: int
    is_file: bool
    description: str

    def read(self) -> np.ndarray | None: ...

    def rewind(self) -> bool: ...

    def close(self) -> None: ...


def parse_camera(spec: str | int) -> int | str:
    """``"0"`` -> device index 0; anything else stays a path or URL."""
    if isinstance(spec, int):
        return spec
    return int(spec) if spec.strip().isdigit() else spec


MJPG_BACKENDS = ("V4L2", "DirectShow")  # backends that take a FOURCC request before the size


class OpenCVSource:
    """A camera (index or device path), a video file or a stream URL read with OpenCV.

    Cameras open with the OS's backend (``live.capture.cameras.capture_backends``). On V4L2 and DirectShow MJPG is
    asked for before the size: uncompressed YUYV at 1280x720 is capped at 5-10 fps by USB 2 bandwidth on most
    webcams, MJPG gives 30. The granted size and rate are logged; a camera that grants a 0 size is refused.

    Args:
        spec: Device index, device path, file path or URL.
        resolution: (width, height) asked of a camera; the granted size is what is used.
        fps: Frame rate asked of a camera.
    """

    def __init__(self, spec: int | str, *, resolution: tuple[int, int] | None = None, fps: float | None = None) -> None:
        cv = cv2()
        self._cv = cv
        self.cap = None
        self.spec = parse_camera(spec)
        self.camera = parse_camera_spec(spec)
        self.is_file = self.camera.kind == "file"
        self.backend_name = "FFmpeg"
        if resolution is not None and (resolution[0] <= 0 or resolution[1] <= 0):
            raise UserError(f"a camera resolution of {resolution[0]}x{resolution[1]} is not possible; give both sides, "
                            "e.g. 1280x720")
        if self.camera.kind == "file":
            check_camera(self.camera)
            self.cap = cv.VideoCapture(str(self.spec))
        elif self.camera.kind == "stream":
            # A stream that stalls would block read() for ever; with a timeout it reads as lost, and the loop
            # reconnects while the outputs keep the last frame.
            self.cap = cv.VideoCapture(self.spec, cv.CAP_FFMPEG, [cv.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                                  cv.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        else:
            self._open_camera()
        if not self.cap.isOpened():
            self.close()
            if self.camera.is_camera:
                raise UserError(f"camera {self.spec} cannot be opened (missing, or busy in another program)")
            raise UserError(f"{self.spec} is not a video or stream OpenCV can open")
        if self.camera.is_camera:
            self._ask(resolution, fps)
        self.width = int(self.cap.get(cv.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self.cap.get(cv.CAP_PROP_FPS) or 0) or float(fps or 30)
        kind = {"file": "video", "stream": "stream"}.get(self.camera.kind, "camera")
        self.description = f"{kind} {self.spec} ({self.width}x{self.height} @ {self.fps:.3g} fps)"
        if self.width <= 0 or self.height <= 0:
            self.close()
            if self.is_file:
                raise UserError(f"{self.spec} is not a video OpenCV can read")
            raise UserError(f"{kind} {self.spec} reports a {self.width}x{self.height} picture; it cannot be used (try "
                            "another --resolution, or another camera)")
        if self.camera.is_camera:
            fourcc = int(self.cap.get(cv.CAP_PROP_FOURCC))
            code = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)) if fourcc > 0 else "?"
            logger.info("camera %s (%s): %dx%d @ %.3g fps, %s", self.spec, self.backend_name, self.width,
                        self.height, self.fps, code.strip() or "?")
            if resolution and (self.width, self.height) != tuple(resolution):
                logger.info("asked the camera for %dx%d, it granted %dx%d", *resolution, self.width, self.height)

    def _open_camera(self) -> None:
        """Open with the OS's backends in turn (OpenCV's own noise silenced: a missing camera is our error to say)."""
        cv = self._cv
        target: int | str = self.spec
        if self.camera.kind == "device":
            target = check_device_path(str(self.spec))
        for name, api in capture_backends():
            with silent_opencv_log():
                cap = cv.VideoCapture(target, api)
            if cap.isOpened():
                self.cap, self.backend_name = cap, name
                return
            cap.release()
        self.cap = cap

    def _ask(self, resolution: tuple[int, int] | None, fps: float | None) -> None:
        cv = self._cv
        if self.backend_name in MJPG_BACKENDS:
            self.cap.set(cv.CAP_PROP_FOURCC, cv.VideoWriter_fourcc(*"MJPG"))  # before the size: see the class doc
        if resolution:
            self.cap.set(cv.CAP_PROP_FRAME_WIDTH, resolution[0])
            self.cap.set(cv.CAP_PROP_FRAME_HEIGHT, resolution[1])
        if fps:
            self.cap.set(cv.CAP_PROP_FPS, fps)

    def read(self) -> np.ndarray | None:
        if self.cap is None:
            return None
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return None
        return self._cv.cvtColor(bgr, self._cv.COLOR_BGR2RGB)

    def rewind(self) -> bool:
        return bool(self.is_file and self.cap is not None and self.cap.set(self._cv.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class FrameQueue:
    """A bounded hand-over between two threads.

    ``put(item, lossless=True)`` waits for room (files: every frame is processed); ``lossless=False`` replaces the
    oldest waiting item when full (live sources: the newest frame wins) and reports the drop. ``close()`` wakes every
    waiter; ``get`` then returns None once the queue is empty.

    Args:
        maxsize: How many items may wait.
        merge: ``merge(dropped, newer)`` returns what to keep when ``newer`` replaces a waiting item, so that what the
            dropped one carried can travel on (default: ``newer``).
    """

    def __init__(self, maxsize: int = 2, *, merge: Callable[[object, object], object] | None = None) -> None:
        self._items: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._merge = merge
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item: object, *, lossless: bool, stop: threading.Event | None = None) -> int:
        """Returns how many waiting items were dropped to make room (0 or 1)."""
        with self._cond:
            dropped = 0
            while len(self._items) >= self._maxsize and not self.closed:
                if not lossless:
                    older = self._items.popleft()
                    item = item if self._merge is None else self._merge(older, item)
                    dropped += 1
                    break
                self._cond.wait(0.05)
                if stop is not None and stop.is_set():
                    return 0
            if self.closed:
                return dropped
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> object | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self.closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.05 if remaining is None else min(remaining, 0.05))
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def pending(self) -> bool:
        """Whether an item is waiting (``get`` would return at once)."""
        with self._cond:
            return bool(self._items)

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class CaptureThread(threading.Thread):
    """Reads a source into a FrameQueue until the stream ends, ``max_frames`` is reached or ``stop`` is set.

    Args:
        source: Where frames come from.
        queue: Where they go.
        stats: Receives ``capture`` stage times and the frames_in / frames_dropped counters.
        stop: Set to end capture.
        realtime: Pace a file at its fps like a camera (newest frame wins); cameras always are.
        loop: Start a file again at its end.
        max_frames: Stop after this many frames.
        reopen: For live sources, a function that opens the source again after it is lost (camera unplugged);
            capture retries with back-off while ``on_lost`` tells the pipeline.
        on_lost: Called with True when the source is lost, False when it is back.
    """

    def __init__(self, source: FrameSource, queue: FrameQueue, stats: PipelineStats, stop: threading.Event, *,
                 realtime: bool = False, loop: bool = False, max_frames: int | None = None,
                 reopen: Callable[[], FrameSource] | None = None,
                 on_lost: Callable[[bool], None] | None = None) -> None:
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.queue = queue
        self.stats = stats
        self.stop = stop
        self.paced = realtime or not source.is_file
        self.loop = loop
        self.max_frames = max_frames
        self.reopen = reopen
        self.on_lost = on_lost
        self.error: BaseException | None = None
        self.black_since: float | None = None
        self.black_reported = False

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = err
            logger.error("capture stopped: %s", err)
            logger.debug("capture stopped with:", exc_info=err)  # the traceback, with --debug
        finally:
            self.queue.close()

    def _reconnect(self) -> bool:
        """Reopen a lost live source with back-off until it returns or the run stops."""
        if self.reopen is None:
            return False
        if self.on_lost:
            self.on_lost(True)
        delay = 0.25
        while not self.stop.is_set():
            try:
                self.source.close()
                self.source = self.reopen()
                logger.info("source is back: %s", self.source.description)
                if self.on_lost:
                    self.on_lost(False)
                return True
            except (UserError, OSError) as err:
                logger.debug("reconnect failed: %s", err)
                self.stop.wait(delay)
                delay = min(delay * 2, 2.0)
        return False

    def _check_black(self, image: np.ndarray, now: float) -> None:
        """Say once when a live source has given only black frames for ``BLACK_SECONDS`` (and when it is back):
        the pipeline sees no face in them and holds the last animated frame, which alone would not say why."""
        if int(image[::16, ::16].max()) >= BLACK_LEVEL:
            if self.black_reported:
                logger.info("the %s gives a picture again", self.source.description)
            self.black_since, self.black_reported = None, False
            return
        self.black_since = self.black_since or now
        if not self.black_reported and now - self.black_since >= BLACK_SECONDS:
            self.black_reported = True
            logger.warning("the %s gives only black frames (privacy shutter closed, lens covered, or another program "
                           "driving it?); the output holds the last frame", self.source.description)

    def _run(self) -> None:
        index = 0
        file_index = 0
        start = time.perf_counter()
        fps = self.source.fps or 30.0
        lossless = not self.paced
        while not self.stop.is_set():
            if self.max_frames is not None and index >= self.max_frames:
                return
            if self.paced and self.source.is_file:
                due = start + file_index / fps  # a camera delivers frames at its own rate; a file waits its turn
                delay = due - time.perf_counter()
                if delay > 0 and self.stop.wait(delay):
                    return
            t0 = time.perf_counter()
            image = self.source.read()
            t1 = time.perf_counter()
            if image is None:
                if self.source.is_file:
                    if self.loop and self.source.rewind() and file_index > 0:
                        start += file_index / fps
                        file_index = 0
                        continue
                    return
                logger.warning("lost the %s", self.source.description)
                if self._reconnect():
                    continue
                return
            if not self.source.is_file:
                self._check_black(image, t1)
            media_time = (index / fps) if self.source.is_file else t1 - start
            frame = CapturedFrame(image, index, t1, media_time)
            self.stats.add("capture", (t1 - t0) * 1000)
            self.stats.count("frames_in")
            dropped = self.queue.put(frame, lossless=lossless, stop=self.stop)
            if dropped:
                self.stats.count("frames_dropped", dropped)
            index += 1
            file_index += 1
