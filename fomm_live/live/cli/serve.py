"""``fomm-live serve``: the FOMM as a Ray Serve application that animates the face crops of many remote streams
(``fomm-live run --remote URL`` on the other end)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
from pathlib import Path

from fomm_live.live.cli.common import PRECISIONS, add_config_option, add_debug_option
from fomm_live.live.errors import UserError
from fomm_live.live.options import CHECKPOINT_HELP

logger = logging.getLogger(__name__)

MALLOC_MMAP_THRESHOLD = 1 << 20  # bytes: blocks from 1 MiB up are mapped apart and returned to the system when freed
KEEP_ALIVE_S = 10  # seconds Serve's proxy keeps an idle connection of the ingress (Serve's default: 90)
RAY_MISSING = "fomm-live serve needs Ray Serve: pip install 'fomm-live[serve]'"

EPILOG = """\
One GPU machine:
  fomm-live serve --checkpoint vox-cpk.pth.tar --host 0.0.0.0 --token-file token.txt
  (on the laptop) fomm-live run --remote http://GPU-HOST:8000 --token-file token.txt --source me.jpg

A running Ray cluster (replicas, GPUs per replica and autoscaling are in the config file):
  serve deploy live/remote/serve-config.yaml   # edit its checkpoint and token_file first

Without --token-file the server listens on loopback only (127.0.0.1). GET /stats reports streams, frames and
avatar-cache hits. Clients reach Ray Serve through this command's own front door on --host/--port, which bounds each
connection (request head in 10 s and 16 KB, 32 connections per address, 256 in all, messages refused from their
frame header); Serve's HTTP proxy listens on a private port of 127.0.0.1 and answers only the front door.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve", help="serve the FOMM to remote clients (fomm-live run --remote URL) on Ray Serve",
        description="Run the First Order Motion Model as a Ray Serve application: clients send face crops over a "
                    "WebSocket and get the animated face back; frames from all streams are batched on each replica, "
                    "each avatar is encoded once per replica. On CUDA when a GPU is visible (fp16), else the CPU.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
    )
    serve.add_argument("--checkpoint", required=True, metavar="CKPT", help=CHECKPOINT_HELP)
    add_config_option(serve)
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto = CUDA when the replica has a GPU, else CPU (default: auto)")
    serve.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="generator precision; auto = fp16 on CUDA (default: auto)")
    serve.add_argument("--engine", default="auto", choices=["auto", "eager", "tensorrt", "onnxruntime"],
                       help="what runs the networks on each replica (default: auto)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: 127.0.0.1); anything but loopback needs --token-file")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument("--token-file", metavar="F",
                       help="a file whose first line is the token clients must send (their --token-file)")
    serve.add_argument("--replicas", type=int, default=1, metavar="N", help="model replicas (default: 1)")
    serve.add_argument("--gpus-per-replica", type=float, metavar="X",
                       help="GPUs per replica (default: 1 when the machine has a GPU and --device is not cpu, else 0)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                       help="a web origin (https://host[:port]) whose pages may use the server, e.g. the browser "
                            "output's; repeat for more. Requests from other web pages are refused (default: none)")
    serve.add_argument("--max-fps", type=float, default=60.0, metavar="N",
                       help="frames per second per stream; faster streams are paced (default: 60)")
    add_debug_option(serve)


def check_listen(host: str, token_file: str | None) -> str | None:
    """The token (None on loopback without one); refuses a non-loopback address without a token."""
    from fomm_live.live.remote.client import read_token
    from fomm_live.live.remote.guard import is_loopback  # the server's own rule (build_app applies it too)

    if not is_loopback(host) and token_file is None:
        raise UserError(f"--host {host} listens beyond this machine: pass --token-file F (a file whose first line is "
                        "a secret token; clients pass the same file), or listen on --host 127.0.0.1")
    return read_token(token_file)


def listen(host: str, port: int) -> socket.socket:
    """The socket the ingress serves on, bound before Ray starts: a taken port or a foreign address fails at once."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=128)
    except OSError as err:
        raise UserError(f"cannot listen on --host {host} --port {port}: {err.strerror or err}") from None


def private_port() -> int:
    """A free port on 127.0.0.1 for Serve's HTTP proxy (the ingress holds the user's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execute(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is out of range (1 to 65535)")
    if args.replicas < 1:
        raise UserError("--replicas must be at least 1")
    token = check_listen(args.host, args.token_file)
    if not Path(args.checkpoint).is_file():
        raise UserError(f"--checkpoint {args.checkpoint} does not exist")
    listener = listen(args.host, args.port)
    if not os.environ.get("RAY_ADDRESS"):  # this command starts its own one-machine Ray cluster
        # Ray's services (GCS, raylet, workers) listen on every interface, whatever address is asked for: token
        # authentication (Ray >= 2.52) keeps everyone else out of them. A fresh random token for each run.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    try:
        import ray
        from ray import serve

        from fomm_live.live.remote.ingress import Ingress, connection_logger
        from fomm_live.live.remote.server import build_app
    except ImportError:
        raise UserError(RAY_MISSING) from None
    from fomm_live.live.cli.interrupts import install_interrupt_handlers

    # glibc raises its mmap threshold to the largest block freed (up to 32 MiB): after a burst of 16 MiB messages
    # Ray's proxy and the replica kept the memory they no longer used. A fixed threshold hands such blocks back at
    # once; Ray's processes inherit it from here.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MALLOC_MMAP_THRESHOLD))
    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=args.debug)
    install_interrupt_handlers()  # again: Ray's start may have replaced the SIGTERM handler
    try:
        # Serve's proxy cannot bound a request's head nor a WebSocket message before reading it: it listens on
        # loopback, and the ingress, with the bounds, on the user's address; they share a secret of this run.
        upstream, secret = private_port(), secrets.token_hex(32)
        serve.start(http_options={"host": "127.0.0.1", "port": upstream, "keep_alive_timeout_s": KEEP_ALIVE_S},
                    logging_config={"log_level": "WARNING"})
        gpus = args.gpus_per_replica
        if gpus is None:
            gpus = 1.0 if args.device != "cpu" and ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        app = build_app({"checkpoint": str(Path(args.checkpoint).resolve()), "config": args.config,
                         "device": args.device, "precision": args.precision, "engine": args.engine,
                         "token_file": args.token_file, "host": args.host, "allowed_origins": args.allow_origin,
                         "max_fps": args.max_fps, "num_replicas": args.replicas,
                         "num_gpus": gpus, "ingress_secret": secret})
        try:
            serve.run(app, name="fomm-live", route_prefix="/")
        except RuntimeError as err:  # the replica failed to start: its error is the last line
            lines = [line for line in str(err).strip().splitlines() if line.strip()]
            raise UserError(f"the model replica failed to start: {lines[-1] if lines else err}") from err
        host = f"[{args.host}]" if ":" in args.host else args.host

        def ready() -> None:
            logger.info("%s", "streams must carry the token of --token-file" if token else
                        "listening on loopback only, no token needed")
            logger.info("Serve's HTTP proxy on 127.0.0.1:%d answers only this command's front door", upstream)
            logger.info("serving on http://%s:%d (%d replica%s, %g GPU each); Ctrl-C stops", host, args.port,
                        args.replicas, "" if args.replicas == 1 else "s", gpus)

        ingress = Ingress(upstream_port=upstream, secret=secret, token_required=token is not None,
                          allowed_origins=tuple(args.allow_origin))
        connection_logger.setLevel(logging.DEBUG if args.debug else logging.WARNING)  # a line per connection: --debug
        asyncio.run(ingress.run(listener, ready))
    finally:
        listener.close()
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            logger.info("stopped")
