"""The one-slot hand-off between the tracking stage and the model stage of the pipelined live loop.

At most one tracked frame waits between the stages, so the model always starts on a frame at most one behind:

- lossless (a file read losslessly): ``put`` waits until the model stage has taken the waiting frame;
- newest wins (live or paced input): ``put`` replaces a waiting frame and reports the drop. What the replaced frame
  carried that must not be lost (the hotkeys bound for the model stage) is merged into the newer one by ``merge``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OneSlot(Generic[T]):
    """A one-item hand-over between two threads.

    Args:
        lossless: Wait for room (True) or replace the waiting item (False).
        merge: For ``lossless=False``: ``merge(older, newer)`` returns the item to keep when ``newer`` replaces
            ``older`` (default: ``newer``).
    """

    def __init__(self, *, lossless: bool, merge: Callable[[T, T], T] | None = None) -> None:
        self.lossless = lossless
        self.merge = merge or (lambda older, newer: newer)
        self._item: T | None = None
        self._full = False
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item: T, *, stop: threading.Event | None = None) -> int:
        """Hand ``item`` over; returns how many waiting items it replaced (0 or 1). Gives up when closed or ``stop``
        is set."""
        with self._cond:
            dropped = 0
            while self._full and not self.closed:
                if not self.lossless:
                    assert self._item is not None
                    item = self.merge(self._item, item)
                    dropped = 1
                    break
                self._cond.wait(0.05)
                if stop is not None and stop.is_set():
                    return 0
            if self.closed:
                return dropped
            self._item, self._full = item, True
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The waiting item, waiting up to ``timeout`` seconds; None on timeout, or once closed and empty."""
        with self._cond:
            if not self._full and not self.closed:
                self._cond.wait_for(lambda: self._full or self.closed, timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake every waiter; ``get`` returns what is left, then None."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
