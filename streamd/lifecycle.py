"""How sessions end: TEARDOWN, a closed connection, the timeout, a drain, the server stopping.

Winding a session down (stop sending, RTCP BYE, leave its multicast group, take a publisher's
path offline, forget its packet routes) runs in a task of its own, so it completes even when the
request that asked for it is cancelled. The reaper asks the registry's pure ``expired(now)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from streamd.live.multicast import MulticastService
from streamd.routing import PacketRoutes
from streamd.server_session import Client, PlayerSession, PublisherSession, ServerSession, session_stats
from streamd.sessions import SessionRegistry

log = logging.getLogger("streamd")


class Lifecycle:
    def __init__(
        self,
        sessions: SessionRegistry,
        routes: PacketRoutes,
        multicast: MulticastService,
        take_offline: Callable[[PublisherSession], None],
        connections: Callable[[], Iterable[Client]],
    ) -> None:
        self._sessions = sessions
        self._routes = routes
        self._multicast = multicast
        self._take_offline = take_offline
        self._connections = connections
        self._endings: set[asyncio.Task[None]] = set()  # sessions being wound down

    async def end(self, session: ServerSession, reason: str, *, send_bye: bool) -> None:
        """End a session and wait until it is wound down (also when the caller is cancelled)."""
        ending = self.begin(session, reason, send_bye=send_bye)
        if ending is not None:
            await asyncio.shield(ending)

    def begin(self, session: ServerSession, reason: str, *, send_bye: bool) -> asyncio.Task[None] | None:
        if self._sessions.pop(session.id) is None:
            return None  # already ending
        ending = asyncio.get_running_loop().create_task(
            self._wind_down(session, reason, send_bye=send_bye), name=f"end {session.id}"
        )
        self._endings.add(ending)
        ending.add_done_callback(self._ended)
        return ending

    def connection_closed(self, connection: Client) -> None:
        """Sessions whose packets travel on ``connection`` end with it; UDP ones live on."""
        for session_id in list(connection.sessions):
            session = self._sessions.get(session_id)
            if session is not None and session.connection is connection:
                self.begin(session, "connection closed", send_bye=False)
        self._routes.forget_connection(connection)

    async def wait(self) -> None:
        await asyncio.gather(*self._endings, return_exceptions=True)  # failures: see _ended

    async def reap(self, now: float) -> None:
        """End the sessions that heard nothing from their client for their timeout."""
        for session in self._sessions.expired(now):
            age = self._multicast.report_age(session.id, session.client_host)
            if age is not None and age < session.rtsp.timeout:
                session.last_activity = now - age  # its player reports to the group
                continue
            await self.end(session, f"timed out after {session.rtsp.timeout} s", send_bye=True)

    def _ended(self, ending: asyncio.Task[None]) -> None:
        self._endings.discard(ending)
        if not ending.cancelled() and ending.exception() is not None:
            log.error("%s failed", ending.get_name(), exc_info=ending.exception())

    async def _wind_down(self, session: ServerSession, reason: str, *, send_bye: bool) -> None:
        self._multicast.leave(session.id)
        if isinstance(session, PlayerSession):
            if session.live_reader is not None:
                session.live_reader.detach(bye=send_bye)
                session.live_reader = None
            if session.playback is not None:
                await session.playback.stop(send_bye=send_bye)
        elif isinstance(session, PublisherSession):
            self._take_offline(session)
        self._routes.forget_session(session.id)
        for connection in self._connections():
            connection.sessions.discard(session.id)
        log.info(
            "%s: session %s ended (%s) after %.1f s; %s",
            session.label,
            session.id,
            reason,
            time.monotonic() - session.started,
            session_stats(session),
        )
