"""Where fomm-live keeps caches and generated files: the user cache directory, never the installed package."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_PORTRAIT = ASSETS / "astronaut.jpg"


def cache_dir() -> Path:
    """The per-user cache folder for fomm-live (created on demand).

    ``FOMM_LIVE_CACHE`` overrides it; otherwise ``%LOCALAPPDATA%`` on Windows, ``~/Library/Caches`` on macOS and
    ``$XDG_CACHE_HOME`` (default ``~/.cache``) elsewhere.
    """
    override = os.environ.get("FOMM_LIVE_CACHE")
    if override:
        base = Path(override)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "fomm-live"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "fomm-live"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fomm-live"
    base.mkdir(parents=True, exist_ok=True)
    return base
