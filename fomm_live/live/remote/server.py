"""The Ray Serve application behind ``fomm-live serve``: a FastAPI WebSocket ingress whose replicas hold the FOMM
networks and animate the face crops of many streams in shared batches.

- ``fomm-live serve`` puts its ingress (``live.remote.ingress``) in front: the app then takes the client's address
  from the ingress (beside the per-launch secret; a request without it is refused) and leaves Origin and Host to it.
- One WebSocket per stream (``protocol.STREAM_ROUTE``); the stream's state (codec, motion options, neutral pose,
  avatar) lives in its handler on the replica that accepted it.
- Avatars are addressed by the content hash of their crop, encoded once per replica and scoped by client
  (``live.remote.avatars``): a client reaches by hash only the avatars it uploaded itself, and its uploads evict
  its own avatars before anyone else's. A stream holds its own avatar's encoding, so eviction never breaks a running
  stream; it only means a later stream uploads it again.
- Frames from all streams of a replica go through one ``serve.batch`` call (``BATCH_WAIT_S`` at most) of
  ``live.remote.batch.render_frames``: keypoints, per-stream smoothing and normalisation, one decode of B frames from
  B cached sources (returning the motion field when a stream asked for it; the engines' fast paths compute it anyway).
- Every message is bounded (``live.remote.protocol``); a bad one gets an error on its stream and the replica goes on
  serving the others. With a token, each stream's handshake and ``GET /stats`` must carry it (compared in constant
  time); ``GET /stats`` reports the answering replica's streams, frames, motion fields sent and avatar-cache hits.

Imports Ray, FastAPI and torch: only ``live.cli.serve`` and the tests import it.
"""

# No "from __future__ import annotations": FastAPI reads the route parameters' annotations (Request, WebSocket)
# from the methods Serve wraps, and postponed (string) annotations are not resolved there.
import asyncio
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from ray import serve

from fomm_live.live.remote.avatars import AvatarCache
from fomm_live.live.remote.batch import FrameFailed, RenderedFrame, render_frames
from fomm_live.live.remote.decoding import DecoderPool, DecodeTimeout
from fomm_live.live.remote.guard import AddressSlots, Limits, forwarded_client, is_loopback, refusal
from fomm_live.live.remote.protocol import (
    CODECS,
    DEFAULT_MAX_FPS,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    STATS_ROUTE,
    STREAM_ROUTE,
    ProtocolError,
    content_hash,
    encode_field,
    encode_image,
    frame_reply,
    pack,
    read_token_file,
    strength_of,
    unpack,
)
from fomm_live.live.remote.session import (
    MAX_FRAME_ID,
    AvatarEncoding,
    Stream,
    UnknownAvatar,
    frame_id_of,
    hash_of,
    token_digest,
)

logger = logging.getLogger(__name__)

MAX_BATCH = 16  # 16 streams: the largest size the CPU sweep measures
BATCH_WAIT_S = 0.004  # 4 ms: a fraction of a 30 fps frame's 33 ms, enough for streams in step to meet


api = FastAPI(title="fomm-live serve")


@serve.deployment(max_ongoing_requests=256)
@serve.ingress(api)
class FommServer:
    """Replicas of the FOMM animation service.

    Args:
        checkpoint: The server's FOMM checkpoint (clients never send one).
        config: Its original-format config YAML or preset name.
        device: ``auto`` (CUDA when the replica has a GPU), ``cpu`` or ``cuda``.
        precision: ``auto`` (fp16 on CUDA), ``fp32``, ``fp16`` or ``bf16``.
        engine: ``auto``, ``eager``, ``tensorrt`` or ``onnxruntime``.
        token_sha256: ``token_digest`` of the token clients must send; None: no token (loopback only).
        max_fps: Frames per second per stream; faster streams are paced.
        allowed_origins: Web origins (``https://host[:port]``) whose pages may use the server; others are refused.
        limits: Streams per address and per replica, and the idle timeouts (``guard.Limits``).
        ingress_secret: The per-launch secret of ``fomm-live serve``'s ingress (``live.remote.ingress``): every
            request must carry it, and the client's address and the Origin and Host checks come from the ingress;
            None: clients reach Serve's proxy directly (a Serve config) and are checked here.
    """

    def __init__(self, *, checkpoint: str, config: str = "vox-256", device: str = "auto", precision: str = "auto",
                 engine: str = "auto", token_sha256: str | None = None, max_fps: float = DEFAULT_MAX_FPS,
                 allowed_origins: tuple[str, ...] = (), limits: Limits | None = None,
                 ingress_secret: str | None = None) -> None:
        from fomm_live.models import Animator

        self.animator = Animator.from_checkpoint(checkpoint, config, device=device, precision=precision,
                                                 engine=engine)
        self.size = self.animator.image_size
        self.token_sha256 = token_sha256
        self.max_fps = max_fps
        self.allowed_origins = tuple(o.rstrip("/").lower() for o in allowed_origins)
        self.limits = limits or Limits()
        self.ingress_secret = ingress_secret
        self.slots = AddressSlots(self.limits.streams, self.limits.streams_per_address, "streams")
        # One thread runs every model call of the replica: the networks are not shared between threads.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fomm-model")
        self.decoder = DecoderPool()  # the clients' images: decoded in worker processes, each bounded in time
        self.avatars = AvatarCache()
        self.counts = {"streams": 0, "streams_total": 0, "frames": 0, "batches": 0, "avatar_lookups": 0,
                       "avatar_cache_hits": 0, "avatar_encodings": 0, "fields": 0, "errors": 0,
                       "decode_timeouts": 0, "refused_streams": 0, "idle_closed": 0}
        logger.info("replica ready: %s on %s, %s", checkpoint, self.animator.device, self.animator.precision)

    # ------------------------------------------------------------------------------------------- model calls
    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _encode(self, image: np.ndarray) -> AvatarEncoding:
        import torch

        with torch.inference_mode():
            tensor = self.animator.to_tensor(image)
            return AvatarEncoding(self.animator.engine.encode(tensor), self.animator.engine.keypoints(tensor))

    def _keypoints(self, image: np.ndarray):
        import torch

        with torch.inference_mode():
            return self.animator.keypoints(image)

    def _render(self, items: list[tuple[np.ndarray, Stream, float | None]]
                ) -> list[RenderedFrame | FrameFailed]:
        results = render_frames(self.animator, items)
        self.counts["batches"] += 1
        return results

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def render_batch(self, items: list[tuple[np.ndarray, Stream, float | None]]
                           ) -> list[RenderedFrame | FrameFailed]:
        return await self._run(self._render, items)

    # ---------------------------------------------------------------------------------------------- routes
    def _authorized(self, value: str | None) -> bool:
        if self.token_sha256 is None:
            return True
        given = (value or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(token_digest(given), self.token_sha256)

    @api.get(STATS_ROUTE)
    async def stats(self, request: Request) -> JSONResponse:
        why = self._refusal(request)
        if why is not None:
            return JSONResponse({"error": why}, status_code=403)
        if not self._authorized(request.headers.get("authorization")):
            return JSONResponse({"error": "wrong or missing token"}, status_code=401)
        return JSONResponse(dict(self.counts, image_size=self.size, device=str(self.animator.device),
                                 precision=self.animator.precision, max_fps=self.max_fps))

    def _client(self, request: Request | WebSocket) -> str | None:
        """The client's address: as the ingress names it (None without its secret), or the connection's peer."""
        if self.ingress_secret is not None:
            return forwarded_client(request.headers, self.ingress_secret)
        return request.client.host if request.client else None

    def _refusal(self, request: Request | WebSocket) -> str | None:
        """Why this request's origin, host or address is refused (``guard.refusal``), or None. Behind the ingress,
        which checked them on the client's own request, only a request without the ingress's secret is refused."""
        if self.ingress_secret is not None:
            return None if self._client(request) else "this server is reached only at the address it serves on"
        return refusal(request.headers, self._client(request), token_required=self.token_sha256 is not None,
                       allowed_origins=self.allowed_origins)

    async def _end(self, ws: WebSocket, message: str, code: int, frame_id: Any = None) -> None:
        """Tells the client why in one message, then closes its stream."""
        self.counts["errors"] += 1
        try:
            await ws.send_bytes(pack({"type": "error", "fatal": True, "message": message, "id": frame_id}))
            await ws.close(code=code)
        except (WebSocketDisconnect, RuntimeError):  # it had left already
            pass

    @api.websocket(STREAM_ROUTE)
    async def stream(self, ws: WebSocket) -> None:
        await ws.accept()
        why = self._refusal(ws)
        if why is not None:
            return await self._end(ws, why, 1008)
        if not self._authorized(ws.headers.get("authorization")):
            return await self._end(ws, "wrong or missing token: pass the server's token with --token-file", 1008)
        address = self._client(ws) or "unknown"
        why = self.slots.take(address)
        if why is not None:
            self.counts["refused_streams"] += 1
            return await self._end(ws, why, 1013)  # try again later
        self.counts["streams"] += 1
        self.counts["streams_total"] += 1
        try:
            await self._serve(ws, Stream(owner=address))
        except (WebSocketDisconnect, RuntimeError):  # the client left (RuntimeError: sent after it closed)
            pass
        finally:
            self.counts["streams"] -= 1
            self.slots.give_back(address)

    async def _serve(self, ws: WebSocket, stream: Stream) -> None:
        """One stream's messages, one at a time, until it leaves, goes silent or breaks a limit."""
        while True:
            timeout = self.limits.hello_timeout_s if stream.normalizer is None else self.limits.idle_timeout_s
            try:
                message = await asyncio.wait_for(ws.receive(), timeout)
            except TimeoutError:
                self.counts["idle_closed"] += 1
                return await self._end(ws, f"no {'hello' if stream.normalizer is None else 'message'} for "
                                       f"{timeout:g} s: stream closed", 1001)
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            data = data if data is not None else message.get("text", "")
            if len(data) > MAX_MESSAGE_BYTES:  # refused, and the stream closed: what it sent after is dropped
                return await self._end(ws, f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES} byte "
                                       "limit", 1009)  # message too big
            header: dict = {}
            try:
                header, payload = unpack(data)
                reply = await self._handle(stream, header, payload)
            except DecodeTimeout as err:  # a crafted image: this stream ends, the others go on
                self.counts["decode_timeouts"] += 1
                return await self._end(ws, str(err), 1003, frame_id_of(header))  # 1003: unsupported data
            except (ProtocolError, UnknownAvatar, ValueError) as err:
                self.counts["errors"] += 1
                text = (f"unknown avatar {err.args[0]}: upload it first" if isinstance(err, UnknownAvatar)
                        else str(err))
                reply = pack({"type": "error", "fatal": False, "message": text, "id": frame_id_of(header)})
            except Exception:  # noqa: BLE001 - a server fault on one stream must not end the others
                logger.exception("a stream's message failed")
                self.counts["errors"] += 1
                reply = pack({"type": "error", "fatal": False, "id": frame_id_of(header),
                              "message": "server error: the message could not be handled (see the server's log)"})
            await ws.send_bytes(reply)

    async def _handle(self, stream: Stream, header: dict, payload: bytes) -> bytes:
        kind = header["type"]
        if kind == "hello":
            return self._hello(stream, header)
        if stream.normalizer is None:
            raise ProtocolError("the first message of a stream must be 'hello'")
        if kind == "avatar":
            return await self._avatar(stream, hash_of(header))
        if kind == "upload":
            avatar_hash = hash_of(header)
            image = await self.decoder.decode(payload)
            if content_hash(image) != avatar_hash:
                raise ProtocolError("the uploaded avatar does not match its hash")
            encoding = self.avatars.shared(avatar_hash)  # the same picture, uploaded by another client too
            if encoding is None:
                self.counts["avatar_encodings"] += 1
                encoding = await self._run(self._encode, image)
            self.avatars.put(stream.owner, avatar_hash, encoding)
            stream.encoding = encoding
            stream.avatar, stream.missing = avatar_hash, None
            await self._recalibrate(stream)
            return pack({"type": "avatar", "hash": avatar_hash, "known": True})
        if kind == "calibrate":  # the pose as the frames will see it: smoothed at its time, as the local loop does
            t = stream.smoother_for(header)
            crop = await self.decoder.decode(payload)
            stream.kp_neutral = await self._run(lambda: stream.smooth(self._keypoints(crop), t))
            await self._recalibrate(stream)
            return pack({"type": "ok"})
        if kind == "reset":
            stream.kp_neutral = None
            stream.normalizer.reset()
            if stream.smoother is not None:  # as the local loop resets its smoother with the neutral pose
                stream.smoother.reset()
            stream.smoothed = None
            return pack({"type": "ok"})
        if kind == "field":
            want = header.get("want")
            if not isinstance(want, bool):
                raise ProtocolError("'want' (send the motion field with each frame) must be true or false")
            stream.field = want
            return pack({"type": "ok"})
        if kind == "frame":
            return await self._frame(stream, header, payload)
        raise ProtocolError(f"unknown message type {kind!r}")

    def _hello(self, stream: Stream, header: dict) -> bytes:
        from fomm_live.models.motion import MotionNormalizer, MotionOptions

        if header.get("version") != PROTOCOL_VERSION:
            raise ProtocolError(f"protocol version {header.get('version')!r}; this server speaks "
                                f"{PROTOCOL_VERSION}: update the client or the server")
        if header.get("codec") not in CODECS:
            raise ProtocolError(f"unknown codec {header.get('codec')!r}; choose from {', '.join(CODECS)}")
        stream.codec = header["codec"]
        relative, adapt_scale = header.get("relative", True), header.get("adapt_scale", True)
        if not isinstance(relative, bool) or not isinstance(adapt_scale, bool):
            raise ProtocolError("'relative' and 'adapt_scale' must be true or false")
        stream.normalizer = MotionNormalizer(MotionOptions(relative=relative, adapt_scale=adapt_scale))
        return pack({"type": "ready", "image_size": self.size, "max_fps": self.max_fps})

    async def _avatar(self, stream: Stream, avatar_hash: str) -> bytes:
        self.counts["avatar_lookups"] += 1
        encoding = self.avatars.get(stream.owner, avatar_hash)  # only an avatar this client uploaded
        if encoding is None:
            stream.avatar, stream.encoding, stream.missing = None, None, avatar_hash
            return pack({"type": "avatar", "hash": avatar_hash, "known": False})
        stream.encoding = encoding
        self.counts["avatar_cache_hits"] += 1
        stream.avatar = avatar_hash
        await self._recalibrate(stream)
        return pack({"type": "avatar", "hash": avatar_hash, "known": True})

    async def _recalibrate(self, stream: Stream) -> None:
        """The neutral pose against the stream's avatar (again after a switch: its movement scale changes)."""
        if stream.kp_neutral is not None and stream.encoding is not None:
            await self._run(stream.normalizer.calibrate, stream.kp_neutral, stream.encoding.kp_source)

    async def _frame(self, stream: Stream, header: dict, payload: bytes) -> bytes:
        frame_id = header.get("id")
        if frame_id_of(header) != frame_id:
            raise ProtocolError(f"'id' must be a whole number from 0 to {MAX_FRAME_ID}")
        if stream.encoding is None and stream.missing is not None:
            raise UnknownAvatar(stream.missing)
        if stream.encoding is None:
            raise ProtocolError("no avatar yet: send 'avatar' (and 'upload') before frames")
        if stream.normalizer.options.relative and not stream.normalizer.calibrated:
            raise ProtocolError("relative motion needs a neutral pose: send 'calibrate' first")
        t = stream.smoother_for(header)
        strengths = strength_of(header)
        current = stream.normalizer.strengths
        if strengths != (current.head, current.expression):  # the client's live controls moved
            from fomm_live.models.strength import Strengths

            try:
                stream.normalizer.strengths = Strengths(*strengths)
            except ValueError as err:  # absolute motion has no neutral pose to scale from
                raise ProtocolError(str(err)) from err
        crop = await self.decoder.decode(payload)
        now = time.monotonic()  # pacing: a stream faster than max_fps waits, it is never refused
        if stream.next_frame_at > now:
            await asyncio.sleep(stream.next_frame_at - now)
        stream.next_frame_at = max(now, stream.next_frame_at) + 1.0 / self.max_fps
        rendered = await self.render_batch((crop, stream, t))
        if isinstance(rendered, FrameFailed):  # this stream's frame only: the batch's other frames were rendered
            raise rendered
        image, field = rendered
        stream.frames += 1
        self.counts["frames"] += 1
        if field is None:
            return frame_reply(frame_id, encode_image(image, stream.codec))
        self.counts["fields"] += 1
        return frame_reply(frame_id, encode_image(image, stream.codec), encode_field(*field))


def build_app(args: dict[str, Any]) -> serve.Application:
    """The application, for ``serve.run`` and for a Serve config file (``import_path: live.remote.server:build_app``).

    Args:
        args: ``checkpoint`` (required), ``config``, ``device``, ``precision``, ``engine``, ``token_file``,
            ``host`` (the address the HTTP proxy listens on, ``http_options.host``; without ``token_file`` it must
            be a loopback address), ``allowed_origins`` (web origins whose pages may use the server), ``max_fps``,
            ``ingress_secret`` (``fomm-live serve`` only: its ingress's per-launch secret), and ``num_replicas`` /
            ``num_gpus`` when not set by the config file's deployment options.
    """
    if not args.get("checkpoint"):
        raise ValueError("the application needs 'checkpoint': the server's FOMM checkpoint")
    token = None
    if args.get("token_file"):
        token = read_token_file(args["token_file"])
    elif not is_loopback(str(args.get("host", ""))):
        raise ValueError(f"the application listens on {args.get('host') or 'an unnamed address'} without a token: "
                         "set 'token_file' (a file whose first line is the token), or 'host: 127.0.0.1' (loopback) "
                         "as in http_options")
    origins = args.get("allowed_origins") or []
    if not isinstance(origins, list | tuple) or not all(isinstance(o, str) and "://" in o for o in origins):
        raise ValueError("'allowed_origins' must be a list of web origins such as https://example.org")
    options: dict[str, Any] = {}
    if "num_replicas" in args:
        options["num_replicas"] = int(args["num_replicas"])
    if "num_gpus" in args:
        options["ray_actor_options"] = {"num_gpus": float(args["num_gpus"])}
    deployment = FommServer.options(**options) if options else FommServer
    return deployment.bind(checkpoint=str(args["checkpoint"]), config=str(args.get("config", "vox-256")),
                           device=str(args.get("device", "auto")), precision=str(args.get("precision", "auto")),
                           engine=str(args.get("engine", "auto")),
                           token_sha256=None if token is None else token_digest(token),
                           max_fps=float(args.get("max_fps", DEFAULT_MAX_FPS)), allowed_origins=tuple(origins),
                           ingress_secret=args.get("ingress_secret"))
