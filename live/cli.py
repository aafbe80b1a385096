"""The ``fomm-live`` command line.

Subcommands available now: ``animate`` (file to file). The live loop (``run``), ``demo``, ``bench``, ``doctor`` and
``export`` are added by their own work items; until then the command says so instead of pretending.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from live.errors import UserError

logger = logging.getLogger("fomm-live")

PRESET_HELP = "vox-256, vox-adv-256, taichi-256, taichi-adv-256, mgif-256, bair-256, fashion-256, nemo-256"
CHECKPOINT_HELP = ("an original First Order Motion Model checkpoint (vox-cpk.pth.tar, vox-adv-cpk.pth.tar, "
                   "taichi-cpk.pth.tar, ...); see the README for where to get one")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that animates, spelled the same everywhere."""
    group = parser.add_argument_group("model")
    group.add_argument("--source", required=True, metavar="IMG", help="the photo to animate")
    group.add_argument("--checkpoint", metavar="CKPT", help=CHECKPOINT_HELP + " (required with --backend fomm)")
    group.add_argument("--config", default="vox-256", metavar="YAML_OR_PRESET",
                       help=f"original-format config YAML or a preset name: {PRESET_HELP} (default: vox-256)")
    group.add_argument("--backend", default="auto", choices=["auto", "fomm"],
                       help="animation backend; auto = fomm when a checkpoint is given (default: auto)")
    group.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto = CUDA when a GPU is visible, else CPU (default: auto)")
    group.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                       help="generator precision; auto = fp16 on CUDA, fp32 on CPU (default: auto)")
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
    group.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fomm-live",
        description="Animate a photo with the motion of a driving face, using the First Order Motion Model.",
        epilog="Run 'fomm-live COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    animate = sub.add_parser(
        "animate", help="animate a photo with a driving video or frame folder, file to file",
        description="Animate --source with the motion of --driving and write the result to --out. In relative mode "
                    "(the default) the first driving frame is the neutral pose.",
    )
    add_model_options(animate)
    animate.add_argument("--driving", required=True, metavar="VIDEO_OR_FRAME_DIR",
                         help="a video file, or a folder of frames read in name order")
    animate.add_argument("--out", required=True, metavar="OUT.mp4_OR_DIR",
                         help="an .mp4 file, or a folder that receives 00000.png, 00001.png, ...")
    animate.add_argument("--crop", default="none", choices=["none"],
                         help="none: frames are used as given, resized to the model's size (default)")
    return parser


def resolve_backend(args: argparse.Namespace) -> str:
    if args.checkpoint is None:
        raise UserError("--checkpoint is required: the fomm backend needs " + CHECKPOINT_HELP)
    return "fomm"


def load_animator(args: argparse.Namespace):
    """Build the Animator the shared options describe (imports torch only when needed)."""
    from models import Animator, CheckpointError, ConfigError, MotionOptions

    resolve_backend(args)
    try:
        animator = Animator.from_checkpoint(args.checkpoint, args.config, device=args.device,
                                            precision=args.precision,
                                            motion=MotionOptions(relative=args.relative, adapt_scale=args.adapt_scale))
    except (CheckpointError, ConfigError) as err:
        raise UserError(str(err)) from err
    except RuntimeError as err:  # e.g. --device cuda without a GPU
        raise UserError(str(err)) from err
    logger.info("model: %s (%s), device %s, precision %s, %s motion%s", args.checkpoint, args.config,
                animator.device, animator.precision, "relative" if args.relative else "absolute",
                ", adapted scale" if args.relative and args.adapt_scale else "")
    return animator


def cmd_animate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from live.compose import add_label
    from live.media import open_driving, open_writer, read_image

    source = read_image(args.source)
    driving = open_driving(args.driving)
    animator = load_animator(args)
    animator.set_source(source)
    if args.no_label:
        logger.warning("the 'AI-generated' label is removed from the output (--no-label)")
    out_path = Path(args.out)
    writer = open_writer(out_path, fps=driving.fps)
    start = time.perf_counter()
    count = 0
    try:
        frames = tqdm(driving.frames, total=driving.count, unit="frame", disable=not sys.stderr.isatty(),
                      desc="animating")
        for frame in frames:
            result = animator.animate(frame)
            writer.write(result if args.no_label else add_label(result))
            count += 1
    finally:
        writer.close()
    if count == 0:
        raise UserError(f"{args.driving} holds no frames; nothing was written")
    elapsed = time.perf_counter() - start
    print(f"animated {count} frames in {elapsed:.1f} s ({1000 * elapsed / count:.0f} ms per frame) -> {out_path}")
    return 0


COMMANDS = {"animate": cmd_animate}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\nfomm-live: choose a command; available now: animate", file=sys.stderr)
        return 2
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="fomm-live: %(message)s")
    # SIGTERM ends the run like Ctrl-C, so `finally` blocks finalise outputs.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return COMMANDS[args.command](args)
    except UserError as err:
        if debug:
            raise
        print(f"fomm-live: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fomm-live: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
