"""``fomm-live cameras``: the cameras that open here, one line each (index, device path, name, WxH@fps)."""

from __future__ import annotations

import argparse

from fomm_live.live.cli.common import add_debug_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    cameras = sub.add_parser("cameras", help="list the cameras that open here",
                             description="List the cameras that open here, one line each: index, device path (Linux), "
                                         "name (where the OS gives one) and default mode WxH@fps. Give the index or "
                                         "the path to --camera. A camera busy in another program is not listed.")
    add_debug_option(cameras)


def execute(args: argparse.Namespace) -> int:
    from fomm_live.live.capture.cameras import list_cameras

    found = list_cameras()
    if not found:
        print("no camera found")
        return 0
    for camera in found:
        print(camera.line())
    return 0
