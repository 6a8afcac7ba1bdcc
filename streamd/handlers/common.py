"""What every handler shares: the reply type, the collaborators' Protocols, finding the session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from streamd.catalog import Resolved
from streamd.live.hub import LivePath
from streamd.rtsp.message import Request, Response
from streamd.server_session import Client, PublisherSession, ServerSession
from streamd.sessions import SessionRegistry

AfterResponse = Callable[[], None] | None  # run once the response is written (start sending)
Reply = tuple[Response, AfterResponse]
Handler = Callable[[Client, Request], Awaitable[Reply]]
Clock = Callable[[], float]


class PathResolver(Protocol):
    """What handlers need of :class:`streamd.paths.Paths`."""

    live: Mapping[str, LivePath]

    async def resolve(self, path: str) -> Resolved: ...


class LivePaths(PathResolver, Protocol):
    """What the publisher handlers need of :class:`streamd.paths.Paths`."""

    def busy(
        self, path: str, publisher_alive: Callable[[str], bool], besides: LivePath | None = None
    ) -> bool: ...

    def go_online(self, live: LivePath) -> None: ...

    async def claim(self, path: str, holder: str) -> None: ...

    def release(self, path: str, holder: str) -> None: ...

    def remove_live(self, live: LivePath, label: str = "") -> None: ...


class SessionEnder(Protocol):
    """What handlers need of :class:`streamd.lifecycle.Lifecycle`."""

    async def end(self, session: ServerSession, reason: str, *, send_bye: bool) -> None: ...


class Unpublisher(Protocol):
    def pause(self, session: PublisherSession) -> None: ...


def session_of(
    sessions: SessionRegistry, request: Request, client: Client, clock: Clock, *, required: bool
) -> ServerSession | None:
    """The request's session, if ``client`` may use it (454 otherwise); its activity is noted."""
    header = request.headers.get("Session")
    session = sessions.of_request(header, client, required=required, method=request.method)
    if session is not None:
        session.last_activity = clock()
    return session


def loop_clock() -> float:
    return asyncio.get_running_loop().time()
