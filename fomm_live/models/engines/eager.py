"""The PyTorch eager engine with the device's fast paths, each checked on the first real frame before it is trusted.

Fast paths and what replaces each one that fails its check (one warning, for the rest of the run):

- reduced precision (``fp16`` / ``bf16``): the eager decode against float32 eager, PSNR >= ``MIN_PSNR_DB``;
  a failure means float32 (weights re-prepared, the source re-encoded);
- the fused kernels (``kernel:<op>``, ``models.engines.kernel_ops``): each op against its PyTorch op on the same
  inputs; a failure turns that op off;
- ``torch.compile`` (``compile``) and CUDA graphs (``cuda_graphs``): the compiled decode against float32 eager
  (``FP32_ATOL`` in float32, ``MIN_PSNR_DB`` in reduced precision); CUDA graphs fall back to a plain compile, a
  plain compile to eager. Running out of memory inside the compiled decode drops it the same way.

The reference of every check is float32 eager without kernels or compile: the generator as loaded, with the source
re-encoded in float32 once. The whole-frame checks (precision, compile, CUDA graphs) compare the dense motion field
``deformation`` too (``base.deformation_tolerance``): every fast path computes it on every frame (the dense motion
network forms it anyway), so ``decode(..., with_deformation=True)`` runs the same checked path and one compiled graph
serves both. Only ``with_deformed`` (visualisation) runs the plain decode. A device failure with no fallback left is
raised as ``DeviceError`` (one sentence).

Imports ``models.engines.base``, ``.cpu`` and ``.kernel_ops``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch

from fomm_live.common.switches import switch
from fomm_live.models.engines.base import (
    DTYPES,
    OUT_OF_MEMORY,
    DeviceError,
    Engine,
    compare_frame,
    deformation_tolerance,
    device_error,
    device_failure,
    exact_float32,
    failed_to_run,
    frame_tolerance,
    free_device_memory,
)
from fomm_live.models.engines.cpu import configure_threads, prepare_generator
from fomm_live.models.engines.kernel_ops import checked_kernel_ops, decode_with_kernels
from fomm_live.models.generator import OcclusionAwareGenerator, SourceState
from fomm_live.models.keypoint_detector import Keypoints, KPDetector

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def device_guard(device: torch.device, doing: str):
    """Turn a device failure raised inside the block into a one-sentence ``DeviceError``; other errors pass."""
    try:
        yield
    except DeviceError:
        raise
    except Exception as err:
        failure = device_error(err, device=device, doing=doing)
        if failure is None:
            raise
        raise failure from err


class EagerEngine(Engine):
    """PyTorch eager execution with the device's fast path (see the module docstring and ``models.engines``).

    Args:
        kp_detector: The loaded keypoint detector (used as is, float32).
        generator: The loaded generator (copied and tuned unless ``FOMM_LIVE_FAST=0``); also the float32 reference
            every fast path is checked against.
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
            i.e. on CUDA when Triton is installed). The compiled decode leaves them out (inductor fuses on its own);
            they come back if the compiled decode is dropped.
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
        self.fast = switch("FOMM_LIVE_FAST") == "1" if fast is None else fast
        self.kp_detector = kp_detector
        self.reference_generator = generator  # as loaded, float32: the reference of every check
        self.generator = prepare_generator(generator, device=device, precision=precision) if self.fast else generator
        self.memory_format = torch.channels_last if self.fast else torch.contiguous_format
        self.threads = configure_threads(threads) if device.type == "cpu" else None
        if device.type == "cuda":
            # Every frame has the same shapes, so cuDNN's one-off search for the fastest convolution algorithms (during
            # the first frames) pays for itself. Process-wide, like every cuDNN switch.
            torch.backends.cudnn.benchmark = True
        setting = switch("FOMM_LIVE_COMPILE")
        if cuda_graphs is None:
            cuda_graphs = setting == "cudagraphs" and use_compile is not False
        if use_compile is None:
            use_compile = setting != "0"
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        if cuda_graphs and not self.cuda_graphs:
            logger.warning("CUDA graphs need a CUDA device; compiling without them on %s", device.type)
        self.compiled = use_compile or cuda_graphs
        if use_kernels is None:
            from fomm_live import kernels
            use_kernels = kernels.kernels_enabled(device)  # auto: CUDA only; FOMM_LIVE_KERNELS=1 where Triton runs
        self._kernels_wanted = use_kernels
        self.use_kernels = use_kernels and not self.compiled
        self._ops = checked_kernel_ops(self.generator, engine=self)
        self._compiled: Callable | None = self._compile() if self.compiled else None
        self._compile_checked = False
        self._precision_checked = precision == "fp32"
        self._generation = 0  # bumped when the precision falls back: states encoded before are re-encoded
        self._encoded: tuple[SourceState, int] | None = None  # the last state this engine encoded, and its generation
        self._reencoded: tuple[SourceState, SourceState] | None = None  # (stale state, its re-encoding)
        self._reference_state: tuple[torch.Tensor, SourceState] | None = None  # (source image, float32 encoding)
        self._frame_reference: tuple[tuple, dict[str, torch.Tensor]] | None = None

    @property
    def compile_active(self) -> bool:
        """True while the compiled decode is in use (False when off, or after a failed compile or check)."""
        return self._compiled is not None

    def _compile(self) -> Callable:
        """The compiled decode (with CUDA graphs when ``self.cuda_graphs``). ``torch.compile`` is lazy; if even the
        call fails, the returned function raises that error on the first frame, where the fallback happens."""
        try:
            if self.cuda_graphs:
                return torch.compile(self._decode_frames, dynamic=False, mode="reduce-overhead")
            # Freezing folds the (private, never modified) weights into the graph as constants.
            options = {"freezing": True} if self.device.type == "cpu" else None
            return torch.compile(self._decode_frames, dynamic=False, options=options)
        except Exception as err:  # compile errors come in many types; all mean "run eager"
            def failed(*args, error: Exception = err):
                raise error

            return failed

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=DTYPES[self.precision])

    def keypoints(self, image: torch.Tensor) -> Keypoints:
        with device_guard(self.device, "finding keypoints"), exact_float32(self.device):
            return self.kp_detector(image)

    def encode(self, image: torch.Tensor) -> SourceState:
        with device_guard(self.device, "encoding the source"), exact_float32(self.device), self._autocast():
            state = self.generator.encode_source(image.contiguous(memory_format=self.memory_format))
        self._encoded = (state, self._generation)
        return state

    def _state(self, state: SourceState) -> SourceState:
        """``state`` as the current generator would encode it (re-encoded once after a precision fallback)."""
        if self._generation == 0 or (self._encoded is not None and self._encoded[0] is state
                                     and self._encoded[1] == self._generation):
            return state
        if self._reencoded is None or self._reencoded[0] is not state:
            self._reencoded = (state, self.encode(state.image))
        return self._reencoded[1]

    def _reference(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints) -> dict[str, torch.Tensor]:
        """Float32 eager without kernels or compile on this frame: the generator as loaded, the source re-encoded
        in float32 (once per source); computed at most once per frame."""
        key = (state.image, kp_driving, kp_source)
        if self._frame_reference is not None and all(a is b for a, b in zip(self._frame_reference[0], key,
                                                                             strict=True)):
            return self._frame_reference[1]
        if self._reference_state is None or self._reference_state[0] is not state.image:
            self._reference_state = (state.image, self.reference_generator.encode_source(state.image.contiguous()))
        out = self.reference_generator.decode(self._reference_state[1], kp_driving, kp_source, with_deformed=False,
                                              with_deformation=True)
        self._frame_reference = (key, out)
        return out

    def _decode_frames(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints
                       ) -> dict[str, torch.Tensor]:
        """The decode every fast path runs (and ``torch.compile`` compiles): always with the motion field
        ``deformation``, which the dense motion network computes anyway, so one compiled graph serves frames with and
        without it (``decode`` drops it when not asked for)."""
        with self._autocast():
            if self.use_kernels:
                return decode_with_kernels(self.generator, state, kp_driving, kp_source, ops=self._ops,
                                           with_deformation=True)
            return self.generator.decode(state, kp_driving, kp_source, with_deformed=False, with_deformation=True)

    def decode(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints, *, with_deformed: bool = False,
               with_deformation: bool = False) -> dict[str, torch.Tensor]:
        # Full float32 convolutions on CUDA (outside any compiled code: it flips a process-wide switch); under fp16
        # autocast there are no float32 convolutions left for it to change.
        with device_guard(self.device, "decoding a frame"), exact_float32(self.device):
            try:
                if with_deformed:  # visualisation: only the plain decode returns the warped source image
                    with self._autocast():
                        return self.generator.decode(self._state(state), kp_driving, kp_source,
                                                     with_deformed=True, with_deformation=with_deformation)
                out = self._decode_checked(state, kp_driving, kp_source)
                if not with_deformation:  # computed anyway; returned only when asked for
                    out = {k: v for k, v in out.items() if k != "deformation"}
                return out
            finally:
                self._frame_reference = None

    def _decode_checked(self, given: SourceState, kp_driving: Keypoints, kp_source: Keypoints
                        ) -> dict[str, torch.Tensor]:
        """The fastest path that has passed (or now passes) its check; see the module docstring for the order."""
        if not self._precision_checked:
            out = self._check_precision(self._state(given), kp_driving, kp_source)
            if out is not None and self._compiled is None and not self.use_kernels:
                return out  # plain reduced-precision eager is what runs: its checked output is this frame's
        state = self._state(given)
        while self._compiled is not None:  # CUDA graphs -> plain compile -> eager
            out = self._decode_compiled(state, kp_driving, kp_source)
            if out is not None:
                return out
        return self._decode_frames(state, kp_driving, kp_source)

    def _check_precision(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints
                         ) -> dict[str, torch.Tensor] | None:
        """The reduced-precision eager decode (prediction and motion field) against float32 eager; on failure switch
        to float32 (None)."""
        self._precision_checked = True
        path, tolerance = self.precision, frame_tolerance(self.precision)
        out = None
        try:
            with self._autocast():
                out = self.generator.decode(state, kp_driving, kp_source, with_deformed=False, with_deformation=True)
            result = compare_frame(path, out, self._reference(state, kp_driving, kp_source), tolerance=tolerance,
                                   motion_tolerance=deformation_tolerance(self.precision))
        except Exception as err:  # an op without a reduced-precision implementation, say: float32 it is
            if device_failure(err) is not None:
                raise  # float32 would need more of the device, not less
            result = failed_to_run(path, err, tolerance)
        if self.record(result, label=f"{path} decode", fallback="float32"):
            return out
        self.precision = "fp32"
        self.generator = (prepare_generator(self.reference_generator, device=self.device, precision="fp32")
                          if self.fast else self.reference_generator)
        self._generation += 1
        if self._compiled is not None:  # recompiled around the float32 network, checked again
            self._compiled, self._compile_checked = self._compile(), False
        return None

    def _drop_compiled(self) -> None:
        """CUDA graphs -> a plain compile (checked on its own first run); a plain compile -> eager (with the kernels,
        if they were asked for)."""
        self._compile_checked = False
        if self.cuda_graphs:
            self.cuda_graphs = False
            self._compiled = self._compile()
            return
        self._compiled = None
        self.use_kernels = self._kernels_wanted

    def _decode_compiled(self, state: SourceState, kp_driving: Keypoints, kp_source: Keypoints
                         ) -> dict[str, torch.Tensor] | None:
        """The compiled decode, checked once against float32 eager before it is trusted: float32 within
        ``FP32_ATOL``, reduced precision within ``MIN_PSNR_DB``, and its motion field within
        ``deformation_tolerance``. None when it failed (to compile, to run, to match, or ran out of memory): it has
        then been dropped one step down the chain."""
        path = "cuda_graphs" if self.cuda_graphs else "compile"
        label = "torch.compile'd decode" + (" with CUDA graphs" if self.cuda_graphs else "")
        fallback = "torch.compile without CUDA graphs" if self.cuda_graphs else "eager"
        tolerance = frame_tolerance(self.precision)
        try:
            if self.cuda_graphs:
                # A new step for CUDA graph trees: the previous frame's outputs may be overwritten from here on,
                # which is why the outputs are copied out below.
                torch.compiler.cudagraph_mark_step_begin()
            out = self._compiled(state, kp_driving, kp_source)
            if self.cuda_graphs:
                out = {k: v.clone() for k, v in out.items()}
        except Exception as err:  # compilation errors come in many types; all mean "one step down"
            what = device_failure(err)
            if what is not None and what != OUT_OF_MEMORY:
                raise  # a lost device or a driver error: no fallback helps
            if what == OUT_OF_MEMORY:
                free_device_memory(self.device)  # the graphs' private memory pool goes with them
            self.record(failed_to_run(path, err, tolerance), label=label, fallback=fallback)
            self._drop_compiled()
            return None
        if not self._compile_checked:
            want = self._reference(state, kp_driving, kp_source)
            result = compare_frame(path, out, want, tolerance=tolerance,
                                   motion_tolerance=deformation_tolerance(self.precision))
            if not self.record(result, label=label, fallback=fallback):
                self._drop_compiled()
                return None
            self._compile_checked = True
        return out
