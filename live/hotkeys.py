"""Hotkeys of the preview window, printed at start and shown on the help overlay."""

from __future__ import annotations

HOTKEYS: list[tuple[str, str]] = [
    ("c", "recalibrate: take this face as the neutral pose"),
    ("1-9", "pick avatar"),
    ("n / p", "next / previous avatar"),
    ("b", "best-frame mode: neutral = best match to the photo"),
    ("o", "show the camera beside the avatar"),
    ("w / s", "zoom the crop in / out"),
    ("arrows", "move the crop"),
    ("r", "reset the crop"),
    ("m", "mirror the camera"),
    ("i", "timing overlay"),
    ("h", "this help"),
    ("q / Esc", "quit"),
]

QUIT_KEYS = frozenset({"q", "esc"})


def help_lines() -> list[str]:
    return [f"{key:>8}  {text}" for key, text in HOTKEYS]


def help_text() -> str:
    return "hotkeys (in the preview window):\n" + "\n".join(help_lines())
