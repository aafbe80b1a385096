"""Which face-mesh landmark is which: the index tables of mediapipe's 478-point face mesh, and input checks.

Convention: see ``live.landmarks`` (478 x 3 float32, normalised units). "Right" is the subject's right (on the left
of the image).
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
EYES = ((RIGHT_EYE_CORNERS, RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_CORNERS, LEFT_EYE_UPPER, LEFT_EYE_LOWER))
IRIS_CENTRES = (468, 473)  # the iris centre of each eye in EYES (refine_landmarks=True)
# Lips, from the right mouth corner (image left) to the left one; inner upper/lower points pair up by position.
OUTER_UPPER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
INNER_UPPER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS = (61, 291)
# The lips and the chin below them: what the mouth's own gain scales (``live.landmarks.motion``).
JAW_AND_LIPS = tuple(sorted(set(OUTER_UPPER_LIP + OUTER_LOWER_LIP + INNER_UPPER_LIP + INNER_LOWER_LIP) | {
    200, 199, 175, 152, 148, 176, 377, 400, 18, 83, 313, 201, 421, 208, 428, 171, 396}))
INNER_LIP_POLYGON = INNER_UPPER_LIP + INNER_LOWER_LIP[-2:0:-1]
OUTER_LIP_POLYGON = OUTER_UPPER_LIP + OUTER_LOWER_LIP[-2:0:-1]


def check_image(image: np.ndarray, what: str) -> None:
    """Raise ValueError unless ``image`` is H x W x 3 uint8 (RGB); ``what`` names the caller in the message."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{what}: expected an H x W x 3 uint8 RGB image, got {got}")


def check_landmarks(points: Any, what: str) -> np.ndarray:
    """``points`` as 478 x 3 float32 finite landmarks, or ValueError naming ``what`` and what was wrong."""
    if points is None:
        raise ValueError(f"{what}: no landmarks (detect() returns None when it sees no face)")
    points = np.asarray(points, dtype=np.float32)
    if points.shape != (ALL_POINTS, 3):
        raise ValueError(f"{what}: expected {ALL_POINTS} x 3 landmarks, got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{what}: landmarks hold NaN or infinity")
    return points
