"""In-between frames: the newest keyframe moved by the face's own motion, for every camera frame the generator
cannot render in time.

FOMM's generator renders keyframes at about 5 a second on two CPU cores; a camera delivers 24-30. Every camera frame
in between gets an in-between: the keyframe's composed output frame warped by the piecewise-affine map that takes the
avatar's face mesh where the driver's face was at the keyframe's camera frame (P_k) to where it is now (P_t). Both
meshes come from the landmark backend's relative motion (``live.landmarks.motion``), so the head and expression
strengths and the calibrated neutral pose apply to in-betweens as they do to the landmark backend. The map is
computed at every other output pixel of the square's region (about one point per square pixel at 1280 x 720),
enlarged and applied there; the square's border is fixed, so the rest of the frame is the keyframe's own.

The rooms:

- ``renderer``: ``Inbetweener``, the one object (source, neutral pose, strengths, keyframe, render);
- ``uncovered``: what the warp cannot show, made up (pixels no triangle covers in a turn, a mouth's new gap);
- ``closing``: an eye shut since the keyframe, its lid painted over the warp's slit (``live.landmarks.lids``');
- ``fade``: the cross-fade's blends, less of the previous keyframe where it disagrees with the new one;
- ``keyframes``: ``KeyframeEvery``, a backend running the generator on every N-th frame and in-betweens on the rest
  (``animate --keyframe-every N``).

What it may import: numpy, OpenCV (through ``live.media``), ``live.backends`` (the contract, the strengths' check),
``live.errors`` and the landmark rooms ``live.landmarks`` (motion, mesh, warp and lids; mediapipe only when the source's
landmarks are not given); nothing from ``models``, ``loop`` or ``benchmarks``.
"""

from fomm_live.live.inbetween.keyframes import FrameMotion, KeyframeEvery
from fomm_live.live.inbetween.renderer import Inbetweener, Placement

__all__ = ["FrameMotion", "Inbetweener", "KeyframeEvery", "Placement"]
