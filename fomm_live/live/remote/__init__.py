"""Remote GPU and many streams: the FOMM served by Ray Serve (``fomm-live serve``) and animated from a laptop
(``fomm-live run --remote URL``).

- ``protocol``: the wire format and the bounds of every message (numpy and OpenCV only);
- ``client``: ``RemoteBackend``, the backend of the live loop that talks to a server (needs ``websockets``);
- ``server``: the Ray Serve application (needs ``ray[serve]`` and torch); imported only by ``live.cli.serve`` and the
  tests;
- ``batch``: the server's batched step, the frames of many streams in one pass of the networks (torch);
- ``session``: one stream's state on a replica; ``avatars``: the replica's avatars, scoped by client;
- ``decoding``: the clients' images decoded in worker processes, each bounded in time;
- ``guard``: origin, host and address checks, and the per-address and per-replica stream limits;
- ``ingress``: the front door of ``fomm-live serve`` before Serve's proxy: bounds each connection's request head,
  the connections per address and in all, and each WebSocket message before it is read (needs websockets and h11);
- ``serve-config.yaml``: the application as a Serve config file, for a running Ray cluster.

May import ``models`` and the rest of ``live``; imported by the CLI, ``live.wiring`` (lazily, for ``--remote``) and
``benchmarks.remote``.
"""
