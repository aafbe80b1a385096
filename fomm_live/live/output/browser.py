"""The browser output (``--output browser``): the output frames on loopback, for the fomm-live browser extension and
for a plain page at ``http://127.0.0.1:PORT/`` that shows the live stream.

Transport: one WebSocket per viewer at ``/stream``; a text message first ({"width", "height", "fps"}), then one
binary message per frame: a 12-byte header (uint32 frame number, float64 epoch milliseconds at which the output
received the frame, both little-endian) and the frame as a JPEG. JPEG was chosen over raw RGB by measurement
(``benchmarks/browser.py``, RESULTS.md 2026-12-06): raw 1280x720 frames are 2.7 MB each (83 MB/s at 30 fps through
the sockets, the extension's frame and the page, and a per-pixel copy in the page's script), a JPEG at quality 85
35 kB on the bench clip (1.9 ms to encode on the 2-core test CPU, decoded by the browser) at about 50 dB.

Security: the server binds 127.0.0.1 only, and the WebSocket handshake is refused (HTTP 403) unless its Origin is the
extension's own (``chrome-extension://`` + the fixed id its manifest key gives) or this output's own page: another
website open in the same browser cannot watch the stream. A Host header other than 127.0.0.1 / localhost at the port
is refused too (DNS rebinding). The extension adds its own checks (a one-time ticket for its frame, the page's
camera permission: see its scripts). The frames are the sinks' frames, so the "AI-generated" label is on them.

The failure it survives: a viewer that is slow or gone. Encoding runs on this output's own thread, only while a
viewer is connected, always on the newest frame (older ones are skipped, never queued); each viewer's connection
thread sends the newest encoded frame when it can, so one slow viewer delays no one else and never the model.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from http import HTTPStatus
from importlib import resources
from pathlib import Path

import numpy as np

from fomm_live.live.errors import SinkUnavailable
from fomm_live.live.media import cv2
from fomm_live.live.output.sinks import FrameInfo, check_frame

logger = logging.getLogger(__name__)

DEFAULT_PORT = 47120
# The unpacked Manifest V3 extension (its scripts say what each part does); its default port is DEFAULT_PORT too.
EXTENSION_DIR = Path(__file__).resolve().parent / "extension"
# The id Chromium derives from the public key in extension/manifest.json ("key"): the first 32 hex digits of its
# SHA-256, written with the letters a-p. tests/test_browser_extension.py checks that they agree.
EXTENSION_ID = "hijoelcenfodncdpepehcidanefcbojo"
EXTENSION_ORIGIN = f"chrome-extension://{EXTENSION_ID}"
JPEG_QUALITY = 85
HEADER = struct.Struct("<Id")  # frame number, epoch ms at which the output received the frame


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


def page_html() -> bytes:
    """The output's own page (``browser_page.html`` beside this module)."""
    return resources.files("fomm_live.live.output").joinpath("browser_page.html").read_bytes()


class BrowserSink:
    """Serves the output frames to the browser extension and to the output's page, on 127.0.0.1 only.

    Args:
        width: Output width.
        height: Output height.
        fps: The frame rate the extension's camera announces.
        port: The loopback port (``DEFAULT_PORT`` by default; 0 picks a free one, see ``port`` after opening).
        quality: JPEG quality, 1-100.
        mirror: Flip what the call shows left to right (``--mirror-output``, as the virtual camera does).
    """

    name = "browser"

    def __init__(self, *, width: int, height: int, fps: float, port: int = DEFAULT_PORT,
                 quality: int = JPEG_QUALITY, mirror: bool = False) -> None:
        try:
            from websockets.sync.server import serve
        except ImportError as err:
            raise SinkUnavailable("the browser output needs websockets (pip install websockets)") from err
        self.size = (width, height)
        self.fps = float(fps)
        self.quality = int(quality)
        self.mirror = mirror
        self._closed = False
        self._lock = threading.Condition()
        self._latest: tuple[np.ndarray, int, float] | None = None  # BGR frame, number, epoch ms received
        self._encoded: tuple[int, bytes] | None = None  # number, message
        self._number = 0
        self.viewers = 0
        self.received = 0
        self.encoded = 0
        self.encode_cpu_s = 0.0  # thread CPU time spent encoding (benchmarks read it)
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
        self._encoder = threading.Thread(target=self._encode_loop, name="browser-encoder", daemon=True)
        self._encoder.start()
        logger.info("browser output: %s (the fomm-live extension's camera; open it to watch), %dx%d at %.3g fps",
                    self.url, width, height, fps)

    # -- the pipeline's side --------------------------------------------------------------------------------------

    def send(self, frame: np.ndarray, info: FrameInfo) -> None:
        """Keep the newest frame, converted to BGR for the encoder thread: the conversion is the copy the sink needs
        anyway (the pipeline may reuse its buffers), 0.38 ms at 1280x720 on the 2-core test CPU against 0.31 ms for a
        plain copy; nothing is kept while no viewer is connected."""
        check_frame(frame, self.size)
        if not self.viewers:
            with self._lock:
                self.received += 1
            return
        frame = cv2().cvtColor(frame, cv2().COLOR_RGB2BGR)
        if self.mirror:
            frame = cv2().flip(frame, 1)
        with self._lock:
            self._number += 1
            self.received += 1
            self._latest = (frame, self._number, time.time() * 1000.0)
            self._lock.notify_all()

    # -- the encoder thread ---------------------------------------------------------------------------------------

    def _encode_loop(self) -> None:
        done = 0
        while True:
            with self._lock:
                self._lock.wait_for(lambda done=done: self._closed or (
                    self.viewers > 0 and self._latest is not None and self._latest[1] != done))
                if self._closed:
                    return
                frame, number, received_ms = self._latest
            start = time.thread_time()
            message = HEADER.pack(number, received_ms) + encode_jpeg_bgr(frame, self.quality)
            spent = time.thread_time() - start
            done = number
            with self._lock:
                self._encoded = (number, message)
                self.encoded += 1
                self.encode_cpu_s += spent
                self._lock.notify_all()

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
        """One viewer's thread: the stream's description, then the newest encoded frame whenever there is one."""
        with self._lock:
            self.viewers += 1
            self._lock.notify_all()
        sent = 0
        try:
            connection.send(json.dumps({"width": self.size[0], "height": self.size[1], "fps": self.fps}))
            while True:
                with self._lock:
                    self._lock.wait_for(lambda sent=sent: self._closed or (
                        self._encoded is not None and self._encoded[0] != sent), timeout=1.0)
                    if self._closed:
                        return
                    encoded = self._encoded
                if encoded is None or encoded[0] == sent:
                    connection.ping()  # notices a viewer that is gone within a second
                    continue
                sent = encoded[0]
                connection.send(encoded[1])
        except Exception as err:  # noqa: BLE001 - a viewer that leaves ends its own thread, nothing else
            logger.debug("browser output: a viewer left (%s)", err)
        finally:
            with self._lock:
                self.viewers -= 1

    def close(self) -> None:
        if self._closed:
            return
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self.server.shutdown()
        self._serving.join(timeout=2.0)
        self._encoder.join(timeout=2.0)
        if self.received:
            logger.info("browser output: %d frames received, %d encoded for viewers", self.received, self.encoded)


def encode_jpeg_bgr(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """A contiguous BGR frame as JPEG bytes (OpenCV's libjpeg-turbo; 4:2:0). Contiguous matters: a channel-reversed
    view (``rgb[..., ::-1]``) took 7.2 ms at 1280x720 against 1.9 ms for a contiguous BGR frame on the 2-core test
    CPU (load 8), OpenCV copying it element by element first."""
    ok, data = cv2().imencode(".jpg", frame, [cv2().IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()
