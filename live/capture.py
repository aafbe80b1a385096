"""Frame capture: cameras, video files, streams and driving frame folders behind one interface, read in a thread of
their own.

Each frame is timestamped at capture (``time.perf_counter``) and carries its media time (position in a file, or the
capture time for a camera), which drives the time-based filters so that a file gives the same result at any speed.

Files are read as fast as the pipeline consumes them, every frame, none dropped, unless ``realtime`` paces them at
their own fps like a camera; then, as with a camera, the newest frame wins and stale ones are dropped and counted.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from live.errors import UserError
from live.media import cv2, open_driving
from live.stats import PipelineStats

logger = logging.getLogger(__name__)


STREAM_TIMEOUT_MS = 5000  # a network stream silent this long is treated as lost


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


def probe_cameras(max_index: int = 8) -> list[tuple[int, int, int, float]]:
    """(index, width, height, fps) of each camera device that opens, at its default mode (a quick probe; slow
    drivers may take a moment each)."""
    cv = cv2()
    found = []
    with silent_opencv_log():
        for index in range(max_index):
            cap = cv.VideoCapture(index)
            try:
                if cap.isOpened():
                    found.append((index, int(cap.get(cv.CAP_PROP_FRAME_WIDTH)),
                                  int(cap.get(cv.CAP_PROP_FRAME_HEIGHT)), float(cap.get(cv.CAP_PROP_FPS))))
            finally:
                cap.release()
    return found


def list_cameras(max_index: int = 8) -> list[int]:
    """Indices of the camera devices that open."""
    return [index for index, *_ in probe_cameras(max_index)]


@contextlib.contextmanager
def silent_opencv_log() -> Iterator[None]:
    """OpenCV logs an error for every camera index a probe finds missing; a probe expects that."""
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


class OpenCVSource:
    """A camera index, a video file or a stream URL read with OpenCV.

    Args:
        spec: Device index, file path or URL.
        resolution: (width, height) asked of a camera; the granted size is what is used.
        fps: Frame rate asked of a camera.
    """

    def __init__(self, spec: int | str, *, resolution: tuple[int, int] | None = None, fps: float | None = None) -> None:
        cv = cv2()
        self._cv = cv
        self.spec = parse_camera(spec)
        self.is_file = isinstance(self.spec, str) and Path(self.spec).exists()
        if isinstance(self.spec, str) and not self.is_file and "://" not in self.spec:
            raise UserError(f"camera or video not found: {self.spec}")
        if isinstance(self.spec, str) and self.is_file and not Path(self.spec).is_file():
            raise UserError(f"{self.spec} is a folder, not a video")
        if isinstance(self.spec, str) and "://" in self.spec:
            # A stream that stalls would block read() for ever; with a timeout it reads as lost, and the loop
            # reconnects while the outputs keep the last frame.
            self.cap = cv.VideoCapture(self.spec, cv.CAP_FFMPEG, [cv.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                                  cv.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        else:
            self.cap = cv.VideoCapture(self.spec)
        if not self.cap.isOpened():
            self.cap.release()
            if isinstance(self.spec, int):
                found = list_cameras()
                have = f"cameras that open here: {', '.join(map(str, found))}" if found else "no camera opens here"
                raise UserError(f"camera {self.spec} cannot be opened (missing or busy); {have}")
            raise UserError(f"{self.spec} is not a video or stream OpenCV can open")
        if not self.is_file:
            if resolution:
                self.cap.set(cv.CAP_PROP_FRAME_WIDTH, resolution[0])
                self.cap.set(cv.CAP_PROP_FRAME_HEIGHT, resolution[1])
            if fps:
                self.cap.set(cv.CAP_PROP_FPS, fps)
        self.width = int(self.cap.get(cv.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self.cap.get(cv.CAP_PROP_FPS) or 0) or float(fps or 30)
        kind = "video" if self.is_file else ("camera" if isinstance(self.spec, int) else "stream")
        self.description = f"{kind} {self.spec} ({self.width}x{self.height} @ {self.fps:.3g} fps)"
        if self.is_file and self.width == 0:
            self.close()
            raise UserError(f"{self.spec} is not a video OpenCV can read")
        if resolution and not self.is_file and (self.width, self.height) != tuple(resolution):
            logger.info("asked the camera for %dx%d, it granted %dx%d", *resolution, self.width, self.height)

    def read(self) -> np.ndarray | None:
        ok, bgr = self.cap.read()
        if not ok or bgr is None:
            return None
        return self._cv.cvtColor(bgr, self._cv.COLOR_BGR2RGB)

    def rewind(self) -> bool:
        return bool(self.is_file and self.cap.set(self._cv.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class FrameQueue:
    """A bounded hand-over between two threads.

    ``put(item, lossless=True)`` waits for room (files: every frame is processed); ``lossless=False`` replaces the
    oldest waiting item when full (live sources: the newest frame wins) and reports the drop. ``close()`` wakes every
    waiter; ``get`` then returns None once the queue is empty.
    """

    def __init__(self, maxsize: int = 2) -> None:
        self._items: collections.deque = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item: object, *, lossless: bool, stop: threading.Event | None = None) -> int:
        """Returns how many waiting items were dropped to make room (0 or 1)."""
        with self._cond:
            dropped = 0
            while len(self._items) >= self._maxsize and not self.closed:
                if not lossless:
                    self._items.popleft()
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

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - handed to the main thread, which reports it
            self.error = err
            logger.error("capture stopped: %s", err)
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
            media_time = (index / fps) if self.source.is_file else t1 - start
            frame = CapturedFrame(image, index, t1, media_time)
            self.stats.add("capture", (t1 - t0) * 1000)
            self.stats.count("frames_in")
            dropped = self.queue.put(frame, lossless=lossless, stop=self.stop)
            if dropped:
                self.stats.count("frames_dropped", dropped)
            index += 1
            file_index += 1


def resize_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """The whole image resized to size x size, its aspect not kept: the frames as given, like the original demo.
    An image that already has that size is returned as it is (so model-size inputs pass through bit for bit)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    cv = cv2()
    interpolation = cv.INTER_AREA if size < min(h, w) else cv.INTER_LINEAR  # area averaging: no aliasing when shrinking
    return cv.resize(image, (size, size), interpolation=interpolation)


class DrivingSource:
    """A driving video, or a folder of frames read in name order, as a lossless file source (``animate``).

    Args:
        path: Video file or folder of images.
        size: Resize every frame whole to size x size (``resize_to_square``); None: frames as read.

    Raises:
        UserError: missing, unreadable, or without a single frame.
    """

    is_file = True

    def __init__(self, path: str | Path, *, size: int | None = None) -> None:
        self.path = Path(path)
        self.size = size
        self._open()
        self.count = self._driving.count
        self.fps = self._driving.fps
        self._pending = self._next()
        if self._pending is None:
            self.close()
            raise UserError(f"{self.path} holds no frames; nothing was written")
        self.height, self.width = self._pending.shape[:2]
        self.description = f"{'frames' if self.path.is_dir() else 'video'} {self.path} ({self.width}x{self.height})"

    def _open(self) -> None:
        self._driving = open_driving(self.path)

    def _next(self) -> np.ndarray | None:
        frame = next(self._driving.frames, None)
        if frame is None or self.size is None:
            return frame
        return resize_to_square(frame, self.size)

    def read(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        return self._next()

    def rewind(self) -> bool:
        self.close()
        self._open()
        self._pending = None
        return True

    def close(self) -> None:
        self._driving.frames.close()  # a generator: releases the video capture; safe to call twice
