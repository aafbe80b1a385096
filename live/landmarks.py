"""Landmark-driven animation that needs no learned weights: the ``landmarks`` backend.

The source photo is moved by the face-mesh landmarks of the driving face, in the spirit of the First Order Motion
Model (Siarohin et al., NeurIPS 2019): motion is taken relative to a calibrated neutral pose of the driver and
transferred to the source, whose own face shape is kept. Landmarks come from mediapipe's face mesh (the model
bundled in the mediapipe 0.10.21 wheel, so it runs offline): 468 mesh points and, with ``refine_landmarks``, 10 iris
points (478 in all).

Convention: landmarks are N x 3 float32 arrays (N = 478) in mediapipe's normalised units: x and y are fractions of
the frame's width and height (x to the right, y down, from the top-left corner; x * width is a pixel column), z is
depth in units of the frame's width (smaller is closer to the camera; about 0 at the face's centre). Driving crops are
square, so the three axes share one unit; a non-square frame is treated as if stretched to a square, as the source
is. Inside the backend, the source is resized to ``size x size`` and its landmarks are in output pixels (times
``size``), with pixel centres at integer coordinates.

Motion. Let D0 be the driving landmarks at calibration, D the current ones and S0 the source's. A similarity
(rotation R in 3-D, uniform scale s, translation t) is fitted by least squares (Umeyama 1991) over stable points
that expression barely moves (forehead, nose bridge, upper face oval, eye corners): D ≈ s R D0 + t there. The head
motion is that similarity; the expression is what it leaves, brought back into the neutral pose's frame:

    E = R^T (D - t) / s - D0                                  (per landmark, 3-D)

The source moves by the same head motion about its own centre c_S, and by the expression scaled to its face size:

    k = rms(S0 - c_S) / rms(D0 - c_D)                         (over the stable points, x and y)
    S = c_S + s R (S0 + k E - c_S) + k (s R c_D + t - c_D)

where c_D is the centre of the stable points of D0. When the source is the driver's face up to a scale and a shift,
this is exactly S - S0 = k (D - D0), the relative motion of FOMM with its adaptive scale; when the faces differ,
the source keeps its own shape. S is projected orthographically (its x and y are kept). ``relative=False`` uses
the driving landmarks as they are instead (S = size * D).

Warp. The mesh's vertices are the 468 mesh landmarks (not the irises), a ring of points around the face (the face
oval enlarged 1.3 times about its centre; each follows the motion of the oval point it came from, less near the
frame's edge, so hair and ears go with the face's edge) and fixed anchors along the frame's border, so the image
corners stay put. The source vertices are triangulated once (Delaunay, cv2.Subdiv2D); landmarks within a
few pixels inside the oval are left out of it, so that only the oval meets the ring. Per frame only the vertex
positions change: each triangle gets the affine map from its moved position back to its source position (a 2 x 3
matrix, kept as three complex numbers so that one gather fetches x and y), the moved triangles' indices are
rasterised into an index image (one cv2.fillConvexPoly per triangle, ~1000 calls), and every output pixel q is
pulled from the source through its triangle's map, p = a[i] qx + b[i] qy + c[i], then sampled bilinearly by
cv2.remap. That is the exact inverse of the piecewise-affine forward warp; nothing loops over pixels in Python.
Where the mesh folds (the far cheek in a head turn), triangles turned over are not drawn (they face away) and the
rest are drawn far to near by their landmarks' depth, the ring and anchors behind the face, so the nearer surface
shows, as in a z-buffer.

Eyes and mouth. In a blink the upper eyelid's landmarks move onto the lower lid and the triangles over the eyeball
collapse; alone, that would stretch the thin band of lashes above the eye down over it, so a lid made from the skin
around each eye is blended into the photo as the eye closes and a lash line drawn along its edge (``_Eyelid``).
The gaze moves each eye's inside as one rigid picture behind the lids, by the driver's iris motion relative to the
eye's corners, within a fifth of the eye's width (``_Eyeball``). An opening mouth would
show the lip line stretched into a pale band, so when the mouth opens beyond the source's own opening the inner-lip
polygon is painted as a mouth: the source's own mouth interior (teeth, if it shows them) carried along with the
upper lip, and below it a dark cavity shading to a tongue colour near the lower lip, as bright as the source's lips
allow, blended in as the opening grows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from live.errors import UserError
from live.media import cv2, quiet_native_output

logger = logging.getLogger(__name__)

MESH_POINTS = 468  # the face mesh; points 468..477 are the irises (refine_landmarks=True)
ALL_POINTS = 478

# Points that head motion moves but expression barely does: forehead and nose bridge, the face oval above the mouth,
# the eye corners. Chin, jaw, lips, brows and eyelids are left out.
STABLE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 109, 338, 67, 297, 103, 332, 54, 284, 21, 251, 162, 389,
          127, 356, 234, 454, 93, 323, 33, 133, 362, 263)
# The face oval, clockwise from the top of the forehead (mediapipe's FACEMESH_FACE_OVAL as a path).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# Eyelids, outer corner to inner corner; the i-th upper point sits above the i-th lower point. "Right" is the
# subject's right eye (on the left of the image).
RIGHT_EYE_CORNERS = (33, 133)
RIGHT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
RIGHT_EYE_LOWER = (7, 163, 144, 145, 153, 154, 155)
LEFT_EYE_CORNERS = (263, 362)
LEFT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
LEFT_EYE_LOWER = (249, 390, 373, 374, 380, 381, 382)
# Lips, from the right mouth corner (image left) to the left one; inner upper/lower points pair up by position.
OUTER_UPPER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
INNER_UPPER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
INNER_LIP_POLYGON = INNER_UPPER_LIP + INNER_LOWER_LIP[-2:0:-1]
OUTER_LIP_POLYGON = OUTER_UPPER_LIP + OUTER_LOWER_LIP[-2:0:-1]

HEAD_RING_SCALE = 1.3  # the ring around the face: the face oval enlarged about its centre
BORDER_ANCHORS_PER_SIDE = 8
OVAL_CLEARANCE = 1 / 48  # landmarks closer than this (of the frame's side) to the face oval are not mesh vertices
BACKGROUND_DEPTH = 1e6  # drawing depth of the head ring and the anchors: behind any face point (output pixels)
# Mouth interior: fully painted once the opening (mean inner-lip gap / mouth width) exceeds the source's by this.
MOUTH_FULL_OPENING = 0.12
THROAT = np.array([40.0, 12.0, 15.0], np.float32)  # RGB of the mouth interior: the dark back of the mouth
TONGUE = np.array([125.0, 50.0, 55.0], np.float32)  # and the tongue, seen above the lower teeth
MIN_AREA_RATIO = 0.1  # moved triangles squeezed below this fraction of their source area are drawn first
# Eyelids: how closed an eye is, 1 - opening / the source's opening, where the eyelid starts to show and where it
# covers the eye completely (see _Eyelid).
LID_START = 0.35
LID_FULL = 0.85
LID_BAND = 0.15  # the height of the upper lid's band that the closed lid replaces, over the eye's width
LID_SHADE = 0.05  # how much darker the closed lid is at its edge than away from it
LASH_OPACITY = 0.7
EYES = ((RIGHT_EYE_CORNERS, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_CORNERS, LEFT_EYE_UPPER, LEFT_EYE_LOWER))
IRIS_CENTRES = (468, 473)  # the iris centre of each eye in EYES (refine_landmarks=True)
GAZE_ALONG = 0.2  # how far the gaze may move an iris along the eye from its place in the photo, over the eye's width
GAZE_ACROSS = 0.06  # and across the eye
GAZE_FADE = (0.04, 0.08)  # gaze (eye-widths) where the eyeball starts to be painted, and where it is fully painted
# Closure (as for the lids) over which the gaze is let go: the face mesh's iris is unreliable in a closing eye.
GAZE_CLOSING = (0.15, 0.35)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s R src + t`` (Umeyama 1991), in 2-D or 3-D.

    Args:
        src: K x d points (d = 2 or 3).
        dst: K x d points, matched to ``src``.

    Returns:
        ``(s, R, t)``: scale, d x d rotation (a proper one, det +1) and translation of length d.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d  # K x d
    var_s = (xs**2).sum() / len(src)
    if var_s <= 1e-18:
        raise ValueError("similarity fit: the source points are all at one place")
    cov = xd.T @ xs / len(src)  # d x d
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(len(sig))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = (u * sign) @ vt
    scale = float((sig * sign).sum() / var_s)
    return scale, rot, mu_d - scale * rot @ mu_s


def _check_image(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{what}: expected an H x W x 3 uint8 RGB image, got {got}")


def _check_landmarks(points: Any, what: str) -> np.ndarray:
    if points is None:
        raise ValueError(f"{what}: no landmarks (detect() returns None when it sees no face)")
    points = np.asarray(points, dtype=np.float32)
    if points.shape != (ALL_POINTS, 3):
        raise ValueError(f"{what}: expected {ALL_POINTS} x 3 landmarks, got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{what}: landmarks hold NaN or infinity")
    return points


def mouth_opening(points: np.ndarray) -> float:
    """Mean gap between the inner lips over the mouth's width (about 0 closed, 0.3-0.6 wide open).

    Args:
        points: N x 2 or N x 3 landmarks, any units (only x and y are used).
    """
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(xy[list(INNER_UPPER_LIP[1:-1])] - xy[list(INNER_LOWER_LIP[1:-1])], axis=1).mean()
    width = np.linalg.norm(xy[INNER_UPPER_LIP[0]] - xy[INNER_UPPER_LIP[-1]])
    return float(gap / max(width, 1e-9))


def eye_opening(points: np.ndarray, eye: tuple) -> float:
    """Mean gap between an eye's upper and lower lids over the eye's width (about 0 closed, 0.2-0.4 open).

    Args:
        points: N x 2 or N x 3 landmarks, any units (only x and y are used).
        eye: ``(corners, upper, lower)`` landmark indices, as in ``EYES``.
    """
    corners, upper, lower = eye
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    gap = np.linalg.norm(xy[list(upper)] - xy[list(lower)], axis=1).mean()
    width = np.linalg.norm(xy[corners[0]] - xy[corners[1]])
    return float(gap / max(width, 1e-9))


def _eye_polygon(points: np.ndarray, eye: tuple) -> np.ndarray:
    """An eye's opening as a polygon (P x 2): outer corner, upper lid, inner corner, lower lid back."""
    corners, upper, lower = eye
    return points[[corners[0], *upper, corners[1], *lower[::-1]], :2]


def _eye_frame(points: np.ndarray, corners: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """An eye's frame from its corners: the midpoint, the axes (rows: along the eye, across it) and the width."""
    a, b = points[corners[0], :2], points[corners[1], :2]
    width = max(float(np.linalg.norm(b - a)), 1e-9)
    along = (b - a) / width
    return (a + b) / 2, np.array([along, [-along[1], along[0]]]), width


@dataclass
class _Eyelid:
    """One eye's closed lid, prepared in ``set_source``.

    Closing the lids in the mesh alone stretches the thin band of skin and lashes above the upper lid over the whole
    eye, a dark smear. So the source's eye opening and lash line are also filled with the skin around them
    (``cv2.inpaint``), and as the eye closes that fill is blended into the source before the warp: the same mesh
    then carries a skin-coloured lid down over the eye. A lash line is drawn along the lid's edge on top.
    """

    box: tuple[slice, slice]  # rows and columns of the source the lid touches
    delta: np.ndarray  # h x w x 3 float32: (lid fill - source) * feathered mask, within ``box``
    lash: np.ndarray  # RGB float32 of the source's upper lash line


@dataclass
class _Eyeball:
    """One eye's eyeball, prepared in ``set_source``: the inside of the eye as a rigid picture that the gaze slides
    behind the lids.

    The mesh moves the lids; inside the moved eye opening the eyeball is painted over the mesh's warp, placed by the
    eye's corners (a similarity) and shifted by the driver's gaze (the iris centre's motion relative to the eye,
    within ``GAZE_ALONG`` / ``GAZE_ACROSS`` of the eye's width). Beyond the photo's own opening the picture continues
    the colours at the opening's edge, which is what a shifted iris uncovers.
    """

    box: tuple[int, int]  # top-left (x, y) of ``picture`` in source pixels
    picture: np.ndarray  # h x w x 3 uint8: the inside of the eye opening, its edge colours continued around it
    iris: np.ndarray  # (u, v) of the iris centre in the photo, in eye-widths along and across the eye


@dataclass
class _SourceMesh:
    """The triangulation of one source, computed once in ``set_source``.

    Vertex layout: ``[0, 468)`` mesh landmarks, then the head-ring points, then the fixed border anchors.
    """

    vertices: np.ndarray  # M x 2 float64, source positions in output pixels
    triangles: np.ndarray  # T x 3 int32 vertex indices
    ring_of: np.ndarray  # R int: the face-oval landmark each head-ring point was pushed out from
    ring_weight: np.ndarray  # R float64: how much of that landmark's motion the ring point follows (less near edges)


class LandmarkBackend:
    """Animate a source photo with mediapipe face-mesh landmarks and a piecewise-affine warp (no learned weights).

    ``detect`` returns 478 x 3 float32 landmarks in normalised units (see the module's Convention) or None when
    there is no face; ``render`` returns ``size x size x 3`` uint8 RGB. A context manager; ``close()`` releases the
    mediapipe graphs and is safe to call twice.

    Args:
        size: Side of the output frames (the source is resized to it).
        relative: Relative motion from the calibrated neutral pose (default); False uses the driving landmarks as
            they are, which makes the source take the driver's face shape.
        smoothing: Temporal smoothing of the moved landmarks in [0, 1): the weight of the previous frame's positions
            (0: none). Cuts landmark jitter on a live stream at the cost of lag.
        tracking: Run the driving face mesh in mediapipe's video mode (landmarks seed the next frame's region:
            steadier on a continuous stream); the default runs face detection on every frame, so ``detect`` gives the
            same answer for the same frame whatever came before.
        mouth_interior: Paint the inside of an opening mouth (see the module docstring).
        min_detection_confidence: mediapipe's face detection threshold.
    """

    name = "landmarks"
    # Eyelids move fast and briefly (a blink lasts 100-300 ms): the live loop smooths them with a quicker filter.
    fast_rows = tuple(sorted(set(RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER)))

    def __init__(self, *, size: int = 256, relative: bool = True, smoothing: float = 0.0, tracking: bool = False,
                 mouth_interior: bool = True, min_detection_confidence: float = 0.5) -> None:
        if not 64 <= size <= 4096:
            raise ValueError(f"size: expected 64..4096 pixels, got {size}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing: expected a weight in [0, 1), got {smoothing}")
        self.size = int(size)
        self.relative = relative
        self.smoothing = float(smoothing)
        self.tracking = tracking
        self.mouth_interior = mouth_interior
        self.min_detection_confidence = min_detection_confidence
        self._graphs: dict[bool, Any] = {}  # static_image_mode -> mediapipe FaceMesh, created on first use
        self._warm: set[bool] = set()  # graphs that have run once
        self._source: np.ndarray | None = None  # size x size x 3 uint8
        self._source_points: np.ndarray | None = None  # 478 x 3 float64, output pixels
        self._mesh: _SourceMesh | None = None
        self._mouth_light = 1.0  # brightness of the source's lips, for the mouth interior
        self._interior_mask = np.zeros((size, size), np.uint8)
        self._eyelids: list[_Eyelid | None] = []
        self._eyeballs: list[_Eyeball | None] = []
        self._eye_openings: list[float] = []  # the photo's own (``eye_opening``), EYES order
        self._neutral: np.ndarray | None = None  # 478 x 3 float32, normalised driving landmarks
        self._previous: np.ndarray | None = None  # last moved source landmarks, for smoothing
        n = self.size
        ys, xs = np.mgrid[0:n, 0:n].astype(np.float32)  # H x W each
        self._qx, self._qy = xs.ravel(), ys.ravel()  # H*W: output pixel centres
        self._index = np.empty((n, n), np.int32)  # per output pixel, the moved triangle covering it

    # -- mediapipe ---------------------------------------------------------------------------------------------
    def _graph(self, static: bool) -> Any:
        graph = self._graphs.get(static)
        if graph is None:
            with quiet_native_output():  # mediapipe's start-up chatter on the native stdout/stderr
                import mediapipe as mp

                graph = mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1,
                                                        refine_landmarks=True,
                                                        min_detection_confidence=self.min_detection_confidence,
                                                        min_tracking_confidence=0.5)
                # Its calculators start asynchronously and print their start-up lines then: a blank frame inside
                # this block waits for them (no face, so no tracking state is left behind).
                graph.process(np.zeros((64, 64, 3), np.uint8))
            self._graphs[static] = graph
            self._warm.discard(static)
        return graph

    def _landmarks(self, image: np.ndarray, *, static: bool) -> np.ndarray | None:
        graph = self._graph(static)
        if static in self._warm:
            result = graph.process(np.ascontiguousarray(image))
        else:  # the first run of a graph prints its inference warnings
            with quiet_native_output():
                result = graph.process(np.ascontiguousarray(image))
            self._warm.add(static)
        faces = result.multi_face_landmarks
        if not faces:
            return None
        points = np.array([(p.x, p.y, p.z) for p in faces[0].landmark], dtype=np.float32)  # 478 x 3
        if points.shape != (ALL_POINTS, 3):
            raise RuntimeError(f"mediapipe face mesh returned {points.shape[0]} landmarks, expected {ALL_POINTS}")
        return points

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """The face mesh of a driving crop: 478 x 3 float32 normalised landmarks, or None when there is no face.

        Args:
            frame: H x W x 3 uint8 RGB face crop.
        """
        _check_image(frame, "detect")
        return self._landmarks(frame, static=not self.tracking)

    def close(self) -> None:
        """Release the mediapipe graphs (safe to call twice; ``detect`` would open them again)."""
        graphs, self._graphs = self._graphs, {}
        for graph in graphs.values():
            graph.close()

    def __enter__(self) -> LandmarkBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- source ------------------------------------------------------------------------------------------------
    def set_source(self, image: np.ndarray) -> None:
        """Take the source photo: resize it to ``size x size``, find its landmarks, triangulate (once per source).
        A calibrated neutral pose is kept.

        Args:
            image: H x W x 3 uint8 RGB, ideally a square crop around the face.

        Raises:
            UserError: no face found in the image.
        """
        _check_image(image, "set_source")
        points = self._landmarks(image, static=True)
        if points is None:
            raise UserError("no face found in the source image: use a photo with one face, seen from the front")
        n = self.size
        h, w = image.shape[:2]
        interpolation = cv2().INTER_AREA if min(h, w) > n else cv2().INTER_CUBIC
        self._source = np.ascontiguousarray(cv2().resize(image, (n, n), interpolation=interpolation))
        self._source_points = points.astype(np.float64) * n  # 478 x 3, output pixels
        self._mesh = self._build_mesh(self._source_points)
        lips = self._mean_colour(self._source_points[list(OUTER_LIP_POLYGON), :2])
        self._mouth_light = float(np.clip(lips @ np.array([0.299, 0.587, 0.114]) / 150.0, 0.5, 1.3))
        self._interior_mask = np.zeros((n, n), np.uint8)  # the source's own mouth opening, if any
        cv2().fillPoly(self._interior_mask, [np.round(self._source_points[list(INNER_LIP_POLYGON), :2] * 16)
                                             .astype(np.int32)], 255, cv2().LINE_AA, shift=4)
        self._eye_openings = [eye_opening(self._source_points, eye) for eye in EYES]
        self._eyelids = [self._build_eyelid(eye) for eye in EYES]
        self._eyeballs = [self._build_eyeball(eye, iris) for eye, iris in zip(EYES, IRIS_CENTRES, strict=True)]
        self._previous = None
        logger.info("landmarks: source set, %d vertices, %d triangles at %d x %d", len(self._mesh.vertices),
                    len(self._mesh.triangles), n, n)

    def _build_mesh(self, points: np.ndarray) -> _SourceMesh:
        n = self.size
        last = n - 1
        xy = points[:MESH_POINTS, :2]
        # Head ring: the face oval enlarged about its centre, kept inside the frame and away from other vertices.
        oval = xy[list(FACE_OVAL)]
        centre = oval.mean(0)
        margin = max(2.0, n / 32)
        ring = np.clip(centre + HEAD_RING_SCALE * (oval - centre), margin, last - margin)
        keep: list[int] = []
        for i, p in enumerate(ring):
            if (np.linalg.norm(xy - p, axis=1).min() > n / 40
                    and all(np.linalg.norm(ring[j] - p) > n / 40 for j in keep)):
                keep.append(i)
        ring, ring_of = ring[keep].reshape(-1, 2), np.array(FACE_OVAL)[keep]
        edge_distance = np.minimum(ring, last - ring).min(1)
        ring_weight = np.clip(edge_distance / (0.12 * n), 0.0, 1.0)
        # Fixed anchors along the border, corners included.
        ticks = np.linspace(0.0, last, BORDER_ANCHORS_PER_SIDE + 1)
        anchors = np.concatenate([np.column_stack([ticks, np.zeros_like(ticks)]),
                                  np.column_stack([ticks, np.full_like(ticks, last)]),
                                  np.column_stack([np.zeros_like(ticks[1:-1]), ticks[1:-1]]),
                                  np.column_stack([np.full_like(ticks[1:-1], last), ticks[1:-1]])])
        vertices = np.concatenate([xy, ring, anchors])  # M x 2

        # Delaunay over the vertices inside the frame; a landmark outside it (a face cut by the crop) still moves
        # but is not a vertex. Coordinates are rounded to float32, the precision Subdiv2D stores them at.
        inside = np.ones(len(vertices), dtype=bool)
        inside[:MESH_POINTS] = ((xy >= 1.0) & (xy <= last - 1.0)).all(1)
        # Landmarks hugging the face oval from inside are left out as vertices (they still move): the triangulation
        # is not constrained to the oval, so they got joined to the head ring across it, and a head turn sheared
        # those long triangles into background-coloured notches along the far jaw.
        contour = oval.astype(np.float32).reshape(-1, 1, 2)
        on_oval = set(FACE_OVAL)
        for i in range(MESH_POINTS):
            if i not in on_oval and abs(cv2().pointPolygonTest(contour, (float(xy[i, 0]), float(xy[i, 1])), True)) \
                    < OVAL_CLEARANCE * n:
                inside[i] = False
        cv = cv2()
        subdiv = cv.Subdiv2D((0, 0, n, n))
        lookup: dict[tuple[float, float], int] = {}
        for i in np.flatnonzero(inside):
            key = (float(np.float32(vertices[i, 0])), float(np.float32(vertices[i, 1])))
            if key not in lookup:  # a repeated point is one vertex
                lookup[key] = int(i)
                subdiv.insert(key)
        triangles = []
        for tri in subdiv.getTriangleList().reshape(-1, 3, 2):  # float32 corner coordinates
            ids = [lookup.get((float(x), float(y))) for x, y in tri]
            if None not in ids:  # triangles touching Subdiv2D's virtual outer vertices are dropped
                triangles.append(ids)
        triangles = np.array(triangles, dtype=np.int32).reshape(-1, 3)
        if not len(triangles):
            raise RuntimeError("landmarks: the triangulation came out empty")

        logger.debug("landmarks: %d ring points, %d anchors, %d of %d landmarks are vertices", len(ring),
                     len(anchors), int(inside[:MESH_POINTS].sum()), MESH_POINTS)
        return _SourceMesh(vertices=vertices, triangles=triangles, ring_of=ring_of, ring_weight=ring_weight)

    def _build_eyelid(self, eye: tuple) -> _Eyelid | None:
        """The closed lid of one source eye (see ``_Eyelid``); None when the eye is too small or out of frame."""
        corners, upper, _ = eye
        points = self._source_points
        n = self.size
        xy = _eye_polygon(points, eye)
        width = _eye_frame(points, corners)[2]
        if width < 6.0 or xy.min() < 0 or xy.max() > n - 1:
            return None
        cv = cv2()
        reach = max(1, round(0.1 * width))  # the lashes around the opening, and a feathered edge beyond
        x0, y0 = np.maximum(np.floor(xy.min(0) - (0, LID_BAND * width)).astype(int) - 3 * reach, 0)
        x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int) + 3 * reach + 1, n)
        box = (slice(y0, y1), slice(x0, x1))
        patch = np.ascontiguousarray(self._source[box])
        opening = np.zeros(patch.shape[:2], np.uint8)
        # The opening, and the lower part of the upper lid above it (lashes and crease shadow): the band the
        # closing mesh stretches over the eye.
        for lift in (0.0, 0.5 * LID_BAND * width, LID_BAND * width):
            polygon = np.round((xy - (x0, y0 + lift)) * 16).astype(np.int32)
            cv.fillPoly(opening, [polygon], 255, cv.LINE_8, shift=4)
        kernel = cv.getStructuringElement(cv.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        hole = cv.dilate(opening, kernel)
        fill = cv.inpaint(patch, hole, 2 * reach, cv.INPAINT_TELEA)
        # Smoothed inside the hole: inpainting leaves streaks that the lid's stretch would draw out.
        fill = np.where(hole[..., None] > 0, cv.GaussianBlur(fill, (0, 0), 0.5 * reach), fill).astype(np.float32)
        # A lid is shaded, a little darker towards its edge (the source's upper lid line, where the lashes will be).
        distance = cv.distanceTransform(255 - opening, cv.DIST_L2, 3)
        fill *= 1.0 - LID_SHADE * np.clip(1.0 - distance / (LID_BAND * width + reach), 0.0, 1.0)[..., None]
        alpha = cv.GaussianBlur(cv.dilate(hole, kernel).astype(np.float32) / 255, (0, 0), reach)[..., None]
        lash_line = np.zeros_like(opening)
        cv.polylines(lash_line, [np.round(xy[:len(upper) + 2] - (x0, y0)).astype(np.int32)], False, 255, 1)
        lash_pixels = patch[lash_line > 0].astype(np.float32)
        darkest = lash_pixels[np.argsort(lash_pixels @ np.array([0.299, 0.587, 0.114]))[:max(1, len(lash_pixels) // 3)]]
        return _Eyelid(box=box, delta=alpha * (fill - patch.astype(np.float32)),
                       lash=darkest.mean(0))

    def _build_eyeball(self, eye: tuple, iris: int) -> _Eyeball | None:
        """The eyeball picture of one source eye (see ``_Eyeball``); None when the eye is too small, shut or out of
        frame."""
        points = self._source_points
        n = self.size
        xy = _eye_polygon(points, eye)
        origin, axes, width = _eye_frame(points, eye[0])
        if width < 6.0 or xy.min() < 0 or xy.max() > n - 1 or eye_opening(points, eye) < 0.1:
            return None
        cv = cv2()
        margin = int(np.ceil((GAZE_ALONG + 0.1) * width))
        x0, y0 = np.maximum(np.floor(xy.min(0)).astype(int) - margin, 0)
        x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int) + margin + 1, n)
        patch = self._source[y0:y1, x0:x1]
        opening = np.zeros(patch.shape[:2], np.uint8)
        cv.fillPoly(opening, [np.round((xy - (x0, y0)) * 16).astype(np.int32)], 255, cv.LINE_8, shift=4)
        inner = cv.erode(opening, np.ones((3, 3), np.uint8), iterations=max(1, round(width / 40)))
        if cv.countNonZero(inner) < 4:
            return None
        # Beyond the inside of the opening (lids and lashes left out), the picture continues the eye's own edge
        # colours outwards: what a shifted iris uncovers looks like the shadowed white next to it.
        picture = cv.inpaint(np.ascontiguousarray(patch), 255 - inner, 3, cv.INPAINT_TELEA)
        iris_uv = axes @ (points[iris, :2] - origin) / width
        return _Eyeball(box=(x0, y0), picture=np.ascontiguousarray(picture), iris=iris_uv)

    def _mean_colour(self, polygon: np.ndarray) -> np.ndarray:
        mask = np.zeros((self.size, self.size), np.uint8)
        cv2().fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, shift=4)
        if not mask.any():
            return np.array([150.0, 90.0, 90.0], np.float32)  # a typical lip colour, for a mouth out of frame
        return self._source[mask > 0].mean(0).astype(np.float32)

    # -- calibration -------------------------------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        """Whether a neutral pose is set (absolute motion needs none)."""
        return self._neutral is not None or not self.relative

    def calibrate(self, motion: np.ndarray) -> None:
        """Take these driving landmarks (from ``detect``) as the neutral pose; call again to recalibrate.

        Args:
            motion: 478 x 3 normalised landmarks.
        """
        self._neutral = _check_landmarks(motion, "calibrate").copy()
        self._previous = None

    def reset_calibration(self) -> None:
        """Forget the neutral pose."""
        self._neutral = None
        self._previous = None

    # -- motion ------------------------------------------------------------------------------------------------
    def moved_landmarks(self, motion: np.ndarray) -> np.ndarray:
        """Where the source's landmarks go for these driving landmarks: 478 x 3 float64 in output pixels.

        Args:
            motion: 478 x 3 normalised driving landmarks (from ``detect``).
        """
        driving = _check_landmarks(motion, "render").astype(np.float64)
        if self._source_points is None:
            raise RuntimeError("set_source() must be called before render()")
        source = self._source_points
        if not self.relative:
            moved = driving * self.size
        else:
            if self._neutral is None:
                raise RuntimeError("relative motion needs a neutral pose: call calibrate() first")
            neutral = self._neutral.astype(np.float64)
            stable = list(STABLE)
            scale, rot, shift = similarity_fit(neutral[stable], driving[stable])
            expression = (driving - shift) @ rot / scale - neutral  # R^T (D - t) / s - D0, 478 x 3
            c_d, c_s = neutral[stable].mean(0), source[stable].mean(0)
            k = (np.sqrt(((source[stable, :2] - c_s[:2]) ** 2).sum(1).mean())
                 / np.sqrt(((neutral[stable, :2] - c_d[:2]) ** 2).sum(1).mean()))
            head_shift = scale * rot @ c_d + shift - c_d
            moved = c_s + scale * (source + k * expression - c_s) @ rot.T + k * head_shift
        if self.smoothing and self._previous is not None:
            moved = self.smoothing * self._previous + (1.0 - self.smoothing) * moved
        self._previous = moved
        return moved

    def _targets(self, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Moved positions (M x 2) and drawing depths (M, larger is farther) of all mesh vertices: the landmarks at
        their own depth, then the head ring and the fixed anchors behind the face, so that where the face's edge
        swings over its surroundings (the far cheek in a head turn) the face stays in front."""
        mesh = self._mesh
        targets = mesh.vertices.copy()
        depth = np.full(len(targets), BACKGROUND_DEPTH)
        targets[:MESH_POINTS] = moved[:MESH_POINTS, :2]
        depth[:MESH_POINTS] = moved[:MESH_POINTS, 2]
        ring = slice(MESH_POINTS, MESH_POINTS + len(mesh.ring_of))
        step = moved[mesh.ring_of, :2] - self._source_points[mesh.ring_of, :2]  # R x 2: the oval's motion
        targets[ring] += mesh.ring_weight[:, None] * step
        return targets, depth

    # -- rendering ---------------------------------------------------------------------------------------------
    def _backward_map(self, targets: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Per output pixel, the source position to sample: size x size x 2 float32 (x, y)."""
        mesh = self._mesh
        n = self.size
        src = mesh.vertices[mesh.triangles]  # T x 3 x 2
        dst = targets[mesh.triangles]  # T x 3 x 2
        d1, d2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]  # T x 2: moved triangle edges
        s1, s2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]  # T x 2: source triangle edges
        det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]  # T: twice the moved triangle's signed area
        det_src = s1[:, 0] * s2[:, 1] - s2[:, 0] * s1[:, 1]  # T: the same in the source
        ratio = det / np.where(det_src != 0, det_src, 1.0)  # T: area change, negative when turned over
        front = ratio > 1e-9  # turned-over triangles face away (a fold: the side of the nose in a head turn)
        inv = np.where(front, 1.0 / np.where(front, det, 1.0), 0.0)
        # L = [s1 s2] [d1 d2]^-1 maps moved edges to source edges; p = src0 + L (q - dst0).
        l00 = (s1[:, 0] * d2[:, 1] - s2[:, 0] * d1[:, 1]) * inv
        l01 = (s2[:, 0] * d1[:, 0] - s1[:, 0] * d2[:, 0]) * inv
        l10 = (s1[:, 1] * d2[:, 1] - s2[:, 1] * d1[:, 1]) * inv
        l11 = (s2[:, 1] * d1[:, 0] - s1[:, 1] * d2[:, 0]) * inv
        ox = src[:, 0, 0] - l00 * dst[:, 0, 0] - l01 * dst[:, 0, 1]
        oy = src[:, 0, 1] - l10 * dst[:, 0, 0] - l11 * dst[:, 0, 1]
        # p = a qx + b qy + c with (x, y) packed as one complex number, so one gather fetches both. The extra last
        # entry is the identity, for a pixel no triangle covers (none should: the border is fixed).
        a = np.append(l00 + 1j * l10, 1.0).astype(np.complex64)  # T + 1
        b = np.append(l01 + 1j * l11, 1j).astype(np.complex64)
        c = np.append(ox + 1j * oy, 0.0).astype(np.complex64)

        # Which moved triangle covers each output pixel: rasterise their indices, far to near so that the nearer
        # surface wins where the mesh folds; squeezed triangles (a closed eyelid) go first, so that only pixels
        # no neighbour covers take their steep maps. One fillConvexPoly per triangle (~1000): 0.8 ms at 256 and
        # 1.1 ms at 512 on the 2-core CPU, cheaper and exact where inverting a precomputed forward map by
        # iteration was not (it cycled on sub-pixel triangles, the closed eyelid among them).
        tri_depth = depth[mesh.triangles].mean(1)  # T
        order = np.lexsort((-tri_depth, ratio >= MIN_AREA_RATIO))  # squeezed first, then far to near
        order = order[front[order]]
        polys = np.round(dst[order] * 16).astype(np.int32)  # T' x 3 x 2, 4 fractional bits
        index = self._index
        index.fill(len(a) - 1)
        cv = cv2()
        for t, poly in zip(order.tolist(), polys, strict=True):
            cv.fillConvexPoly(index, poly, t, cv.LINE_8, 4)
        flat = index.ravel()  # H*W
        p = np.take(a, flat) * self._qx
        p += np.take(b, flat) * self._qy
        p += np.take(c, flat)  # H*W complex64
        return p.view(np.float32).reshape(n, n, 2)  # H x W x 2: (x, y) per output pixel

    def render(self, motion: np.ndarray) -> np.ndarray:
        """The source moved by ``motion``: size x size x 3 uint8 RGB.

        Args:
            motion: 478 x 3 normalised driving landmarks (from ``detect``).

        Raises:
            RuntimeError: no source set, or relative motion without a neutral pose.
        """
        moved = self.moved_landmarks(motion)
        cv = cv2()
        pmap = self._backward_map(*self._targets(moved))
        closures = self._closures(moved)
        lids = self._lid_amounts(closures)
        source = self._source
        if any(lids):  # the closing lids' skin goes into the source, then moves with the mesh
            source = source.copy()
            for lid, amount in zip(self._eyelids, lids, strict=True):
                if amount:
                    region = source[lid.box].astype(np.float32)
                    source[lid.box] = np.clip(region + amount * lid.delta + 0.5, 0, 255).astype(np.uint8)
        out = cv.remap(source, pmap, None, cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)
        for eye, iris, ball, closed, amount in zip(EYES, IRIS_CENTRES, self._eyeballs, closures, lids, strict=True):
            if ball is not None and amount < 1.0:
                self._paint_eyeball(out, moved, eye, iris, ball, closed, 1.0 - amount)
        for eye, lid, amount in zip(EYES, self._eyelids, lids, strict=True):
            if amount:
                self._draw_lashes(out, moved, eye, lid, amount)
        if self.mouth_interior:
            self._paint_mouth(out, moved)
        return out

    def _closures(self, moved: np.ndarray) -> list[float]:
        """Per eye, how closed it is against the photo: 1 - opening / the photo's opening (0 for an eye already
        shut in the photo)."""
        return [1.0 - eye_opening(moved, eye) / opening if opening > 0.02 else 0.0
                for eye, opening in zip(EYES, self._eye_openings, strict=True)]

    def _lid_amounts(self, closures: list[float]) -> list[float]:
        """Per eye, how much of the closed lid to show: 0 while the eye is open, 1 once it is shut (see LID_*)."""
        amounts = []
        for lid, closed in zip(self._eyelids, closures, strict=True):
            v = 0.0 if lid is None else float(np.clip((closed - LID_START) / (LID_FULL - LID_START), 0.0, 1.0))
            amounts.append(v * v * (3 - 2 * v))  # smoothstep
        return amounts

    def _paint_eyeball(self, out: np.ndarray, moved: np.ndarray, eye: tuple, iris: int, ball: _Eyeball,
                       closed: float, opacity: float) -> None:
        """Paint the eyeball inside the moved eye opening (in place), shifted by the gaze (see ``_Eyeball``);
        ``closed`` is the eye's closure (``_closures``)."""
        corners = eye[0]
        cv = cv2()
        n = self.size
        polygon = _eye_polygon(moved, eye)
        x0, y0 = np.maximum(np.floor(polygon.min(0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + 2, n)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        origin0, axes0, width0 = _eye_frame(self._source_points, corners)
        origin1, axes1, width1 = _eye_frame(moved, corners)
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

    def _draw_lashes(self, out: np.ndarray, moved: np.ndarray, eye: tuple, lid: _Eyelid, amount: float) -> None:
        """The lash line along the edge of a closing lid (in place), as dark as the source's own lashes."""
        corners, upper, _ = eye
        line = moved[[corners[0], *upper, corners[1]], :2]
        cv = cv2()
        n = self.size
        x0, y0 = np.maximum(np.floor(line.min(0)).astype(int) - 3, 0)
        x1, y1 = np.minimum(np.ceil(line.max(0)).astype(int) + 4, n)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        thickness = max(1, round(n / 256))
        cv.polylines(mask, [np.round((line - (x0, y0)) * 16).astype(np.int32)], False, 255, thickness, cv.LINE_AA,
                     shift=4)
        soft = cv.GaussianBlur(mask.astype(np.float32), (0, 0), 0.5 * thickness)
        alpha = (LASH_OPACITY * amount / 255.0) * soft[..., None]
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(region + alpha * (lid.lash - region) + 0.5, 0, 255).astype(np.uint8)

    def _paint_mouth(self, out: np.ndarray, moved: np.ndarray) -> None:
        """Paint the inside of a mouth opened beyond the source's own opening (in place)."""
        source = self._source_points
        amount = (mouth_opening(moved) - mouth_opening(source)) / MOUTH_FULL_OPENING
        if amount <= 0.0:
            return
        amount = min(amount, 1.0)
        cv = cv2()
        n = self.size
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
        # The cavity: a dark throat above, the tongue's redder, lighter tone towards the lower lip, darker at the
        # centre than at the lips; scaled by how bright the source's lips are, so a dim photo gets a dim mouth.
        top, bottom = polygon[:, 1].min() - y0, polygon[:, 1].max() - y0
        centre = polygon.mean(0) - origin
        half = np.maximum((polygon.max(0) - polygon.min(0)) / 2, 1.0)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)  # h x w each
        v = np.clip((ys - top) / max(bottom - top, 1.0), 0.0, 1.0)  # 0 at the upper lip, 1 at the lower
        tongue = (v * v * (3 - 2 * v))[..., None] ** 2  # h x w x 1, smooth, mostly in the lower half
        r2 = np.minimum(((xs - centre[0]) / half[0]) ** 2 + ((ys - centre[1]) / half[1]) ** 2, 1.0)[..., None]
        fill = (THROAT + tongue * (TONGUE - THROAT)) * ((0.75 + 0.35 * r2) * self._mouth_light)  # h x w x 3
        # The source's own mouth interior (teeth), carried along with the upper lip by a 2-D similarity.
        upper = list(INNER_UPPER_LIP)
        scale, rot, shift = similarity_fit(source[upper, :2], moved[upper, :2])
        to_patch = np.column_stack([scale * rot, shift - origin])  # 2 x 3: source pixels -> patch pixels
        teeth = cv.warpAffine(self._source, to_patch, (w, h), flags=cv.INTER_LINEAR,
                              borderMode=cv.BORDER_REPLICATE).astype(np.float32)  # h x w x 3
        teeth_alpha = cv.warpAffine(self._interior_mask, to_patch, (w, h), flags=cv.INTER_LINEAR)
        teeth_alpha = teeth_alpha.astype(np.float32)[..., None] / 255  # h x w x 1
        fill += teeth_alpha * (teeth - fill)
        alpha = (amount / 255.0) * mask.astype(np.float32)[..., None]  # h x w x 1
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(region + alpha * (fill - region) + 0.5, 0, 255).astype(np.uint8)
