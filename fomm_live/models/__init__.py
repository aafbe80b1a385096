"""The First Order Motion Model (Siarohin et al., NeurIPS 2019) core: networks, configs, checkpoints, animation.

What this room is for: the networks (one per file), configs and presets, checkpoint loading, export, the engines
(``models/engines/``) and the ``Animator`` API. What it may import: torch, numpy, PyYAML and ``kernels``; nothing
from ``live`` or ``benchmarks``. So it runs from a plain checkout on any machine with PyTorch.
"""

from fomm_live.models.animator import Animator, image_to_tensor, tensor_to_image, to_levels
from fomm_live.models.checkpoint import CheckpointError, read_checkpoint
from fomm_live.models.config import ConfigError, build_networks, load_config, preset_names
from fomm_live.models.keypoint_detector import Keypoints
from fomm_live.models.motion import MotionNormalizer, MotionOptions
from fomm_live.models.strength import Strengths

__all__ = [
    "Animator",
    "CheckpointError",
    "ConfigError",
    "Keypoints",
    "MotionNormalizer",
    "MotionOptions",
    "Strengths",
    "build_networks",
    "image_to_tensor",
    "load_config",
    "preset_names",
    "read_checkpoint",
    "tensor_to_image",
    "to_levels",
]
