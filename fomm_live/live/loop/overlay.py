"""The preview window's HUD: status lines, the camera crop beside the avatar, timings and the help text.

Only the preview carries these; the outputs (virtual camera, recordings) never do.
"""

from __future__ import annotations

import numpy as np

from fomm_live.live.compose import draw_text_lines, side_by_side
from fomm_live.live.loop.hotkeys import Controls, help_lines
from fomm_live.live.stats import PipelineStats

TIMED_STAGES = ("face_tracking", "keypoints", "generator", "output")


def build_preview(out: np.ndarray, crop: np.ndarray | None, status: list[str], *, controls: Controls,
                  stats: PipelineStats, camera_lost: bool) -> np.ndarray:
    """The preview of output frame ``out``.

    Args:
        out: The output frame (not modified).
        crop: The driving face crop, shown beside the avatar when ``controls.show_camera`` is on.
        status: Status lines of this frame.
        controls: The view toggles (hotkeys o, i, h) and best-frame mode.
        stats: Where the last per-stage timings come from (hotkey i).
        camera_lost: Whether the capture is reconnecting a lost camera.
    """
    shown = out
    if controls.show_camera and crop is not None:
        shown = side_by_side(crop, out)
    lines = list(status)
    if camera_lost:
        lines.insert(0, "camera lost: reconnecting")
    if controls.best_frame:
        lines.append("best-frame mode")
    if controls.showing_changes():
        line = f"head {controls.head_strength:.1f}  expression {controls.expression_strength:.1f}"
        if controls.kp_min_cutoff is not None:
            line += f"  smoothing {controls.kp_min_cutoff:.2f} Hz"
        lines.append(line)
    if controls.show_timing:
        for stage in TIMED_STAGES:
            last = stats.last(stage)
            if last is not None:
                lines.append(f"{stage}: {last:.1f} ms")
        fps = stats.output_fps()
        if fps is not None:
            lines.append(f"output: {fps:.1f} fps")
    shown = draw_text_lines(shown, lines)
    if controls.show_help:
        shown = draw_text_lines(shown, help_lines(), corner="bottom-left")
    return shown
