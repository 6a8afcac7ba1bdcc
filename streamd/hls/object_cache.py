"""Made HLS objects kept in memory, least recently used out first, bounded in bytes; and one
making per object at a time however many clients ask for it at once (a CDN's misses, players
starting together)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ObjectCache(Generic[T]):
    """Values by key up to ``budget`` (as ``weigh`` counts them); a value heavier than the
    whole budget is handed out but not kept."""

    def __init__(self, budget: int, weigh: Callable[[T], int]) -> None:
        self.budget = budget
        self.weigh = weigh
        self.size = 0
        self.made = 0  # values made (cache misses that did the work)
        self._entries: OrderedDict[Hashable, T] = OrderedDict()
        self._making: dict[Hashable, asyncio.Future[T]] = {}  # being made, by key

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> T | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: T) -> None:
        weight = self.weigh(value)
        if weight > self.budget:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= self.weigh(old)
        self._entries[key] = value
        self.size += weight
        while self.size > self.budget:
            _, dropped = self._entries.popitem(last=False)
            self.size -= self.weigh(dropped)

    async def get_or_make(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """The cached value, or the one being made for another caller, or a new one. The making
        runs on even if the callers go (the next one gets it); an error reaches every caller
        waiting for it, and nothing is kept."""
        value = self.get(key)
        if value is not None:
            return value
        task = self._making.get(key)
        if task is None:
            task = asyncio.ensure_future(self._make(key, make))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
            self._making[key] = task
        return await asyncio.shield(task)

    async def _make(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await make()
        finally:
            self._making.pop(key, None)
        self.made += 1
        self.put(key, value)
        return value
