"""``fomm-live extension``: where the browser extension is, and how to load it."""

from __future__ import annotations

import argparse

from fomm_live.live.output.browser import DEFAULT_PORT, EXTENSION_DIR


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("extension", help="print the browser extension's folder and how to load it",
                   description="Print the folder of the fomm-live browser extension (Chrome, Edge, Brave and other "
                               "Chromium browsers) on the first line, then the steps to load it. With it, every page "
                               "lists a camera named fomm-live that shows what 'fomm-live run --output browser' "
                               "sends: no virtual camera driver needed.")


def execute(args: argparse.Namespace) -> int:
    print(EXTENSION_DIR)
    print("To load it:")
    print("  1. open chrome://extensions (edge://extensions, brave://extensions) and switch on Developer mode")
    print("  2. click 'Load unpacked' and choose the folder above")
    print(f"  3. start 'fomm-live run --output browser' (port {DEFAULT_PORT}), then pick the camera 'fomm-live' "
          "in the call's settings")
    print("After updating fomm-live, press the extension's reload button there (its camera shows a card saying "
          "'Update the fomm-live extension' until then, if the two no longer match)")
    return 0
