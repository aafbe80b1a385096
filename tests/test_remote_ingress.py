"""The ingress of ``fomm-live serve`` on its own, in front of a stand-in for Serve's proxy (a small websockets server
on loopback that reports the headers it got and echoes messages): what reaches the app, and what never does. The
real server behind it is tried in ``tests/test_remote_hostile.py``."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from fomm_live.live.remote import protocol

pytest.importorskip("websockets", reason="the serve extra (websockets) is not installed")
pytest.importorskip("h11", reason="the serve extra (h11) is not installed")

SECRET = "per-launch-secret"
HOLD_S = 0.5  # how long the stand-in app waits for a message the ingress must not have relayed yet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forwarded(headers) -> dict:
    """The headers the stand-in app got that the ingress decides, each with every value it had."""
    from fomm_live.live.remote.guard import CLIENT_HEADER, INGRESS_HEADER

    return {name: headers.get_all(name) for name in (CLIENT_HEADER, INGRESS_HEADER, "Authorization", "Origin")}


async def with_ingress(check, **ingress_options) -> None:
    """Runs ``check(url)`` against an ingress in front of the stand-in app."""
    from websockets.asyncio.server import serve
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    from fomm_live.live.remote.ingress import Ingress

    def http_answer(connection, request):
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        body = json.dumps(forwarded(request.headers)).encode()
        return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                            ("Content-Length", str(len(body)))]), body)

    async def stream(ws) -> None:
        await ws.send(json.dumps(forwarded(ws.request.headers)))
        async for message in ws:
            if message == b"bye":
                return await ws.close(1013, "stand-in is full")
            if message == b"hold":  # before replying: does the next message come up already? (a bounded wait)
                try:
                    ahead = await asyncio.wait_for(ws.recv(), HOLD_S)
                    await ws.send(b"relayed ahead: " + ahead)
                except TimeoutError:
                    await ws.send(b"held back")
                continue
            await ws.send(message)

    upstream = free_port()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    async with serve(stream, "127.0.0.1", upstream, process_request=http_answer):
        ingress = Ingress(upstream_port=upstream, secret=SECRET, token_required=True, **ingress_options)
        listening = asyncio.Event()
        task = asyncio.create_task(ingress.run(listener, listening.set))
        await asyncio.wait_for(listening.wait(), 30)
        try:
            await check(f"127.0.0.1:{port}")
        finally:
            task.cancel()


def test_the_app_gets_the_clients_address_beside_the_secret_and_never_a_forged_one() -> None:
    import urllib.request

    from fomm_live.live.remote.guard import CLIENT_HEADER, INGRESS_HEADER

    forged = {CLIENT_HEADER: "10.1.2.3", INGRESS_HEADER: "guessed", "Authorization": "Bearer t"}

    async def check(address: str) -> None:
        from websockets.asyncio.client import connect

        request = urllib.request.Request(f"http://{address}/stats", headers=forged)
        seen_http = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(request, timeout=10).read()))
        async with connect(f"ws://{address}{protocol.STREAM_ROUTE}", additional_headers=forged) as ws:
            seen_ws = json.loads(await ws.recv())
        for seen in (seen_http, seen_ws):
            assert seen[CLIENT_HEADER] == ["127.0.0.1"], seen
            assert seen[INGRESS_HEADER] == [SECRET], seen
            assert seen["Authorization"] == ["Bearer t"], seen

    asyncio.run(with_ingress(check))


def test_messages_are_relayed_both_ways_and_the_apps_close_reaches_the_client() -> None:
    async def check(address: str) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async with connect(f"ws://{address}{protocol.STREAM_ROUTE}") as ws:
            await ws.recv()  # the stand-in's report of the headers
            for message in (b"\x00" * 1000, "text", bytes(range(256)) * 64):
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(b"bye")
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "stand-in is full")

    asyncio.run(with_ingress(check))


def test_a_streams_next_message_reaches_the_app_only_after_its_reply() -> None:
    async def check(address: str) -> None:
        from websockets.asyncio.client import connect

        async with connect(f"ws://{address}{protocol.STREAM_ROUTE}") as ws:
            await ws.recv()
            for message in (b"hold", b"one", b"two"):  # sent at once, as a flooding client would
                await ws.send(message)
            assert await ws.recv() == b"held back"
            assert [await ws.recv(), await ws.recv()] == [b"one", b"two"]

    asyncio.run(with_ingress(check))


def test_a_message_over_the_routes_limit_closes_the_stream_1009_and_never_reaches_the_app() -> None:
    async def check(address: str) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        async with connect(f"ws://{address}{protocol.STREAM_ROUTE}", max_size=None) as ws:
            await ws.recv()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.send(bytes(protocol.MAX_MESSAGE_BYTES + 1))
                await ws.recv()  # an echo here would mean the stand-in got it
        assert closed.value.rcvd.code == 1009

    asyncio.run(with_ingress(check))


def test_foreign_origins_and_unknown_routes_are_refused_at_the_ingress() -> None:
    import urllib.error
    import urllib.request

    async def check(address: str) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        async with connect(f"ws://{address}{protocol.STREAM_ROUTE}", origin="http://evil.example") as ws:
            reply = protocol.unpack(await ws.recv())[0]
        assert reply["fatal"] and "web pages of http://evil.example are refused" in reply["message"]
        assert ws.close_code == 1008
        request = urllib.request.Request(f"http://{address}/stats", headers={"Origin": "http://evil.example"})
        with pytest.raises(urllib.error.HTTPError) as err:
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        assert err.value.code == 403
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{address}/elsewhere")
        assert refused.value.response.status_code == 404
        async with connect(f"ws://{address}{protocol.STREAM_ROUTE}", origin="https://studio.example.org") as ws:
            assert "127.0.0.1" in await ws.recv()  # an allowed origin reaches the app

    asyncio.run(with_ingress(check, allowed_origins=("https://studio.example.org/",)))


def test_request_heads_that_are_late_too_big_or_not_get_are_answered_and_closed() -> None:
    """Each answered before anything reaches the app: 408 past the head deadline (0.5 s here), 431 over the head's
    size, 405 for another method; and a fourth connection from the address is refused (limit 3)."""

    def exchange(address: str, head: bytes) -> bytes:
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(head)
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            return answer

    async def check(address: str) -> None:
        cases = [b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # never finished
                 b"GET /stats HTTP/1.1\r\nX-Big: " + b"a" * 2048 + b"\r\n\r\n",
                 b"POST /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"]
        answers = await asyncio.gather(*(asyncio.to_thread(exchange, address, head) for head in cases))
        assert answers[0].startswith(b"HTTP/1.1 408 "), answers[0]
        assert answers[1].startswith(b"HTTP/1.1 431 ") and b"over 1024 bytes" in answers[1], answers[1]
        assert answers[2].startswith(b"HTTP/1.1 405 ") and b"Allow: GET" in answers[2], answers[2]
        host, port = address.split(":")
        held = [socket.create_connection((host, int(port))) for _ in range(3)]
        try:  # the next is answered as it is accepted, before it sends anything
            over = await asyncio.to_thread(exchange, address, b"")
        finally:
            for sock in held:
                sock.close()
        assert over.startswith(b"HTTP/1.1 503 ") and b"too many connections from one address" in over, over

    from fomm_live.live.remote.ingress import IngressLimits

    asyncio.run(with_ingress(check, limits=IngressLimits(connections_per_address=3, head_timeout_s=0.5,
                                                         head_bytes=1024)))


def test_connections_are_counted_per_address_and_in_all() -> None:
    from fomm_live.live.remote.ingress import Ingress, IngressLimits

    ingress = Ingress(upstream_port=1, secret=SECRET, token_required=True,
                      limits=IngressLimits(connections_per_address=2, connections=3))
    assert [ingress.slots.take("a"), ingress.slots.take("a")] == [None, None]
    assert "too many connections from one address (at most 2)" in ingress.slots.take("a")
    assert ingress.slots.take("b") is None
    assert "the server is full (3 connections)" in ingress.slots.take("c")
    ingress.slots.give_back("a")
    assert ingress.slots.take("c") is None and dict(ingress.slots.open) == {"a": 1, "b": 1, "c": 1}


def test_the_app_believes_a_forwarded_address_only_beside_the_secret() -> None:
    from fomm_live.live.remote.guard import CLIENT_HEADER, INGRESS_HEADER, forwarded_client

    assert forwarded_client({CLIENT_HEADER: "10.0.0.7", INGRESS_HEADER: SECRET}, SECRET) == "10.0.0.7"
    assert forwarded_client({CLIENT_HEADER: "10.0.0.7", INGRESS_HEADER: SECRET + "x"}, SECRET) is None
    assert forwarded_client({CLIENT_HEADER: "10.0.0.7"}, SECRET) is None
    assert forwarded_client({CLIENT_HEADER: "10.0.0.7", INGRESS_HEADER: "é"}, SECRET) is None
    assert forwarded_client({INGRESS_HEADER: SECRET}, SECRET) is None
