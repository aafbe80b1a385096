"""Int8 benchmark: every int8 runtime side by side with float32 and bf16 eager, in one run (speed and quality).

For each installed runtime (``models.engines.int8_runtimes.RUNTIMES``): the cold start (calibration on the photo
and its poses, written to an empty cache), the warm start (the cached calibration loaded), the per-frame generator
time, and its quality against float32 eager on held-out driving poses (poses drawn with another seed than the
calibration's, so they are not the ones it was calibrated on): the prediction's PSNR and the motion field's largest
absolute error. Float32 and bf16 eager and the original's per-frame call (``reference``: the source re-encoded every
frame, float32, networks as loaded) are timed in the same loop, round-robin, so that machine load hits all alike.

    python -m fomm_live.benchmarks.int8 [--quick] [--runtimes openvino onnxruntime torch] [--poses N] [--json PATH]
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI python -m fomm_live.benchmarks.int8   # a CPU without native bf16, as far as
                                                                     # PyTorch's oneDNN can be told

Without ``--checkpoint``: vox-256-size networks with seeded random weights (``benchmarks.model.randomize_``), and
the bundled portrait as the photo.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fomm_live.benchmarks.model import machine_info, randomize_
from fomm_live.models import build_networks, load_config
from fomm_live.models.animator import image_to_tensor
from fomm_live.models.checkpoint import load_into, read_checkpoint
from fomm_live.models.config import DEFAULT_IMAGE_SIZE
from fomm_live.models.engines import EagerEngine, psnr
from fomm_live.models.engines.int8 import Int8Engine
from fomm_live.models.engines.int8_calibration import DEFAULT_POSES, calibration_poses, pose_reach
from fomm_live.models.engines.int8_runtimes import RUNTIMES, runtime

CACHE_ENV = "FOMM_LIVE_CACHE"  # the cache folder switch (common.switches)

logger = logging.getLogger(__name__)


def _photo(size: int) -> torch.Tensor:
    import cv2

    path = Path(__file__).resolve().parent.parent / "live" / "assets" / "astronaut.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return image_to_tensor(rgb, size, torch.device("cpu"))


def run_int8_benchmark(*, config: str = "vox-256", checkpoint: str | None = None, runtimes: list[str] | None = None,
                       poses: int = DEFAULT_POSES, frames: int = 8, iterations: int = 10, seed: int = 0,
                       say=print) -> dict:
    """See the module docstring. Returns ``machine``, ``settings`` and ``paths`` (one entry per path)."""
    cfg = load_config(config)
    kp_detector, generator = build_networks(cfg)
    if checkpoint:
        load_into(kp_detector, generator, read_checkpoint(checkpoint), source=checkpoint, config_name=config)
    else:
        randomize_(kp_detector, generator, seed=seed)
    kp_detector, generator = kp_detector.eval(), generator.eval()
    dev = torch.device("cpu")
    size = DEFAULT_IMAGE_SIZE
    source = _photo(size)
    results: dict[str, dict] = {}
    # Every candidate is measured, whatever its error: the engine's bars are lifted here and the measured errors are
    # reported beside them (in use, a candidate outside them falls back on its first frame).
    import fomm_live.models.engines.int8 as int8_engine

    bars = (int8_engine.INT8_MIN_PSNR_DB, int8_engine.INT8_DEFORMATION_ATOL)
    int8_engine.INT8_MIN_PSNR_DB, int8_engine.INT8_DEFORMATION_ATOL = 0.0, float("inf")
    calls = {}
    with torch.inference_mode():
        kp_source = kp_detector(source)
        held_out = calibration_poses(kp_source, frames + 1, seed=seed + 1)[1:]  # not the calibration's poses
        fp32 = EagerEngine(kp_detector, generator, device=dev, precision="fp32", reason="benchmark")
        state32 = fp32.encode(source)
        want = [fp32.decode(state32, pose, kp_source, with_deformation=True) for pose in held_out]
        bf16 = EagerEngine(kp_detector, generator, device=dev, precision="bf16", reason="benchmark")
        state16 = bf16.encode(source)
        calls["reference"] = lambda pose: generator(source, pose, kp_source)
        calls["eager-fp32"] = lambda pose: fp32.decode(state32, pose, kp_source, with_deformation=True)
        calls["eager-bf16"] = lambda pose: bf16.decode(state16, pose, kp_source, with_deformation=True)
        for name in runtimes or list(RUNTIMES):
            row = f"{name}-int8"
            missing = runtime(name).missing()
            if missing:
                results[row] = {"skipped": missing}
                say(f"{row}: skipped ({missing})")
                continue
            with tempfile.TemporaryDirectory(prefix="fomm-live-int8-bench-") as cache:
                before = os.environ.get(CACHE_ENV)
                os.environ[CACHE_ENV] = cache
                try:
                    say(f"{row}: cold start (calibration) ...")
                    start = time.perf_counter()
                    engine = Int8Engine(kp_detector, generator, device=dev, runtime_name=name, poses=poses)
                    state = engine.encode(source)
                    first = engine.decode(state, held_out[0], kp_source, with_deformation=True)
                    cold = time.perf_counter() - start
                    start = time.perf_counter()
                    warm_engine = Int8Engine(kp_detector, generator, device=dev, runtime_name=name, poses=poses)
                    warm_state = warm_engine.encode(source)
                    warm_engine.decode(warm_state, held_out[0], kp_source, with_deformation=True)
                    warm = time.perf_counter() - start
                    warm_engine.close()
                finally:
                    if before is None:
                        os.environ.pop(CACHE_ENV, None)
                    else:
                        os.environ[CACHE_ENV] = before
            if engine.name != "int8":
                results[row] = {"skipped": f"fell back: {engine.reason}", "cold_start_s": round(cold, 1)}
                say(f"{row}: fell back ({engine.reason})")
                continue
            del first
            got = [engine.decode(state, pose, kp_source, with_deformation=True) for pose in held_out]
            fell = engine.name != "int8"
            results[row] = {
                "runtime": engine.runtime_label, "cold_start_s": round(cold, 2), "warm_start_s": round(warm, 2),
                "min_psnr_db_vs_fp32": round(min(psnr(g["prediction"], w["prediction"])
                                                 for g, w in zip(got, want, strict=True)), 2),
                "max_deformation_error_vs_fp32": float(f"{_field_error(got, want):.3g}"),
                "rechecks": len(engine.checks) - 1, "fell_back": fell,
                "covered": engine.covered.describe() if engine.covered else None,
            }
            say(f"{row}: {results[row]}")
            calls[row] = lambda pose, e=engine, s=state: e.decode(s, pose, kp_source, with_deformation=True)
        for call in calls.values():
            call(held_out[0])  # warm-up (a compiled graph's first run compiles)
        times: dict[str, list[float]] = {name: [] for name in calls}
        load_before = os.getloadavg()
        for i in range(iterations):
            pose = held_out[i % len(held_out)]
            for name, call in calls.items():
                t0 = time.perf_counter()
                call(pose)
                times[name].append((time.perf_counter() - t0) * 1000)
        load_after = os.getloadavg()
        quality16 = [psnr(bf16.decode(state16, p, kp_source)["prediction"], w["prediction"])
                     for p, w in zip(held_out, want, strict=True)]
    int8_engine.INT8_MIN_PSNR_DB, int8_engine.INT8_DEFORMATION_ATOL = bars
    ref = float(np.median(times["reference"]))
    results.setdefault("eager-bf16", {})["min_psnr_db_vs_fp32"] = round(min(quality16), 2)
    for name, samples in times.items():
        p50 = float(np.median(samples))
        row = results.setdefault(name, {})
        row.update({"generator_p50_ms": round(p50, 1), "speedup_vs_reference": round(ref / p50, 2),
                    "speedup_vs_fp32": round(float(np.median(times["eager-fp32"])) / p50, 2),
                    "speedup_vs_bf16": round(float(np.median(times["eager-bf16"])) / p50, 2)})
    reach = max((pose_reach(p, kp_source) for p in held_out), key=lambda r: r.shift)
    return {"machine": machine_info(dev),
            "settings": {"config": config, "checkpoint": checkpoint or f"random weights (seed {seed})",
                         "poses": poses, "bars": {"min_psnr_db": bars[0], "max_deformation_error": bars[1]},
                         "held_out_poses": len(held_out), "widest_held_out": reach.describe(),
                         "iterations": iterations, "load_average_before": load_before,
                         "load_average_after": load_after, "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                         "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
            "paths": results}


def _field_error(got: list[dict], want: list[dict]) -> float:
    """Largest absolute difference of the motion fields (grid units) over the frames."""
    return max((g["deformation"] - w["deformation"]).abs().max().item() for g, w in zip(got, want, strict=True))


def format_table(result: dict) -> str:
    lines = [f"{'path':<18} {'gen p50':>8} {'vs ref':>7} {'vs fp32':>7} {'vs bf16':>7} {'PSNR dB':>8} "
             f"{'field err':>9} {'cold s':>7} {'warm s':>7}"]
    for name, r in result["paths"].items():
        if "skipped" in r:
            lines.append(f"{name:<18} skipped: {r['skipped']}")
            continue
        lines.append(f"{name:<18} {r['generator_p50_ms']:>8.1f} {r['speedup_vs_reference']:>6.2f}x "
                     f"{r['speedup_vs_fp32']:>6.2f}x {r['speedup_vs_bf16']:>6.2f}x "
                     f"{str(r.get('min_psnr_db_vs_fp32', '-')):>8} "
                     f"{str(r.get('max_deformation_error_vs_fp32', '-')):>9} "
                     f"{str(r.get('cold_start_s', '-')):>7} {str(r.get('warm_start_s', '-')):>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, help="only these int8 runtimes")
    parser.add_argument("--poses", type=int, default=DEFAULT_POSES, help="calibration poses")
    parser.add_argument("--iterations", type=int, default=10, help="timed frames per path")
    parser.add_argument("--quick", action="store_true", help="4 timed frames per path")
    parser.add_argument("--checkpoint", metavar="CKPT", help="original checkpoint (default: random weights)")
    parser.add_argument("--config", default="vox-256", metavar="YAML_OR_PRESET")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx", "nncf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    result = run_int8_benchmark(config=args.config, checkpoint=args.checkpoint, runtimes=args.runtimes,
                                poses=args.poses, iterations=4 if args.quick else args.iterations,
                                say=lambda line: print(line, file=sys.stderr, flush=True))
    result["settings"]["command"] = "python -m fomm_live.benchmarks.int8 " + " ".join(argv if argv is not None
                                                                           else sys.argv[1:])
    print(json.dumps(result["machine"]))
    print(json.dumps(result["settings"]))
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
