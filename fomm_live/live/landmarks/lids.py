"""Lids: a closing eye covered by its own upper lid moved down, with a lash line at its edge and the crease kept.

The mesh does not close the eye: stretching the thin band of skin above the lashes over the eye blurred it and
smeared the lashes, and on a drawn face whose eye is twice the mesh's the mesh closed only part of it. So the upper
lid's landmarks (and the two rings of skin above them) are held where the photo has them relative to the eye
(``hold_open``), and the lid is painted over the warp (``paint_lid``), its edge at ``E(u) = U(u) + a (L(u) - U(u))``
between the open upper lid U and the moved lower lid L, ``a`` the lid's amount (``lid_amount``: linear in the
driver's eye closure, so every openness shows as a lid partly down, and half-closed is half-closed).

- A photo (``Lid.drawn`` is None): the lid comes down from under the crease (found in the photo: the darkest line
  above the lashes, or where their shadow ends) and ends at the eye's corners. Its skin is taken through the warp
  itself: its tone is the skin above the crease mirrored down across it, blurred, brought halfway to the tone of
  the photo's own lid skin that it covers (so neither a light patch nor a dark cap), darker towards its edge; its
  grain is the skin under the eye at 1:1 (a stretched skin drew vertical streaks). The lash line is drawn along its
  edge in the photo's lash colour, fading out towards the corners. The crease stays where it is, above the lid.
- A drawn face (its skin flat: ``FLAT_FRACTION``): the drawn eye's own outline is found in the image (the non-skin,
  non-hair region around the mesh's eye), and the lid covers that region in the face's skin colour down to its
  edge, where a lid line is drawn in the outline's colour and thickness.

Convention: landmarks are 478 x 3 in output pixels of a square frame (see ``live.landmarks``); an eye's frame has
its origin between the corners, u along the eye from the outer corner (-0.5) to the inner one (0.5) and v across it
towards the lower lid, both in eye widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomm_live.live.landmarks.drawn import GRID, DrawnEye, find_drawn_eye, is_drawn
from fomm_live.live.landmarks.eyes import curve, eye_opening, lid_frame, to_eye
from fomm_live.live.landmarks.points import EYES
from fomm_live.live.media import cv2

__all__ = ["is_drawn"]  # (re-exported: whether a source is drawn decides its lids)

# The eye's closure (the driver's: 1 - opening / its neutral opening) where the lid starts to come down (a dead band
# for the face mesh's jitter), and where it is shut (the face mesh reads a shut eye as a gap of about a fifth of the
# open one): the lid's amount is linear between them, so every openness shows.
LID_START = 0.03
LID_FULL = 0.8
COUPLE = (0.3, 0.6)  # the less closed eye's closure over the more closed one's: apart below, together above
# The rings of skin above each upper lid (outer corner to inner), held with it: mediapipe's next two eye contours.
RINGS = (((247, 30, 29, 27, 28, 56, 190), (113, 225, 224, 223, 222, 221, 189)),
         ((467, 260, 259, 257, 258, 286, 414), (342, 445, 444, 443, 442, 441, 413)))
CREASE_SEARCH = (0.1, 0.35)  # eye widths above the upper lid where the crease (the darkest line) is looked for
CREASE_RISE = 0.9  # (of the way from the lashes to the brightest skin)
CREASE_MARGIN = 0.04  # eye widths above the crease's line where the mirrored skin starts
LID_FADE = 0.1  # the lid's amount over which the painted lid fades in
SKIN_ABOVE = 0.12 # eye widths of skin above the crease mirrored onto the lid as it comes out from under the crease
LID_REACH = 0.5  # the lid's half length along the eye (eye widths): to the corners
LASH_OPACITY = 0.8
GRAIN_SIGMA = 0.06  # eye widths: the blur that splits the lid's tone from its grain
GRAIN_GAP = 0.3  # eye widths under the lower lid where the skin that gives the lid its grain starts
LID_SHADE = 0.06  # how much darker the painted lid is at its edge than the photo's lid skin under the crease
LID_GAIN = (0.75, 1.25)  # the range of the gain that gives the painted lid the photo's lid skin's tone
LID_FEATHER = 0.12  # eye widths (2.5 pixels at least) over which the lid's top fades into the skin under the crease
LID_ROUND = 8.0  # the exponent of the lid top's superellipse (2: an ellipse; higher: squarer, the corners covered)
ARC_SAG = 0.1  # a closed drawn eye's arc: how far its middle sags below its ends, over the drawn eye's width
ARC_FROM = 0.6  # the lid's amount from which a drawn lid's line moves onto that arc
CORNER_FADE = 0.12  # eye widths from a corner over which the lid and its lash line fade out


@dataclass
class Lid:
    """One eye's lid, prepared once per source (``build_lid``)."""

    eye: tuple  # (corners, upper, lower) landmark indices
    sign: float  # +1 or -1: makes v point towards the lower lid
    u: np.ndarray  # GRID samples along the eye
    upper: np.ndarray  # GRID: v of the photo's open upper lid
    lower: np.ndarray  # GRID: v of its lower lid
    band: np.ndarray  # GRID: the lid's skin band's height above it (to the crease), eye widths
    lash: np.ndarray  # RGB float32 of the photo's lash line
    drawn: DrawnEye | None


def lid_amount(closure: float) -> float:
    """How far the lid is down, 0 (open) to 1 (shut), for an eye's closure: linear from LID_START to LID_FULL."""
    return float(np.clip((closure - LID_START) / (LID_FULL - LID_START), 0.0, 1.0))


def driver_closures(driving: np.ndarray, neutral_openings: list[float], expression: float) -> list[float]:
    """Per eye (``EYES`` order), how closed the driver's eye is against its neutral pose (``eye_opening``'s
    turn-proof measure: a turn or a tilt leaves it as it is, so both eyes of a blink read alike), times the
    expression strength (0 for an eye shut at calibration).

    Args:
        driving: 478 x 3 normalised driving landmarks; neutral_openings: the neutral pose's turn-proof openings.
    """
    return [expression * (1.0 - eye_opening(driving, eye, turn_proof=True) / opening) if opening > 0.02 else 0.0
            for eye, opening in zip(EYES, neutral_openings, strict=True)]


def couple(closures: list[float]) -> list[float]:
    """Both eyes' closures, the less closed one drawn towards the other when both are closing (a blink that the face
    mesh reads unevenly in a head tilt); a wink, one eye far less closed, stays a wink."""
    if len(closures) != 2 or max(closures) <= 0.0:
        return list(closures)
    high, low = max(closures), min(closures)
    w = float(np.clip((max(low, 0.0) / high - COUPLE[0]) / (COUPLE[1] - COUPLE[0]), 0.0, 1.0))
    return [c + w * (high - c) for c in closures]


def hold_open(moved: np.ndarray, source: np.ndarray, lids: list[Lid | None]) -> np.ndarray:
    """``moved`` with each upper lid and the skin rings above it no lower, relative to the eye, than the photo has
    them (a copy): the lid is painted, not stretched. Opening wider than the photo is kept."""
    held = moved.copy()
    for lid, rings in zip(lids, RINGS, strict=True):
        if lid is None:
            continue
        corners, upper, _ = lid.eye
        ids = [*upper, *rings[0], *rings[1]]
        f0, f1 = lid_frame(source, corners, lid.sign), lid_frame(moved, corners, lid.sign)
        uv0, uv1 = to_eye(source[ids], f0), to_eye(moved[ids], f1)
        uv = np.column_stack([uv1[:, 0], np.minimum(uv1[:, 1], uv0[:, 1])])
        held[ids, :2] = f1[0] + f1[2] * uv @ f1[1]
    return held


def _crease(image: np.ndarray, frame: tuple, u: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Per u, the crease's height above the upper lid (eye widths), the same for all u (a crease follows the lid):
    the darkest line CREASE_SEARCH above the lid, over the eye's middle, where the brightness dips there; where it
    only rises away from the lashes (no crease shows), the height where it has risen CREASE_RISE of the way to the
    brightest skin in that range, so that the lashes' shadow is below it."""
    cv = cv2()
    origin, axes, width = frame
    grey = cv.GaussianBlur(cv.cvtColor(image, cv.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 0.6)
    heights = np.linspace(0.0, CREASE_SEARCH[1], 29)
    middle = np.abs(u) < 0.3
    uu, hh = np.meshgrid(u[middle], heights)  # H x G'
    vv = upper[middle][None, :] - hh
    xy = origin + width * (uu[..., None] * axes[0] + vv[..., None] * axes[1])  # H x G' x 2
    profile = cv.remap(grey, xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32), cv.INTER_LINEAR)
    profile = profile.mean(1)  # H: mean brightness at each height
    search = heights >= CREASE_SEARCH[0]
    inner = np.flatnonzero(search[1:-1]) + 1
    dips = [i for i in inner if profile[i] < profile[i - 1] and profile[i] <= profile[i + 1]
            and profile[i:].max() - profile[i] > 6.0]
    if dips:
        return np.full_like(u, float(heights[dips[0]]))
    peak = int(profile.argmax())
    risen = profile[:peak + 1] >= profile[0] + CREASE_RISE * (profile[peak] - profile[0])
    return np.full_like(u, float(np.clip(heights[int(risen.argmax())], *CREASE_SEARCH)))


def build_lid(image: np.ndarray, points: np.ndarray, eye: tuple, *, drawn_face: bool) -> Lid | None:
    """One source eye's lid (see ``Lid``); None when the eye is too small or out of frame.

    Args:
        image: size x size x 3 uint8 RGB source.
        points: Its 478 x 3 landmarks in output pixels.
        eye: ``(corners, upper, lower)``.
        drawn_face: Whether the source is drawn (``is_drawn``): then the drawn eye's outline is looked for.
    """
    corners, upper, lower = eye
    n = image.shape[0]
    xy = points[[*corners, *upper, *lower], :2]
    frame = lid_frame(points, corners, 1.0)
    if frame[2] < 6.0 or xy.min() < 0 or xy.max() > n - 1:
        return None
    sign = 1.0 if to_eye(points[list(lower)], frame)[:, 1].mean() > to_eye(points[list(upper)], frame)[:, 1].mean() \
        else -1.0
    frame = lid_frame(points, corners, sign)
    u = np.linspace(-LID_REACH, LID_REACH, GRID)
    lid_line = np.concatenate([[[-0.5, 0.0]], to_eye(points[list(upper)], frame), [[0.5, 0.0]]])
    upper_v = curve(lid_line, u)
    lower_v = curve(np.concatenate([[[-0.5, 0.0]], to_eye(points[list(lower)], frame), [[0.5, 0.0]]]), u)
    band = _crease(image, frame, u, upper_v)
    line = np.round(points[[corners[0], *upper, corners[1]], :2]).astype(int)
    pixels = image[np.clip(line[:, 1], 0, n - 1), np.clip(line[:, 0], 0, n - 1)].astype(np.float32)
    lash = pixels[np.argsort(pixels @ np.array([0.299, 0.587, 0.114]))[:max(1, len(pixels) // 3)]].mean(0)
    drawn = find_drawn_eye(image, points, eye, sign) if drawn_face else None
    return Lid(eye=eye, sign=sign, u=u, upper=upper_v, lower=lower_v, band=band, lash=lash, drawn=drawn)


def _polyline_mask(shape: tuple[int, int], xy: np.ndarray, thickness: float) -> np.ndarray:
    """A float32 0..1 mask of an anti-aliased polyline (``xy`` in the mask's pixels) of this thickness."""
    cv = cv2()
    mask = np.zeros(shape, np.uint8)
    cv.polylines(mask, [np.round(xy * 16).astype(np.int32)], False, 255, max(1, round(thickness)), cv.LINE_AA,
                 shift=4)
    return cv.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.4 + 0.15 * thickness)


def _through(pmap: np.ndarray, image: np.ndarray, origin: np.ndarray, width: float, axes: np.ndarray, pu: np.ndarray,
             pv: np.ndarray) -> np.ndarray:
    """The warped frame's colours (h x w x 3 float32) at these eye-frame positions, taken from the photo through
    the warp's backward map."""
    cv = cv2()
    q = (origin + width * (pu[..., None] * axes[0] + pv[..., None] * axes[1])).astype(np.float32)  # h x w x 2
    src = cv.remap(pmap, q[..., 0], q[..., 1], cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)  # h x w x 2
    return cv.remap(image, src[..., 0], src[..., 1], cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE).astype(
        np.float32)


def paint_lid(out: np.ndarray, pmap: np.ndarray, image: np.ndarray, moved: np.ndarray, lid: Lid,
              amount: float) -> None:
    """Paint one eye's lid, down by ``amount`` (0..1), over the warped frame (in place; see the module docstring).

    Args:
        out: size x size x 3 uint8 warped frame, changed in place.
        pmap: Its size x size x 2 float32 backward map (the source position of each output pixel).
        image: size x size x 3 uint8 RGB source.
        moved: 478 x 3 moved landmarks (``hold_open``'s), output pixels.
        lid: The eye's lid; amount: how far down it is.
    """
    cv = cv2()
    n = out.shape[0]
    corners, _, lower = lid.eye
    frame = lid_frame(moved, corners, lid.sign)
    origin, axes, width = frame
    drawn = lid.drawn
    if drawn is None:
        u, top = lid.u, lid.upper
        lower_v = curve(np.concatenate([[[-0.5, 0.0]], to_eye(moved[list(lower)], frame), [[0.5, 0.0]]]), u)
        # The lid leaves open (1 - amount) of the photo's opening above the moved lower lid: a lower lid that rises
        # (a squint) narrows the eye from below, and the upper lid comes down the less.
        edge = np.clip(lower_v - (1.0 - amount) * np.maximum(lid.lower - top, 0.0), top, np.maximum(lower_v, top))
        # The lid's top (under the crease) comes down to the eye's corners, round (a superellipse's quarter): the lid
        # ends where the eye does, with nothing past the corners (it reached past them, and showed as triangles).
        start = top - lid.band * np.sqrt(np.clip(1.0 - np.abs(u / 0.5) ** LID_ROUND, 0.0, 1.0))
    else:
        u, top = drawn.u, drawn.top
        edge = top + amount * (drawn.bottom + drawn.thickness + 0.03 - top)  # shut: over the lower outline too
        start = top - 0.05
    corners_xy = origin + width * (np.concatenate([u, u])[:, None] * axes[0]
                                   + np.concatenate([start, edge])[:, None] * axes[1])  # 2G x 2
    x0, y0 = np.clip(np.floor(corners_xy.min(0)).astype(int) - 3, 0, n - 1)
    x1, y1 = np.clip(np.ceil(corners_xy.max(0)).astype(int) + 4, x0 + 1, n)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)  # h x w each
    uv = (np.stack([xs, ys], -1) - origin) @ axes.T / width  # h x w x 2
    pu, pv = uv[..., 0], uv[..., 1]
    e = np.interp(pu, u, edge)
    alpha = np.clip((e - pv) * width + 0.5, 0.0, 1.0) * ((pu >= u[0]) & (pu <= u[-1]))  # h x w: above the edge
    box_map = np.ascontiguousarray(pmap[y0:y1, x0:x1])  # h x w x 2
    region = out[y0:y1, x0:x1].astype(np.float32)
    # Towards the corners the lash line fades out: the photo's own lashes are there.
    corner_fade = np.clip((0.5 - np.abs(pu)) / CORNER_FADE, 0.0, 1.0)
    if drawn is None:
        s = np.interp(pu, u, start)
        feather = max(2.5, LID_FEATHER * width)
        alpha *= np.clip((pv - s) * width / feather, 0.0, 1.0)  # feathered into the skin under the crease
        # The lid's skin, taken through the warp itself (so at the output's scale): its tone, smooth, from the skin
        # above the crease mirrored across it (SKIN_ABOVE of it, stretched to the lid's height: stretched as it is,
        # only its blur is kept), and its grain, at 1:1, from the skin under the eye (stretched, the grain drew
        # vertical streaks). The photo's lashes and their shadow stay behind the lid; the lash line is drawn along its
        # edge.
        squeeze = np.maximum((e - s) / SKIN_ABOVE, 1.0)
        alpha *= min(1.0, amount / LID_FADE)  # faded in: a lid just starting to move is the photo's own
        tone = _through(pmap, image, origin, width, axes, pu, s - CREASE_MARGIN - (pv - s) / squeeze)
        tone = cv.GaussianBlur(tone, (0, 0), max(1.0, GRAIN_SIGMA * width))
        grain = _through(pmap, image, origin, width, axes, pu, np.interp(pu, u, lower_v) + GRAIN_GAP + (pv - s))
        grain -= cv.GaussianBlur(grain, (0, 0), max(1.0, GRAIN_SIGMA * width))
        colour = tone + grain
        # A closed lid is a curved surface under the brow: a little darker than the skin it came from, more so
        # towards its edge.
        # Its tone is the photo's own lid skin's, the skin it covers between the crease and the lashes (the skin
        # from above the crease is lighter: the lid showed as a light patch with an edge): a gain per channel.
        own = (pv > s) & (pv < s + 0.5 * (np.interp(pu, u, top) - s)) & (np.abs(pu) < 0.35)  # above the lashes
        if own.sum() >= 6:
            gain = region[own].mean(0) / np.maximum(colour[own].mean(0), 1.0)
            colour *= np.sqrt(np.clip(gain, *LID_GAIN))  # halfway: the lid curves out into the light
        depth = np.clip((pv - s) / np.maximum(e - s, 1e-3), 0.0, 1.0)
        colour *= (1.0 - LID_SHADE * depth * depth)[..., None]
        line_colour, thickness, line_opacity = lid.lash, max(1.2, 1.2 * n / 256), LASH_OPACITY * amount
        line_mask = None
    else:
        inside = cv.remap(drawn.region, box_map[..., 0], box_map[..., 1], cv.INTER_LINEAR).astype(np.float32) / 255
        alpha *= inside
        colour = np.broadcast_to(drawn.skin, region.shape)  # flat, as the drawing's skin is (shaded, it showed)
        line_colour, thickness = drawn.line, drawn.thickness * width
        line_opacity = min(1.0, amount / 0.15)
        line_mask = inside
    region += alpha[..., None] * (colour - region)
    line_v = edge
    if drawn is not None:
        # Closing, the drawn lid's line moves from the lid's edge onto a gentle arc (a closed drawn eye: one stroke,
        # sagging a little, in the outline's colour and weight; along the lower outline it was a bowl).
        t = (u - (u[0] + u[-1]) / 2) / max((u[-1] - u[0]) / 2, 1e-6)  # -1..1 along the drawn eye
        ends = (drawn.top[[0, -1]] + drawn.bottom[[0, -1]]) / 2
        arc = np.minimum(np.interp(t, [-1.0, 1.0], ends) + ARC_SAG * (u[-1] - u[0]) * (1.0 - t * t), drawn.bottom)
        w = float(np.clip((amount - ARC_FROM) / (1.0 - ARC_FROM), 0.0, 1.0))
        line_v = edge + w * w * (3 - 2 * w) * (np.minimum(arc, edge) - edge)
    line = origin + width * (u[:, None] * axes[0] + line_v[:, None] * axes[1]) - (x0, y0)  # G x 2, box pixels
    stroke = _polyline_mask(alpha.shape, line, thickness) * line_opacity
    if drawn is None:
        stroke *= corner_fade
    else:  # a drawn stroke's ends taper off
        stroke *= np.clip((1.0 - np.abs((pu - (u[0] + u[-1]) / 2) / max((u[-1] - u[0]) / 2, 1e-6))) / 0.15, 0.0, 1.0)
    if line_mask is not None:
        stroke *= np.clip(line_mask * 1.5, 0.0, 1.0)
    region += stroke[..., None] * (line_colour - region)
    out[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
