"""Where fomm-live keeps caches and generated files: the user cache directory, never the installed package."""

from __future__ import annotations

from pathlib import Path

from fomm_live.models.paths import cache_root

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_PORTRAIT = ASSETS / "astronaut.jpg"


def cache_dir() -> Path:
    """The per-user cache folder for fomm-live, created on demand (see ``models.paths.cache_root``)."""
    base = cache_root()
    base.mkdir(parents=True, exist_ok=True)
    return base
