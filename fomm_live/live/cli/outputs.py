"""Where output goes, named the same way on every command: ``--output``, its values, and the suffixes each accepts.

``run`` and ``demo`` take ``--output`` repeatedly: a named output (``LIVE_OUTPUTS``) or a recording ``PATH.mp4``;
``animate`` takes one file (``ANIMATE_SUFFIXES``) or a folder of PNG frames. A value whose suffix does not match what
would be written is refused in one line naming the suffixes that are, before anything starts.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fomm_live.live.errors import UserError
from fomm_live.live.media import VIDEO_SUFFIXES

# The outputs of the live loop named by a word; anything else given to --output is a recording path. A new kind of
# output adds its word here (and to live.wiring.open_outputs, which opens it).
LIVE_OUTPUTS = ("virtualcam", "window")
# What a live recording is written as: a fragmented, then remuxed, MP4 (live.output.recording), whatever its name.
RECORDING_SUFFIXES = (".mp4",)
# What animate writes: .mp4 (fragmented while written), .mov and .mkv whole at the end (live.output.sinks.FileSink);
# a name without a suffix is a folder of PNG frames.
ANIMATE_SUFFIXES = VIDEO_SUFFIXES


def suffixes(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


class Renamed(argparse.Action):
    """An old option name, hidden from --help, that stops the command with one line naming the new one."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str, example: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.new = new
        self.example = example

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.exit(2, f"{parser.prog}: error: {option_string} is now {self.new}: {self.example}\n")


def add_renamed_option(parser: argparse.ArgumentParser, old: str, *, new: str, example: str) -> None:
    """Refuse ``old`` (and any value after it) in one line that names ``new``, with ``example`` of its use."""
    parser.add_argument(old, action=Renamed, new=new, example=example)


def check_live_output(value: str) -> None:
    """A ``run`` / ``demo`` ``--output`` value: a word of ``LIVE_OUTPUTS`` or a path with a recording suffix."""
    if value in LIVE_OUTPUTS or Path(value).suffix.lower() in RECORDING_SUFFIXES:
        return
    from fomm_live.live.wiring import browser_port  # lazily: the CLI's parser imports no running parts

    if browser_port(value) is not None:  # browser or browser:PORT (a bad port is refused there, in one line)
        return
    suffix = Path(value).suffix
    what = f"a {suffix} file is not written here" if suffix else "not an output name or a file name"
    raise UserError(f"--output {value}: {what}; use {', '.join(LIVE_OUTPUTS)}, browser[:PORT] or a recording file "
                    f"({suffixes(RECORDING_SUFFIXES)})")


def is_frame_folder(value: str) -> bool:
    """``animate --output``: a folder of PNG frames (an existing folder, a name ending in a slash, or one without a
    suffix) rather than a video file."""
    return value.endswith(("/", os.sep)) or Path(value).is_dir() or not Path(value).suffix


def check_animate_output(value: str) -> None:
    """An ``animate --output`` value: a video file of ``ANIMATE_SUFFIXES`` or a folder for PNG frames."""
    if is_frame_folder(value) or Path(value).suffix.lower() in ANIMATE_SUFFIXES:
        return
    raise UserError(f"--output {value}: a {Path(value).suffix} file is not written here; use a video file "
                    f"({suffixes(ANIMATE_SUFFIXES)}), or a folder (a name without a suffix) for PNG frames")
