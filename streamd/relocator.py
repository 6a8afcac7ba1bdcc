"""Sending clients elsewhere, the I/O side of :mod:`streamd.live.redirect`.

302 for requests of paths served elsewhere (configured ``redirect``, moved at run time, or every
path while the server drains), REDIRECT requests written to playing clients, and the end of a
drain: sessions still here after the grace period are ended with RTCP BYE.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import quote

from streamd.config import ServerConfig
from streamd.handlers.common import SessionEnder
from streamd.live.redirect import Relocations, RoundRobin, moved_response, redirect_request
from streamd.rtsp.errors import RtspError
from streamd.rtsp.message import Request, Response
from streamd.rtsp.transitions import State
from streamd.rtsp.url import request_path, split_control
from streamd.server_session import Client, PlayerSession
from streamd.sessions import SessionRegistry

log = logging.getLogger("streamd")


class Relocator:
    def __init__(
        self,
        config: ServerConfig,
        sessions: SessionRegistry,
        connections: Callable[[], Iterable[Client]],
        ender: SessionEnder,
    ) -> None:
        self._config = config
        self._sessions = sessions
        self._connections = connections
        self._ender = ender
        self.relocations = Relocations()  # paths moved at run time; draining for maintenance
        self._turns = RoundRobin()
        self._cseqs = itertools.count(1)  # CSeq of our own requests to clients (REDIRECT)
        self._drain_task: asyncio.Task[None] | None = None

    def close(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()

    def moved(self, request: Request) -> Response | None:
        """302 for a path served elsewhere (round-robin over its targets), else None.

        Elsewhere: moved at run time, configured with ``redirect``, or any path while the server
        drains. Not for OPTIONS (GStreamer would send its next request for the new URL to this
        server), nor for a SETUP that adds a track to an existing session. While draining with
        nowhere to send clients, new sessions and publishers get 503.
        """
        if request.method not in ("DESCRIBE", "SETUP", "ANNOUNCE") or request.uri == "*":
            return None
        if request.method == "SETUP" and "Session" in request.headers:
            return None
        if request.method == "ANNOUNCE":
            if self.relocations.draining:
                raise RtspError(503, "the server is draining for maintenance; publish elsewhere")
            return None
        path, control = split_control(request_path(request.uri))
        if not path:
            return None
        targets = self.relocations.targets(path, self._config.path_settings(path).redirect)
        if not targets:
            if self.relocations.draining:
                raise RtspError(503, "the server is draining for maintenance")
            return None
        response = moved_response(self._turns.next(path, targets), control)
        log.info("%s %s -> 302 %s", request.method, path, response.headers["Location"])
        return response

    def move_path(self, path: str, targets: Sequence[str]) -> int:
        """Serve ``path`` from ``targets`` from now on: new clients get 302, playing ones REDIRECT.

        No targets undoes the move. Raises ValueError for a target that is not an rtsp:// URL.
        Returns how many playing clients were told.
        """
        path = path.strip("/")
        self.relocations.move(path, targets)
        moved = self.relocations.moved.get(path)
        if moved is None:
            log.info("%s: served here again", path)
            return 0
        log.info("%s: moved to %s", path, ", ".join(moved))
        return self.redirect_sessions(path, lambda p: self._turns.next(p, moved))

    def drain(self, targets: Sequence[str], grace: float = 30.0) -> int:
        """Drain for maintenance: send every client to ``targets`` (base URLs; the path is added).

        Playing clients get a REDIRECT now, new ones 302 (503 with no targets); after ``grace``
        seconds the sessions still here (clients that do not follow REDIRECT, publishers) are
        ended with RTCP BYE, so the server can be stopped without cutting anyone mid-frame.
        """
        self.relocations.drain(targets)
        log.info("draining: to %s; sessions left end in %.0f s", ", ".join(targets) or "nowhere", grace)

        def location(path: str) -> str | None:
            found = self.relocations.targets(path, self._config.path_settings(path).redirect)
            return self._turns.next(path, found) if found else None

        told = self.redirect_sessions(None, location)
        if self._drain_task is not None:
            self._drain_task.cancel()
        self._drain_task = asyncio.get_running_loop().create_task(self._end_drain(grace), name="drain")
        return told

    def stop_draining(self) -> None:
        self.relocations.drain_to = None
        if self._drain_task is not None:
            self._drain_task.cancel()
            self._drain_task = None
        log.info("draining stopped: accepting sessions again")

    def status(self) -> dict[str, object]:
        return {
            "draining": self.relocations.draining,
            "to": list(self.relocations.drain_to or ()),
            "sessions": len(self._sessions),
            "moved": {path: list(targets) for path, targets in self.relocations.moved.items()},
        }

    async def _end_drain(self, grace: float) -> None:
        await asyncio.sleep(grace)
        for session in self._sessions.values():
            await self._ender.end(session, "server drained", send_bye=True)
        log.info("drained: no sessions left")

    def redirect_sessions(
        self, path: str | None, location_for: Callable[[str], str | None], range_: str | None = None
    ) -> int:
        """Send REDIRECT (RFC 2326 10.10) to the playing clients of ``path`` (None: of every path).

        ``location_for(path)`` names where each should go (None: leave it be). Clients answer,
        then TEARDOWN here and SETUP there; their sessions end here as usual. Returns how many
        were told. For moving a path or draining the server before maintenance.
        """
        told = 0
        for session in self._sessions.values():
            if session.rtsp.state is not State.PLAYING or not isinstance(session, PlayerSession):
                continue
            if path is not None and session.rtsp.path != path:
                continue
            location = location_for(session.rtsp.path)
            connection = session.connection or next(
                (c for c in self._connections() if session.id in c.sessions and not c.is_closing), None
            )
            if location is None or connection is None:
                continue
            host, port = connection.local
            host = f"[{host}]" if ":" in host else host
            uri = f"rtsp://{host}:{port}/{quote(session.rtsp.path)}"
            request = redirect_request(uri, location, session.id, next(self._cseqs), range_=range_)
            connection.write_bytes(bytes(request))
            log.info("%s: session %s REDIRECT to %s", session.label, session.id, location)
            told += 1
        return told
