"""Ctrl-C and SIGTERM: the first stops cleanly (``finally`` blocks finalise recordings). A further one exits at once,
except while a recording is being finalised: the first such press says so and lets it finish (an impatient double
press must not cost the recording), the next exits at once and leaves the recording as the fragmented MP4 written
so far, which plays (``live.output.recording``)."""

from __future__ import annotations

import os
import signal
import sys
import threading

from fomm_live.live.output.recording import abandon_unfinished, unfinished_recordings

_interrupts = 0
_waited = False  # a further press has already been told that a recording is being finished


def _on_interrupt(signum: int, frame: object) -> None:
    """First Ctrl-C or SIGTERM: stop cleanly. A further one: exit at once, unless a recording is being finalised and
    this is the first press to find it so."""
    global _interrupts, _waited
    _interrupts += 1
    if _interrupts == 1:
        print("fomm-live: interrupted: stopping", file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    unfinished = unfinished_recordings()
    if unfinished and not _waited:
        _waited = True
        print(f"fomm-live: finishing {', '.join(map(str, unfinished))} first; press Ctrl-C again to exit at once "
              "(it then stays a fragmented MP4, which plays)", file=sys.stderr, flush=True)
        return
    left = abandon_unfinished()
    kept = [str(path) for path in left if path.exists()]
    lost = [str(path) for path in left if not path.exists()]  # its first fragment (about 1 s) was not complete
    said = (f"; {', '.join(kept)} stays a fragmented MP4 (it plays)" if kept else "") + \
        (f"; nothing of {', '.join(lost)} was written yet" if lost else "")
    print(f"fomm-live: interrupted again: exiting now{said}", file=sys.stderr, flush=True)
    os._exit(130)


def interrupted() -> bool:
    """Whether Ctrl-C or SIGTERM came (and was announced) since the handlers were installed."""
    return _interrupts > 0


def install_interrupt_handlers() -> dict:
    """Route Ctrl-C and SIGTERM through ``_on_interrupt``; returns the handlers it replaced."""
    global _interrupts, _waited
    _interrupts = 0
    _waited = False
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
