"""Landmark-driven animation that needs no learned weights: the ``landmarks`` backend.

The source photo is moved by the face-mesh landmarks of the driving face, in the spirit of the First Order Motion
Model (Siarohin et al., NeurIPS 2019): motion is taken relative to a calibrated neutral pose of the driver and
transferred to the source, whose own face shape is kept. The motion is 3-D: the driver's head rotation (a rigid fit
of its face mesh, depth included, against the neutral) turns the source's own 3-D mesh, eased from 25 degrees of
yaw and 15 of pitch so that it never passes 35 and 25; what turns away is culled and drawn behind what comes forward
instead of folding over it. Expression (mouth, jaw, eyelids, brows) is what the rotation leaves, scaled to the
source's face, the mouth never less than the face's scale says. Landmarks come from mediapipe's face mesh (the model
bundled in the mediapipe 0.10.21 wheel, so it runs offline): 468 mesh points and, with ``refine_landmarks``, 10 iris
points (478 in all).

Convention: landmarks are N x 3 float32 arrays (N = 478) in mediapipe's normalised units: x and y are fractions of
the frame's width and height (x to the right, y down, from the top-left corner; x * width is a pixel column), z is
depth in units of the frame's width (smaller is closer to the camera; about 0 at the face's centre). Driving crops are
square, so the three axes share one unit; a non-square frame is treated as if stretched to a square, as the source
is. Inside the backend, the source is resized to ``size x size`` and its landmarks are in output pixels (times
``size``), with pixel centres at integer coordinates.

The rooms, one job each:

- ``points``: which landmark is which (index tables) and the input checks;
- ``facemesh``: mediapipe's face mesh, with its native start-up output kept quiet;
- ``motion``: the similarity fit, the head rotation's easing and the driver's motion carried to the source;
- ``warp``: the source's triangle mesh, the piecewise-affine warp drawn in depth order, its torn edges softened;
- ``eyes``: how open an eye is, and the eyeballs following the gaze;
- ``drawn``: whether a source is drawn, and a drawn eye's outline found in the image;
- ``lids``: closing lids painted over the eyes (a photo's own lid skin, or over a drawn eye's outline);
- ``mouth``: the inside of an opening mouth;
- ``backend``: ``LandmarkBackend``, joining them.

Imports: these rooms may import numpy, mediapipe (lazily, in ``facemesh``), ``live.errors``, ``live.media``, the
backend contract ``live.backends`` (in ``backend``) and each other (never this ``__init__``, which only re-exports);
nothing from ``models`` or ``benchmarks``.
"""

from fomm_live.live.landmarks.backend import LandmarkBackend
from fomm_live.live.landmarks.eyes import eye_opening
from fomm_live.live.landmarks.facemesh import FaceMesh
from fomm_live.live.landmarks.motion import similarity_fit
from fomm_live.live.landmarks.mouth import mouth_opening
from fomm_live.live.landmarks.points import (
    ALL_POINTS,
    EYES,
    FACE_OVAL,
    INNER_LIP_POLYGON,
    INNER_LOWER_LIP,
    INNER_UPPER_LIP,
    IRIS_CENTRES,
    LEFT_EYE_CORNERS,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    MESH_POINTS,
    OUTER_LIP_POLYGON,
    OUTER_LOWER_LIP,
    OUTER_UPPER_LIP,
    RIGHT_EYE_CORNERS,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    STABLE,
)

__all__ = [
    "ALL_POINTS",
    "EYES",
    "FACE_OVAL",
    "INNER_LIP_POLYGON",
    "INNER_LOWER_LIP",
    "INNER_UPPER_LIP",
    "IRIS_CENTRES",
    "LEFT_EYE_CORNERS",
    "LEFT_EYE_LOWER",
    "LEFT_EYE_UPPER",
    "MESH_POINTS",
    "OUTER_LIP_POLYGON",
    "OUTER_LOWER_LIP",
    "OUTER_UPPER_LIP",
    "RIGHT_EYE_CORNERS",
    "RIGHT_EYE_LOWER",
    "RIGHT_EYE_UPPER",
    "STABLE",
    "FaceMesh",
    "LandmarkBackend",
    "eye_opening",
    "mouth_opening",
    "similarity_fit",
]
