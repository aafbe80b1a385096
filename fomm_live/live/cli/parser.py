"""The ``fomm-live`` argument parser: one sub-parser per command, each defined beside its command."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import NoReturn

from fomm_live.live.cli import animate, bench, cameras, demo, doctor, export, extension, run, serve

# Each command module has ``add_parser(subparsers)`` and ``execute(args) -> exit code``.
COMMANDS: dict[str, ModuleType] = {"run": run, "animate": animate, "demo": demo, "bench": bench, "export": export,
                                   "doctor": doctor, "cameras": cameras, "serve": serve,
                                   "extension": extension}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that takes options only by their full names and answers a mistake in one line.

    Prefixes are not taken (``allow_abbrev=False``): ``--out`` must not become ``--output-size`` on one command and be
    "ambiguous" on another, and an option added later must not change what an old command line means. The
    sub-parsers are of this class too (``add_subparsers`` makes them with the parent's class).
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One line, the mistake and where the options are listed, instead of argparse's usage dump."""
        self.exit(2, f"{self.prog}: error: {message} ('{self.prog} --help' lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="fomm-live",
        description="Animate a photo with the motion of a driving face, using the First Order Motion Model.",
        epilog="Run 'fomm-live COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser
