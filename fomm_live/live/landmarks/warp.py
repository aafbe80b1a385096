"""The source's triangle mesh, built once per source, and the piecewise-affine warp that moves it per frame.

The mesh's vertices are the 468 mesh landmarks (not the irises), a ring of points around the face (the face oval
enlarged 1.3 times about its centre; each follows the motion of the oval point it came from, less near the frame's
edge, so hair and ears go with the face's edge) and fixed anchors along the frame's border, so the image corners
stay put. The source vertices are triangulated once (Delaunay, cv2.Subdiv2D); landmarks within a few pixels inside
the oval are left out of it, so that only the oval meets the ring. Per frame only the vertex positions change: each
triangle gets the affine map from its moved position back to its source position (a 2 x 3 matrix, kept as three
complex numbers so that one gather fetches x and y), the moved triangles' indices are rasterised into an index image
(one cv2.fillConvexPoly per triangle, ~1000 calls), and every output pixel q is pulled from the source through its
triangle's map, p = a[i] qx + b[i] qy + c[i], then sampled bilinearly by cv2.remap. That is the exact inverse of the
piecewise-affine forward warp; nothing loops over pixels in Python. Where the mesh folds (the far cheek in a head
turn), triangles turned over are not drawn (they face away) and the rest are drawn far to near by their landmarks'
depth, the ring and anchors behind the face, so the nearer surface shows, as in a z-buffer.

Convention: positions are in output pixels of a ``size x size`` frame, (x, y) with pixel centres at integer
coordinates; depths are the landmarks' z in the same units (larger is farther).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fomm_live.live.landmarks.points import FACE_OVAL, MESH_POINTS, OUTER_LIP_POLYGON
from fomm_live.live.media import cv2

logger = logging.getLogger(__name__)

HEAD_RING_SCALE = 1.3  # the ring around the face: the face oval enlarged about its centre
BORDER_ANCHORS_PER_SIDE = 8
OVAL_CLEARANCE = 1 / 48  # landmarks closer than this (of the frame's side) to the face oval are not mesh vertices
BACKGROUND_DEPTH = 1e6  # drawing depth of the head ring and the anchors: behind any face point (output pixels)
MIN_AREA_RATIO = 0.1  # moved triangles squeezed below this fraction of their source area are drawn first
# Where neighbouring output pixels come from source places this far apart (pixels, at any size) and from different
# triangles, the warp tore: a nearer surface over a farther one (the face's edge over its surroundings, the nose
# over the far cheek, in a head turn). At 20-30 degrees of yaw the culled far cheek left a saw-toothed edge there,
# the triangles' own outline, and the nose's squeezed side a dark line down the cheek; softening a 3-pixel band
# across it hides both (not on the lips: see ``soften_tears``). Within one triangle, even a squeezed one, nothing is
# softened, and at rest the map has no tear, so the neutral frame is the photo's own.
TEAR_JUMP = 3.0
TEAR_BLUR = 1.0  # gaussian sigma of the softening, output pixels


@dataclass
class SourceMesh:
    """The triangulation of one source, computed once per source (``build_mesh``).

    Vertex layout: ``[0, 468)`` mesh landmarks, then the head-ring points, then the fixed border anchors.
    """

    vertices: np.ndarray  # M x 2 float64, source positions in output pixels
    triangles: np.ndarray  # T x 3 int32 vertex indices
    ring_of: np.ndarray  # R int: the face-oval landmark each head-ring point was pushed out from
    ring_weight: np.ndarray  # R float64: how much of that landmark's motion the ring point follows (less near edges)


def build_mesh(points: np.ndarray, *, size: int) -> SourceMesh:
    """Triangulate a source: its landmarks, the head ring and the border anchors (see the module docstring).

    Args:
        points: 478 x 3 float64 source landmarks in output pixels.
        size: Side of the output frame.
    """
    n = size
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
    cv = cv2()
    for i in range(MESH_POINTS):
        if i not in on_oval and abs(cv.pointPolygonTest(contour, (float(xy[i, 0]), float(xy[i, 1])), True)) \
                < OVAL_CLEARANCE * n:
            inside[i] = False
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
    return SourceMesh(vertices=vertices, triangles=triangles, ring_of=ring_of, ring_weight=ring_weight)


def mesh_targets(mesh: SourceMesh, moved: np.ndarray, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moved positions (M x 2) and drawing depths (M, larger is farther) of all mesh vertices: the landmarks at
    their own depth, then the head ring and the fixed anchors behind the face, so that where the face's edge
    swings over its surroundings (the far cheek in a head turn) the face stays in front.

    Args:
        mesh: The source's mesh.
        moved: 478 x 3 moved source landmarks, output pixels.
        source: 478 x 3 source landmarks where they are in the photo, output pixels.
    """
    targets = mesh.vertices.copy()
    depth = np.full(len(targets), BACKGROUND_DEPTH)
    targets[:MESH_POINTS] = moved[:MESH_POINTS, :2]
    depth[:MESH_POINTS] = moved[:MESH_POINTS, 2]
    ring = slice(MESH_POINTS, MESH_POINTS + len(mesh.ring_of))
    step = moved[mesh.ring_of, :2] - source[mesh.ring_of, :2]  # R x 2: the oval's motion
    targets[ring] += mesh.ring_weight[:, None] * step
    return targets, depth


class Warp:
    """The per-frame backward map of a piecewise-affine warp at one output size; holds its per-pixel buffers.

    The map is evaluated at the output's pixel centres, or at another regular grid of points in the output's
    coordinates (``origin``, ``step``, ``shape``): the in-betweens evaluate it at every other pixel of the output
    frame's region and enlarge it (``live.inbetween.renderer``).

    Args:
        size: Side of the output frame.
        origin: Where grid point (0, 0) lies, (x, y) in output pixels (default: the first pixel's centre).
        step: The grid's spacing in output pixels (default 1).
        shape: The grid's (rows, columns) (default: size x size).
    """

    def __init__(self, *, size: int, origin: tuple[float, float] = (0.0, 0.0), step: float = 1.0,
                 shape: tuple[int, int] | None = None) -> None:
        n = self.size = int(size)
        rows, cols = shape or (n, n)
        self.origin, self.step = (float(origin[0]), float(origin[1])), float(step)
        ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)  # rows x cols each
        # rows x cols x 2 float32: each grid point's own (x, y), output pixels
        self.positions = np.dstack([self.origin[0] + xs * self.step, self.origin[1] + ys * self.step]).astype(
            np.float32)
        # rows*cols complex64 each: the grid's x and y, ready to multiply the complex maps (numpy would otherwise cast
        # a float32 copy of them on every frame: 0.36 against 0.42 ms for the three products at 256, the same bits)
        self._qx, self._qy = (self.positions[..., i].ravel().astype(np.complex64) for i in (0, 1))
        self._index = np.empty((rows, cols), np.int32)  # per grid point, the moved triangle covering it
        self.culled = False  # whether the last map left out triangles that turned over (then it may have tears)

    def to_grid(self, points: np.ndarray) -> np.ndarray:
        """Output positions (... x 2) in grid units (grid point (i, j) at (j, i))."""
        if self.origin == (0.0, 0.0) and self.step == 1.0:
            return points
        return (points - self.origin) / self.step

    @property
    def index(self) -> np.ndarray:
        """The last ``backward_map``'s triangle per output pixel: size x size int32, T (the triangle count) where no
        triangle covers the pixel. Read-only view; the next call overwrites it."""
        view = self._index.view()
        view.flags.writeable = False
        return view

    def backward_map(self, mesh: SourceMesh, targets: np.ndarray, depth: np.ndarray, *,
                     reuse_index: bool = False) -> np.ndarray:
        """Per output pixel (grid point), the source position to sample: size x size (the grid's shape) x 2 float32
        (x, y), for ``cv2.remap``; a point no triangle covers (outside the output) keeps its own position.

        Args:
            mesh: The source's mesh.
            targets: M x 2 moved vertex positions, depth: M drawing depths (``mesh_targets``).
            reuse_index: Keep the last call's triangle index (``index``) instead of rasterising it again: for a
                second mesh of the same triangles moved to the same ``targets`` (another source position of each
                vertex). A triangle that faces away between this mesh and ``targets`` but not in the last call's
                keeps its own (mirrored) map where the index has it; ``culled`` stays the last call's.
        """
        src = mesh.vertices[mesh.triangles]  # T x 3 x 2
        dst = targets[mesh.triangles]  # T x 3 x 2
        d1, d2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]  # T x 2: moved triangle edges
        s1, s2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]  # T x 2: source triangle edges
        det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]  # T: twice the moved triangle's signed area
        det_src = s1[:, 0] * s2[:, 1] - s2[:, 0] * s1[:, 1]  # T: the same in the source
        ratio = det / np.where(det_src != 0, det_src, 1.0)  # T: area change, negative when turned over
        front = ratio > 1e-9  # turned-over triangles face away (a fold: the side of the nose in a head turn)
        drawn = det != 0  # the index holds only front-facing triangles, unless reused for another mesh
        inv = np.where(drawn, 1.0 / np.where(drawn, det, 1.0), 0.0)
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
        # iteration was not (it cycled on sub-pixel triangles, the closed eyelid among them). Spans of pixels in a
        # few numpy calls were slower alone (1.6 against 1.1 ms) and no faster in the live loop (RESULTS).
        index = self._index
        if not reuse_index:
            tri_depth = depth[mesh.triangles].mean(1)  # T
            order = np.lexsort((-tri_depth, ratio >= MIN_AREA_RATIO))  # squeezed first, then far to near
            order = order[front[order]]
            self.culled = len(order) < len(front)
            polys = np.round(self.to_grid(dst[order]) * 16).astype(np.int32)  # T' x 3 x 2, 4 fractional bits
            index.fill(len(a) - 1)  # T: no triangle (the identity map)
            cv = cv2()
            for t, poly in zip(order.tolist(), polys, strict=True):
                cv.fillConvexPoly(index, poly, t, cv.LINE_8, 4)
        flat = index.ravel()  # H*W
        p = np.take(a, flat)
        p *= self._qx
        p += np.take(b, flat) * self._qy
        p += np.take(c, flat)  # H*W complex64
        return p.view(np.float32).reshape(*index.shape, 2)  # H x W x 2: (x, y) per output pixel


def soften_tears(out: np.ndarray, pmap: np.ndarray, index: np.ndarray, mesh: SourceMesh,
                 targets: np.ndarray) -> None:
    """Blur ``out`` (in place) in a band along every place where the warp tore (see TEAR_JUMP): the face's outline
    over its surroundings, and inside the face where a nearer part folds over a farther one (the nose over the far
    cheek in a strong turn, where the unsoftened edge read as a dark seam down the cheek, a few pixels wide and
    jagged once the full-resolution paste-back brought it to the output). The lips are left sharp: softening their
    edges made the face mesh read an open mouth as less open. A softened pixel differs from the plain warp, so the
    paste-back takes it from this frame (``live.framing.pasteback_map``): across a fold the full-resolution photo
    fades into this softened frame over a couple of model pixels instead of being sampled between two far-apart
    places of the photo (the smear).

    Args:
        out: size x size x 3 uint8 warped frame.
        pmap: Its size x size x 2 float32 backward map (``Warp.backward_map``).
        index: The triangle per output pixel (``Warp.index``).
        mesh: The source's mesh.
        targets: M x 2 moved vertex positions (``mesh_targets``): the face's box bounds the search, the lips'
            outline is kept out of it.
    """
    cv = cv2()
    n = index.shape[0]
    # Only the face's box, 4 pixels wider, is searched, and there only the pixels where two triangles meet (a few
    # thousand) are compared: the whole frame's map difference cost 4 ms at 256 x 256 on the 2-core CPU, twice the
    # warp itself.
    x0, y0 = np.clip(np.floor(targets[:MESH_POINTS].min(0)).astype(int) - 4, 0, n - 1)
    x1, y1 = np.clip(np.ceil(targets[:MESH_POINTS].max(0)).astype(int) + 5, 1, n)
    tris = index[y0:y1, x0:x1]  # h x w
    box = pmap[y0:y1, x0:x1]  # h x w x 2
    h, w = tris.shape
    tear = np.zeros((h, w), bool)
    # Each pair of neighbours compared over the whole box at once (whole-array OpenCV and numpy calls: 0.2 ms against
    # 0.7 ms for gathering the pairs where the triangle changes, 2-core Xeon, one OpenCV thread); the same pairs torn.
    for dy, dx in ((0, 1), (1, 0)):
        jump = cv.absdiff(box[dy:, dx:], box[:h - dy, :w - dx])  # (h - dy) x (w - dx) x 2 float32
        torn = (jump[..., 0] + jump[..., 1]) > TEAR_JUMP
        torn &= tris[dy:, dx:] != tris[:h - dy, :w - dx]
        tear[:h - dy, :w - dx] |= torn
        tear[dy:, dx:] |= torn
    if not tear.any():
        return
    tear = tear.view(np.uint8)
    lips = np.round(targets[list(OUTER_LIP_POLYGON)] - (x0, y0)).astype(np.int32)
    cv.fillPoly(tear, [lips], 0)
    band = cv.dilate(tear, np.ones((3, 3), np.uint8))
    cv.fillPoly(band, [lips], 0)
    if not band.any():
        return
    region = out[y0:y1, x0:x1]
    np.copyto(region, cv.GaussianBlur(region, (0, 0), TEAR_BLUR), where=band.view(bool)[..., None])
