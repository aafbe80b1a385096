"""Eyes: how open an eye is, and eyeballs that follow the driver's gaze behind the lids.

The gaze moves each eye's inside as one rigid picture behind the lids, by the driver's iris motion relative to the
eye's corners, within a fifth of the eye's width (``Eyeball``). The closing lids are ``live.landmarks.lids``'.

Convention: landmarks are 478 x 3 in output pixels of a square frame (see ``live.landmarks``); an eye is
``(corners, upper, lower)`` landmark indices as in ``live.landmarks.points.EYES``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomm_live.live.media import cv2

GAZE_ALONG = 0.2  # how far the gaze may move an iris along the eye from its place in the photo, over the eye's width
GAZE_ACROSS = 0.06  # and across the eye
GAZE_FADE = (0.04, 0.08)  # gaze (eye-widths) where the eyeball starts to be painted, and where it is fully painted
# Closure (as for the lids) over which the gaze is let go: the face mesh's iris is unreliable in a closing eye.
GAZE_CLOSING = (0.15, 0.35)


def eye_opening(points: np.ndarray, eye: tuple, *, turn_proof: bool = False) -> float:
    """Mean gap between an eye's upper and lower lids over the eye's width (about 0 closed, 0.2-0.4 open).

    Args:
        points: N x 2 or N x 3 landmarks, any units (only x and y are used, unless ``turn_proof``).
        eye: ``(corners, upper, lower)`` landmark indices, as in ``EYES``.
        turn_proof: Measure the gap across the eye's axis (a tilt leaves it, and a lid point pair that is not
            straight above one another closes to 0) and the width in 3-D (x, y and z in one unit: normalised
            landmarks of a square crop), so that a turned head reads as open as a frontal one.
    """
    corners, upper, lower = eye
    if turn_proof:
        xyz = np.asarray(points, dtype=np.float64)[:, :3]
        along = xyz[corners[1], :2] - xyz[corners[0], :2]
        across = np.array([-along[1], along[0]]) / max(float(np.linalg.norm(along)), 1e-12)
        gap = np.abs((xyz[list(lower), :2] - xyz[list(upper), :2]) @ across).mean()
        return float(gap / max(float(np.linalg.norm(xyz[corners[1]] - xyz[corners[0]])), 1e-9))
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(xy[list(upper)] - xy[list(lower)], axis=1).mean()
    width = np.linalg.norm(xy[corners[0]] - xy[corners[1]])
    return float(gap / max(width, 1e-9))


def eye_polygon(points: np.ndarray, eye: tuple) -> np.ndarray:
    """An eye's opening as a polygon (P x 2): outer corner, upper lid, inner corner, lower lid back."""
    corners, upper, lower = eye
    return points[[corners[0], *upper, corners[1], *lower[::-1]], :2]


def eye_frame(points: np.ndarray, corners: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """An eye's frame from its corners: the midpoint, the axes (rows: along the eye, across it) and the width."""
    a, b = points[corners[0], :2], points[corners[1], :2]
    width = max(float(np.linalg.norm(b - a)), 1e-9)
    along = (b - a) / width
    return (a + b) / 2, np.array([along, [-along[1], along[0]]]), width


@dataclass
class Eyeball:
    """One eye's eyeball, prepared once per source (``build_eyeball``): the inside of the eye as a rigid picture that
    the gaze slides behind the lids.

    The mesh moves the lids; inside the moved eye opening the eyeball is painted over the mesh's warp, placed by the
    eye's corners (a similarity) and shifted by the driver's gaze (the iris centre's motion relative to the eye,
    within ``GAZE_ALONG`` / ``GAZE_ACROSS`` of the eye's width). Beyond the photo's own opening the picture continues
    the colours at the opening's edge, which is what a shifted iris uncovers.
    """

    box: tuple[int, int]  # top-left (x, y) of ``picture`` in source pixels
    picture: np.ndarray  # h x w x 3 uint8: the inside of the eye opening, its edge colours continued around it
    iris: np.ndarray  # (u, v) of the iris centre in the photo, in eye-widths along and across the eye


def build_eyeball(image: np.ndarray, points: np.ndarray, eye: tuple, iris: int) -> Eyeball | None:
    """The eyeball picture of one source eye (see ``Eyeball``); None when the eye is too small, shut or out of frame.

    Args:
        image: size x size x 3 uint8 RGB source.
        points: Its 478 x 3 landmarks in output pixels.
        eye: ``(corners, upper, lower)``.
        iris: The landmark of this eye's iris centre.
    """
    n = image.shape[0]
    xy = eye_polygon(points, eye)
    origin, axes, width = eye_frame(points, eye[0])
    if width < 6.0 or xy.min() < 0 or xy.max() > n - 1 or eye_opening(points, eye) < 0.1:
        return None
    cv = cv2()
    margin = int(np.ceil((GAZE_ALONG + 0.1) * width))
    x0, y0 = np.maximum(np.floor(xy.min(0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int) + margin + 1, n)
    patch = image[y0:y1, x0:x1]
    opening = np.zeros(patch.shape[:2], np.uint8)
    cv.fillPoly(opening, [np.round((xy - (x0, y0)) * 16).astype(np.int32)], 255, cv.LINE_8, shift=4)
    inner = cv.erode(opening, np.ones((3, 3), np.uint8), iterations=max(1, round(width / 40)))
    if cv.countNonZero(inner) < 4:
        return None
    # Beyond the inside of the opening (lids and lashes left out), the picture continues the eye's own edge
    # colours outwards: what a shifted iris uncovers looks like the shadowed white next to it.
    picture = cv.inpaint(np.ascontiguousarray(patch), 255 - inner, 3, cv.INPAINT_TELEA)
    iris_uv = axes @ (points[iris, :2] - origin) / width
    return Eyeball(box=(x0, y0), picture=np.ascontiguousarray(picture), iris=iris_uv)


def paint_eyeball(out: np.ndarray, moved: np.ndarray, source: np.ndarray, eye: tuple, iris: int, ball: Eyeball,
                  closed: float, opacity: float) -> None:
    """Paint the eyeball inside the moved eye opening (in place), shifted by the gaze (see ``Eyeball``).

    Args:
        out: size x size x 3 uint8 frame, changed in place.
        moved: 478 x 3 moved landmarks (output pixels); source: the photo's.
        eye: ``(corners, upper, lower)``; iris: its iris centre landmark; ball: its eyeball.
        closed: The eye's closure (1 - opening / the photo's opening).
        opacity: At most this much of the eyeball is painted.
    """
    corners = eye[0]
    cv = cv2()
    n = out.shape[0]
    polygon = eye_polygon(moved, eye)
    x0, y0 = np.maximum(np.floor(polygon.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + 2, n)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    origin0, axes0, width0 = eye_frame(source, corners)
    origin1, axes1, width1 = eye_frame(moved, corners)
    gaze = axes1 @ (moved[iris, :2] - origin1) / width1 - ball.iris  # eye-widths, along and across
    gaze = np.clip(gaze, (-GAZE_ALONG, -GAZE_ACROSS), (GAZE_ALONG, GAZE_ACROSS))
    gaze *= float(np.clip((GAZE_CLOSING[1] - closed) / (GAZE_CLOSING[1] - GAZE_CLOSING[0]), 0.0, 1.0))
    # Faded in with the gaze, so that an eye looking where it looked in the photo is the mesh's warp, exactly.
    fade = float(np.clip((np.linalg.norm(gaze) - GAZE_FADE[0]) / (GAZE_FADE[1] - GAZE_FADE[0]), 0.0, 1.0))
    opacity *= fade * fade * (3 - 2 * fade)
    if opacity <= 0.0:
        return
    # Output pixel q -> photo pixel p: into the moved eye's frame, less the gaze, out through the photo's frame.
    scale = width0 / width1
    linear = scale * axes0.T @ axes1  # 2 x 2
    offset = origin0 - linear @ origin1 - width0 * axes0.T @ gaze
    to_picture = np.column_stack([linear, offset - ball.box + linear @ (x0, y0)])  # patch pixel -> picture
    h, w = y1 - y0, x1 - x0
    picture = cv.warpAffine(ball.picture, to_picture, (w, h), flags=cv.INTER_LINEAR | cv.WARP_INVERSE_MAP,
                            borderMode=cv.BORDER_REPLICATE).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    cv.fillPoly(mask, [np.round((polygon - (x0, y0)) * 16).astype(np.int32)], 255, cv.LINE_AA, shift=4)
    mask = cv.erode(mask, np.ones((3, 3), np.uint8))  # leave the lids' edges to the mesh
    alpha = (opacity / 255.0) * cv.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region + alpha * (picture - region) + 0.5, 0, 255).astype(np.uint8)


def lid_frame(points: np.ndarray, corners: tuple[int, int], sign: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(origin, 2 x 2 axes: along and across, width) of an eye, its across axis times ``sign`` (``live.landmarks.lids``'
    eye frame: u along the eye from the outer corner, -0.5, to the inner one, 0.5; v across it towards the lower lid,
    both in eye widths)."""
    a, b = points[corners[0], :2], points[corners[1], :2]
    width = max(float(np.linalg.norm(b - a)), 1e-9)
    along = (b - a) / width
    return (a + b) / 2, np.array([along, sign * np.array([-along[1], along[0]])]), width


def to_eye(points: np.ndarray, frame: tuple) -> np.ndarray:
    """Points (... x 2 or more) in an eye's frame (``lid_frame``'s): ... x 2, (u, v)."""
    origin, axes, width = frame
    return (np.asarray(points, np.float64)[..., :2] - origin) @ axes.T / width  # ... x 2: (u, v)


def curve(uv: np.ndarray, u: np.ndarray) -> np.ndarray:
    """v of a polyline of (u, v) points at ``u`` (sorted by u; held flat beyond its ends)."""
    order = np.argsort(uv[:, 0])
    return np.interp(u, uv[order, 0], uv[order, 1])
