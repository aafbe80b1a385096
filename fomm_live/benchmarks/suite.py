"""``fomm-live bench``: the model benchmark and the pipeline benchmark in one run, one report.

- Model: ``benchmarks.model.run_model_benchmark`` — keypoint detector and generator per frame for every available
  path, beside the reference path (the original's way: source re-encoded every frame, fp32, eager).
- Pipeline: ``benchmarks.pipeline.run_pipeline_benchmark`` — the real live loop on a driving clip for each backend,
  paced at the clip's fps as a camera delivers frames (per-stage and end-to-end latency, drops, achieved fps), plus
  one unpaced run for throughput.

Without ``--checkpoint`` the FOMM networks get seeded random weights of ``--config`` (speed does not depend on the
weights); the header says so.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fomm_live.benchmarks.common import backend_factory, bench_clip, machine_header
from fomm_live.live.stats import STAGES

QUICK = {"model_iterations": 4, "model_warmup": 1, "pipeline_frames": 50}
FULL = {"model_iterations": 40, "model_warmup": 3, "pipeline_frames": None}


def run_bench(*, checkpoint: str | None = None, config: str = "vox-256", device: str = "auto",
              precision: str = "auto", camera: str | None = None, quick: bool = False,
              backends: tuple[str, ...] = ("fomm", "landmarks"), progress: Callable[[str, int, int], None] | None = None
              ) -> dict:
    """Run both benchmarks; returns every figure (the JSON of ``--json``).

    Args:
        checkpoint: FOMM checkpoint; None for random weights of ``config``.
        config: Preset or original config YAML.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: Precision of the FOMM backend in the pipeline benchmark.
        camera: Driving clip for the pipeline benchmark (default: the bundled clip on a 640x480 canvas).
        quick: Fewer iterations and frames (under two minutes on a 2-core CPU).
        backends: Which backends the pipeline benchmark runs.
        progress: Called with (step description, steps done, steps in all).
    """
    from fomm_live.benchmarks.model import run_model_benchmark
    from fomm_live.benchmarks.pipeline import run_pipeline_benchmark
    from fomm_live.live.face import FaceDetector
    from fomm_live.live.media import read_image
    from fomm_live.live.paths import DEFAULT_PORTRAIT

    settings = QUICK if quick else FULL
    say = progress or (lambda text, done, total: None)
    total = 1 + 2 * len(backends)
    say("model benchmark", 0, total)
    model = run_model_benchmark(config=config, checkpoint=checkpoint, device=device,
                                iterations=settings["model_iterations"], warmup=settings["model_warmup"],
                                every_int8_runtime=not quick)
    clip = camera or str(bench_clip())
    source_image = read_image(DEFAULT_PORTRAIT)
    pipeline = []
    done = 1
    with FaceDetector() as detector:
        for backend in backends:
            factory = backend_factory(backend, checkpoint=checkpoint, config=config, device=device,
                                      precision=precision)
            for realtime in (True, False):
                say(f"pipeline, {backend}, {'paced like a camera' if realtime else 'unpaced'}", done, total)
                run = run_pipeline_benchmark(factory, clip, source_image=source_image, realtime=realtime,
                                             max_frames=settings["pipeline_frames"], detector=detector)
                pipeline.append(run)
                done += 1
    say("done", total, total)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_header(device),
        "weights": checkpoint or f"random weights of {config} (speed does not depend on the weights)",
        "config": config,
        "quick": quick,
        "model": model,
        "pipeline": pipeline,
    }


def format_report(result: dict) -> str:
    """The terminal report: header, model table, pipeline table."""
    from fomm_live.benchmarks.model import format_table

    m = result["machine"]
    lines = [
        f"fomm-live bench  {result['date']}  {'(quick)' if result['quick'] else ''}",
        f"CPU: {m.get('cpu')} ({m.get('logical_cpus')} logical cores, torch threads {m.get('torch_threads')})",
        f"GPU: {m.get('gpu') or 'none'}   torch {m.get('torch')}   TensorRT {m.get('tensorrt') or 'not installed'}   "
        f"mediapipe {m.get('mediapipe')}",
        f"weights: {result['weights']}",
        "",
        f"Model, per frame at {result['config']} size (ms; speed-up against the reference path in this run):",
        format_table(result["model"]),
        "",
        "Pipeline (the live loop on a clip; ms):",
        f"{'backend':<10} {'mode':<9} {'in':>5} {'out':>5} {'drop':>5} {'fps':>6} {'e2e p50':>8} {'p95':>8} "
        f"{'p99':>8}   stage p50s",
    ]
    for run in result["pipeline"]:
        e2e = run["end_to_end_ms"]
        stages = ", ".join(f"{s} {run['stages_ms'][s].get('p50', 0):.1f}" for s in STAGES
                           if run["stages_ms"][s].get("count"))
        lines.append(f"{run['backend']:<10} {run['mode']:<9} {run['frames_in']:>5} {run['frames_out']:>5} "
                     f"{run['frames_dropped']:>5} {run['achieved_fps']:>6.1f} {e2e.get('p50', 0):>8.1f} "
                     f"{e2e.get('p95', 0):>8.1f} {e2e.get('p99', 0):>8.1f}   {stages}")
    return "\n".join(lines)


def plot_report(result: dict, path: str | Path) -> None:
    """A PNG: per-stage p50 latency bars of each pipeline run, and the per-frame end-to-end latency distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["pipeline"]
    fig, (bars, dist) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / max(1, len(runs))
    x = np.arange(len(STAGES))
    for i, run in enumerate(runs):
        values = [run["stages_ms"][s].get("p50", 0.0) for s in STAGES]
        bars.bar(x + i * width, values, width, label=f"{run['backend']} {run['mode']}")
    bars.set_xticks(x + width * (len(runs) - 1) / 2, STAGES, rotation=30, ha="right")
    bars.set_ylabel("p50 ms per frame")
    bars.set_yscale("symlog", linthresh=1.0)
    bars.set_title("Per-stage latency")
    bars.legend(fontsize=8)
    for run in runs:
        samples = run.get("end_to_end_samples_ms") or []
        if samples:
            dist.hist(samples, bins=40, alpha=0.5, label=f"{run['backend']} {run['mode']}")
    dist.set_xlabel("end-to-end ms (capture to sink)")
    dist.set_ylabel("frames")
    dist.set_title("Per-frame latency")
    dist.legend(fontsize=8)
    fig.suptitle(f"fomm-live bench — {result['machine'].get('cpu')} — GPU: {result['machine'].get('gpu') or 'none'}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
