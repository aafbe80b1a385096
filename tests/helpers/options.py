"""``PipelineOptions`` from the flat keywords the loop tests pass around (``steady_seconds=0.2, fps=25``): each
keyword goes to the group of ``live.options`` that holds it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from fomm_live.live.options import CalibrationOptions, FrameOptions, PacingOptions, PipelineOptions, TrackingOptions

# Flat keyword -> (group, field) where the names differ from the group's own.
RENAMED = {"output_size": ("frame", "size"), "auto_calibrate": ("calibration", "auto"),
           "calibrate_first": ("calibration", "first")}
GROUPS = {"tracking": TrackingOptions, "calibration": CalibrationOptions, "frame": FrameOptions,
          "pacing": PacingOptions}


def pipeline_options(**flat: Any) -> PipelineOptions:
    """The grouped options of ``flat`` keywords; an unknown keyword raises ``TypeError``."""
    grouped: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
    top: dict[str, Any] = {}
    owners = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}
    owners.pop("size", None)  # ``size`` is spelled ``output_size`` here
    for key, value in flat.items():
        if key in RENAMED:
            group, name = RENAMED[key]
            grouped[group][name] = value
        elif key in owners:
            grouped[owners[key]][key] = value
        else:
            top[key] = value
    return PipelineOptions(**{name: GROUPS[name](**values) for name, values in grouped.items()}, **top)
