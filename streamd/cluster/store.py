"""What the cluster keeps: registered nodes and path claims, behind a small Protocol.

Both live in the store with a time to live that only the store's clock counts down: a node
that stops renewing (dead, cut off) disappears, and so do its claims; nobody compares clocks.
A claim carries a fencing token (a counter the store increases on every new claim), so a
holder renews or releases only the claim it made, never a successor's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The store (Redis) cannot be reached or failed: nothing it holds can be verified now."""


class StoreRecovering(StoreUnavailable):
    """The store lost its claims (a restart) and waits for their owners to claim them again."""


@dataclass(frozen=True)
class NodeInfo:
    """A registered node: its id (its advertised RTSP base URL), its load and whether it drains."""

    id: str
    rtsp: str  # rtsp://host:port, where clients and edges reach it
    load: int = 0  # RTSP sessions it holds
    draining: bool = False
    clock: float = 0.0  # the node's own wall clock when it registered: shown, never compared

    def encode(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "rtsp": self.rtsp,
                "load": self.load,
                "draining": self.draining,
                "clock": self.clock,
            }
        )

    @classmethod
    def decode(cls, text: str | bytes) -> NodeInfo | None:
        """None for anything that is not a registration we wrote (the store is shared)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                return None
            return cls(
                str(data["id"]),
                str(data["rtsp"]),
                int(data["load"]),
                bool(data["draining"]),
                float(data["clock"]),
            )
        except (ValueError, TypeError, KeyError, OverflowError):
            return None


@dataclass(frozen=True)
class Claim:
    """Who owns a live path: the node (id = RTSP base URL) and the claim's fencing token."""

    path: str
    node: str
    token: int

    @property
    def value(self) -> str:
        """What the store holds for it: compared whole on renew and release."""
        return f"{self.token} {self.node}"

    @classmethod
    def parse(cls, path: str, value: str | bytes | None) -> Claim | None:
        if value is None:
            return None
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        token, _, node = text.partition(" ")
        if not (token.isascii() and token.isdigit()) or not node:
            return None
        return cls(path, node, int(token))


class ClusterStore(Protocol):
    """Node registry and path claims; every method raises StoreUnavailable when it cannot answer."""

    async def register(self, node: NodeInfo, ttl: float) -> bool:
        """Register or refresh ``node`` for ``ttl`` seconds of the store's clock; whether it was
        registered already (False after a restart of the store lost it, or its expiry)."""

    async def hold_new_claims(self, ttl: float) -> None:
        """Refuse claims of paths nobody holds for ``ttl`` seconds of the store's clock (re-claims
        of a node's own paths go on), so owners re-assert theirs before anyone else may take them."""

    async def unregister(self, node_id: str) -> None: ...

    async def nodes(self) -> list[NodeInfo]:
        """Nodes registered now (expired ones are gone)."""

    async def claim(self, path: str, node_id: str, ttl: float, *, new: bool = True) -> tuple[Claim, bool]:
        """Claim ``path`` atomically if nobody holds it: (the claim now held, whether it is ours).
        ``new``: a path this node did not hold; ``StoreRecovering`` while new claims are held, and
        while no node has registered since the store began (it lost its state: a node registers
        before its first claim)."""

    async def renew(self, claim: Claim, ttl: float) -> bool:
        """Extend ``claim`` if it is still the one held (same token); False if it was lost."""

    async def release(self, claim: Claim) -> None:
        """Drop ``claim`` if it is still the one held."""

    async def owner(self, path: str) -> Claim | None:
        """The claim on ``path`` if its node is registered (a dead node's claim is not obeyed)."""

    async def close(self) -> None: ...
