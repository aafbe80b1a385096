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
- ``field`` {want}: whether the replies to this stream's frames carry the dense motion field (photo framing's detail
  transfer needs it; off until asked); reply ``ok``. Part of the stream's setup: a client replays it on reconnection.
- ``frame`` {id, t, smooth, strength}: payload = a driving crop; reply ``frame`` {id} with the rendered face as
  payload, in the stream's codec. When the stream wants the field: ``frame`` {id, field: {h, w, occlusion,
  image_bytes}}, and the payload is the face (``image_bytes`` bytes) followed by the field (``encode_field``).

``strength`` [head, expression], each from 0 to 2 (absent: [1, 1]): the stream's head and expression strength from
this frame on (``models.strength``), applied by the server to the keypoints it finds; a client sends its live
controls' values with every frame.

``smooth`` [min_cutoff, beta] and ``t`` (the crop's media time, seconds): the server smooths the crop's keypoints
with the client's One Euro options (``live.loop.smoothing.MotionSmoother``, one per stream) at that time, before motion
normalisation, as the local loop smooths its own; without ``smooth`` they are not smoothed (``--no-smoothing``). A
``calibrate`` and the ``frame`` after it with the same ``t`` are one sample: the crop the pose was taken on.

Any message can be answered with ``error`` {message, fatal}; a fatal one is followed by the server closing the
stream. Headers are standard JSON (no NaN or Infinity); an ``id`` is a whole number from 0 to 2**53 (echoed in the
reply, ``null`` in an error when it was not one); ``relative`` and ``adapt_scale`` are true or false.

The rendered face and the driving crops are JPEG at ``JPEG_QUALITY`` by default (a 256 x 256 face is 10 to 23 KB
instead of 197 KB raw; see the README for its PSNR against the local run), or PNG, lossless, for parity.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from typing import Any

import numpy as np

# 2: keypoint smoothing ({t, smooth} on calibrate and frame); 3: the motion field ('field'); 4: 'strength' on frames
PROTOCOL_VERSION = 4
STREAM_ROUTE = "/stream"
STATS_ROUTE = "/stats"
CODECS = ("jpeg", "png")
JPEG_QUALITY = 90  # 90: above it the bytes grow fast for little gain (see the README's PSNR figure)
MAX_HEADER_BYTES = 4096
MAX_MESSAGE_BYTES = 2 << 20  # a 256 x 256 PNG crop is at most ~200 KB; a 1024-pixel one ~3 MB raw, ~1.5 MB as PNG
MIN_SIDE, MAX_SIDE = 16, 1024  # image sides accepted (the model resizes to its own 256)
DEFAULT_MAX_FPS = 60.0  # frames per second per stream; faster streams are paced, not refused
MAX_FIELD_SIDE = 256  # motion fields accepted: h, w in 2..256 (vox-256: 64 x 64, a quarter of the image's side)
# Media times (seconds) accepted: a year. The smoother steps a repeated or older time by 1 ms, and a float64 time
# keeps 1 ms steps (and finer) below 1e9; at 1e300 the step vanished, a zero time step divided by zero.
MAX_MEDIA_TIME_S = 366 * 86400.0
FIELD_SCALE = 8192  # deformation fixed point: 1/8192 of a grid unit (see encode_field)


class ProtocolError(ValueError):
    """A malformed or out-of-bounds message; the message is one line for the other end."""


def pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One wire message from a header and an optional payload."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()  # standard JSON only
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
        header = json.loads(message[4:4 + length].decode(), parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("the header is not UTF-8 JSON (standard JSON: no NaN or Infinity)") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("the header is not a JSON object with a 'type'")
    return header, bytes(message[4 + length:])


def read_token_file(path: str | os.PathLike) -> str:
    """The token in a token file, the same on both ends: its first non-empty line, stripped of white space.

    Raises ``OSError`` when the file cannot be read and ``ValueError`` when it holds no token.
    """
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return line.strip()
    raise ValueError(f"{path} is empty: put the token on its first line")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def content_hash(image: np.ndarray) -> str:
    """The avatar's address: SHA-256 of its shape and RGB pixels (the same on both ends whatever the codec)."""
    digest = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}x{image.shape[2]}:".encode())
    digest.update(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
    return digest.hexdigest()


JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM and RST0..7: markers without a segment
MAX_JPEG_SCANS = 100  # a progressive JPEG from libjpeg has ~10 scans; each scan costs a pass over the image, and
# 174,000 empty scans of a 1024 x 1024 image took 13 s to decode (2 cores, Intel Xeon)


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """(codec, width, height) read from a PNG or JPEG header the way the decoder reads it, before anything is
    decompressed (a small payload can claim a huge image).

    The JPEG walk follows libjpeg's: markers after any number of 0xFF fill bytes, segments skipped by their length, the
    first start-of-frame (any SOFn) giving the size; and it counts the scans (at most ``MAX_JPEG_SCANS``). Where
    libjpeg would be lenient (stray bytes between segments, which it skips to the next marker), this walk refuses the
    image instead, so that it can never read a header that the decoder does not. A PNG's first chunk must be its IHDR.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
            raise ProtocolError("a PNG payload whose first chunk is not its header (IHDR)")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:2] == b"\xff\xd8":
        return ("jpeg", *_jpeg_dimensions(data))
    raise ProtocolError("the payload is neither PNG nor JPEG")


def _jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG (see ``image_dimensions``); a payload cut short after its frame header is accepted
    (the decoder renders what it has, and the decoded sides are checked against these)."""
    bad = ProtocolError("a JPEG payload whose markers the server cannot follow")
    i, size, scans, end = 2, None, 0, len(data)
    while i < end:
        if data[i] != 0xFF:
            raise bad  # not a marker where one must be (libjpeg would skip ahead and might read other data)
        while i < end and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= end:
            break
        marker = data[i]
        i += 1
        if marker in JPEG_STANDALONE:
            continue
        if marker == 0xD9 and size is not None:
            return size
        if marker in (0x00, 0xC8, 0xD8, 0xD9) or (marker == 0xDA and size is None):
            raise bad  # a stuffed zero, JPG (reserved), a second start of image, no frame before the end or a scan
        if i + 2 > end:
            break
        (length,) = struct.unpack(">H", data[i:i + 2])
        if length < 2:
            raise bad
        if marker in JPEG_SOF:
            if size is not None:
                raise ProtocolError("a JPEG payload with two frame headers")
            if length < 8 or i + 7 > end:
                break
            height, width = struct.unpack(">HH", data[i + 3:i + 7])
            size = (width, height)
        i += length
        if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker (0xFF not followed by 0 or RSTn)
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ProtocolError(f"a JPEG payload of more than {MAX_JPEG_SCANS} scans")
            while (i := data.find(b"\xff", i)) >= 0:
                j = i + 1
                while j < end and data[j] == 0xFF:
                    j += 1
                if j < end and (data[j] == 0x00 or 0xD0 <= data[j] <= 0xD7):
                    i = j + 1
                    continue
                break
            if i < 0:
                break
    if size is None:
        raise ProtocolError("a JPEG payload without a readable frame header")
    return size


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
    if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or abs(t) > MAX_MEDIA_TIME_S:
        raise ProtocolError(f"'t' (the crop's media time, seconds) must be a finite number from "
                            f"-{MAX_MEDIA_TIME_S:.0f} to {MAX_MEDIA_TIME_S:.0f} with 'smooth'")
    return float(t), min_cutoff, beta


def strength_of(header: dict[str, Any]) -> tuple[float, float]:
    """(head, expression) strength of a ``frame`` header: [1, 1] when absent, each a number from 0 to 2."""
    strength = header.get("strength", [1.0, 1.0])
    if (not isinstance(strength, list) or len(strength) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in strength)):
        raise ProtocolError("'strength' must be [head, expression], two numbers")
    head, expression = (float(v) for v in strength)
    if not (0.0 <= head <= 2.0 and 0.0 <= expression <= 2.0):
        raise ProtocolError(f"'strength' values must be from 0 to 2; got {strength}")
    return head, expression


# ------------------------------------------------------------------------------------------------ motion field
# The dense motion field of a rendered face, for photo framing's detail transfer (``live.framing.pasteback_torch``): the
# deformation (h x w x 2, grid_sample coordinates (x, y) of the source square, align_corners=False) and the occlusion
# map (h x w in [0, 1], absent when the model estimates none). On the wire, one zlib stream (level 1) of
#
#     h x w x 2 int16, little-endian: round((deformation - identity) * FIELD_SCALE), differences along each row
#     h x w uint8 (with occlusion):   round(occlusion * 255), differences along each row
#
# identity being FOMM's coordinate grid (``field_identity``) and the differences taken with wrap-around (int16,
# uint8), so that decoding is their running sum with the same wrap-around, exactly. The displacement is what varies
# little from pixel to pixel, and its row differences are small numbers that deflate packs well.
#
# Worst error against the float32 field, measured on the tiny test model's fields (and bounded by the rounding):
# deformation 1 / (2 FIELD_SCALE) = 6.1e-5 grid units = 0.0078 model pixels at n = 256 (a model pixel is 2 / n grid
# units); occlusion 1 / 510 = 0.0020, i.e. under 0.2 levels on a detail band of 100 levels. float16 instead would err
# by 0.06 model pixels near |x| = 1 for the same 4 bytes a vector. A displacement beyond +-4 grid units (32767 /
# FIELD_SCALE) is clipped there: it points at least 3 grid units outside the source square, where the detail band is
# 0 whatever the exact value.
#
# Bytes per frame (vox-256: 64 x 64): 20,480 before deflate; after it 2.0 to 13.8 KB on the tiny test model's fields
# (13 frames: the golden ones and a swaying synthetic face), whose random weights likely make them rougher than a
# trained model's. Encoding takes ~0.7 ms a frame on the server, decoding ~0.3 ms on the client (medians on a shared,
# loaded 2-core CPU), beside the 10 to 23 KB of a JPEG face.


Field = tuple[np.ndarray, np.ndarray | None]  # (deformation h x w x 2, occlusion h x w or None), float32


def field_identity(h: int, w: int) -> np.ndarray:
    """FOMM's coordinate grid (``make_coordinate_grid``): h x w x 2 (x, y) float64, -1 and 1 at the centres of the
    first and last pixels; what the deformation is stored relative to."""
    gy, gx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    return np.stack([gx, gy], axis=-1)  # h x w x 2


def encode_field(deformation: np.ndarray, occlusion: np.ndarray | None) -> tuple[dict[str, Any], bytes]:
    """(the ``field`` header without ``image_bytes``, the encoded field) of one frame.

    Args:
        deformation: h x w x 2 float grid_sample coordinates (x, y).
        occlusion: h x w float in [0, 1], or None when the model estimates no occlusion map.
    """
    h, w = deformation.shape[:2]
    if deformation.shape != (h, w, 2) or not (2 <= h <= MAX_FIELD_SIDE and 2 <= w <= MAX_FIELD_SIDE):
        raise ValueError(f"a motion field of shape {deformation.shape}; expected h x w x 2, 2 to {MAX_FIELD_SIDE} "
                         "a side")
    if occlusion is not None and occlusion.shape != (h, w):
        raise ValueError(f"an occlusion map of shape {occlusion.shape} for a {h}x{w} motion field")
    if not np.isfinite(deformation).all() or (occlusion is not None and not np.isfinite(occlusion).all()):
        raise ValueError("the model's motion field is not finite")
    displacement = np.asarray(deformation, np.float64) - field_identity(h, w)  # h x w x 2 grid units
    fixed = np.clip(np.rint(displacement * FIELD_SCALE), -32767, 32767).astype(np.int16)
    parts = [_row_differences(fixed).astype("<i2").tobytes()]
    if occlusion is not None:
        levels = np.rint(np.clip(np.asarray(occlusion, np.float64), 0, 1) * 255).astype(np.uint8)  # h x w
        parts.append(_row_differences(levels).tobytes())
    return {"h": h, "w": w, "occlusion": occlusion is not None}, zlib.compress(b"".join(parts), 1)


def decode_field(spec: Any, data: bytes) -> Field:
    """The ``field`` header and the encoded field from the other end -> (deformation h x w x 2 float32, occlusion
    h x w float32 or None), with the sides checked against ``MAX_FIELD_SIDE`` before anything is inflated and the
    inflated size against the header (no more than it announced is ever inflated)."""
    if not isinstance(spec, dict):
        raise ProtocolError("'field' must be an object {h, w, occlusion, image_bytes}")
    h, w, occluded = spec.get("h"), spec.get("w"), spec.get("occlusion")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= MAX_FIELD_SIDE for v in (h, w)):
        raise ProtocolError(f"motion field of {h!r}x{w!r}: its sides must be whole numbers, 2 to {MAX_FIELD_SIDE}")
    if not isinstance(occluded, bool):
        raise ProtocolError("the motion field's 'occlusion' must be true or false")
    size = h * w * 4 + (h * w if occluded else 0)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, size + 1)  # at most one byte past what the header announced
    except zlib.error:
        raise ProtocolError("the motion field is not a zlib stream") from None
    if len(raw) != size or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise ProtocolError(f"the motion field does not hold the {size} bytes of a {h}x{w} field"
                            f"{' with occlusion' if occluded else ''}")
    fixed = np.cumsum(np.frombuffer(raw, "<i2", h * w * 2).reshape(h, w, 2), axis=1, dtype=np.int16)
    deformation = (field_identity(h, w) + fixed / FIELD_SCALE).astype(np.float32)  # finite: int16 / a constant
    occlusion = None
    if occluded:
        levels = np.cumsum(np.frombuffer(raw, np.uint8, h * w, h * w * 4).reshape(h, w), axis=1, dtype=np.uint8)
        occlusion = (levels / np.float32(255)).astype(np.float32)  # h x w in [0, 1]
    return deformation, occlusion


def frame_reply(frame_id: Any, image: bytes, field: tuple[dict[str, Any], bytes] | None = None) -> bytes:
    """The ``frame`` reply: the encoded face, and after it the encoded field (``encode_field``) when there is one."""
    if field is None:
        return pack({"type": "frame", "id": frame_id}, image)
    return pack({"type": "frame", "id": frame_id, "field": dict(field[0], image_bytes=len(image))}, image + field[1])


def split_frame(header: dict[str, Any], payload: bytes) -> tuple[bytes, bytes | None]:
    """(the face's bytes, the field's bytes or None) of a ``frame`` reply, its ``image_bytes`` checked."""
    spec = header.get("field")
    if spec is None:
        return payload, None
    cut = spec.get("image_bytes") if isinstance(spec, dict) else None
    if not isinstance(cut, int) or isinstance(cut, bool) or not 0 < cut < len(payload):
        raise ProtocolError(f"the motion field's 'image_bytes' {cut!r} does not split a {len(payload)} byte payload")
    return payload[:cut], payload[cut:]


def _row_differences(values: np.ndarray) -> np.ndarray:
    """Each value minus its left neighbour (the first of a row as is), wrapping around in the values' integer type."""
    out = values.copy()
    out[:, 1:] = values[:, 1:] - values[:, :-1]  # same dtype: numpy wraps around on overflow, cumsum undoes it
    return out
