"""The rule for frames that fail in either stage of the live loop: log each kind of error once, serve the held frame,
and stop the run after ``MAX_CONSECUTIVE_ERRORS`` failed frames in a row, or at once on a device failure."""

from __future__ import annotations

import logging

from fomm_live.common.errors import DeviceError

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 25  # a stage failing this many frames in a row stops the run


class FailurePolicy:
    """A frame that fails in either stage is logged (once per kind of error) and replaced by the held frame;
    ``MAX_CONSECUTIVE_ERRORS`` failed frames in a row stop the run."""

    def __init__(self, limit: int = MAX_CONSECUTIVE_ERRORS) -> None:
        self.limit = limit
        self.consecutive = 0
        self.counts: dict[str, int] = {}

    def succeeded(self) -> None:
        self.consecutive = 0

    def failed(self, index: int, err: BaseException) -> str | None:
        """Count a failed frame; returns the message that stops the run once the limit is reached, or at once for
        a device failure (``models.engines.DeviceError``: the GPU ran out of memory with nothing left to drop, or
        was lost), which would fail the same way on every following frame."""
        self.consecutive += 1
        kind = type(err).__name__
        if isinstance(err, DeviceError):
            logger.error("processing frame %d failed: %s", index, err)
            logger.debug("the device error, with its traceback:", exc_info=err)  # shown with --debug
            return str(err)
        if kind not in self.counts:
            logger.error("processing frame %d failed: %s: %s (serving the last good frame)", index, kind, err)
            logger.debug("the first %s, with its traceback:", kind, exc_info=err)  # shown with --debug
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.consecutive >= self.limit:
            return f"processing failed {self.consecutive} frames in a row ({kind}: {err}); stopping"
        return None
