"""The ``fomm-live`` command line: the only place that parses arguments and prints.

``run`` (the default: the live loop from a camera, file or stream to a virtual camera, preview window and/or MP4),
``animate`` (file to file, through the same live pipeline), ``demo``, ``bench``, ``export``, ``doctor`` and
``cameras``; one module per command. Without a command, ``run`` is meant: ``fomm-live --source face.png``. Arguments
become the runtime options of ``live.options`` here, once; ``benchmarks`` is imported only by ``bench``.

May import every other room of ``live`` (through ``live.wiring`` for the running parts) and, in ``bench`` only,
``benchmarks``; nothing in ``live`` imports the CLI back.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from fomm_live.common.errors import DeviceError
from fomm_live.live.errors import UserError


def main(argv: Sequence[str] | None = None) -> int:
    from fomm_live.live.cli.common import check_conflicts
    from fomm_live.live.cli.interrupts import install_interrupt_handlers, interrupted, restore_handlers
    from fomm_live.live.cli.parser import COMMANDS, build_parser

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")  # `fomm-live --source face.png` means `fomm-live run --source face.png`
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="fomm-live: %(message)s")
    previous = install_interrupt_handlers()
    try:
        check_conflicts(args)
        return COMMANDS[args.command].execute(args)
    except UserError as err:
        if debug:
            raise
        print(f"fomm-live: error: {err}", file=sys.stderr)
        return 1
    except DeviceError as err:  # a GPU failure outside the live loop (export, bench)
        if debug:
            raise
        print(f"fomm-live: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not interrupted():  # the handler has said so already
            print("fomm-live: interrupted", file=sys.stderr)
        return 130
    finally:
        restore_handlers(previous)
