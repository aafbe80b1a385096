"""Soak benchmark: the live loop for a long time on a looping clip, paced like a camera; does memory or latency
drift?

    python -m benchmarks.soak [--minutes 10] [--backend landmarks|fomm] [--clip PATH] [--json PATH]

Reports the process's resident memory and the end-to-end p95 latency in the first and the last minute, and the
growth between them. Memory is read from /proc/self/statm (Linux) or ``resource`` elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path


def rss_mb() -> float:
    """Resident memory of this process in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS (peak only)
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def run_soak(*, minutes: float, backend: str = "landmarks", clip: str | None = None, checkpoint: str | None = None,
             config: str = "vox-256", sample_seconds: float = 5.0) -> dict:
    """Run the live loop for ``minutes`` and sample memory and latency; see the module docstring."""
    from benchmarks.common import backend_factory, bench_clip
    from live.capture import OpenCVSource
    from live.face import FaceDetector
    from live.media import read_image
    from live.paths import DEFAULT_PORTRAIT
    from live.pipeline import LivePipeline, PipelineOptions, prepare_avatars
    from live.sinks import RecordingSink
    from live.stats import PipelineStats, percentiles

    factory = backend_factory(backend, checkpoint=checkpoint, config=config)
    clip = clip or str(bench_clip())
    stats = PipelineStats()
    samples: list[dict] = []
    with FaceDetector() as detector:
        made = factory()
        pipeline = LivePipeline(OpenCVSource(clip), made, prepare_avatars([("s", read_image(DEFAULT_PORTRAIT))],
                                                                            made.size, detector),
                                [RecordingSink(keep_frames=False, keep_infos=False)],
                                options=PipelineOptions(realtime=True, loop=True), detector=detector, stats=stats)
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
    return {
        "minutes": minutes, "backend": backend, "input": clip,
        "frames_in": summary["frames_in"], "frames_out": summary["frames_out"],
        "frames_dropped": summary["frames_dropped"],
        "rss_mb_first_minute": first[-1]["rss_mb"] if first else None,
        "rss_mb_last": samples[-1]["rss_mb"] if samples else None,
        "rss_growth_mb": round(samples[-1]["rss_mb"] - first[-1]["rss_mb"], 1) if first and samples else None,
        "e2e_p95_ms_first_minute": percentiles(first_lat).get("p95"),
        "e2e_p95_ms_last_minute": percentiles(last_lat).get("p95"),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--backend", default="landmarks", choices=["landmarks", "fomm"])
    parser.add_argument("--clip", help="driving clip (default: the bundled clip on a 640x480 canvas)")
    parser.add_argument("--checkpoint", help="FOMM checkpoint (default: random weights of --config)")
    parser.add_argument("--config", default="vox-256")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    result = run_soak(minutes=args.minutes, backend=args.backend, clip=args.clip, checkpoint=args.checkpoint,
                      config=args.config)
    result["command"] = "python -m benchmarks.soak " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
