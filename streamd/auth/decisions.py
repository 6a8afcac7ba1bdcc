"""A short memory of external decisions, so a hook or a token check runs once per few seconds and
not once per request, per RTSP request of a session or per media segment.

Bounded (least recently used entries go first) and keyed by a digest of everything the decision
depended on (credentials, client, action, path, protocol), so no password is kept in clear.
Time is given (``now``), never read.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from streamd.auth.model import AuthResult

MAX_ENTRIES = 256


def decision_key(*parts: str | None) -> bytes:
    """A digest of the inputs of one decision (None and "" are told apart)."""
    digest = hashlib.sha256()
    for part in parts:
        data = b"\xff" if part is None else part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(4, "big") + data)
    return digest.digest()


class DecisionCache:
    def __init__(self, ttl: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, AuthResult]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, now: float) -> AuthResult | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: bytes, result: AuthResult, now: float, ttl: float | None = None) -> None:
        """Remember ``result`` for ``ttl`` (at most the cache's own) seconds."""
        keep = self.ttl if ttl is None else min(ttl, self.ttl)
        if keep <= 0:
            return
        self._entries[key] = (now + keep, result)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
