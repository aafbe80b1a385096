"""The Ray Serve application behind ``fomm-live serve``: a FastAPI WebSocket ingress whose replicas hold the FOMM
networks and animate the face crops of many streams in shared batches.

- One WebSocket per stream (``protocol.STREAM_ROUTE``); the stream's state (codec, motion options, neutral pose,
  avatar) lives in its handler on the replica that accepted it.
- Avatars are addressed by the content hash of their crop and encoded once per replica: Serve's model multiplexing
  (``get_avatar``), least recently used first out. A stream holds its own avatar's encoding, so eviction never
  breaks a running stream; it only means a later stream uploads it again. A client that reconnects names its avatar
  in the ``serve_multiplexed_model_id`` header, so that Serve prefers a replica that holds it.
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
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from ray import serve

from fomm_live.live.loop.smoothing import MotionSmoother
from fomm_live.live.remote.batch import FrameFailed, RenderedFrame, render_frames
from fomm_live.live.remote.decoding import DecoderPool, DecodeTimeout
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
    smoothing_of,
    strength_of,
    unpack,
)

logger = logging.getLogger(__name__)

MAX_BATCH = 16  # 16 streams: the largest size the CPU sweep measures
BATCH_WAIT_S = 0.004  # 4 ms: a fraction of a 30 fps frame's 33 ms, enough for streams in step to meet
MAX_AVATARS_PER_REPLICA = 32  # a vox-256 source encoding is ~4 MB of fp32 features
MAX_PENDING_UPLOADS = 8


class UnknownAvatar(KeyError):
    pass


def token_digest(token: str) -> str:
    """What the replicas keep of the token: its SHA-256 (compared in constant time, never stored in clear)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _hash(header: dict) -> str:
    # Defined above the deployment: Serve pickles the class when it is decorated, with the globals it sees then.
    value = header.get("hash")
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ProtocolError("'hash' must be 64 lowercase hex digits (SHA-256)")
    return value


@dataclass
class AvatarEncoding:
    """A source crop as the generator keeps it: its encoder state and keypoints (batch of one)."""

    state: Any
    kp_source: Any


@dataclass
class Stream:
    """One client's state on the replica that holds its WebSocket."""

    codec: str = "jpeg"
    normalizer: Any = None
    kp_neutral: Any = None
    avatar: str | None = None
    encoding: AvatarEncoding | None = None
    next_frame_at: float = 0.0
    frames: int = 0
    missing: str | None = None  # an avatar asked for that this replica does not hold (until uploaded)
    smoother: MotionSmoother | None = None  # the client's keypoint smoothing (None: off)
    smoothed: tuple[float, Any] | None = None  # (t, keypoints) last smoothed: a calibrate and its frame share them
    field: bool = False  # the replies carry the motion field (``protocol.encode_field``)

    def smoother_for(self, header: dict) -> float | None:
        """The media time to smooth this message's keypoints at (None: not smoothed), with ``smoother`` set to the
        header's options (a new one when they change)."""
        smoothing = smoothing_of(header)
        if smoothing is None:
            self.smoother, self.smoothed = None, None
            return None
        t, min_cutoff, beta = smoothing
        if self.smoother is None or (self.smoother.min_cutoff, self.smoother.beta) != (min_cutoff, beta):
            self.smoother, self.smoothed = MotionSmoother(min_cutoff=min_cutoff, beta=beta), None
        return t

    def smooth(self, kp: Any, t: float | None) -> Any:
        """``kp`` smoothed at ``t`` (as is when ``t`` is None). The frame a pose was calibrated on comes again at the
        same ``t`` for its render and gets the same keypoints: filtering them twice would count a second sample."""
        if t is None or self.smoother is None:
            return kp
        if self.smoothed is not None and self.smoothed[0] == t:
            return self.smoothed[1]
        kp = self.smoother(kp, t)
        self.smoothed = (t, kp)
        return kp


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
    """

    def __init__(self, *, checkpoint: str, config: str = "vox-256", device: str = "auto", precision: str = "auto",
                 engine: str = "auto", token_sha256: str | None = None, max_fps: float = DEFAULT_MAX_FPS) -> None:
        from fomm_live.models import Animator

        self.animator = Animator.from_checkpoint(checkpoint, config, device=device, precision=precision,
                                                 engine=engine)
        self.size = self.animator.image_size
        self.token_sha256 = token_sha256
        self.max_fps = max_fps
        # One thread runs every model call of the replica: the networks are not shared between threads.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fomm-model")
        self.decoder = DecoderPool()  # the clients' images: decoded in worker processes, each bounded in time
        self.pending: OrderedDict[str, np.ndarray] = OrderedDict()  # uploaded, not yet encoded
        self.counts = {"streams": 0, "streams_total": 0, "frames": 0, "batches": 0, "avatar_lookups": 0,
                       "avatar_cache_hits": 0, "avatar_encodings": 0, "fields": 0, "errors": 0,
                       "decode_timeouts": 0}
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

    @serve.multiplexed(max_num_models_per_replica=MAX_AVATARS_PER_REPLICA)
    async def get_avatar(self, avatar_hash: str) -> AvatarEncoding:
        """The encoding of an avatar: loaded (encoded) here only on a miss, from a verified upload."""
        image = self.pending.pop(avatar_hash, None)
        if image is None:
            raise UnknownAvatar(avatar_hash)
        self.counts["avatar_encodings"] += 1
        return await self._run(self._encode, image)

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
        if not self._authorized(request.headers.get("authorization")):
            return JSONResponse({"error": "wrong or missing token"}, status_code=401)
        return JSONResponse(dict(self.counts, image_size=self.size, device=str(self.animator.device),
                                 precision=self.animator.precision, max_fps=self.max_fps))

    @api.websocket(STREAM_ROUTE)
    async def stream(self, ws: WebSocket) -> None:
        await ws.accept()
        if not self._authorized(ws.headers.get("authorization")):
            self.counts["errors"] += 1
            await ws.send_bytes(pack({"type": "error", "fatal": True, "message": "wrong or missing token: pass the "
                                      "server's token with --token-file"}))
            await ws.close(code=1008)
            return
        stream = Stream()
        self.counts["streams"] += 1
        self.counts["streams_total"] += 1
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                data = data if data is not None else message.get("text", "")
                if len(data) > MAX_MESSAGE_BYTES:  # refused, and the stream closed: what it sent after is dropped
                    self.counts["errors"] += 1
                    await ws.send_bytes(pack({"type": "error", "fatal": True, "message": f"message of {len(data)} "
                                              f"bytes is over the {MAX_MESSAGE_BYTES} byte limit"}))
                    await ws.close(code=1009)  # message too big
                    break
                header: dict = {}
                try:
                    header, payload = unpack(data)
                    reply = await self._handle(stream, header, payload)
                except DecodeTimeout as err:  # a crafted image: this stream ends, the others go on
                    self.counts["errors"] += 1
                    self.counts["decode_timeouts"] += 1
                    await ws.send_bytes(pack({"type": "error", "fatal": True, "message": str(err),
                                              "id": header.get("id")}))
                    await ws.close(code=1003)  # unsupported data (1008 tells the client its token was refused)
                    break
                except (ProtocolError, UnknownAvatar, ValueError) as err:
                    self.counts["errors"] += 1
                    text = (f"unknown avatar {err.args[0]}: upload it first" if isinstance(err, UnknownAvatar)
                            else str(err))
                    reply = pack({"type": "error", "fatal": False, "message": text, "id": header.get("id")})
                except Exception as err:  # noqa: BLE001 - a server fault on one stream must not end the others
                    logger.exception("stream failed")
                    self.counts["errors"] += 1
                    reply = pack({"type": "error", "fatal": False, "id": header.get("id"),
                                  "message": f"server error: {type(err).__name__}: {err}"})
                await ws.send_bytes(reply)
        except (WebSocketDisconnect, RuntimeError):  # the client left (RuntimeError: sent after it closed)
            pass
        finally:
            self.counts["streams"] -= 1

    async def _handle(self, stream: Stream, header: dict, payload: bytes) -> bytes:
        kind = header["type"]
        if kind == "hello":
            return self._hello(stream, header)
        if stream.normalizer is None:
            raise ProtocolError("the first message of a stream must be 'hello'")
        if kind == "avatar":
            return await self._avatar(stream, _hash(header))
        if kind == "upload":
            avatar_hash = _hash(header)
            image = await self.decoder.decode(payload)
            if content_hash(image) != avatar_hash:
                raise ProtocolError("the uploaded avatar does not match its hash")
            self.pending[avatar_hash] = image
            while len(self.pending) > MAX_PENDING_UPLOADS:
                self.pending.popitem(last=False)
            stream.encoding = await self.get_avatar(avatar_hash)
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
        stream.normalizer = MotionNormalizer(MotionOptions(relative=bool(header.get("relative", True)),
                                                           adapt_scale=bool(header.get("adapt_scale", True))))
        return pack({"type": "ready", "image_size": self.size, "max_fps": self.max_fps})

    async def _avatar(self, stream: Stream, avatar_hash: str) -> bytes:
        self.counts["avatar_lookups"] += 1
        try:
            stream.encoding = await self.get_avatar(avatar_hash)
        except UnknownAvatar:
            stream.avatar, stream.encoding, stream.missing = None, None, avatar_hash
            return pack({"type": "avatar", "hash": avatar_hash, "known": False})
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
            ``max_fps``, and ``num_replicas`` / ``num_gpus`` when not set by the config file's deployment options.
    """
    if not args.get("checkpoint"):
        raise ValueError("the application needs 'checkpoint': the server's FOMM checkpoint")
    token = None
    if args.get("token_file"):
        with open(args["token_file"], encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise ValueError(f"{args['token_file']} is empty: put the token on its first line")
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
                           max_fps=float(args.get("max_fps", DEFAULT_MAX_FPS)))
