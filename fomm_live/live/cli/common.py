"""Options shared by several commands, spelled and explained the same everywhere, and the runtime options built
from them (``live.options``): below the command line nothing sees argparse."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fomm_live.live.backends import MAX_STRENGTH, MIN_STRENGTH
from fomm_live.live.errors import UserError
from fomm_live.live.options import CHECKPOINT_HELP, CROP_TRACKING, DEFAULT_CROP_TRACKING, ModelOptions, RemoteOptions

# The generator precisions (models.animator.PRECISIONS, listed here so that --help needs no torch import).
PRECISIONS = ["auto", "fp32", "fp16", "bf16", "int8"]
INT8_ON_CUDA = "--precision int8 is for the CPU; on a CUDA GPU use fp16 (or auto)"
# The presets of models.presets, listed here so that --help and the check of --config need no torch import (a test
# keeps the two lists equal).
PRESET_NAMES = ("vox-256", "vox-adv-256", "taichi-256", "taichi-adv-256", "mgif-256", "bair-256", "fashion-256",
                "nemo-256")
PRESET_HELP = ", ".join(PRESET_NAMES)


def parse_size(text: str) -> tuple[int, int]:
    """``640x480`` -> (640, 480)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError(f"{text} is out of range (16 to 8192 pixels a side)")
    return w, h


def add_crop_tracking_option(group: argparse._ActionsContainer) -> None:
    """``--crop-tracking`` (``run``, ``demo``, ``animate``)."""
    group.add_argument("--crop-tracking", choices=CROP_TRACKING, default=DEFAULT_CROP_TRACKING,
                       help="how the face crop follows your head: follow moves it with every head motion, a "
                            "little behind (the avatar then drifts back as the crop catches up); steady holds it still "
                            "while your face stays near its centre and glides it to re-centre when you move further, "
                            "so a head that moves and stays gives an avatar that moves and stays (default: "
                            "%(default)s)")


def add_config_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--config``, spelled and explained the same on every command."""
    parser.add_argument("--config", default=ModelOptions.config, metavar="YAML_OR_PRESET",
                        help=f"original-format config YAML or a preset name: {PRESET_HELP} "
                             f"(default: {ModelOptions.config})")


def check_config(config: str) -> None:
    """``--config`` names a preset or an existing file, whatever the backend (with the landmark backend it would
    otherwise be ignored without a word); the same messages as ``models.load_config``."""
    if config in PRESET_NAMES or Path(config).is_file():
        return
    if Path(config).suffix.lower() in (".yaml", ".yml") or os.sep in config or "/" in config:
        raise UserError(f"config file not found: {config}")
    raise UserError(f"unknown preset {config!r}; presets: {', '.join(sorted(PRESET_NAMES))}")


def add_debug_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def add_model_options(parser: argparse.ArgumentParser, *, several_sources: bool = False) -> None:
    """Options shared by every command that animates."""
    group = parser.add_argument_group("model")
    if several_sources:
        group.add_argument("--source", action="append", metavar="IMG_OR_DIR",
                           help="a photo to animate, or a folder of them; repeat for several avatars (hotkeys 1-9, n, "
                                "p switch); default: the bundled portrait")
    else:
        group.add_argument("--source", required=True, metavar="IMG", help="the photo to animate")
    group.add_argument("--checkpoint", metavar="CKPT", help=CHECKPOINT_HELP + " (required with --backend fomm)")
    add_config_option(group)
    group.add_argument("--backend", default=ModelOptions.backend, choices=["auto", "fomm", "landmarks"],
                       help="animation backend: fomm (the First Order Motion Model, needs --checkpoint) or landmarks "
                            "(face-mesh warping, no weights, fast on any CPU); auto = fomm when a checkpoint is given, "
                            "else landmarks (default: auto)")
    group.add_argument("--device", default=ModelOptions.device, choices=["auto", "cpu", "cuda"],
                       help="auto = CUDA when a GPU is visible, else CPU (default: auto)")
    group.add_argument("--precision", default=ModelOptions.precision, choices=PRECISIONS,
                       help="generator precision; int8 = the generator in 8-bit integers on the CPU, calibrated "
                            "on the photo and checked against fp32 on the first frame; auto = fp16 on CUDA, int8 on "
                            "CPUs with int8 dot products (VNNI, AMX) when an int8 runtime is installed, else bf16 on "
                            "CPUs with native bf16 (AVX512-BF16, AMX), else fp32 (default: auto)")
    group.add_argument("--engine", default=ModelOptions.engine, choices=["auto", "eager", "tensorrt", "onnxruntime"],
                       help="what runs the FOMM networks; auto = TensorRT on an NVIDIA GPU when torch-tensorrt is "
                            "installed and passes its self-check, else PyTorch eager (default: auto)")
    motion = group.add_mutually_exclusive_group()
    motion.add_argument("--relative", dest="relative", action="store_true", default=True,
                        help="move the source by the driving motion relative to the neutral pose (default)")
    motion.add_argument("--absolute", dest="relative", action="store_false",
                        help="use the driving keypoints as they are (only for a source and driver of the same person)")
    scale = group.add_mutually_exclusive_group()
    scale.add_argument("--adapt-scale", dest="adapt_scale", action="store_true", default=True,
                       help="scale the motion by the source/driver face size ratio (default)")
    scale.add_argument("--no-adapt-scale", dest="adapt_scale", action="store_false", help="do not scale the motion")
    group.add_argument("--no-label", action="store_true",
                       help="leave out the 'AI-generated' label drawn on every output frame (the log says so)")
    add_debug_option(group)


def add_remote_options(parser: argparse.ArgumentParser) -> None:
    """``--remote``, ``--token-file``, ``--remote-codec``: the FOMM on a ``fomm-live serve`` server."""
    group = parser.add_argument_group("remote GPU")
    group.add_argument("--remote", metavar="URL",
                       help="animate with the FOMM of a 'fomm-live serve' server at http://HOST:PORT (ws:// too); "
                            "only the face crop is sent; --checkpoint/--config/--device/--precision are then unused")
    group.add_argument("--token-file", metavar="F", help="a file whose first line is the server's token")
    group.add_argument("--remote-codec", default=RemoteOptions.codec, choices=["jpeg", "png"],
                       help="crops and faces on the wire: jpeg (quality 90, default) or png (lossless)")


def remote_options(args: argparse.Namespace) -> RemoteOptions | None:
    """The ``add_remote_options`` arguments as runtime options (None without ``--remote``)."""
    if getattr(args, "remote", None) is None:
        return None
    return RemoteOptions(url=args.remote, token_file=args.token_file, codec=args.remote_codec)


def add_framing_options(parser: argparse.ArgumentParser, *, framing: str, output_size: str | None) -> None:
    """``--framing``, ``--no-detail`` and (unless the command has it already) ``--output-size``.

    Args:
        framing: The command's default framing.
        output_size: Help text for the default output size; None: the command adds ``--output-size`` itself.
    """
    group = parser.add_argument_group("framing")
    group.add_argument("--framing", default=framing, choices=["photo", "face"],
                       help="photo: the whole source photo framed for the call, the animated face pasted back; face: "
                            f"the model's square alone (default: {framing})")
    if output_size is not None:
        group.add_argument("--output-size", type=parse_size, metavar="WxH", help=f"output frame size ({output_size})")
    group.add_argument("--no-detail", dest="detail", action="store_false",
                       help="with --framing photo, the model's square only upscaled into the photo (by default the "
                            "face keeps the photo's sharpness: FOMM carries its fine detail along the motion field, "
                            "the landmark backend moves the full-resolution photo itself)")


def add_strength_options(parser: argparse.ArgumentParser) -> None:
    """``--head-strength`` and ``--expression-strength`` (checked by ``check_conflicts``)."""
    group = parser.add_argument_group("motion strength (live: hotkeys [ ] and - =, sliders on t)")
    group.add_argument("--head-strength", type=float, default=1.0, metavar="F",
                       help="how much of the driver's head motion (turns, nods, tilts, moves) the face copies: 0 "
                            "holds the head at the neutral pose, 1 copies it, up to 2 exaggerates it (default: 1)")
    group.add_argument("--expression-strength", type=float, default=1.0, metavar="F",
                       help="the same for the expression (eyes, brows, mouth): 0 keeps the neutral face, 2 doubles it "
                            "(default: 1)")


def model_options(args: argparse.Namespace) -> ModelOptions:
    """The ``add_model_options`` arguments as runtime options."""
    return ModelOptions(checkpoint=args.checkpoint, config=args.config, backend=args.backend, device=args.device,
                        precision=args.precision, engine=args.engine, relative=args.relative,
                        adapt_scale=args.adapt_scale)


def check_conflicts(args: argparse.Namespace) -> None:
    """Options that contradict each other, or name what does not exist, end the command with one line before
    anything starts."""
    if getattr(args, "config", None) is not None:
        check_config(args.config)
    backend = getattr(args, "backend", None)
    if backend == "landmarks" and getattr(args, "remote", None):
        raise UserError("--backend landmarks runs here; --remote is for the FOMM on a server: drop one of them")
    if backend == "landmarks" and getattr(args, "checkpoint", None):
        raise UserError("--checkpoint is for the fomm backend; drop it, or use --backend fomm (or auto)")
    outputs = getattr(args, "output", None) or []
    if getattr(args, "no_preview", False) and "window" in outputs:
        raise UserError("--no-preview and --output window contradict each other; keep one")
    if getattr(args, "device", None) == "cpu" and getattr(args, "precision", None) == "fp16":
        raise UserError("--precision fp16 is for CUDA; on the CPU use bf16 or fp32")
    if getattr(args, "device", None) == "cuda" and getattr(args, "precision", None) == "int8":
        raise UserError(INT8_ON_CUDA)
    for option in ("head_strength", "expression_strength"):
        value = getattr(args, option, 1.0)
        if not MIN_STRENGTH <= value <= MAX_STRENGTH:  # also refuses nan
            raise UserError(f"--{option.replace('_', '-')} {value:g}: choose a strength from {MIN_STRENGTH:g} to "
                            f"{MAX_STRENGTH:g} (1 copies the motion as it is)")
        if value != 1.0 and getattr(args, "relative", True) is False:
            raise UserError(f"--{option.replace('_', '-')} needs relative motion (drop --absolute)")
