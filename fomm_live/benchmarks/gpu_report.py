"""One report of everything a CUDA machine can tell about fomm-live: environment, correctness, model, batch, pipeline.

    PYTHONPATH=. python3 -m fomm_live.benchmarks.gpu_report --out DIR [--device auto|cuda|cpu] [--golden DIR] [--quick]

On a machine with an NVIDIA H100/H200, from a plain checkout (no install; torch, Triton, NumPy, PyYAML and OpenCV
are enough), prepare the golden data beside the checkout once and run:

    python3 -m fomm_live.benchmarks.gpu_report --prepare        # copies ../shared/golden/fomm/tiny to .gpu/golden/tiny
    PYTHONPATH=. python3 -m fomm_live.benchmarks.gpu_report --out $OUT --golden .gpu/golden/tiny

It writes ``DIR/gpu_report.json`` and ``DIR/gpu_report.md``, both rewritten after every section, so a run cut short
still leaves what finished; it exits 0 whenever they are written. Sections, each in its own try/except (a failure is
recorded as ``{"error": ...}``, a row that cannot run here as ``{"skipped": reason}``):

- ``environment``: ``gpu`` (name, memory, driver, compute capability, cuDNN), torch, CUDA, Triton, ONNX Runtime
  versions; ``packages_importable``; ``module_level_imports_of_missing_packages`` (per live module).
- ``correctness``: ``golden.variants[variant][path]`` (each path on the golden frames: fp32 within the tests'
  tolerances, reduced precision and fused paths within 40 dB PSNR, torch.export's graphs; ``passed``),
  ``kernels.rows["op shape dtype"]`` (fused kernels against their references on odd shapes, CUDA only;
  ``benchmarks.gpu_kernels``), ``self_checks.engines[engine]`` (``verdict`` of each engine's own checks on its first
  real frame, ``paths`` checked as ``models.engines.CHECK_PATHS``, ``failed_paths``, ``checks`` as ``CheckResult``).
- ``model``: ``benchmarks.model`` at vox-256 size with random weights, every path side by side: ``paths[path]`` as
  ``bench --json`` (keypoints / generator / frame p50/p95/p99, warm-up apart), ``skipped[path]`` with the reason;
  torch.compile and CUDA graphs last, as time allows.
- ``batch``: 1, 2, 4, 8, 16, 32 streams with distinct sources, one batch per step (``benchmarks.gpu_batch``): per
  size ``batch["1"]`` .. ``batch["32"]`` with ``step_ms`` p50/p95/p99, ``frames_per_second``, ``gpu_memory_mb``
  (peak allocated); the run's settings in ``batch["settings"]``.
- ``pipeline``: the live loop with ``--crop none`` on synthetic 640x480 and 1280x720 clips, unpaced and paced at 30
  and 60 fps, into a discarding sink (``benchmarks.gpu_pipeline``): per clip size and pacing
  ``pipeline["640x480"]["unpaced" | "paced-30fps" | "paced-60fps"]`` (and ``pipeline["1280x720"]``) with
  ``stages_ms``, ``end_to_end_ms`` (p50/p95/p99), ``achieved_fps``, ``gpu_busy_fraction``; the run's settings
  (backend, ``gpu_busy_method``) in ``pipeline["settings"]``.

Every section's wall time is its ``seconds`` (in its ``settings`` where it has them). Sections (and rows within them)
start only while the time budget lasts (``--budget-s``: 190 s on CUDA, so that the run ends within 4 minutes; 270 s
on the CPU); torch.compile paths run last, each only with enough time left.
``--quick`` keeps every section and batch size with fewer iterations; ``--device cpu --quick`` is the dry run that
proves the report imports and runs without the GPU, with the self-checks and the batch sweep at 128 x 128
(``tests/test_gpu_report.py`` runs it with mediapipe, PyAV, tqdm, pyvirtualcam, ONNX, onnxscript, ray and
torch-tensorrt hidden).

``.gpu/`` is ignored by git: a run on another machine that receives the checkout must be sent ``.gpu/`` with it.
The pipelined live loop is switched off for one row (``FOMM_LIVE_PIPELINING=0``, 1280x720 unpaced) beside the
default, and one row runs ``run``'s default output, photo framing with the detail transfer
(``pipeline["1280x720"]["unpaced-framing-photo"]``, 1280x720 unpaced).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fomm_live.benchmarks.gpu_correctness import missing_package

REPO = Path(__file__).resolve().parents[2]  # the checkout (fomm_live/benchmarks/ is two levels down)
SHARED_GOLDEN = REPO.parent / "shared" / "golden" / "fomm" / "tiny"
PREPARED_GOLDEN = REPO / ".gpu" / "golden" / "tiny"
GOLDEN_COPY = ("config.yaml", "checkpoint.pth.tar", "expected.npz", "source.png", "driving_0.png", "driving_1.png",
               "driving_2.png")
# Seconds left that a torch.compile path needs to start: compile (not measured on these GPUs yet; 15-20 s per path on
# the 2-core test CPU) plus the timed frames.
COMPILE_GUARD_S = 60.0


@dataclass
class Context:
    """What every section gets: the options and the clock."""

    device_spec: str
    golden: Path | None
    quick: bool
    deadline: float
    started: float = field(default_factory=time.monotonic)
    _device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        if self._device is None:
            from fomm_live.models.animator import resolve_device

            self._device = resolve_device(self.device_spec)  # raises for cuda without a GPU: each section says so
        return self._device

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def check_size(self) -> int:
        """Image side for the self-checks and the batch sweep: vox-256's 256, except in the CPU dry run (``--quick``
        off CUDA), which proves the code, not the figures: 128 (the smallest side vox-256's networks take) is about
        4x less work."""
        return 128 if self.quick and not self.cuda else 256

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {line}", file=sys.stderr, flush=True)


# --- environment ----------------------------------------------------------------------------------------------------

def environment(ctx: Context) -> dict:
    from fomm_live.benchmarks.gpu_environment import environment_info

    return environment_info(ctx.device)


# --- model benchmark and batch sweep --------------------------------------------------------------------------------

def vox_networks(device: torch.device, seed: int = 0):
    """vox-256 networks with seeded random weights (``benchmarks.model.randomize_``), eval mode, on ``device``."""
    from fomm_live.benchmarks.model import randomize_
    from fomm_live.models import build_networks, load_config

    kp_detector, generator = build_networks(load_config("vox-256"))
    randomize_(kp_detector, generator, seed=seed)
    return kp_detector.to(device).eval(), generator.to(device).eval()


def _model_paths(ctx: Context) -> tuple[list[str], dict[str, str]]:
    """Paths to time on this device, and those skipped with their reason."""
    from fomm_live.benchmarks.gpu_correctness import onnx_unavailable, tensorrt_unavailable

    skipped = {}
    if ctx.cuda:
        paths = ["eager-fp32", "eager-fp16", "eager-fp16-kernels"]
        if missing_package("triton"):
            paths.remove("eager-fp16-kernels")
            skipped["eager-fp16-kernels"] = "triton is not installed"
    else:
        paths = ["eager-fp32", "eager-bf16"]
    for name, reason in (("onnxruntime-fp32", onnx_unavailable(ctx.device)),
                         ("tensorrt-fp16", tensorrt_unavailable(ctx.device))):
        if reason is None:
            paths.append(name)
        else:
            skipped[name] = reason
    return paths, skipped


def _benchmark(ctx: Context, paths: list[str], *, with_compile: bool, iterations: int, warmup: int) -> dict:
    from fomm_live.benchmarks.model import run_model_benchmark

    notes: list[str] = []

    def progress(line: str) -> None:
        notes.append(line)
        ctx.say(f"  {line}")

    result = run_model_benchmark(device=str(ctx.device), iterations=iterations, warmup=warmup, paths=paths,
                                 with_compile=with_compile, progress=progress)
    result["skipped"] = {}
    for name in paths:  # a path that did not start says why in a progress line "name: ..."
        if name not in result["paths"]:
            why = next((n.split(":", 1)[1].strip() for n in notes if n.startswith(f"{name}:")), "did not start")
            result["skipped"][name] = why
    return result


def model(ctx: Context) -> dict:
    paths, skipped = _model_paths(ctx)
    iterations, warmup = ((2, 1) if ctx.quick else (8, 1)) if not ctx.cuda else ((20, 3) if ctx.quick else (60, 5))
    result = _benchmark(ctx, paths, with_compile=False, iterations=iterations, warmup=warmup)
    result["skipped"].update(skipped)
    compile_paths = ["eager-fp16-compile", "eager-fp16-cudagraphs"]
    for name in compile_paths:
        result["skipped"][name] = ("compiled paths are timed on CUDA only here (15-20 s of compiling per path on a "
                                   "2-core CPU)" if not ctx.cuda else "pending: timed at the end of the run")
    result["note"] = "compiled paths run last, each with its own reference run, while the time budget lasts"
    return result


def model_compiled(ctx: Context, report: dict) -> None:
    """torch.compile and CUDA-graph paths (CUDA only), added to ``report["model"]`` while time lasts: compiling
    cannot be interrupted, so each starts only with ``COMPILE_GUARD_S`` left (or 1.2 times what the previous one
    took)."""
    if not ctx.cuda:
        return
    checks = report.get("correctness", {}).get("self_checks")
    engines = checks.get("engines") if isinstance(checks, dict) else None

    def verdict(name: str, outcome: str, detail: str) -> None:
        if isinstance(engines, dict):
            engines[name] = {"verdict": outcome, "detail": detail}

    section = report.get("model")
    iterations, warmup = (20, 3) if ctx.quick else (60, 5)
    needed = COMPILE_GUARD_S
    for name in ("eager-fp16-compile", "eager-fp16-cudagraphs"):
        if not isinstance(section, dict) or "paths" not in section:
            verdict(name, "skipped", "the model section did not finish")
            continue
        if ctx.time_left() < needed:
            why = f"time budget: {max(0, ctx.time_left()):.0f} s left, {needed:.0f} s needed to compile and time it"
            section["skipped"][name] = why
            verdict(name, "skipped", why)
            continue
        ctx.say(f"model: {name}")
        t0 = time.monotonic()
        try:
            run = _benchmark(ctx, [name], with_compile=True, iterations=iterations, warmup=warmup)
        except Exception as err:  # noqa: BLE001 - a failed compile is a row
            section["skipped"][name] = f"error: {type(err).__name__}: {str(err)[:300]}"
            verdict(name, "error", section["skipped"][name])
            continue
        finally:  # the next compile takes about as long as this one did
            needed = max(COMPILE_GUARD_S, 1.2 * (time.monotonic() - t0))
        section["skipped"].pop(name, None)
        if name in run["paths"]:
            row = run["paths"][name]
            row["own_reference_frame_p50_ms"] = run["paths"]["reference"]["frame"]["p50"]
            section["paths"][name] = row
            verdict(name, "passed", "compiled decode checked against eager on its first frame (fp16: >= 40 dB) "
                                    "and kept")
        else:
            section["skipped"].update(run["skipped"])
            verdict(name, "failed", run["skipped"].get(name, "did not start"))


def batch(ctx: Context) -> dict:
    from fomm_live.benchmarks.gpu_batch import batch_sweep

    return batch_sweep(ctx.device, vox_networks(ctx.device), quick=ctx.quick, time_left=ctx.time_left, say=ctx.say,
                       image_size=ctx.check_size)


def pipeline(ctx: Context) -> dict:
    from fomm_live.benchmarks.gpu_pipeline import pipeline_runs

    return pipeline_runs(ctx.device, vox_networks(ctx.device), quick=ctx.quick, time_left=ctx.time_left, say=ctx.say)


# --- the run --------------------------------------------------------------------------------------------------------

def _correctness(name: str) -> Callable[[Context], dict]:
    def run(ctx: Context) -> dict:
        from fomm_live.benchmarks import gpu_correctness

        if name == "golden":
            return gpu_correctness.golden_parity(ctx.golden, ctx.device, time_left=ctx.time_left)
        if name == "kernels":
            from fomm_live.benchmarks.gpu_kernels import kernel_checks

            return kernel_checks(ctx.device)
        return gpu_correctness.self_checks(ctx.device, vox_networks(ctx.device), image_size=ctx.check_size)
    return run


# (JSON key path, function) in run order; tests replace entries to prove a failing section is recorded.
SECTIONS: list[tuple[tuple[str, ...], Callable[[Context], dict]]] = [
    (("environment",), environment),
    (("correctness", "golden"), _correctness("golden")),
    (("correctness", "kernels"), _correctness("kernels")),
    (("correctness", "self_checks"), _correctness("self_checks")),
    (("model",), model),
    (("batch",), batch),
    (("pipeline",), pipeline),
]
TOP_LEVEL = ("environment", "correctness", "model", "batch", "pipeline")


def write_report(out: Path, report: dict) -> None:
    """Both files, each written to a temporary name first so that a reader never sees half a file."""
    from fomm_live.benchmarks.gpu_report_markdown import render

    for name, text in (("gpu_report.json", json.dumps(report, indent=2, default=str) + "\n"),
                       ("gpu_report.md", render(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)


def run_report(ctx: Context, out: Path, command: str) -> dict:
    report: dict = {"command": command, "settings": {"device": ctx.device_spec, "quick": ctx.quick,
                                                     "golden": str(ctx.golden) if ctx.golden else None,
                                                     "budget_s": round(ctx.deadline - ctx.started)}}
    report.update({key: {"skipped": "not reached"} for key in TOP_LEVEL})
    report["correctness"] = {"golden": {"skipped": "not reached"}, "kernels": {"skipped": "not reached"},
                             "self_checks": {"skipped": "not reached"}}

    def store(path: tuple[str, ...], value: dict) -> None:
        node = report
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    write_report(out, report)
    for path, function in SECTIONS:
        name = ".".join(path)
        if ctx.time_left() <= 0 and path != ("environment",):
            store(path, {"skipped": "time budget spent before this section started"})
            continue
        ctx.say(f"{name} ...")
        t0 = time.monotonic()
        try:
            value = function(ctx)
            seconds = round(time.monotonic() - t0, 1)
            # Sections keyed by rows (batch sizes, clips) keep their own keys in "settings", beside the run's.
            (value["settings"] if isinstance(value.get("settings"), dict) else value).setdefault("seconds", seconds)
        except Exception as err:  # noqa: BLE001 - a failing section is recorded and the report goes on
            value = {"error": f"{type(err).__name__}: {str(err)[:500]}",
                     "traceback": traceback.format_exc(limit=6).splitlines()[-8:]}
            ctx.say(f"{name} failed: {value['error']}")
        store(path, value)
        write_report(out, report)
    try:
        model_compiled(ctx, report)
    except Exception as err:  # noqa: BLE001 - as above
        report.setdefault("model", {})["compile_error"] = f"{type(err).__name__}: {str(err)[:300]}"
    report["settings"]["wall_s"] = round(time.monotonic() - ctx.started, 1)
    write_report(out, report)
    return report


def prepare(source: Path, target: Path = PREPARED_GOLDEN) -> int:
    """Copy one golden variant's files into ``target`` (an ignored folder that travels with the checkout)."""
    missing = [name for name in GOLDEN_COPY if not (source / name).is_file()]
    if missing:
        print(f"error: {source} lacks {', '.join(missing)}: not a golden variant folder", file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    for name in GOLDEN_COPY:
        shutil.copyfile(source / name, target / name)
    print(f"copied {len(GOLDEN_COPY)} files from {source} to {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for gpu_report.json and gpu_report.md")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--golden", type=Path, help="a golden variant folder (or a parent of several)")
    parser.add_argument("--quick", action="store_true", help="every section, fewer iterations")
    parser.add_argument("--budget-s", type=float, help="start no new section after this many seconds "
                        "(default 190 on CUDA, 270 on the CPU)")
    parser.add_argument("--prepare", nargs="?", const=SHARED_GOLDEN, type=Path, metavar="SRC",
                        help=f"copy a golden variant (default {SHARED_GOLDEN}) to {PREPARED_GOLDEN} and exit")
    args = parser.parse_args(argv)
    if args.prepare is not None:
        return prepare(args.prepare)
    if args.out is None:
        parser.error("--out is required")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"error: cannot create {args.out}: {err}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # the ONNX exporter logs every pass and missing extra
        logging.getLogger(noisy).setLevel(logging.ERROR)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    budget = args.budget_s if args.budget_s is not None else (190.0 if cuda else 270.0)
    ctx = Context(device_spec=args.device, golden=args.golden, quick=args.quick, deadline=time.monotonic() + budget)
    command = "python3 -m fomm_live.benchmarks.gpu_report " + " ".join(argv if argv is not None else sys.argv[1:])
    try:
        run_report(ctx, args.out, command)
    except OSError as err:
        print(f"error: cannot write the report to {args.out}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out / 'gpu_report.json'} and {args.out / 'gpu_report.md'} "
          f"({time.monotonic() - ctx.started:.0f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
