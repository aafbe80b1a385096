"""What the benchmark scripts share: the driving clip, the backends they measure and the machine header.

Imported by ``benchmarks.pipeline``, ``benchmarks.soak`` and ``benchmarks.suite``; it imports none of them (the
benchmarks import each other one way only: suite -> pipeline -> common, soak -> common).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

BENCH_INPUT = (640, 480)  # a webcam's usual frame size


def timings(fn: Callable[[int], object], *, iterations: int, warmup: int) -> np.ndarray:
    """Seconds per call of ``fn(i)`` for i in range(iterations), after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(i)
    out = np.empty(iterations)
    for i in range(iterations):
        start = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - start
    return out


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_header(device: str) -> dict:
    """CPU model and cores, GPU, and the versions that matter for the figures."""
    import torch

    from fomm_live.benchmarks.model import machine_info
    from fomm_live.models.animator import resolve_device

    info = machine_info(resolve_device(device))
    info.update({"os": platform.platform(), "mediapipe": package_version("mediapipe"),
                 "opencv": package_version("opencv-contrib-python"), "tensorrt": package_version("torch-tensorrt"),
                 "onnxruntime": package_version("onnxruntime"),
                 "gpu": info.get("gpu") or (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)})
    return info


def bench_clip(size: tuple[int, int] = BENCH_INPUT) -> Path:
    """The bundled demo clip centred on a ``size`` canvas (a webcam-sized input), made once into the cache."""
    import av

    from fomm_live.live.democlip import DEMO_CLIP_VERSION, demo_clip_path
    from fomm_live.live.media import Mp4Writer
    from fomm_live.live.paths import cache_dir

    final = cache_dir() / f"bench-clip-v{DEMO_CLIP_VERSION}-{size[0]}x{size[1]}.mp4"
    if final.is_file():
        return final
    partial = final.with_name(f"bench-clip-{os.getpid()}.tmp.mp4")
    try:
        with av.open(str(demo_clip_path())) as src, Mp4Writer(partial, fps=25) as out:
            for frame in src.decode(video=0):
                image = frame.to_ndarray(format="rgb24")
                h, w = image.shape[:2]
                canvas = np.full((size[1], size[0], 3), 40, np.uint8)
                y0, x0 = (size[1] - h) // 2, (size[0] - w) // 2
                canvas[y0:y0 + h, x0:x0 + w] = image
                out.write(canvas)
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    return final


def fomm_backend_factory(checkpoint: str | None, config: str, device: str, precision: str) -> Callable:
    """A function that builds the FOMM backend: from ``checkpoint``, or with seeded random weights of ``config``
    (speed does not depend on the weights)."""

    def make():
        from fomm_live.benchmarks.model import randomize_
        from fomm_live.live.backends import FommBackend
        from fomm_live.models import Animator, build_networks, load_config

        if checkpoint:
            animator = Animator.from_checkpoint(checkpoint, config, device=device, precision=precision)
        else:
            kp_detector, generator = build_networks(load_config(config))
            randomize_(kp_detector, generator)
            animator = Animator(kp_detector, generator, device=device, precision=precision)
        return FommBackend(animator)

    return make


def landmark_backend() -> object:
    """The landmark warp backend as the live loop runs it (mediapipe's video mode)."""
    from fomm_live.live.landmarks import LandmarkBackend

    return LandmarkBackend(tracking=True)


def backend_factory(name: str, *, checkpoint: str | None = None, config: str = "vox-256", device: str = "auto",
                    precision: str = "auto") -> Callable:
    """The factory of backend ``name`` (``fomm`` or ``landmarks``)."""
    if name == "fomm":
        return fomm_backend_factory(checkpoint, config, device, precision)
    if name == "landmarks":
        return landmark_backend
    raise ValueError(f"unknown backend {name!r}; choose fomm or landmarks")
