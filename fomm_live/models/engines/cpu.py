"""CPU facts and network tuning for the eager engine: CPU flags, native bf16, threads, batch-norm folding, and the
tuned copy of the generator (``prepare_generator``).

Imports ``models.engines.base`` and the model's blocks only.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from pathlib import Path

import torch
from torch import nn

from fomm_live.common.switches import switch
from fomm_live.models.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from fomm_live.models.engines.base import DTYPES
from fomm_live.models.generator import OcclusionAwareGenerator

logger = logging.getLogger(__name__)

# Why ``--precision auto`` is bf16 on CPUs with native bf16 dot products (AVX512-BF16 or AMX), fp32 elsewhere:
# on a 2-core AMD EPYC (Zen 5, AVX512-BF16, no AMX; KVM), PyTorch 2.13, vox-256 size, random weights, the generator's
# per-frame decode took 106 ms in bf16 against 213 ms in float32 (p50 of 40 frames, both BN-folded, channels_last,
# cached source; `python -m fomm_live.benchmarks.model`, 2026-11-25, RESULTS.md), and the bf16 prediction stayed
# 59-64 dB PSNR from the float32 reference there (max abs error 0.002), and 54.5-57.9 dB from the original's outputs
# on the three golden tiny models (max abs error 0.027, i.e. up to 5 of 255 levels) -- above the 40 dB bar. Without
# native bf16 instructions bf16 is much slower than float32: the same machine with oneDNN held to AVX512_CORE
# (ONEDNN_MAX_CPU_ISA) decoded in 579 ms bf16 against 230 ms float32, held to AVX2 in 1690 ms against 377 ms; so
# those CPUs stay on float32.


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
    if threads is None and (setting := switch("FOMM_LIVE_THREADS")) is not None:
        threads = int(setting)
    if threads is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = max(1, threads or physical_cores())
    if torch.get_num_threads() != threads:
        logger.info("CPU threads: %d (was %d)", threads, torch.get_num_threads())
        torch.set_num_threads(threads)
    return threads


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
