"""``fomm-live doctor``: check this set-up and say what to fix."""

from __future__ import annotations

import argparse

from fomm_live.live.cli.common import add_config_option, add_debug_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser("doctor", help="check this set-up and say what to fix",
                            description="Check Python and packages, the bundled face models, cameras, the virtual "
                                        "camera, the display, the GPU and TensorRT, a checkpoint (with --checkpoint) "
                                        "and the cache folder. Each line says OK, WARN or FAIL; the exit code is "
                                        "non-zero when any check fails.")
    doctor.add_argument("--checkpoint", metavar="CKPT", help="also check that this checkpoint loads")
    add_config_option(doctor)
    add_debug_option(doctor)


def execute(args: argparse.Namespace) -> int:
    from fomm_live.live.doctor import FAIL, WARN, run_checks

    checks = run_checks(checkpoint=args.checkpoint, config=args.config)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.status == FAIL]
    print(f"{len(checks)} checks: {len(failed)} failed, {sum(c.status == WARN for c in checks)} warnings")
    return 1 if failed else 0
