"""The browser output (``--output browser``): the output frames on loopback, for the fomm-live browser extension and
for a plain page at ``http://127.0.0.1:PORT/`` that shows the live stream.

Transport: one WebSocket per viewer at ``/stream?protocol=N`` (the handshake: ``browser_wire.py``); a text message first
({"width", "height", "fps", "format", "protocol"}), then one binary message per frame: a 12-byte header (uint32 frame
number, float64 epoch milliseconds at which the output received the frame, both little-endian) and the picture, a JPEG
("format": "jpeg") or raw I420 (YUV 4:2:0: the Y plane, then U, then V; "format": "i420"). "format": "jpeg-rect" (the
default) sends only what changed: a 24-byte header (``RECT_HEADER``: the same two fields, then uint32 the number of the
picture the rectangle goes on, 0 for a whole frame, and uint16 x, y, width, height) and a JPEG of that rectangle
(``changed.py``: the changed pixels' bounding box on JPEG's 16-pixel grid), the whole frame for a viewer that lacks the
picture it goes on, when most of the frame changed, and every ``WHOLE_EVERY_S``; an extension of before this format
names no protocol and is sent the update card. A message that is the header alone repeats the last picture: a frame
identical to the one before (the live loop repeats its last frame while the camera or the face is lost) is not sent
again. Viewers get about ``fps`` pictures a second (10% more at most), the newest at each turn, as the virtual camera
gives its device: a loop faster than the camera it announces costs the watching browser little more.

JPEG was chosen over raw I420 by measurement (``benchmarks/browser.py``, RESULTS.md 2026-12-07, 1280x720 at 30 fps,
Chromium 156 on the 2-core test CPU): I420 costs fomm-live less (0.6-0.9 ms to convert against 2.0-2.1 ms for the BGR
copy and the JPEG) but the watching browser far more: its 1.38 MB a frame cross from the extension's frame to the page
through the browser process, about 21 ms of Chromium's CPU a frame there against 2 ms for a 35 kB JPEG, which the page
decodes to YUV planes with WebCodecs' ImageDecoder in about 4 ms. JPEG quality 85 keeps about 50 dB.

Security: the server binds 127.0.0.1 only, and the WebSocket handshake is refused (HTTP 403) unless its Origin is the
extension's own (``chrome-extension://`` + the fixed id its manifest key gives) or this output's own page: another
website open in the same browser cannot watch the stream. A Host header other than 127.0.0.1 / localhost at the port is
refused too (DNS rebinding). The extension adds its own checks (a one-time ticket for its frame, the page's camera
permission: see its scripts). The frames are the sinks' frames, so the "AI-generated" label is on them.

The failure it survives: a viewer that is slow or gone. Nothing is converted while no viewer is connected; the picture
thread (the JPEG encoder, or the repeat check for I420) always takes the newest frame (older ones are skipped, never
queued); each viewer's connection thread sends the newest picture when it can, so one slow viewer delays no one else and
never the model.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from pathlib import Path

import numpy as np

from fomm_live.live.errors import SinkUnavailable
from fomm_live.live.media import cv2
from fomm_live.live.output.browser_wire import (
    HEADER,
    JPEG_QUALITY,
    MIN_PROTOCOL,
    PROTOCOL,
    RECT_HEADER,
    Picture,
    encode_jpeg_bgr,
    page_html,
    rect_of,
    send_update_card,
    viewer_protocol,
)
from fomm_live.live.output.changed import Rect, changed_rect, same_picture, slices, union, whole_rect
from fomm_live.live.output.sinks import FrameInfo, StillOutside, check_frame

logger = logging.getLogger(__name__)

DEFAULT_PORT = 47120
# The unpacked Manifest V3 extension (its scripts say what each part does); its default port is DEFAULT_PORT too.
EXTENSION_DIR = Path(__file__).resolve().parent / "extension"
# The id Chromium derives from the public key in extension/manifest.json ("key"): the first 32 hex digits of its
# SHA-256, written with the letters a-p. tests/test_browser_extension.py checks that they agree.
EXTENSION_ID = "hijoelcenfodncdpepehcidanefcbojo"
EXTENSION_ORIGIN = f"chrome-extension://{EXTENSION_ID}"
# "jpeg-rect": the whole frame at least this often, so that a page whose copy of the frame missed a rectangle (a
# picture it could not decode) shows it right again within the 2 s for which the extension holds a stopped stream's
# last frame; at 30 fps a whole 1280x720 frame every 60 costs about 0.03 ms of fomm-live's CPU a frame and 0.1 ms of
# the page's.
WHOLE_EVERY_S = 2.0
# "jpeg-rect": a rectangle over this share of the frame is sent as the whole frame (it costs about as much and starts
# every viewer's copy afresh).
WHOLE_ABOVE = 0.5
# Viewers get at most this many times fps pictures a second (see _picture_loop).
PACE_MARGIN = 1.1
FORMATS = ("jpeg-rect", "jpeg", "i420")  # the picture formats a viewer understands; the first is the default


def parse_browser_spec(spec: str) -> int | None:
    """The port of ``browser`` or ``browser:PORT`` (None: not a browser output). Raises ValueError on a bad port."""
    name, _, port = spec.partition(":")
    if name.lower() != "browser":
        return None
    if not port:
        return DEFAULT_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"--output {spec}: the port must be a number from 1 to 65535")
    return int(port)


class BrowserSink:
    """Serves the output frames to the browser extension and to the output's page, on 127.0.0.1 only.

    Args:
        width: Output width (even, for I420's half-size chroma planes).
        height: Output height (even).
        fps: The frame rate the extension's camera announces.
        port: The loopback port (``DEFAULT_PORT`` by default; 0 picks a free one, see ``port`` after opening).
        picture_format: ``"jpeg-rect"`` (the default: the changed rectangle as a JPEG), ``"jpeg"`` (the whole frame
            as a JPEG) or ``"i420"`` (raw YUV 4:2:0); see the module's docstring. ``jpeg-rect`` at an odd size
            sends ``jpeg`` (the page's copy of the frame is I420, whose chroma planes need an even size).
        quality: JPEG quality, 1-100 (``"jpeg"`` only).
        mirror: Flip what the call shows left to right (``--mirror-output``, as the virtual camera does).
        search_everywhere: ``jpeg-rect``: look for what changed in the whole frame even where the frames' infos say
            it is still (``FrameInfo.still_outside``): the benchmarks' "before".
    """

    name = "browser"

    def __init__(self, *, width: int, height: int, fps: float, port: int = DEFAULT_PORT,
                 picture_format: str = "jpeg-rect", quality: int = JPEG_QUALITY, mirror: bool = False,
                 search_everywhere: bool = False) -> None:
        try:
            from websockets.sync.server import serve
        except ImportError as err:
            raise SinkUnavailable("the browser output needs websockets (pip install websockets)") from err
        if picture_format not in FORMATS:
            raise ValueError(f"picture_format: expected one of {', '.join(FORMATS)}, got {picture_format!r}")
        if picture_format == "i420" and (width % 2 or height % 2):
            raise SinkUnavailable(f"the browser output sends I420, which needs an even size: got {width}x{height}; "
                                  f"choose another with --output-size")
        if picture_format == "jpeg-rect" and (width % 2 or height % 2):
            logger.info("browser output: whole-frame JPEGs at the odd size %dx%d (rectangles need an even size)",
                        width, height)
            picture_format = "jpeg"
        self.size = (width, height)
        self.fps = float(fps)
        self.format = picture_format
        self.quality = int(quality)
        self.mirror = mirror
        self._closed = False
        self._lock = threading.Condition()
        # The newest frame: I420 message (header included) or BGR frame, its number, epoch ms received.
        self._latest: tuple[bytearray | np.ndarray, int, float] | None = None
        self._picture: Picture | None = None
        self._number = 0
        self.viewers = 0
        self.received = 0
        self.encoded = 0  # pictures made for viewers (repeats not counted)
        self.repeats = 0  # frames identical to the one before, sent as a header alone
        self.encode_cpu_s = 0.0  # the picture thread's CPU time (benchmarks read it)
        self.pixels_sent = 0  # "jpeg-rect": pixels in the pictures made, whole frames and rectangles
        self.rects = 0  # "jpeg-rect": pictures made of a rectangle alone
        self._want_whole = False  # a viewer lacks the picture the newest rectangle goes on ("jpeg-rect")
        self._kept: np.ndarray | None = None  # "jpeg-rect": the newest frame (RGB); send() alone writes it
        self._dirty: Rect | None = None  # "jpeg-rect": what changed in it since the last picture
        self._still: StillOutside = None  # "jpeg-rect": the kept frame's ``FrameInfo.still_outside``
        self.search_everywhere = search_everywhere
        try:
            self.server = serve(self._viewer, "127.0.0.1", port, process_request=self._http, compression=None,
                                origins=None, max_size=2**16, close_timeout=1.0)
        except OSError as err:
            raise SinkUnavailable(f"the browser output cannot listen on 127.0.0.1:{port} ({err.strerror or err}); "
                                  f"choose another port with --output browser:PORT") from err
        self.port = self.server.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.allowed_origins = {EXTENSION_ORIGIN, f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}
        self._serving = threading.Thread(target=self.server.serve_forever, name="browser-server", daemon=True)
        self._serving.start()
        self._pictures = threading.Thread(target=self._picture_loop, name="browser-pictures", daemon=True)
        self._pictures.start()
        logger.info("browser output: %s (the fomm-live extension's camera; open it to watch), %dx%d at %.3g fps",
                    self.url, width, height, fps)

    # -- the pipeline's side --------------------------------------------------------------------------------------

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        """Keep the newest frame, converted for the picture thread: the conversion is the copy the sink needs anyway
        (the pipeline may reuse its buffers). JPEG: to BGR, 0.34 ms at 1280x720 on the 2-core test CPU (a plain copy
        is 0.29 ms). I420: straight into the message sent, 0.63 ms (the virtual camera converts on this thread too).
        JPEG rectangles: only the pixels that changed are copied into the kept frame (RGB), and their rectangle added
        to the one the next picture sends; finding it (0.3-0.8 ms) costs about what the whole copy would, and the
        picture thread then converts only the rectangle. Nothing is kept while no viewer is connected."""
        check_frame(frame, self.size)
        if not self.viewers:
            with self._lock:
                self.received += 1
            return
        if self.mirror:
            frame = cv2().flip(frame, 1)
        received_ms = time.time() * 1000.0
        with self._lock:
            number = self._number = self._number + 1
        changed = None
        if self.format == "jpeg-rect":
            converted, kept, within = None, self._kept, self._within(info.still_outside)
            changed = whole_rect(self.size) if kept is None else changed_rect(frame, kept, within=within)
        elif self.format == "i420":
            width, height = self.size
            converted = bytearray(HEADER.size + width * height * 3 // 2)
            HEADER.pack_into(converted, 0, number, received_ms)
            planes = np.frombuffer(converted, np.uint8, offset=HEADER.size).reshape(height * 3 // 2, width)
            cv2().cvtColor(frame, cv2().COLOR_RGB2YUV_I420, dst=planes)  # Y, then U, then V
        else:
            converted = cv2().cvtColor(frame, cv2().COLOR_RGB2BGR)
        with self._lock:
            self.received += 1
            if changed is not None:
                if self._kept is None:
                    self._kept = np.array(frame)
                else:
                    region = slices(changed)
                    self._kept[region] = frame[region]
                self._dirty = changed if self._dirty is None else union(self._dirty, changed)
            if self._latest is None or self._latest[1] < number:
                self._latest = (converted, number, received_ms)
            self._lock.notify_all()

    def _within(self, still: StillOutside) -> Rect | None:
        """Where the frame may differ from the kept one: both frames' boxes when they name the same background (the
        frames are that background everywhere else), or None (anywhere)."""
        before, self._still = self._still, still
        if self.search_everywhere or still is None or before is None or still[0] != before[0]:
            return None
        (x0, y0, x1, y1), (u0, v0, u1, v1), width = still[1], before[1], self.size[0]
        left, right = (width - max(x1, u1), width - min(x0, u0)) if self.mirror else (min(x0, u0), max(x1, u1))
        top, bottom = max(min(y0, v0), 0), min(max(y1, v1), self.size[1])
        return Rect(max(left, 0), top, min(right, width) - max(left, 0), bottom - top)  # mirror: the boxes unflipped

    # -- the picture thread ---------------------------------------------------------------------------------------

    def _picture_loop(self) -> None:
        done = 0
        previous: bytearray | np.ndarray | None = None  # the last picture's source, to spot a repeat
        period, due = 1.0 / (max(self.fps, 1.0) * PACE_MARGIN), 0.0
        whole_at = 0.0  # perf_counter of the last whole frame ("jpeg-rect")
        while True:
            with self._lock:
                self._lock.wait_for(lambda done=done: self._closed or (
                    self.viewers > 0 and self._latest is not None and (self._latest[1] != done or self._want_whole)))
                # About fps pictures a second: a frame that comes early waits for its turn, and a newer one that
                # comes meanwhile replaces it (perf_counter deadlines, as the virtual camera's pacing thread). A turn
                # may start half a period early, and the turns are PACE_MARGIN faster than fps: turns at exactly
                # the frames' rate would lock onto a phase where every frame waits (a 30 fps feeder's frames waited
                # 17 ms more at the median in one run, 7 ms in another); a little faster, they drift back in step.
                now = time.perf_counter()
                if now < due - period / 2:
                    self._lock.wait_for(lambda: self._closed, timeout=due - period / 2 - now)
                if self._closed:
                    return
                converted, number, received_ms = self._latest
                now = time.perf_counter()
                due = due + period if now - due < period else now + period  # late by a turn or more: start afresh
                want_whole, self._want_whole = self._want_whole, False
                start = time.thread_time()
                current = self._picture
                if self.format == "jpeg-rect":
                    whole = want_whole or now - whole_at >= WHOLE_EVERY_S or current is None
                    rect, part = self._take_dirty(whole)
            if self.format == "jpeg-rect":
                picture = self._rect_picture(rect, part, current, number, received_ms)
                if picture.base == 0 and (whole or picture.picture == number):
                    whole_at = now
            else:
                header = HEADER.pack(number, received_ms)
                if current is not None and same_picture(converted, previous, self.format, self.size[1], HEADER.size):
                    picture = current._replace(number=number, header=header)
                elif self.format == "i420":
                    picture = Picture(number, header, number, converted)
                else:
                    picture = Picture(number, header, number, header + encode_jpeg_bgr(converted, self.quality))
            spent = time.thread_time() - start
            made = picture.picture == number
            if made:
                previous = converted
            done = number
            with self._lock:
                self._picture = picture
                if made:
                    self.encoded += 1
                    if self.format == "jpeg-rect":
                        self.pixels_sent += rect_of(picture).area
                        self.rects += picture.base != 0
                else:
                    self.repeats += 1
                self.encode_cpu_s += spent
                self._lock.notify_all()

    def _take_dirty(self, whole: bool) -> tuple[Rect | None, np.ndarray | None]:
        """``jpeg-rect``, under the lock: what changed since the last picture (None: nothing), and the kept frame's
        pixels there as BGR (the whole frame when ``whole`` or when most of it changed); then nothing has."""
        dirty, self._dirty = self._dirty, None
        if dirty is None and not whole:
            return None, None
        rect = whole_rect(self.size) if whole or dirty.area > WHOLE_ABOVE * self.size[0] * self.size[1] else dirty
        return dirty, cv2().cvtColor(self._kept[slices(rect)], cv2().COLOR_RGB2BGR)

    def _rect_picture(self, dirty: Rect | None, part: np.ndarray | None, current: Picture | None, number: int,
                      received_ms: float) -> Picture:
        """The ``jpeg-rect`` picture: a repeat of ``current`` when nothing changed and ``part`` is None; ``current``'s
        picture again, whole, for a viewer that lacks it when nothing changed; else ``part``, the changed rectangle
        on top of ``current``, or the whole frame."""
        width, height = self.size
        if part is None:
            return current._replace(number=number, header=RECT_HEADER.pack(number, received_ms, 0, 0, 0, 0, 0))
        if dirty is None:
            number = current.picture  # the same picture, whole, for a viewer that lacks it
        whole = part.shape[:2] == (height, width)
        rect, base = (whole_rect(self.size), 0) if whole else (dirty, current.picture)
        header = RECT_HEADER.pack(number, received_ms, base, *rect)
        return Picture(number, header, number, header + encode_jpeg_bgr(part, self.quality), base)

    # -- the server's side ----------------------------------------------------------------------------------------

    def _http(self, connection, request):
        """Answers plain HTTP (the page) and refuses handshakes from any other Origin or Host; None lets an allowed
        WebSocket handshake go on."""
        host = request.headers.get("Host", "")
        if host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return connection.respond(HTTPStatus.FORBIDDEN, "fomm-live: wrong Host\n")
        path = request.path.split("?", 1)[0]
        if path == "/stream":
            origin = request.headers.get("Origin")
            if origin not in self.allowed_origins:
                logger.warning("browser output: refused a connection from origin %s", origin or "(none)")
                return connection.respond(HTTPStatus.FORBIDDEN, "fomm-live: this origin may not watch the stream\n")
            return None
        if path == "/":
            from websockets.datastructures import Headers
            from websockets.http11 import Response

            body = page_html()
            # Not to be framed by other sites.
            headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                               ("Content-Security-Policy", "frame-ancestors 'none'"), ("X-Frame-Options", "DENY"),
                               ("Cache-Control", "no-store")])
            return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)
        return connection.respond(HTTPStatus.NOT_FOUND, "fomm-live: not found\n")

    def _viewer(self, connection) -> None:
        """One viewer's thread: the stream's description, then the newest picture whenever there is one (the header
        alone when this viewer has that picture already). A rectangle goes only to a viewer that has the picture it
        goes on; one that has not (it joined, or it was too slow for the one before) asks for the next picture whole
        and gets nothing meanwhile. An extension older than ``MIN_PROTOCOL`` gets the update card instead."""
        protocol = viewer_protocol(connection.request.path)
        if protocol < MIN_PROTOCOL:  # not counted as a viewer: it costs the stream nothing
            send_update_card(connection, size=self.size, fps=self.fps, quality=self.quality, protocol=protocol,
                             wait_closed=self._wait_closed)
            return
        with self._lock:
            self.viewers += 1
            self._lock.notify_all()
        seen: Picture | None = None
        shown = 0
        try:
            width, height = self.size
            connection.send(json.dumps({"width": width, "height": height, "fps": self.fps, "format": self.format,
                                        "protocol": PROTOCOL}))
            while True:
                with self._lock:
                    self._lock.wait_for(lambda seen=seen: self._closed or (
                        self._picture is not None and self._picture is not seen), timeout=1.0)
                    if self._closed:
                        return
                    picture = self._picture
                if picture is None or picture is seen:
                    connection.ping()  # notices a viewer that is gone within a second
                    continue
                seen = picture
                if picture.picture == shown:
                    connection.send(picture.header)
                elif picture.base in (0, shown):
                    connection.send(picture.message)
                    shown = picture.picture
                else:
                    with self._lock:
                        self._want_whole = True
                        self._lock.notify_all()
        except Exception as err:  # noqa: BLE001 - a viewer that leaves ends its own thread, nothing else
            logger.debug("browser output: a viewer left (%s)", err)
        finally:
            with self._lock:
                self.viewers -= 1

    def _wait_closed(self, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self._closed, timeout=timeout)

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self.server.shutdown()
        self._serving.join(timeout=2.0)
        self._pictures.join(timeout=2.0)
        if self.received:
            logger.info("browser output: %d frames received, %d pictures made for viewers, %d repeats sent as such",
                        self.received, self.encoded, self.repeats)
