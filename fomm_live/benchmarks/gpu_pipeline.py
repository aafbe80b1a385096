"""The live pipeline end to end for ``benchmarks.gpu_report``: a synthetic clip held in memory, the real loop
(``live.loop.pipeline.LivePipeline``, ``crop="none"``), the FOMM backend at vox-256 size with random weights, and a sink
that discards every frame.

GPU busy fraction: CUDA events are recorded on the current stream just before and just after each call into the
backend (``detect``: keypoints; ``render``: motion normalisation and generator, with the motion field in photo
framing; the fit to the output size or the paste-back comes after, in composition), the spans are taken relative
to an event recorded at the start of the run, overlapping spans are merged, and their sum is divided by the run's
wall time. Each row's ``timed_calls`` counts the calls covered. A span runs from the first to the last GPU
operation of a call, gaps between kernels included, so this is an upper bound on the time the GPU computed; on the
CPU it is null.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

CLIP_SIZES = ((640, 480), (1280, 720))
PACINGS = (None, 30.0, 60.0)  # unpaced, then paced like a camera at 30 and 60 fps
BUSY_METHOD = ("CUDA events around each backend detect/render call on the current stream, overlapping "
               "spans merged, summed over the run's wall time (an upper bound: gaps between kernels inside a call "
               "count as busy)")


class SyntheticClip:
    """A ``live.capture.sources.FrameSource`` over frames made in memory: a file (every frame read) unless the pipeline
    paces it with ``realtime``.

    Args:
        width: Frame width.
        height: Frame height.
        fps: The clip's frame rate (the pacing rate with ``realtime``).
        frames: Frames to deliver before the end of the clip.
        distinct: Distinct frames generated (then cycled).
    """

    is_file = True

    def __init__(self, *, width: int, height: int, fps: float, frames: int, distinct: int = 8) -> None:
        self.width, self.height, self.fps, self.frames = width, height, fps, frames
        self.description = f"synthetic clip ({width}x{height} @ {fps:g} fps, {frames} frames)"
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        # A bright square moving across a fixed noisy background: the driving "face" moves frame to frame.
        self._images = []
        for i in range(distinct):
            image = base.copy()
            side = min(width, height) // 3
            x0 = (width - side) * i // max(1, distinct - 1)
            image[height // 3:height // 3 + side, x0:x0 + side] = 230
            self._images.append(image)
        self._read = 0

    def read(self) -> np.ndarray | None:
        if self._read >= self.frames:
            return None
        image = self._images[self._read % len(self._images)]
        self._read += 1
        return image

    def rewind(self) -> bool:
        self._read = 0
        return True

    def close(self) -> None:
        self._images = []


class BusyTimedBackend:
    """Wraps a backend and records CUDA events around ``detect`` and ``render``; everything else (its declared
    fields, calibration, ``close``) is passed through.

    Args:
        backend: The backend to time.
        device: Its device; on anything but CUDA no events are recorded (the calls are still counted).
    """

    def __init__(self, backend: Any, device: torch.device) -> None:
        self._backend = backend
        self._cuda = device.type == "cuda"
        self._spans: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._origin: torch.cuda.Event | None = None
        self.calls: Counter[str] = Counter()  # timed calls by name: proves which calls the busy figure covers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    @property
    def calibrated(self) -> bool:
        return self._backend.calibrated

    def start(self) -> None:
        """Mark the start of the run (call just before ``LivePipeline.run``)."""
        if self._cuda:
            self._origin = torch.cuda.Event(enable_timing=True)
            self._origin.record()

    def _timed(self, name: str, call: Callable[[], Any]) -> Any:
        self.calls[name] += 1
        if not self._cuda or self._origin is None:
            return call()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        result = call()
        end.record()
        self._spans.append((begin, end))
        return result

    def detect(self, frame: np.ndarray) -> Any:
        return self._timed("detect", lambda: self._backend.detect(frame))

    def render(self, motion: Any, *, detail: bool = False) -> Any:
        return self._timed("render", lambda: self._backend.render(motion, detail=detail))

    def busy_ms(self) -> float | None:
        """Milliseconds the GPU spent inside the recorded calls (merged spans); None off CUDA."""
        if not self._cuda or self._origin is None:
            return None
        torch.cuda.synchronize()
        spans = sorted((self._origin.elapsed_time(b), self._origin.elapsed_time(e)) for b, e in self._spans)
        total, cur_start, cur_end = 0.0, None, None
        for s, e in spans:
            if cur_end is None or s > cur_end:
                total += 0.0 if cur_end is None else cur_end - cur_start
                cur_start, cur_end = s, e
            else:
                cur_end = max(cur_end, e)
        if cur_end is not None:
            total += cur_end - cur_start
        return total


def make_fomm_backend(kp_detector, generator, device: torch.device):
    """The product's FOMM backend: ``Animator`` with the default engine and precision for ``device``."""
    from fomm_live.live.backends import FommBackend
    from fomm_live.models import Animator

    return FommBackend(Animator(kp_detector, generator, device=str(device), precision="auto", engine="auto"))


def run_clip(backend: Any, device: torch.device, *, width: int, height: int, fps: float | None, frames: int,
             pipelining: bool | None = None, framing: str = "face") -> dict:
    """One run of the live loop on a synthetic clip.

    Args:
        backend: A ``live.backends`` backend (its source is set here).
        device: The backend's device (for the GPU busy fraction).
        width: Clip width.
        height: Clip height.
        fps: Pace the clip at this rate like a camera; None: unpaced, every frame as fast as it goes.
        frames: Input frames.
        pipelining: Run the loop's two stages in two threads (``PipelineOptions.pipelining``); None: the default
            (on unless ``FOMM_LIVE_PIPELINING=0``).
        framing: ``face`` (the model's square fitted to the clip's size) or ``photo`` (the photo framed at the
            clip's size, the face pasted back with the detail transfer along the motion field: ``run``'s default).

    Returns:
        The pipeline's stats (``stages_ms``, ``end_to_end_ms``, frame counters) plus ``achieved_fps``, ``wall_s``
        ``gpu_busy_fraction`` and ``timed_calls``.
    """
    from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
    from fomm_live.live.options import CalibrationOptions, FrameOptions, PacingOptions, TrackingOptions
    from fomm_live.live.output.sinks import RecordingSink
    from fomm_live.live.stats import PipelineStats

    clip = SyntheticClip(width=width, height=height, fps=fps or 30.0, frames=frames)
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (backend.size, backend.size, 3), dtype=np.uint8)
    timed = BusyTimedBackend(backend, device)
    backend.reset_calibration()
    # steady_seconds 0: with crop none the "face" never moves, so the neutral pose is taken on the first frame and
    # every frame after runs the generator.
    options = PipelineOptions(tracking=TrackingOptions(crop="none"),
                              calibration=CalibrationOptions(steady_seconds=0.0),
                              frame=FrameOptions(framing=framing, size=(width, height)),
                              pacing=PacingOptions(realtime=fps is not None, fps=fps, max_frames=frames),
                              # The generator's own pipeline, every frame through it: in-betweens (the face mesh,
                              # mediapipe, absent on the bare GPU machine) are the CPU's answer, measured elsewhere.
                              pipelining=pipelining, inbetweens=False)
    sink = RecordingSink(keep_frames=False, keep_infos=False)
    pipeline = LivePipeline(clip, timed, prepare_avatars([("photo", photo)], backend.size, None, crop="none"),
                            [sink], options=options, detector=None, stats=PipelineStats())
    if device.type == "cuda":
        torch.cuda.synchronize()
    timed.start()
    start = time.perf_counter()
    summary = pipeline.run()
    busy = timed.busy_ms()
    wall = time.perf_counter() - start
    summary["stages_ms"] = {k: v for k, v in summary["stages_ms"].items() if v.get("count")}
    summary["wall_s"] = round(wall, 3)
    summary["achieved_fps"] = round(summary["frames_out"] / wall, 2) if wall > 0 else None
    summary["frames_discarded_by_sink"] = sink.count
    summary["input"] = clip.description
    summary["pacing"] = f"paced at {fps:g} fps (newest frame wins)" if fps else "unpaced (every frame)"
    summary["pipelining"] = pipeline.pipelining
    summary["framing"] = framing
    summary["timed_calls"] = dict(timed.calls)
    if busy is None:
        summary["gpu_busy_fraction"] = None
        summary["gpu_busy_note"] = f"not measured on {device.type}: no GPU"
    else:
        summary["gpu_busy_fraction"] = round(min(1.0, busy / 1000 / wall), 3) if wall > 0 else None
        summary["gpu_busy_ms"] = round(busy, 1)
    return summary


def pipeline_runs(device: torch.device, networks: tuple, *, quick: bool, time_left: Callable[[], float],
                  say: Callable[[str], None]) -> dict:
    """Every clip size and pacing (and the pipelined loop switched off once), while ``time_left()`` is positive.

    Args:
        device: Where the backend runs.
        networks: vox-256 keypoint detector and generator (random weights).
        quick: Fewer frames per run.
        time_left: Seconds left of the report's budget.
        say: Progress lines.

    Returns:
        One entry per clip size directly (``"640x480"``, ``"1280x720"``), each with a row per pacing (``unpaced``,
        ``paced-30fps``, ``paced-60fps``; see ``run_clip``), and the run's settings under ``settings``.
    """
    backend = make_fomm_backend(*networks, device)
    engine = backend.animator.engine
    if device.type == "cuda":
        unpaced_frames, paced_seconds = (90, 2.0) if quick else (200, 3.0)
    else:  # 200-400 ms per frame at vox-256 on a 2-core CPU: a few frames prove every row runs
        unpaced_frames, paced_seconds = (4, 0.5) if quick else (20, 3.0)
    result: dict = {"settings": {"backend": f"fomm, {engine.name} {engine.precision} ({engine.reason})",
                                 "composes_on_device": backend.composes_on_device,
                                 "crop": "none", "sink": "discards every frame",
                                 "gpu_busy_method": BUSY_METHOD if device.type == "cuda" else None,
                                 "unpaced_frames": unpaced_frames, "paced_seconds": paced_seconds}}
    runs: list[tuple[int, int, float | None, bool | None, str]] = [(w, h, fps, None, "face") for w, h in CLIP_SIZES
                                                                   for fps in PACINGS]
    runs.append((1280, 720, None, False, "face"))  # the pipelined loop switched off, beside the default unpaced row
    runs.append((1280, 720, None, None, "photo"))  # run's default output: the photo framed, detail along the field
    for width, height, fps, pipelining, framing in runs:
        label = "unpaced" if fps is None else f"paced-{fps:g}fps"
        if pipelining is not None:
            label += f"-FOMM_LIVE_PIPELINING={int(pipelining)}"
        if framing != "face":
            label += f"-framing-{framing}"
        rows = result.setdefault(f"{width}x{height}", {})
        if time_left() <= 0:
            rows[label] = {"skipped": "time budget spent"}
            continue
        frames = unpaced_frames if fps is None else int(fps * paced_seconds)
        try:
            rows[label] = run_clip(backend, device, width=width, height=height, fps=fps, frames=frames,
                                   pipelining=pipelining, framing=framing)
            say(f"  {width}x{height} {label}: {rows[label]['achieved_fps']} fps")
        except Exception as err:  # noqa: BLE001 - one failing run is a row
            rows[label] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    backend.animator.close()
    return result
