"""The motion smoother filters a large array motion (the landmark backend's 478 x 3) in blocks of rows small enough
that numpy keeps the GIL (``live.loop.smoothing.GIL_BLOCK``); the numbers must be those of one filter over the whole
array and the fast filter over the fast rows, as before, to the bit."""

from __future__ import annotations

import numpy as np
import pytest

from fomm_live.live.filters import OneEuroFilter
from fomm_live.live.landmarks import LandmarkBackend
from fomm_live.live.loop.smoothing import FAST_BETA, FAST_D_CUTOFF, GIL_BLOCK, MotionSmoother


class WholeArray:
    """The reference: the former smoother, one filter over every row and a fast one over the fast rows."""

    def __init__(self, *, min_cutoff: float, beta: float, fast_rows: tuple[int, ...]) -> None:
        self.common = OneEuroFilter(min_cutoff=min_cutoff, beta=beta, d_cutoff=1.0)
        self.fast = OneEuroFilter(min_cutoff=min_cutoff, beta=FAST_BETA, d_cutoff=FAST_D_CUTOFF)
        self.rows = list(fast_rows)

    def __call__(self, motion: np.ndarray, t: float) -> np.ndarray:
        smoothed = self.common(motion, t)
        if self.rows and motion.shape[0] > max(self.rows):
            smoothed[self.rows] = self.fast(motion[self.rows], t)
        return smoothed.astype(motion.dtype)

    def set_min_cutoff(self, min_cutoff: float) -> None:
        self.common.min_cutoff = self.fast.min_cutoff = min_cutoff


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,fast_rows", [((478, 3), LandmarkBackend.fast_rows), ((478, 3), ()),
                                             ((700,), (5, 600)), ((100, 3), (1, 2))])
def test_blocks_of_rows_give_the_whole_arrays_numbers(dtype, shape, fast_rows) -> None:
    rng = np.random.default_rng(4)
    start = rng.uniform(0.2, 0.8, shape)
    steps = rng.normal(0, 2e-3, (50, *shape))
    if fast_rows:
        steps[20:24, list(fast_rows)] += 0.01  # a blink: the fast rows jump
    motions = [(start + steps[:i + 1].sum(0)).astype(dtype) for i in range(50)]
    times = [i / 25 for i in range(50)]
    times[30] = times[29]  # a repeated timestamp takes the filter's tiny step
    ours = MotionSmoother(min_cutoff=0.8, beta=1.5, fast_rows=fast_rows)
    reference = WholeArray(min_cutoff=0.8, beta=1.5, fast_rows=fast_rows)
    for run in range(2):
        for i, (motion, t) in enumerate(zip(motions, times, strict=True)):
            got, expected = ours(motion, t + 3 * run), reference(motion, t + 3 * run)
            assert got.dtype == expected.dtype == dtype and got.shape == expected.shape
            differ = np.argwhere(got != expected)
            assert not len(differ), f"run {run}, frame {i}: {len(differ)} values differ, the first at {differ[0]}"
        ours.set_min_cutoff(0.5)  # a cutoff changed live reaches every block and the fast rows
        reference.set_min_cutoff(0.5)
    if int(np.prod(shape)) > GIL_BLOCK:  # split, and every filter's arrays under numpy's GIL threshold
        assert sum(name.startswith("array") for name in ours.filters) >= 2, f"not split: {list(ours.filters)}"
        assert all(f._x.size <= GIL_BLOCK for f in ours.filters.values()), "a block is over the GIL threshold"
