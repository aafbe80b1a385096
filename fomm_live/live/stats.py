"""Per-stage latency and frame counters of the live loop, summarised as percentiles and written as JSON.

Throughput and latency are two figures: ``achieved_fps`` (output frames per second between the first and the last
output frame) and ``end_to_end_ms`` (capture to sink, per frame). A pipelined loop raises the first without lowering
the second; the per-stage times show where the time goes.

``achieved_fps`` is the output's rate, not the model's: it counts the unanimated photo shown before the neutral pose
and the held frame while no face is in view. What the call sees move is counted apart, only once a neutral pose is
set: ``frames_animated`` (animated output frames: ``keyframes_shown``, the generator's frames shown as they are, plus
``inbetweens``, the newest keyframe moved by the face's motion: ``live.loop.keyframes``) and ``animated_fps`` (their
rate from the first animated output frame to the last). ``keyframes`` counts the generator's renders (each one shown
as it is when it came in time for its camera frame, else only through the in-betweens made from it) and
``keyframe_fps`` is their rate, from the first to the last: the generator's own rate, with or without in-betweens.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

# ``face_mesh`` (tracking side) and ``inbetween`` run only with keyframes and in-betweens (``live.loop.keyframes``).
STAGES = ("capture", "face_tracking", "crop", "face_mesh", "keypoints", "generator", "inbetween", "compose",
          "output")
# Samples kept per series: about an hour at 30 fps. A live session runs for hours; the percentiles describe the most
# recent hour, and memory stays fixed (10 series x 100k float64 = 8 MB) instead of growing with every frame.
WINDOW = 100_000
INBETWEEN_E2E = "end_to_end_inbetween"  # capture to sink of in-between frames alone (a series beside the stages)
RECENT_OUTPUTS = 30  # output times kept for the preview's fps figure: about a second at 30 fps


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


def percentiles(values_ms: list[float] | np.ndarray, *, digits: int = 3) -> dict[str, float]:
    """p50/p95/p99, mean and count of milliseconds, rounded to ``digits`` decimals (none -> count 0 and no figures).

    The one summary of timings in the project: the live loop's stats and every benchmark report these keys."""
    if len(values_ms) == 0:
        return {"count": 0}
    arr = np.asarray(values_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"count": int(arr.size), "p50": round(float(p50), digits), "p95": round(float(p95), digits),
            "p99": round(float(p99), digits), "mean": round(float(arr.mean()), digits)}


def _rounded(fps: float | None) -> float | None:
    return None if fps is None else round(fps, 2)


class _Span:
    """How many events, and the time of the first and the last (``perf_counter`` seconds)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None

    def mark(self, at: float) -> None:
        if self.first is None:
            self.first = at
        self.last = at
        self.count += 1

    def rate(self) -> float | None:
        """Events per second between the first and the last (None before two, or with no time between them)."""
        if self.count < 2 or self.first is None or self.last is None or self.last <= self.first:
            return None
        return (self.count - 1) / (self.last - self.first)


class PipelineStats:
    """Thread-safe collector: stage durations, end-to-end latency and frame counters.

    Counters: ``frames_in`` (captured), ``frames_out`` (handed to the sinks), ``frames_dropped`` (stale frames
    replaced by newer ones before processing, at either hand-off), ``dropped_before_model`` (of those, the tracked
    frames replaced before the model stage took them), plus ``no_face`` (frames shown without a tracked face) and
    ``frames_repeated`` (the last frame sent again while the camera was lost or silent) and ``recording_dropped``
    (frames a recording left out because its encoder fell behind: ``live.output.recording.QueuedRecording``), and
    ``keyframes`` (the generator's renders: ``mark_keyframe``), ``keyframes_shown`` and ``inbetweens`` (animated
    frames handed to the sinks, by what made them: ``mark_output``).
    """

    def __init__(self, window: int = WINDOW) -> None:
        self._lock = threading.Lock()
        self.window = window
        self.stages: dict[str, RingBuffer] = {}
        self.end_to_end = RingBuffer(window)
        self.counters: dict[str, int] = defaultdict(int)
        self._first_out: float | None = None
        self._last_out: float | None = None
        self._recent_out = RingBuffer(RECENT_OUTPUTS)
        self._animated_span = _Span()  # first and last output time of animated frames
        self._keyframe_span = _Span()

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

    def mark_output(self, at: float, *, animated: bool = False, inbetween: bool = False) -> None:
        """Note that an output frame left at ``at`` (``perf_counter`` seconds), for the fps figures.

        Args:
            at: When it was handed to the sinks.
            animated: It moves with the face (``FrameInfo.animated``): a keyframe, or an in-between with ``inbetween``.
            inbetween: It was made by moving the newest keyframe (``FrameInfo.inbetween``), not by the generator.
        """
        with self._lock:
            if self._first_out is None:
                self._first_out = at
            self._last_out = at
            self._recent_out.append(at)
            if animated:
                self._animated_span.mark(at)
                self.counters["inbetweens" if inbetween else "keyframes_shown"] += 1

    def mark_keyframe(self, at: float) -> None:
        """Note that the generator rendered a keyframe at ``at`` (``perf_counter`` seconds)."""
        with self._lock:
            self.counters["keyframes"] += 1
            self._keyframe_span.mark(at)

    def output_fps(self) -> float | None:
        """Output frames per second over the last ``RECENT_OUTPUTS`` frames (None before two frames)."""
        with self._lock:
            times = self._recent_out.values()
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    def achieved_fps(self) -> float | None:
        """Output frames per second from the first output frame to the last (None before two frames)."""
        with self._lock:
            n = self.counters["frames_out"]
            if self._first_out is None or self._last_out is None or n < 2 or self._last_out <= self._first_out:
                return None
            return (n - 1) / (self._last_out - self._first_out)

    def animated_fps(self) -> float | None:
        """Animated output frames per second from the first animated frame to the last (None before two)."""
        with self._lock:
            return self._animated_span.rate()

    def keyframe_fps(self) -> float | None:
        """Keyframes per second from the first keyframe to the last (None before two)."""
        with self._lock:
            return self._keyframe_span.rate()

    def counter(self, name: str) -> int:
        with self._lock:
            return self.counters[name]

    def last(self, stage: str) -> float | None:
        with self._lock:
            values = self.stages.get(stage)
            return values.last() if values is not None else None

    def end_to_end_values(self) -> tuple[np.ndarray, int]:
        """The kept end-to-end samples (oldest first) and how many were ever recorded."""
        with self._lock:
            return self.end_to_end.values(), self.end_to_end.total

    def summary(self) -> dict:
        fps, animated, keyframe = self.achieved_fps(), self.animated_fps(), self.keyframe_fps()
        with self._lock:
            return {
                "frames_in": self.counters["frames_in"],
                "frames_out": self.counters["frames_out"],
                "frames_dropped": self.counters["frames_dropped"],
                "frames_dropped_before_model": self.counters["dropped_before_model"],
                "frames_no_face": self.counters["no_face"],
                "frames_repeated": self.counters["frames_repeated"],
                "frames_dropped_by_recording": self.counters["recording_dropped"],
                "stages_ms": {stage: percentiles(self.stages[stage].values() if stage in self.stages else [])
                              for stage in STAGES},
                "end_to_end_ms": percentiles(self.end_to_end.values()),
                "end_to_end_inbetween_ms": percentiles(self.stages[INBETWEEN_E2E].values()
                                                       if INBETWEEN_E2E in self.stages else []),
                "frames_animated": self.counters["keyframes_shown"] + self.counters["inbetweens"],
                "keyframes": self.counters["keyframes"],
                "keyframes_shown": self.counters["keyframes_shown"],
                "inbetweens": self.counters["inbetweens"],
                "achieved_fps": _rounded(fps),
                "animated_fps": _rounded(animated),
                "keyframe_fps": _rounded(keyframe),
            }

    def write_json(self, path: str | Path, extra: dict | None = None) -> None:
        data = {**self.summary(), **(extra or {})}
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
