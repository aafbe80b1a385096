"""Drawn faces: whether a source is drawn rather than photographed, and a drawn eye's outline found in the image.

A drawn face's skin is flat colour (``FLAT_FRACTION``); its eyes are often far larger than the face mesh's, so the
lids (``live.landmarks.lids``) cover the eye that was drawn, found in the image: the region around the mesh's eye that
is neither the skin's nor the hair's colour.

Convention: landmarks are 478 x 3 in output pixels of a square frame (see ``live.landmarks``); an eye's frame is
``live.landmarks.eyes.lid_frame``'s (u along the eye, v across it towards the lower lid, in eye widths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomm_live.live.landmarks.eyes import lid_frame, to_eye
from fomm_live.live.media import cv2

GRID = 41  # samples of u along each curve (a drawn eye's and a lid's)
FLAT_FRACTION = 0.3  # pixels around the eyes whose Laplacian is under 2 grey levels: above this, a drawn face
DRAWN_AREA = 1.5  # a drawn eye's outline is used when it holds this much more than the mesh's eye opening
SKIN_DISTANCE = 60  # RGB levels (summed) from the skin's colour beyond which a pixel belongs to a drawn eye
HAIR_BLOB = 0.3  # (of the mesh eye's width) hair-coloured areas at least this wide are hair; thinner, an outline


@dataclass
class DrawnEye:
    """A drawn eye's outline found in the image, in its eye frame (see the Convention)."""

    u: np.ndarray  # GRID samples along the eye
    top: np.ndarray  # GRID: v of the outline's top edge
    bottom: np.ndarray  # GRID: v of its bottom edge
    region: np.ndarray  # size x size uint8, 255 inside the drawn eye (its outline included, hair over it left out,
    # with a soft edge), source pixels
    skin: np.ndarray  # RGB float32 of the skin around it
    line: np.ndarray  # RGB float32 of its outline
    thickness: float  # of its upper outline, eye widths


def _flat(image: np.ndarray, points: np.ndarray) -> float:
    """The fraction of pixels around the eyes whose Laplacian is under 2 grey levels (a drawn face's flat colour)."""
    cv = cv2()
    n = image.shape[0]
    xy = points[[33, 263], :2]
    width = float(np.linalg.norm(xy[1] - xy[0]))
    x0, y0 = np.clip(np.round(xy.min(0) - (0.2 * width, 0.25 * width)).astype(int), 0, n - 1)
    x1, y1 = np.clip(np.round(xy.max(0) + (0.2 * width, 0.45 * width)).astype(int), x0 + 1, n)
    grey = cv.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv.COLOR_RGB2GRAY).astype(np.float32)
    return float((np.abs(cv.Laplacian(grey, cv.CV_32F, ksize=1)) < 2.0).mean())


def _patch_median(image: np.ndarray, xy: np.ndarray, r: int) -> np.ndarray:
    n = image.shape[0]
    x, y = np.clip(np.round(xy).astype(int), r, n - r - 1)
    return np.median(image[y - r:y + r + 1, x - r:x + r + 1].reshape(-1, 3), 0).astype(np.float32)


def find_drawn_eye(image: np.ndarray, points: np.ndarray, eye: tuple, sign: float) -> DrawnEye | None:
    """The drawn eye around one mesh eye (see ``DrawnEye``), or None where the image's eye is about the mesh's.

    Args:
        image: size x size x 3 uint8 RGB source.
        points: Its 478 x 3 landmarks in output pixels.
        eye: ``(corners, upper, lower)``; sign: its frame's (see ``Lid``).
    """
    cv = cv2()
    n = image.shape[0]
    corners, upper, lower = eye
    frame = lid_frame(points, corners, sign)
    origin, axes, width = frame
    r = max(1, round(n / 128))
    skin = np.median([_patch_median(image, points[i, :2], r) for i in (6, 197, 195)], 0)
    mesh_xy = points[:468, :2]
    face_h = np.ptp(mesh_xy[:, 1])
    hair = _patch_median(image, (points[10, 0], mesh_xy[:, 1].min() - 0.06 * face_h), 2 * r)
    x0, y0 = np.clip(np.floor(origin - 1.3 * width).astype(int), 0, n - 1)
    x1, y1 = np.clip(np.ceil(origin + 1.3 * width).astype(int), x0 + 2, n)
    patch = image[y0:y1, x0:x1].astype(np.int32)
    # Hair: its colour in blobs wider than a drawn outline (an outline may be drawn in the hair's colour, and it
    # belongs to the eye); what is neither skin nor hair, around the mesh's eye, is the drawn eye.
    hair_like = (np.abs(patch - hair).sum(2) < SKIN_DISTANCE).astype(np.uint8)
    k = 2 * max(1, round(HAIR_BLOB * width / 2)) + 1
    disk = cv.getStructuringElement(cv.MORPH_ELLIPSE, (k, k))
    blob = cv.morphologyEx(hair_like, cv.MORPH_OPEN, disk)
    blob = cv.dilate(blob, disk) & hair_like  # the strands' thin tips back (and an outline's end where it meets them)
    other = (np.abs(patch - skin).sum(2) > SKIN_DISTANCE) & (blob == 0)
    other = cv.morphologyEx(other.astype(np.uint8), cv.MORPH_OPEN, np.ones((2, 2), np.uint8))
    # Its pieces joined across a pixel's gap: where a drawn eye is small in the crop (a wide photo's face crop), the
    # outline's anti-aliased pixels near the skin's colour split it from the iris, and no piece was large enough.
    other = cv.morphologyEx(other, cv.MORPH_CLOSE, cv.getStructuringElement(cv.MORPH_ELLIPSE, (3, 3)))
    count, labels = cv.connectedComponents(other, connectivity=8)
    mesh_eye = np.zeros_like(other)
    polygon = points[[corners[0], *upper, corners[1], *lower[::-1]], :2] - (x0, y0)
    cv.fillPoly(mesh_eye, [np.round(polygon).astype(np.int32)], 1)
    if count < 2 or not mesh_eye.any():
        return None
    overlap = np.bincount(labels[mesh_eye > 0], minlength=count)
    overlap[0] = 0
    best = int(overlap.argmax())
    if overlap[best] < 0.3 * mesh_eye.sum():
        return None
    component = (labels == best).astype(np.uint8)
    contours, _ = cv.findContours(component, cv.RETR_EXTERNAL, cv.CHAIN_APPROX_NONE)
    filled = np.zeros_like(component)
    cv.drawContours(filled, contours, -1, 1, -1)
    if filled.sum() < DRAWN_AREA * mesh_eye.sum():
        return None
    ys, xs = np.nonzero(filled)
    uv = to_eye(np.column_stack([xs + x0, ys + y0]).astype(np.float64), frame)
    u = np.linspace(uv[:, 0].min(), uv[:, 0].max(), GRID)
    slot = np.clip(np.round((uv[:, 0] - u[0]) / (u[1] - u[0])).astype(int), 0, GRID - 1)
    top = np.full(GRID, np.inf)
    bottom = np.full(GRID, -np.inf)
    np.minimum.at(top, slot, uv[:, 1])
    np.maximum.at(bottom, slot, uv[:, 1])
    # Smooth curves (a quartic in u) through the columns' extremes: a drawn eye's outline is smooth, and the
    # lid's edge is drawn along them (pixel steps and a notch in a thin outline would show in it).
    seen = np.isfinite(top)
    top = np.polyval(np.polyfit(u[seen], top[seen], 4), u)
    bottom = np.polyval(np.polyfit(u[seen], bottom[seen], 4), u)
    # The skin's own colour: around the eye, near the first guess, outside the eye.
    near = (np.abs(patch - skin).sum(2) < 1.5 * SKIN_DISTANCE) & (cv.dilate(filled, np.ones((5, 5), np.uint8)) == 0)
    if near.sum() > 20:  # the lit half of it: drawn creases and shading around the eye are skin too, but darker
        pixels = patch[near]
        lum = pixels @ np.array([0.299, 0.587, 0.114])
        skin = np.median(pixels[lum >= np.median(lum)], 0).astype(np.float32)
    # The outline: the darkest third of the region's pixels in its top fifth; its thickness, their count per column.
    grey = patch @ np.array([0.299, 0.587, 0.114])
    below_top = np.full(filled.shape, np.inf)
    below_top[ys, xs] = uv[:, 1] - np.interp(uv[:, 0], u, top)
    upper_part = below_top < 0.2 * float((bottom - top).max())
    dark = upper_part & (grey < 0.5 * float(skin @ np.array([0.299, 0.587, 0.114])))
    line = np.median(patch[dark], 0).astype(np.float32) if dark.any() else np.array([40, 30, 30], np.float32)
    columns = max(1, int(dark.any(0).sum()))
    region = np.zeros((n, n), np.uint8)
    # The hair left out, with a soft edge (its anti-aliased edge half kept as drawn, not stair-stepped).
    hair_soft = cv.GaussianBlur(blob.astype(np.float32), (0, 0), 0.7)
    keep = cv.dilate(filled, np.ones((7, 7), np.uint8)) * np.clip(1.0 - 2.0 * hair_soft, 0.0, 1.0)
    region[y0:y1, x0:x1] = np.round(255 * keep).astype(np.uint8)
    return DrawnEye(u=u, top=top, bottom=bottom, region=region, skin=skin.astype(np.float32), line=line,
                    thickness=float(np.clip(dark.sum() / columns, 1.0, 0.12 * width)) / width)


def is_drawn(image: np.ndarray, points: np.ndarray) -> bool:
    """Whether a source is drawn (flat colour around the eyes, ``FLAT_FRACTION``) rather than photographed."""
    return _flat(image, points) > FLAT_FRACTION
