"""Driving input for file-to-file animation (``fomm-live animate``): a video, or a folder of frames read in name order,
as a lossless file source for the live pipeline, with frames optionally resized whole to the model's square."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from live.errors import UserError
from live.media import cv2, open_driving


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
