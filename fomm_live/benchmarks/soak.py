"""Soak benchmark: the live loop for a long time on a clip played like a camera; does memory or latency drift, does
the loop stall, does a recording survive camera drops and last as long as the run?

    python -m fomm_live.benchmarks.soak [--minutes 10] [--backend landmarks|fomm] [--checkpoint CKPT --config YAML]
                              [--clip PATH] [--record PATH.mp4] [--drop-camera-every SECONDS] [--json PATH]

The clip loops, paced at its fps by a stand-in camera (a live source: newest frame wins); with
``--drop-camera-every N`` that camera vanishes every N seconds and is gone for ``OUTAGE_SECONDS`` (the loop
reconnects as it would to an unplugged webcam). Reports the process's resident memory and the end-to-end p95 latency
in the first and the last minute, the longest wait for a new output frame outside camera drops (a stall), and with
``--record`` whether the recording decodes end to end and how long it plays beside how long the run lasted. Memory is
read from /proc/self/statm (Linux) or ``resource`` elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

OUTAGE_SECONDS = 1.0  # how long a dropped camera stays away: a replug, or a USB hub resetting


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS (peak only)
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


class ClipCamera:
    """A stand-in camera: a clip looped and paced at its own fps by ``read`` itself (as a device delivers frames),
    that vanishes ``drop_every`` seconds after it opened (``read`` returns None, as for an unplugged webcam).

    Args:
        clip: The video played.
        drop_every: Seconds until this opening of the camera vanishes; None: never.
    """

    is_file = False

    def __init__(self, clip: str, *, drop_every: float | None = None) -> None:
        from fomm_live.live.capture.sources import OpenCVSource

        self.file = OpenCVSource(clip)
        self.fps = self.file.fps
        self.width, self.height = self.file.width, self.file.height
        self.description = f"stand-in camera playing {clip}"
        self.drop_every = drop_every
        self.opened_at = time.perf_counter()
        self.count = 0

    def read(self) -> np.ndarray | None:
        now = time.perf_counter()
        if self.drop_every is not None and now - self.opened_at >= self.drop_every:
            return None
        due = self.opened_at + self.count / self.fps
        if due > now:
            time.sleep(due - now)
        frame = self.file.read()
        if frame is None and self.file.rewind():
            frame = self.file.read()
        self.count += 1
        return frame

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        self.file.close()


class Reconnects:
    """The stand-in camera's ``reopen``: refuses while the device is still away, then opens it afresh."""

    def __init__(self, clip: str, drop_every: float | None) -> None:
        self.clip, self.drop_every = clip, drop_every
        self.lost_at: float | None = None
        self.drops = 0
        self.refused = 0

    def __call__(self) -> ClipCamera:
        now = time.perf_counter()
        if self.lost_at is None:
            self.lost_at = now
            self.drops += 1
        if now - self.lost_at < OUTAGE_SECONDS:
            self.refused += 1
            raise OSError("stand-in camera: no such device")
        self.lost_at = None
        return ClipCamera(self.clip, drop_every=self.drop_every)


class GapMeter:
    """A sink that measures the longest wait between new output frames, apart from waits spanning a camera drop."""

    name = "gap meter"

    def __init__(self) -> None:
        self.last_index = -1
        self.last_at: float | None = None
        self.excused = False
        self.longest = 0.0
        self.first_at: float | None = None
        self.end_at: float | None = None

    def send(self, frame: np.ndarray, info) -> None:
        now = time.perf_counter()
        self.end_at = now
        if info.index <= self.last_index:  # a repeat: the camera was silent or lost
            self.excused = self.excused or any("camera lost" in s for s in info.status)
            return
        if self.last_at is not None and not self.excused:
            self.longest = max(self.longest, now - self.last_at)
        self.first_at = self.first_at or info.captured_at
        self.last_index, self.last_at, self.excused = info.index, now, False

    def close(self) -> None:
        pass


def check_recording(path: str | Path) -> dict:
    """Decode the whole recording: frames, how long it plays, and whether it decoded end to end."""
    import av

    frames, last, error = 0, None, None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                frames += 1
                last = frame
            duration = float(stream.duration * stream.time_base) if stream.duration else None
    except (av.error.FFmpegError, OSError) as err:
        error, duration = str(err), None
    if duration is None and last is not None:
        duration = float(last.pts * last.time_base)
    return {"path": str(path), "frames": frames, "plays_seconds": duration, "decodes_end_to_end": error is None,
            "error": error}


def run_soak(*, minutes: float, backend: str = "landmarks", clip: str | None = None, checkpoint: str | None = None,
             config: str = "vox-256", device: str = "auto", precision: str = "auto", record: str | None = None,
             drop_camera_every: float | None = None, sample_seconds: float = 5.0) -> dict:
    """Run the live loop for ``minutes`` and sample memory and latency; see the module docstring.

    Args:
        minutes: How long to run.
        backend: ``landmarks`` or ``fomm``.
        clip: The driving clip (default: the bundled clip on a 640x480 canvas).
        checkpoint: FOMM checkpoint (``fomm``; default: random weights of ``config``).
        config: FOMM config preset or YAML.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: FOMM precision.
        record: Record the output here (an MP4, fragmented while recording).
        drop_camera_every: Make the camera vanish every this many seconds.
        sample_seconds: How often memory is sampled.
    """
    from fomm_live.benchmarks.common import backend_factory, bench_clip
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
    from fomm_live.live.media import read_image
    from fomm_live.live.options import PacingOptions
    from fomm_live.live.output.sinks import Mp4Sink, RecordingSink
    from fomm_live.live.paths import DEFAULT_PORTRAIT
    from fomm_live.live.stats import PipelineStats, percentiles

    factory = backend_factory(backend, checkpoint=checkpoint, config=config, device=device, precision=precision)
    clip = clip or str(bench_clip())
    stats = PipelineStats()
    samples: list[dict] = []
    reconnects = Reconnects(clip, drop_camera_every)
    gaps = GapMeter()
    with FaceDetector() as detector:
        made = factory()
        camera = ClipCamera(clip, drop_every=drop_camera_every)
        sinks = [RecordingSink(keep_frames=False, keep_infos=False), gaps]
        if record:
            sinks.append(Mp4Sink(record, fps=camera.fps, clock="capture", stats=stats))
        pipeline = LivePipeline(camera, made, prepare_avatars([("s", read_image(DEFAULT_PORTRAIT))], made.size,
                                                              detector),
                                sinks, options=PipelineOptions(pacing=PacingOptions(fps=camera.fps)), detector=detector,
                                stats=stats,
                                reopen=reconnects)
        start = time.perf_counter()

        def sampler() -> None:
            while not pipeline.stop_event.wait(sample_seconds):
                elapsed = time.perf_counter() - start
                count = stats.end_to_end_values()[1]
                samples.append({"t_s": round(elapsed, 1), "rss_mb": round(rss_mb(), 1), "frames_out": count})
                if elapsed >= minutes * 60:
                    pipeline.stop_event.set()

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        pipeline.run()
        thread.join(timeout=sample_seconds * 2)
    e2e, total = stats.end_to_end_values()
    if total != len(e2e):
        raise RuntimeError(f"the soak outran the stats window ({total} frames); use a shorter run")
    first = [s for s in samples if s["t_s"] <= 60]
    last = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] - 60] if samples else []

    def window(a: dict | None, b: dict | None) -> list[float]:
        lo = a["frames_out"] if a else 0
        hi = b["frames_out"] if b else len(e2e)
        return e2e[lo:hi].tolist()

    first_lat = window(None, first[-1] if first else None)
    last_lat = window(last[0] if last else None, None)
    summary = stats.summary()
    result = {
        "minutes": minutes, "backend": backend, "input": clip, "weights": checkpoint,
        "drop_camera_every_s": drop_camera_every,
        "frames_in": summary["frames_in"], "frames_out": summary["frames_out"],
        "frames_dropped": summary["frames_dropped"], "frames_repeated": summary.get("frames_repeated", 0),
        "camera_drops": reconnects.drops, "reconnect_attempts_refused": reconnects.refused,
        "longest_wait_for_a_new_frame_s": round(gaps.longest, 3),
        "rss_mb_first_minute": first[-1]["rss_mb"] if first else None,
        "rss_mb_last": samples[-1]["rss_mb"] if samples else None,
        "rss_growth_mb": round(samples[-1]["rss_mb"] - first[-1]["rss_mb"], 1) if first and samples else None,
        "e2e_p95_ms_first_minute": percentiles(first_lat).get("p95"),
        "e2e_p95_ms_last_minute": percentiles(last_lat).get("p95"),
        "samples": samples,
    }
    if record:
        result["recording"] = check_recording(record)
        if gaps.first_at is not None and gaps.end_at is not None:
            result["recording"]["run_seconds"] = round(gaps.end_at - gaps.first_at, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--backend", default="landmarks", choices=["landmarks", "fomm"])
    parser.add_argument("--clip", help="driving clip (default: the bundled clip on a 640x480 canvas)")
    parser.add_argument("--checkpoint", help="FOMM checkpoint (default: random weights of --config)")
    parser.add_argument("--config", default="vox-256")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--record", metavar="PATH.mp4", help="record the output here and check it afterwards")
    parser.add_argument("--drop-camera-every", type=float, metavar="SECONDS",
                        help=f"the camera vanishes every SECONDS, for {OUTAGE_SECONDS:g} s each time")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="memory sampling interval")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run_soak(minutes=args.minutes, backend=args.backend, clip=args.clip, checkpoint=args.checkpoint,
                      config=args.config, device=args.device, precision=args.precision, record=args.record,
                      drop_camera_every=args.drop_camera_every, sample_seconds=args.sample_seconds)
    result["command"] = "python -m fomm_live.benchmarks.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
