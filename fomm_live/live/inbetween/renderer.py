"""``Inbetweener``: the newest keyframe's output frame moved by the face's motion since the keyframe's camera frame.

Per keyframe: the avatar's mesh where the driver's face put it then, P_k (``live.landmarks.motion.relative_motion`` at
the strengths of the moment, with the head ring and the fixed border anchors of ``live.landmarks.warp``). Per camera
frame: the same mesh now, P_t; the backward map of the piecewise-affine warp P_k -> P_t (``Warp.backward_map`` with P_k
as the "source" mesh) at a grid of every ``factor``-th output pixel of the square's region (about one point per square
pixel), turned into the keyframe's output positions, enlarged to every output pixel of the region by ``cv2.resize``, and
one ``cv2.remap`` of the keyframe's output frame written straight into the output frame there. The square's border
anchors stay put, so the motion falls off to zero at the square's edge and the frame outside it is the keyframe's own.
Four details, each measured (see the constants): a face that has not moved shows the keyframe itself (``STILL``), a
mouth opening past the keyframe's gets its new gap painted dark (``MOUTH_NEW_GAP_FULL``), an eye shut since the
keyframe gets the landmark backend's lid painted over the warp's slit (``closing``), and ``crossfade`` blends the
previous keyframe out over the renders after a new one (less where the two disagree: ``fade``). The landmarks are used
as given: a caller with a noisy camera smooths them first (the live loop's One Euro filter, ``live.loop.smoothing``),
as it smooths FOMM's keypoints.

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
from fomm_live.live.inbetween.closing import KeyLids, closing, key_lids, paint_lids, region_shift
from fomm_live.live.inbetween.fade import fade_blends
from fomm_live.live.inbetween.uncovered import fill_holes, gap_amount, paint_gap
from fomm_live.live.landmarks import lids
from fomm_live.live.landmarks.eyes import eye_opening
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.landmarks.motion import StrengthMotion
from fomm_live.live.landmarks.mouth import mouth_opening
from fomm_live.live.landmarks.points import EYES, MESH_POINTS, check_image, check_landmarks
from fomm_live.live.landmarks.warp import SourceMesh, Warp, build_mesh, mesh_targets
from fomm_live.live.media import cv2

logger = logging.getLogger(__name__)

# A face that has not moved shows the keyframe itself: below STILL[0] of the square's side (the largest landmark's
# move since the keyframe; 0.3 px at 256) the in-between is the keyframe, and the motion eases in up to STILL[1]. On
# the demo clip's still start the face mesh moved 0.13-0.23 px between identical frames, and warping by that much
# resampled the frame for nothing: 45-50 dB against the truth where holding gave 58-64 dB. benchmarks.inbetween at
# N=5, mean gain over holding on four made clips (demo, drawn demo, sway, still with noise): 2.90 dB without this,
# 3.06 at (0.5, 1.0) px, 3.18 at (0.3, 0.6), 3.19 at (0.25, 0.5), 3.14 at (0.4, 0.8).
STILL = (0.3 / 256, 0.6 / 256)

Placement = tuple[float, float, float]  # (x0, y0, side): the model's square in the output frame, edge coordinates


@dataclass
class _Keyframe:
    """One keyframe and what every in-between from it reuses."""

    frame: np.ndarray  # H x W x 3 uint8, the keyframe's output frame (a private copy)
    targets: np.ndarray  # M x 2 float64: the mesh vertices at P_k, square pixels
    mesh: SourceMesh  # the avatar's triangles with P_k as their "source" positions (what the warp samples)
    rows: slice  # the output rows and columns the square covers
    cols: slice
    warp: Warp  # the warp at this keyframe's grid (shared with the keyframe before when the grid is the same)
    factor: int  # the grid's spacing in output pixels (the map is enlarged by this much)
    inside: np.ndarray  # grid rows x columns bool: grid points within the square's mesh (its border anchors)
    scale: float  # output pixels per square pixel
    origin: tuple[float, float]  # the placement's (x0, y0)
    mouth: float  # the mouth's opening at P_k (``mouth_opening``)
    lids: KeyLids  # its eyes' lids, for an eye shut after it (``closing``)
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
        # (the previous keyframe, renders left in its fade, the faded renders' squares before the warp or None)
        self._fading: tuple[_Keyframe, int, list[np.ndarray] | None] | None = None
        self.size = int(size)
        self._face_mesh = face_mesh
        self._own_face_mesh = face_mesh is None  # close() closes only a face mesh it opened itself
        ys, xs = np.mgrid[0:self.size, 0:self.size].astype(np.float32)  # n x n each
        self._grid = np.dstack([xs, ys])  # n x n x 2: each square pixel's own (x, y)
        self._source_points: np.ndarray | None = None  # 478 x 3 float64, square pixels
        self._mesh: SourceMesh | None = None
        self._neutral: np.ndarray | None = None  # 478 x 3 float64, normalised driving landmarks
        self._neutral_openings: list[float] = []  # its eyes' turn-proof openings (``lids.driver_closures``)
        self._strengths = (1.0, 1.0)
        self._key: _Keyframe | None = None
        self._last_map: tuple[_Keyframe, np.ndarray] | None = None  # the last render's (keyframe, grid map)
        # (targets, warp): what the last triangle index was rasterised for (``_warp_region`` reuses it once)
        self._index_of: tuple[np.ndarray, Warp] | None = None

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
        self._neutral_openings = [eye_opening(self._neutral, eye, turn_proof=True) for eye in EYES]

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

    def _closures(self, landmarks: np.ndarray) -> list[float]:
        """The driver's eyes' closures against the neutral pose, as the landmark backend's."""
        return lids.driver_closures(np.asarray(landmarks, np.float64), self._neutral_openings, self._strengths[1])

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
        targets, depth = mesh_targets(self._mesh, moved, self._source_points)
        height, width = frame.shape[:2]
        c0, c1 = max(0, int(np.floor(x0))), min(width, int(np.ceil(x0 + side)))
        r0, r1 = max(0, int(np.floor(y0))), min(height, int(np.ceil(y0 + side)))
        if c1 <= c0 or r1 <= r0:
            raise ValueError(f"keyframe: the square {placement} lies outside the {width} x {height} frame")
        n = self.size
        scale = side / n  # output pixels per square pixel
        # The grid the map is evaluated at: every ``factor``-th output pixel of the region (about one per square
        # pixel), one more on each side, in square pixels for the warp. ``cv2.resize`` by ``factor`` then gives the
        # map at every output pixel: its bilinear sample positions (i + 0.5) / factor - 0.5 fall exactly on this
        # grid. Evaluating the map at the region's own pixels through the square's map (``cv2.remap`` of the map)
        # took 0.94 ms at 480 x 480 where the resize takes 0.2 (one thread of the 2-core Xeon); the grid (242 x 242
        # points at 2 px) costs what the square's 256 x 256 did.
        factor = max(1, round(scale))
        rows, cols = -(-(r1 - r0) // factor) + 2, -(-(c1 - c0) // factor) + 2
        # Grid point (i, j) sits at region pixel ((j - 1) + 0.5) factor - 0.5, output pixel c0 + that (centre
        # coordinates), square position (output + 0.5 - x0) / scale - 0.5.
        origin = ((c0 - 0.5 * factor - x0) / scale - 0.5, (r0 - 0.5 * factor - y0) / scale - 0.5)
        step = factor / scale
        previous = self._key
        if previous is not None and previous.warp.origin == origin and previous.warp.step == step and \
                previous.warp.positions.shape[:2] == (rows, cols):
            warp, inside = previous.warp, previous.inside
        else:
            warp = Warp(size=n, origin=origin, step=step, shape=(rows, cols))
            inside = ((warp.positions >= 0.0) & (warp.positions <= n - 1)).all(2)  # the border anchors' square
        self._fading = None
        key = _Keyframe(
            frame=np.ascontiguousarray(frame).copy(), targets=targets,
            mesh=SourceMesh(vertices=targets, triangles=self._mesh.triangles, ring_of=self._mesh.ring_of,
                            ring_weight=self._mesh.ring_weight),
            rows=slice(r0, r1), cols=slice(c0, c1), warp=warp, factor=factor, inside=inside, scale=scale,
            origin=(x0, y0), mouth=mouth_opening(moved),
            lids=key_lids(moved, self._closures(landmarks), shift=region_shift((x0, y0), scale, (c0, r0)), scale=scale))
        if self.crossfade and previous is not None and previous.frame.shape == frame.shape:
            # Checked once here, so that each faded render blends only the square's region when the rest is the
            # same (as in the live loop: the photo around the square).
            key.same_outside = (previous.rows, previous.cols) == (key.rows, key.cols) and _equal_outside(
                previous.frame, key.frame, key.rows, key.cols)
            blends = None
            if key.same_outside and previous.warp is warp:
                # The previous keyframe moved to this keyframe's mesh, once: each faded render then blends the two
                # squares and warps the blend once (a warp is linear in the pixels, so this is the blend of the two
                # warps but for one more resampling of the fading frame); two warps a faded render cost 2.5 ms
                # more (1280x720, one thread of the 2-core Xeon). The blends, less of the previous keyframe where
                # it disagrees with this one (``fade``), are made here too: 1 ms each at 480 x 480 where the even
                # blend of the two took 0.15 (2-core Xeon, loaded), so the faded renders cost no more than others.
                aligned = previous.region.copy()
                self._index_of = None
                self._warp_region(aligned, previous, moved, targets, depth)
                blends = fade_blends(aligned, key.region, self.crossfade, scale=scale)
            self._fading = (previous, self.crossfade, blends)
        self._key = key
        self._last_map = None

    @property
    def has_keyframe(self) -> bool:
        """Whether a keyframe is held (``render`` needs one)."""
        return self._key is not None

    @property
    def square_map(self) -> np.ndarray:
        """The last ``render``'s warp at the model's square: size x size x 2 float32, per square pixel the keyframe's
        square position (x, y; pixel centres at integer coordinates) it shows, ``cv2.remap``'s map; the identity
        before any render and when the mesh had not moved. (Sampled from the map at the keyframe's grid; the grid
        is the square's own pixels, one more on each side, when the placement is the square, ``(0, 0, size)``.)"""
        if self._last_map is None:
            return self._grid
        key, pmap = self._last_map
        warp = key.warp
        if warp.step == 1.0 and warp.origin == (-1.0, -1.0):
            return pmap[1:self.size + 1, 1:self.size + 1]
        at = warp.to_grid(self._grid)  # n x n x 2: each square pixel in grid units
        return cv2().remap(pmap, at[..., 0], at[..., 1], cv2().INTER_LINEAR, borderMode=cv2().BORDER_REPLICATE)

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
        closures = self._closures(landmarks)
        amounts = closing(key.lids, closures)  # an eye shut since the keyframe: its lid painted down
        targets, depth = mesh_targets(self._mesh, moved, self._source_points)
        out = key.frame.copy()  # the frame outside the square is the keyframe's own
        region = out[key.rows, key.cols]
        self._index_of = None
        cv = cv2()
        blend = None  # the square's blend of the previous keyframe (moved to this one's mesh) and this one
        if self._fading is not None:  # the previous keyframe moved to the same geometry, faded out
            old, left, blends = self._fading
            weight = left / (self.crossfade + 1)  # the old keyframe's share: crossfade / (crossfade + 1) first
            if blends is not None:
                blend = blends[self.crossfade - left]
                region[...] = blend
        pmap = self._warp_region(region, key, moved, targets, depth, source=blend, amounts=amounts)
        self._last_map = None if pmap is None else (key, pmap)
        if self._fading is not None:
            if blends is None:  # the previous keyframe warped on its own and blended over the whole frame
                previous = old.frame.copy()
                self._warp_region(previous[old.rows, old.cols], old, moved, targets, depth,
                                  amounts=closing(old.lids, closures))
                out = cv.addWeighted(previous, weight, out, 1.0 - weight, 0.0)
            self._fading = (old, left - 1, blends) if left > 1 else None
        return out

    def _warp_region(self, region: np.ndarray, key: _Keyframe, moved: np.ndarray, targets: np.ndarray,
                     depth: np.ndarray, *, source: np.ndarray | None = None,
                     amounts: list[float] | None = None) -> np.ndarray | None:
        """Write ``key``'s frame moved to the mesh ``targets`` into ``region`` (h x w x 3 uint8, the square's region
        of an output frame that holds ``key``'s own pixels there already, or ``source``'s); the map it used at the
        keyframe's grid (None: the mesh had not moved, the region is left as it is). ``source``: another image of
        the square's region to move instead of ``key``'s (the cross-fade's blend). ``amounts``: per eye, how far
        its lid is painted down over the warped eye (``closing``; the region is warped then even when the mesh had
        not moved).

        A second call in the same ``render`` with the same ``targets`` and grid (the cross-fade's previous keyframe)
        reuses the first call's triangle index (which moved triangle covers each grid point: it depends only on
        ``targets``), which saves the rasterisation (0.85 ms of the 1.7 ms map at 256, 2-core Xeon).
        """
        step = np.abs(targets[:MESH_POINTS] - key.targets[:MESH_POINTS]).max() / self.size
        lidded = amounts is not None and any(a > 0.0 for a in amounts)
        if step <= STILL[0] and not lidded:
            return None
        if step < STILL[1]:  # ease the motion in: the vertices a fraction of the way from the keyframe's
            targets = key.targets + (step - STILL[0]) / (STILL[1] - STILL[0]) * (targets - key.targets)
        cv = cv2()
        warp = key.warp
        reuse = self._index_of is not None and self._index_of[0] is targets and self._index_of[1] is warp
        pmap = warp.backward_map(key.mesh, targets, depth, reuse_index=reuse)  # rows x cols x 2: where each grid
        self._index_of = (targets, warp)  # point was at P_k, square pixels
        if warp.culled:
            pmap = fill_holes(pmap, warp=warp, mesh=key.mesh, inside=key.inside, targets=targets)
        # Those positions in the keyframe's output frame, then at every output pixel of the region (bilinear: the
        # grid's points fall on every ``factor``-th pixel, one grid point beyond the region on each side).
        at_output = pmap * np.float32(key.scale)
        at_output += np.float32(key.scale * 0.5 - 0.5) + np.array(key.origin, np.float32)  # output pixel centres
        if source is not None:  # the region's own pixels
            at_output -= np.array([key.cols.start, key.rows.start], np.float32)
        height, width = region.shape[:2]
        f = key.factor
        if f > 1:
            rows, cols = at_output.shape[:2]
            at_output = cv.resize(at_output, (cols * f, rows * f), interpolation=cv.INTER_LINEAR)
        at_region = at_output[f:f + height, f:f + width]  # h x w x 2, output pixels
        cv.remap(key.frame if source is None else source, at_region, None, cv.INTER_LINEAR, dst=region,
                 borderMode=cv.BORDER_REPLICATE)
        if lidded:  # the lids' skin is taken through the map, in the region's own pixels
            local = at_region if source is not None else at_region - np.array([key.cols.start, key.rows.start],
                                                                              np.float32)
            paint_lids(region, local, key.region if source is None else source, moved, key.lids, amounts,
                       own=key.region)
        amount = gap_amount(mouth_opening(moved), key.mouth)
        if amount > 0.0:
            paint_gap(region, moved, origin=key.origin, scale=key.scale, at=(key.cols.start, key.rows.start),
                      amount=amount)
        return pmap


def _equal_outside(a: np.ndarray, b: np.ndarray, rows: slice, cols: slice) -> bool:
    """Whether two frames of one shape are equal outside ``[rows, cols]``."""
    return bool(np.array_equal(a[:rows.start], b[:rows.start]) and np.array_equal(a[rows.stop:], b[rows.stop:])
                and np.array_equal(a[rows, :cols.start], b[rows, :cols.start])
                and np.array_equal(a[rows, cols.stop:], b[rows, cols.stop:]))
