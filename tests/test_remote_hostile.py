"""``fomm-live serve`` under hostile clients: one real server on loopback (the tiny golden model, CPU, a token), an
honest stream beside every hostile case, measured: its frames' latencies and failures while the hostile messages are
processed. Bounded: each case sends a fixed, small number of messages, and every wait has a timeout. The figures are
printed (``pytest -s``); the goals are asserted where they are not timings (0 honest frames failed, the server still
answering), and the latencies are reported beside them (no timing assertions in tests).

Nothing here sends traffic anywhere but 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.jpeg import split_segments
from helpers.serving import TOKEN, Server, descendants, golden

from fomm_live.live.remote import protocol

pytest.importorskip("websockets", reason="the serve extra (websockets) is not installed")

FIGURES: list[str] = []  # printed at the end of the module


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")
    srv = Server(tmp_path_factory.mktemp("hostile"))
    srv.start()
    yield srv
    print("\n".join(["", "hostile-client figures:", *FIGURES]))
    left = srv.stop()
    assert not left, f"SIGTERM left processes of fomm-live serve running: {sorted(left)}"


def connect(server: Server, token: str | None = TOKEN, headers: dict | None = None, **socket_options):
    from websockets.sync.client import connect as ws_connect

    extra = dict(headers or {})
    if token:
        extra["Authorization"] = f"Bearer {token}"
    ws = ws_connect(server.url.replace("http", "ws") + protocol.STREAM_ROUTE, max_size=None,
                    additional_headers=extra, open_timeout=30, **socket_options)
    return ws.__enter__()  # entered: usable outside a with too


def ask(ws, header: dict, payload: bytes = b"", timeout: float = 60) -> dict:
    ws.send(protocol.pack(header, payload))
    return protocol.unpack(ws.recv(timeout=timeout))[0]


def ready_stream(server: Server, **hello):
    """A stream past its hello, its avatar uploaded and its neutral pose taken."""
    ws = connect(server)
    assert ask(ws, {"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "jpeg", **hello})["type"] == "ready"
    source = golden("source.png")
    reply = ask(ws, {"type": "upload", "hash": protocol.content_hash(source)}, protocol.encode_image(source, "png"))
    assert reply.get("known") is True, reply
    assert ask(ws, {"type": "calibrate", "t": 0.0, "smooth": [1.0, 0.5]},
               protocol.encode_image(golden("driving_0.png"), "jpeg"))["type"] == "ok"
    return ws


class HonestStream:
    """A well-behaved client sending frames one after another (10 fps) in a thread; its latencies and failures are
    measured per case (``window``)."""

    def __init__(self, server: Server) -> None:
        self.ws = ready_stream(server)
        self.crops = [protocol.encode_image(golden(f"driving_{i}.png"), "jpeg") for i in range(3)]
        self.records: list[tuple[float, float, bool]] = []  # (sent at, latency s, ok)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n, t = 0, 0.0
        while not self.stop.is_set():
            n += 1
            t += 0.1
            sent = time.monotonic()
            try:
                reply = ask(self.ws, {"type": "frame", "id": n, "t": t, "smooth": [1.0, 0.5]}, self.crops[n % 3],
                            timeout=30)
                ok = reply["type"] == "frame" and reply["id"] == n
            except Exception:  # noqa: BLE001 - a lost honest frame is what is measured, whatever the cause
                ok = False
            self.records.append((sent, time.monotonic() - sent, ok))
            self.stop.wait(max(0.0, 0.1 - (time.monotonic() - sent)))

    def window(self, since: float) -> tuple[int, int, float]:
        """(frames, failed, worst latency s) of the frames sent after ``since`` and finished."""
        rows = [r for r in self.records if r[0] >= since]
        return len(rows), sum(not ok for _, _, ok in rows), max((lat for _, lat, _ in rows), default=0.0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=40)
        self.ws.close()


@pytest.fixture(scope="module")
def honest(server: Server):
    stream = HonestStream(server)
    yield stream
    stream.close()


def measured(name: str, honest: HonestStream, action, *, min_frames: int = 5) -> None:
    """Runs a hostile ``action`` with the honest stream beside it, until it has sent ``min_frames`` more frames;
    records the honest stream's figures and asserts that none of its frames failed."""
    since = time.monotonic()
    action()
    deadline = time.monotonic() + 60
    while honest.window(since)[0] < min_frames and time.monotonic() < deadline:
        time.sleep(0.05)
    frames, failed, worst = honest.window(since)
    FIGURES.append(f"{name}: honest stream {frames} frames, {failed} failed, worst latency {worst * 1000:.0f} ms")
    assert frames >= min_frames, f"{name}: the honest stream stalled ({frames} frames in 60 s)"
    assert failed == 0, f"{name}: {failed} of the honest stream's {frames} frames failed"


def server_memory_mb(server: Server) -> dict[str, float]:
    """Resident memory of each process of the server (Ray's proxy, controller, replica...), MB, by name."""
    out: dict[str, float] = {}
    for pid in descendants(server.proc.pid) | {server.proc.pid}:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            name = Path(f"/proc/{pid}/comm").read_text().strip() + " " + Path(name).name
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(("RssAnon:", "RssShmem:")):
                    out[f"{name} {pid} {line.split(':')[0]}"] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return out


def server_rss_mb(server: Server, kind: str = "RssAnon") -> float:
    """Resident memory of every process of the server, MB: private (``RssAnon``), or Ray's shared-memory object
    store as each process maps it (``RssShmem``: the same pages counted once per process that maps them)."""
    return sum(v for k, v in server_memory_mb(server).items() if k.endswith(kind))


# --------------------------------------------------------------------------------------------- crafted images
def jpeg_segments(width: int, height: int, *, progressive: bool = False) -> tuple[list[bytes], bytes]:
    """A gradient JPEG's marker segments up to its first scan, and the rest."""
    import cv2

    ramp = (np.arange(width) * 255 // max(width - 1, 1)).astype(np.uint8)
    image = np.broadcast_to(ramp[None, :, None], (height, width, 3)).copy()  # small once compressed
    return split_segments(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes())


def hidden_size_jpeg() -> bytes:
    """The size-check bypass: a 2000 x 1500 JPEG whose frame header follows a 0xFF fill byte, with a fake 64 x 64
    header in a comment where the old header walk landed."""
    parts, rest = jpeg_segments(2000, 1500)
    sof = next(k for k, p in enumerate(parts) if p[1] == 0xC0)
    body = bytearray(0xC000)
    offset = 2 + 0xC000 - (1 + len(parts[sof]) + sum(len(p) for p in parts[sof + 1:]) + 4)
    body[offset:offset + 19] = b"\xff\xc0\x00\x11\x08\x00\x40\x00\x40\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    comment = b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + bytes(body)
    return b"".join(parts[:sof]) + b"\xff" + b"".join(parts[sof:]) + comment + rest


def many_scans_jpeg() -> bytes:
    """A 1024 x 1024 progressive JPEG of as many copies of its first (DC) scan as fit in a message: each scan is a
    pass over the image (2,000 of them decode in 0.5 s here; 174,000 empty ones took 13 s)."""
    parts, rest = jpeg_segments(1024, 1024, progressive=True)
    first_scan = rest[:rest.index(b"\xff\xda", 2)]
    head = b"".join(parts)
    scans = (protocol.MAX_MESSAGE_BYTES - len(head) - 64) // len(first_scan)
    assert scans > protocol.MAX_JPEG_SCANS
    return head + first_scan * scans + b"\xff\xd9"


# ------------------------------------------------------------------------------------------------------ cases
def calibrate_beside_honest(server: Server, honest: HonestStream, name: str, picture: bytes) -> dict:
    """A stream says hello and asks to calibrate on ``picture`` while the honest stream is measured: the reply."""
    with connect(server) as ws:
        assert ask(ws, {"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "jpeg"})["type"] == "ready"
        replies = []
        measured(name, honest, lambda: replies.append(ask(ws, {"type": "calibrate"}, picture)))
    return replies[0]


def test_a_hidden_frame_size_is_refused_and_the_honest_stream_goes_on(server: Server, honest: HonestStream) -> None:
    reply = calibrate_beside_honest(server, honest, "hidden frame size (2000x1500 behind a fake 64x64 header)",
                                    hidden_size_jpeg())
    assert reply["type"] == "error" and "2000x1500 pixels is out of bounds" in reply["message"]


def test_a_jpeg_of_hundreds_of_scans_is_refused_without_stalling_the_honest_stream(server: Server,
                                                                                     honest: HonestStream) -> None:
    reply = calibrate_beside_honest(server, honest, "progressive 1024x1024 JPEG of hundreds of scans",
                                    many_scans_jpeg())
    assert reply["type"] == "error" and "scans" in reply["message"]


# ------------------------------------------------------------------------------- the decoder pool on its own
def test_the_decoder_pool_decodes_in_workers_and_refuses_with_the_reason() -> None:
    import asyncio

    from fomm_live.live.remote.decoding import UNDECODABLE, DecoderPool

    image = golden("driving_1.png")

    async def run() -> list:
        pool = DecoderPool(workers=1)
        try:
            out = [await pool.decode(protocol.encode_image(image, "png"))]
            for bad in (b"GIF89a" + bytes(32), protocol.encode_image(image, "jpeg")[:600], hidden_size_jpeg()):
                try:
                    await pool.decode(bad)
                except protocol.ProtocolError as err:
                    out.append(str(err))
            return out
        finally:
            pool.close()

    decoded, *reasons = asyncio.run(run())
    assert np.array_equal(decoded, image)
    assert "neither PNG nor JPEG" in reasons[0]
    assert reasons[1] == UNDECODABLE or "JPEG" in reasons[1]  # a cut JPEG: no OpenCV message, path or traceback
    assert "2000x1500 pixels is out of bounds" in reasons[2]


def test_a_decode_that_never_ends_is_cut_at_the_bound_and_its_worker_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in worker that starts (its ready byte) and then never answers plays the image that decodes for ever."""
    import asyncio
    import sys

    from fomm_live.live.remote import decoding

    stand_in = "import sys, time; sys.stdout.buffer.write(b'R'); sys.stdout.flush(); time.sleep(120)"
    monkeypatch.setattr(decoding, "WORKER_COMMAND", [sys.executable, "-c", stand_in])

    async def run() -> tuple[str, bool, int]:
        pool = decoding.DecoderPool(workers=1, timeout_s=0.3)
        first = pool.workers[0]
        try:
            try:
                await pool.decode(protocol.encode_image(golden("driving_1.png"), "png"))
            except decoding.DecodeTimeout as err:
                reason = str(err)
            else:
                reason = "decoded"
            return reason, first.proc.poll() is not None and pool.workers[0] is not first, pool.timeouts
        finally:
            pool.close()

    reason, replaced, timeouts = asyncio.run(run())
    assert reason == "the image took over 0.3 s to decode: refused"
    assert replaced, "the stuck worker was killed and another started in its place"
    assert timeouts == 1


# -------------------------------------------------------------------------------------------- isolated streams
def test_extreme_and_backward_times_fail_only_their_own_streams(server: Server, honest: HonestStream) -> None:
    """8 clients at once send a frame at t=1e300 (a zero time step in the smoother once divided by zero inside the
    shared batch, failing every stream batched with it), then frames going backward in time."""
    crop = protocol.encode_image(golden("driving_1.png"), "jpeg")
    replies: list[list[dict]] = []

    def hostile() -> None:
        with ready_stream(server) as ws:
            mine = []
            for i, t in enumerate((1e300, 1.0, 0.5, 0.5, -3.0, 1e6)):
                mine.append(ask(ws, {"type": "frame", "id": i, "t": t, "smooth": [1.0, 0.5]}, crop))
            replies.append(mine)

    def action() -> None:
        threads = [threading.Thread(target=hostile) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    measured("8 streams at t=1e300 then backward times", honest, action)
    assert len(replies) == 8
    for mine in replies:
        assert mine[0]["type"] == "error" and "'t'" in mine[0]["message"] and mine[0]["id"] == 0
        assert [r["type"] for r in mine[1:]] == ["frame"] * 5, mine  # older times: a small step, as the local loop


def test_one_frame_that_fails_in_a_batch_fails_alone() -> None:
    """``render_frames`` with a stand-in stream whose smoother raises ZeroDivisionError beside two honest ones: the
    honest frames are rendered as they are alone, the bad one comes back as ``FrameFailed``."""
    from conftest import golden_dir

    from fomm_live.live.remote.batch import FrameFailed, render_frames
    from fomm_live.live.remote.server import AvatarEncoding, Stream
    from fomm_live.models import Animator
    from fomm_live.models.motion import MotionNormalizer, MotionOptions

    tiny = golden_dir("tiny")
    animator = Animator.from_checkpoint(tiny / "checkpoint.pth.tar", tiny / "config.yaml", device="cpu",
                                        precision="fp32", engine="eager")
    import torch

    with torch.inference_mode():
        source = animator.to_tensor(golden("source.png"))
        encoding = AvatarEncoding(animator.engine.encode(source), animator.engine.keypoints(source))

    class BrokenSmoother(Stream):
        def smooth(self, kp, t):
            raise ZeroDivisionError("float division by zero")

    def stream(kind=Stream):
        s = kind(normalizer=MotionNormalizer(MotionOptions(relative=False)), encoding=encoding)
        return s

    crops = [golden(f"driving_{i}.png") for i in range(3)]
    alone = [render_frames(animator, [(c, stream(), None)])[0][0] for c in (crops[0], crops[2])]
    batch = render_frames(animator, [(crops[0], stream(), None), (crops[1], stream(BrokenSmoother), 1.0),
                                     (crops[2], stream(), None)])
    assert isinstance(batch[1], FrameFailed) and "ZeroDivisionError" in str(batch[1])
    for got, want in zip((batch[0][0], batch[2][0]), alone, strict=True):
        assert int(np.abs(got.astype(int) - want.astype(int)).max()) <= 1


# ------------------------------------------------------------------------------------------ memory and limits
BURST = 40  # messages of the largest size the server stack accepts (16 MiB), from 4 connections at once
STACK_MAX_BYTES = 16 << 20


def test_a_burst_of_maximum_size_messages_is_refused_and_memory_comes_back(server: Server,
                                                                          honest: HonestStream) -> None:
    """Each message is refused from its frame header by the ingress (the stream that sent it is closed, 1009); the
    server's private memory (every process of it: the ingress in the serve command, Serve's proxy, the replica) comes
    back within 100 MB of its level before, within 10 s. Ray's shared object store is reported beside it."""
    from websockets.exceptions import ConnectionClosed

    before_each = server_memory_mb(server)
    before, shared_before = server_rss_mb(server), server_rss_mb(server, "RssShmem")
    blob = protocol.pack({"type": "frame", "id": 1}) + bytes(STACK_MAX_BYTES - 64)
    closed = []

    def burst() -> None:
        with connect(server) as ws:
            try:
                for _ in range(BURST // 4):
                    ws.send(blob)
                while True:
                    reply = protocol.unpack(ws.recv(timeout=60))[0]
                    assert reply["type"] == "error" and "byte limit" in reply["message"], reply
            except ConnectionClosed as err:
                closed.append(err.rcvd.code if err.rcvd else None)

    def action() -> None:
        threads = [threading.Thread(target=burst) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    sent_at = time.monotonic()
    measured(f"burst of {BURST} x 16 MiB messages", honest, action)
    peak = after = server_rss_mb(server)
    while time.monotonic() - sent_at < 10 and (after := server_rss_mb(server)) > before + 100:
        time.sleep(0.5)  # polling a measurement, not waiting for an event: memory has none
    back = time.monotonic() - sent_at
    shared = server_rss_mb(server, "RssShmem")
    FIGURES.append(f"burst of {BURST} x 16 MiB: server private memory {before:.0f} MB before, {peak:.0f} MB after the "
                   f"burst, {after:.0f} MB {back:.1f} s after it began; Ray's object store as mapped by its processes "
                   f"{shared_before:.0f} -> {shared:.0f} MB")
    assert closed == [1009] * 4, f"every bursting connection was closed as too big: {closed}"
    assert server.stats()["streams"] >= 1, "the server still answers"
    grew = {k.rsplit(" ", 2)[0]: round(v - before_each.get(k, 0)) for k, v in server_memory_mb(server).items()
            if k.endswith("RssAnon") and v - before_each.get(k, 0) > 5}
    assert after <= before + 100, f"memory goal not met: {after:.0f} MB, {before:.0f} MB before; grown (MB): {grew}"


def wait_for_streams(server: Server, n: int) -> None:
    """Until the replica counts ``n`` open streams (the streams of earlier cases are released when their close
    arrives)."""
    deadline = time.monotonic() + 30
    while server.stats()["streams"] != n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.stats()["streams"] == n


def test_streams_over_the_per_address_limit_are_told_so_and_stats_still_answers(server: Server,
                                                                               honest: HonestStream) -> None:
    from fomm_live.live.remote.guard import Limits

    wait_for_streams(server, 1)  # the honest stream
    limit = Limits().streams_per_address
    opened, replies = [], []

    def action() -> None:
        from websockets.exceptions import ConnectionClosed

        for _ in range(limit + 2):
            ws = connect(server)
            opened.append(ws)
            try:  # a refused stream may be closed before its hello is sent: its one message is read all the same
                ws.send(protocol.pack({"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "jpeg"}))
            except ConnectionClosed:
                pass
            replies.append(protocol.unpack(ws.recv(timeout=60))[0])

    try:
        measured(f"{limit + 2} streams from one address", honest, action)
        stats = server.stats()  # answers while the address is at its limit
    finally:
        for ws in opened:
            ws.close()
    kinds = [r["type"] for r in replies]
    assert kinds == ["ready"] * (limit - 1) + ["error"] * 3, kinds  # the honest stream holds one of the slots
    assert all("too many streams from one address" in r["message"] and r["fatal"] for r in replies[limit - 1:])
    assert stats["refused_streams"] >= 3


def test_a_silent_stream_is_closed_after_the_hello_timeout(server: Server, honest: HonestStream) -> None:
    from fomm_live.live.remote.guard import Limits

    replies = []

    def action() -> None:
        with connect(server) as ws:
            replies.append(protocol.unpack(ws.recv(timeout=Limits().hello_timeout_s + 30))[0])

    measured("a stream that never says hello", honest, action)
    assert replies[0]["fatal"] and f"no hello for {Limits().hello_timeout_s:g} s" in replies[0]["message"]


HALF_SENT_WAIT_S = 30


def raw_request(server: Server, head: bytes, *, source: str = "127.0.0.1", wait_s: float = HALF_SENT_WAIT_S
                ) -> tuple[bytes, float]:
    """Sends ``head`` on a plain TCP connection and reads until the server closes it (or ``wait_s`` passes):
    (what it answered, seconds it took to close)."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s, source_address=(source, 0)) as sock:
        sock.sendall(head)
        started, answer = time.monotonic(), b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer, time.monotonic() - started


def test_a_half_sent_http_request_is_answered_408_and_closed_within_the_head_deadline(server: Server,
                                                                                      honest: HonestStream) -> None:
    from fomm_live.live.remote.ingress import IngressLimits

    results = []
    measured("a half-sent HTTP request", honest, lambda: results.append(
        raw_request(server, b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")))  # never finished
    answer, closed_after = results[0]
    status = answer.split(b"\r\n")[0].decode(errors="replace")
    FIGURES.append(f"a half-sent HTTP request: answered {status!r} and closed by the "
                   f"server after {closed_after:.1f} s (deadline {IngressLimits().head_timeout_s:g} s)")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert closed_after < HALF_SENT_WAIT_S, "the server held the half-sent request until the client gave up"


def test_an_oversized_request_head_is_answered_431(server: Server) -> None:
    from fomm_live.live.remote.ingress import IngressLimits

    head = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * IngressLimits().head_bytes
    answer, _ = raw_request(server, head + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_connections_over_the_per_address_limit_are_refused_before_they_are_read(server: Server,
                                                                                honest: HonestStream) -> None:
    """One address (127.0.0.3) opens more idle connections than it may hold; the next is answered 503 at once,
    while the honest stream goes on and another address is still served."""
    import socket

    from fomm_live.live.remote.ingress import IngressLimits

    limit = IngressLimits().connections_per_address
    held: list[socket.socket] = []
    answers = []

    def action() -> None:
        for _ in range(limit):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=30,
                                                 source_address=("127.0.0.3", 0)))
        answers.append(raw_request(server, b"", source="127.0.0.3"))  # answered as it is accepted

    try:
        measured(f"{limit + 1} idle connections from one address", honest, action)
        stats = server.stats()  # another address (127.0.0.1) is served meanwhile
    finally:
        for sock in held:
            sock.close()
    assert answers[0][0].startswith(b"HTTP/1.1 503 ") and b"too many connections" in answers[0][0], answers[0][0]
    assert stats["streams"] >= 1


def test_serves_private_port_refuses_whoever_comes_without_the_ingress_secret(server: Server) -> None:
    """A local process that reaches Serve's proxy directly cannot skip the ingress nor claim another address."""
    import re
    import urllib.error
    import urllib.request

    from websockets.sync.client import connect as ws_connect

    from fomm_live.live.remote.guard import CLIENT_HEADER, INGRESS_HEADER

    port = int(re.search(r"HTTP proxy on 127\.0\.0\.1:(\d+)", server.log.read_text()).group(1))
    forged = {"Authorization": f"Bearer {TOKEN}", CLIENT_HEADER: "10.1.2.3", INGRESS_HEADER: "guessed"}
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, forged):
        with ws_connect(f"ws://127.0.0.1:{port}{protocol.STREAM_ROUTE}", additional_headers=headers,
                        open_timeout=30) as ws:
            reply = protocol.unpack(ws.recv(timeout=30))[0]
        assert reply["fatal"] and "reached only at the address it serves on" in reply["message"], reply
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{protocol.STATS_ROUTE}",
                                                          headers=headers), timeout=10)
        assert err.value.code == 403


def test_pages_of_other_origins_are_refused_on_both_routes(server: Server) -> None:
    import urllib.error
    import urllib.request

    with connect(server, headers={"Origin": "http://evil.example"}) as ws:
        reply = protocol.unpack(ws.recv(timeout=30))[0]
    assert reply["fatal"] and "web pages of http://evil.example are refused" in reply["message"]
    request = urllib.request.Request(server.url + protocol.STATS_ROUTE,
                                     headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 403


def test_non_bool_options_and_non_standard_ids_are_refused(server: Server) -> None:
    with connect(server) as ws:
        hello = {"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "jpeg"}
        assert "must be true or false" in ask(ws, dict(hello, relative="false"))["message"]
        ws.send(b"\x00\x00\x00\x2d" + b'{"type":"frame","id":-Infinity,"t":0.0,"x":1}')
        reply = protocol.unpack(ws.recv(timeout=30))[0]
        assert "standard JSON" in reply["message"] and reply["id"] is None
    with ready_stream(server) as ws:
        crop = protocol.encode_image(golden("driving_1.png"), "jpeg")
        for bad in ("1", 1.5, -1, True, 2**60):
            reply = ask(ws, {"type": "frame", "id": bad}, crop)
            assert reply["type"] == "error" and "'id' must be a whole number" in reply["message"], (bad, reply)
            assert reply["id"] is None


def test_origin_and_host_rules() -> None:
    from fomm_live.live.remote.guard import host_name, refusal

    allowed = ("https://studio.example.org",)
    ok_host = {"host": "127.0.0.1:8000"}
    assert refusal(ok_host, "127.0.0.1", token_required=False, allowed_origins=allowed) is None
    assert refusal(dict(ok_host, origin="https://studio.example.org/"), "127.0.0.1", token_required=False,
                   allowed_origins=allowed) is None
    assert "evil.example are refused" in refusal(dict(ok_host, origin="http://evil.example"), "127.0.0.1",
                                                 token_required=True, allowed_origins=allowed)
    # DNS rebinding: another site's name resolving to 127.0.0.1; and a client beyond loopback, without a token
    assert "only on loopback" in refusal({"host": "evil.example:8000"}, "127.0.0.1", token_required=False,
                                         allowed_origins=())
    assert "only on loopback" in refusal(ok_host, "10.0.0.7", token_required=False, allowed_origins=())
    assert refusal({"host": "gpu-box:8000"}, "10.0.0.7", token_required=True, allowed_origins=()) is None
    assert [host_name(h) for h in ("[::1]:8000", "localhost", "127.0.0.1:80")] == ["::1", "localhost", "127.0.0.1"]


# ------------------------------------------------------------------------------------------------------ avatars
def test_a_hash_alone_does_not_give_another_client_the_picture_nor_do_its_uploads_evict_it(
        server: Server, honest: HonestStream) -> None:
    """The honest stream uploaded the golden source from 127.0.0.1; another client, from 127.0.0.2, names its hash,
    then uploads more avatars than the replica keeps; the honest client still reaches its own by hash."""
    from fomm_live.live.remote.avatars import MAX_AVATARS

    victim = protocol.content_hash(golden("source.png"))
    rng = np.random.default_rng(7)
    known = []

    def action() -> None:
        with connect(server, source_address=("127.0.0.2", 0)) as ws:
            assert ask(ws, {"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "png"})["type"] == "ready"
            known.append(ask(ws, {"type": "avatar", "hash": victim})["known"])
            for _ in range(MAX_AVATARS + 1):
                picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                reply = ask(ws, {"type": "upload", "hash": protocol.content_hash(picture)},
                            protocol.encode_image(picture, "png"))
                assert reply.get("known") is True, reply

    measured(f"another address names a hash, then uploads {MAX_AVATARS + 1} avatars", honest, action)
    assert known == [False], "a hash alone gave another client the picture"
    with connect(server) as ws:  # the victim's address: its avatar is still held
        assert ask(ws, {"type": "hello", "version": protocol.PROTOCOL_VERSION, "codec": "png"})["type"] == "ready"
        assert ask(ws, {"type": "avatar", "hash": victim})["known"] is True
    assert victim not in server.log.read_text(), "an avatar hash in the server's log"


def test_the_avatar_cache_evicts_the_biggest_holder_first() -> None:
    from fomm_live.live.remote.avatars import AvatarCache

    cache = AvatarCache(capacity=4)
    cache.put("victim", "v1", "enc-v1")
    cache.put("victim", "v2", "enc-v2")
    for i in range(20):  # a flood from another address
        cache.put("flood", f"f{i}", f"enc-f{i}")
    assert cache.get("victim", "v1") == "enc-v1" and cache.get("victim", "v2") == "enc-v2"
    assert cache.get("flood", "v1") is None, "a hash alone does not reach another owner's avatar"
    assert len(cache) == 4 and cache.get("flood", "f19") == "enc-f19"
    assert cache.shared("f0") is None, "an encoding goes with its last owner"


def test_the_servers_log_gets_no_line_per_connection(server: Server, honest: HonestStream) -> None:
    """After every case above (hundreds of connections), the log holds no line per connection (``--debug`` shows
    them): a flood of connections must not flood the log."""
    log = server.log.read_text()
    assert "serving on" in log
    assert "connection open" not in log and "connection closed" not in log, log[-2000:]
