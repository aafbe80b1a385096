"""The live loop for the browser output's benchmark (``benchmarks/browser.py``): its output frames (to feed the
output with what the loop makes), and its rate into a sink, the browser output or the virtual camera's stand-in
(``VirtualCamSink`` on a pyvirtualcam whose ``send`` does nothing)."""

from __future__ import annotations

import os
import threading
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


def loop_frames(clip: Path, size: tuple[int, int], count: int, backend, avatars, detector) -> tuple[list, list]:
    """The live loop's first ``count`` output frames (landmark backend, photo framing) on ``clip``, and their
    ``FrameInfo.still_outside``."""
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.loop.pipeline import LivePipeline
    from fomm_live.live.output.sinks import RecordingSink
    from fomm_live.live.stats import PipelineStats

    source = OpenCVSource(str(clip))
    sink = RecordingSink()
    LivePipeline(source, backend, avatars, [sink], options=unpaced(size, source.fps, count), detector=detector,
                 stats=PipelineStats()).run()
    return [np.ascontiguousarray(f) for f in sink.frames], [info.still_outside for info in sink.infos]


def standin_pyvirtualcam() -> types.ModuleType:
    """pyvirtualcam with a Camera whose ``send`` does nothing: the virtual camera's stand-in. With ``Camera.copying``
    set, ``send`` copies the frame into a buffer of its own instead, as pyvirtualcam's v4l2loopback backend copies the
    frame (already in the device's I420) into the device: a separate, labelled stand-in."""

    class Camera:
        copying = False

        def __init__(self, *, width: int, height: int, fps: float, fmt, device=None) -> None:
            self.device, self.backend = "stand-in", "stand-in"
            self.buffer: np.ndarray | None = None

        def send(self, frame: np.ndarray) -> None:
            if self.copying:
                if self.buffer is None or self.buffer.shape != frame.shape:
                    self.buffer = np.empty_like(frame)
                np.copyto(self.buffer, frame)

        def close(self) -> None:
            pass

    formats = types.SimpleNamespace(RGB="RGB", BGR="BGR", I420="I420", NV12="NV12")
    return types.SimpleNamespace(Camera=Camera, PixelFormat=formats)


def thread_cpu_s(thread: threading.Thread) -> float | None:
    """A live thread's CPU time so far (Linux: /proc's schedstat, in ns), or None."""
    try:
        return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def sink_threads_cpu(since: set[int]) -> dict[str, float]:
    """The CPU seconds of the threads started since ``since`` (their idents) that are still alive (the sink's own:
    its picture, server and viewer threads, or the virtual camera's pacing thread), summed by name with the
    numbers taken out ("Thread-12 (handler)" is a viewer's)."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident in since:
            continue
        cpu = thread_cpu_s(thread)
        if cpu is not None:
            name = "".join(c for c in thread.name if not c.isdigit()).replace("Thread- ", "")
            out[name] = out.get(name, 0.0) + cpu
    return out


def loop_rate(clip: Path, size: tuple[int, int], make_sink, seconds: float, backend, avatars, detector) -> dict:
    """One unpaced run of the live loop into ``make_sink()``; its frame rate."""
    from fomm_live.live.capture.sources import OpenCVSource
    from fomm_live.live.loop.pipeline import LivePipeline
    from fomm_live.live.output.browser import BrowserSink
    from fomm_live.live.stats import PipelineStats

    source = OpenCVSource(str(clip))
    before = {t.ident for t in threading.enumerate()}
    sink = make_sink(source.fps)
    threads: dict[str, float] = {}
    close = sink.close

    def read_then_close() -> None:  # the loop closes its sinks as it ends: their threads' CPU is read first
        if not threads:
            threads.update(sink_threads_cpu(before))
        close()

    sink.close = read_then_close
    options = unpaced(size, source.fps, round(seconds * source.fps))
    load, cpu, chromium = os.getloadavg()[0], time.process_time(), browser_cpu_seconds()
    calling = time.thread_time()  # the loop's output stage runs on this thread, and calls the sink's send()
    try:
        summary = LivePipeline(source, backend, avatars, [sink], options=options, detector=detector,
                               stats=PipelineStats()).run()
        calling = time.thread_time() - calling
    finally:
        sink.close()
    cpu = time.process_time() - cpu
    per_frame = 1000 / max(summary["frames_out"], 1)
    chromium = None if chromium is None else (browser_cpu_seconds() - chromium) * per_frame
    row = {"load": load, "achieved_fps": summary["achieved_fps"], "frames_out": summary["frames_out"],
           "process_cpu_ms_per_frame": round(cpu * per_frame, 2),
           "chromium_cpu_ms_per_frame": None if chromium is None else round(chromium, 2),
           # Where fomm-live's CPU went, per loop frame: the calling thread (the output stage), the sink's threads.
           "thread_cpu_ms_per_frame": {"calling": round(calling * per_frame, 2),
                                       **{k: round(v * per_frame, 3) for k, v in sorted(threads.items())}}}
    if isinstance(sink, BrowserSink):
        row.update(pictures_made=sink.encoded, rects=sink.rects,
                   pixels_sent_share=round(sink.pixels_sent / max(sink.encoded, 1) / (size[0] * size[1]), 3)
                   if sink.format == "jpeg-rect" else None)
    return row
