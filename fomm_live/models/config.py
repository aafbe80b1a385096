"""Model configs: the original First Order Motion Model YAML format, and the published configs as named presets.

A config is the original's nesting (``model_params`` -> ``common_params``, ``kp_detector_params``,
``generator_params`` -> ``dense_motion_params``), so a real ``vox-256.yaml`` loads as it is. Sections the model does
not use (``dataset_params``, ``train_params``, ``animate_params``, ``discriminator_params``) are ignored.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from fomm_live.models.generator import OcclusionAwareGenerator
from fomm_live.models.keypoint_detector import KPDetector
from fomm_live.models.presets import PRESETS

DEFAULT_PRESET = "vox-256"
# The published configs all train and run at 256x256 (dataset_params.frame_shape); the networks are
# fully convolutional, but the checkpoints only make sense at the size they were trained at.
DEFAULT_IMAGE_SIZE = 256
_MAX_CONFIG_BYTES = 1 << 20  # a real config is ~2 KB; refuse to parse anything huge

_KP_KEYS = {"block_expansion", "max_features", "num_blocks", "temperature", "scale_factor", "single_jacobian_map",
            "pad"}
_GEN_KEYS = {"block_expansion", "max_features", "num_down_blocks", "num_bottleneck_blocks", "estimate_occlusion_map",
             "dense_motion_params"}
_DENSE_KEYS = {"block_expansion", "max_features", "num_blocks", "scale_factor"}
_COMMON_KEYS = {"num_kp", "num_channels", "estimate_jacobian"}


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line meant for the user."""


def preset_names() -> list[str]:
    return sorted(PRESETS)


def load_config(spec: str | os.PathLike | dict) -> dict:
    """Load a config by preset name, from an original-format YAML file, or validate a dict.

    Args:
        spec: A preset name (``vox-256``, ...), a path to a YAML file, or an already parsed dict.

    Returns:
        A validated ``{"model_params": {...}}`` dict (a copy; callers may modify it).

    Raises:
        ConfigError: unknown preset, unreadable file, or YAML that is not a FOMM config.
    """
    if isinstance(spec, dict):
        return validate_config(copy.deepcopy(spec), source="the given config")
    name = str(spec)
    if name in PRESETS:
        return copy.deepcopy(PRESETS[name])
    path = Path(name)
    if not path.is_file():
        if path.suffix.lower() in {".yaml", ".yml"} or os.sep in name:
            raise ConfigError(f"config file not found: {name}")
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{name} is {path.stat().st_size} bytes, too large to be a model config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{name} is not valid YAML ({type(err).__name__})") from err
    return validate_config(data, source=name)


def validate_config(data: object, *, source: str) -> dict:
    """Check that ``data`` has the original config's shape; return its ``model_params`` part."""
    if not isinstance(data, dict) or not isinstance(data.get("model_params"), dict):
        raise ConfigError(f"{source} is not a First Order Motion Model config (no model_params section)")
    params = data["model_params"]
    for section, allowed in (("common_params", _COMMON_KEYS), ("kp_detector_params", _KP_KEYS),
                             ("generator_params", _GEN_KEYS)):
        block = params.get(section)
        if not isinstance(block, dict):
            raise ConfigError(f"{source}: model_params.{section} is missing")
        unknown = set(block) - allowed
        if unknown:
            raise ConfigError(f"{source}: unknown keys in model_params.{section}: {', '.join(sorted(unknown))}")
    dense = params["generator_params"].get("dense_motion_params")
    if dense is not None:
        if not isinstance(dense, dict):
            raise ConfigError(f"{source}: dense_motion_params must be a mapping")
        unknown = set(dense) - _DENSE_KEYS
        if unknown:
            raise ConfigError(f"{source}: unknown keys in dense_motion_params: {', '.join(sorted(unknown))}")
    for key in ("num_kp", "num_channels"):
        if not isinstance(params["common_params"].get(key), int) or params["common_params"][key] < 1:
            raise ConfigError(f"{source}: model_params.common_params.{key} must be a positive integer")
    sizes = [("kp_detector_params", params["kp_detector_params"]), ("generator_params", params["generator_params"]),
             ("dense_motion_params", dense or {})]
    for section, block in sizes:
        for key in ("block_expansion", "max_features", "num_blocks", "num_down_blocks", "num_bottleneck_blocks"):
            value = block.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0
                                      or (value == 0 and key != "num_bottleneck_blocks")):
                raise ConfigError(f"{source}: {section}.{key} must be a positive integer, got {value!r}")
    return {"model_params": {k: params[k] for k in ("common_params", "kp_detector_params", "generator_params")}}


def build_networks(config: dict) -> tuple[KPDetector, OcclusionAwareGenerator]:
    """Instantiate the keypoint detector and generator of a validated config (random weights, eval mode)."""
    params = config["model_params"]
    common = params["common_params"]
    try:
        kp_detector = KPDetector(**params["kp_detector_params"], **common)
        generator = OcclusionAwareGenerator(**params["generator_params"], **common)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"config cannot build the model ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
                          ) from err
    return kp_detector.eval(), generator.eval()
