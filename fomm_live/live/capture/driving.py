"""Driving input for file-to-file animation (``fomm-live animate``): a video, or a folder of frames read in name order,
as a lossless file source for the live pipeline, with frames optionally resized whole to the model's square."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fomm_live.live.errors import UserError
from fomm_live.live.media import IMAGE_SUFFIXES, check_video, cv2, read_image


def resize_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """The whole image resized to size x size, its aspect not kept: the frames as given, like the original demo.
    An image that already has that size is returned as it is (so model-size inputs pass through bit for bit)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    cv = cv2()
    interpolation = cv.INTER_AREA if size < min(h, w) else cv.INTER_LINEAR  # area averaging: no aliasing when shrinking
    return cv.resize(image, (size, size), interpolation=interpolation)


def read_frames(path: Path) -> tuple[Iterator[np.ndarray], int | None, float]:
    """The frames of a driving video file or folder of images (read in name order): (an iterator of H x W x 3 uint8
    RGB frames, their number when known in advance, the frame rate: 25 for folders, the original dataset's rate).
    The iterator is a generator: closing it releases the video."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return (read_image(p) for p in files), len(files), 25.0
    if not path.is_file():
        raise UserError(f"driving video not found: {path}")
    cv = cv2()
    capture = cv.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UserError(f"{path} is not a video OpenCV can read")
    count = int(capture.get(cv.CAP_PROP_FRAME_COUNT)) or None
    fps = capture.get(cv.CAP_PROP_FPS) or 25.0

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield cv.cvtColor(bgr, cv.COLOR_BGR2RGB)
        finally:
            capture.release()

    return frames(), count, float(fps)


def check_driving(path: str | Path) -> None:
    """Fail in one line, before the model loads, when the driving input cannot be read: a missing path, a folder
    without images, a file that is not a readable video (``live.media.check_video``).

    Raises:
        UserError: naming the path.
    """
    path = Path(path)
    if path.is_dir():
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            raise UserError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return
    check_video(path, what="driving video")


def open_driving(path: str | Path, *, size: int | None = None) -> DrivingSource:
    """A driving video or folder of frames as a lossless file source (``DrivingSource``)."""
    return DrivingSource(path, size=size)


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
        self._pending = self._next()
        if self._pending is None:
            self.close()
            raise UserError(f"{self.path} holds no frames; nothing was written")
        self.height, self.width = self._pending.shape[:2]
        self.description = f"{'frames' if self.path.is_dir() else 'video'} {self.path} ({self.width}x{self.height})"

    def _open(self) -> None:
        self._frames, self.count, self.fps = read_frames(self.path)

    def _next(self) -> np.ndarray | None:
        frame = next(self._frames, None)
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
        self._frames.close()  # a generator: releases the video capture; safe to call twice
