"""Smoothing against camera noise: the One Euro filter (Casiez, Roussel and Vogel, CHI 2012).

A first-order low-pass filter whose cutoff rises with the signal's speed: still signals are smoothed hard (no jitter),
fast motion passes with little lag. ``min_cutoff`` (Hz) sets the smoothing at rest, ``beta`` how quickly the cutoff
opens with speed, ``d_cutoff`` (Hz) the smoothing of the speed estimate itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _alpha(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
    """Smoothing factor of an exponential low-pass filter with this cutoff (Hz) at this sample interval (s)."""
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def _float64(x: Any) -> Any:
    """``x`` as float64: a numpy array, or a PyTorch tensor left on its device (filtered where it is)."""
    if type(x).__module__.startswith("torch"):
        return x.detach().double()
    return np.asarray(x, dtype=np.float64)


def _copy(x: Any) -> Any:
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


def _zeros_like(x: Any) -> Any:
    return np.zeros_like(x) if isinstance(x, np.ndarray) else x.new_zeros(x.shape)


class OneEuroFilter:
    """One Euro filter over arrays of any shape (all elements share the parameters, each is filtered on its own).

    Numpy arrays are filtered in float64 on the host; PyTorch tensors in float64 on their own device (a model's
    keypoints on a GPU never cross to the host for smoothing). Either way the result is float64.

    Args:
        min_cutoff: Cutoff frequency at rest, Hz. Lower is smoother and laggier.
        beta: Speed coefficient. Higher follows fast motion with less lag.
        d_cutoff: Cutoff of the derivative estimate, Hz.
    """

    def __init__(self, *, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: Any, t: float) -> Any:
        """Filter sample ``x`` taken at time ``t`` (seconds, increasing)."""
        x = _float64(x)
        if self._x is None or self._dx is None or self._t is None:
            self._x, self._dx, self._t = _copy(x), _zeros_like(x), t
            return _copy(x)
        if t <= self._t:  # same or older timestamp: a tiny step, never a division by zero
            t = self._t + 1e-3
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * abs(self._dx)
        a = _alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return _copy(self._x)
