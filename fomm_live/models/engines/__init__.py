"""Inference engines for the First Order Motion Model: what runs each frame, tuned for the device it runs on.

First Order Motion Model for Image Animation, Siarohin et al., NeurIPS 2019; upstream
github.com/AliaksandrSiarohin/first-order-model (MIT licence; the published weights carry that repository's terms).

An engine does three things for ``models.Animator``: keypoints of an image, ``encode`` a source once, and ``decode``
one batch of frames from the cached source. Engines (``Animator(engine=...)``):

- ``eager``: PyTorch. On the CPU: batch norms folded into the convolutions before them, channels_last, bf16 autocast
  with bf16 convolution weights where the CPU has native bf16 dot products (AVX512-BF16 / AMX), and one thread per
  physical core. On CUDA: fp16 (autocast, fp16 convolution weights), channels_last, the fused Triton kernels of
  ``kernels/`` (switch: ``FOMM_LIVE_KERNELS``). On either device, optional ``torch.compile`` of the per-frame decode
  (``FOMM_LIVE_COMPILE=1``), checked against eager on its first frame. ``FOMM_LIVE_FAST=0`` turns the folding,
  channels_last and reduced-precision weights off (the networks then run as loaded, still with the cached source and
  the chosen autocast). The keypoint detector always runs in float32, as loaded: folding and channels_last would save
  3 of its 16 ms per frame but move keypoints by up to 4e-6 (golden tiny_zero_order), which the warps amplify
  toward the 1e-4 parity tolerance of the frames.
- ``onnxruntime``: both per-frame networks exported to ONNX (``models.export``) and run by ONNX Runtime, float32;
  only when asked for.
- ``tensorrt``: torch-tensorrt engines (``models.engines.tensorrt``), CUDA only.
- ``int8`` (``precision="int8"``, any ``engine``; ``onnxruntime`` picks that runtime): the per-frame generator in
  8-bit integers on the CPU (``models.engines.int8``): calibrated on the user's photo and cached, OpenVINO + NNCF by
  default (ONNX Runtime and PyTorch PT2E as alternatives, ``FOMM_LIVE_INT8_RUNTIME``), its first frame and any pose
  beyond the calibration checked against float32 eager (``INT8_MIN_PSNR_DB``, ``INT8_DEFORMATION_ATOL``), else
  eager bf16 / fp32 for the rest of the run.
- ``auto``: on CUDA, TensorRT when torch-tensorrt is installed and its engines pass their self-check, else eager; on
  the CPU, eager. The choice and the reason are logged.

An engine that cannot start (missing package, failed export or self-check) falls back to eager with one warning.

Safe by construction: every fast path that can differ from float32 eager (the fused kernels, op by op; fp16 / bf16;
the compiled decode; CUDA graphs; ONNX Runtime; TensorRT) is compared with float32 eager (without kernels or compile)
on the first real source and driving frame before it is trusted. Float32 paths must come within ``FP32_ATOL``,
reduced precision within ``MIN_PSNR_DB``, a fused op within ``OP_TOLERANCES`` of its PyTorch op, and the dense
motion field (``deformation``, which every fast path returns for ``decode(..., with_deformation=True)``: photo
framing's detail transfer runs on the same checked path as the frame) within ``DEFORMATION_ATOL``. A failed import,
launch or compile, or a check outside its tolerance, means the next safer path for the rest of the run (TensorRT ->
eager; CUDA graphs -> compile -> eager; kernels off op by op; fp16 / bf16 -> fp32; ONNX Runtime -> eager), with one
warning line naming the path and the measured error. Each verdict is a ``CheckResult`` in ``Engine.checks``. The
checks cost once (the first frame), nothing afterwards. A device failure (out of memory, a device-side assert, a lost
GPU, a driver error) drops a fast path where that helps (out of memory in the compiled decode), else it is raised as
``DeviceError`` with a one-sentence message.

Status: the CPU paths are measured and tested (``benchmarks/RESULTS.md``). The CUDA paths (fp16, kernels, compile,
TensorRT) are written for PyTorch 2.13 but have not been run on a GPU yet.

What this room is for: everything that decides how the networks run each frame. What it may import: torch, numpy,
``kernels`` and the rest of ``models`` (never ``live``). Its rooms, each importing only those listed before it:

- ``base``: ``Engine``, ``EngineInfo``, ``EngineError``, ``DeviceError``, the tolerances, the check machinery
  (``CheckResult``, ``compare``), device-failure recognition, ``exact_float32``;
- ``cpu``: CPU flags, native bf16, threads, batch-norm folding, ``prepare_generator``;
- ``kernel_ops``: the fused kernels hooked into the decode, each op checked (``CheckedOp``, ``decode_with_kernels``);
- ``eager``: ``EagerEngine`` (precision, kernels, compile and CUDA graphs, with their checks and fallbacks);
- ``onnxruntime``: ``OnnxRuntimeEngine``; ``tensorrt``: ``TensorRTEngine`` and its cache;
- ``int8_runtimes``: the three int8 quantisers; ``int8_calibration``: poses, reach, cache; ``int8``: ``Int8Engine``;
- ``factory``: ``create_engine``.

Submodules import from each other's modules, never from this package's ``__init__``, which only re-exports.
"""

from fomm_live.models.engines.base import (
    CHECK_PATHS,
    DEFORMATION_ATOL,
    DTYPES,
    FP32_ATOL,
    MIN_PSNR_DB,
    OP_TOLERANCES,
    CheckResult,
    DeviceError,
    Engine,
    EngineError,
    EngineInfo,
    Tolerance,
    compare,
    device_error,
    device_failure,
    exact_float32,
    psnr,
)
from fomm_live.models.engines.cpu import (
    configure_threads,
    cpu_bf16_support,
    cpu_flags,
    default_precision,
    fold_batch_norm,
    physical_cores,
    prepare_generator,
)
from fomm_live.models.engines.eager import EagerEngine
from fomm_live.models.engines.factory import ENGINES, create_engine
from fomm_live.models.engines.int8 import (
    INT8_DEFORMATION_ATOL,
    INT8_MIN_PSNR_DB,
    Int8Engine,
    int8_instructions,
    int8_unavailable,
)
from fomm_live.models.engines.kernel_ops import CheckedOp, decode_with_kernels
from fomm_live.models.engines.onnxruntime import OnnxRuntimeEngine

__all__ = [
    "CHECK_PATHS",
    "DEFORMATION_ATOL",
    "DTYPES",
    "ENGINES",
    "FP32_ATOL",
    "INT8_DEFORMATION_ATOL",
    "INT8_MIN_PSNR_DB",
    "MIN_PSNR_DB",
    "OP_TOLERANCES",
    "CheckResult",
    "CheckedOp",
    "DeviceError",
    "EagerEngine",
    "Engine",
    "EngineError",
    "EngineInfo",
    "Int8Engine",
    "OnnxRuntimeEngine",
    "Tolerance",
    "compare",
    "configure_threads",
    "cpu_bf16_support",
    "cpu_flags",
    "create_engine",
    "decode_with_kernels",
    "default_precision",
    "device_error",
    "device_failure",
    "exact_float32",
    "fold_batch_norm",
    "int8_instructions",
    "int8_unavailable",
    "physical_cores",
    "prepare_generator",
    "psnr",
]
