"""Per-stage latency and frame counters of the live loop, summarised as percentiles and written as JSON."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

STAGES = ("capture", "face_tracking", "crop", "keypoints", "generator", "compose", "output")


def percentiles(values_ms: list[float]) -> dict[str, float]:
    """p50/p95/p99, mean and count of a list of milliseconds (empty list -> count 0 and no figures)."""
    if not values_ms:
        return {"count": 0}
    arr = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"count": int(arr.size), "p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3), "mean": round(float(arr.mean()), 3)}


class PipelineStats:
    """Thread-safe collector: stage durations, end-to-end latency and frame counters.

    Counters: ``frames_in`` (captured), ``frames_out`` (handed to the sinks), ``frames_dropped`` (stale frames
    replaced by newer ones before processing), plus ``no_face`` (frames shown without a tracked face) and
    ``frames_repeated`` (the last frame sent again while the camera was lost).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stages: dict[str, list[float]] = defaultdict(list)
        self.end_to_end: list[float] = []
        self.counters: dict[str, int] = defaultdict(int)

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self.stages[stage].append(ms)

    def add_end_to_end(self, ms: float) -> None:
        with self._lock:
            self.end_to_end.append(ms)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def last(self, stage: str) -> float | None:
        with self._lock:
            values = self.stages.get(stage)
            return values[-1] if values else None

    def summary(self) -> dict:
        with self._lock:
            return {
                "frames_in": self.counters["frames_in"],
                "frames_out": self.counters["frames_out"],
                "frames_dropped": self.counters["frames_dropped"],
                "frames_no_face": self.counters["no_face"],
                "frames_repeated": self.counters["frames_repeated"],
                "stages_ms": {stage: percentiles(list(self.stages.get(stage, []))) for stage in STAGES},
                "end_to_end_ms": percentiles(list(self.end_to_end)),
            }

    def write_json(self, path: str | Path, extra: dict | None = None) -> None:
        data = {**self.summary(), **(extra or {})}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
