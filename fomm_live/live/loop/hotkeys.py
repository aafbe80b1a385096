"""Hotkeys of the preview window: the help text, and what each key changes in the live loop.

The live loop runs in two stages (see ``live.loop.stages``), and each key is applied by the stage that owns what it
changes, at the same input frame in both:

- tracking keys (crop zoom and position, mirror) change the crop tracker and the ``mirror`` flag, which the tracking
  stage reads, and tell the model stage to take the neutral pose again (``GEOMETRY_CHANGED``);
- every other key travels with the frame to the model stage: calibration requests, avatar switches, best-frame mode
  and the preview's view toggles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

HOTKEYS: list[tuple[str, str]] = [
    ("c", "recalibrate: take this face as the neutral pose"),
    ("1-9", "pick avatar"),
    ("n / p", "next / previous avatar"),
    ("b", "best-frame mode: neutral = best match to the photo"),
    ("o", "show the camera beside the avatar"),
    ("w / s", "zoom the crop in / out"),
    ("arrows", "move the crop"),
    ("r", "reset the crop"),
    ("m", "mirror the camera (the neutral pose is taken again)"),
    ("[ / ]", "head strength down / up by 0.1 (0: the head holds still, 1: as you move, 2: doubled)"),
    ("- / =", "expression strength down / up by 0.1 (eyes, brows, mouth)"),
    ("f", "freeze: hold the picture (the call sees it still) until f again"),
    ("t", "sliders for both strengths and the smoothing cutoff"),
    ("i", "timing overlay"),
    ("h", "this help"),
    ("q / Esc", "quit"),
]

QUIT_KEYS = frozenset({"q", "esc"})
STRENGTH_STEP = 0.1
STRENGTH_KEYS = {"[": ("head_strength", -1), "]": ("head_strength", 1), "-": ("expression_strength", -1),
                 "=": ("expression_strength", 1), "+": ("expression_strength", 1)}
SHOW_CHANGES_S = 2.0  # how long the preview shows a strength or cutoff after it changed
TRACKING_KEYS = frozenset({"w", "s", "left", "right", "up", "down", "r", "m"})
# Not a key: what the tracking stage hands the model stage after a tracking key changed the crop geometry or the
# mirror. Keypoints of the new crops are not comparable with a neutral pose taken from the old ones (mirrored
# keypoints against an unmirrored neutral move the avatar the wrong way), so the model stage recalibrates.
GEOMETRY_CHANGED = "geometry changed"
_ARROWS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def help_lines() -> list[str]:
    return [f"{key:>8}  {text}" for key, text in HOTKEYS]


def help_text() -> str:
    return "hotkeys (in the preview window):\n" + "\n".join(help_lines())


def is_tracking_key(key: str) -> bool:
    """Whether ``key`` changes the crop geometry or the mirror (applied by the tracking stage)."""
    return key in TRACKING_KEYS


@dataclass
class Controls:
    """The loop state that hotkeys toggle.

    The tracking stage owns ``mirror``; the model stage owns the rest (it draws the preview and decides calibration).

    Attributes:
        mirror: Mirror the camera image before tracking (m).
        best_frame: Best-frame calibration mode (b).
        show_camera: Show the camera crop beside the avatar in the preview (o).
        show_timing: Show per-stage timings in the preview (i).
        show_help: Show the help overlay in the preview (h).
        head_strength: How much of the head's motion the face copies, 0 to 2 ([ and ], the sliders).
        expression_strength: How much of the expression the face copies, 0 to 2 (- and =, the sliders).
        kp_min_cutoff: The keypoint smoothing's cutoff at rest, Hz (the sliders); None: the loop's option.
        frozen: Hold the output frame (f).
        show_sliders: Show the slider panel (t).
        changed_at: ``time.monotonic()`` of the last change of a strength or the cutoff, for the preview.

    The preview window's slider panel sets the strengths and the cutoff from its own thread: each is one attribute,
    read by the model stage at the start of a frame.
    """

    mirror: bool = False
    best_frame: bool = False
    show_camera: bool = False
    show_timing: bool = False
    show_help: bool = False
    head_strength: float = 1.0
    expression_strength: float = 1.0
    kp_min_cutoff: float | None = None
    frozen: bool = False
    show_sliders: bool = False
    changed_at: float | None = None

    def step_strength(self, name: str, direction: int) -> float:
        """Move ``head_strength`` or ``expression_strength`` by STRENGTH_STEP (within 0..2, on the 0.1 grid)."""
        value = min(2.0, max(0.0, round(getattr(self, name) + direction * STRENGTH_STEP, 1)))
        setattr(self, name, value)
        self.changed_at = time.monotonic()
        return value

    def showing_changes(self) -> bool:
        """Whether the preview shows the strengths and cutoff now: the sliders are open or one changed lately."""
        return self.show_sliders or (self.changed_at is not None
                                     and time.monotonic() - self.changed_at < SHOW_CHANGES_S)


def apply_tracking_key(key: str, controls: Controls, tracker) -> None:
    """Apply a tracking key to the crop tracker (a ``live.face.CropTracker``) or the mirror flag."""
    if key == "w":
        tracker.zoom_in()
    elif key == "s":
        tracker.zoom_out()
    elif key in _ARROWS:
        tracker.move(*_ARROWS[key])
    elif key == "r":
        tracker.reset_view()
    elif key == "m":
        controls.mirror = not controls.mirror


@dataclass(frozen=True)
class ModelAction:
    """What a model-stage key asks of the pipeline beyond a flag: ``kind`` is ``recalibrate``, ``avatar`` (``value``:
    an index from 0), ``step_avatar`` (``value``: +1 or -1), ``best_frame`` (the mode was toggled), ``freeze`` (the
    freeze was toggled) or ``geometry`` (the crop geometry or the mirror changed: recalibrate from scratch). The
    strengths and the cutoff are not actions: the model stage reads them from ``Controls`` every frame."""

    kind: str
    value: int = 0


def apply_model_key(key: str, controls: Controls) -> ModelAction | None:
    """Apply a model-stage key: view toggles change ``controls`` here; the rest come back as a ``ModelAction``."""
    if key == "c":
        return ModelAction("recalibrate")
    if key == GEOMETRY_CHANGED:
        return ModelAction("geometry")
    if key.isdigit() and key != "0":
        return ModelAction("avatar", int(key) - 1)
    if key in ("n", "p"):
        return ModelAction("step_avatar", 1 if key == "n" else -1)
    if key == "b":
        controls.best_frame = not controls.best_frame
        return ModelAction("best_frame")
    if key in STRENGTH_KEYS:
        controls.step_strength(*STRENGTH_KEYS[key])
    elif key == "f":
        controls.frozen = not controls.frozen
        return ModelAction("freeze")
    elif key == "t":
        controls.show_sliders = not controls.show_sliders
    elif key == "o":
        controls.show_camera = not controls.show_camera
    elif key == "i":
        controls.show_timing = not controls.show_timing
    elif key == "h":
        controls.show_help = not controls.show_help
    return None
