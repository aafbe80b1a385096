"""The per-user cache folder of fomm-live (demo clip, TensorRT engines); one definition for the whole program."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fomm_live.common.switches import switch


def cache_root() -> Path:
    """The per-user cache folder (not created here).

    ``FOMM_LIVE_CACHE`` overrides it; otherwise ``%LOCALAPPDATA%`` on Windows, ``~/Library/Caches`` on macOS and
    ``$XDG_CACHE_HOME`` (default ``~/.cache``) elsewhere, each with a ``fomm-live`` folder.
    """
    override = switch("FOMM_LIVE_CACHE")
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "fomm-live"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "fomm-live"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fomm-live"
