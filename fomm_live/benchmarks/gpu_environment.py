"""The environment part of ``benchmarks.gpu_report``: versions, the GPU, which optional packages import, and
whether importing the live loop pulls in a package the GPU machine lacks."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from fomm_live.benchmarks.gpu_correctness import missing_package

REPO = Path(__file__).resolve().parents[2]  # the checkout (fomm_live/benchmarks/ is two levels down)
OPTIONAL_PACKAGES = ("triton", "onnxruntime", "cv2", "mediapipe", "av", "tqdm", "pyvirtualcam", "onnx", "onnxscript",
                     "ray", "torch_tensorrt")
WATCHED_MODULES = ("torch", "fomm_live.live.capture.sources", "fomm_live.live.output.sinks", "fomm_live.live.backends",
                   "fomm_live.live.loop.pipeline", "fomm_live.models.engines")


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _opencv_version() -> str | None:
    version = _version("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                       "opencv-contrib-python")
    if version is None and not missing_package("cv2"):
        try:
            import cv2

            version = cv2.__version__
        except ImportError:
            pass
    return version


def _module_level_imports() -> dict[str, list[str]] | str:
    """Which packages missing on the GPU machine each live module pulls in when imported (should be none: mediapipe,
    PyAV and the rest are imported lazily, where a feature needs them). One fresh interpreter imports the modules in
    turn, torch first (it imports tqdm itself when tqdm is installed, and does without); a package is charged to
    the first module after whose import it is loaded."""
    code = ("import json, sys\n"
            f"watch, found, seen = {list(OPTIONAL_PACKAGES[3:])!r}, {{}}, set()\n"
            f"for module in {list(WATCHED_MODULES)!r}:\n"
            "    __import__(module)\n"
            "    found[module] = [m for m in watch if m in sys.modules and m not in seen]\n"
            "    seen.update(found[module])\n"
            "print(json.dumps(found))\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
        return f"could not check: {type(err).__name__}: {str(err)[:200]}"


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=15, check=True)
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    try:  # the kernel module's banner: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15 ..."
        words = Path("/proc/driver/nvidia/version").read_text().split()
        return next(w for w in words if w.count(".") >= 1 and w.replace(".", "").isdigit())
    except (OSError, StopIteration):
        return None


def environment_info(device: torch.device) -> dict:
    """Versions, the GPU, and which optional packages import here."""
    from fomm_live.benchmarks.model import machine_info

    info: dict = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  "python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
                  "numpy": np.__version__, "triton": _version("triton", "pytorch-triton"),
                  "onnxruntime": _version("onnxruntime", "onnxruntime-gpu"),
                  "opencv": _opencv_version(),
                  "packages_importable": {name: not missing_package(name) for name in OPTIONAL_PACKAGES}}
    if info["onnxruntime"]:
        try:
            import onnxruntime

            info["onnxruntime_providers"] = onnxruntime.get_available_providers()
        except Exception as err:  # noqa: BLE001 - a broken install is a fact to report
            info["onnxruntime_providers"] = f"import failed: {type(err).__name__}: {err}"
    info["machine"] = machine_info(device)
    info["module_level_imports_of_missing_packages"] = _module_level_imports()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                       "compute_capability": f"{props.major}.{props.minor}",
                       "multiprocessors": props.multi_processor_count, "driver": _driver_version(),
                       "cudnn": torch.backends.cudnn.version(), "count": torch.cuda.device_count()}
    else:
        info["gpu"] = {"skipped": f"device is {device.type}: no GPU in use"}
    return info
