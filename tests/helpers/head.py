"""Driving clips with known head rotation and mouth opening, rendered from a photo's own 3-D face mesh, and one
estimator that measures driver and output alike.

The renderer is test-side and deliberately simple: the photo's 468 face-mesh landmarks (x, y in pixels, z the face
mesh's depth in the same units) are rotated rigidly about a pivot behind the face, projected orthographically, and
the photo's texture is carried by a Delaunay triangulation of the landmarks (scipy, not the backend's), drawn with
back faces culled and nearer triangles over farther ones. Outside the face the photo is shown with the face's own
region filled by its surroundings (cv2.inpaint), so nothing of the face is left behind where it turned away. An open
mouth lowers the jaw (``live.democlip.open_mouth``) and paints the inner lips' polygon dark, with the photo's own
mouth interior (its teeth, if it shows them) moved along with the upper lip's middle, as the upper teeth go.

The estimator fits the head pose with ``cv2.solvePnP`` on the face mesh detected in a frame, against the 3-D mesh of
the clip's neutral frame (a near-orthographic camera, focal length 20 frame sides), and reports yaw, pitch and roll
relative to that neutral; the mouth opening is the lip gap (points 13-14) over the inter-ocular distance (33-263).

Convention: angles in degrees; yaw turns the face to the image's right (its nose moves right), pitch lowers the nose
(the nose moves down), roll turns the face counter-clockwise on screen; R = Rz(roll) Ry(yaw) Rx(pitch) acts on
column vectors (x right, y down, z away from the camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay

from fomm_live.live.democlip import open_mouth
from fomm_live.live.media import cv2

# Points that only the head's pose moves (forehead, nose bridge and tip, temples, eye corners): the estimator's
# model, written out here rather than taken from the backend so that the measurement does not share its code.
RIGID = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 109, 338, 67, 297, 103, 332, 54, 284, 21, 251, 162, 389, 127,
         356, 234, 454, 33, 133, 362, 263, 226, 446, 98, 327, 129, 358)
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
UPPER_INNER_LIP = (80, 81, 82, 13, 312, 311, 310)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
CAVITY = np.array([45.0, 15.0, 20.0], np.float32)  # RGB of the open mouth's inside in the driving clip


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Rz(roll) Ry(yaw) Rx(pitch) (see the Convention), 3 x 3."""
    y, p, r = np.radians([yaw, pitch, roll])
    rot_y = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rot_z = np.array([[math.cos(r), math.sin(r), 0], [-math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def angles(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation made as in ``rotation``."""
    yaw = math.degrees(math.asin(float(np.clip(rot[2, 0], -1, 1))))
    pitch = math.degrees(math.atan2(rot[2, 1], rot[2, 2]))
    roll = math.degrees(math.atan2(-rot[1, 0], rot[0, 0]))
    return yaw, pitch, roll


@dataclass
class Pose:
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    mouth: float = 0.0  # 0 closed .. 1 wide open (``live.democlip.open_mouth``)


class HeadRenderer:
    """Renders one photo's face at known poses (see the module docstring).

    Args:
        image: S x S x 3 uint8 RGB photo, the face well inside it.
        landmarks: Its 478 x 3 normalised face-mesh landmarks.
    """

    def __init__(self, image: np.ndarray, landmarks: np.ndarray) -> None:
        cv = cv2()
        self.image = image
        self.size = n = image.shape[0]
        self.landmarks = landmarks.astype(np.float64)
        self.points = self.landmarks[:468] * n  # 468 x 3, pixels
        self.triangles = Delaunay(self.points[:, :2]).simplices.astype(np.int32)  # T x 3
        oval = np.round(self.points[list(FACE_OVAL), :2]).astype(np.int32)
        hole = np.zeros((n, n), np.uint8)
        cv.fillPoly(hole, [oval], 255)
        hole = cv.dilate(hole, np.ones((5, 5), np.uint8))
        self.background = cv.inpaint(image, hole, 5, cv.INPAINT_TELEA)
        self.interior = np.zeros((n, n), np.uint8)  # the photo's own mouth opening, 255 inside
        cv.fillPoly(self.interior, [np.round(self.points[list(INNER_LIPS), :2] * 16).astype(np.int32)], 255,
                    cv.LINE_AA, 4)
        rigid = self.points[list(RIGID)]
        width = np.ptp(rigid[:, 0])
        self.pivot = rigid.mean(0) + np.array([0.0, 0.1 * width, 0.6 * width])  # the head turns about the neck

    def pose_points(self, pose: Pose) -> np.ndarray:
        """The face's 468 x 3 landmarks (pixels) at ``pose``."""
        points = self.landmarks
        if pose.mouth:
            points = open_mouth(points, pose.mouth).astype(np.float64)
        points = points[:468] * self.size
        return (points - self.pivot) @ rotation(pose.yaw, pose.pitch, pose.roll).T + self.pivot

    def render(self, pose: Pose) -> np.ndarray:
        """The photo at ``pose``: S x S x 3 uint8 RGB."""
        cv = cv2()
        n = self.size
        moved = self.pose_points(pose)
        src, dst = self.points[self.triangles, :2], moved[self.triangles, :2]  # T x 3 x 2 each
        area = np.cross(dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0])  # T, signed (y down: positive is clockwise)
        area_src = np.cross(src[:, 1] - src[:, 0], src[:, 2] - src[:, 0])
        front = area * area_src > 0
        depth = moved[self.triangles, 2].mean(1)
        order = [t for t in np.argsort(-depth) if front[t]]  # far to near
        index = np.full((n, n), -1, np.int32)
        for t in order:
            cv.fillConvexPoly(index, np.round(dst[t] * 16).astype(np.int32), int(t), cv.LINE_8, 4)
        # Per covered pixel, barycentric coordinates in its moved triangle, then the same ones in the source.
        ys, xs = np.nonzero(index >= 0)
        tri = index[ys, xs]
        a, b, c = dst[tri, 0], dst[tri, 1], dst[tri, 2]
        q = np.column_stack([xs, ys]).astype(np.float64)
        v0, v1, v2 = b - a, c - a, q - a
        det = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        u = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / det
        v = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / det
        p = src[tri, 0] + u[:, None] * (src[tri, 1] - src[tri, 0]) + v[:, None] * (src[tri, 2] - src[tri, 0])
        map_xy = np.zeros((n, n, 2), np.float32)
        map_xy[ys, xs] = p
        face = cv.remap(self.image, map_xy, None, cv.INTER_LINEAR, borderMode=cv.BORDER_REPLICATE)
        out = self.background.copy()
        out[ys, xs] = face[ys, xs]
        if pose.mouth:
            # The cavity, then the photo's own interior (teeth) shifted with the upper lip, inside the moved lips.
            step = moved[list(UPPER_INNER_LIP), :2].mean(0) - self.points[list(UPPER_INNER_LIP), :2].mean(0)
            shift = np.array([[1.0, 0.0, step[0]], [0.0, 1.0, step[1]]])
            teeth = cv.warpAffine(self.image, shift, (n, n), flags=cv.INTER_LINEAR).astype(np.float32)
            teeth_alpha = cv.warpAffine(self.interior, shift, (n, n), flags=cv.INTER_LINEAR)
            teeth_alpha = teeth_alpha.astype(np.float32)[..., None] / 255
            fill = CAVITY + teeth_alpha * (teeth - CAVITY)
            mask = np.zeros((n, n), np.uint8)
            cv.fillPoly(mask, [np.round(moved[list(INNER_LIPS), :2] * 16).astype(np.int32)], 255, cv.LINE_AA, 4)
            alpha = mask.astype(np.float32)[..., None] / 255
            out = np.clip(out + alpha * (fill - out) + 0.5, 0, 255).astype(np.uint8)
        return out


def mouth_gap(points: np.ndarray) -> float:
    """Lip gap (13-14) over the inter-ocular distance (33-263), from detected landmarks."""
    xy = points[:, :2]
    return float(np.linalg.norm(xy[13] - xy[14]) / np.linalg.norm(xy[33] - xy[263]))


class PoseEstimator:
    """Head pose relative to a neutral frame by ``cv2.solvePnP`` on the detected face mesh (module docstring).

    Args:
        neutral: 478 x 3 normalised landmarks detected on the neutral frame.
        size: Side of the frames, pixels.
    """

    def __init__(self, neutral: np.ndarray, size: int) -> None:
        self.size = size
        model = neutral[list(RIGID)].astype(np.float64) * size
        self.model = model - model.mean(0)
        self.focal = 20.0 * size
        self.camera = np.array([[self.focal, 0, size / 2], [0, self.focal, size / 2], [0, 0, 1]])
        self.reference = np.eye(3)
        self.reference = self._rotation(neutral)

    def _rotation(self, points: np.ndarray) -> np.ndarray:
        cv = cv2()
        image = points[list(RIGID), :2].astype(np.float64) * self.size
        guess_t = np.array([image[:, 0].mean() - self.size / 2, image[:, 1].mean() - self.size / 2, self.focal])
        ok, rvec, _ = cv.solvePnP(self.model, image, self.camera, None, rvec=np.zeros(3), tvec=guess_t,
                                  useExtrinsicGuess=True, flags=cv.SOLVEPNP_ITERATIVE)
        if not ok:
            raise RuntimeError("solvePnP found no pose")
        return cv.Rodrigues(rvec)[0] @ self.reference.T

    def measure(self, points: np.ndarray) -> tuple[float, float, float, float]:
        """(yaw, pitch, roll, mouth opening) of a frame's detected landmarks."""
        return (*angles(self._rotation(points)), mouth_gap(points))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.corrcoef(a, b)[0, 1])
