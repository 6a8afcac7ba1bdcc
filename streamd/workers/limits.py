"""Limits for the whole server, not per worker: ``max_sessions``, ``max_publishers``,
``max_connections`` and their per-client shares, counted once by the parent.

The parent keeps a :class:`SlotTable` (plain data, changed only on its loop, so two workers
asking for the last slot at the same moment get one yes and one no). A worker reserves a slot
over its channel when a session or a connection begins (one round trip per session or
connection, never per packet) and releases it when that ends; everything a worker held is
released when it exits. The worker's side is :class:`WorkerSlots`: it wraps the two requests
that make sessions (``SETUP`` without a session, ``ANNOUNCE``) and the connection admission, and
answers as a single server does: 503 when the server is full, 453 when the client has its share,
a refused connection closed with a log line.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from streamd.config import ServerConfig
from streamd.handlers.common import Handler, Reply
from streamd.rtsp.errors import RtspError
from streamd.rtsp.message import Request
from streamd.server_session import Client, ServerSession
from streamd.workers.channel import Channel, ChannelError
from streamd.workers.internal import SIBLING

log = logging.getLogger("streamd")

SESSIONS, PUBLISHERS, CONNECTIONS = "sessions", "publishers", "connections"


@dataclass(frozen=True)
class Cap:
    """One limit: ``total`` for the server, ``per_client`` for one client address."""

    total: int
    per_client: int
    setting: str  # the configuration key, for the reason

    def refusal(self, kind: str, total: int, of_client: int) -> tuple[int, str] | None:
        if total >= self.total:
            return 503, f"{self.total} {kind} already ({self.setting})"
        if of_client >= self.per_client:
            return 453, f"{self.per_client} {kind} from this client ({self.setting}_per_client)"
        return None


def caps_of(config: ServerConfig) -> dict[str, Cap]:
    return {
        SESSIONS: Cap(config.max_sessions, config.max_sessions_per_client, "max_sessions"),
        PUBLISHERS: Cap(config.max_publishers, config.max_publishers_per_client, "max_publishers"),
        CONNECTIONS: Cap(config.max_connections, config.max_connections_per_client, "max_connections"),
    }


class SlotTable:
    """The parent's counts. Sans-I/O and synchronous, hence atomic."""

    def __init__(self, caps: dict[str, Cap]) -> None:
        self.caps = caps
        self.totals: Counter[str] = Counter()
        self.per_client: Counter[tuple[str, str]] = Counter()
        self.by_worker: dict[int, Counter[tuple[str, str]]] = {}

    def reserve(self, worker: int, kinds: list[str], client: str) -> tuple[int, str] | None:
        """One slot of each of ``kinds`` for ``client``, all or none: None, or (status, reason)."""
        for kind in kinds:
            refused = self.caps[kind].refusal(kind, self.totals[kind], self.per_client[(kind, client)])
            if refused is not None:
                return refused
        held = self.by_worker.setdefault(worker, Counter())
        for kind in kinds:
            self.totals[kind] += 1
            self.per_client[(kind, client)] += 1
            held[(kind, client)] += 1
        return None

    def release(self, worker: int, kinds: list[str], client: str) -> None:
        held = self.by_worker.get(worker)
        for kind in kinds:
            if held is None or held[(kind, client)] <= 0:
                continue  # not ours (a late release after the worker was restarted)
            self._drop(held, kind, client, 1)

    def release_worker(self, worker: int) -> int:
        """Everything a worker held (it exited): released; how many slots."""
        held = self.by_worker.pop(worker, Counter())
        freed = held.total()
        for (kind, client), count in list(held.items()):
            self._drop(held, kind, client, count)
        return freed

    def _drop(self, held: Counter[tuple[str, str]], kind: str, client: str, count: int) -> None:
        held[(kind, client)] -= count
        self.totals[kind] -= count
        self.per_client[(kind, client)] -= count
        for counter, key in ((held, (kind, client)), (self.per_client, (kind, client))):
            if counter[key] <= 0:
                del counter[key]
        if self.totals[kind] <= 0:
            del self.totals[kind]


class ParentSlots:
    """The parent's side: the table and the two messages that change it."""

    def __init__(self, config: ServerConfig) -> None:
        self.table = SlotTable(caps_of(config))

    def handle(self, index: int, message: dict[str, Any]) -> Any:
        kinds = [str(k) for k in message.get("kinds", [])]
        client = str(message.get("client", ""))
        if any(k not in self.table.caps for k in kinds):
            raise ChannelError(f"unknown limit in {kinds!r}")
        if message.get("op") == "slots_reserve":
            refused = self.table.reserve(index, kinds, client)
            return None if refused is None else list(refused)
        self.table.release(index, kinds, client)
        return None


class WorkerSlots:
    """A worker's side: sessions and connections counted by the parent for the whole server."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.held: dict[str, list[str]] = {}  # session id -> the kinds it holds
        self._sessions: Any = {}  # the worker's SessionRegistry, once installed

    def install(self, rtsp: Any) -> None:
        handlers = dict(rtsp.dispatcher._handlers)
        handlers["SETUP"] = self._wrap(handlers["SETUP"], [SESSIONS], new_only=True)
        handlers["ANNOUNCE"] = self._wrap(handlers["ANNOUNCE"], [PUBLISHERS, SESSIONS], new_only=False)
        rtsp.dispatcher._handlers = handlers
        rtsp.sessions.removed = self._removed
        self._sessions = rtsp.sessions

    async def reserve(self, kinds: list[str], client: str) -> None:
        """RtspError (503/453) when the server (or the client) has no slot left."""
        try:
            refused = await self.channel.request("slots_reserve", kinds=kinds, client=client)
        except ChannelError as exc:
            raise RtspError(503, f"cannot count {kinds[0]} across the workers: {exc}") from None
        if refused is not None:
            status, reason = refused
            raise RtspError(int(status), str(reason))

    def release(self, kinds: list[str], client: str) -> None:
        self.channel.send({"op": "slots_release", "kinds": kinds, "client": client})

    def _wrap(self, inner: Handler, kinds: list[str], *, new_only: bool) -> Handler:
        async def counted(client: Client, request: Request) -> Reply:
            host = client.peer[0]
            if host == SIBLING or (new_only and "Session" in request.headers):
                return await inner(client, request)  # a sibling's relay, or a session that exists
            before = set(client.sessions)
            await self.reserve(kinds, host)
            try:
                reply = await inner(client, request)
            except BaseException:
                self.release(kinds, host)
                raise
            made = [sid for sid in client.sessions if sid not in before]
            if made and made[0] not in self.held and made[0] in self._sessions:
                self.held[made[0]] = kinds  # released when the session leaves the registry
            else:
                self.release(kinds, host)
            return reply

        return counted

    def _removed(self, session: ServerSession) -> None:
        kinds = self.held.pop(session.id, None)
        if kinds is not None:
            self.release(kinds, session.client_host)
