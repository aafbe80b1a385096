"""When to take the neutral pose: automatically once the face is steady, on request, or the best-matching frame.

Relative motion (the First Order Motion Model's way of animating a face with another person's face) measures every
driving frame against a neutral pose. A good neutral is a frame where the user looks straight at the camera with a
relaxed face; the calibrator takes it once the face has been still for ``steady_seconds``, at start and again after
each request (the recalibrate hotkey).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from fomm_live.live.face import Face
from fomm_live.live.filters import OneEuroFilter


class AutoCalibrator:
    """Decides when the face has been steady long enough to take it as the neutral pose.

    The face box is low-passed first (detections jitter by several percent of the face size on a noisy webcam
    image, while the head is still), then its centre and size must stay within ``tolerance`` for ``steady_seconds``.

    Args:
        steady_seconds: How long the face must stay still.
        tolerance: Largest allowed wander of the (low-passed) face box centre and size in that time, in face-box
            sides.
    """

    def __init__(self, *, steady_seconds: float = 0.5, tolerance: float = 0.05) -> None:
        self.steady_seconds = steady_seconds
        self.tolerance = tolerance
        self.pending = True
        self._window: deque[tuple[float, float, float, float]] = deque()
        self._filter = OneEuroFilter(min_cutoff=0.5, beta=0.0)

    def request(self) -> None:
        """Take a new neutral pose as soon as the face is steady (the recalibrate hotkey)."""
        self.pending = True
        self._window.clear()
        self._filter.reset()

    def cancel(self) -> None:
        self.pending = False
        self._window.clear()

    def update(self, face: Face | None, t: float) -> bool:
        """Feed the face seen at media time ``t``; True once: when a pending calibration should happen now."""
        if not self.pending:
            return False
        if face is None:
            self._window.clear()
            self._filter.reset()
            return False
        cx, cy, size = self._filter(np.array([*face.centre, face.size]), t)
        self._window.append((t, cx, cy, size))
        # Keep the newest sample at or before t - steady_seconds, so the window spans the whole steady time.
        while len(self._window) > 1 and self._window[1][0] <= t - self.steady_seconds:
            self._window.popleft()
        samples = np.array(self._window)
        if samples[-1, 0] - samples[0, 0] < self.steady_seconds:
            return False  # not watched for long enough yet
        size = samples[:, 3].mean()
        spread = np.ptp(samples[:, 1:3], axis=0).max() / size
        size_spread = np.ptp(samples[:, 3]) / size
        if spread <= self.tolerance and size_spread <= self.tolerance:
            self.cancel()
            return True
        return False


def normalised_points(points: np.ndarray) -> np.ndarray:
    """Face points with translation and scale removed (centroid at 0, unit RMS radius)."""
    centred = points - points.mean(axis=0)
    radius = np.sqrt((centred ** 2).sum(axis=1).mean())
    return centred / max(radius, 1e-9)


class BestFrameSelector:
    """Best-frame mode: the neutral pose is the driving frame whose face points best match the source's pose.

    Args:
        source_points: The source face's points (e.g. ``Face.points``), any pixel scale.
        min_gain: A new frame must beat the current best by this much (normalised distance) to replace it, so the
            neutral does not flicker between near-equal frames.
    """

    def __init__(self, source_points: np.ndarray, *, min_gain: float = 0.01) -> None:
        self.target = normalised_points(np.asarray(source_points, dtype=np.float64))
        self.min_gain = min_gain
        self.best = np.inf

    def reset(self) -> None:
        self.best = np.inf

    def distance(self, points: np.ndarray) -> float:
        return float(np.sqrt(((normalised_points(np.asarray(points, dtype=np.float64)) - self.target) ** 2)
                             .sum(axis=1).mean()))

    def update(self, face: Face | None) -> bool:
        """True when this frame's face matches the source better than every earlier one (take it as neutral)."""
        if face is None:
            return False
        d = self.distance(face.points)
        if d < self.best - self.min_gain:
            self.best = d
            return True
        return False
