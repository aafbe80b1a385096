"""Every environment switch of fomm-live, declared once and parsed by one function (``switch``).

The switches are for measuring and trouble-shooting; the command line's options are the normal way to choose.
Each ``Switch`` names its variable, the values it takes, its default and what it does; the README's table of
environment switches is checked against ``SWITCHES`` by ``tests/test_switches.py``.

Parsing: surrounding spaces and case are ignored; for a switch whose values include ``0`` and ``1``, ``true``,
``yes``, ``on`` mean ``1`` and ``false``, ``no``, ``off`` mean ``0``; unset, empty or ``auto`` give the default. A
value outside the declared ones is warned about once and the default is used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ON_WORDS = ("1", "true", "yes", "on")
OFF_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Switch:
    """One environment variable.

    Attributes:
        name: The variable (``FOMM_LIVE_...``).
        values: The values it takes, normalised; ``("N",)``: a positive whole number; ``("DIR",)``: a folder.
        default: What an unset variable means (None: decided by the code that reads it, as documented in
            ``meaning``).
        meaning: What it does, in one sentence or two (the README's wording).
    """

    name: str
    values: tuple[str, ...]
    default: str | None
    meaning: str


SWITCHES: dict[str, Switch] = {s.name: s for s in (
    Switch("FOMM_LIVE_COMPILE", ("0", "1", "cudagraphs"), "0",
           "`torch.compile` the per-frame generator (checked against eager on its first frame); `cudagraphs`: with "
           "CUDA graphs on CUDA. Off by default: on a 2-core AMD EPYC (Zen 5) it costs 7-20 s of start-up for about "
           "6% per frame"),
    Switch("FOMM_LIVE_KERNELS", ("0", "1", "auto"), "auto",
           "the fused Triton kernels: `auto` = on CUDA when Triton is installed"),
    Switch("FOMM_LIVE_FAST", ("0", "1"), "1",
           "`0`: run the networks as loaded (no folding, channels_last or reduced-precision weights)"),
    Switch("FOMM_LIVE_THREADS", ("N",), None,
           "CPU threads for the networks (default: one per physical core; `OMP_NUM_THREADS` wins)"),
    Switch("FOMM_LIVE_CACHE", ("DIR",), None,
           "the cache folder (demo clip, TensorRT engines, int8 calibrations); default: the user cache folder"),
    Switch("FOMM_LIVE_PIPELINING", ("0", "1", "auto"), "auto",
           "`1`: face tracking of the next frame overlaps the model's work on this one (two threads; with the "
           "landmark backend the face mesh of the next frame runs on the tracking thread too, beside this frame's "
           "warp and paste-back); `0`: one "
           "after the other in one thread; `auto`: two threads, except for the FOMM networks on the CPU, which keep "
           "every core busy themselves"),
    Switch("FOMM_LIVE_DEVICE_COMPOSE", ("0", "1"), "1",
           "`0`: fit the output frame on the host with OpenCV rather than on the GPU"),
    Switch("FOMM_LIVE_HELPER_THREADS", ("N",), None,
           "OpenCV's threads in `run` and `demo` (default: 1 with the FOMM networks on the CPU, so that they keep the "
           "cores; OpenCV's own, one per core, with the landmark backend)"),
    Switch("FOMM_LIVE_INT8", ("0", "1"), "1", "`0`: `--precision auto` never picks int8"),
    Switch("FOMM_LIVE_INT8_PINNING", ("0", "1"), None,
           "`0`: OpenVINO (int8 generator, keypoint detector) leaves its threads unpinned and lets them steal each "
           "other's share of a layer; `1`: pinned to the cores, fixed shares (OpenVINO's default). Unset: `0` in "
           "`run` and `demo` with in-betweens (more keyframes, a faster in-between stage), `1` elsewhere"),
    Switch("FOMM_LIVE_INT8_RUNTIME", ("openvino", "onnxruntime", "torch"), None,
           "the int8 runtime (default: the first installed, in that order)"),
)}

_warned: set[tuple[str, str]] = set()


def _reject(spec: Switch, raw: str, expected: str) -> str | None:
    if (spec.name, raw) not in _warned:
        _warned.add((spec.name, raw))
        logger.warning("%s=%r is not %s; using %s", spec.name, raw, expected, spec.default or "the default")
    return spec.default


def switch(name: str) -> str | None:
    """The value of the switch ``name`` from the environment, normalised (see the module docstring), or its default.

    Raises:
        KeyError: ``name`` is not a declared switch.
    """
    spec = SWITCHES[name]
    raw = os.environ.get(name, "")
    value = raw.strip()
    if spec.values == ("DIR",):
        return value or spec.default
    if spec.values == ("N",):
        if not value:
            return spec.default
        if value.isdigit() and int(value) > 0:
            return value
        return _reject(spec, raw, "a number")
    value = value.lower()
    if value in ("", "auto") and "auto" not in spec.values:
        return spec.default
    if value == "":
        return spec.default
    if "1" in spec.values and value in ON_WORDS:
        return "1"
    if "0" in spec.values and value in OFF_WORDS:
        return "0"
    if value in spec.values:
        return value
    return _reject(spec, raw, ", ".join(spec.values[:-1]) + " or " + spec.values[-1])
