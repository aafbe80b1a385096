"""``fomm-live export``: the keypoint detector and the per-frame generator to ONNX, checked with ONNX Runtime."""

from __future__ import annotations

import argparse
import logging

from fomm_live.live.cli.common import add_config_option, add_debug_option
from fomm_live.live.cli.outputs import add_renamed_option
from fomm_live.live.errors import UserError
from fomm_live.live.options import CHECKPOINT_HELP


def add_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(
        "export", help="export the keypoint detector and the per-frame generator to ONNX, checked with ONNX Runtime",
        description="Write kp_detector.onnx and generator.onnx (the generator takes the cached source features "
                    "and keypoints as inputs) into --output DIR, then run both with ONNX Runtime and compare every "
                    "output with PyTorch (fp32, within 1e-4).",
    )
    export.add_argument("--checkpoint", required=True, metavar="CKPT", help=CHECKPOINT_HELP)
    add_config_option(export)
    export.add_argument("--output", required=True, metavar="DIR", help="output folder (created if needed)")
    add_renamed_option(export, "--onnx", new="--output", example="fomm-live export --checkpoint CKPT --output onnx/")
    export.add_argument("--source", metavar="IMG", help="trace with this photo as the cached source (default: a "
                                                        "fixed pseudo-random image)")
    export.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check")
    add_debug_option(export)


def execute(args: argparse.Namespace) -> int:
    from fomm_live.live.media import read_image
    from fomm_live.models import Animator, CheckpointError, ConfigError
    from fomm_live.models.export import ExportError, export_onnx

    try:
        animator = Animator.from_checkpoint(args.checkpoint, args.config, device="cpu", precision="fp32",
                                            engine="eager")
    except (CheckpointError, ConfigError) as err:
        raise UserError(str(err)) from err
    if args.source:
        animator.set_source(read_image(args.source))
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # the exporter logs every optimisation pass
    try:
        paths = export_onnx(animator, args.output, verify=not args.no_verify)
    except ImportError as err:
        raise UserError(f"ONNX export needs the onnx, onnxscript and onnxruntime packages ({err.name} is missing): "
                        "pip install -e '.[test]'") from err
    except ExportError as err:
        raise UserError(f"export failed: {err}") from err
    for name, path in paths.items():
        print(f"{name}: {path}")
    print("checked with ONNX Runtime against PyTorch" if not args.no_verify else "not checked (--no-verify)")
    return 0
