"""Checkpoint loading for First Order Motion Model weights.

Checkpoints come from strangers, so there is exactly one way in: ``torch.load(..., weights_only=True)``, which
unpickles tensors and plain containers only and refuses anything that would import or call code. There is no
fallback to full unpickling, whatever the error.

Accepted: the original's dict (``generator`` and ``kp_detector`` state dicts; ``epoch``, ``discriminator`` and
optimiser entries are ignored), in PyTorch's zip format or the older non-zip format of 2019-2020 checkpoints, with or
without ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes. Loading is strict; a mismatch names the
first differing keys and shapes and suggests the preset whose architecture matches the file.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from fomm_live.models.config import DEFAULT_PRESET, build_networks, preset_names
from fomm_live.models.generator import OcclusionAwareGenerator
from fomm_live.models.keypoint_detector import KPDetector
from fomm_live.models.presets import PRESETS

logger = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first byte of a pickle (protocol >= 2), how legacy torch.save files start
_PREFIXES = ("module.", "_orig_mod.")
_NETWORKS = ("generator", "kp_detector")
_MAX_LISTED = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line meant for the user."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Read the generator and keypoint detector state dicts of a checkpoint file, safely.

    Returns:
        ``{"generator": state_dict, "kp_detector": state_dict}`` with prefixes stripped, tensors on the CPU.

    Raises:
        CheckpointError: missing file, not a checkpoint, truncated, or a pickle that would run code (refused).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint is not a file: {path}")
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty, not a checkpoint")
    if head != _ZIP_MAGIC and head[0] != _PICKLE_PROTO:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        if "GLOBAL" in message:
            detail = message[message.find("GLOBAL"):].split(".  ")[0].split("\n")[0]
            raise CheckpointError(f"{path} was refused: its pickle would load code ({detail}); "
                                  "a model checkpoint holds only tensors, so this file is unsafe or not a checkpoint"
                                  ) from err
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (it does not unpickle as one)") from err
    except (EOFError, RuntimeError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({_first_sentence(err)})") from err
    except OSError as err:
        if head == _ZIP_MAGIC:  # the zip reader reports some cut-short archives as an OS error
            raise CheckpointError(f"{path} is truncated or corrupt ({_first_sentence(err)})") from err
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(err).__name__})") from err
    except (KeyError, ValueError, IndexError, TypeError, AttributeError, struct.error, MemoryError) as err:
        # The weights-only unpickler meets damaged bytes with whatever error the damage triggers (a cut-short
        # legacy file gave struct.error under fuzzing); none of them leaves anything loaded or run.
        raise CheckpointError(f"{path} is truncated, corrupt or not a PyTorch checkpoint ({type(err).__name__})"
                              ) from err
    return extract_state_dicts(data, source=str(path))


def _first_sentence(err: BaseException, limit: int = 120) -> str:
    """The first sentence of an error message, cut at a word boundary."""
    text = (str(err).strip().splitlines() or ["unexpected end of file"])[0].split(". ")[0]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + "..."


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` / ``_orig_mod.`` prefixes (in any order, any number) from every key."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    changed = True
        out[key] = value
    return out


def extract_state_dicts(data: object, *, source: str) -> dict[str, dict[str, torch.Tensor]]:
    """Pick the two networks' state dicts out of a loaded checkpoint object."""
    if not isinstance(data, Mapping) or not all(isinstance(data.get(n), Mapping) for n in _NETWORKS):
        found = ", ".join(sorted(map(str, data))[:8]) if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointError(f"{source} is not a First Order Motion Model checkpoint: expected 'generator' and "
                              f"'kp_detector' entries, found {found or 'nothing'}")
    out = {}
    for name in _NETWORKS:
        state = strip_prefixes(data[name])
        bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{source}: {name} entry {bad[0]!r} is not a tensor")
        out[name] = state
    return out


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _preset_shapes() -> dict[str, dict[str, dict[str, tuple[int, ...]]]]:
    """Expected key -> shape of every preset, built on the meta device (no memory for weights)."""
    out = {}
    with torch.device("meta"):
        for name in preset_names():
            kp, gen = build_networks(PRESETS[name])
            out[name] = {"kp_detector": _shapes(kp.state_dict()), "generator": _shapes(gen.state_dict())}
    return out


def matching_presets(states: Mapping[str, Mapping[str, torch.Tensor]]) -> list[str]:
    """Presets whose architecture has exactly the keys and shapes of ``states``."""
    got = {n: _shapes(states[n]) for n in _NETWORKS}
    found = [name for name, want in _preset_shapes().items() if all(want[n] == got[n] for n in _NETWORKS)]
    return sorted(found, key=lambda name: (name != DEFAULT_PRESET, name))  # the common vox-256 first


def describe_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """Human-readable summary of missing/unexpected keys and shape differences ('' when they match)."""
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    parts = []
    # BatchNorm counters are absent from checkpoints saved before PyTorch 0.4.1 and unused at inference.
    missing = [k for k in want if k not in got and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in got if k not in want]
    differ = [f"{k} {list(got[k])} != expected {list(want[k])}" for k in want if k in got and got[k] != want[k]]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", differ)):
        if items:
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            parts.append(f"{label}: {', '.join(items[:_MAX_LISTED])}{more}")
    return "; ".join(parts)


def load_into(kp_detector: KPDetector, generator: OcclusionAwareGenerator,
              states: Mapping[str, Mapping[str, torch.Tensor]], *, source: str, config_name: str = "the config"
              ) -> None:
    """Load state dicts strictly into the two networks, or explain in one line why they do not fit."""
    for name, module in (("kp_detector", kp_detector), ("generator", generator)):
        problem = describe_mismatch(module, states[name])
        if problem:
            matches = [m for m in matching_presets(states) if m != config_name]
            hint = (f"; it matches preset {' / '.join(matches)} (use --config {matches[0]})" if matches
                    else "; no built-in preset matches it, pass its own config YAML with --config")
            raise CheckpointError(f"{source} does not fit {config_name} ({name} {problem}){hint}")
    for name, module in (("kp_detector", kp_detector), ("generator", generator)):
        state = dict(states[name])
        # Checkpoints saved before PyTorch 0.4.1 have no BatchNorm counters; they are unused at inference.
        for key, value in module.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in state:
                state[key] = torch.zeros_like(value)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as err:  # a dtype or value the checks above do not foresee
            raise CheckpointError(f"{source} does not load into {config_name} ({name}: "
                                  f"{str(err).strip().splitlines()[-1][:160]})") from err
    logger.debug("loaded %s (%s)", source, config_name)
