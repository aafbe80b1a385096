"""What changed between two frames, for the browser output (``browser.py``): whether anything did
(``same_picture``), and the rectangle it sends instead of the whole frame (picture format ``jpeg-rect``).

With photo framing (the default) only the face's region of the output changes from frame to frame, about a quarter
of a 1280x720 frame; the rest is the still photo and the label. Sending that region alone as a JPEG costs both sides
less: fomm-live encodes a quarter of the pixels, the watching browser decodes a quarter.

Convention: a rectangle is (x, y, width, height) in pixels, x to the right, y down, from the frame's top-left corner.
It is aligned to JPEG's 16-pixel blocks (4:2:0's minimum coded unit): its corner is on a multiple of 16 and its far
edges are on a multiple of 16 or on the frame's edge, so that a picture of the rectangle alone has the same block grid
as a whole-frame picture would have there, and the page's copy of the frame shows the same pixels either way.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

BLOCK = 16  # JPEG 4:2:0's minimum coded unit, in pixels


class Rect(NamedTuple):
    """A rectangle of a frame, in pixels (see the module's Convention)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height


def changed_rect(new: np.ndarray, old: np.ndarray, block: int = BLOCK, within: Rect | None = None) -> Rect | None:
    """The smallest rectangle aligned to ``block`` that holds every pixel where ``new`` and ``old`` (H x W x C uint8,
    contiguous, the same shape) differ; None when they are equal. ``within``: the frames differ nowhere else (the
    caller knows it: ``FrameInfo.still_outside``), so only there is compared, grown to the block grid first (the
    result is the same): on the landmark loop's 1280x720 frames 0.27 against 0.39 ms p50 (2-core test CPU, load 5.4).

    Compared 8 bytes at a time where a row's bytes divide into whole 8-byte words at block edges (W a multiple of 8,
    so that a block of 16 pixels x 3 channels is exactly 6 words): at 1280x720 on the 2-core test CPU its steps took
    0.27 ms at load 2.4 (0.6-0.8 ms p50 on the live loop's frames at load 2-7), against 0.6 ms for OpenCV's absdiff
    then boundingRect and 5 ms for absdiff then cv2.reduce(MAX). Other widths compare byte by byte."""
    if new.shape != old.shape:
        raise ValueError(f"changed_rect: frames of different shapes, {new.shape} != {old.shape}")
    height, width = new.shape[:2]
    channels = new.shape[2] if new.ndim == 3 else 1
    row_bytes = width * channels
    word = 8 if row_bytes % 8 == 0 and (block * channels) % 8 == 0 else 1
    new_words = np.ascontiguousarray(new).reshape(height, row_bytes)
    old_words = np.ascontiguousarray(old).reshape(height, row_bytes)
    if word == 8:
        new_words, old_words = new_words.view(np.uint64), old_words.view(np.uint64)
    # Where to compare, in rows and words: the box's edges are on the block grid or the frame's edge, so that they
    # fall between words (a block's row is whole words when word == 8, and so is a row).
    box = Rect(0, 0, width, height) if within is None else align(within, width, height, block)
    if box.width <= 0 or box.height <= 0:
        return None
    first, last = box.x * channels // word, (box.x + box.width) * channels // word
    differs = new_words[box.y:box.y + box.height, first:last] != old_words[box.y:box.y + box.height, first:last]
    rows = np.flatnonzero(differs.any(axis=1))
    if not rows.size:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    columns = np.flatnonzero(differs[top:bottom].any(axis=0)) + first
    top, bottom = top + box.y, bottom + box.y
    # The pixels the first and last differing words touch (a word may hold parts of two or three pixels).
    left = int(columns[0]) * word // channels
    right = ((int(columns[-1]) + 1) * word - 1) // channels + 1
    return align(Rect(left, top, right - left, bottom - top), width, height, block)


def align(rect: Rect, width: int, height: int, block: int = BLOCK) -> Rect:
    """``rect`` grown to ``block``'s grid, clipped to a ``width`` x ``height`` frame."""
    left, top = rect.x // block * block, rect.y // block * block
    right = min(-(-(rect.x + rect.width) // block) * block, width)
    bottom = min(-(-(rect.y + rect.height) // block) * block, height)
    return Rect(left, top, right - left, bottom - top)


def same_picture(new: bytearray | np.ndarray, old: bytearray | np.ndarray | None, picture_format: str,
                 height: int, header_size: int) -> bool:
    """Whether a converted frame (``height`` rows of BGR, or an I420 message whose header is ``header_size`` bytes)
    shows the same picture as the one before (the header aside). Every 16th row first: a frame that moved differs
    there, known in 0.03 ms at 1280x720 (the whole comparison, 8 bytes at a time, took 0.4-0.5 ms of the picture
    thread's CPU a frame on the 2-core test CPU; byte by byte through memoryviews 1.6 ms); only a frame equal there is
    compared whole."""
    if old is None or len(new) != len(old):
        return False
    if picture_format == "i420":
        rows = height * 3 // 2
        new_rows = np.frombuffer(new, np.uint8, offset=header_size).reshape(rows, -1)
        old_rows = np.frombuffer(old, np.uint8, offset=header_size).reshape(rows, -1)
    else:
        new_rows, old_rows = np.asarray(new).reshape(height, -1), np.asarray(old).reshape(height, -1)
    if not np.array_equal(new_rows[::16], old_rows[::16]):
        return False
    if new_rows.shape[1] % 8 == 0:
        new_rows, old_rows = new_rows.view(np.uint64), old_rows.view(np.uint64)
    return bool(np.array_equal(new_rows, old_rows))


def whole_rect(size: tuple[int, int]) -> Rect:
    """The whole of a ``size`` (width, height) frame."""
    return Rect(0, 0, size[0], size[1])


def union(a: Rect, b: Rect) -> Rect:
    """The smallest rectangle that holds ``a`` and ``b`` (on the block grid when both are)."""
    left, top = min(a.x, b.x), min(a.y, b.y)
    right, bottom = max(a.x + a.width, b.x + b.width), max(a.y + a.height, b.y + b.height)
    return Rect(left, top, right - left, bottom - top)


def slices(rect: Rect) -> tuple[slice, slice]:
    """The rows and columns of ``rect``, to index an H x W (x C) array."""
    return slice(rect.y, rect.y + rect.height), slice(rect.x, rect.x + rect.width)
