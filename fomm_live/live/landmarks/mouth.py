"""The inside of an opening mouth, painted where the warp alone would stretch the lip line into a pale band.

When the mouth opens beyond the source's own opening, the inner-lip polygon is painted as a mouth: the source's own
mouth interior (teeth, if it shows them) carried along with the upper lip, and below it a dark cavity, as bright as
the source's lips allow, blended in as the opening grows.

Convention: landmarks are 478 x 3 in output pixels of a square frame (see ``live.landmarks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomm_live.live.landmarks.motion import similarity_fit
from fomm_live.live.landmarks.points import (
    INNER_LIP_POLYGON,
    INNER_LOWER_LIP,
    INNER_UPPER_LIP,
    MOUTH_CORNERS,
    OUTER_LIP_POLYGON,
)
from fomm_live.live.media import cv2

# Mouth interior: fully painted once the opening (mean inner-lip gap / mouth width) exceeds the source's by this.
MOUTH_FULL_OPENING = 0.12
# RGB of the mouth's cavity, scaled by how bright the source's lips are: near the lips, and at the back.
THROAT = np.array([36.0, 11.0, 14.0], np.float32)
THROAT_BACK = np.array([18.0, 5.0, 7.0], np.float32)
# The tongue, only on the floor of a wide open mouth, a low mound, half seen: a red, lighter tone
# over the whole lower half read as lip to the face mesh, which then found the lip gap 0.195 of the inter-ocular
# distance on an output whose moved lips were 0.262 apart (0.244 with the plain cavity).
TONGUE = np.array([120.0, 44.0, 52.0], np.float32)
TONGUE_OPACITY = 0.5  # a hint of it: opaque, it took 0.2 off the relative mouth amplitude the face mesh reads
# Openings (inner-lip gap over the mouth's width) between which the tongue and the lower teeth come into view:
# speech stays under about 0.37 (the speech clip of ``benchmarks.faces``), a wide open mouth reaches 0.64; from 0.38
# on they cost the photo 0.05 of the relative mouth amplitude on the known motion clip (tests/test_landmarks_3d.py).
WIDE = (0.5, 0.65)
DRAWN_LIP = 0.24  # a drawn face's lips around its opening, their width over the opening's height (0.16: the face mesh
# read the anime_a test face's wide open mouth at 0.5 of the driver's amplitude; 0.24: 0.75)
EDGE_SOFTNESS = 0.6  # gaussian sigma of the opening's edge, output pixels
RIM = 0.15  # the lips' shadow's width inside the mouth, over the opening's height (at most 1.5 pixels)
WALL = 0.4  # the lit band of the mouth's inner walls inside the lips, over the opening's height
WALL_COLOUR = np.array([140.0, 62.0, 62.0], np.float32)  # their colour just inside the lips, scaled by the light
# The lower teeth of a wide open mouth (``lower_teeth``). The face mesh reads pale pixels right above the lower lip
# as lip: on the photo it read the lower lip back at 0.87 of its moved thickness with these, 0.83 with teeth 0.14 of
# the opening high at 0.6 of the upper teeth's colour, 0.77 at 0.14 and 0.78 (the test asks 0.85).
LOWER_TEETH = 0.12  # the middle lower teeth's height, over the opening's height
LOWER_TEETH_COUNT = 6  # the lower front teeth in view
LOWER_TEETH_SPAN = 0.62  # how far across the opening (0 middle, 1 corner) the row reaches
LOWER_TEETH_SHADE = np.array([0.66, 0.64, 0.62], np.float32)  # their colour over the upper teeth's, per channel: in
# the shadow of the upper lip and teeth, warmed by the light the mouth's red walls throw back
UPPER_TEETH = 0.2  # a drawn face's upper teeth, over the opening's height
TEETH_COLOUR = np.array([224.0, 214.0, 198.0], np.float32)  # for a source showing no teeth, scaled by its light
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
    teeth: np.ndarray  # RGB float32 of its teeth (the lower row's colour)
    lip_colour: np.ndarray | None = None  # RGB float32 of a drawn face's lips: lips are drawn around its opening


def _mean_colour(image: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    size = image.shape[0]
    mask = np.zeros((size, size), np.uint8)
    cv2().fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, shift=4)
    if not mask.any():
        return np.array([150.0, 90.0, 90.0], np.float32)  # a typical lip colour, for a mouth out of frame
    return image[mask > 0].mean(0).astype(np.float32)


def build_mouth(image: np.ndarray, points: np.ndarray, *, drawn: bool = False) -> SourceMouth:
    """The source's lip brightness and the teeth in its own mouth opening: pale, unsaturated pixels inside the
    inner lips (teeth: saturation about 30-65 of 255, value above 130 on the bundled photo; lips and a drawn lip line
    inside the opening: saturation 100-150), so that what is carried into an opened mouth is a teeth row where the
    source shows teeth and nothing, leaving the dark cavity, where it does not.

    Args:
        image: size x size x 3 uint8 RGB source.
        points: Its 478 x 3 landmarks in output pixels.
        drawn: A drawn face (``live.landmarks.drawn.is_drawn``): no teeth are taken from it.
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
    if drawn:  # a pale drawn face's skin is as unsaturated as teeth, and its mesh mouth is not where it is drawn
        teeth[:] = 0.0
    teeth = cv2().GaussianBlur(teeth, (0, 0), 0.7)
    interior_mask = np.round(interior_mask * teeth).astype(np.uint8)
    shown = interior_mask > 128
    colour = image[shown].mean(0).astype(np.float32) if shown.sum() >= 8 else TEETH_COLOUR * min(light, 1.0)
    return SourceMouth(light=light, interior_mask=interior_mask, teeth=colour,
                       lip_colour=_drawn_lips(image, points) if drawn else None)


def _drawn_lips(image: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """The colour of a drawn mouth, found in the image: the most saturated reddish pixels between the nose and the
    chin (a drawn face's mesh mouth is not always where the mouth is drawn); None where there are none."""
    n = image.shape[0]
    xy = points[:, :2]
    width = float(np.linalg.norm(xy[MOUTH_CORNERS[0]] - xy[MOUTH_CORNERS[1]]))
    x0, x1 = np.clip(np.round([xy[13, 0] - 0.7 * width, xy[13, 0] + 0.7 * width]).astype(int), 0, n)
    y0, y1 = np.clip(np.round([xy[2, 1], xy[152, 1]]).astype(int), 0, n)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    patch = image[y0:y1, x0:x1]
    hsv = cv2().cvtColor(np.ascontiguousarray(patch), cv2().COLOR_RGB2HSV).reshape(-1, 3).astype(np.float32)
    # Red to pink (OpenCV hue 0..180): brown hair's hue is about 8-12, so only the reds either side of 0 count.
    red = ((hsv[:, 0] < 5) | (hsv[:, 0] > 160)) & (hsv[:, 1] > 90) & (hsv[:, 2] > 80)
    if red.sum() < 6:
        return None
    pixels = patch.reshape(-1, 3)[red]
    value = hsv[red, 2]
    return np.median(pixels[value >= np.median(value)], 0).astype(np.float32)  # the lips, not their dark line


def _lip_line(points: np.ndarray, lip: tuple, xs: np.ndarray) -> np.ndarray:
    """y of an inner lip's line under each x (held flat beyond the corners)."""
    xy = points[list(lip), :2]
    order = np.argsort(xy[:, 0])
    return np.interp(xs, xy[order, 0], xy[order, 1])


def lower_teeth(s: np.ndarray, t: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """The lower front teeth of a wide open mouth, where the photo shows none: ``(coverage, shade)``, h x w each.

    LOWER_TEETH_COUNT crowns across the front of the mouth (a gap between the two middle ones at s = 0), each
    rounded at its tip, tallest in the middle (LOWER_TEETH of the opening) and lower towards the sides, where the
    row curves back; a dark line between neighbours, and in the lips' and upper teeth's shadow, greyer than the upper
    row and darker at the sides and towards the lip. A uniform pale band of the same height read as a thin line.

    Args:
        s: -1..1 across the opening; t: 0 at the upper inner lip, 1 at the lower (h x w each).
        gap: The opening's height, pixels.

    Returns:
        How much of each pixel is tooth (h x w float32) and the teeth's colour there over the upper teeth's
        (h x w x 3 float32).
    """
    across = np.abs(s) / LOWER_TEETH_SPAN  # 0 in the middle, 1 at the last tooth's outer side
    k = s * (LOWER_TEETH_COUNT / 2 / LOWER_TEETH_SPAN)  # which tooth, counted from the middle
    u = np.abs(2.0 * (k - np.floor(k)) - 1.0)  # 0 at a crown's middle, 1 at its sides
    crown = np.sqrt(np.clip(1.0 - u ** 4, 0.0, 1.0))  # h x w: a rounded tip, 0 between two teeth
    height = LOWER_TEETH * np.clip(1.0 - across ** 2, 0.0, 1.0) * crown  # over the opening's height
    above = (t - (1.0 - height)) * gap  # pixels into a tooth from its tip
    coverage = np.clip(above / 1.2, 0.0, 1.0) * np.clip((1.0 - across) / 0.15, 0.0, 1.0)
    coverage *= np.clip((1.0 - u) / 0.25, 0.0, 1.0)  # the dark line between two teeth
    shade = (1.0 - 0.35 * across) * (1.0 - 0.25 * np.clip(above / np.maximum(height * gap, 1.0), 0.0, 1.0))
    return coverage.astype(np.float32), shade[..., None].astype(np.float32) * LOWER_TEETH_SHADE


def _smooth(v: float) -> float:
    v = float(np.clip(v, 0.0, 1.0))
    return v * v * (3 - 2 * v)


def paint_mouth(out: np.ndarray, moved: np.ndarray, source: np.ndarray, image: np.ndarray,
                mouth: SourceMouth) -> None:
    """Paint the inside of a mouth opened beyond the source's own opening (in place): a cavity darker towards the
    back and under the upper lip, the source's own upper teeth carried with the upper lip, a tongue and lower teeth
    as it opens wide, its edge soft against the lips, which the warp keeps (the lower lip moves with the jaw).

    Args:
        out: size x size x 3 uint8 frame, changed in place.
        moved: 478 x 3 moved landmarks, output pixels.
        source: 478 x 3 landmarks of the photo, output pixels.
        image: size x size x 3 uint8 RGB source photo (its teeth are carried along with the upper lip).
        mouth: ``build_mouth`` of that photo.
    """
    opening = mouth_opening(moved)
    amount = (opening - mouth_opening(source)) / MOUTH_FULL_OPENING
    if amount <= 0.0:
        return
    amount = min(amount, 1.0)
    wide = _smooth((opening - WIDE[0]) / (WIDE[1] - WIDE[0]))  # 0 up to speech's openings, 1 wide open
    if mouth.lip_colour is not None:
        # A drawn mouth keeps a plain dark inside: on the anime test faces the face mesh took a tongue and lower
        # teeth for closed lips at the bottom of the opening and read a wide open mouth as shut (0.25 of the
        # driver's amplitude).
        wide = 0.0
    cv = cv2()
    n = out.shape[0]
    polygon = moved[list(INNER_LIP_POLYGON), :2]  # P x 2, output pixels
    margin = 3 + (0 if mouth.lip_colour is None else int(np.ceil(DRAWN_LIP * np.ptp(polygon[:, 1]))) + 2)
    x0, y0 = np.floor(polygon.min(0)).astype(int) - margin
    x1, y1 = np.ceil(polygon.max(0)).astype(int) + margin + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, n), min(y1, n)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    h, w = y1 - y0, x1 - x0
    origin = np.array([x0, y0], np.float64)
    mask = np.zeros((h, w), np.uint8)
    cv.fillPoly(mask, [np.round((polygon - origin) * 16).astype(np.int32)], 255, cv.LINE_AA, shift=4)
    if mouth.lip_colour is not None:  # a drawn mouth is round: the mesh's lips on a drawn face made a box of it
        height = float(np.ptp(polygon[:, 1]))
        rounded = cv.GaussianBlur(mask, (0, 0), max(1.0, 0.2 * height)).astype(np.float32)
        mask = np.clip((rounded - 127.5) * 3.0 + 127.5, 0, 255).astype(np.uint8)  # a 1 px anti-aliased edge
    # Where each pixel is between the lips: t = 0 at the upper inner lip, 1 at the lower; s = -1..1 across.
    # float32 throughout: the per-pixel arithmetic below is most of this function's cost.
    xs = np.arange(x0, x1, dtype=np.float32)
    top = _lip_line(moved, INNER_UPPER_LIP, xs).astype(np.float32)  # w
    bottom = np.maximum(_lip_line(moved, INNER_LOWER_LIP, xs).astype(np.float32), top + 1.0)  # w
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]  # h x 1
    t = np.clip((ys - top) / (bottom - top), 0.0, 1.0)  # h x w
    left, right = polygon[:, 0].min(), polygon[:, 0].max()
    s = np.broadcast_to(np.clip((2 * xs - np.float32(left + right)) / np.float32(max(right - left, 1.0)), -1.0,
                                1.0), (h, w))
    gap = float((bottom - top).max())  # the opening's height, pixels
    # The cavity: darkest at the back (the middle, a little below the centre), lighter towards the lips that
    # let the light in, and in shadow under the upper lip.
    back = np.clip(np.sqrt(s ** 2 + ((t - 0.55) / 0.7) ** 2), 0.0, 1.0)[..., None]  # h x w x 1
    fill = (THROAT_BACK + (THROAT - THROAT_BACK) * back) * np.float32(mouth.light)
    fill *= (0.75 + 0.25 * np.clip(t / 0.3, 0.0, 1.0))[..., None]
    inner = cv.distanceTransform(mask, cv.DIST_L2, 3)  # h x w, pixels from the edge
    # Shaded from the lips inward: the mouth's inner walls, lit through the opening, show a warm red just inside
    # the lips that deepens into the dark back (a flat fill read as a dark maroon cut-out). The band's width grows
    # with the opening, and it is lightest in the lower half (the floor and the lower lip's inside face the light).
    depth = np.clip(inner / max(1.0, WALL * gap), 0.0, 1.0)  # h x w: 0 at the lips, 1 past the wall
    wall = (1.0 - depth) ** 1.5 * (1.0 - 0.8 * t)
    fill += (wall * amount)[..., None] * (WALL_COLOUR * np.float32(mouth.light) - fill)
    # The lips' own shadow along the edge: a dark rim where the cavity meets them (the face mesh reads the lips'
    # inner line from it: a lighter rim took 0.1-0.3 off the relative amplitude it measured), a pixel or two wide.
    fill *= (0.5 + 0.5 * np.clip(inner / max(1.0, RIM * gap), 0.0, 1.0))[..., None]
    # A tongue when wide open: a lit mound on the floor of the mouth, lighter at its top.
    if wide > 0.0:
        tongue = wide * np.clip(1.0 - (s / 0.7) ** 2 - ((1.0 - t) / 0.32) ** 2, 0.0, 1.0)
        tongue = TONGUE_OPACITY * np.clip(tongue * 3.0, 0.0, 1.0)[..., None]
        fill += tongue * (TONGUE * np.float32(mouth.light) * (0.8 + 0.25 * (1.0 - t))[..., None] - fill)
    # Lower teeth when wide: a row of crowns rising from the lower lip (see ``lower_teeth``).
    if wide > 0.0 and gap > 4:
        first = int(np.argmax((t > 1.0 - LOWER_TEETH).any(1)))  # the rows above the tallest tooth's tip have none
        row, shade = lower_teeth(s[first:], t[first:], gap)
        fill[first:] += (wide * row)[..., None] * (mouth.teeth * shade - fill[first:])
    if mouth.lip_colour is not None and gap > 4:  # a drawn face shows no teeth of its own: an upper row is drawn
        row = np.clip((UPPER_TEETH * (1.0 - np.abs(s) ** 2) - t) * gap / 1.2, 0.0, 1.0)
        row *= np.clip((0.7 - np.abs(s)) / 0.2, 0.0, 1.0)
        fill += row[..., None] * (mouth.teeth * (1.0 - 0.25 * np.abs(s))[..., None] - fill)
    # The source's own mouth interior (upper teeth), carried along with the upper lip by a 2-D similarity.
    upper = list(INNER_UPPER_LIP)
    scale, rot, shift = similarity_fit(source[upper, :2], moved[upper, :2])
    to_patch = np.column_stack([scale * rot, shift - origin])  # 2 x 3: source pixels -> patch pixels
    teeth = cv.warpAffine(image, to_patch, (w, h), flags=cv.INTER_LINEAR,
                          borderMode=cv.BORDER_REPLICATE).astype(np.float32)  # h x w x 3
    teeth_alpha = cv.warpAffine(mouth.interior_mask, to_patch, (w, h), flags=cv.INTER_LINEAR)
    teeth_alpha = teeth_alpha.astype(np.float32)[..., None] / 255  # h x w x 1
    fill += teeth_alpha * (teeth - fill)
    # A soft edge against the lips, feathered inwards (over the lips it darkened them). Kept narrow: feathered over
    # 4% of the opening's height, the lips' colour crept into the opening and the face mesh read the photo's mouth
    # 15% less open on the known motion clip of tests/test_landmarks_3d.py.
    soft = cv.GaussianBlur(mask.astype(np.float32), (0, 0), EDGE_SOFTNESS)
    soft = np.minimum(soft, mask.astype(np.float32) * 1.15)
    alpha = (amount / 255.0) * soft[..., None]  # h x w x 1
    region = out[y0:y1, x0:x1].astype(np.float32)
    if mouth.lip_colour is not None:  # a drawn face: lips around the opening, in its mouth's colour
        rim = max(1.5, DRAWN_LIP * gap)
        ring = cv.GaussianBlur(cv.dilate(mask, cv.getStructuringElement(cv.MORPH_ELLIPSE, (
            2 * round(rim) + 1, 2 * round(rim) + 1))).astype(np.float32), (0, 0), 0.6) / 255.0
        ring = (amount * np.clip(ring - mask.astype(np.float32) / 255.0, 0.0, 1.0))[..., None]
        region += ring * (mouth.lip_colour - region)
    out[y0:y1, x0:x1] = np.clip(region + alpha * (fill - region) + 0.5, 0, 255).astype(np.uint8)
