"""Ending the live loop: join its threads, then release what they used, never under a thread still using it.

A camera released while a read blocks in its driver, or a model freed under a running call, can crash in native
code; so a thread that does not stop in time is reported, and what it uses is left to the process's exit.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

logger = logging.getLogger(__name__)

CAPTURE_JOIN_SECONDS = 5.0  # a camera read returns within a frame or two; a stream read times out in 5 s
STAGE_JOIN_SECONDS = 30.0  # a first TensorRT or torch.compile call can take this long to finish


def close_quietly(output: Any) -> None:
    """Close an output; a failure is logged (its traceback with --debug) and the others still close."""
    try:
        output.close()
    except Exception as err:  # noqa: BLE001 - closing must go on for the other outputs
        logger.error("closing %s failed: %s", getattr(output, "name", output), err)
        logger.debug("closing %s failed with:", getattr(output, "name", output), exc_info=err)


def join_and_release(capture: Any, stages: list[threading.Thread], outputs: list[Any]) -> list[str]:
    """Join the capture thread and the stage threads, then close the source the capture thread holds now (after a
    reconnect, the reopened one; the lost one was closed when it was replaced) and the outputs.

    Args:
        capture: The ``live.capture.sources.CaptureThread``.
        stages: The processing threads.
        outputs: Sinks and the preview window, driven from the calling thread only: closed in any case, so that
            recordings are finalised.

    Returns:
        The names of the threads that did not stop in time (their resources are left open).
    """
    capture.join(timeout=CAPTURE_JOIN_SECONDS)
    deadline = time.perf_counter() + STAGE_JOIN_SECONDS
    for thread in stages:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()))
    stuck = [thread.name for thread in (capture, *stages) if thread.is_alive()]
    if capture.is_alive():
        logger.error("the capture thread did not stop within %.0f s (a read blocked in the driver?); %s is left "
                     "open", CAPTURE_JOIN_SECONDS, capture.source.description)
    else:
        capture.source.close()
    for name in stuck:
        if name != capture.name:
            logger.error("the %s thread did not stop within %.0f s; what it uses is left open", name,
                         STAGE_JOIN_SECONDS)
    for output in outputs:
        close_quietly(output)
    return stuck
