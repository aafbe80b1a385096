"""Motion transfer between faces: a least-squares similarity fit, and the driver's motion carried to the source.

Let D0 be the driving landmarks at calibration, D the current ones and S0 the source's. A similarity (rotation R in
3-D, uniform scale s, translation t) is fitted by least squares (Umeyama 1991) over stable points that expression
barely moves (forehead, nose bridge, upper face oval, eye corners): D ≈ s R D0 + t there. The head motion is that
similarity; the expression is what it leaves, brought back into the neutral pose's frame:

    E = R^T (D - t) / s - D0                                  (per landmark, 3-D)

The source moves by the same head motion about its own centre c_S, and by the expression scaled to its face size:

    k = rms(S0 - c_S) / rms(D0 - c_D)                         (over the stable points, x and y)
    S = c_S + s R (S0 + k E - c_S) + k (s R c_D + t - c_D)

where c_D is the centre of the stable points of D0. When the source is the driver's face up to a scale and a shift,
this is exactly S - S0 = k (D - D0), the relative motion of FOMM with its adaptive scale; when the faces differ,
the source keeps its own shape. S is projected orthographically (its x and y are kept); the warp draws it with
triangles that turn away culled and nearer ones over farther ones (``live.landmarks.warp``), so a head turn hides
the far cheek instead of folding it.

Large turns are eased: the source's rotation is R' = Rz(roll) Ry(yaw') Rx(pitch'), the driver's yaw and pitch
passed through ``ease`` (unchanged up to 25 and 15 degrees, then approaching 35 and 25 smoothly), because beyond
about 30 degrees of yaw the face mesh's far half is mostly hidden and a photo has no texture for what would come
into view. The expression E is still taken out with the driver's own R, so a turn is never read as an expression.

Convention for the angles (degrees): R = Rz(roll) Ry(yaw) Rx(pitch) on column vectors (x right, y down, z away from
the camera); a positive yaw moves the nose to the image's right, a positive pitch moves it down, a positive roll
turns the face counter-clockwise on screen.

Head and expression strength (the live controls): the head's angles, log-scale and shift are multiplied by the head
strength before easing, and E by the expression strength; both at 1 is the motion above, to the bit. An exaggerated
expression is pulled back where a triangle of the mesh would fold (``unfolded_strengths``).

The mouth (lips, jaw) moves by its expression scaled by k_m = k * g, g = clip(source mouth width / driver mouth width
over k, 1, MOUTH_GAIN_MAX): a source whose mouth is wider for its face than the driver's opens a little more, and a
small drawn mouth never opens less than the face's scale says (its opening, relative to the face, is the driver's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fomm_live.live.landmarks.points import JAW_AND_LIPS, MESH_POINTS, MOUTH_CORNERS, STABLE
from fomm_live.live.landmarks.warp import SourceMesh, mesh_targets

YAW_EASE = (25.0, 35.0)  # degrees: the yaw passed on unchanged up to the first, approaching the second beyond it
PITCH_EASE = (15.0, 25.0)  # the same for pitch
MOUTH_GAIN_MAX = 1.2  # the most a wide source mouth amplifies the driver's mouth motion over the face's scale


def ease(angle: float, knee: float, limit: float) -> float:
    """``angle`` unchanged within +-knee, then approaching +-limit: knee + (limit - knee) tanh((|a| - knee) /
    (limit - knee)), continuous with its first derivative at the knee.

    Args:
        angle: Degrees.
        knee: Where easing starts (degrees, > 0).
        limit: The bound approached (degrees, > knee).
    """
    if abs(angle) <= knee:
        return angle
    span = limit - knee
    return math.copysign(knee + span * math.tanh((abs(angle) - knee) / span), angle)


def rotation_angles(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) Ry(yaw) Rx(pitch) (see the Convention)."""
    yaw = math.degrees(math.asin(float(np.clip(rot[2, 0], -1.0, 1.0))))
    pitch = math.degrees(math.atan2(rot[2, 1], rot[2, 2]))
    roll = math.degrees(math.atan2(-rot[1, 0], rot[0, 0]))
    return yaw, pitch, roll


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Ry(yaw) Rx(pitch), 3 x 3 (degrees; see the Convention)."""
    y, p, r = np.radians([yaw, pitch, roll])
    rot_y = np.array([[math.cos(y), 0.0, -math.sin(y)], [0.0, 1.0, 0.0], [math.sin(y), 0.0, math.cos(y)]])
    rot_x = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    rot_z = np.array([[math.cos(r), math.sin(r), 0.0], [-math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return rot_z @ rot_y @ rot_x


def eased_rotation(rot: np.ndarray) -> np.ndarray:
    """``rot`` with its yaw and pitch eased (``ease`` with YAW_EASE, PITCH_EASE); ``rot`` itself while both are
    within their knees."""
    yaw, pitch, roll = rotation_angles(rot)
    if abs(yaw) <= YAW_EASE[0] and abs(pitch) <= PITCH_EASE[0]:
        return rot
    return rotation_matrix(ease(yaw, *YAW_EASE), ease(pitch, *PITCH_EASE), roll)


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


def relative_motion(source: np.ndarray, neutral: np.ndarray, driving: np.ndarray, *, head: float = 1.0,
                    expression: float = 1.0) -> np.ndarray:
    """Where the source's landmarks go when the driver moves from ``neutral`` to ``driving`` (see the module
    docstring): 478 x 3 float64, in the source's units.

    Args:
        source: 478 x 3 float64 source landmarks S0 (output pixels in the backend).
        neutral: 478 x 3 float64 driving landmarks at calibration, D0 (normalised).
        driving: 478 x 3 float64 current driving landmarks, D (normalised).
        head: Head strength: the similarity's angles, log-scale and shift are multiplied by it (0 holds the head at
            the neutral pose, 1 copies it; the eased turn bounds it).
        expression: Expression strength: E is multiplied by it (the result is linear in it; see
            ``unfolded_strengths`` for the bound that keeps an exaggerated face from folding).
    """
    stable = list(STABLE)
    scale, rot, shift = similarity_fit(neutral[stable], driving[stable])
    expression_move = (driving - shift) @ rot / scale - neutral  # R^T (D - t) / s - D0, 478 x 3
    c_d, c_s = neutral[stable].mean(0), source[stable].mean(0)
    k = (np.sqrt(((source[stable, :2] - c_s[:2]) ** 2).sum(1).mean())
         / np.sqrt(((neutral[stable, :2] - c_d[:2]) ** 2).sum(1).mean()))
    head_shift = scale * rot @ c_d + shift - c_d
    if head != 1.0:  # at 1 the fitted motion itself, so that the default is today's to the bit
        yaw, pitch, roll = rotation_angles(rot)
        rot = rotation_matrix(yaw * head, pitch * head, roll * head)
        scale, head_shift = scale**head, head_shift * head
    mouth, corners = list(JAW_AND_LIPS), list(MOUTH_CORNERS)
    mouth_ratio = (np.linalg.norm(source[corners[0], :2] - source[corners[1], :2])
                   / max(np.linalg.norm(neutral[corners[0], :2] - neutral[corners[1], :2]), 1e-9))
    gain = float(np.clip(mouth_ratio / k, 1.0, MOUTH_GAIN_MAX))
    scaled = (k * expression) * expression_move  # 478 x 3, in the source's units (k * 1.0 is k: the default exact)
    scaled[mouth] *= gain
    return c_s + scale * (source + scaled - c_s) @ eased_rotation(rot).T + k * head_shift


def triangle_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Signed areas (T) of the T x 3 ``triangles`` over M x 2 ``points`` (positive counter-clockwise in x-right,
    y-up terms)."""
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]  # T x 2 each
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


FOLD_AREA_FRACTION = 0.1  # an exaggerated triangle keeps this fraction of its copied (strength 1) area, same side up
UNFOLD_PASSES = 16  # passes of the pull-back before falling back to strength 1 everywhere
UNFOLD_REACH = 0.03  # the pull-back's gaussian falloff, as a fraction of the face's size (8 px of 256: the lips'
# corners pulled back, their middle, 30 px away, not)


def falloff(points: np.ndarray, reach: float) -> np.ndarray:
    """N x N gaussian weights exp(-d^2 / 2 reach^2) between N x 2 points: how much a pull-back at one landmark
    reaches each other."""
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)  # N x N
    return np.exp(-d2 / (2.0 * reach**2))


def unfolded_strengths(still: np.ndarray, copied: np.ndarray, triangles: np.ndarray, owner: np.ndarray,
                       strength: float, reach: np.ndarray) -> np.ndarray:
    """Per-landmark expression strengths, at most ``strength``, at which no mesh triangle folds.

    The moved mesh vertices are linear in the expression strength x: ``still + x (copied - still)`` (``still`` at
    x = 0, ``copied`` at x = 1). Past 1, a triangle folds when it turns over or shrinks below FOLD_AREA_FRACTION of
    its area at x = 1 (an upper lid driven past the lower one, the lips' corners pinched across each other);
    triangles already flat at x = 1 (a shut eye) are not held. Each pass pulls the landmarks of folding triangles a
    quarter of the way back toward 1, and their neighbours with them as far as ``reach`` weighs them (a smooth
    field, so that the pull-back itself makes no new fold against a neighbour left exaggerated); the rest of the face
    keeps the asked strength. Where the passes do not settle it, strength 1 everywhere (the copied motion, which
    cannot fold). Strengths up to 1 are returned as they are: they only ease the copied motion.

    Args:
        still: M x 2 mesh vertex positions at expression strength 0.
        copied: M x 2 mesh vertex positions at expression strength 1.
        triangles: T x 3 vertex indices.
        owner: M, the landmark whose strength each vertex follows (-1: a fixed vertex).
        strength: The asked expression strength.
        reach: N x N, how much a pull-back at one landmark reaches another (``falloff``); N landmarks.
    """
    count = len(reach)
    if strength <= 1.0:
        return np.full(count, float(strength))
    step = copied - still  # M x 2
    ref = triangle_areas(copied, triangles)
    held, side, floor = np.abs(ref) > 1e-3, np.sign(ref), FOLD_AREA_FRACTION * np.abs(ref)
    moving, owned = owner >= 0, np.clip(owner, 0, None)
    pull = np.zeros(count)  # 0: the asked strength, 1: back at 1
    for _ in range(UNFOLD_PASSES):
        x = strength - (strength - 1.0) * (reach * pull[None, :]).max(axis=1)  # N
        at = np.where(moving, x[owned], 1.0)  # M
        bad = held & (triangle_areas(still + at[:, None] * step, triangles) * side < floor)
        if not bad.any():
            return x
        pulled = owner[triangles[bad]].ravel()
        pulled = pulled[pulled >= 0]
        pull[pulled] = np.minimum(1.0, pull[pulled] + 0.25)
    return np.ones(count)


@dataclass(frozen=True)
class StrengthMotion:
    """The driver's motion carried to one source at the head and expression strengths, an exaggerated expression
    (above 1) pulled back where the source's mesh would fold (``unfolded_strengths``). Built once per source photo;
    the landmark backend and the in-between renderer move their meshes with it.

    Attributes:
        source: 478 x 3 float64, the source's landmarks in output pixels.
        mesh: The source's triangle mesh (``warp.build_mesh``).
        vertex_owner: Which landmark each mesh vertex moves with (the head ring with its oval point; -1 for the fixed
            anchors).
        iris_owner: The nearest mesh landmark of each iris point.
        reach: 478 x 478, how far a pull-back reaches (``falloff``).
    """

    source: np.ndarray
    mesh: SourceMesh
    vertex_owner: np.ndarray
    iris_owner: np.ndarray
    reach: np.ndarray

    @classmethod
    def of(cls, source: np.ndarray, mesh: SourceMesh, *, size: int) -> StrengthMotion:
        ring = len(mesh.ring_of)
        owner = np.concatenate([np.arange(MESH_POINTS), mesh.ring_of,
                                np.full(len(mesh.vertices) - MESH_POINTS - ring, -1)])
        iris = source[MESH_POINTS:, None, :2] - source[None, :MESH_POINTS, :2]  # 10 x 468 x 2
        return cls(source, mesh, owner, np.argmin((iris**2).sum(-1), axis=1),
                   falloff(source[:, :2], UNFOLD_REACH * size))  # reach: 478 x 478

    def moved(self, neutral: np.ndarray, driving: np.ndarray, *, head: float, expression: float) -> np.ndarray:
        """``relative_motion`` at these strengths; past 1 the expression is pulled back where the mesh would fold
        (the motion is linear in the expression strength, so two evaluations give it at any per-landmark
        strength)."""
        source = self.source
        if expression <= 1.0:
            return relative_motion(source, neutral, driving, head=head, expression=expression)
        still = relative_motion(source, neutral, driving, head=head, expression=0.0)
        copied = relative_motion(source, neutral, driving, head=head, expression=1.0)
        x = unfolded_strengths(mesh_targets(self.mesh, still, source)[0], mesh_targets(self.mesh, copied, source)[0],
                               self.mesh.triangles, self.vertex_owner, expression, self.reach)
        x[MESH_POINTS:] = x[self.iris_owner]  # each iris point moves as the nearest mesh landmark
        return still + x[:, None] * (copied - still)
