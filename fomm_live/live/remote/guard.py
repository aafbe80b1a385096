"""Who may talk to ``fomm-live serve``, and how much: the checks a replica makes before it serves a request.

- Origin: a browser sends it with every WebSocket handshake and every cross-site request. A page of another origin
  (any web site the user visits) must not reach a server that listens on loopback without a token, so a request that
  carries an ``Origin`` is served only when that origin is allowed by configuration (``allowed_origins``: the browser
  output's pages and the extension, when they talk to ``serve``). Programs (``run --remote``) send none.
- Host: a page of another site can make its own name resolve to 127.0.0.1 (DNS rebinding); its requests then carry
  that name in ``Host``. Without a token only loopback names are served; with one, any (the token is the check).
- The client's address: with ``fomm-live serve`` the clients reach the app through its ingress
  (``live.remote.ingress``), which names each client's address in ``CLIENT_HEADER`` beside the per-launch secret in
  ``INGRESS_HEADER``; the app believes the address only with that secret, and refuses a request without it (a local
  process that reaches Serve's private port directly). The ingress checks Origin and Host on the request as the client
  sent it; the app, without an ingress (a Serve config on a cluster), checks them itself.
- Limits: streams per client address and per replica, and how long a stream may stay silent (before its ``hello``,
  then between messages). A client over a limit is told so in one message and closed. Each stream handles one
  message at a time, so a client has at most as many messages in flight as it has streams.

Standard library only; imported by ``live.remote.server`` and the tests.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from dataclasses import dataclass, field

LOOPBACK_NAMES = ("localhost", "ip6-localhost")
CLIENT_HEADER = "x-fomm-live-client"  # the client's address, as the ingress saw it
INGRESS_HEADER = "x-fomm-live-ingress"  # the per-launch secret the ingress shares with the app


@dataclass(frozen=True)
class Limits:
    """How much one replica gives its clients.

    Args:
        streams_per_address: Streams open at once from one client address.
        streams: Streams open at once on the replica (a full batch is 16; 4 batches' worth queue behind it).
        hello_timeout_s: Seconds a new stream may take to send its ``hello``.
        idle_timeout_s: Seconds a stream may stay silent after it; a client's paused loop reconnects on its own.
    """

    streams_per_address: int = 16
    streams: int = 64
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0


def is_loopback(host: str) -> bool:
    """True for a loopback name or address (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str | None) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8000`` -> ``::1``)."""
    value = (host_header or "").strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def refusal(headers, client: str | None, *, token_required: bool, allowed_origins: tuple[str, ...]) -> str | None:
    """Why a request with these headers, from the address ``client`` (None: unknown), is refused (one line), or None
    when it may be served. Without a token, only loopback clients and loopback names are served."""
    origin = headers.get("origin")
    if origin is not None and origin.rstrip("/").lower() not in allowed_origins:
        return (f"requests from web pages of {origin} are refused: allow the origin in the server's configuration "
                "(allowed_origins)")
    if not token_required and not (is_loopback(host_name(headers.get("host"))) and is_loopback(client or "")):
        return "without a token this server answers only on loopback (127.0.0.1, localhost)"
    return None


def forwarded_client(headers, secret: str) -> str | None:
    """The client's address that the ingress named in ``headers``, or None when they do not carry ``secret`` (compared
    in constant time) or name no address."""
    given = headers.get(INGRESS_HEADER) or ""
    if not hmac.compare_digest(given.encode(), secret.encode()):
        return None
    return headers.get(CLIENT_HEADER) or None


@dataclass
class AddressSlots:
    """What is open at once (the replica's streams, the ingress's connections), by client address, against a total
    and a per-address limit."""

    total: int
    per_address: int
    noun: str  # what one slot is, for the refusal: "streams", "connections"
    open: Counter = field(default_factory=Counter)

    def take(self, address: str) -> str | None:
        """A slot for ``address``, or why there is none (one line; nothing taken)."""
        if self.open.total() >= self.total:
            return f"the server is full ({self.total} {self.noun}): try again later"
        if self.open[address] >= self.per_address:
            return f"too many {self.noun} from one address (at most {self.per_address})"
        self.open[address] += 1
        return None

    def give_back(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]
