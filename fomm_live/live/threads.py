"""How many threads the live loop's helpers take, so that the model keeps the cores it needs.

The model's threads are the model's business (``models.engines``: PyTorch runs one thread per physical core). What runs
beside it is bounded here and in ``live.output.recording``:

- OpenCV's worker threads (``cv2.setNumThreads``): the paste-back, resizes and colour conversions (the decoding of
  a camera's or a file's frames is the capture thread's, one frame at a time);
- the recording's encoder: one x264 thread (``live.output.recording.LIVE_X264``) on a thread of its own, which
  starts a frame when the model finishes its next call (``ModelTurns``), beside the paste-back rather than the
  keypoint detector: there the keypoint detector took 1.18-1.25x its time alone, after it 1.02x (vox-256 size, int8,
  ``python -m fomm_live.benchmarks.loop --reference``, 2-core Xeon; a lower thread priority or ``SCHED_IDLE`` for the
  encoder had not helped);
- face tracking: mediapipe's BlazeFace, a 128 x 128 network on the tracking thread; mediapipe's Python API does not
  expose its thread count. With the FOMM networks on the CPU it runs one after the model, not beside it
  (``live.loop.pipeline.pipelining_default``).

One OpenCV thread by default with the FOMM networks on the CPU (with the landmark backend OpenCV keeps its own count:
``helper_threads``): on the 2-core test CPU the model's two PyTorch threads take both cores; with OpenCV at its
default two, the loop's paste-back took 9.0 ms p50 against 7.9 ms at one (tiny golden model at 720 x 528, runs back
to back at a load average of 11: within the noise, not worse; ``python -m fomm_live.benchmarks.loop``, RESULTS.md).
``FOMM_LIVE_HELPER_THREADS=N`` sets another count (``common.switches``).

With in-betweens ahead, OpenVINO's network threads are left unpinned (``unpin_networks_for_inbetweens``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

from fomm_live.common.switches import switch
from fomm_live.live.media import cv2

logger = logging.getLogger(__name__)


def helper_threads(*, cores_busy: bool = True) -> int:
    """The thread count for OpenCV: ``FOMM_LIVE_HELPER_THREADS``; by default 1 when the model keeps every core busy
    (``cores_busy``: the FOMM networks on the CPU), else 0 (OpenCV's own, one per core). With the landmark backend,
    whose only networks are mediapipe's small ones, OpenCV's two threads ran the loop at 1280x720 as fast or faster
    than one: 60.0-61.0 against 57.1-63.0 fps (quiet 2-core Xeon, RESULTS 2026-12-07 03:16), 53.7-57.4 against
    50.9-52.2 in an earlier hour."""
    value = switch("FOMM_LIVE_HELPER_THREADS")
    if value is not None:
        return int(value)
    return 1 if cores_busy else 0


def bound_helper_threads(threads: int | None = None, *, cores_busy: bool = True) -> int:
    """Bound OpenCV's worker threads (process-wide).

    Args:
        threads: The count (None: ``helper_threads(cores_busy=...)``; 0: OpenCV's own, one per core).
        cores_busy: The model keeps every core busy by itself (``Backend.uses_all_cores``).

    Returns:
        OpenCV's thread count now.
    """
    threads = helper_threads(cores_busy=cores_busy) if threads is None else threads
    cv2().setNumThreads(threads if threads > 0 else -1)  # -1: OpenCV's own count
    count = cv2().getNumThreads()
    logger.debug("OpenCV threads: %d", count)
    return count


class ModelTurns:
    """When the model finishes its calls for a frame, so that helper work that can wait starts then.

    The live loop's frame is keypoints and generator (the model, on every core), then the paste-back and the hand-over
    to the sinks (one thread). The recording's encoder is given a frame at that hand-over; started at once it runs
    beside the next frame's keypoint detector and slows it. Waiting for the end of the model's next call instead puts
    the encode beside the next paste-back, on the core the model leaves free then (``wait_for_break``).
    """

    def __init__(self) -> None:
        self._done = threading.Condition()
        self._finished = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around the model's calls for one frame."""
        try:
            yield
        finally:
            with self._done:
                self._finished += 1
                self._done.notify_all()

    def wait_for_break(self, timeout: float) -> bool:
        """Block until the model finishes a call that is running now or starts later, at most ``timeout`` seconds
        (a model that does not run, with no face in view or frozen, holds nothing up for longer). True if it did."""
        with self._done:
            start = self._finished
            return self._done.wait_for(lambda: self._finished != start, timeout)


# The process's model: the live loop marks its calls (``live.loop.stages``), the recording's encoder waits for their
# breaks (``live.output.recording``). One per process, as the cores are.
MODEL_TURNS = ModelTurns()


def unpin_networks_for_inbetweens(*, inbetweens: bool) -> bool:
    """Before the model loads: with keyframes and in-betweens ahead, OpenVINO's threads unpinned, with work stealing
    (``FOMM_LIVE_INT8_PINNING=0`` for this process, unless the variable is set already); whether they will be.

    With in-betweens the camera-rate threads take a core from the networks many times a second, and a pinned network
    thread with a fixed share of each layer then holds up the other: unpinned gave 1.3-2.8x the keyframes and a 6.4-7.0
    ms in-between stage against 8.4-12.8 in three paired rounds (vox-256 size, 2-core Xeon with AMX, load 3-4.5 from
    other jobs, RESULTS 2026-12-07 05:10). Without in-betweens the pinned generator was as fast or faster, so it stays
    pinned there (``models.engines.int8_runtimes.openvino_config``)."""
    if inbetweens and not os.environ.get("FOMM_LIVE_INT8_PINNING", "").strip():
        os.environ["FOMM_LIVE_INT8_PINNING"] = "0"
        logger.info("in-betweens: the networks' OpenVINO threads unpinned (FOMM_LIVE_INT8_PINNING=1 pins them)")
    return switch("FOMM_LIVE_INT8_PINNING") == "0"
