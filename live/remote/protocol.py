"""The wire format between ``fomm-live run --remote`` and ``fomm-live serve``, and the bounds every message is held to.

One WebSocket per stream, on the fixed route ``STREAM_ROUTE``. Every message, both ways, is one binary WebSocket
message:

    4 bytes: n, the header's length, big-endian  |  n bytes: the header, UTF-8 JSON object  |  the payload (or none)

Client -> server (``type`` in the header):

- ``hello`` {version, codec, relative, adapt_scale}: first message of a stream; the reply is ``ready``
  {image_size, max_fps} or an ``error``. The token, when the server needs one, is the handshake's
  ``Authorization: Bearer TOKEN`` header.
- ``avatar`` {hash}: use this avatar from now on; the reply is ``avatar`` {hash, known}. When the server does not
  hold it, the client sends ``upload`` {hash} with the avatar's crop as a PNG payload; the server checks that the
  hash is the hash of the decoded pixels (``content_hash``), so nobody can plant an image under another's hash.
- ``calibrate`` {t, smooth}: payload = the neutral driving crop; reply ``ok``.
- ``reset`` {}: forget the neutral pose and the smoothed keypoints; reply ``ok``.
- ``frame`` {id, t, smooth}: payload = a driving crop; reply ``frame`` {id} with the rendered face as payload, in the
  stream's codec.

``smooth`` [min_cutoff, beta] and ``t`` (the crop's media time, seconds): the server smooths the crop's keypoints
with the client's One Euro options (``live.smoothing.MotionSmoother``, one per stream) at that time, before motion
normalisation, as the local loop smooths its own; without ``smooth`` they are not smoothed (``--no-smoothing``). A
``calibrate`` and the ``frame`` after it with the same ``t`` are one sample: the crop the pose was taken on.

Any message can be answered with ``error`` {message, fatal}; a fatal one is followed by the server closing the
stream. The rendered face and the driving crops are JPEG at ``JPEG_QUALITY`` by default (a 256 x 256 face is 10 to 23 KB
instead of 197 KB raw; see the README for its PSNR against the local run), or PNG, lossless, for parity.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Any

import numpy as np

PROTOCOL_VERSION = 2  # 2: keypoint smoothing ({t, smooth} on calibrate and frame)
STREAM_ROUTE = "/stream"
STATS_ROUTE = "/stats"
CODECS = ("jpeg", "png")
JPEG_QUALITY = 90  # 90: above it the bytes grow fast for little gain (see the README's PSNR figure)
MAX_HEADER_BYTES = 4096
MAX_MESSAGE_BYTES = 2 << 20  # a 256 x 256 PNG crop is at most ~200 KB; a 1024-pixel one ~3 MB raw, ~1.5 MB as PNG
MIN_SIDE, MAX_SIDE = 16, 1024  # image sides accepted (the model resizes to its own 256)
DEFAULT_MAX_FPS = 60.0  # frames per second per stream; faster streams are paced, not refused


class ProtocolError(ValueError):
    """A malformed or out-of-bounds message; the message is one line for the other end."""


def pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One wire message from a header and an optional payload."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + payload


def unpack(message: bytes | str) -> tuple[dict[str, Any], bytes]:
    """(header, payload) of one wire message, or ``ProtocolError`` saying what is wrong with it."""
    if isinstance(message, str):
        raise ProtocolError("expected a binary message, got text")
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(message)} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
    if len(message) < 4:
        raise ProtocolError("message shorter than its 4-byte header length")
    (length,) = struct.unpack(">I", message[:4])
    if length > MAX_HEADER_BYTES or 4 + length > len(message):
        raise ProtocolError(f"bad header length {length} (at most {MAX_HEADER_BYTES}, within the message)")
    try:
        header = json.loads(message[4:4 + length].decode())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the header is not UTF-8 JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("the header is not a JSON object with a 'type'")
    return header, bytes(message[4 + length:])


def content_hash(image: np.ndarray) -> str:
    """The avatar's address: SHA-256 of its shape and RGB pixels (the same on both ends whatever the codec)."""
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """(codec, width, height) read from a PNG or JPEG header, before anything is decompressed (a small payload can
    claim a huge image)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                break
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2:i + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return "jpeg", width, height
            i += 2 + length
        raise ProtocolError("a JPEG payload without a readable frame header")
    raise ProtocolError("the payload is neither PNG nor JPEG")


def encode_image(image: np.ndarray, codec: str) -> bytes:
    """H x W x 3 uint8 RGB -> PNG or JPEG (quality ``JPEG_QUALITY``) bytes."""
    import cv2

    bgr = np.ascontiguousarray(image[..., ::-1])
    if codec == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])  # 1: fast; the loopback is not the limit
    elif codec == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    else:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as {codec}")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """PNG or JPEG bytes from the other end -> H x W x 3 uint8 RGB, with its sides checked against
    ``MIN_SIDE``..``MAX_SIDE`` before decoding."""
    import cv2

    _, width, height = image_dimensions(data)
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ProtocolError(f"image of {width}x{height} pixels is out of bounds ({MIN_SIDE} to {MAX_SIDE} a side)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (height, width):
        raise ProtocolError("the image payload could not be decoded")
    return np.ascontiguousarray(bgr[..., ::-1])


def smoothing_of(header: dict[str, Any]) -> tuple[float, float, float] | None:
    """(t, min_cutoff, beta) of a ``calibrate`` or ``frame`` header that asks for keypoint smoothing, else None.

    ``t`` is a finite number of seconds; ``min_cutoff`` > 0 Hz and ``beta`` >= 0, as ``live.filters.OneEuroFilter``
    requires.
    """
    smooth = header.get("smooth")
    if smooth is None:
        return None
    if (not isinstance(smooth, list) or len(smooth) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in smooth)):
        raise ProtocolError("'smooth' must be [min_cutoff, beta], two numbers")
    min_cutoff, beta = (float(v) for v in smooth)
    if not (0 < min_cutoff < math.inf and 0 <= beta < math.inf):
        raise ProtocolError(f"'smooth' needs min_cutoff > 0 and beta >= 0, finite; got {smooth}")
    t = header.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t):
        raise ProtocolError("'t' (the crop's media time, seconds) must be a finite number with 'smooth'")
    return float(t), min_cutoff, beta
