"""The inside of an opening mouth, painted where the warp alone would stretch the lip line into a pale band.

When the mouth opens beyond the source's own opening, the inner-lip polygon is painted as a mouth: the source's own
mouth interior (teeth, if it shows them) carried along with the upper lip, and below it a dark cavity, as bright as
the source's lips allow, blended in as the opening grows.

Convention: landmarks are 478 x 3 in output pixels of a square frame (see ``live.landmarks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from live.landmarks.motion import similarity_fit
from live.landmarks.points import INNER_LIP_POLYGON, INNER_LOWER_LIP, INNER_UPPER_LIP, OUTER_LIP_POLYGON
from live.media import cv2

# Mouth interior: fully painted once the opening (mean inner-lip gap / mouth width) exceeds the source's by this.
MOUTH_FULL_OPENING = 0.12
# RGB of the mouth's dark cavity, scaled by how bright the source's lips are. No tongue: a red, lighter tone over the
# lower half read as lip to the face mesh, which then found the lip gap 0.195 of the inter-ocular distance on an
# output whose moved lips were 0.262 apart (0.244 with the plain cavity), so the mouth seemed to open less than it did.
THROAT = np.array([40.0, 12.0, 15.0], np.float32)
TEETH_SATURATION = 110.0  # teeth are paler than this (HSV saturation, 0..255), fully so 40 below it
TEETH_VALUE = 110.0  # and brighter than this (HSV value), fully so 50 above it


def mouth_opening(points: np.ndarray) -> float:
    """Mean gap between the inner lips over the mouth's width (about 0 closed, 0.3-0.6 wide open).

    Args:
        points: N x 2 or N x 3 landmarks, any units (only x and y are used).
    """
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(xy[list(INNER_UPPER_LIP[1:-1])] - xy[list(INNER_LOWER_LIP[1:-1])], axis=1).mean()
    width = np.linalg.norm(xy[INNER_UPPER_LIP[0]] - xy[INNER_UPPER_LIP[-1]])
    return float(gap / max(width, 1e-9))


@dataclass
class SourceMouth:
    """What the mouth painting needs from one source, prepared once per source (``build_mouth``)."""

    light: float  # brightness of the source's lips, scaling the cavity's colours
    interior_mask: np.ndarray  # size x size uint8: the teeth in the source's own mouth opening, 255 where teeth


def _mean_colour(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    size = image.shape[0]
    mask = np.zeros((size, size), np.uint8)
    cv2().fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, shift=4)
    if not mask.any():
        return np.array([150.0, 90.0, 90.0], np.float32)  # a typical lip colour, for a mouth out of frame
    return image[mask > 0].mean(0).astype(np.float32)


def build_mouth(image: np.ndarray, points: np.ndarray) -> SourceMouth:
    """The source's lip brightness and the teeth in its own mouth opening: pale, unsaturated pixels inside the
    inner lips (teeth: saturation about 30-65 of 255, value above 130 on the bundled photo; lips and a drawn lip line
    inside the opening: saturation 100-150), so that what is carried into an opened mouth is a teeth row where the
    source shows teeth and nothing, leaving the dark cavity, where it does not.

    Args:
        image: size x size x 3 uint8 RGB source.
        points: Its 478 x 3 landmarks in output pixels.
    """
    n = image.shape[0]
    lips = _mean_colour(image, points[list(OUTER_LIP_POLYGON), :2])
    light = float(np.clip(lips @ np.array([0.299, 0.587, 0.114]) / 150.0, 0.5, 1.3))
    interior_mask = np.zeros((n, n), np.uint8)
    cv2().fillPoly(interior_mask, [np.round(points[list(INNER_LIP_POLYGON), :2] * 16).astype(np.int32)], 255,
                   cv2().LINE_AA, shift=4)
    hsv = cv2().cvtColor(image, cv2().COLOR_RGB2HSV).astype(np.float32)  # H x W x 3, S and V in 0..255
    teeth = (np.clip((TEETH_SATURATION - hsv[..., 1]) / 40.0, 0.0, 1.0)
             * np.clip((hsv[..., 2] - TEETH_VALUE) / 50.0, 0.0, 1.0))  # H x W, 1 where teeth-like
    teeth = cv2().GaussianBlur(teeth, (0, 0), 0.7)
    interior_mask = np.round(interior_mask * teeth).astype(np.uint8)
    return SourceMouth(light=light, interior_mask=interior_mask)


def paint_mouth(out: np.ndarray, moved: np.ndarray, source: np.ndarray, image: np.ndarray,
                mouth: SourceMouth) -> None:
    """Paint the inside of a mouth opened beyond the source's own opening (in place).

    Args:
        out: size x size x 3 uint8 frame, changed in place.
        moved: 478 x 3 moved landmarks, output pixels.
        source: 478 x 3 landmarks of the photo, output pixels.
        image: size x size x 3 uint8 RGB source photo (its teeth are carried along with the upper lip).
        mouth: ``build_mouth`` of that photo.
    """
    amount = (mouth_opening(moved) - mouth_opening(source)) / MOUTH_FULL_OPENING
    if amount <= 0.0:
        return
    amount = min(amount, 1.0)
    cv = cv2()
    n = out.shape[0]
    polygon = moved[list(INNER_LIP_POLYGON), :2]  # P x 2, output pixels
    x0, y0 = np.floor(polygon.min(0)).astype(int) - 2
    x1, y1 = np.ceil(polygon.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, n), min(y1, n)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    h, w = y1 - y0, x1 - x0
    origin = np.array([x0, y0], np.float64)
    mask = np.zeros((h, w), np.uint8)
    cv.fillPoly(mask, [np.round((polygon - origin) * 16).astype(np.int32)], 255, cv.LINE_AA, shift=4)
    # The cavity: dark, a little darker towards the lips that shade it; scaled by how bright the source's lips are,
    # so a dim photo gets a dim mouth.
    centre = polygon.mean(0) - origin
    half = np.maximum((polygon.max(0) - polygon.min(0)) / 2, 1.0)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)  # h x w each
    r2 = np.minimum(((xs - centre[0]) / half[0]) ** 2 + ((ys - centre[1]) / half[1]) ** 2, 1.0)[..., None]
    fill = THROAT * ((1.15 - 0.35 * r2) * mouth.light)  # h x w x 3
    # The source's own mouth interior (teeth), carried along with the upper lip by a 2-D similarity.
    upper = list(INNER_UPPER_LIP)
    scale, rot, shift = similarity_fit(source[upper, :2], moved[upper, :2])
    to_patch = np.column_stack([scale * rot, shift - origin])  # 2 x 3: source pixels -> patch pixels
    teeth = cv.warpAffine(image, to_patch, (w, h), flags=cv.INTER_LINEAR,
                          borderMode=cv.BORDER_REPLICATE).astype(np.float32)  # h x w x 3
    teeth_alpha = cv.warpAffine(mouth.interior_mask, to_patch, (w, h), flags=cv.INTER_LINEAR)
    teeth_alpha = teeth_alpha.astype(np.float32)[..., None] / 255  # h x w x 1
    fill += teeth_alpha * (teeth - fill)
    alpha = (amount / 255.0) * mask.astype(np.float32)[..., None]  # h x w x 1
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region + alpha * (fill - region) + 0.5, 0, 255).astype(np.uint8)
