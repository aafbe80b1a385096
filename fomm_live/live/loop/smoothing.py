"""Motion smoothing of the live loop: One Euro filters over whatever a backend's ``detect`` returns.

The filter itself is ``live.filters.OneEuroFilter``; this room decides which parts of a motion get which filter (the
fast rows of a blink get their own) and how tensors of FOMM keypoints pass through it (on their own device: a GPU's
keypoints are smoothed on the GPU).

A motion that is smoothed elsewhere (``live.remote.client.CropMotion``: the keypoints are found on a server) has a
``smoothed_by(smoother, t)`` method; the smoother hands it its options and the media time instead of filtering it, and
the server filters the keypoints it finds with a ``MotionSmoother`` of those options at those times.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fomm_live.live.filters import OneEuroFilter

# The fast rows' filter (see MotionSmoother): speed in the motion's units per second (normalised landmarks here).
FAST_BETA = 60.0
FAST_D_CUTOFF = 5.0
# numpy lets other threads take the GIL around any operation on more than 500 elements, and in the live loop each
# such hand-over could leave the model thread waiting for the tracking thread: the filter over 478 x 3 landmarks took
# 1.0-6.3 ms of wall time p50 for 0.2 ms of its thread's CPU (load 2.3-2.7, 2-core Xeon). Filtered in blocks of rows
# under that size it keeps the GIL: 0.3-0.7 ms p50, the same numbers (each element is filtered on its own).
GIL_BLOCK = 500


class MotionSmoother:
    """One Euro filtering of a backend's motion: numpy arrays, or named tuples of tensors (FOMM keypoints).

    Args:
        min_cutoff: Cutoff at rest, Hz.
        beta: How fast the cutoff opens with speed.
        fast_rows: Rows of an array motion that move fast and briefly (a backend's ``fast_rows``: eyelids). They
            get their own filter, with the same cutoff at rest but a speed estimate that reacts within a frame
            (``FAST_D_CUTOFF``) and a cutoff that opens much more with speed (``FAST_BETA``): with the common
            filter, a 160 ms blink on a 25 fps stream reached 61% of its closure one frame late instead of 85%.
    """

    def __init__(self, *, min_cutoff: float, beta: float, fast_rows: tuple[int, ...] = ()) -> None:
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.fast_rows = np.asarray(fast_rows, dtype=np.intp)
        self._rows_needed = int(self.fast_rows.max()) + 1 if self.fast_rows.size else 0  # a motion with the fast rows
        self.filters: dict[str, OneEuroFilter] = {}

    def _filter(self, name: str) -> OneEuroFilter:
        if name not in self.filters:
            if name == "fast":
                self.filters[name] = OneEuroFilter(min_cutoff=self.min_cutoff, beta=FAST_BETA,
                                                   d_cutoff=FAST_D_CUTOFF)
            else:
                self.filters[name] = OneEuroFilter(min_cutoff=self.min_cutoff, beta=self.beta, d_cutoff=1.0)
        return self.filters[name]

    def _array(self, motion: np.ndarray, t: float) -> np.ndarray:
        """An array motion filtered, in blocks of rows of at most GIL_BLOCK elements (each block its own filter),
        its fast rows again by the fast filter; in the motion's dtype."""
        fast = self._rows_needed and motion.ndim and motion.shape[0] >= self._rows_needed
        if motion.ndim == 0 or motion.size <= GIL_BLOCK:
            smoothed = self._filter("array")(motion, t)
            if fast:
                smoothed[self.fast_rows] = self._filter("fast")(motion[self.fast_rows], t)
            return smoothed.astype(motion.dtype)
        smoothed = np.empty(motion.shape)  # float64, as the filters give
        step = max(1, GIL_BLOCK // (motion.size // motion.shape[0]))  # rows a block
        blocks = [slice(start, start + step) for start in range(0, motion.shape[0], step)]
        for i, rows in enumerate(blocks):
            smoothed[rows] = self._filter("array" if i == 0 else f"array {i}")(motion[rows], t)
        if fast:
            smoothed[self.fast_rows] = self._filter("fast")(motion[self.fast_rows], t)
        out = np.empty(motion.shape, motion.dtype)
        for rows in blocks:  # cast block by block as well
            out[rows] = smoothed[rows]
        return out

    def reset(self) -> None:
        self.filters.clear()

    def set_min_cutoff(self, min_cutoff: float) -> None:
        """A new cutoff at rest (Hz, > 0), from the next sample on; the filters keep their state."""
        if min_cutoff <= 0:
            raise ValueError(f"min_cutoff must be > 0 Hz, got {min_cutoff}")
        self.min_cutoff = min_cutoff
        for f in self.filters.values():
            f.min_cutoff = min_cutoff

    def __call__(self, motion: Any, t: float) -> Any:
        if motion is None:
            return None
        smoothed_by = getattr(motion, "smoothed_by", None)
        if callable(smoothed_by):  # smoothed where its keypoints are found: it takes the options and the time
            return smoothed_by(self, t)
        if isinstance(motion, np.ndarray):
            return self._array(motion, t)
        if isinstance(motion, tuple) and hasattr(motion, "_fields"):  # FOMM keypoints: a named tuple of tensors
            import torch

            # Filtered on the tensors' own device (float64 there): no copy to the host and back per frame.
            smoothed = {name: self._filter(name)(value, t).to(value.dtype)
                        for name, value in zip(motion._fields, motion, strict=True)
                        if isinstance(value, torch.Tensor)}
            return motion._replace(**smoothed)
        return motion
