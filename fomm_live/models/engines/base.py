"""What every engine shares: the ``Engine`` interface, the tolerances, the one check machinery and device failures.

Every fast path that can differ from float32 eager (the fused kernels, fp16 / bf16, the compiled decode, CUDA graphs,
ONNX Runtime, TensorRT) is compared with float32 eager on its first real input before it is trusted. ``compare``
measures one output against its reference and returns a ``CheckResult`` (``compare_frame``: a decode's prediction
and its dense motion field ``deformation``, which every fast path returns for photo framing and which is checked
within ``DEFORMATION_ATOL``, in grid units); ``Engine.record`` keeps the verdict in
``Engine.checks`` and logs it: a pass at info level, a failure as one warning line that names the path, the measured
error and what runs instead.

GPU failures (out of memory, a device-side assert, a lost device, a driver error) are recognised by
``device_failure`` and turned by ``device_error`` into a ``DeviceError`` whose message is one sentence.

Imports torch, numpy and the model's data types only (nothing else of ``models.engines``), so every other room
may import it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
import torch

from fomm_live.common.errors import DeviceError  # re-exported: raised here, recognised by live without torch
from fomm_live.models.generator import SourceState
from fomm_live.models.keypoint_detector import Keypoints

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# A reduced-precision path must stay within this PSNR of the float32 prediction (images in [0, 1]); a float32 path
# within this absolute error. 1e-4 is the parity tolerance of the golden tests; 40 dB is an RMS error of 1% of the
# range, about 2.5 of 255 levels: invisible at webcam quality, while a wrong op (a swapped tap, a dropped channel)
# gives 15-30 dB.
MIN_PSNR_DB = 40.0
FP32_ATOL = 1e-4
# One fused kernel op against its reference op on the same (first real) inputs: |got - want| <= atol + rtol * |want|,
# by the dtype the op stores. Twice the test table of tests/test_kernels.py, which is the kernels' measured error
# there: reordered float32 arithmetic (~1e-6) for float32, and the rounding of the stored output (2^-11 relative for
# fp16, 2^-8 for bf16) for reduced precision. Encoder features reach ~10, hence the relative part. A wrong kernel is
# off by the size of the values themselves (1e-1 and more), far outside either bound.
OP_TOLERANCES = {
    torch.float32: (1e-4, 1e-4),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}
# The dense motion field ``deformation`` (grid_sample coordinates, [-1, 1] across the image, so one pixel of the
# 64 x 64 field of vox-256 is 2/64 = 0.031, one pixel of a 256 x 256 frame 0.0078), largest absolute difference from
# float32 eager, by the precision the path computes in. Measured on the three golden tiny models (relative and
# absolute motion, three frames each; CPU autocast, PyTorch 2.13): bf16 up to 6.8e-3, fp16 up to 1.1e-3 (vox-256
# size, random weights, three random motions: bf16 2.0e-3, fp16 3.3e-4; not yet measured on a GPU). The bounds
# are about three times that: bf16 2e-2 (0.6 of a field pixel), fp16 3e-3 (0.1 of a field pixel). Float32 paths get
# the frames' 1e-4, far above reordered float32 arithmetic (golden tiny: torch.compile 2.4e-7, ONNX Runtime 3.6e-7).
# A field with x and y swapped is off by 2.0 on the golden models; non-finite values always fail.
DEFORMATION_ATOL = {"fp32": FP32_ATOL, "fp16": 3e-3, "bf16": 2e-2}
CHECK_PATHS = ("kernel:dense_motion_inputs", "kernel:deform_features", "fp16", "bf16", "compile", "cuda_graphs",
               "onnxruntime", "tensorrt")


class EngineError(RuntimeError):
    """An engine that cannot run here; ``create_engine`` catches it and falls back to eager."""


# --- device failures ------------------------------------------------------------------------------------------------

# Substrings of PyTorch / CUDA / driver error messages -> what happened, in words. Order matters: the first match wins
# (an "unspecified launch failure" message also contains "CUDA error").
_DEVICE_FAILURES = (
    ("out of memory", "ran out of memory"),
    ("not enough memory", "ran out of memory"),
    ("device-side assert", "hit a device-side assert"),
    ("unspecified launch failure", "was lost (unspecified launch failure)"),
    ("illegal memory access", "hit an illegal memory access"),
    ("fallen off the bus", "was lost (fell off the bus)"),
    ("device lost", "was lost"),
    ("gpu is lost", "was lost"),
    ("no cuda gpus are available", "was lost (no CUDA GPU is visible any more)"),
    ("cuda driver", "reported a driver error"),
    ("driver version is insufficient", "reported a driver error"),
    ("cudnn_status", "reported a cuDNN error"),
    ("cublas_status", "reported a cuBLAS error"),
    ("cuda error", "reported a CUDA error"),
    ("cudaerror", "reported a CUDA error"),
)
OUT_OF_MEMORY = "ran out of memory"


def device_failure(err: BaseException) -> str | None:
    """What went wrong with the device, in words (``ran out of memory``, ``was lost``, ...), or None when ``err`` is
    not a device failure (a bug, a bad input, a failed compile)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return OUT_OF_MEMORY
    text = str(err).lower()
    for needle, what in _DEVICE_FAILURES:
        if needle in text:
            return what
    accelerator_error = getattr(torch, "AcceleratorError", None)  # PyTorch >= 2.8 raises it for CUDA errors
    if accelerator_error is not None and isinstance(err, accelerator_error):
        return "reported a CUDA error"
    return None


def free_device_memory(device: torch.device) -> None:
    """Give cached, unused blocks back to the driver (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        with contextlib.suppress(Exception):  # the device may be gone: freeing is best effort
            torch.cuda.empty_cache()


def device_error(err: BaseException, *, device: torch.device, doing: str) -> DeviceError | None:
    """A one-sentence ``DeviceError`` for a device failure (freeing the cache first when out of memory), or None when
    ``err`` is not one.

    Args:
        err: The exception raised by the device work.
        device: The engine's device.
        doing: What was running, e.g. ``decoding a frame``.
    """
    what = device_failure(err)
    if what is None:
        return None
    where = f"the GPU ({device})" if device.type == "cuda" else f"the {device.type} device"
    if what == OUT_OF_MEMORY:
        free_device_memory(device)
        advice = ("close other programs that use it, or run with --device cpu" if device.type == "cuda"
                  else "close other programs, or use a smaller model")
    else:
        advice = "restart the program; if it happens again, update the driver or run with --device cpu"
    first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return DeviceError(f"{where} {what} while {doing} ({first}); {advice}")


@contextlib.contextmanager
def exact_float32(device: torch.device):
    """cuDNN convolutions in full float32 inside this block on CUDA (PyTorch lets them use TF32 by default, whose
    10-bit mantissa would move keypoints by ~1e-3 and break the 1e-4 parity of float32 frames); no-op elsewhere.

    Uses the ``allow_tf32`` switch that every PyTorch 2 release has. It is process-wide: the engine runs its networks
    on one thread at a time, and nothing else in the program runs float32 CUDA convolutions.
    """
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before


# --- the check machinery --------------------------------------------------------------------------------------------

def psnr(got: torch.Tensor | np.ndarray, want: torch.Tensor | np.ndarray, *, peak: float = 1.0) -> float:
    """PSNR in dB of ``got`` against ``want`` (tensors or arrays alike), images in [0, ``peak``]: 1 for the models'
    outputs, 255 for 8-bit frames (inf when equal)."""
    if isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor):
        mse = (got.double() - want.double()).pow(2).mean().item()
    else:
        def as_float64(image: torch.Tensor | np.ndarray) -> np.ndarray:
            if isinstance(image, torch.Tensor):
                return image.detach().cpu().double().numpy()
            return np.asarray(image, dtype=np.float64)

        mse = float(np.mean((as_float64(got) - as_float64(want)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak * peak / mse))


@dataclass
class CheckResult:
    """The verdict of one fast path's check against float32 eager on its first real input.

    Attributes:
        path: Which fast path: ``kernel:dense_motion_inputs``, ``kernel:deform_features``, ``fp16``, ``bf16``,
            ``compile``, ``cuda_graphs``, ``onnxruntime`` or ``tensorrt``.
        ok: It passed and is in use.
        max_abs: Largest absolute difference from the reference (None when it failed to run).
        psnr_db: PSNR of an image output against the reference (None for intermediate ops, or when it failed to run).
        tolerance: The bar it had to meet, in words (``max abs <= 1e-04``, ``PSNR >= 40 dB``).
        detail: What was compared, or why it failed to run.
    """

    path: str
    ok: bool
    max_abs: float | None
    psnr_db: float | None
    tolerance: str
    detail: str = ""

    def measured(self) -> str:
        """The measured error in words, for log lines."""
        parts = []
        if self.max_abs is not None:
            parts.append(f"max abs {self.max_abs:.1e}")
        if self.psnr_db is not None:
            parts.append(f"{self.psnr_db:.1f} dB")
        return ", ".join(parts) if parts else "not measured"


@dataclass(frozen=True)
class Tolerance:
    """How close a fast path must come to its reference: an absolute bound (plus a relative part), or a PSNR bar."""

    atol: float | None = None
    rtol: float = 0.0
    min_psnr_db: float | None = None

    def describe(self) -> str:
        if self.min_psnr_db is not None:
            return f"PSNR >= {self.min_psnr_db:g} dB"
        if self.rtol:
            return f"|diff| <= {self.atol:.0e} + {self.rtol:.0e} * |reference|"
        return f"max abs <= {self.atol:.0e}"


def frame_tolerance(precision: str) -> Tolerance:
    """The bar for a whole frame (prediction in [0, 1]) of a path running at ``precision``."""
    return Tolerance(atol=FP32_ATOL) if precision == "fp32" else Tolerance(min_psnr_db=MIN_PSNR_DB)


def deformation_tolerance(precision: str) -> Tolerance:
    """The bar for the dense motion field (``deformation``, grid units) of a path running at ``precision``."""
    return Tolerance(atol=DEFORMATION_ATOL.get(precision, DEFORMATION_ATOL["fp16"]))


def op_tolerance(dtype: torch.dtype) -> Tolerance:
    """The bar for one fused op whose output is stored in ``dtype`` (see ``OP_TOLERANCES``)."""
    atol, rtol = OP_TOLERANCES.get(dtype, OP_TOLERANCES[torch.float32])
    return Tolerance(atol=atol, rtol=rtol)


def compare(path: str, got: torch.Tensor, want: torch.Tensor, tolerance: Tolerance, *, image: bool = True,
            detail: str = "") -> CheckResult:
    """Measure ``got`` against its reference ``want`` and judge it.

    Args:
        path: The fast path's name (see ``CheckResult.path``).
        got: The fast path's output.
        want: The float32 reference output (same shape).
        tolerance: The bar to meet.
        image: ``got`` is an image in [0, 1], so PSNR means something (else ``psnr_db`` is None).
        detail: What was compared, kept in the result.
    """
    if got.shape != want.shape:
        return CheckResult(path, False, None, None, tolerance.describe(),
                           f"{detail}: shape {tuple(got.shape)} != reference {tuple(want.shape)}".lstrip(": "))
    g, w = got.detach().double(), want.detach().double().to(got.device)
    diff = (g - w).abs()
    finite = bool(torch.isfinite(g).all())
    max_abs = float(diff.max().item()) if diff.numel() else 0.0
    quality = psnr(g, w) if image else None
    if not finite:
        ok = False
        detail = f"{detail}; non-finite values" if detail else "non-finite values"
    elif tolerance.min_psnr_db is not None:
        ok = quality is not None and quality >= tolerance.min_psnr_db
    else:
        ok = bool((diff <= tolerance.atol + tolerance.rtol * w.abs()).all())
    return CheckResult(path, ok, max_abs, quality, tolerance.describe(), detail)


def compare_frame(path: str, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], *, tolerance: Tolerance,
                  motion_tolerance: Tolerance) -> CheckResult:
    """Measure a fast path's decode against float32 eager: the ``prediction``, then the dense motion field
    ``deformation`` when the reference has one (a path that cannot give it fails).

    Args:
        path: The fast path's name (see ``CheckResult.path``).
        got: The fast path's decode output.
        want: Float32 eager's decode output on the same frame.
        tolerance: The bar for the prediction (``frame_tolerance``).
        motion_tolerance: The bar for the motion field (``deformation_tolerance``).

    Returns:
        The first check that failed; when both passed, the prediction's verdict with the field's error in ``detail``.
    """
    result = compare(path, got["prediction"], want["prediction"], tolerance, detail="prediction")
    if not result.ok or "deformation" not in want:
        return result
    if "deformation" not in got:
        return CheckResult(path, False, None, None, motion_tolerance.describe(), "deformation: not returned")
    motion = compare(path, got["deformation"], want["deformation"], motion_tolerance, image=False,
                     detail="deformation")
    if not motion.ok:
        return motion
    result.detail = f"prediction; deformation max abs {motion.max_abs:.1e} (needs {motion_tolerance.describe()})"
    return result


def failed_to_run(path: str, err: BaseException, tolerance: Tolerance, *, detail: str = "") -> CheckResult:
    """The verdict for a fast path that raised instead of giving an output."""
    first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
    reason = f"failed to run: {type(err).__name__}: {first}".rstrip(": ")
    return CheckResult(path, False, None, None, tolerance.describe(), f"{detail}; {reason}" if detail else reason)


# --- engines --------------------------------------------------------------------------------------------------------

@dataclass
class EngineInfo:
    """What runs and why (logged, and shown by the benchmarks)."""

    name: str
    reason: str


class Engine:
    """Runs the networks for ``models.Animator``. Subclasses implement the three calls below.

    ``checks`` holds the verdict of every fast path's first-real-input check (empty until the first real frame).
    """

    name = "base"

    def __init__(self, *, device: torch.device, precision: str, reason: str = "") -> None:
        self.device = device
        self.precision = precision
        self.reason = reason
        self.checks: list[CheckResult] = []

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(self.name, self.reason)

    def record(self, result: CheckResult, *, label: str, fallback: str) -> bool:
        """Keep a check's verdict and log it: info when it passed, one warning line when it did not.

        Args:
            result: The verdict.
            label: The path in words (``torch.compile'd decode``, ``fused kernel deform_features``).
            fallback: What runs instead when it failed (``eager``, ``the PyTorch op``).

        Returns:
            ``result.ok``.
        """
        self.checks.append(result)
        if result.ok:
            logger.info("%s checked against eager float32 on the first real input: %s (%s)", label,
                        result.measured(), result.tolerance)
            return True
        if result.max_abs is None and result.psnr_db is None:
            logger.warning("%s [%s] %s; using %s from now on", label, result.path, result.detail, fallback)
        else:
            logger.warning("%s [%s] differs from eager float32 (%s; needs %s%s); using %s from now on", label,
                           result.path, result.measured(), result.tolerance,
                           f"; {result.detail}" if result.detail else "", fallback)
        return False

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        """B x C x H x W float32 in [0, 1] on the device -> keypoints (float32)."""
        raise NotImplementedError

    def encode(self, image: torch.Tensor) -> SourceState:
        """Encode a source image once."""
        raise NotImplementedError

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False,
               with_deformation: bool = False) -> dict[str, torch.Tensor]:
        """One batch of frames from the cached source; the generator's output dict.

        ``with_deformation`` (the dense motion field, for photo framing's detail transfer) adds ``deformation``
        (B x h x w x 2, grid_sample coordinates) to ``prediction`` and ``occlusion_map`` (when the model estimates
        one), from the engine's own fast path (fused kernels, compiled decode, ONNX Runtime, TensorRT), whose
        first-frame check compares that field with float32 eager as well (``deformation_tolerance``).
        ``with_deformed`` (visualisation) needs an intermediate only the PyTorch decode returns: engines run it for
        that, at their own precision, without their fused, compiled or exported paths."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the engine holds; safe to call twice."""
