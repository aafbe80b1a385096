"""Photo framing: the source photo cropped and scaled to the output size for a call, framed around the face.

With ``framing="photo"`` every output frame is the whole source photo at the output's size and aspect, covering it (no
black bars), with the animated face pasted back into it (``live.framing.pasteback``). The framing puts the face where a
webcam would: the face box about a third of the frame's height (``FACE_SHARE``) with its centre at ``FACE_CENTRE_Y`` of
the height (the eyes then sit near the upper third line). A photo too tight for that is used as it is: the largest
rectangle of the output's aspect inside it, as close to that placement as it allows.

Convention: rectangles are in edge coordinates, where pixel i spans [i, i + 1) and its centre is at i + 0.5, (x, y)
order, so that a scale maps edges onto edges exactly: an output edge coordinate U is ``(X - rect.x0) * scale``. A
square crop box (``live.face.CropBox``) has its centre in the same edge coordinates as ``crop_square`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomm_live.live.face import CropBox
from fomm_live.live.media import cv2

FACE_SHARE = 1 / 3  # face box height / frame height: a head and shoulders shot at a desk, as webcams frame it
FACE_CENTRE_Y = 0.4  # face box centre, fraction of the frame height from the top: eyes near the upper third line
FRAMINGS = ("photo", "face")


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in edge coordinates: top-left (x0, y0), width, height."""

    x0: float
    y0: float
    width: float
    height: float


@dataclass(frozen=True)
class Framing:
    """Where the output frame lies in the photo, and where the animated square lies in the output.

    Attributes:
        photo_rect: The part of the photo the output shows (the output's aspect), photo edge coordinates.
        output_size: (width, height) of the output.
        box: The animated square in output edge coordinates (x0, y0, side); it may reach past the frame's edges.
    """

    photo_rect: Rect
    output_size: tuple[int, int]
    box: tuple[float, float, float]

    @property
    def scale(self) -> float:
        """Output pixels per photo pixel."""
        return self.output_size[0] / self.photo_rect.width


def frame_rect(photo_shape: tuple[int, int], output_size: tuple[int, int], face: tuple[float, float, float] | None
               ) -> Rect:
    """The part of a photo that an output frame shows: the output's aspect, inside the photo (covering the output).

    Args:
        photo_shape: (height, width) of the photo.
        output_size: (width, height) of the output.
        face: (centre x, centre y, height) of the face box in photo pixels; None: the centred largest rectangle.
    """
    h, w = photo_shape
    out_w, out_h = output_size
    aspect = out_w / out_h
    fit_h = min(h, w / aspect)  # the tallest rectangle of the output's aspect that fits in the photo
    if face is None:
        return Rect((w - fit_h * aspect) / 2, (h - fit_h) / 2, fit_h * aspect, fit_h)
    cx, cy, face_h = face
    rect_h = min(face_h / FACE_SHARE, fit_h)  # a tighter photo: the face fills more of the frame
    rect_w = rect_h * aspect
    x0 = float(np.clip(cx - rect_w / 2, 0.0, w - rect_w))
    y0 = float(np.clip(cy - FACE_CENTRE_Y * rect_h, 0.0, h - rect_h))
    return Rect(x0, y0, rect_w, rect_h)


def make_framing(photo_shape: tuple[int, int], output_size: tuple[int, int], box: CropBox,
                 face: tuple[float, float, float] | None) -> Framing:
    """The framing of one avatar at one output size.

    Args:
        photo_shape: (height, width) of the photo.
        output_size: (width, height) of the output.
        box: The square the model animates, in photo pixels (``live.face.CropBox``).
        face: (centre x, centre y, height) of the face box; None (``crop="none"``): the centred rectangle.
    """
    rect = frame_rect(photo_shape, output_size, face)
    scale = output_size[0] / rect.width
    side = box.side * scale
    return Framing(rect, output_size, ((box.cx - box.side / 2 - rect.x0) * scale,
                                       (box.cy - box.side / 2 - rect.y0) * scale, side))


def render_framed(photo: np.ndarray, framing: Framing) -> np.ndarray:
    """The photo's part ``framing.photo_rect`` at the output size: H x W x 3 uint8 (the unanimated output frame).

    Area averaging when shrinking (a 12-megapixel photo to 1280 x 720 is a 2-4x shrink; bilinear alone would alias),
    bilinear when enlarging; sub-pixel exact either way.
    """
    cv = cv2()
    rect, (out_w, out_h) = framing.photo_rect, framing.output_size
    scale = framing.scale
    if scale < 1:
        # INTER_AREA works on whole pixels: cut the (slightly larger) integer window, shrink it, then shift by the
        # sub-pixel remainder with a bilinear warp (a shift of under one output pixel, no visible blur).
        x0, y0 = int(np.floor(rect.x0)), int(np.floor(rect.y0))
        x1 = min(photo.shape[1], int(np.ceil(rect.x0 + rect.width)))
        y1 = min(photo.shape[0], int(np.ceil(rect.y0 + rect.height)))
        window = photo[y0:y1, x0:x1]
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        small = cv.resize(window, size, interpolation=cv.INTER_AREA)
        sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
        # Output pixel u (centre u + 0.5) -> photo edge X = rect.x0 + (u + 0.5) / scale -> small pixel
        # (X - x0) * sx - 0.5.
        matrix = np.array([[sx / scale, 0, (rect.x0 - x0) * sx + 0.5 * sx / scale - 0.5],
                           [0, sy / scale, (rect.y0 - y0) * sy + 0.5 * sy / scale - 0.5]])
        return cv.warpAffine(small, matrix, (out_w, out_h), flags=cv.INTER_LINEAR | cv.WARP_INVERSE_MAP,
                             borderMode=cv.BORDER_REPLICATE)
    # Output pixel u -> photo pixel (rect.x0 + (u + 0.5) / scale) - 0.5.
    matrix = np.array([[1 / scale, 0, rect.x0 + 0.5 / scale - 0.5],
                       [0, 1 / scale, rect.y0 + 0.5 / scale - 0.5]])
    return cv.warpAffine(photo, matrix, (out_w, out_h), flags=cv.INTER_LINEAR | cv.WARP_INVERSE_MAP,
                         borderMode=cv.BORDER_REPLICATE)

