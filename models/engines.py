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
- ``tensorrt``: torch-tensorrt engines (``models.tensorrt``), CUDA only.
- ``auto``: on CUDA, TensorRT when torch-tensorrt is installed and its engines pass their self-check, else eager; on
  the CPU, eager. The choice and the reason are logged.

An engine that cannot start (missing package, failed export or self-check) falls back to eager with one warning.

Status: the CPU paths are measured and tested (``benchmarks/RESULTS.md``). The CUDA paths (fp16, kernels, compile,
TensorRT) are written for PyTorch 2.13 but have not been run on a GPU yet.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from models.export import frame_inputs
from models.generator import OcclusionAwareGenerator, SourceState
from models.keypoint_detector import Keypoints, KPDetector

logger = logging.getLogger(__name__)

ENGINES = ("auto", "eager", "tensorrt", "onnxruntime")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FAST_ENV = "FOMM_LIVE_FAST"
COMPILE_ENV = "FOMM_LIVE_COMPILE"
THREADS_ENV = "FOMM_LIVE_THREADS"
# A reduced-precision path must stay within this PSNR of the float32 prediction (images in [0, 1]); a float32 path
# within this absolute error.
MIN_PSNR_DB = 40.0
FP32_ATOL = 1e-4

# Why ``--precision auto`` is bf16 on CPUs with native bf16 dot products (AVX512-BF16 or AMX), fp32 elsewhere:
# on a 2-core AMD EPYC (Zen 5, AVX512-BF16, no AMX; KVM), PyTorch 2.13, vox-256 size, random weights, the generator's
# per-frame decode took 106 ms in bf16 against 213 ms in float32 (p50 of 40 frames, both BN-folded, channels_last,
# cached source; `python -m benchmarks.model`, 2026-11-25, benchmarks/RESULTS.md), and the bf16 prediction stayed
# 59-64 dB PSNR from the float32 reference there (max abs error 0.002), and 54.5-57.9 dB from the original's outputs
# on the three golden tiny models (max abs error 0.027, i.e. up to 5 of 255 levels) -- above the 40 dB bar. Without
# native bf16 instructions bf16 is much slower than float32: the same machine with oneDNN held to AVX512_CORE
# (ONEDNN_MAX_CPU_ISA) decoded in 579 ms bf16 against 230 ms float32, held to AVX2 in 1690 ms against 377 ms; so
# those CPUs stay on float32.


class EngineError(RuntimeError):
    """An engine that cannot run here; ``create_engine`` catches it and falls back to eager."""


# --- CPU facts and tuning -------------------------------------------------------------------------------------------

def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (Linux); empty where that file does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_support() -> str | None:
    """The native bf16 instruction set of this CPU (``amx_bf16`` or ``avx512_bf16``), or None.

    Reads /proc/cpuinfo, then asks PyTorch's own probes (private helpers, used only when they exist) so that
    non-Linux systems are answered too.
    """
    flags = cpu_flags()
    for flag in ("amx_bf16", "avx512_bf16"):
        if flag in flags:
            return flag
    for probe, name in (("_is_amx_tile_supported", "amx_bf16"), ("_is_avx512_bf16_supported", "avx512_bf16")):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            with contextlib.suppress(RuntimeError):
                if check():
                    return name
    return None


def default_precision(device: torch.device) -> str:
    """``auto`` precision: fp16 on CUDA; bf16 on CPUs with native bf16 (see the measurements above), else fp32."""
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_bf16_support() is not None:
        return "bf16"
    return "fp32"


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def configure_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads: ``threads``, else ``FOMM_LIVE_THREADS``, else one per physical core.

    Leaves the setting alone when ``OMP_NUM_THREADS`` is set (the user chose). More threads than physical cores
    only adds contention to convolution-bound work; the capture and output threads of the live loop are mostly
    waiting on I/O.

    Returns:
        The thread count in effect.
    """
    if threads is None and os.environ.get(THREADS_ENV):
        try:
            threads = int(os.environ[THREADS_ENV])
        except ValueError:
            logger.warning("%s=%r is not a number; ignored", THREADS_ENV, os.environ[THREADS_ENV])
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = max(1, threads or physical_cores())
    if torch.get_num_threads() != threads:
        logger.info("CPU threads: %d (was %d)", threads, torch.get_num_threads())
        torch.set_num_threads(threads)
    return threads


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


def _fused_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """``norm(conv(x))`` as one convolution (eval-mode batch norm is a per-channel affine map); float64 maths."""
    with torch.no_grad():
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.double()
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias.double()
        bias = shift if conv.bias is None else conv.bias.double() * scale + shift
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                          padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bias)
    return fused


def fold_batch_norm(module: nn.Module) -> int:
    """Fold every batch norm that directly follows a convolution into it, in place (eval mode only).

    That is the norm of ``SameBlock2d``, ``DownBlock2d`` and ``UpBlock2d``, and ``norm2`` of ``ResBlock2d`` (its
    ``norm1`` acts on the residual input and stays). The result differs from the unfolded network by float32
    rounding only (6e-8 on the vox-256 prediction with random weights).

    Returns:
        How many batch norms were folded.
    """
    count = 0
    for block in module.modules():
        if isinstance(block, ResBlock2d) and isinstance(block.norm2, nn.BatchNorm2d):
            block.conv1, block.norm2 = _fused_conv(block.conv1, block.norm2), nn.Identity()
            count += 1
        elif isinstance(block, SameBlock2d | DownBlock2d | UpBlock2d) and isinstance(block.norm, nn.BatchNorm2d):
            block.conv, block.norm = _fused_conv(block.conv, block.norm), nn.Identity()
            count += 1
    return count


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "auto"):
        return default
    return value not in ("0", "false", "off", "no")


def prepare_generator(generator: OcclusionAwareGenerator, *, device: torch.device, precision: str
                      ) -> OcclusionAwareGenerator:
    """A tuned copy of ``generator`` for per-frame inference (the original is left untouched).

    Batch norms folded, channels_last, and for fp16 / bf16 the convolution weights stored in that dtype (autocast
    would otherwise cast every weight on every frame: ~10 ms of a 124 ms bf16 decode on the 2-core test CPU).
    Batch-norm parameters and the anti-alias blur stay float32.
    """
    fast = copy.deepcopy(generator).eval()
    folded = fold_batch_norm(fast)
    fast = fast.to(device=device, memory_format=torch.channels_last)
    if precision != "fp32":
        for module in fast.modules():
            if isinstance(module, nn.Conv2d):
                module.to(DTYPES[precision])
    logger.debug("generator prepared: %d batch norms folded, channels_last, %s convolutions", folded, precision)
    return fast


# --- engines --------------------------------------------------------------------------------------------------------

@dataclass
class EngineInfo:
    """What runs and why (logged, and shown by the benchmarks)."""

    name: str
    reason: str


class Engine:
    """Runs the networks for ``models.Animator``. Subclasses implement the three calls below."""

    name = "base"

    def __init__(self, *, device: torch.device, precision: str, reason: str = "") -> None:
        self.device = device
        self.precision = precision
        self.reason = reason

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(self.name, self.reason)

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        """B x C x H x W float32 in [0, 1] on the device -> keypoints (float32)."""
        raise NotImplementedError

    def encode(self, image: torch.Tensor) -> SourceState:
        """Encode a source image once."""
        raise NotImplementedError

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False
               ) -> dict[str, torch.Tensor]:
        """One batch of frames from the cached source; the generator's output dict."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the engine holds; safe to call twice."""


def decode_with_kernels(generator: OcclusionAwareGenerator, state: SourceState, kp_driving: Keypoints,
                        kp_source: Keypoints, *, use_kernel: bool | None = None) -> dict[str, torch.Tensor]:
    """``generator.decode(..., with_deformed=False)`` with its two per-pixel stages done by ``kernels/``: the dense
    motion input stage (gaussians + sparse motions + K+1 warps) by ``kernels.dense_motion_inputs``, the final warp
    times the occlusion map by ``kernels.deform_features``."""
    import kernels

    return generator.decode(state, kp_driving, kp_source, with_deformed=False,
                            inputs_op=functools.partial(kernels.dense_motion_inputs, use_kernel=use_kernel),
                            deform_op=functools.partial(kernels.deform_features, use_kernel=use_kernel))


class EagerEngine(Engine):
    """PyTorch eager execution with the device's fast path (see the module docstring).

    Args:
        kp_detector: The loaded keypoint detector (used as is, float32).
        generator: The loaded generator (copied and tuned unless ``FOMM_LIVE_FAST=0``).
        device: Where the networks already are.
        precision: ``fp32``, ``fp16`` or ``bf16`` (the generator's autocast dtype).
        fast: Fold batch norms, channels_last, reduced-precision weights (default: ``FOMM_LIVE_FAST``, else on).
        use_compile: ``torch.compile`` the per-frame decode (default: ``FOMM_LIVE_COMPILE``, else off). Off by
            default: on the 2-core test CPU it took 7-20 s to compile and saved 4-7% of the decode in the benchmark
            (fp32 214 -> 205 ms, bf16 106 -> 100 ms; benchmarks/RESULTS.md); on CUDA it has not been measured yet.
            ``FOMM_LIVE_COMPILE=cudagraphs`` (or ``cuda_graphs=True``) compiles with CUDA graphs on CUDA
            (``mode="reduce-overhead"``): one graph replay per frame instead of hundreds of kernel launches.
        cuda_graphs: Compile with CUDA graphs (CUDA only; implies ``use_compile``).
        use_kernels: The fused Triton kernels of ``kernels/`` in the decode (default: ``kernels.kernels_enabled``,
            i.e. on CUDA when Triton is installed). The compiled decode leaves them out (inductor fuses on its own).
        threads: CPU threads (default: one per physical core; see ``configure_threads``).
    """

    name = "eager"

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: torch.device,
                 precision: str, fast: bool | None = None, use_compile: bool | None = None,
                 cuda_graphs: bool | None = None, use_kernels: bool | None = None, threads: int | None = None,
                 reason: str = "") -> None:
        super().__init__(device=device, precision=precision, reason=reason)
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)} here, got {precision!r}")
        self.fast = _env_flag(FAST_ENV, True) if fast is None else fast
        self.kp_detector = kp_detector
        self.generator = prepare_generator(generator, device=device, precision=precision) if self.fast else generator
        self.memory_format = torch.channels_last if self.fast else torch.contiguous_format
        self.threads = configure_threads(threads) if device.type == "cpu" else None
        if device.type == "cuda":
            # Every frame has the same shapes, so cuDNN's one-off search for the fastest convolution algorithms (during
            # the first frames) pays for itself. Process-wide, like every cuDNN switch.
            torch.backends.cudnn.benchmark = True
        setting = os.environ.get(COMPILE_ENV, "").strip().lower()
        if cuda_graphs is None:
            cuda_graphs = setting == "cudagraphs" and use_compile is not False
        if use_compile is None:
            use_compile = _env_flag(COMPILE_ENV, False)
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        if cuda_graphs and not self.cuda_graphs:
            logger.warning("CUDA graphs need a CUDA device; compiling without them on %s", device.type)
        self.compiled = use_compile or cuda_graphs
        if use_kernels is None:
            import kernels

            use_kernels = kernels.kernels_enabled(device)  # auto: CUDA only; FOMM_LIVE_KERNELS=1 where Triton runs
        self.use_kernels = use_kernels and not self.compiled
        self._compiled = None
        if self.compiled:
            if self.cuda_graphs:
                self._compiled = torch.compile(self._decode_frames, dynamic=False, mode="reduce-overhead")
            else:
                # Freezing folds the (private, never modified) weights into the graph as constants.
                options = {"freezing": True} if device.type == "cpu" else None
                self._compiled = torch.compile(self._decode_frames, dynamic=False, options=options)
        self._compile_checked = False

    @property
    def compile_active(self) -> bool:
        """True while the compiled decode is in use (False when off, or after a failed compile or check)."""
        return self._compiled is not None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision])

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        with exact_float32(self.device):
            return self.kp_detector(image)

    def encode(self, image: torch.Tensor) -> SourceState:
        with exact_float32(self.device), self._autocast():
            return self.generator.encode_source(image.contiguous(memory_format=self.memory_format))

    def _decode_frames(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints
                       ) -> dict[str, torch.Tensor]:
        with self._autocast():
            if self.use_kernels:
                return decode_with_kernels(self.generator, state, kp_driving, kp_source, use_kernel=True)
            return self.generator.decode(state, kp_driving, kp_source, with_deformed=False)

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False
               ) -> dict[str, torch.Tensor]:
        # Full float32 convolutions on CUDA (outside any compiled code: it flips a process-wide switch); under fp16
        # autocast there are no float32 convolutions left for it to change.
        with exact_float32(self.device):
            if with_deformed:  # visualisation: the plain decode returns every intermediate
                with self._autocast():
                    return self.generator.decode(state, kp_driving, kp_source, with_deformed=True)
            if self._compiled is not None:
                return self._decode_compiled(state, kp_driving, kp_source)
            return self._decode_frames(state, kp_driving, kp_source)

    def _decode_compiled(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints
                         ) -> dict[str, torch.Tensor]:
        """The compiled decode, checked once against eager before it is trusted: float32 within ``FP32_ATOL``,
        reduced precision within ``MIN_PSNR_DB``. A failed check (or a failed compilation) means eager from then on."""
        try:
            if self.cuda_graphs:
                # A new step for CUDA graph trees: the previous frame's outputs may be overwritten from here on,
                # which is why the outputs are copied out below.
                torch.compiler.cudagraph_mark_step_begin()
            out = self._compiled(state, kp_driving, kp_source)
            if self.cuda_graphs:
                out = {k: v.clone() for k, v in out.items()}
        except Exception as err:  # compilation errors come in many types; all mean "run eager"
            logger.warning("torch.compile failed (%s: %s); using eager", type(err).__name__, str(err)[:160])
            self._compiled = None
            return self._decode_frames(state, kp_driving, kp_source)
        if not self._compile_checked:
            self._compile_checked = True
            want = self._decode_frames(state, kp_driving, kp_source)
            err = (out["prediction"].float() - want["prediction"].float()).abs().max().item()
            quality = psnr(out["prediction"], want["prediction"])
            ok = err <= FP32_ATOL if self.precision == "fp32" else quality >= MIN_PSNR_DB
            if not ok:
                logger.warning("torch.compile'd decode differs from eager (max abs %.1e, %.1f dB); using eager",
                               err, quality)
                self._compiled = None
                return want
            logger.info("torch.compile'd decode checked against eager: max abs %.1e, %.1f dB", err, quality)
        return out


def psnr(got: torch.Tensor, want: torch.Tensor) -> float:
    """PSNR in dB of ``got`` against ``want``, images in [0, 1] (inf when equal)."""
    mse = (got.double() - want.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


class OnnxRuntimeEngine(Engine):
    """Both per-frame networks exported to ONNX and run by ONNX Runtime (float32); the source is encoded by PyTorch.

    The export is checked against PyTorch (``models.export.ONNX_ATOL``) before the engine is used. Frames run one at a
    time (graphs are traced at batch 1). ``with_deformed`` (visualisation) runs PyTorch's decode.

    Raises:
        EngineError: onnxruntime or onnx is missing, or the export or its check failed.
    """

    name = "onnxruntime"

    def __init__(self, kp_detector: KPDetector, generator: OcclusionAwareGenerator, *, device: torch.device,
                 image_size: int, threads: int | None = None, reason: str = "") -> None:
        super().__init__(device=device, precision="fp32", reason=reason)
        import tempfile

        from models.export import ExportError, export_onnx_networks, onnx_session

        try:
            import onnxruntime as ort
        except ImportError as err:
            raise EngineError("onnxruntime is not installed (pip install onnxruntime)") from err
        self.kp_detector = kp_detector
        self.generator = generator
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device.type == "cuda":
            logger.warning("onnxruntime has no CUDA provider here; its graphs run on the CPU")
        threads = configure_threads(threads) if device.type == "cpu" else threads
        with tempfile.TemporaryDirectory(prefix="fomm-live-onnx-") as folder:
            try:
                paths = export_onnx_networks(kp_detector, generator, folder, image_size=image_size)
            except (ExportError, ImportError) as err:
                raise EngineError(f"ONNX export failed: {err}") from err
            self.sessions = {name: onnx_session(path, providers=providers, threads=threads)
                             for name, path in paths.items()}
        self.output_names = {name: [o.name for o in s.get_outputs()] for name, s in self.sessions.items()}
        self.input_names = {name: [i.name for i in s.get_inputs()] for name, s in self.sessions.items()}
        self._state_arrays: tuple[SourceState, dict[str, np.ndarray]] | None = None

    def _run(self, name: str, feeds: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        outs = self.sessions[name].run(None, {k: feeds[k] for k in self.input_names[name]})
        return {k: torch.from_numpy(v).to(self.device) for k, v in zip(self.output_names[name], outs, strict=True)}

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        frames = image.detach().float().cpu().numpy()
        outs = [self._run("kp_detector", {"image": frames[i:i + 1]}) for i in range(frames.shape[0])]
        value = torch.cat([o["kp_value"] for o in outs])
        jacobian = torch.cat([o["kp_jacobian"] for o in outs]) if "kp_jacobian" in outs[0] else None
        return Keypoints(value, jacobian)

    def encode(self, image: torch.Tensor) -> SourceState:
        with exact_float32(self.device):
            return self.generator.encode_source(image)

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False
               ) -> dict[str, torch.Tensor]:
        if with_deformed:
            with exact_float32(self.device):
                return self.generator.decode(state, kp_driving, kp_source, with_deformed=True)
        if self._state_arrays is None or self._state_arrays[0] is not state:
            self._state_arrays = (state, {"features": state.features.float().cpu().numpy(),
                                          "source_small": state.image_small.float().cpu().numpy()})
        arrays = self._state_arrays[1]
        per_frame = []
        for i in range(kp_driving.value.shape[0]):
            named = frame_inputs(arrays["features"], arrays["source_small"], kp_source, kp_driving, i)
            feeds = {k: v if isinstance(v, np.ndarray) else v.float().cpu().numpy() for k, v in named.items()}
            per_frame.append(self._run("generator", feeds))
        return {k: torch.cat([f[k] for f in per_frame]) for k in per_frame[0]}

    def close(self) -> None:
        self.sessions = {}


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
            from models.tensorrt import TensorRTEngine  # raises EngineError off CUDA

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
            extra += (f", torch.compile{' with CUDA graphs' if result.cuda_graphs else ''} on (checked against eager "
                      "on the first frame)")
    logger.info("engine: %s on %s, %s (%s%s)", result.name, device, result.precision, result.reason, extra)
    return result
