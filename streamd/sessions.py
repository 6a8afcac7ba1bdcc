"""The session registry: every session by id, who may use it, what the caps allow, which timed out.

Plain data and pure questions (``expired(now)``, counts per client and per connection): the shell
asks, and does the winding down itself. A session belongs to the RTSP connection that made it; a
UDP session whose client reconnects may also be used from the same client address, logged in as
the same user (a session id replayed from another connection without the user's credentials is
the live555 CVE class). Anyone else gets 454, as if the session did not exist (its id says
nothing to them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from streamd.auth.context import current_user
from streamd.rtsp.errors import RtspError
from streamd.rtsp.headers import parse_session
from streamd.server_session import Client, PlayerSession, PublisherSession, ServerSession


@dataclass(frozen=True)
class Caps:
    """How many sessions and publishers the server, a client address and a connection may hold."""

    sessions: int = 5000
    sessions_per_client: int = 200
    sessions_per_connection: int = 32
    publishers: int = 200
    publishers_per_client: int = 10


class SessionRegistry:
    def __init__(self, caps: Caps | None = None) -> None:
        self.caps = caps or Caps()
        self._sessions: dict[str, ServerSession] = {}
        # counts kept as sessions come and go, so caps and viewer counts cost O(1) per request
        self._per_client: Counter[str] = Counter()
        self._per_path: Counter[str] = Counter()
        self._publishers_per_client: Counter[str] = Counter()
        # told of every session that leaves (worker processes release its whole-server slots)
        self.removed: Callable[[ServerSession], object] | None = None

    # --- lookups ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def values(self) -> list[ServerSession]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> ServerSession | None:
        return self._sessions.get(session_id)

    def add(self, session: ServerSession) -> None:
        if session.id in self._sessions:
            return
        self._sessions[session.id] = session
        self._count(session, 1)

    def pop(self, session_id: str) -> ServerSession | None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._count(session, -1)
            if self.removed is not None:
                self.removed(session)
        return session

    def _count(self, session: ServerSession, step: int) -> None:
        for counter, key in (
            (self._per_client, session.client_host),
            (self._per_path, session.rtsp.path),
            *(
                [(self._publishers_per_client, session.client_host)]
                if isinstance(session, PublisherSession)
                else []
            ),
        ):
            counter[key] += step
            if counter[key] <= 0:
                del counter[key]

    def of_request(
        self, header: str | None, client: Client, *, required: bool, method: str
    ) -> ServerSession | None:
        """The session a ``Session`` header names, if ``client`` may use it (454 otherwise)."""
        if header is None:
            if required:
                raise RtspError(454, f"{method} without a Session header")
            return None
        session_id, _ = parse_session(header)
        session = self._sessions.get(session_id)
        if session is None:
            raise RtspError(454, f"no session {session_id!r} (expired or never existed)")
        if not may_use(session, client):
            raise RtspError(454, f"session {session_id!r} belongs to another client")
        if session.owner is not client and session.user != current_user.get():
            raise RtspError(454, f"session {session_id!r} belongs to another user")
        if session.owner is not client and session.connection is None:
            session.owner = client  # a UDP session's client came back on a new connection
        return session

    # --- counts and caps --------------------------------------------------------------------

    def on_path(self, path: str) -> int:
        return self._per_path[path]

    def of_client(self, host: str) -> int:
        return self._per_client[host]

    def publishers(self, host: str | None = None) -> int:
        if host is None:
            return self._publishers_per_client.total()
        return self._publishers_per_client[host]

    def check_new_session(self, client: Client) -> None:
        """503 when the server is full, 453 when this client or connection has its share."""
        caps = self.caps
        if len(self._sessions) >= caps.sessions:
            raise RtspError(503, f"{caps.sessions} sessions already (max_sessions)")
        if self.of_client(client.peer[0]) >= caps.sessions_per_client:
            raise RtspError(
                453, f"{caps.sessions_per_client} sessions from this client (max_sessions_per_client)"
            )
        if len(client.sessions) >= caps.sessions_per_connection:
            raise RtspError(
                453,
                f"{caps.sessions_per_connection} sessions on this connection (max_sessions_per_connection)",
            )

    def check_new_publisher(self, client: Client) -> None:
        caps = self.caps
        if self.publishers() >= caps.publishers:
            raise RtspError(503, f"{caps.publishers} publishers already (max_publishers)")
        if self.publishers(client.peer[0]) >= caps.publishers_per_client:
            raise RtspError(
                453, f"{caps.publishers_per_client} publishers from this client (max_publishers_per_client)"
            )
        self.check_new_session(client)

    # --- timeouts ---------------------------------------------------------------------------

    def expired(self, now: float) -> list[ServerSession]:
        """Sessions that heard nothing from their client for longer than their timeout."""
        return [s for s in self._sessions.values() if now - s.last_activity > s.rtsp.timeout]

    def players(self) -> list[PlayerSession]:
        return [s for s in self._sessions.values() if isinstance(s, PlayerSession)]


def may_use(session: ServerSession, client: Client) -> bool:
    """Its own connection always; another connection from the same address for UDP sessions."""
    if session.owner is client or session.owner is None:
        return True
    if session.connection is not None:  # interleaved: bound to the connection carrying its packets
        return False
    return session.client_host == client.peer[0]
