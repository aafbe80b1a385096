"""What the remote path costs and what batching across streams buys: ``fomm-live serve`` started in this process on
loopback (Ray Serve, the CPU), measured against the local model in the same run.

    PYTHONPATH=. python -m fomm_live.benchmarks.remote --quick --json remote.json     # the tiny golden model by default

- ``latency``: per codec, per frame, the local render (keypoints, normalisation, generator, download) and the
  remote one (encode, WebSocket round trip on loopback, the server's batch of one, decode) of the same driving
  frames, interleaved so both see the same machine load; p50/p95 of each and of the added milliseconds, and the
  PSNR of the remote faces against the local ones (PNG: exact within 1 level; JPEG at quality 90). ``jpeg+field``:
  the same with the dense motion field (photo framing's detail transfer) on both sides, and the field's bytes on
  the wire per frame.
- ``streams``: total frames per second with 1, 4 and 16 synthetic clients, each with its own avatar, each sending
  its next frame as soon as the last came back; the server's mean batch size says how much batching happened.

On the GPU machine there is no Ray: the GPU side of "many streams" is ``benchmarks.gpu_batch`` (the same batched
step, timed without the network), through ``benchmarks.gpu_report``.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from fomm_live.live.stats import percentiles

REPO = Path(__file__).resolve().parents[2]  # the checkout (fomm_live/benchmarks/ is two levels down)
TINY = REPO.parent / "shared" / "golden" / "fomm" / "tiny"
CLIENTS = (1, 4, 16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latency(url: str, animator, source: np.ndarray, frames: list[np.ndarray], *, codec: str, count: int,
            field: bool = False) -> dict:
    """Local and remote render of the same frames, interleaved (see the module docstring); ``field``: with the
    dense motion field."""
    from fomm_live.live.remote.client import RemoteBackend
    from fomm_live.live.remote.protocol import encode_field
    from fomm_live.models import tensor_to_image
    from fomm_live.models.engines import psnr

    remote = RemoteBackend(url, codec=codec)
    remote.set_source(source)
    remote.calibrate(remote.detect(frames[0]))
    animator.set_source(source)
    animator.calibrate(frames[0])
    local_ms, remote_ms, added, quality, levels, field_bytes = [], [], [], [], [], []
    for i in range(count + 1):  # the first pair warms both paths up and is not counted
        frame = frames[i % len(frames)]
        t0 = time.perf_counter()
        out = animator.generate(animator.keypoints(frame), with_motion=field)
        want = tensor_to_image(out["prediction"])
        t1 = time.perf_counter()
        got = remote.render(remote.detect(frame), detail=field).frame
        t2 = time.perf_counter()
        if field:  # what the server sent for this frame, within the float32 noise of its own decode
            occlusion = out.get("occlusion_map")
            field_bytes.append(len(encode_field(out["deformation"][0].numpy(),
                                                None if occlusion is None else occlusion[0, 0].numpy())[1]))
        if i:
            local_ms.append((t1 - t0) * 1000)
            remote_ms.append((t2 - t1) * 1000)
            added.append((t2 - t1 - (t1 - t0)) * 1000)
            quality.append(psnr(got, want, peak=255))
            levels.append(int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max()))
    remote.close()
    row = {"local_ms": percentiles(local_ms), "remote_ms": percentiles(remote_ms), "added_ms": percentiles(added),
           "psnr_db_min": round(min(quality), 2), "max_level_diff": max(levels)}
    if field:
        row["field_bytes"] = percentiles(field_bytes)
    return row


def stream_sweep(url: str, source: np.ndarray, frames: list[np.ndarray], *, clients: int, seconds: float,
                 codec: str) -> dict:
    """``clients`` streams rendering as fast as their replies come back for ``seconds``."""
    from fomm_live.live.remote.client import RemoteBackend

    backends = []
    for k in range(clients):
        backend = RemoteBackend(url, codec=codec)
        avatar = np.roll(source, shift=3 * k, axis=1)  # a distinct avatar (and content hash) per client
        backend.set_source(np.ascontiguousarray(avatar))
        backend.calibrate(backend.detect(frames[0]))
        backends.append(backend)
    counts = [0] * clients
    start = threading.Event()
    stop_at = [0.0]

    def run(k: int) -> None:
        start.wait()
        i = 0
        while time.perf_counter() < stop_at[0]:
            backends[k].render(backends[k].detect(frames[i % len(frames)]))
            counts[k] += 1
            i += 1

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    before = server_stats(url)
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = server_stats(url)
    for backend in backends:
        backend.close()
    batches = max(after["batches"] - before["batches"], 1)
    return {"frames": sum(counts), "seconds": round(wall, 2), "frames_per_second": round(sum(counts) / wall, 2),
            "mean_batch": round((after["frames"] - before["frames"]) / batches, 2)}


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(TINY / "checkpoint.pth.tar"))
    parser.add_argument("--config", default=str(TINY / "config.yaml"))
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS))
    parser.add_argument("--frames", type=int, default=100, help="frames per codec in the latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per client count")
    parser.add_argument("--quick", action="store_true", help="10 frames per codec, 3 s per client count")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.seconds = 10, 3.0
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    import ray
    from ray import serve

    from fomm_live.live.remote.server import build_app
    from fomm_live.models import Animator

    source = _read(TINY / "source.png")
    frames = [_read(TINY / f"driving_{i}.png") for i in range(3)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
        serve.run(build_app({"checkpoint": args.checkpoint, "config": args.config, "device": "cpu", "host": "127.0.0.1",
                             "precision": args.precision, "engine": "eager", "max_fps": 1000}),
                  name="fomm-live", route_prefix="/")
        animator = Animator.from_checkpoint(args.checkpoint, args.config, device="cpu", precision=args.precision,
                                            engine="eager")
        result: dict = {"settings": {"checkpoint": args.checkpoint, "precision": args.precision, "device": "cpu",
                                     "frames": args.frames, "seconds_per_count": args.seconds,
                                     "transport": "WebSocket on loopback, one Serve replica"}}
        result["latency"] = {codec: latency(url, animator, source, frames, codec=codec, count=args.frames)
                             for codec in ("jpeg", "png")}
        result["latency"]["jpeg+field"] = latency(url, animator, source, frames, codec="jpeg", count=args.frames,
                                                  field=True)
        result["streams"] = {str(n): stream_sweep(url, source, frames, clients=n, seconds=args.seconds,
                                                  codec="jpeg") for n in args.clients}
    finally:
        serve.shutdown()
        ray.shutdown()
    for codec, row in result["latency"].items():
        print(f"{codec:4s}: local p50 {row['local_ms']['p50']} ms, remote p50 {row['remote_ms']['p50']} ms, added "
              f"p50 {row['added_ms']['p50']} / p95 {row['added_ms']['p95']} ms; PSNR vs local >= "
              f"{row['psnr_db_min']} dB" + (f"; field {row['field_bytes']['p50']} bytes p50" if "field_bytes" in row
                                            else ""))
    for n, row in result["streams"].items():
        print(f"{n:>2} clients: {row['frames_per_second']} frames/s in all, mean batch {row['mean_batch']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def _read(path: Path) -> np.ndarray:
    from fomm_live.live.media import read_image

    return read_image(path)


if __name__ == "__main__":
    sys.exit(main())
