"""The live loop for the browser output's benchmark (``benchmarks/browser.py``): its output frames (to feed the
output with what the loop makes), and its rate into a sink, the browser output or the virtual camera's stand-in
(``VirtualCamSink`` on a pyvirtualcam whose ``send`` does nothing)."""

from __future__ import annotations

import os
import time
import types
from pathlib import Path

import numpy as np

from fomm_live.benchmarks.chromium import browser_cpu_seconds


def unpaced(size: tuple[int, int], fps: float, frames: int):
    """The loop's options here: photo framing at ``size``, the clip looped unpaced for ``frames`` frames."""
    from fomm_live.live.options import FrameOptions, PacingOptions, PipelineOptions

    return PipelineOptions(frame=FrameOptions(framing="photo", size=size),
                           pacing=PacingOptions(realtime=False, loop=True, fps=fps, max_frames=frames))


def loop_frames(clip: Path, size: tuple[int, int], count: int, backend, avatars, detector) -> list[np.ndarray]:
    """The live loop's first ``count`` output frames (landmark backend, photo framing) on ``clip``."""
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.loop.pipeline import LivePipeline
    from fomm_live.live.output.sinks import RecordingSink
    from fomm_live.live.stats import PipelineStats

    source = OpenCVSource(str(clip))
    sink = RecordingSink(keep_infos=False)
    LivePipeline(source, backend, avatars, [sink], options=unpaced(size, source.fps, count), detector=detector,
                 stats=PipelineStats()).run()
    return [np.ascontiguousarray(f) for f in sink.frames]


def standin_pyvirtualcam() -> types.ModuleType:
    """pyvirtualcam with a Camera whose ``send`` does nothing: the virtual camera's stand-in."""

    class Camera:
        def __init__(self, *, width: int, height: int, fps: float, fmt, device=None) -> None:
            self.device, self.backend = "stand-in", "stand-in"

        def send(self, frame: np.ndarray) -> None:
            pass

        def close(self) -> None:
            pass

    formats = types.SimpleNamespace(RGB="RGB", BGR="BGR", I420="I420", NV12="NV12")
    return types.SimpleNamespace(Camera=Camera, PixelFormat=formats)


def loop_rate(clip: Path, size: tuple[int, int], make_sink, seconds: float, backend, avatars, detector) -> dict:
    """One unpaced run of the live loop into ``make_sink()``; its frame rate."""
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.loop.pipeline import LivePipeline
    from fomm_live.live.output.browser import BrowserSink
    from fomm_live.live.stats import PipelineStats

    source = OpenCVSource(str(clip))
    sink = make_sink(source.fps)
    options = unpaced(size, source.fps, round(seconds * source.fps))
    load, cpu, chromium = os.getloadavg()[0], time.process_time(), browser_cpu_seconds()
    try:
        summary = LivePipeline(source, backend, avatars, [sink], options=options, detector=detector,
                               stats=PipelineStats()).run()
    finally:
        sink.close()
    cpu = time.process_time() - cpu
    per_frame = 1000 / max(summary["frames_out"], 1)
    chromium = None if chromium is None else (browser_cpu_seconds() - chromium) * per_frame
    row = {"load": load, "achieved_fps": summary["achieved_fps"], "frames_out": summary["frames_out"],
           "process_cpu_ms_per_frame": round(cpu * per_frame, 2),
           "chromium_cpu_ms_per_frame": None if chromium is None else round(chromium, 2)}
    if isinstance(sink, BrowserSink):
        row.update(pictures_made=sink.encoded, rects=sink.rects,
                   pixels_sent_share=round(sink.pixels_sent / max(sink.encoded, 1) / (size[0] * size[1]), 3)
                   if sink.format == "jpeg-rect" else None)
    return row
