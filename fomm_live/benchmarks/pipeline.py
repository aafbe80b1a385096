"""Pipeline benchmark: the real live loop on a driving clip, pipelined and not, side by side in one run.

Each run feeds a video file through the same code as a camera (``live.loop.pipeline.LivePipeline``) into a recording
sink, either paced at the clip's fps as a camera delivers frames (``realtime``: stale frames are dropped and counted,
and the end-to-end latency is what a viewer sees) or unpaced for throughput (every frame, as fast as it goes). For each
backend and mode the pipelined loop (tracking and model in two threads) and the one-thread loop (``pipelining=False``,
what ``FOMM_LIVE_PIPELINING=0`` selects) take turns, round after round, in the order off-on, on-off, ... so that a
machine that warms up or slows down during the run favours neither. One short run per backend first warms the caches and
is not reported.

    python -m fomm_live.benchmarks.pipeline [--backends landmarks fomm] [--checkpoint CKPT --config CFG] [--rounds 3]
                                  [--modes realtime unpaced] [--max-frames N] [--clip PATH] [--json PATH]

Reported per backend, mode and loop: achieved fps, end-to-end p50/p95 (all rounds' frames pooled) and the median over
rounds of each stage's p50.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fomm_live.benchmarks.common import backend_factory, bench_clip, machine_header
from fomm_live.live.backends import Backend
from fomm_live.live.capture.sources import OpenCVSource
from fomm_live.live.face import FaceDetector
from fomm_live.live.loop.pipeline import LivePipeline, PipelineOptions, prepare_avatars
from fomm_live.live.options import PacingOptions
from fomm_live.live.output.sinks import RecordingSink
from fomm_live.live.stats import STAGES, PipelineStats, percentiles

MODES = ("realtime", "unpaced")
WARMUP_FRAMES = 10


def run_pipeline_benchmark(make_backend: Callable[[], Backend], clip: str | Path, *, source_image, realtime: bool,
                           pipelining: bool | None = None, max_frames: int | None = None,
                           detector: FaceDetector | None = None,
                           progress: Callable[[int], None] | None = None) -> dict:
    """One run of the live loop on ``clip``; returns the stats summary plus ``achieved_fps`` and ``wall_s``.

    Args:
        make_backend: Builds the backend to measure (called once).
        clip: Driving video.
        source_image: H x W x 3 uint8 RGB photo to animate.
        realtime: Pace the clip at its fps like a camera (else unpaced, every frame).
        pipelining: Two-thread loop (True), one-thread loop (False), or the default (None: ``FOMM_LIVE_PIPELINING``).
        max_frames: Stop after this many input frames.
        detector: A face detector to reuse (one is opened and closed otherwise).
        progress: Called with the number of frames output so far, now and then.
    """
    own_detector = detector is None
    detector = detector or FaceDetector()
    try:
        backend = make_backend()
        source = OpenCVSource(str(clip))
        sink = _ProgressSink(progress)
        options = PipelineOptions(pacing=PacingOptions(realtime=realtime, max_frames=max_frames), pipelining=pipelining)
        pipeline = LivePipeline(source, backend, prepare_avatars([("source", source_image)], backend.size, detector),
                                [sink], options=options, detector=detector, stats=PipelineStats())
        start = time.perf_counter()
        summary = pipeline.run()
        wall = time.perf_counter() - start
    finally:
        if own_detector:
            detector.close()
    summary["end_to_end_samples_ms"] = [round(float(v), 3) for v in pipeline.stats.end_to_end_values()[0]]
    summary["wall_s"] = round(wall, 3)
    # Frames out over the whole run's wall time, start-up included (the summary's own figure starts at the first
    # output frame).
    summary["achieved_fps"] = round(summary["frames_out"] / wall, 2) if wall > 0 else 0.0
    summary["mode"] = "realtime" if realtime else "unpaced"
    summary["pipelining"] = pipeline.pipelining
    summary["backend"] = backend.name
    summary["input"] = source.description
    return summary


class _ProgressSink(RecordingSink):
    def __init__(self, progress: Callable[[int], None] | None) -> None:
        super().__init__(keep_frames=False, keep_infos=False)
        self.progress = progress

    def send(self, frame, info) -> None:
        super().send(frame, info)
        if self.progress is not None:
            self.progress(self.count)


def compare_pipelining(factories: dict[str, Callable[[], Backend]], clip: str | Path, *, source_image,
                       modes: tuple[str, ...] = MODES, rounds: int = 3, max_frames: int | None = None,
                       say: Callable[[str], None] = lambda text: None) -> dict:
    """Pipelined and one-thread loops, alternating, for each backend and mode; see the module docstring.

    Args:
        factories: Backend name -> function that builds it.
        clip: Driving video.
        source_image: H x W x 3 uint8 RGB photo to animate.
        modes: ``realtime`` and/or ``unpaced``.
        rounds: Runs of each loop per backend and mode.
        max_frames: Input frames per run (None: the whole clip).
        say: Progress lines.
    """
    runs: list[dict] = []
    with FaceDetector() as detector:
        for name, factory in factories.items():
            say(f"{name}: warm-up")
            run_pipeline_benchmark(factory, clip, source_image=source_image, realtime=False,
                                   max_frames=WARMUP_FRAMES, detector=detector)
            for mode in modes:
                for r in range(rounds):
                    for pipelining in ((False, True) if r % 2 == 0 else (True, False)):
                        say(f"{name}, {mode}, round {r + 1}/{rounds}, pipelining {'on' if pipelining else 'off'}")
                        run = run_pipeline_benchmark(factory, clip, source_image=source_image,
                                                     realtime=mode == "realtime", pipelining=pipelining,
                                                     max_frames=max_frames, detector=detector)
                        run["round"] = r
                        runs.append(run)
    return {"runs": [{k: v for k, v in run.items() if k != "end_to_end_samples_ms"} for run in runs],
            "table": summarise(runs)}


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (backend, mode, pipelining): fps and stage p50s as medians over rounds, end-to-end percentiles
    over every frame of every round."""
    rows = []
    keys = sorted({(r["backend"], r["mode"], r["pipelining"]) for r in runs}, key=lambda k: (k[0], k[1], k[2]))
    for backend, mode, pipelining in keys:
        group = [r for r in runs if (r["backend"], r["mode"], r["pipelining"]) == (backend, mode, pipelining)]
        e2e = percentiles(np.concatenate([np.asarray(r["end_to_end_samples_ms"], dtype=np.float64) for r in group]))
        stages = {}
        for stage in STAGES:
            p50s = [r["stages_ms"][stage]["p50"] for r in group if r["stages_ms"][stage].get("count")]
            if p50s:
                stages[stage] = round(float(np.median(p50s)), 3)
        rows.append({"backend": backend, "mode": mode, "pipelining": pipelining, "rounds": len(group),
                     "fps": round(float(np.median([r["achieved_fps"] for r in group])), 2),
                     "e2e_p50_ms": e2e.get("p50"), "e2e_p95_ms": e2e.get("p95"),
                     "frames_in": sum(r["frames_in"] for r in group), "frames_out": sum(r["frames_out"] for r in group),
                     "frames_dropped": sum(r["frames_dropped"] for r in group), "stage_p50_ms": stages})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'backend':<10} {'mode':<9} {'pipelined':<9} {'fps':>6} {'e2e p50':>8} {'p95':>8} {'drop':>5}   "
             f"stage p50s (ms)"]
    for row in rows:
        stages = ", ".join(f"{s} {v:.1f}" for s, v in row["stage_p50_ms"].items())
        lines.append(f"{row['backend']:<10} {row['mode']:<9} {'on' if row['pipelining'] else 'off':<9} "
                     f"{row['fps']:>6.1f} {row['e2e_p50_ms'] or 0:>8.1f} {row['e2e_p95_ms'] or 0:>8.1f} "
                     f"{row['frames_dropped']:>5}   {stages}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", help="driving video (default: the bundled clip on a 640x480 canvas)")
    parser.add_argument("--checkpoint", help="FOMM checkpoint (default: random weights of --config)")
    parser.add_argument("--config", default="vox-256", help="preset name or config YAML of the FOMM model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backends", nargs="+", default=["landmarks", "fomm"], choices=["landmarks", "fomm"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--rounds", type=int, default=3, help="runs of each loop per backend and mode")
    parser.add_argument("--max-frames", type=int, help="input frames per run (default: the whole clip)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    from fomm_live.live.media import read_image
    from fomm_live.live.paths import DEFAULT_PORTRAIT

    factories = {name: backend_factory(name, checkpoint=args.checkpoint, config=args.config, device=args.device)
                 for name in args.backends}
    clip = args.clip or str(bench_clip())
    result = compare_pipelining(factories, clip, source_image=read_image(DEFAULT_PORTRAIT), modes=tuple(args.modes),
                                rounds=args.rounds, max_frames=args.max_frames,
                                say=lambda text: print(text, file=sys.stderr, flush=True))
    result["machine"] = machine_header(args.device)
    result["weights"] = args.checkpoint or f"random weights of {args.config}"
    result["command"] = "python -m fomm_live.benchmarks.pipeline " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(format_table(result["table"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
