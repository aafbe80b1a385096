"""Per-stage latency and frame counters of the live loop, summarised as percentiles and written as JSON."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

STAGES = ("capture", "face_tracking", "crop", "keypoints", "generator", "compose", "output")
# Samples kept per series: about an hour at 30 fps. A live session runs for hours; the percentiles describe the most
# recent hour, and memory stays fixed (8 series x 100k float64 = 6.4 MB) instead of growing with every frame.
WINDOW = 100_000


class RingBuffer:
    """The last ``capacity`` float samples, in a preallocated array; ``total`` counts every sample ever added."""

    def __init__(self, capacity: int = WINDOW) -> None:
        self._data = np.empty(capacity, dtype=np.float64)
        self.total = 0

    def append(self, value: float) -> None:
        self._data[self.total % len(self._data)] = value
        self.total += 1

    def values(self) -> np.ndarray:
        """The kept samples, oldest first (a copy)."""
        n, cap = self.total, len(self._data)
        if n <= cap:
            return self._data[:n].copy()
        start = n % cap
        return np.concatenate([self._data[start:], self._data[:start]])

    def last(self) -> float | None:
        return float(self._data[(self.total - 1) % len(self._data)]) if self.total else None

    def __len__(self) -> int:
        return min(self.total, len(self._data))


def percentiles(values_ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99, mean and count of milliseconds (none -> count 0 and no figures)."""
    if len(values_ms) == 0:
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

    def __init__(self, window: int = WINDOW) -> None:
        self._lock = threading.Lock()
        self.window = window
        self.stages: dict[str, RingBuffer] = {}
        self.end_to_end = RingBuffer(window)
        self.counters: dict[str, int] = defaultdict(int)

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            if stage not in self.stages:
                self.stages[stage] = RingBuffer(self.window)
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
            return values.last() if values is not None else None

    def end_to_end_values(self) -> tuple[np.ndarray, int]:
        """The kept end-to-end samples (oldest first) and how many were ever recorded."""
        with self._lock:
            return self.end_to_end.values(), self.end_to_end.total

    def summary(self) -> dict:
        with self._lock:
            return {
                "frames_in": self.counters["frames_in"],
                "frames_out": self.counters["frames_out"],
                "frames_dropped": self.counters["frames_dropped"],
                "frames_no_face": self.counters["no_face"],
                "frames_repeated": self.counters["frames_repeated"],
                "stages_ms": {stage: percentiles(self.stages[stage].values() if stage in self.stages else [])
                              for stage in STAGES},
                "end_to_end_ms": percentiles(self.end_to_end.values()),
            }

    def write_json(self, path: str | Path, extra: dict | None = None) -> None:
        data = {**self.summary(), **(extra or {})}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
