"""Ctrl-C and SIGTERM: the first stops cleanly (``finally`` blocks finalise recordings), a second exits at once."""

from __future__ import annotations

import os
import signal
import sys
import threading

_interrupts = 0


def _on_interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C or SIGTERM: stop cleanly. A second one: exit at once."""
    global _interrupts
    _interrupts += 1
    if _interrupts > 1:
        print("fomm-live: interrupted again: exiting now; a recording being written may be cut short",
              file=sys.stderr, flush=True)
        os._exit(130)
        return  # only reached where os._exit is replaced (tests)
    raise KeyboardInterrupt


def install_interrupt_handlers() -> dict:
    """Route Ctrl-C and SIGTERM through ``_on_interrupt``; returns the handlers it replaced."""
    global _interrupts
    _interrupts = 0
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
