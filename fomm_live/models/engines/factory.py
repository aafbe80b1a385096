"""``create_engine``: pick an engine for the device, start it, fall back to eager with one warning.

Imports ``models.engines.base``, ``.cpu``, ``.eager``, ``.onnxruntime``, and ``.tensorrt`` lazily (it needs
torch-tensorrt and CUDA).
"""

from __future__ import annotations

import logging

import torch

from fomm_live.models.engines.base import Engine, EngineError
from fomm_live.models.engines.cpu import cpu_bf16_support, default_precision
from fomm_live.models.engines.eager import EagerEngine
from fomm_live.models.engines.int8 import Int8Engine
from fomm_live.models.engines.onnxruntime import OnnxRuntimeEngine
from fomm_live.models.generator import OcclusionAwareGenerator
from fomm_live.models.keypoint_detector import KPDetector

logger = logging.getLogger(__name__)

ENGINES = ("auto", "eager", "tensorrt", "onnxruntime")


def create_engine(kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: torch.device,
                  precision: str, engine: str = "auto", image_size: int = 256) -> Engine:
    """Pick and start an engine; on failure fall back to eager with one warning. The choice is logged.

    Args:
        kp_detector: Loaded keypoint detector, already on ``device``, eval mode.
        generator: Loaded generator, already on ``device``, eval mode.
        device: The resolved device.
        precision: The resolved precision (``fp32``, ``fp16`` or ``bf16``).
        engine: ``auto``, ``eager``, ``tensorrt`` or ``onnxruntime``.
        image_size: Model input size.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if precision == "int8":
        return _int8_engine(kp_detector, generator, device=device, engine=engine, image_size=image_size)
    chosen = engine
    reason = "asked for"
    if engine == "auto":
        if device.type != "cuda":
            chosen, reason = "eager", f"auto on {device.type}: TensorRT needs CUDA; ONNX Runtime only when asked for"
        else:
            import importlib.util

            if importlib.util.find_spec("torch_tensorrt") is not None:
                chosen, reason = "tensorrt", "auto on CUDA: torch-tensorrt is installed"
            else:
                chosen, reason = "eager", "auto on CUDA: torch-tensorrt is not installed"
    try:
        if chosen == "tensorrt":
            from fomm_live.models.engines.tensorrt import TensorRTEngine  # raises EngineError off CUDA

            result: Engine = TensorRTEngine(kp_detector, generator, device=device, precision=precision,
                                            image_size=image_size, reason=reason)
        elif chosen == "onnxruntime":
            result = OnnxRuntimeEngine(kp_detector, generator, device=device, image_size=image_size, reason=reason)
            if precision != "fp32":
                logger.warning("onnxruntime engine runs float32; precision %s does not apply", precision)
        else:
            result = EagerEngine(kp_detector, generator, device=device, precision=precision, reason=reason)
    except EngineError as err:
        logger.warning("engine %s unavailable (%s); falling back to eager", chosen, err)
        result = EagerEngine(kp_detector, generator, device=device, precision=precision,
                             reason=f"fallback: {chosen} unavailable ({err})")
        result.checks.extend(getattr(err, "checks", []))  # e.g. TensorRT's failed build check
    extra = ""
    if isinstance(result, EagerEngine):
        extra = f", fast path {'on' if result.fast else 'off'}"
        if result.threads:
            extra += f", {result.threads} threads"
        if device.type == "cpu" and result.precision == "bf16":
            extra += f", native bf16: {cpu_bf16_support() or 'no (emulated, slow)'}"
        if device.type == "cuda":
            extra += f", Triton kernels {'on' if result.use_kernels else 'off'}"
        if result.compiled:
            extra += f", torch.compile{' with CUDA graphs' if result.cuda_graphs else ''} on"
        if result.precision != "fp32" or result.use_kernels or result.compiled:
            extra += "; each fast path checked against float32 eager on the first frame"
    logger.info("engine: %s on %s, %s (%s%s)", result.name, device, result.precision, result.reason, extra)
    return result


def _int8_engine(kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: torch.device, engine: str,
                 image_size: int) -> Engine:
    """The int8 engine (``engine="onnxruntime"`` asks for its ONNX Runtime runtime), else eager at the device's
    default precision with one warning."""
    runtime_name = "onnxruntime" if engine == "onnxruntime" else None
    try:
        result: Engine = Int8Engine(kp_detector, generator, device=device, image_size=image_size,
                                    runtime_name=runtime_name, reason="asked for")
    except EngineError as err:
        fallback = default_precision(device)
        logger.warning("int8 unavailable (%s); running eager %s", err, fallback)
        result = EagerEngine(kp_detector, generator, device=device, precision=fallback,
                             reason=f"fallback: int8 unavailable ({err})")
        logger.info("engine: %s on %s, %s (%s)", result.name, device, result.precision, result.reason)
        return result
    logger.info("engine: int8 on %s, %s runtime (%s); calibrated on the first photo (cached), checked against "
                "float32 eager on the first frame and on poses beyond the calibration, else eager %s; keypoint "
                "detector in float32 (%s)", device, result.runtime_label, result.reason, result.fallback_precision,
                f"{result.runtime.name}, checked on its first input" if result.runtime.float_keypoints else "PyTorch")
    return result
