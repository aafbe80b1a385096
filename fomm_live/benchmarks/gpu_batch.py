"""The batch sweep of ``benchmarks.gpu_report``: 1, 2, 4, 8, 16 and 32 streams with distinct sources, one batch per
step (keypoints of B driving frames, then the decode of B frames from B cached sources), on the device's default
engine and precision.

The result has one row per size directly under it (``"1"`` .. ``"32"``: ``step_ms`` p50/p95/p99,
``frames_per_second``, ``gpu_memory_mb``, the peak allocated on CUDA, null elsewhere) and the run's settings under
``settings``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def batch_sweep(device: torch.device, networks: tuple, *, quick: bool, time_left: Callable[[], float],
                say: Callable[[str], None], sizes: tuple[int, ...] = BATCH_SIZES, image_size: int = 256) -> dict:
    """Time one batched step per size while ``time_left()`` is positive.

    Args:
        device: Where the networks run.
        networks: Keypoint detector and generator on ``device`` (vox-256 with random weights in the report).
        quick: Fewer steps per size.
        time_left: Seconds left of the report's budget.
        say: Progress lines.
        sizes: Batch sizes (streams) to time.
        image_size: The networks' input size.
    """
    from fomm_live.live.stats import percentiles
    from fomm_live.models.engines import EagerEngine, default_precision
    from fomm_live.models.engines.base import free_device_memory

    cuda = device.type == "cuda"
    kp_detector, generator = networks
    precision = default_precision(device)
    engine = EagerEngine(kp_detector, generator, device=device, precision=precision, reason="batch sweep")
    if cuda:
        warmup, iterations = (2, 5) if quick else (3, 20)
    else:  # vox-256 is 100-230 ms per frame on a 2-core CPU: batch 32 alone is seconds per step, so the quick run
        # times one step per size, its first (one-off allocations included)
        warmup, iterations = (0, 1) if quick else (1, 3)
    settings: dict = {"engine": f"{engine.name} {precision}" + (", Triton kernels" if engine.use_kernels else ""),
                      "step": "keypoints of B driving frames + decode of B frames from B cached sources",
                      "warmup_steps": warmup, "steps": iterations, "image_size": image_size}
    if not cuda:
        settings["gpu_memory_note"] = "null: no GPU"
    result: dict = {"settings": settings}
    gen = torch.Generator().manual_seed(3)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        # The engine checks its fast paths against float32 eager on its first real frame (a second, float32 decode):
        # one frame before the sweep, so that no size's figure includes it.
        first = torch.rand(1, 3, image_size, image_size, generator=gen).to(device)
        engine.decode(engine.encode(first), engine.keypoints(first), engine.keypoints(first))
        settings["engine_checks"] = [f"{c.path}: {'passed' if c.ok else 'failed'}" for c in engine.checks]
        for size in sizes:
            if time_left() <= 0:
                result[str(size)] = {"skipped": "time budget spent"}
                continue
            try:
                sources = torch.rand(size, 3, image_size, image_size, generator=gen).to(device)  # B distinct sources
                driving = [torch.rand(size, 3, image_size, image_size, generator=gen).to(device) for _ in range(2)]
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                state, kp_source = engine.encode(sources), engine.keypoints(sources)
                samples = []
                for i in range(warmup + iterations):
                    sync()
                    t0 = time.perf_counter()
                    engine.decode(state, engine.keypoints(driving[i % 2]), kp_source)
                    sync()
                    if i >= warmup:
                        samples.append((time.perf_counter() - t0) * 1000)
                step = percentiles(samples)
                row = {"step_ms": {k: step[k] for k in ("p50", "p95", "p99")}, "steps": step["count"],
                       "frames_per_second": round(size * 1000 / step["p50"], 1) if step["p50"] > 0 else None}
                if cuda:
                    row["gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                    row["gpu_memory_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
                else:
                    row["gpu_memory_mb"] = None
                result[str(size)] = row
                say(f"  batch {size}: {row['step_ms']['p50']:.1f} ms per step")
            except Exception as err:  # noqa: BLE001 - out of memory at one size is a row; the sweep goes on
                result[str(size)] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
                free_device_memory(device)  # what the failed size held, before the next (larger) one
    engine.close()
    return result
