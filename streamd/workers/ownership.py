"""Who publishes which live path, when more than one server process could take the publisher.

The interface the server uses is :class:`PathOwners` (claim, release, look up); the one-process
server uses :class:`LocalOwners` (every claim succeeds: ``Paths.busy`` already decides there).
Worker processes ask their parent, which keeps an :class:`OwnerTable` (plain data, decided in one
place, so two workers claiming a path at the same moment get one yes and one no). A cluster of
machines can satisfy the same interface with Redis (``SET path owner NX`` with a TTL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

EDGE_HOLDER = "edge relay"  # the holder of a path a worker pulls from another node of a cluster


@dataclass(frozen=True)
class Owner:
    """Who holds a path: a worker (index) and, inside it, the holder (a publisher's session id)."""

    worker: int
    holder: str


class PathOwners(Protocol):
    async def claim(self, path: str, holder: str) -> Owner | None:
        """Take ``path`` for ``holder``; None when granted, else who holds it."""
        ...

    def release(self, path: str, holder: str) -> None:
        """Give ``path`` back (only if ``holder`` still holds it); fire and forget."""
        ...

    async def owner(self, path: str) -> Owner | None:
        """Who holds ``path`` now (None: nobody, or this process cannot tell)."""
        ...


class LocalOwners:
    """One process: nothing to coordinate."""

    async def claim(self, path: str, holder: str) -> Owner | None:
        return None

    def release(self, path: str, holder: str) -> None:
        return None

    async def owner(self, path: str) -> Owner | None:
        return None


class OwnerTable:
    """The parent's table of path owners. Sans-I/O and synchronous, hence atomic."""

    def __init__(self, max_paths: int = 100_000) -> None:
        self.max_paths = max_paths
        self._owners: dict[str, Owner] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def claim(self, path: str, worker: int, holder: str) -> Owner | None:
        current = self._owners.get(path)
        if current is not None and current != Owner(worker, holder):
            return current
        if current is None and len(self._owners) >= self.max_paths:
            return Owner(-1, "table full")
        self._owners[path] = Owner(worker, holder)
        return None

    def release(self, path: str, worker: int, holder: str) -> bool:
        if self._owners.get(path) == Owner(worker, holder):
            del self._owners[path]
            return True
        return False

    def owner(self, path: str) -> Owner | None:
        return self._owners.get(path)

    def items(self) -> list[tuple[str, Owner]]:
        return list(self._owners.items())

    def release_worker(self, worker: int) -> list[str]:
        """Everything a worker held (it died): released, and the paths returned."""
        gone = [path for path, owner in self._owners.items() if owner.worker == worker]
        for path in gone:
            del self._owners[path]
        return gone
