"""``Inbetweener``: the newest keyframe's output frame moved by the face's motion since the keyframe's camera frame.

Per keyframe: the avatar's mesh where the driver's face put it then, P_k (``live.landmarks.motion.relative_motion``
at the strengths of the moment, with the head ring and the fixed border anchors of ``live.landmarks.warp``). Per
camera frame: the same mesh now, P_t; the backward map of the piecewise-affine warp P_k -> P_t at the model's square
(``Warp.backward_map`` with P_k as the "source" mesh), turned into the keyframe's output position of every square
pixel, resampled at the output pixels of the square's region, and one ``cv2.remap`` of the keyframe's output frame
there. The square's border anchors stay put, so the motion falls off to zero at the square's edge and the frame
outside it is the keyframe's own. Three details, each measured (see the constants): a face that has not moved shows
the keyframe itself (``STILL``), a mouth opening past the keyframe's gets its new gap painted dark
(``MOUTH_NEW_GAP_FULL``), and ``crossfade`` blends the previous keyframe out over the renders after a new one.
The landmarks are used as given: a caller with a noisy camera smooths them first (the live loop's One Euro filter,
``live.loop.smoothing``), as it smooths FOMM's keypoints.

Convention: landmarks are the landmark backend's (478 x 3 float32, normalised to the driving crop: x, y fractions of
its width and height, z in units of its width; see ``live.landmarks``). A placement is where the model's square lies
in the output frame, ``(x0, y0, side)`` in output edge coordinates (pixel i spans [i, i + 1)), as
``live.framing.layout.Framing.box``: square pixel centre j sits at output coordinate ``x0 + (j + 0.5) * side / size``.
Frames are H x W x 3 uint8 RGB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fomm_live.live.backends import check_strengths
from fomm_live.live.errors import UserError
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.landmarks.motion import StrengthMotion
from fomm_live.live.landmarks.mouth import THROAT, mouth_opening
from fomm_live.live.landmarks.points import INNER_LIP_POLYGON, MESH_POINTS, check_image, check_landmarks
from fomm_live.live.landmarks.warp import SourceMesh, Warp, build_mesh, mesh_targets
from fomm_live.live.media import cv2

logger = logging.getLogger(__name__)

# A mouth that opens past the keyframe's has no pixels for the new gap: the warp would stretch the lip line across
# it. The gap is painted dark (the landmark backend's cavity colour), blended in as the opening grows past the
# keyframe's by up to this much (inner-lip gap over mouth width, as ``mouth_opening``); what the cavity holds
# (teeth, tongue) waits for the next keyframe.
MOUTH_NEW_GAP_FULL = 0.08
MOUTH_EDGE = 0.6  # gaussian sigma of the painted gap's edge, square pixels

# A face that has not moved shows the keyframe itself: below STILL[0] of the square's side (the largest landmark's
# move since the keyframe; 0.3 px at 256) the in-between is the keyframe, and the motion eases in up to STILL[1]. On
# the demo clip's still start the face mesh moved 0.13-0.23 px between identical frames, and warping by that much
# resampled the frame for nothing: 45-50 dB against the truth where holding gave 58-64 dB. benchmarks.inbetween at
# N=5, mean gain over holding on four made clips (demo, drawn demo, sway, still with noise): 2.90 dB without this,
# 3.06 at (0.5, 1.0) px, 3.18 at (0.3, 0.6), 3.19 at (0.25, 0.5), 3.14 at (0.4, 0.8).
STILL = (0.3 / 256, 0.6 / 256)

# Where the face turns towards the camera after the keyframe, surfaces hidden in the keyframe come into view (the far
# cheek): their triangles were turned over at P_k, so the warp leaves them out and no triangle covers those pixels.
# The identity there showed whatever the keyframe had at that place (a second eye beside the cheek, on the drawn demo
# clip's head turn with keyframes 5 frames late). They now take the turned-over triangles' own maps (the fold's
# mirror of the surface beside it: mostly skin, some of the eye's outline), and what those do not cover moves as
# its surroundings do on average (a normalised gaussian average of the covered pixels' motion, this reach as a
# fraction of the square's side). On that clip (latency 5, cross-fade 2): 4.26 dB over holding either way (4.25 with
# the average alone, which left a dark smear; 4.20 with the face triangles' motion alone, which brought in the hair).
HOLE_REACH = 0.03

Placement = tuple[float, float, float]  # (x0, y0, side): the model's square in the output frame, edge coordinates


@dataclass
class _Keyframe:
    """One keyframe and what every in-between from it reuses."""

    frame: np.ndarray  # H x W x 3 uint8, the keyframe's output frame (a private copy)
    targets: np.ndarray  # M x 2 float64: the mesh vertices at P_k, square pixels
    mesh: SourceMesh  # the avatar's triangles with P_k as their "source" positions (what the warp samples)
    rows: slice  # the output rows and columns the square covers
    cols: slice
    to_square: np.ndarray  # 2 x 3 float64: region pixel (column, row) -> position in the padded square map
    at_output: np.ndarray  # (n + 2) x (n + 2) x 2 float32: each padded square pixel's own position, output pixels
    scale: float  # output pixels per square pixel
    origin: tuple[float, float]  # the placement's (x0, y0)
    mouth: float  # the mouth's opening at P_k (``mouth_opening``)
    same_outside: bool = False  # the frame equals the previous keyframe's outside the square (``render``'s fade)

    @property
    def region(self) -> np.ndarray:
        """The square's region of the keyframe's frame (a view)."""
        return self.frame[self.rows, self.cols]


class Inbetweener:
    """In-between frames from the newest keyframe (see the module docstring).

    Use: ``set_source`` once per avatar, ``calibrate`` with the neutral pose, ``keyframe`` for each frame the
    generator renders, ``render`` for each camera frame after it. ``set_strengths`` applies from the next call on.
    Not thread-safe: one thread calls it (the live loop's output stage).

    Args:
        size: Side of the model's square in pixels (the crop FOMM animates; 256 for vox-256).
        face_mesh: The face mesh that finds the avatar's landmarks in ``set_source`` (a new one, opened on first use,
            when None; not needed when ``set_source`` is given the landmarks).
        crossfade: After a new keyframe, the next this many renders blend in the previous keyframe moved to the same
            geometry, fading out (0: a new keyframe shows at once).
    """

    def __init__(self, *, size: int = 256, face_mesh: FaceMesh | None = None, crossfade: int = 0) -> None:
        if not 64 <= size <= 4096:
            raise ValueError(f"size: expected 64..4096 pixels, got {size}")
        if crossfade < 0:
            raise ValueError(f"crossfade: expected 0 or more frames, got {crossfade}")
        self.crossfade = int(crossfade)
        self._fading: tuple[_Keyframe, int] | None = None  # (the previous keyframe, renders left in its fade)
        self.size = int(size)
        self._face_mesh = face_mesh
        self._own_face_mesh = face_mesh is None  # close() closes only a face mesh it opened itself
        self._warp = Warp(size=self.size)
        ys, xs = np.mgrid[0:self.size, 0:self.size].astype(np.float32)  # n x n each
        self._grid = np.dstack([xs, ys])  # n x n x 2: each square pixel's own (x, y)
        self._source_points: np.ndarray | None = None  # 478 x 3 float64, square pixels
        self._mesh: SourceMesh | None = None
        self._neutral: np.ndarray | None = None  # 478 x 3 float64, normalised driving landmarks
        self._strengths = (1.0, 1.0)
        self._key: _Keyframe | None = None
        self._square_map = self._grid
        self._padded = np.zeros((self.size + 2, self.size + 2, 2), np.float32)  # render's buffer (_warp_region)
        self._index_of: np.ndarray | None = None  # the targets the warp's triangle index was rasterised for

    def close(self) -> None:
        """Release the face mesh it opened for ``set_source`` (safe to call twice; a face mesh passed in is the
        caller's to close)."""
        if self._own_face_mesh and self._face_mesh is not None:
            self._face_mesh.close()
            self._face_mesh = None

    # -- avatar, neutral pose, strengths -------------------------------------------------------------------------
    def set_source(self, image: np.ndarray, *, points: np.ndarray | None = None) -> None:
        """Take the avatar: the model's square that FOMM animates (its landmarks set the mesh). Forgets the keyframe.

        Args:
            image: size x size x 3 uint8 RGB, the avatar's crop as the generator gets it (another size is read as
                the same square: landmarks are normalised).
            points: Its 478 x 3 normalised landmarks if already known; found with the face mesh when None.

        Raises:
            UserError: no face found in the image.
        """
        check_image(image, "set_source")
        if points is None:
            if self._face_mesh is None:
                self._face_mesh = FaceMesh()
            points = self._face_mesh.landmarks(image, static=True)
            if points is None:
                raise UserError("in-betweens: no face found in the avatar's square; use a photo with one face")
        source = check_landmarks(points, "set_source").astype(np.float64) * self.size  # 478 x 3, square pixels
        self._source_points = source
        self._mesh = mesh = build_mesh(source, size=self.size)
        self._motion = StrengthMotion.of(source, mesh, size=self.size)
        self._key = None
        self._fading = None

    def calibrate(self, landmarks: np.ndarray) -> None:
        """Take these driving landmarks as the neutral pose (the landmark backend's ``calibrate``); a keyframe
        already taken keeps the mesh it was rendered at."""
        self._neutral = check_landmarks(landmarks, "calibrate").astype(np.float64)

    def reset_calibration(self) -> None:
        """Forget the neutral pose and the keyframe (both belong to the old crops): ``calibrate`` and ``keyframe``
        again before the next ``render``."""
        self._neutral = None
        self._key = None
        self._fading = None

    @property
    def calibrated(self) -> bool:
        """Whether a neutral pose is set."""
        return self._neutral is not None

    @property
    def strengths(self) -> tuple[float, float]:
        """(head, expression) strength, each from 0 to 2."""
        return self._strengths

    def set_strengths(self, head: float, expression: float) -> None:
        """How much of the driver's head motion and expression the mesh copies, as the landmark backend's.

        Raises:
            ValueError: a strength outside 0..2.
        """
        self._strengths = check_strengths(head, expression, relative=True)

    def moved_landmarks(self, landmarks: np.ndarray) -> np.ndarray:
        """The avatar's landmarks moved by these driving landmarks: 478 x 3 float64, square pixels (the landmark
        backend's relative motion at the current strengths, an exaggerated expression pulled back where the mesh
        would fold)."""
        driving = check_landmarks(landmarks, "in-between").astype(np.float64)
        if self._source_points is None or self._mesh is None:
            raise RuntimeError("set_source() must be called before keyframe() and render()")
        if self._neutral is None:
            raise RuntimeError("in-betweens need a neutral pose: call calibrate() first")
        head, expression = self._strengths
        return self._motion.moved(self._neutral, driving, head=head, expression=expression)

    # -- keyframes and in-betweens -------------------------------------------------------------------------------
    def keyframe(self, frame: np.ndarray, landmarks: np.ndarray, placement: Placement) -> None:
        """Take a new keyframe: in-betweens are made from it until the next one.

        Args:
            frame: H x W x 3 uint8 RGB, the keyframe's composed output frame (copied: the caller may reuse it).
            landmarks: 478 x 3 normalised landmarks of the driving crop of the camera frame the keyframe was
                rendered from (what the generator's driving frame showed).
            placement: ``(x0, y0, side)``, where the model's square lies in ``frame`` (output edge coordinates,
                as ``Framing.box``; ``(0, 0, size)`` when the frame is the square itself).
        """
        check_image(frame, "keyframe")
        x0, y0, side = (float(v) for v in placement)
        if not side > 0:
            raise ValueError(f"keyframe: the placement's side must be positive, got {side}")
        moved = self.moved_landmarks(landmarks)
        targets, _ = mesh_targets(self._mesh, moved, self._source_points)
        height, width = frame.shape[:2]
        c0, c1 = max(0, int(np.floor(x0))), min(width, int(np.ceil(x0 + side)))
        r0, r1 = max(0, int(np.floor(y0))), min(height, int(np.ceil(y0 + side)))
        if c1 <= c0 or r1 <= r0:
            raise ValueError(f"keyframe: the square {placement} lies outside the {width} x {height} frame")
        n = self.size
        # The square pixel each output pixel of the region shows, plus 1: the maps below are padded by a pixel of
        # zero motion (the square's border anchors do not move), so that the few output pixels whose centre lies
        # within half a square pixel outside it interpolate towards the identity. Output pixel (c0 + i, r0 + j)
        # shows padded square position ((c0 + i + 0.5 - x0) n / side + 0.5, the same in y): an affine map, so
        # ``cv2.warpAffine`` resamples the square's map at the region (0.25 ms at 480 x 480 where ``cv2.remap``
        # with per-pixel coordinates took 0.94 ms, one thread of the 2-core Xeon).
        k = n / side
        to_square = np.array([[k, 0.0, (c0 + 0.5 - x0) * k + 0.5], [0.0, k, (r0 + 0.5 - y0) * k + 0.5]])
        ys, xs = np.mgrid[-1:n + 1, -1:n + 1].astype(np.float64)  # (n + 2) x (n + 2) each, square pixels
        scale = side / n
        at_output = np.dstack([x0 + (xs + 0.5) * scale - 0.5, y0 + (ys + 0.5) * scale - 0.5]).astype(np.float32)
        previous = self._key
        self._fading = None
        key = _Keyframe(
            frame=np.ascontiguousarray(frame).copy(), targets=targets,
            mesh=SourceMesh(vertices=targets, triangles=self._mesh.triangles, ring_of=self._mesh.ring_of,
                            ring_weight=self._mesh.ring_weight),
            rows=slice(r0, r1), cols=slice(c0, c1), to_square=to_square, at_output=at_output, scale=scale,
            origin=(x0, y0), mouth=mouth_opening(moved))
        if self.crossfade and previous is not None and previous.frame.shape == frame.shape:
            self._fading = (previous, self.crossfade)
            # Checked once here, so that each faded render blends only the square's region when the rest is the
            # same (as in the live loop: the photo around the square).
            key.same_outside = (previous.rows, previous.cols) == (key.rows, key.cols) and _equal_outside(
                previous.frame, key.frame, key.rows, key.cols)
        self._key = key

    @property
    def has_keyframe(self) -> bool:
        """Whether a keyframe is held (``render`` needs one)."""
        return self._key is not None

    @property
    def square_map(self) -> np.ndarray:
        """The last ``render``'s warp at the model's square: size x size x 2 float32, per square pixel the keyframe's
        square position (x, y; pixel centres at integer coordinates) it shows, ``cv2.remap``'s map; the identity
        before any render and when the mesh had not moved."""
        return self._square_map

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        """The in-between for these driving landmarks: the keyframe's frame moved from the mesh at the keyframe's
        landmarks to the mesh at these. A new H x W x 3 uint8 array, the keyframe's shape; the keyframe's frame
        itself, exactly, when the mesh has not moved (by more than STILL[0] of the square's side).

        Args:
            landmarks: 478 x 3 normalised landmarks of this camera frame's driving crop.

        Raises:
            RuntimeError: no keyframe yet (or no source or neutral pose).
        """
        key = self._key
        if key is None:
            raise RuntimeError("render() needs a keyframe first: call keyframe()")
        moved = self.moved_landmarks(landmarks)
        targets, depth = mesh_targets(self._mesh, moved, self._source_points)
        out = key.frame.copy()  # the frame outside the square is the keyframe's own
        self._index_of = None
        self._square_map = self._warp_region(out[key.rows, key.cols], key, moved, targets, depth)
        if self._fading is not None:  # the previous keyframe moved to the same geometry, faded out
            old, left = self._fading
            weight = left / (self.crossfade + 1)  # the old keyframe's share: crossfade / (crossfade + 1) first
            cv = cv2()
            if key.same_outside:  # only the square's region differs: blend it alone, in place
                region = out[key.rows, key.cols]
                previous = old.region.copy()
                self._warp_region(previous, old, moved, targets, depth)
                cv.addWeighted(previous, weight, region, 1.0 - weight, 0.0, dst=region)
            else:
                previous = old.frame.copy()
                self._warp_region(previous[old.rows, old.cols], old, moved, targets, depth)
                out = cv.addWeighted(previous, weight, out, 1.0 - weight, 0.0)
            self._fading = (old, left - 1) if left > 1 else None
        return out

    def _warp_region(self, region: np.ndarray, key: _Keyframe, moved: np.ndarray, targets: np.ndarray,
                     depth: np.ndarray) -> np.ndarray:
        """Write ``key``'s frame moved to the mesh ``targets`` into ``region`` (h x w x 3 uint8, the square's region
        of an output frame that holds ``key``'s own pixels there already); the square map it used (see ``render``).

        A second call in the same ``render`` with the same ``targets`` (the cross-fade's previous keyframe) reuses
        the first call's triangle index (which moved triangle covers each square pixel: it depends only on
        ``targets``), which saves the rasterisation (0.85 ms of the 1.7 ms map at 256, 2-core Xeon).
        """
        step = np.abs(targets[:MESH_POINTS] - key.targets[:MESH_POINTS]).max() / self.size
        if step <= STILL[0]:
            return self._grid
        if step < STILL[1]:  # ease the motion in: the vertices a fraction of the way from the keyframe's
            targets = key.targets + (step - STILL[0]) / (STILL[1] - STILL[0]) * (targets - key.targets)
        cv = cv2()
        reuse = self._index_of is targets
        pmap = self._warp.backward_map(key.mesh, targets, depth, reuse_index=reuse)  # n x n x 2: where each square
        self._index_of = targets  # pixel was at P_k
        if self._warp.culled:
            pmap = self._fill_holes(pmap, key.mesh, targets)
        # Where each square pixel's content comes from in the keyframe's output frame: its own output position plus
        # its displacement in output pixels, the padding ring left at zero displacement.
        moves = self._padded  # its ring stays zero
        np.subtract(pmap, self._grid, out=moves[1:-1, 1:-1])  # n x n x 2: displacement, square pixels
        source = moves * np.float32(key.scale) + key.at_output  # (n + 2) x (n + 2) x 2, output pixels
        # The same at every output pixel of the square's region (bilinear), then the keyframe's frame sampled there.
        height, width = region.shape[:2]
        at_region = cv.warpAffine(source, key.to_square, (width, height), flags=cv.INTER_LINEAR | cv.WARP_INVERSE_MAP,
                                  borderMode=cv.BORDER_REPLICATE)  # h x w x 2, output pixels
        cv.remap(key.frame, at_region, None, cv.INTER_LINEAR, dst=region, borderMode=cv.BORDER_REPLICATE)
        opened = mouth_opening(moved) - key.mouth
        if opened > 0.0:
            self._paint_gap(region, key, moved, min(1.0, opened / MOUTH_NEW_GAP_FULL))
        return pmap

    def _fill_holes(self, pmap: np.ndarray, mesh: SourceMesh, targets: np.ndarray) -> np.ndarray:
        """``pmap`` with the pixels no triangle covers filled: by the turned-over triangles' own maps where they lie
        (the fold's mirror of the nearby surface), else by the motion around them (see HOLE_REACH)."""
        holes = self._warp.index == len(mesh.triangles)  # n x n: no front-facing triangle here
        if not holes.any():
            return pmap
        cv = cv2()
        filled = pmap.copy()
        src = mesh.vertices[mesh.triangles]  # T x 3 x 2: at P_k
        dst = targets[mesh.triangles]  # T x 3 x 2: now
        d1, d2 = dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]
        s1, s2 = src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
        det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]  # T
        det_src = s1[:, 0] * s2[:, 1] - s2[:, 0] * s1[:, 1]
        turned = np.flatnonzero((det * det_src < 0) & (np.abs(det) > 1e-3))
        if len(turned):
            index = np.full(holes.shape, -1, np.int32)
            for t, poly in zip(turned.tolist(), np.round(dst[turned] * 16).astype(np.int32), strict=True):
                cv.fillConvexPoly(index, poly, t, cv.LINE_8, 4)
            ys, xs = np.nonzero(holes & (index >= 0))
            t = index[ys, xs]
            inv = 1.0 / det[t]
            qx, qy = xs - dst[t, 0, 0], ys - dst[t, 0, 1]
            a = (d2[t, 1] * qx - d2[t, 0] * qy) * inv  # q = dst0 + a d1 + b d2
            b = (d1[t, 0] * qy - d1[t, 1] * qx) * inv
            filled[ys, xs] = (src[t, 0] + a[:, None] * s1[t] + b[:, None] * s2[t]).astype(np.float32)
            holes[ys, xs] = False
            if not holes.any():
                return filled
        covered = (~holes).astype(np.float32)  # n x n
        moves = (filled - self._grid) * covered[..., None]  # n x n x 2
        sigma = HOLE_REACH * self.size
        around = cv.GaussianBlur(moves, (0, 0), sigma) / np.maximum(cv.GaussianBlur(covered, (0, 0), sigma),
                                                                     1e-6)[..., None]
        filled[holes] = self._grid[holes] + around[holes]
        return filled

    def _paint_gap(self, out: np.ndarray, key: _Keyframe, moved: np.ndarray, amount: float) -> None:
        """Paint the inner-lip polygon of ``moved`` (square pixels) dark in ``out`` (the square's region of an output
        frame), ``amount`` of the way, with a soft edge (see MOUTH_NEW_GAP_FULL)."""
        cv = cv2()
        height, width = out.shape[:2]
        polygon = moved[list(INNER_LIP_POLYGON), :2]  # P x 2, square pixels
        origin = np.array([key.origin[0] - key.cols.start - 0.5 + 0.5 * key.scale,
                           key.origin[1] - key.rows.start - 0.5 + 0.5 * key.scale])  # region pixels
        points = polygon * key.scale + origin  # output pixels
        pad = int(np.ceil(3 * MOUTH_EDGE * key.scale)) + 2
        c0, r0 = np.maximum(np.floor(points.min(0)).astype(int) - pad, 0)
        c1, r1 = np.minimum(np.ceil(points.max(0)).astype(int) + pad + 1, [width, height])
        if c1 <= c0 or r1 <= r0:
            return
        mask = np.zeros((r1 - r0, c1 - c0), np.float32)
        cv.fillPoly(mask, [np.round((points - [c0, r0]) * 16).astype(np.int32)], 1.0, cv.LINE_AA, 4)
        mask = cv.GaussianBlur(mask, (0, 0), MOUTH_EDGE * key.scale) * np.float32(amount)  # h x w
        region = out[r0:r1, c0:c1].astype(np.float32)
        region += mask[..., None] * (THROAT - region)
        out[r0:r1, c0:c1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)


def _equal_outside(a: np.ndarray, b: np.ndarray, rows: slice, cols: slice) -> bool:
    """Whether two frames of one shape are equal outside ``[rows, cols]``."""
    return bool(np.array_equal(a[:rows.start], b[:rows.start]) and np.array_equal(a[rows.stop:], b[rows.stop:])
                and np.array_equal(a[rows, :cols.start], b[rows, :cols.start])
                and np.array_equal(a[rows, cols.stop:], b[rows, cols.stop:]))
