"""``RemoteBackend``: the FOMM on a ``fomm-live serve`` server, as a backend of the live loop.

Everything but the networks stays local: capture, face tracking, the crop, calibration decisions, paste-back, label
and sinks; keypoint smoothing happens where the keypoints are found, on the server, with the live loop's options and
media times (``CropMotion.smoothed_by``). ``detect`` keeps the face crop (``CropMotion``); ``render`` sends it and
returns the face the server rendered; ``calibrate`` sends the neutral crop; the avatar's crop is uploaded once and
then addressed by its content hash. The full photo never leaves the machine.

Photo framing's detail transfer carries the photo's fine detail along the model's dense motion field: its first
``render(motion, detail=True)`` asks the server for the field (``field`` in the stream's setup), and every
reply then brings the frame's deformation and occlusion map beside the face (``protocol.encode_field``: fixed point,
under a hundredth of a model pixel off); the paste-back runs here, on the CPU (``device``). Without photo framing,
or with ``--no-detail``, ``render`` is called without the motion and no field is asked for or sent (a stream that
asked for it and then renders without it asks it off).

One request at a time: ``render`` waits for its frame, so at most one frame is in flight, and the live loop's
newest-frame-wins hand-off in front of the model stage decides what is sent next. On a live or paced input the
server's frames are keyframes (``inbetweens``): every camera frame that comes while a request is out gets an
in-between made here from the newest one (``live.loop.keyframes``), so a busy server or a slow link still gives an
output at the camera's rate.

When the server is slow or gone: at start the backend retries for ``START_TIMEOUT_S``; during a run it reconnects
with back-off (saying so once, and once more when it is back), replaying the stream's setup (motion field, avatar,
neutral pose). Meanwhile a live or paced input gets the last rendered face (and its field) again, marked
``Rendered.held`` (the output keeps its last frame and its frame count; with in-betweens the newest real keyframe
goes on being moved by the face); a lossless input (a file without ``--realtime``) waits for the server instead,
so no frame is skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from fomm_live.live.backends import Backend, MotionField, Rendered, check_strengths
from fomm_live.live.errors import UserError
from fomm_live.live.remote.protocol import (
    CODECS,
    PROTOCOL_VERSION,
    STREAM_ROUTE,
    Field,
    ProtocolError,
    content_hash,
    decode_field,
    decode_image,
    encode_image,
    pack,
    read_token_file,
    split_frame,
    unpack,
)

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0  # a server just started needs ~10 s for Ray and its replica before it answers
REPLY_TIMEOUT_S = 10.0  # a reply slower than this: the server is taken as gone
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between reconnection attempts, the last one repeated


class RemoteError(RuntimeError):
    """The server answered a request with an error (the message is the server's, one line)."""


@dataclass(frozen=True)
class CropMotion:
    """What ``RemoteBackend.detect`` hands on: the driving face crop itself (the keypoints are found remotely).

    The live loop's ``MotionSmoother`` cannot filter keypoints it never sees: it calls ``smoothed_by``, which stamps
    the crop with the smoother's options and the media time, and the server smooths the keypoints it finds with them.
    Unstamped (``--no-smoothing``): the server does not smooth.
    """

    crop: np.ndarray
    t: float | None = None
    smoothing: tuple[float, float] | None = None  # (min_cutoff, beta) of the live loop's keypoint smoother

    def smoothed_by(self, smoother: Any, t: float) -> CropMotion:
        """This crop, to be smoothed on the server by ``smoother``'s options (a ``live.loop.smoothing.MotionSmoother``)
        at media time ``t``."""
        return replace(self, t=float(t), smoothing=(float(smoother.min_cutoff), float(smoother.beta)))

    def header(self) -> dict[str, Any]:
        """The ``t`` and ``smooth`` fields of its ``calibrate`` or ``frame`` message (none: not smoothed)."""
        if self.smoothing is None or self.t is None:
            return {}
        return {"t": self.t, "smooth": list(self.smoothing)}


def stream_url(url: str) -> str:
    """``http://HOST:PORT[/PREFIX]`` (or ``ws://``, ``https://``, ``wss://``) -> the WebSocket URL of the stream
    route."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    scheme = {"http": "ws", "ws": "ws", "https": "wss", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UserError(f"--remote {url!r}: expected http://HOST:PORT (or ws://HOST:PORT)")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + STREAM_ROUTE, "", ""))


def read_token(path: str | None) -> str | None:
    """The token of the token file ``path`` (``protocol.read_token_file``: its first non-empty line; None: no
    token)."""
    if path is None:
        return None
    try:
        return read_token_file(path)
    except OSError as err:
        raise UserError(f"cannot read --token-file {path}: {err.strerror or err}") from err
    except ValueError:
        raise UserError(f"--token-file {path} is empty: put the token on its first line") from None


class RemoteBackend(Backend):
    """The remote FOMM as a ``live.backends.Backend``.

    Args:
        url: The server, ``http://HOST:PORT`` (``ws://`` too).
        token: The server's token (None: the server runs without one, on loopback).
        codec: ``jpeg`` (default, quality ``protocol.JPEG_QUALITY``) or ``png`` (lossless).
        relative: Relative motion from the neutral pose (else absolute keypoints).
        adapt_scale: Scale the motion by the source/neutral face size ratio.
        lossless: Wait for the server when it is gone instead of repeating the last face (file input, every frame).
        start_timeout: How long to keep trying at start.
    """

    name = "fomm-remote"
    device = "cpu"  # its frames and fields arrive here: photo framing pastes with ``live.framing.pasteback_field``
    motion_kind = "field"
    inbetweens = True  # the server's frames are keyframes; in-betweens are made here (``live.loop.keyframes``)

    def __init__(self, url: str, *, token: str | None = None, codec: str = "jpeg", relative: bool = True,
                 adapt_scale: bool = True, lossless: bool = False, start_timeout: float = START_TIMEOUT_S) -> None:
        if codec not in CODECS:
            raise UserError(f"--remote-codec {codec!r}: choose from {', '.join(CODECS)}")
        try:
            from websockets.sync import client as ws_client  # noqa: F401
        except ImportError:
            raise UserError("--remote needs the serve extra: pip install 'fomm-live[serve]'") from None
        self.url = url
        self.ws_url = stream_url(url)
        self.token = token
        self.codec = codec
        self.relative = relative
        self.adapt_scale = adapt_scale
        self.lossless = lossless
        self.size = 256
        self.reconnects = 0
        self._ws: Any = None
        self._avatar: np.ndarray | None = None
        self._avatar_hash: str | None = None
        self._neutral: CropMotion | None = None
        self._held: tuple[np.ndarray, Field | None] | None = None  # the last face and its field, for outages
        self._field = False  # the stream asked for the motion field (replayed on reconnection)
        self._next_attempt = 0.0
        self._failures = 0
        self._frame_id = 0
        self._strengths = (1.0, 1.0)  # (head, expression), sent with every frame that is not at (1, 1)
        self._gone = False
        self._connect_until(time.monotonic() + start_timeout, first=True)

    # ----------------------------------------------------------------------------------------- connection
    def _open(self) -> None:
        """Connect and replay the stream's setup; raises ``OSError`` (or a websockets error) when unreachable."""
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self._avatar_hash is not None:  # Serve routes a (re)connection to a replica that holds this avatar
            headers["serve_multiplexed_model_id"] = self._avatar_hash
        # Entered by hand: the connection outlives this call (``close`` ends it); newer websockets releases warn
        # when ``connect`` is not entered.
        ws = connect(self.ws_url, additional_headers=headers or None, open_timeout=5, close_timeout=1,
                     max_size=None).__enter__()
        try:
            self._ws = ws
            ready = self._request({"type": "hello", "version": PROTOCOL_VERSION, "codec": self.codec,
                                   "relative": self.relative, "adapt_scale": self.adapt_scale})[0]
            self.size = int(ready["image_size"])
            if self._field:
                self._request({"type": "field", "want": True})
            if self._avatar is not None:
                self._send_avatar()
            if self._neutral is not None:  # a new stream's smoother starts afresh: the pose is this crop's keypoints
                self._request({"type": "calibrate", **self._neutral.header()}, encode_image(self._neutral.crop, "png"))
        except BaseException:
            self._drop()
            raise

    def _connect_until(self, deadline: float, *, first: bool) -> None:
        from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

        said = False
        attempt = 0
        while True:
            try:
                self._open()
                return
            except InvalidURI as err:
                raise UserError(f"--remote {self.url!r}: {err}") from err
            except RemoteError as err:
                raise UserError(f"the server at {self.url} refused the stream: {err}") from err
            except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as err:
                if _closed_for_policy(err):  # the token was refused, and the close overtook the server's message
                    raise UserError(f"the server at {self.url} refused the stream: wrong or missing token: pass "
                                    "the server's token with --token-file") from err
                if time.monotonic() >= deadline:
                    raise UserError(f"no fomm-live server at {self.url} ({type(err).__name__}: {err}); start one "
                                    "with 'fomm-live serve' and check the address") from err
                if not said:
                    logger.info("%s %s; retrying for up to %.0f s", "waiting for the server at" if first
                                else "reconnecting to", self.url, max(deadline - time.monotonic(), 0))
                    said = True
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1

    def _drop(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail in many ways; it is gone either way
                pass

    def _request(self, header: dict, payload: bytes = b"") -> tuple[dict, bytes]:
        """Send one message and wait for its answer; a server ``error`` becomes ``RemoteError`` (and a fatal one
        closes the connection)."""
        if self._ws is None:
            raise ConnectionError("not connected")
        self._ws.send(pack(header, payload))
        reply, data = unpack(self._ws.recv(timeout=REPLY_TIMEOUT_S))
        if reply["type"] == "error":
            if reply.get("fatal"):
                self._drop()
            raise RemoteError(reply.get("message", "unknown error"))
        return reply, data

    def _send_avatar(self) -> None:
        reply = self._request({"type": "avatar", "hash": self._avatar_hash})[0]
        if not reply.get("known"):
            self._request({"type": "upload", "hash": self._avatar_hash}, encode_image(self._avatar, "png"))

    def _call(self, fn):
        """Run ``fn`` against the server; on a lost connection, reconnect (lossless: wait up to START_TIMEOUT_S;
        else once per back-off step) and return None when the server is still away."""
        from websockets.exceptions import WebSocketException

        while True:
            if self._ws is None and not self._reconnect():
                return None
            try:
                result = fn()
                if self._failures:
                    logger.warning("the server at %s is back; animating again", self.url)
                    self._failures = 0
                return result
            except (OSError, TimeoutError, WebSocketException) as err:
                self._drop()
                if not self._failures:
                    logger.warning("lost the server at %s (%s); %s and reconnecting", self.url, type(err).__name__,
                                   "waiting" if self.lossless else "keeping the last frame")
                self._failures += 1

    def _reconnect(self) -> bool:
        if self.lossless:
            if self._gone:  # waited START_TIMEOUT_S once already: fail fast, so that the run stops
                raise ConnectionError(f"the server at {self.url} is gone")
            try:
                self._connect_until(time.monotonic() + START_TIMEOUT_S, first=False)
            except UserError:
                self._gone = True
                raise
            self.reconnects += 1
            return True
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        try:
            self._open()
        except RemoteError:
            raise
        except Exception:  # noqa: BLE001 - unreachable in any way: try again after the next back-off step
            step = BACKOFF_S[min(self._failures, len(BACKOFF_S) - 1)]
            self._failures += 1
            self._next_attempt = now + step
            return False
        self.reconnects += 1
        return True

    # --------------------------------------------------------------------------------------------- backend
    @property
    def calibrated(self) -> bool:
        return self._neutral is not None or not self.relative

    def set_source(self, image: np.ndarray) -> None:
        self._avatar = np.ascontiguousarray(image)
        self._avatar_hash = content_hash(self._avatar)
        try:
            self._call(self._send_avatar)  # when the server is away, the reconnection sends it
        except RemoteError as err:
            raise UserError(f"the server at {self.url} refused the avatar: {err}") from err

    def detect(self, frame: np.ndarray) -> CropMotion:
        return CropMotion(np.ascontiguousarray(frame))

    def calibrate(self, motion: CropMotion) -> None:
        self._neutral = motion
        self._call(lambda: self._request({"type": "calibrate", **motion.header()}, encode_image(motion.crop, "png")))

    def reset_calibration(self) -> None:
        self._neutral = None
        self._call(lambda: self._request({"type": "reset"}))

    @property
    def strengths(self) -> tuple[float, float]:
        """(head, expression) strength, each from 0 to 2; the server applies them from the next frame on."""
        return self._strengths

    def set_strengths(self, head: float, expression: float) -> None:
        """Send these strengths with the next frames (``models.strength``, applied on the server per stream).

        Raises:
            ValueError: a strength outside 0..2, or a strength other than 1 with absolute motion.
        """
        self._strengths = check_strengths(head, expression, relative=self.relative)

    def render(self, motion: CropMotion, *, detail: bool = False) -> Rendered:
        """The face the server rendered (``frame``: size x size x 3 uint8) and, with ``detail``, its motion
        field (``field``: h x w x 2 float32 deformation, h x w float32 occlusion map when the model estimates one;
        None for a face held from before the field was asked for)."""
        if detail != self._field:
            self._want_field(detail)
        (face, field), held = self._render(motion)
        if not detail or field is None:
            return Rendered(face, held=held)
        deformation, occlusion = field
        return Rendered(face, field=MotionField(deformation, occlusion), held=held)

    def _want_field(self, on: bool) -> None:
        """Ask for the motion field with every frame (or no longer); when the server is away, the reconnection's
        setup asks."""
        self._field = on
        logger.info("detail transfer: %s", "the server sends the motion field with each face" if on
                    else "no motion field from the server")
        self._call(lambda: self._request({"type": "field", "want": on}))

    def _render(self, motion: CropMotion) -> tuple[tuple[np.ndarray, Field | None], bool]:
        """The face the server rendered for ``motion`` and its motion field when the stream asked for it (the last
        ones again when the server is away, see the module docstring), and whether they are those last ones."""
        self._frame_id += 1
        frame_id = self._frame_id

        def send() -> tuple[np.ndarray, Field | None]:
            header = {"type": "frame", "id": frame_id, **motion.header()}
            if self._strengths != (1.0, 1.0):
                header["strength"] = list(self._strengths)
            reply, data = self._request(header, encode_image(motion.crop, self.codec))
            if reply.get("type") != "frame" or reply.get("id") != frame_id:
                raise RemoteError(f"expected frame {frame_id}, got {reply}")
            image, field = split_frame(reply, data)
            if self._field and field is None:
                raise ProtocolError(f"frame {frame_id} came without the motion field the stream asked for")
            return decode_image(image), None if field is None else decode_field(reply["field"], field)

        rendered = self._call(send)
        if rendered is None:
            if self._held is None:
                raise ConnectionError(f"the server at {self.url} is away and no frame was rendered yet")
            return self._held, True
        self._held = rendered
        return rendered, False

    def close(self) -> None:
        """Close the stream; safe to call twice."""
        self._drop()


def _closed_for_policy(err: BaseException) -> bool:
    """True when the server closed the WebSocket with 1008 (policy violation), which it does only for a bad token."""
    close = getattr(err, "rcvd", None)  # websockets' ConnectionClosed: the close frame the server sent
    return getattr(close, "code", None) == 1008
