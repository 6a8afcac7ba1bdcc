"""Multicast groups for the whole server, kept by the parent of ``streamd serve --workers N``.

Each worker used to allocate groups from the same configured range by itself, so two workers
could give one group to two paths, and two readers of a path on two workers got two groups and
two senders. The parent's :class:`GroupTable` (plain data, changed only on its loop, like
:class:`~.ownership.OwnerTable`) gives each path one group for every worker, released when no
worker holds it any more (a dead worker's holds go with it), and names the one worker that sends
to it: the worker that holds the path's publisher (the owner table says), else the first worker
with a source of its own (a configured relay each worker pulls). The other workers only *mirror*
the group: they answer SETUP with it and hear the receivers' reports for their sessions'
keep-alive, while their sessions' counts reach the sender through the parent
(:class:`ParentGroups`: ``mcast_demand``), which keeps its send running.

Messages: a worker asks ``mcast_hold`` (path, tracks, whether it has a source of its own) and
gets the group, its ports and the sender (with the sender's SSRCs, sequence numbers and SRTP key
when that is another worker, asked of it by ``mcast_prepare``); it tells ``mcast_state`` (its
sessions playing and set up on the path, whether it still holds it) after every change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamd.live.multicast_groups import Allocation, GroupPool, MulticastRange, PoolExhausted
from streamd.workers.channel import Channel, ChannelError
from streamd.workers.ownership import OwnerTable

log = logging.getLogger("streamd")

PREPARE_TIMEOUT = 3.0


@dataclass
class Usage:
    """One worker's use of a path's group, as it last told."""

    playing: int = 0  # its RTSP sessions playing the group
    setups: int = 0  # its RTSP sessions set up on it (playing or not)


@dataclass
class GroupEntry:
    allocation: Allocation
    holders: dict[int, Usage] = field(default_factory=dict)  # workers holding the group
    sources: list[int] = field(default_factory=list)  # holders with a source of their own, first first
    told: tuple[int, int, int] | None = None  # the last (sender, playing, setups) the sender was told


class GroupTable:
    """Path -> group for every worker, who holds it, who sends. Sans-I/O and synchronous."""

    def __init__(self, spec: MulticastRange) -> None:
        self.spec = spec
        self.pool = GroupPool(spec)
        self.entries: dict[str, GroupEntry] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def hold(self, worker: int, path: str, tracks: list[int], source: bool) -> Allocation:
        """The path's group (allocated now if nobody holds it), held by ``worker`` until it
        says otherwise; ``source``: the worker could send it itself. PoolExhausted when the
        range is used up, or when the path needs more ports than another worker's hold has."""
        entry = self.entries.get(path)
        if entry is not None and not set(tracks) <= set(entry.allocation.ports):
            if set(entry.holders) - {worker}:
                raise PoolExhausted(f"{path!r} is held by another worker with fewer tracks")
            self.pool.release(path)
            self.entries.pop(path)
            entry = None
        if entry is None:
            entry = self.entries[path] = GroupEntry(self.pool.allocate(path, tracks))
        entry.holders.setdefault(worker, Usage())
        if source and worker not in entry.sources:
            entry.sources.append(worker)
        return entry.allocation

    def report(self, worker: int, path: str, playing: int, setups: int, held: bool) -> None:
        """What ``worker`` holds of ``path`` now; a worker holding nothing lets the group go."""
        entry = self.entries.get(path)
        if entry is None:
            return
        if held:
            entry.holders[worker] = Usage(max(playing, 0), max(setups, 0))
            return
        entry.holders.pop(worker, None)
        if worker in entry.sources:
            entry.sources.remove(worker)
        if not entry.holders:
            self._release(path)

    def sender(self, path: str, owner: int | None) -> int | None:
        """The worker that sends ``path``'s group: its publisher's (``owner``), else the first
        holder with a source of its own; None when no worker can."""
        if owner is not None and owner >= 0:
            return owner
        entry = self.entries.get(path)
        return entry.sources[0] if entry is not None and entry.sources else None

    def demand(self, path: str, owner: int | None) -> tuple[int, int, int] | None:
        """(sender, sessions playing, sessions set up) of the *other* workers, when that changed
        since the sender was last told (None: nothing new to tell, or no sender)."""
        entry = self.entries.get(path)
        sender = self.sender(path, owner)
        if entry is None or sender is None:
            return None
        others = [u for w, u in entry.holders.items() if w != sender]
        now = (sender, sum(u.playing for u in others), sum(u.setups for u in others))
        if now == entry.told or (entry.told is None and now[1:] == (0, 0)):
            return None
        entry.told = now
        return now

    def release_worker(self, worker: int) -> tuple[list[str], dict[str, list[int]]]:
        """Everything ``worker`` held (it died): released. The paths it held, and of those it
        sent, the workers still holding them (their mirrors of its send are orphans now)."""
        held = [path for path, entry in self.entries.items() if worker in entry.holders]
        sent = [path for path in held if self.entries[path].sources[:1] == [worker]]
        for path in held:
            self.report(worker, path, 0, 0, held=False)
        orphans = {path: sorted(self.entries[path].holders) for path in sent if path in self.entries}
        return held, orphans

    def _release(self, path: str) -> None:
        self.entries.pop(path, None)
        self.pool.release(path)


def allocation_message(allocation: Allocation) -> dict[str, Any]:
    return {"group": allocation.group, "ports": {str(i): p for i, p in allocation.ports.items()}}


def allocation_of(path: str, message: dict[str, Any]) -> Allocation:
    ports = message.get("ports") or {}
    return Allocation(path, str(message["group"]), {int(i): int(p) for i, p in ports.items()})


class ParentGroups:
    """The parent's side: the table, the messages that change it, and the sender kept told."""

    def __init__(
        self, spec: MulticastRange, owners: OwnerTable, channels: Callable[[], dict[int, Channel]]
    ) -> None:
        self.table = GroupTable(spec)
        self.owners = owners
        self.channels = channels

    def _owner(self, path: str) -> int | None:
        owner = self.owners.owner(path)
        return None if owner is None else owner.worker

    async def handle(self, index: int, message: dict[str, Any]) -> Any:
        op = message.get("op")
        path = str(message.get("path", ""))
        if op == "mcast_hold":
            return await self._hold(index, path, message)
        if op == "mcast_state":
            playing, setups = int(message.get("playing", 0)), int(message.get("setups", 0))
            self.table.report(index, path, playing, setups, bool(message.get("held")))
            self._tell(path)
            return None
        raise ChannelError(f"unknown op {op!r}")

    async def _hold(self, index: int, path: str, message: dict[str, Any]) -> dict[str, Any]:
        tracks = [int(t) for t in message.get("tracks", [])]
        try:
            allocation = self.table.hold(index, path, tracks, bool(message.get("source")))
        except PoolExhausted as exc:
            log.error("%s: no multicast group for it: %s", path, exc)
            return {"refused": [453, f"multicast range exhausted: {exc}"]}
        sender = self.table.sender(path, self._owner(path))
        if sender is None:
            self.table.report(index, path, 0, 0, held=False)
            return {"refused": [404, f"{path!r} is not published on any worker"]}
        answer = {**allocation_message(allocation), "sender": sender}
        if sender != index:
            channel = self.channels().get(sender)
            try:
                if channel is None:
                    raise ChannelError(f"worker {sender} is not running")
                sent = await channel.request(
                    "mcast_prepare", timeout=PREPARE_TIMEOUT, path=path, **allocation_message(allocation)
                )
            except ChannelError as exc:
                self.table.report(index, path, 0, 0, held=False)
                return {"refused": [503, f"the worker sending {path!r} does not answer: {exc}"]}
            if sent is None:
                self.table.report(index, path, 0, 0, held=False)
                return {"refused": [404, f"{path!r} is no longer published on worker {sender}"]}
            self.table.hold(sender, path, tracks, source=True)  # its send holds the group too
            answer.update(sent)
        self._tell(path)
        return answer

    def worker_gone(self, index: int) -> None:
        paths, orphans = self.table.release_worker(index)
        if paths:
            log.info("worker %d held multicast groups of %s: released", index, ", ".join(sorted(paths)))
        channels = self.channels()
        for path, holders in orphans.items():  # BYE from their mirrors, as the sender would have said
            for holder in holders:
                if (channel := channels.get(holder)) is not None:
                    channel.send({"op": "mcast_gone", "path": path})
        for path in paths:
            self._tell(path)

    def _tell(self, path: str) -> None:
        """The sender learns how many sessions of other workers play (it sends while any does)."""
        demand = self.table.demand(path, self._owner(path))
        if demand is None:
            return
        sender, playing, setups = demand
        channel = self.channels().get(sender)
        if channel is not None:
            channel.send({"op": "mcast_demand", "path": path, "playing": playing, "setups": setups})
