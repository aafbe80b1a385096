"""What the browser output and its viewers say to each other, besides the frames' pixels: the messages' headers, the
JPEG encoder, the output's own page, and the versioned handshake with the extension.

The handshake: a viewer names the protocol it speaks in the WebSocket's address (``/stream?protocol=N``; the
extension's frame.js and the output's own page send ``PROTOCOL``); the stream's description answers with the
output's own (``"protocol"``). An extension older than ``MIN_PROTOCOL`` (one that names none speaks 1) would show
its "fomm-live is not running" card, or nothing, on pictures it cannot read: it is sent instead, as whole JPEGs that
every version shows, a card saying to update the extension (``update_card``), with ``"update": "extension"`` in the
description. An extension meeting a picture format newer than it knows says the same on its own card (inject.js).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Callable
from importlib import resources
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import numpy as np

from fomm_live.live.media import cv2
from fomm_live.live.output.changed import Rect

logger = logging.getLogger(__name__)

JPEG_QUALITY = 85
HEADER = struct.Struct("<Id")  # frame number, epoch ms at which the output received the frame
# "jpeg-rect": frame number, epoch ms received, the picture the rectangle goes on (0: the whole frame), x, y, w, h.
RECT_HEADER = struct.Struct("<IdIHHHH")
# 2: the extension names its protocol; "jpeg-rect" pictures. 1: every extension before (it names none).
PROTOCOL = 2
MIN_PROTOCOL = 2  # the oldest viewer protocol sent the stream; older ones get the update card
UPDATE_CARD_BGR = (16, 42, 58)  # the update card's background: not the extension's "not running" card (#1d2330)


class Picture(NamedTuple):
    """The newest picture for viewers: ``message`` (header and picture) is sent to a viewer that has not had picture
    ``picture`` yet, ``header`` alone (a repeat) to one that has. ``base``: the picture a rectangle goes on top of
    (``jpeg-rect``), which the viewer must have had; 0 for a whole frame."""

    number: int
    header: bytes
    picture: int
    message: bytes | bytearray
    base: int = 0


def rect_of(picture: Picture) -> Rect:
    """The rectangle a ``jpeg-rect`` picture covers (its header's x, y, width, height)."""
    return Rect(*RECT_HEADER.unpack_from(picture.header)[3:])


def page_html() -> bytes:
    """The output's own page (``browser_page.html`` beside this module)."""
    return resources.files("fomm_live.live.output").joinpath("browser_page.html").read_bytes()


def viewer_protocol(path: str) -> int:
    """The protocol a viewer's WebSocket address names (``/stream?protocol=N``); 1 when it names none or no number."""
    values = parse_qs(urlsplit(path).query).get("protocol", [])
    return int(values[0]) if values and values[0].isdigit() else 1


def update_card(width: int, height: int, protocol: int) -> np.ndarray:
    """The picture an outdated extension shows (BGR, ``height`` x ``width`` x 3): update the extension, naming the
    two protocols, and how to find its folder."""
    card = np.empty((height, width, 3), np.uint8)
    card[:] = UPDATE_CARD_BGR
    lines = [("Update the fomm-live extension", 1.0, (235, 235, 235), 2),
             (f"this extension speaks protocol {protocol}, fomm-live needs {MIN_PROTOCOL}", 0.55, (170, 200, 215), 1),
             ("fomm-live extension prints its folder: reload it from there", 0.55, (170, 200, 215), 1)]
    scale = min(width / 640, height / 360)
    y = height * 0.4
    for text, size, colour, weight in lines:
        font_scale, thickness = size * scale, max(1, round(weight * scale))
        (text_width, text_height), _ = cv2().getTextSize(text, cv2().FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        cv2().putText(card, text, (max(0, (width - text_width) // 2), int(y)), cv2().FONT_HERSHEY_SIMPLEX,
                      font_scale, colour, thickness, cv2().LINE_AA)
        y += text_height * 2.2
    return card


def send_update_card(connection, *, size: tuple[int, int], fps: float, quality: int, protocol: int,
                     wait_closed: Callable[[float], bool]) -> None:
    """Serves a viewer of ``protocol``, older than ``MIN_PROTOCOL``, until it leaves or ``wait_closed(1.0)`` says the
    output closed: a stream description of whole JPEGs (which every version shows) and, once a second (the extension
    holds a picture 2 s), the update card."""
    logger.warning("browser output: an outdated fomm-live extension connected (protocol %d, this output speaks %d): "
                   "it shows a card saying to update it (fomm-live extension prints its folder)", protocol, PROTOCOL)
    width, height = size
    picture = encode_jpeg_bgr(update_card(width, height, protocol), quality)
    number = 0
    try:
        connection.send(json.dumps({"width": width, "height": height, "fps": fps, "format": "jpeg",
                                    "protocol": PROTOCOL, "update": "extension"}))
        while True:
            number += 1
            connection.send(HEADER.pack(number, time.time() * 1000.0) + picture)
            if wait_closed(1.0):
                return
    except Exception as err:  # noqa: BLE001 - a viewer that leaves ends its own thread, nothing else
        logger.debug("browser output: an outdated viewer left (%s)", err)


def encode_jpeg_bgr(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """A contiguous BGR frame as JPEG bytes (OpenCV's libjpeg-turbo; 4:2:0). Contiguous matters: a channel-reversed
    view (``rgb[..., ::-1]``) took 7.2 ms at 1280x720 against 1.9 ms for a contiguous BGR frame on the 2-core test
    CPU (load 8), OpenCV copying it element by element first."""
    ok, data = cv2().imencode(".jpg", frame, [cv2().IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()
