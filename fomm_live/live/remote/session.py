"""One client's stream as a replica of ``fomm-live serve`` holds it: its state (codec, motion options, smoothing,
neutral pose, avatar), the avatar encodings it points at, and the checks of the header fields that name them.

Imports ``live.loop.smoothing``; imported by ``live.remote.server`` and the tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from fomm_live.live.loop.smoothing import MotionSmoother
from fomm_live.live.remote.protocol import ProtocolError, smoothing_of

MAX_FRAME_ID = 2**53  # the largest whole number every JSON reader keeps exactly


class UnknownAvatar(KeyError):
    """An avatar this replica does not hold for the client (upload it)."""


def token_digest(token: str) -> str:
    """What the replicas keep of the token: its SHA-256 (compared in constant time, never stored in clear)."""
    return hashlib.sha256(token.encode()).hexdigest()


def frame_id_of(header: dict) -> int | None:
    """A message's ``id`` when it is a whole number from 0 to ``MAX_FRAME_ID`` (what is echoed back), else None."""
    value = header.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_FRAME_ID else None


def hash_of(header: dict) -> str:
    """The avatar hash of an ``avatar`` or ``upload`` header: 64 lowercase hex digits."""
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

    owner: str = ""  # the client's address: whose avatars it may name (``live.remote.avatars``)
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


