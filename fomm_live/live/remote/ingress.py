"""The front door of ``fomm-live serve``: an asyncio server on the user's address and port that holds every client
connection and relays what passes its bounds to Ray Serve's HTTP proxy, which listens on a private loopback port.

Why: Serve's proxy (uvicorn) cannot be given these bounds. It read whole WebSocket messages of up to 16 MiB before the
app could refuse them (a burst of 40 left it 150-230 MB bigger 10 s later) and held a half-sent HTTP request for as
long as its client waited.

- The request line and headers: at most ``IngressLimits.head_bytes``, complete within ``head_timeout_s``; else the
  client gets 431 or 408 and the connection is closed.
- Connections open at once, per client address and in total, counted from the moment they are accepted (a half-sent
  request holds one); over a limit the client gets 503 before anything is read.
- WebSocket messages: the size limit of each route (``ROUTES``) is checked on the frame header, before the payload is
  read (websockets' ``max_size``): the stream is closed with 1009 and the reason. A stream's next message goes to
  the app only once the app has replied to the last (the protocol's one reply per message), at most ``QUEUE`` more
  are read ahead, and a faster sender waits (TCP backpressure): memory per connection stays near ``(QUEUE + 2) x``
  the route's limit, and Serve's proxy holds at most one message per stream.
- HTTP: GET requests without a body (the app has no other) are relayed; the app's answer is read up to
  ``RESPONSE_BYTES``, within ``RELAY_TIMEOUT_S``.
- Origin and Host are checked here (``guard.refusal``), on the request as the client sent it; the token and the
  streams per address are checked by the app. The client's address reaches the app in ``guard.CLIENT_HEADER``,
  believed only beside the per-launch secret in ``guard.INGRESS_HEADER`` (whatever a client sends in those headers is
  dropped: the relayed requests carry only the headers named here).

Needs websockets and h11 (both dependencies of Ray Serve's proxy too); imported by ``live.cli.serve`` and the tests.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

import h11
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.http11 import Request, Response
from websockets.protocol import State

from fomm_live.live.remote.guard import CLIENT_HEADER, INGRESS_HEADER, AddressSlots, refusal
from fomm_live.live.remote.protocol import MAX_MESSAGE_BYTES, STREAM_ROUTE, pack

logger = logging.getLogger(__name__)
connection_logger = logging.getLogger(f"{__name__}.connections")  # websockets' line per connection (open, closed)

ROUTES = {STREAM_ROUTE: MAX_MESSAGE_BYTES}  # the WebSocket routes and their largest message, bytes
QUEUE = 2  # messages read ahead of the relay per direction: a client has one in flight
RESPONSE_BYTES = 1 << 20  # the largest HTTP answer relayed (``/stats`` is under 1 KB)
RELAY_TIMEOUT_S = 10.0  # to reach the app and get its HTTP answer or WebSocket handshake
FORWARDED = ("authorization", "accept")  # the client's headers the app gets; the rest stay here
LINGER_S = 2.0  # seconds a refused connection stays to drop what its client still sends (so the answer arrives)
UNSENDABLE_CODES = (1005, 1006, 1015)  # close codes that only describe a close, never travel in one


@dataclass(frozen=True)
class IngressLimits:
    """What the ingress gives one client connection, and how many it holds.

    Args:
        connections_per_address: Connections open at once from one address (the app allows 16 streams per address;
            the rest is room for ``/stats`` and reconnects).
        connections: Connections open at once in all (the app allows 64 streams per replica).
        head_timeout_s: Seconds to send the request line and headers.
        head_bytes: The largest request line and headers, bytes (a browser's handshake is under 2 KB).
    """

    connections_per_address: int = 32
    connections: int = 256
    head_timeout_s: float = 10.0
    head_bytes: int = 16 << 10


class _Connection(ServerConnection):
    """One client connection: counted against the limits from the moment it is accepted, and bounded in the size and
    time of its request head."""

    def __init__(self, protocol, server, *, ingress: Ingress, **kwargs) -> None:
        super().__init__(protocol, server, **kwargs)
        self.ingress = ingress
        self.client = "unknown"
        self.counted = False
        self.head = b""  # the request head so far (at most ``head_bytes``)
        self.answered = False  # refused before a request was read (``answer_and_close``)
        self.timers: list[asyncio.TimerHandle] = []
        self.refused: str | None = None  # why a WebSocket is refused once open (told in its one message)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else "unknown"
        why = self.ingress.slots.take(self.client)
        if why is not None:  # answered at once, before the client sends anything; not kept to linger (not counted)
            return self.answer_and_close(http.HTTPStatus.SERVICE_UNAVAILABLE, why, linger=False)
        self.counted = True
        self.ingress.connections.add(self)
        limits = self.ingress.limits
        self.timers = [self.loop.call_later(limits.head_timeout_s, self.answer_and_close,
                                            http.HTTPStatus.REQUEST_TIMEOUT,
                                            f"the request line and headers took over {limits.head_timeout_s:g} s"),
                       # whatever is not an open WebSocket by then (an answered HTTP request the client keeps open)
                       self.loop.call_later(limits.head_timeout_s + RELAY_TIMEOUT_S, self.drop_unless_open)]

    def data_received(self, data: bytes) -> None:
        if self.answered:  # refused before its request was read: dropped
            return
        if self.request is None:  # still the request head
            self.head += data
            if len(self.head) > self.ingress.limits.head_bytes:
                return self.answer_and_close(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                             f"the request line and headers are over {self.ingress.limits.head_bytes} "
                                             "bytes")
            if b"\n" in self.head and not self.head.startswith(b"GET "):  # websockets would close without a word
                return self.answer_and_close(http.HTTPStatus.METHOD_NOT_ALLOWED,
                                             "only GET requests are served (the stream's WebSocket and /stats)")
        super().data_received(data)

    def answer_and_close(self, status: http.HTTPStatus, why: str, *, linger: bool = True) -> None:
        """Answers ``status`` with ``why`` before a request was read, and closes the connection (after ``LINGER_S``
        with ``linger``)."""
        if self.request is not None or self.answered or self.transport.is_closing():
            return
        self.answered = True
        body = json.dumps({"error": why}).encode()
        allow = "Allow: GET\r\n" if status == http.HTTPStatus.METHOD_NOT_ALLOWED else ""
        self.transport.write(f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n{allow}"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        # Closing with the client's bytes unread would reset the connection, and the answer with it: our side is shut
        # now, what the client still sends is read and dropped, and the socket goes after LINGER_S.
        if not linger:
            return self.transport.close()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def drop_unless_open(self) -> None:
        if self.protocol.state is not State.OPEN:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self.timers:
            timer.cancel()
        if self.counted:
            self.counted = False
            self.ingress.slots.give_back(self.client)
            self.ingress.connections.discard(self)
        super().connection_lost(exc)


class Ingress:
    """The front door of ``fomm-live serve`` (see the module's docstring).

    Args:
        upstream_port: Serve's HTTP proxy's port on 127.0.0.1.
        secret: The per-launch secret the app was given (``server.build_app``'s ``ingress_secret``).
        token_required: Whether the app requires a token (without one only loopback clients and names are served).
        allowed_origins: Web origins whose pages may use the server.
        limits: The connection limits and the request head's bounds.
    """

    def __init__(self, *, upstream_port: int, secret: str, token_required: bool,
                 allowed_origins: tuple[str, ...] = (), limits: IngressLimits | None = None) -> None:
        self.upstream_port = upstream_port
        self.secret = secret
        self.token_required = token_required
        self.allowed_origins = tuple(o.rstrip("/").lower() for o in allowed_origins)
        self.limits = limits or IngressLimits()
        self.slots = AddressSlots(self.limits.connections, self.limits.connections_per_address, "connections")
        self.connections: set[_Connection] = set()

    async def run(self, listener: socket.socket, ready: Callable[[], None] = lambda: None) -> None:
        """Serves on ``listener`` (a bound socket: its address is checked before Ray starts) until cancelled; calls
        ``ready`` once listening. On cancel every connection is dropped at once: a graceful close waits for clients,
        and a client that keeps its socket held it open."""
        server = await serve(self._relay_stream, sock=listener, process_request=self._request,
                             create_connection=functools.partial(_Connection, ingress=self),
                             max_size=max(ROUTES.values()), max_queue=QUEUE, compression=None,
                             open_timeout=self.limits.head_timeout_s + RELAY_TIMEOUT_S, server_header=None,
                             logger=connection_logger)
        try:
            ready()
            await asyncio.Future()  # until cancelled
        finally:
            server.close(close_connections=False)
            for connection in list(self.connections):
                connection.transport.abort()
            await server.wait_closed()

    # ------------------------------------------------------------------------------------------ requests
    def _upstream_headers(self, request: Request, client: str) -> list[tuple[str, str]]:
        kept = [(name, value) for name, value in request.headers.raw_items() if name.lower() in FORWARDED]
        return [*kept, (CLIENT_HEADER, client), (INGRESS_HEADER, self.secret)]

    async def _request(self, connection: _Connection, request: Request) -> Response | None:
        """A WebSocket handshake goes on (None) or an HTTP request gets the app's answer."""
        why = refusal(request.headers, connection.client, token_required=self.token_required,
                      allowed_origins=self.allowed_origins)
        if "websocket" in request.headers.get("Upgrade", "").lower():
            if request.path.split("?")[0] not in ROUTES:
                return _json(http.HTTPStatus.NOT_FOUND, {"error": f"no WebSocket route {request.path.split('?')[0]}"})
            connection.refused = why  # told in one message once the stream is open, as the app tells its own
            return None
        if why is not None:
            return _json(http.HTTPStatus.FORBIDDEN, {"error": why})
        return await self._relay_http(request, connection.client)

    async def _relay_http(self, request: Request, client: str) -> Response:
        """The app's answer to a GET request, read up to ``RESPONSE_BYTES`` (502 when it cannot be had)."""
        conn = h11.Connection(h11.CLIENT)
        answer: h11.Response | None = None
        body = bytearray()
        try:
            async with asyncio.timeout(RELAY_TIMEOUT_S):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                try:
                    headers = [("host", f"127.0.0.1:{self.upstream_port}"), ("connection", "close"),
                               *self._upstream_headers(request, client)]
                    writer.write(conn.send(h11.Request(method="GET", target=request.path, headers=headers)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    while not isinstance(event := conn.next_event(), h11.EndOfMessage | h11.ConnectionClosed):
                        if event is h11.NEED_DATA:
                            conn.receive_data(await reader.read(1 << 16))
                        elif isinstance(event, h11.Response):
                            answer = event
                        elif isinstance(event, h11.Data):
                            body += event.data
                            if len(body) > RESPONSE_BYTES:
                                raise ValueError(f"the app's answer is over {RESPONSE_BYTES} bytes")
                finally:
                    writer.close()
        except (OSError, TimeoutError, h11.ProtocolError, ValueError) as err:
            logger.warning("an HTTP request could not be relayed to the app: %s", err)
            return _json(http.HTTPStatus.BAD_GATEWAY, {"error": "the model server did not answer"})
        if answer is None:
            return _json(http.HTTPStatus.BAD_GATEWAY, {"error": "the model server did not answer"})
        kept = [(k.decode(), v.decode("latin-1")) for k, v in answer.headers if k == b"content-type"]
        reason = answer.reason.decode("latin-1") or http.HTTPStatus(answer.status_code).phrase
        return Response(answer.status_code, reason,
                        Headers([*kept, ("Content-Length", str(len(body))), ("Connection", "close")]), bytes(body))

    # ------------------------------------------------------------------------------------------ streams
    async def _relay_stream(self, client: _Connection) -> None:
        """One WebSocket, relayed message by message both ways; each side's close is passed on to the other."""
        if client.refused is not None:
            await client.send(pack({"type": "error", "fatal": True, "message": client.refused, "id": None}))
            return await client.close(1008, "refused")  # policy violation
        request = client.request
        client.protocol.max_message_size = ROUTES[request.path.split("?")[0]]
        try:
            upstream = await connect(f"ws://127.0.0.1:{self.upstream_port}{request.path}",
                                     additional_headers=self._upstream_headers(request, client.client),
                                     max_size=None, max_queue=QUEUE, compression=None, ping_interval=None,
                                     open_timeout=RELAY_TIMEOUT_S, proxy=None, user_agent_header=None)
        except (OSError, TimeoutError, InvalidHandshake) as err:
            logger.warning("a stream could not be relayed to the app: %s", err)
            return await client.close(1011, "the model server is not reachable")
        async with upstream:
            # The app answers each message with one reply: the next message goes up only after it, so the app's
            # side (Serve's proxy reads without backpressure) holds at most one message of a stream.
            replied = asyncio.Event()
            relays = [asyncio.create_task(_pump(client, upstream, after_each=replied)),
                      asyncio.create_task(_pump(upstream, client, on_each=replied))]
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
            for task in relays:
                task.cancel()
            closed = upstream.protocol.close_rcvd
            if closed is not None:  # the app ended the stream: the client learns its code and reason
                code = 1011 if closed.code in UNSENDABLE_CODES else closed.code
                await client.close(code, closed.reason)
            else:  # the client left (or broke a limit here): the app's stream ends too
                await upstream.close(1001, "the client left")


async def _pump(source, sink, *, after_each: asyncio.Event | None = None, on_each: asyncio.Event | None = None
                ) -> None:
    """Sends on ``sink`` each message from ``source`` until either closes; sets ``on_each`` after each, and waits for
    ``after_each`` to be set after each (cleared before the send: what came before is no reply to it)."""
    try:
        async for message in source:
            if after_each is not None:
                after_each.clear()
            await sink.send(message)
            if on_each is not None:
                on_each.set()
            if after_each is not None:
                await after_each.wait()
    except ConnectionClosed:
        pass


def _json(status: http.HTTPStatus, payload: dict) -> Response:
    body = json.dumps(payload).encode()
    return Response(status.value, status.phrase, Headers([("Content-Type", "application/json"),
                                                          ("Content-Length", str(len(body))),
                                                          ("Connection", "close")]), body)
