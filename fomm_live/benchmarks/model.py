"""Model benchmark: keypoint detector and generator per frame, every available path beside the reference path.

The reference path is the original's per-frame call: keypoint detector on the driving frame, then the generator
re-encoding the source every frame (``generator(source, kp_driving, kp_source)``), float32, PyTorch eager, networks as
loaded. The other paths are ``models.engines`` engines with the source encoded once: eager fp32 and bf16 on the CPU
(bf16 marked when the CPU has no native bf16); on CUDA eager fp32, eager fp16, eager fp16 with the fused Triton
kernels, and with ``--compile`` torch.compile with and without CUDA graphs; ONNX Runtime when installed (its CUDA
provider on CUDA where it has one); on the CPU the int8 generator of each int8 runtime (``openvino-int8``,
``onnxruntime-int8``, ``torch-int8``; calibrated at start-up in a temporary cache, a runtime that is not installed is
listed under ``skipped`` with the reason); TensorRT when torch-tensorrt is installed and CUDA is there. On CUDA every
float32 convolution runs in full float32, the reference's included (PyTorch's default would let cuDNN use TF32).
Paths take turns frame by frame (round-robin), so a change in machine load hits all of them alike. Warm-up calls are
timed apart and left out of the statistics. Each path's prediction is compared with the reference's on the same frames
(max abs error and PSNR).

    python -m fomm_live.benchmarks.model [--quick] [--json PATH] [--checkpoint CKPT --config CFG] [--device cpu|cuda]

Without ``--checkpoint`` the networks of ``--config`` (default vox-256) get seeded random weights, with batch-norm
statistics and the jacobian head randomised too, so that no path can shortcut through trivial weights.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fomm_live.live.stats import percentiles
from fomm_live.models import Keypoints, build_networks, load_config
from fomm_live.models.animator import resolve_device
from fomm_live.models.checkpoint import load_into, read_checkpoint
from fomm_live.models.config import DEFAULT_IMAGE_SIZE
from fomm_live.models.engines import (
    EagerEngine,
    Engine,
    EngineError,
    cpu_bf16_support,
    create_engine,
    exact_float32,
    psnr,
)
from fomm_live.models.engines.int8 import Int8Engine, int8_unavailable
from fomm_live.models.engines.int8_runtimes import RUNTIMES as INT8_RUNTIMES

logger = logging.getLogger(__name__)

DEFAULT_ITERATIONS = 40
DEFAULT_WARMUP = 3
QUICK_ITERATIONS = 8
QUICK_WARMUP = 1
NUM_FRAMES = 4  # distinct driving frames, cycled


def randomize_(kp_detector: nn.Module, generator: nn.Module, *, seed: int = 0) -> None:
    """Seeded, non-trivial random weights: batch-norm statistics and the jacobian head too (their defaults are
    identity maps, which would make every path look more accurate than it is)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (*kp_detector.modules(), *generator.modules()):
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(module.num_features, generator=gen) * 0.2 - 0.1)
        jacobian = getattr(kp_detector, "jacobian", None)
        if jacobian is not None:
            jacobian.weight.copy_(torch.randn(jacobian.weight.shape, generator=gen) * 1e-3)


def _percentiles(samples_ms: list[float]) -> dict:
    """``live.stats.percentiles`` of the milliseconds, and the frames per second at the p50."""
    figures = percentiles(samples_ms)
    figures["fps_p50"] = round(1000.0 / figures["p50"], 2) if figures["p50"] > 0 else None
    return figures


class _Path:
    """One measured path: a keypoint call and a generator call per frame."""

    def __init__(self, name: str, description: str, keypoints: Callable[[torch.Tensor], Keypoints],
                 generate: Callable[[Keypoints], dict], engine: Engine | None = None) -> None:
        self.name = name
        self.description = description
        self.keypoints = keypoints
        self.generate = generate
        self.engine = engine
        self.warmup_ms: list[float] = []
        self.kp_ms: list[float] = []
        self.gen_ms: list[float] = []
        self.frame_ms: list[float] = []
        self.predictions: list[torch.Tensor] = []


def run_model_benchmark(*, config: str = "vox-256", checkpoint: str | None = None, device: str = "auto",
                        iterations: int = DEFAULT_ITERATIONS, warmup: int = DEFAULT_WARMUP,
                        paths: list[str] | None = None, seed: int = 0, with_compile: bool = False,
                        every_int8_runtime: bool = True, progress: Callable[[str], None] | None = None) -> dict:
    """Time the keypoint detector and the generator per frame on every available path; see the module docstring.

    Args:
        config: Preset name or original config YAML.
        checkpoint: Original checkpoint; None for seeded random weights.
        device: ``auto``, ``cpu`` or ``cuda``.
        iterations: Timed frames per path.
        warmup: Untimed frames per path first (their times are reported apart).
        paths: Only these path names (``reference`` always runs); None for every available one.
        seed: Seed of the random weights and frames.
        with_compile: Also time the eager paths with ``torch.compile`` (``*-compile``; adds its compile time to the
            start-up, 15-20 s per path on a 2-core CPU).
        every_int8_runtime: A row for each int8 runtime; False: only the default one (the one ``--precision int8``
            and ``auto`` use), the others listed under ``skipped`` (``bench --quick``: each calibration costs a
            start-up of its own, 10-70 s on a 2-core CPU).
        progress: Called with a line of text as the run goes.

    Returns:
        A dict with ``machine``, ``settings`` and ``paths`` (each: keypoints / generator / frame statistics in ms,
        warm-up times, speed-up over the reference, and parity with the reference's prediction).
    """
    say = progress or (lambda line: None)
    dev = resolve_device(device)
    cfg = load_config(config)
    kp_detector, generator = build_networks(cfg)
    if checkpoint:
        load_into(kp_detector, generator, read_checkpoint(checkpoint), source=str(checkpoint), config_name=config)
    else:
        randomize_(kp_detector, generator, seed=seed)
    kp_detector, generator = kp_detector.to(dev).eval(), generator.to(dev).eval()
    size = DEFAULT_IMAGE_SIZE
    gen = torch.Generator().manual_seed(seed + 1)
    source = torch.rand(1, 3, size, size, generator=gen).to(dev)
    frames = [torch.rand(1, 3, size, size, generator=gen).to(dev) for _ in range(NUM_FRAMES)]
    with torch.inference_mode():
        kp_source = kp_detector(source)

    def exact(call: Callable) -> Callable:  # full float32 convolutions on CUDA (no TF32), as the engines run
        def run(*args):
            with exact_float32(dev):
                return call(*args)
        return run

    measured: list[_Path] = [_Path(
        "reference", "original per-frame call: source re-encoded every frame, fp32, eager, networks as loaded",
        exact(kp_detector), exact(lambda kp: generator(source, kp, kp_source)))]

    skipped: dict[str, str] = {}
    int8_cache = tempfile.TemporaryDirectory(prefix="fomm-live-bench-int8-")  # calibrations of random weights

    def engine_path(name: str, engine_name: str, precision: str, note: str = "", use_compile: bool = False,
                    int8_runtime: str | None = None, **eager_options) -> None:
        if paths is not None and name not in paths:
            return
        if int8_runtime is not None and (missing := int8_unavailable(dev, int8_runtime)) is not None:
            skipped[name] = missing
            say(f"{name}: skipped ({missing})")
            return
        say(f"starting {name} ...")
        start = time.perf_counter()
        try:
            if int8_runtime is not None:
                engine = Int8Engine(kp_detector, generator, device=dev, image_size=size, runtime_name=int8_runtime,
                                    cache_dir=Path(int8_cache.name), reason="benchmark")
            elif use_compile or eager_options:
                engine = EagerEngine(kp_detector, generator, device=dev, precision=precision,
                                     use_compile=use_compile, reason="benchmark", **eager_options)
            else:
                engine = create_engine(kp_detector, generator, device=dev, precision=precision,
                                       engine=engine_name, image_size=size)
        except (EngineError, ImportError, RuntimeError) as err:
            say(f"{name}: not available ({err})")
            return
        if engine.name != engine_name:
            say(f"{name}: skipped, {engine_name} fell back to {engine.name} ({engine.reason})")
            return
        with torch.inference_mode():
            state = engine.encode(source)
            kp_src = engine.keypoints(source)
            if int8_runtime is not None and engine.name != "int8":  # calibration failed: the fallback runs
                skipped[name] = engine.reason
                say(f"{name}: skipped, {engine.reason}")
                return
            if use_compile:  # compile (and the check against eager) belong to the start-up, not the warm-up
                engine.decode(state, kp_detector(frames[0]), kp_src)
                if not engine.compile_active:
                    say(f"{name}: torch.compile failed or did not pass its check; skipped")
                    return
                if eager_options.get("cuda_graphs") and not engine.cuda_graphs:  # it fell to the plain compile
                    say(f"{name}: CUDA graphs failed or did not pass their check; skipped (the plain compile is "
                        "its own row)")
                    return
        setup_s = time.perf_counter() - start
        desc = f"{engine.name} {engine.precision}, cached source{note}; start-up {setup_s:.1f} s"
        measured.append(_Path(name, desc, engine.keypoints,
                              lambda kp, e=engine, s=state, k=kp_src: e.decode(s, kp, k), engine))

    if dev.type == "cpu":
        engine_path("eager-fp32", "eager", "fp32")
        bf16 = cpu_bf16_support()
        engine_path("eager-bf16", "eager", "bf16", "" if bf16 else " (no native bf16 on this CPU: emulated)")
        if with_compile:
            engine_path("eager-fp32-compile", "eager", "fp32", ", torch.compile", use_compile=True)
            engine_path("eager-bf16-compile", "eager", "bf16", ", torch.compile", use_compile=True)
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is not None:
            engine_path("onnxruntime-fp32", "onnxruntime", "fp32")
        default_int8 = next((r for r in INT8_RUNTIMES if int8_unavailable(dev, r) is None), None)
        for runtime_name in INT8_RUNTIMES:  # calibrated at start-up; the first frame's check is in the warm-up
            if not every_int8_runtime and runtime_name != default_int8 and int8_unavailable(dev, runtime_name) is None:
                skipped[f"{runtime_name}-int8"] = f"only the default int8 runtime ({default_int8}) in a quick run"
                continue
            engine_path(f"{runtime_name}-int8", "int8", "int8", f", {runtime_name} runtime", int8_runtime=runtime_name)
    else:
        import importlib.util

        from fomm_live import kernels
        engine_path("eager-fp32", "eager", "fp32", use_kernels=False)
        engine_path("eager-fp16", "eager", "fp16", use_kernels=False)
        if kernels.triton_available():
            engine_path("eager-fp16-kernels", "eager", "fp16", ", fused Triton kernels", use_kernels=True)
        if with_compile:
            engine_path("eager-fp16-compile", "eager", "fp16", ", torch.compile", use_compile=True)
            engine_path("eager-fp16-cudagraphs", "eager", "fp16", ", torch.compile with CUDA graphs",
                        use_compile=True, cuda_graphs=True)
        if importlib.util.find_spec("onnxruntime") is not None:
            engine_path("onnxruntime-fp32", "onnxruntime", "fp32")
        if importlib.util.find_spec("torch_tensorrt") is not None:
            engine_path("tensorrt-fp16", "tensorrt", "fp16")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    say(f"timing {len(measured)} paths: {warmup} warm-up + {iterations} frames each, round-robin")
    with torch.inference_mode():
        for i in range(warmup + iterations):
            frame = frames[i % NUM_FRAMES]
            for path in measured:
                sync()
                t0 = time.perf_counter()
                kp = path.keypoints(frame)
                sync()
                t1 = time.perf_counter()
                out = path.generate(kp)
                sync()
                t2 = time.perf_counter()
                if i < warmup:
                    path.warmup_ms.append((t2 - t0) * 1000)
                    continue
                path.kp_ms.append((t1 - t0) * 1000)
                path.gen_ms.append((t2 - t1) * 1000)
                path.frame_ms.append((t2 - t0) * 1000)
                if i - warmup < NUM_FRAMES:  # one prediction per distinct frame, for parity
                    path.predictions.append(out["prediction"].float().cpu())
            if (i + 1) % 10 == 0:
                say(f"  frame {i + 1}/{warmup + iterations}")
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    reference = measured[0]
    ref_frame = float(np.percentile(reference.frame_ms, 50))
    ref_gen = float(np.percentile(reference.gen_ms, 50))
    results = {}
    for path in measured:
        frame_p50 = float(np.percentile(path.frame_ms, 50))
        errors = [(p - r).abs().max().item() for p, r in zip(path.predictions, reference.predictions, strict=True)]
        quality = [psnr(p, r) for p, r in zip(path.predictions, reference.predictions, strict=True)]
        fell_back = path.engine is not None and path.name.endswith("-int8") and path.engine.name != "int8"
        results[path.name] = {
            "description": path.description + (f"; fell back: {path.engine.reason}" if fell_back else ""),
            "keypoints": _percentiles(path.kp_ms),
            "generator": _percentiles(path.gen_ms),
            "frame": _percentiles(path.frame_ms),
            "warmup_ms": [round(t, 1) for t in path.warmup_ms],
            "speedup_frame_p50": round(ref_frame / frame_p50, 3),
            "speedup_generator_p50": round(ref_gen / float(np.percentile(path.gen_ms, 50)), 3),
            "max_abs_error_vs_reference": float(f"{max(errors):.3g}"),
            "min_psnr_db_vs_reference": round(min(quality), 1) if min(quality) != float("inf") else "inf",
        }
        if path.engine is not None:
            path.engine.close()
    int8_cache.cleanup()
    return {
        "machine": machine_info(dev),
        "settings": {"config": config, "checkpoint": checkpoint or f"random weights (seed {seed})",
                     "image_size": size, "iterations": iterations, "warmup": warmup, "order": "round-robin",
                     "load_average_before": load_before, "load_average_after": load_after,
                     "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
        "paths": results,
        "skipped": skipped,
    }


def machine_info(device: torch.device) -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_bf16_support(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(result: dict) -> str:
    """A plain-text table of the per-frame figures."""
    lines = [f"{'path':<18} {'kp p50':>8} {'gen p50':>8} {'frame p50':>10} {'p95':>8} {'p99':>8} {'fps':>6} "
             f"{'speed-up':>8} {'PSNR dB':>8}  warm-up ms"]
    for name, r in result["paths"].items():
        lines.append(f"{name:<18} {r['keypoints']['p50']:>8.1f} {r['generator']['p50']:>8.1f} "
                     f"{r['frame']['p50']:>10.1f} {r['frame']['p95']:>8.1f} {r['frame']['p99']:>8.1f} "
                     f"{r['frame']['fps_p50']:>6.2f} {r['speedup_frame_p50']:>7.2f}x "
                     f"{str(r['min_psnr_db_vs_reference']):>8}  {r['warmup_ms']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ITERATIONS} frames and {QUICK_WARMUP} warm-up per path instead of "
                             f"{DEFAULT_ITERATIONS} and {DEFAULT_WARMUP}")
    parser.add_argument("--iterations", type=int, help="timed frames per path")
    parser.add_argument("--warmup", type=int, help="untimed warm-up frames per path")
    parser.add_argument("--json", metavar="PATH", help="also write the full result as JSON")
    parser.add_argument("--checkpoint", metavar="CKPT", help="original checkpoint (default: random weights)")
    parser.add_argument("--config", default="vox-256", metavar="YAML_OR_PRESET", help="config (default: vox-256)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", action="store_true",
                        help="also time the eager paths under torch.compile, and with CUDA graphs on CUDA (adds "
                             "15-20 s of compiling per path on a 2-core CPU)")
    parser.add_argument("--paths", nargs="+", metavar="NAME",
                        help="only these paths besides the reference (eager-fp32 eager-bf16 eager-fp16 "
                             "eager-fp16-kernels eager-*-compile eager-fp16-cudagraphs onnxruntime-fp32 "
                             "openvino-int8 onnxruntime-int8 torch-int8 tensorrt-fp16)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # the ONNX exporter logs every optimisation pass
        logging.getLogger(noisy).setLevel(logging.WARNING)
    iterations = args.iterations or (QUICK_ITERATIONS if args.quick else DEFAULT_ITERATIONS)
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    result = run_model_benchmark(config=args.config, checkpoint=args.checkpoint, device=args.device,
                                 iterations=iterations, warmup=warmup, paths=args.paths, with_compile=args.compile,
                                 progress=lambda line: print(line, file=sys.stderr, flush=True))
    result["settings"]["command"] = "python -m fomm_live.benchmarks.model " + " ".join(argv if argv is not None
                                                                            else sys.argv[1:])
    print(json.dumps(result["machine"]))
    print(json.dumps({k: v for k, v in result["settings"].items()}))
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
