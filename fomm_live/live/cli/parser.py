"""The ``fomm-live`` argument parser: one sub-parser per command, each defined beside its command."""

from __future__ import annotations

import argparse
from types import ModuleType

from fomm_live.live.cli import animate, bench, cameras, demo, doctor, export, extension, run, serve

# Each command module has ``add_parser(subparsers)`` and ``execute(args) -> exit code``.
COMMANDS: dict[str, ModuleType] = {"run": run, "animate": animate, "demo": demo, "bench": bench, "export": export,
                                   "doctor": doctor, "cameras": cameras, "serve": serve,
                                   "extension": extension}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fomm-live",
        description="Animate a photo with the motion of a driving face, using the First Order Motion Model.",
        epilog="Run 'fomm-live COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser
