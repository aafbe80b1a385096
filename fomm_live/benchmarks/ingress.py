"""What the front door of ``fomm-live serve`` (``live.remote.ingress``) adds to a frame's round trip: the same
messages sent straight to a stand-in app (a websockets echo server on loopback) and through an ingress in front of it,
alternated round by round in one process, so both see the same machine load. No Ray, no model: only the relay.

    PYTHONPATH=. python -m fomm_live.benchmarks.ingress [--rounds 4] [--messages 200] [--bytes 20000]

Prints per round and variant the p50/p95 round trip in milliseconds, then the ratio of the p50s (through / straight).
``--bytes``: a 256 x 256 face crop as JPEG at quality 90 is 10 to 23 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

from fomm_live.live.remote.ingress import Ingress
from fomm_live.live.remote.protocol import STREAM_ROUTE
from fomm_live.live.stats import percentiles


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def round_trips(url: str, messages: int, size: int) -> list[float]:
    """Milliseconds of each message's round trip, one in flight at a time (as a client sends its frames)."""
    from websockets.asyncio.client import connect

    payload = bytes(size)
    out = []
    async with connect(url, max_size=None, compression=None) as ws:
        for _ in range(messages):
            started = time.perf_counter()
            await ws.send(payload)
            await ws.recv()
            out.append((time.perf_counter() - started) * 1000)
    return out


async def run(rounds: int, messages: int, size: int) -> list[tuple[str, dict]]:
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    app, listener = free_port(), socket.create_server(("127.0.0.1", 0))
    door = listener.getsockname()[1]
    results = []
    async with serve(echo, "127.0.0.1", app, max_size=None, compression=None):
        ingress = Ingress(upstream_port=app, secret="benchmark", token_required=True)
        listening = asyncio.Event()
        task = asyncio.create_task(ingress.run(listener, listening.set))
        await listening.wait()
        try:
            for _ in range(rounds):
                for name, port in (("straight", app), ("ingress", door)):
                    times = await round_trips(f"ws://127.0.0.1:{port}{STREAM_ROUTE}", messages, size)
                    results.append((name, percentiles(times[messages // 10:])))  # the first tenth: warm-up
        finally:
            task.cancel()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds of both variants, alternated (default: 4)")
    parser.add_argument("--messages", type=int, default=200, help="messages per round and variant (default: 200)")
    parser.add_argument("--bytes", type=int, default=20000, help="bytes per message (default: 20000)")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.rounds, args.messages, args.bytes))
    for name, stats in results:
        print(f"{name:9s} p50 {stats['p50']:.3f} ms  p95 {stats['p95']:.3f} ms")
    p50 = {name: sorted(s["p50"] for n, s in results if n == name) for name in ("straight", "ingress")}
    medians = {name: values[len(values) // 2] for name, values in p50.items()}
    print(f"ingress / straight, median of the rounds' p50: {medians['ingress'] / medians['straight']:.2f}x "
          f"(+{medians['ingress'] - medians['straight']:.3f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
