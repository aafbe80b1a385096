"""Kernel benchmark: the fused Triton ops of ``kernels/`` against their PyTorch references, at vox-256 size.

    python -m fomm_live.benchmarks.kernels [--iterations N] [--json PATH] [--device auto|cpu|cuda]

Shapes are those of one vox-256 frame: the dense motion input stage with K = 10 keypoints and a 3 x 64 x 64 source,
and the final warp of 256 x 64 x 64 encoder features by a 64 x 64 deformation with an occlusion map. Each row checks
the kernel's output against the reference in the same run (max abs error) before timing it.

Triton runs on CUDA only; on the CPU only the references are timed (Triton's interpreter, which the tests use, is a
correctness tool thousands of times slower than compiled code, so timing it says nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fomm_live.kernels import triton_available
from fomm_live.kernels.reference import deform_features_reference, dense_motion_inputs_reference
from fomm_live.live.stats import percentiles
from fomm_live.models.animator import resolve_device
from fomm_live.models.blocks import KP_VARIANCE
from fomm_live.models.dense_motion import motion_jacobians
from fomm_live.models.keypoint_detector import Keypoints


def _time(fn: Callable[[], object], *, iterations: int, warmup: int, device: torch.device) -> dict:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1000)
    return percentiles(samples, digits=4)  # a fused op takes tens of microseconds


def _inputs(device: torch.device, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    k = 10

    def kp() -> Keypoints:
        value = torch.rand(1, k, 2, generator=gen) * 1.6 - 0.8
        jac = torch.eye(2) + 0.2 * torch.randn(1, k, 2, 2, generator=gen)
        return Keypoints(value.to(device), jac.to(device))

    return {"source_small": torch.rand(1, 3, 64, 64, generator=gen).to(device), "kp_driving": kp(), "kp_source": kp(),
            "features": torch.randn(1, 256, 64, 64, generator=gen).to(device),
            "deformation": (torch.rand(1, 64, 64, 2, generator=gen) * 2.2 - 1.1).to(device),
            "occlusion_map": torch.rand(1, 1, 64, 64, generator=gen).to(device)}


def run_kernel_benchmark(*, device: str = "auto", iterations: int = 200, warmup: int = 20) -> dict:
    """Time each op's reference (and its Triton kernel on CUDA); returns a dict with ``machine`` and ``ops``."""
    dev = resolve_device(device)
    x = _inputs(dev)
    from fomm_live import kernels
    # The ops take plain tensors; the 10 x 2 x 2 motion jacobians are formed once, outside the timed calls.
    motion = (x["source_small"], x["kp_driving"].value, x["kp_source"].value,
              motion_jacobians(x["kp_driving"], x["kp_source"]))
    references = {
        "dense_motion_inputs": lambda: dense_motion_inputs_reference(*motion, variance=KP_VARIANCE),
        "deform_features": lambda: deform_features_reference(x["features"], x["deformation"], x["occlusion_map"]),
    }
    fused_ops = {
        "dense_motion_inputs": lambda: kernels.dense_motion_inputs(*motion, variance=KP_VARIANCE, use_kernel=True),
        "deform_features": lambda: kernels.deform_features(x["features"], x["deformation"], x["occlusion_map"],
                                                           use_kernel=True),
    }
    triton_ok = dev.type == "cuda" and triton_available()
    results = {}
    with torch.inference_mode():
        for name, reference in references.items():
            row: dict = {"reference": _time(reference, iterations=iterations, warmup=warmup, device=dev)}
            if triton_ok:
                fused = fused_ops[name]
                got, want = fused(), reference()
                got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
                row["max_abs_error"] = max((g.float() - w.float()).abs().max().item()
                                           for g, w in zip(got, want, strict=True))
                row["triton"] = _time(fused, iterations=iterations, warmup=warmup, device=dev)
                row["speedup_p50"] = round(row["reference"]["p50"] / row["triton"]["p50"], 3)
            else:
                row["triton"] = ("not run: needs a CUDA GPU" if dev.type != "cuda"
                                 else "not run: triton is not installed")
            results[name] = row
    machine = {"device": str(dev), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
               "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
               "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    return {"machine": machine, "ops": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per op (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (default 20)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    result = run_kernel_benchmark(device=args.device, iterations=args.iterations, warmup=args.warmup)
    result["machine"]["command"] = "python -m fomm_live.benchmarks.kernels " + " ".join(argv if argv is not None
                                                                              else sys.argv[1:])
    print(json.dumps(result["machine"]))
    for name, row in result["ops"].items():
        ref = row["reference"]
        line = f"{name:<22} reference p50 {ref['p50']:.3f} ms  p95 {ref['p95']:.3f} ms"
        if isinstance(row["triton"], dict):
            line += (f"  | triton p50 {row['triton']['p50']:.3f} ms ({row['speedup_p50']:.2f}x), "
                     f"max abs error {row['max_abs_error']:.1e}")
        else:
            line += f"  | triton {row['triton']}"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
