"""Composition of output frames: fitting the square model frame to the output size (with OpenCV on the host, or
with PyTorch where the model ran), the disclosure label every output carries by default, and HUD text."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from fomm_live.live.media import cv2

LABEL_TEXT = "AI-generated"
# The label's dark box: each level v becomes floor(0.4 v) = 2v // 5, read from a table (cv2.LUT) instead of a float
# round trip; the same levels as ``(box * 0.4).astype(np.uint8)`` for all 256 (``tests/test_label.py``).
_DARKEN = ((np.arange(256) * 2) // 5).astype(np.uint8)


class LabelLayout(NamedTuple):
    """Where the label goes on a frame: its dark box from (x0, y0) to the bottom-right corner, the text's origin,
    scale and thickness (OpenCV's Hershey simplex font)."""

    x0: int
    y0: int
    origin: tuple[int, int]
    scale: float
    thickness: int


def label_layout(height: int, width: int, text: str = LABEL_TEXT) -> LabelLayout:
    """The label's place on a ``width`` x ``height`` frame: about 1/25 of its height, at least legible at 256 x 256
    (x0 or y0 below 0 when the frame is too small to hold it)."""
    cv = cv2()
    scale = max(0.3, height / 700)
    thickness = max(1, round(scale * 1.5))
    (tw, th), base = cv.getTextSize(text, cv.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = max(2, height // 100)
    return LabelLayout(width - tw - 2 * margin, height - th - base - 2 * margin,
                       (width - tw - margin, height - base - margin), scale, thickness)


def add_label(frame: np.ndarray, text: str = LABEL_TEXT) -> np.ndarray:
    """Return a copy of an H x W x 3 uint8 frame with a small disclosure label in the bottom-right corner, on a dark
    box so it reads on any background (placed by ``label_layout``)."""
    cv = cv2()
    out = frame.copy()
    h, w = out.shape[:2]
    at = label_layout(h, w, text)
    if at.x0 < 0 or at.y0 < 0:
        return out  # frame too small to hold a legible label
    box = out[at.y0:h, at.x0:w]
    box[:] = cv.LUT(box, _DARKEN)
    cv.putText(out, text, at.origin, cv.FONT_HERSHEY_SIMPLEX, at.scale, (255, 255, 255), at.thickness, cv.LINE_AA)
    return out


def fit_to_output(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale a square frame to fit ``width`` x ``height`` and pad the rest with black (the aspect is kept).

    Returns the frame itself when it already has the output size.
    """
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    cv = cv2()
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interpolation = cv.INTER_AREA if scale < 1 else cv.INTER_LINEAR
    resized = cv.resize(frame, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    out[y0:y0 + new_h, x0:x0 + new_w] = resized
    return out


def draw_text_lines(frame: np.ndarray, lines: list[str], *, corner: str = "top-left") -> np.ndarray:
    """Draw HUD text lines on a dark band in a corner of a copy of ``frame``."""
    if not lines:
        return frame
    cv = cv2()
    out = frame.copy()
    h, w = out.shape[:2]
    scale = max(0.35, h / 900)
    thickness = 1
    line_h = int(cv.getTextSize("Ag", cv.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][1] * 1.9)
    width = max(cv.getTextSize(t, cv.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for t in lines) + 12
    height = line_h * len(lines) + 8
    x0 = 0 if corner.endswith("left") else max(0, w - width)
    y0 = 0 if corner.startswith("top") else max(0, h - height)
    band = out[y0:y0 + height, x0:x0 + width]
    band[:] = (band.astype(np.float32) * 0.35).astype(np.uint8)
    for i, text in enumerate(lines):
        cv.putText(out, text, (x0 + 6, y0 + 4 + line_h * (i + 1) - line_h // 4), cv.FONT_HERSHEY_SIMPLEX, scale,
                   (255, 255, 255), thickness, cv.LINE_AA)
    return out


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two frames next to each other at the height of ``right`` (the camera beside the avatar, hotkey o)."""
    cv = cv2()
    h = right.shape[0]
    scale = h / left.shape[0]
    left = cv.resize(left, (max(1, round(left.shape[1] * scale)), h), interpolation=cv.INTER_AREA)
    return np.concatenate([left, right], axis=1)


def _area_weights(src: int, dst: int):
    """dst x src weights of OpenCV's INTER_AREA shrink: each output pixel averages the input pixels it covers,
    partly covered ones by the covered fraction."""
    import torch

    scale = src / dst
    lo = torch.arange(dst, dtype=torch.float64) * scale  # dst: first input coordinate each output pixel covers
    hi = lo + scale
    left = torch.arange(src, dtype=torch.float64)  # src: input pixel j spans [j, j + 1)
    overlap = (torch.minimum(hi[:, None], left[None] + 1) - torch.maximum(lo[:, None], left[None])).clamp(min=0)
    return overlap / scale  # dst x src


def _linear_weights(src: int, dst: int):
    """dst x src weights of OpenCV's INTER_LINEAR: half-pixel centres, edge pixels repeated."""
    import torch

    x = (torch.arange(dst, dtype=torch.float64) + 0.5) * (src / dst) - 0.5  # dst: source coordinate
    x0 = torch.floor(x)
    frac = x - x0
    frac = torch.where(x0 < 0, torch.zeros_like(frac), frac)
    x0 = x0.clamp(0, src - 1).long()
    x1 = (x0 + 1).clamp(max=src - 1)
    weights = torch.zeros(dst, src, dtype=torch.float64)
    rows = torch.arange(dst)
    weights.index_put_((rows, x0), 1 - frac, accumulate=True)
    weights.index_put_((rows, x1), frac, accumulate=True)
    return weights  # dst x src


@functools.lru_cache(maxsize=16)
def _resize_weights(kind: str, src: int, dst: int, device: str):
    """The weights of one resize, made once per size and device (the output size rarely changes during a run)."""
    import torch

    weights = _area_weights(src, dst) if kind == "area" else _linear_weights(src, dst)
    return weights.to(device=device, dtype=torch.float32)  # dst x src


def fit_to_output_tensor(frame, width: int, height: int):
    """``fit_to_output`` in PyTorch, on the frame's device: a 3 x H x W (or 1 x 3 x H x W) uint8 or [0, 1] float
    square frame -> ``height`` x ``width`` x 3 uint8, scaled to fit and padded with black.

    The same resampling as the OpenCV version (area averaging to shrink, bilinear to enlarge) as two small weight
    matrices, so that the frame is fitted where the model ran and only the finished frame crosses to the host. A float
    frame is rounded to uint8 first, as ``tensor_to_image`` does, so both paths start from the same pixels; they then
    agree within one level (OpenCV's fixed-point rounding).
    """
    import torch

    if frame.ndim == 4:
        frame = frame[0]
    if frame.dtype != torch.uint8:
        frame = (frame.float().clamp(0, 1) * 255).round()  # 3 x H x W, the levels tensor_to_image gives
    _, h, w = frame.shape
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pixels = frame.float()
    if (new_w, new_h) != (w, h):
        kind = "area" if scale < 1 else "linear"
        rows = _resize_weights(kind, h, new_h, str(pixels.device))  # new_h x h
        cols = _resize_weights(kind, w, new_w, str(pixels.device))  # new_w x w
        pixels = torch.einsum("yh,chw,xw->cyx", rows, pixels, cols)  # 3 x new_h x new_w
    out = torch.zeros(height, width, 3, dtype=torch.uint8, device=frame.device)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    out[y0:y0 + new_h, x0:x0 + new_w] = pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
    return out  # height x width x 3 uint8
