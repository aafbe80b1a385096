"""The First Order Motion Model (Siarohin et al., NeurIPS 2019) core: networks, configs, checkpoints, animation.

What this room is for: the networks (one per file), configs and presets, checkpoint loading, export, the engines
(``models/engines/``) and the ``Animator`` API. What it may import: torch, numpy, PyYAML and ``kernels``; nothing
from ``live`` or ``benchmarks``. So it runs from a plain checkout on any machine with PyTorch.
"""

from models.animator import Animator, image_to_tensor, tensor_to_image, to_levels
from models.checkpoint import CheckpointError, read_checkpoint
from models.config import ConfigError, build_networks, load_config, preset_names
from models.keypoint_detector import Keypoints
from models.motion import MotionNormalizer, MotionOptions
from models.strength import Strengths

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
