"""The one-slot hand-off between the tracking stage and the model stage of the pipelined live loop.

At most one tracked frame waits between the stages, so the model always starts on a frame at most one behind:

- lossless (a file read losslessly): ``put`` waits until the model stage has taken the waiting frame;
- newest wins (live or paced input): ``put`` replaces a waiting frame and reports the drop. What the replaced frame
  carried that must not be lost (the hotkeys bound for the model stage) is merged into the newer one by ``merge``.

It is the capture's ``FrameQueue`` with room for one, its policy fixed when it is made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from fomm_live.live.capture.sources import FrameQueue

T = TypeVar("T")


class OneSlot(FrameQueue, Generic[T]):
    """A one-item hand-over between two threads.

    Args:
        lossless: Wait for room (True) or replace the waiting item (False).
        merge: For ``lossless=False``: ``merge(older, newer)`` returns the item to keep when ``newer`` replaces
            ``older`` (default: ``newer``).
    """

    def __init__(self, *, lossless: bool, merge: Callable[[T, T], T] | None = None) -> None:
        super().__init__(maxsize=1, merge=merge)
        self.lossless = lossless

    def put(self, item: T, *, stop: threading.Event | None = None) -> int:  # type: ignore[override]
        """Hand ``item`` over; returns how many waiting items it replaced (0 or 1). Gives up when closed or ``stop``
        is set."""
        return super().put(item, lossless=self.lossless, stop=stop)
