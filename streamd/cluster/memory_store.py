"""The cluster store in memory, with a clock of its own that tests move: the rules of
:mod:`.redis_store` (expiry on the store's clock, atomic claims, fencing tokens) without Redis.

``available = False`` makes every call fail as an unreachable Redis would.
"""

from __future__ import annotations

from collections.abc import Callable

from streamd.cluster.store import Claim, NodeInfo, StoreRecovering, StoreUnavailable


class MemoryStore:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock  # the store's clock (Redis's), not any node's
        self.available = True
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}  # id -> (registration, expires at)
        self._claims: dict[str, tuple[Claim, float]] = {}
        self._fence = 0
        self._held_until = 0.0  # new claims refused until then (hold_new_claims)
        self._registered = False  # a node registered since the store began (its lost-state sign)

    def flush(self) -> None:
        """Forget everything, as a Redis restarted without persistence does."""
        self._nodes.clear()
        self._claims.clear()
        self._fence = 0
        self._held_until = 0.0
        self._registered = False

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable("Redis: connection refused")
        now = self.clock()
        self._nodes = {k: v for k, v in self._nodes.items() if v[1] > now}
        self._claims = {k: v for k, v in self._claims.items() if v[1] > now}

    async def register(self, node: NodeInfo, ttl: float) -> bool:
        self._check()
        known = node.id in self._nodes
        self._nodes[node.id] = (node, self.clock() + ttl)
        self._registered = True
        return known

    async def hold_new_claims(self, ttl: float) -> None:
        self._check()
        self._held_until = max(self._held_until, self.clock() + ttl)

    async def unregister(self, node_id: str) -> None:
        self._check()
        self._nodes.pop(node_id, None)

    async def nodes(self) -> list[NodeInfo]:
        self._check()
        return sorted((node for node, _ in self._nodes.values()), key=lambda node: node.id)

    async def claim(self, path: str, node_id: str, ttl: float, *, new: bool = True) -> tuple[Claim, bool]:
        self._check()
        held = self._claims.get(path)
        if held is not None:
            return held[0], held[0].node == node_id
        if new and (self.clock() < self._held_until or not self._registered):
            raise StoreRecovering("the store is waiting for owners to claim their paths again")
        self._fence += 1
        claim = Claim(path, node_id, self._fence)
        self._claims[path] = (claim, self.clock() + ttl)
        return claim, True

    async def renew(self, claim: Claim, ttl: float) -> bool:
        self._check()
        held = self._claims.get(claim.path)
        if held is None or held[0] != claim:
            return False
        self._claims[claim.path] = (claim, self.clock() + ttl)
        return True

    async def release(self, claim: Claim) -> None:
        self._check()
        held = self._claims.get(claim.path)
        if held is not None and held[0] == claim:
            del self._claims[claim.path]

    async def owner(self, path: str) -> Claim | None:
        self._check()
        held = self._claims.get(path)
        return held[0] if held is not None and held[0].node in self._nodes else None

    async def close(self) -> None:
        pass
