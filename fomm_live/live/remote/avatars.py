"""The avatars a replica of ``fomm-live serve`` holds, scoped by client: a hash alone never gives a client another
client's picture, and one client's uploads never evict another's avatars beyond a fair share.

An avatar is encoded once per replica and shared by every client that has uploaded the same picture, but a client
reaches it by its hash only when that client (its address) uploaded it itself: an upload is the proof that it holds
the picture (the server checks that the hash is the hash of the decoded pixels). Entries are (owner, hash), least
recently used first out; when the replica is full, the entry that goes is the oldest of the owner holding the most,
so a client that uploads without end evicts its own avatars once it holds its share. An encoding is dropped with its
last owner; a stream keeps the encoding it uses, so eviction never breaks a running stream.

Standard library only (the encodings are opaque here); imported by ``live.remote.server``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

MAX_AVATARS = 32  # per replica: a vox-256 source encoding is ~4 MB of fp32 features


class AvatarCache:
    """Avatar encodings by content hash, reachable per owner (a client address).

    Args:
        capacity: Entries (owner, hash) the replica keeps.
    """

    def __init__(self, *, capacity: int = MAX_AVATARS) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[tuple[str, str], None] = OrderedDict()  # least recently used first
        self.encodings: dict[str, Any] = {}
        self.per_owner: Counter = Counter()

    def get(self, owner: str, avatar_hash: str) -> Any | None:
        """The encoding of ``avatar_hash`` when ``owner`` uploaded it (and it is still held), else None."""
        key = (owner, avatar_hash)
        if key not in self.entries:
            return None
        self.entries.move_to_end(key)
        return self.encodings[avatar_hash]

    def shared(self, avatar_hash: str) -> Any | None:
        """The encoding of ``avatar_hash`` if any owner holds it: an upload of the same picture is not encoded
        again (the uploader has proved it holds the picture)."""
        return self.encodings.get(avatar_hash)

    def put(self, owner: str, avatar_hash: str, encoding: Any) -> None:
        """Holds ``encoding`` for ``owner``, evicting as the module's docstring says when the replica is full."""
        key = (owner, avatar_hash)
        if key in self.entries:
            self.entries.move_to_end(key)
            return
        while len(self.entries) >= self.capacity:
            self._evict(owner)
        self.entries[key] = None
        self.per_owner[owner] += 1
        self.encodings[avatar_hash] = encoding

    def _evict(self, incoming: str) -> None:
        counts = Counter(self.per_owner)
        counts[incoming] += 1  # the newcomer's entry counts towards its share
        biggest = max(counts.values())
        victim = next(key for key in self.entries if counts[key[0]] == biggest)  # a full cache: one holder is there
        del self.entries[victim]
        self.per_owner[victim[0]] -= 1
        if self.per_owner[victim[0]] <= 0:
            del self.per_owner[victim[0]]
        if not any(h == victim[1] for _, h in self.entries):
            del self.encodings[victim[1]]

    def __len__(self) -> int:
        return len(self.entries)
