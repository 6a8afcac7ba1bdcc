"""The one question every protocol asks, and its answer (shared by RTSP, tunnels and HTTP)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Action = Literal["read", "publish", "api", "metrics"]
ACTIONS: tuple[Action, ...] = ("read", "publish", "api", "metrics")
ANONYMOUS = "any"  # the user name whose permissions apply without a login


@dataclass(frozen=True)
class AuthRequest:
    """One request to authorize: what the client sent and what it wants.

    ``authorization`` is the raw ``Authorization`` header (None if absent); ``token`` a bearer
    token given another way (``?jwt=`` for players that cannot send headers). ``method`` and
    ``uri`` are the request line's (Digest checks them); ``protocol`` is "rtsp" or "http".
    """

    protocol: Literal["rtsp", "http"]
    method: str
    uri: str
    client: str  # the client's IP address
    action: Action
    path: str  # the media path ("cams/door"), "" for server-wide actions (api, metrics)
    authorization: str | None = None
    token: str | None = None
    # other actions any of which would do as well (RTSP OPTIONS: a reader's or a publisher's)
    alternatives: tuple[Action, ...] = ()
    secure: bool = False  # arrived over TLS (RTSPS, HTTPS, a tunnel over HTTPS): issue 15's policy


@dataclass(frozen=True)
class AuthResult:
    """Allowed (with the user it is for), or the status and headers to refuse with.

    401 carries ``WWW-Authenticate`` challenges; 403 means the user is known but may not; 503
    with ``Retry-After`` means login attempts from this client or for this user are backing off.
    """

    allowed: bool
    user: str | None = None  # the authenticated user, or ANONYMOUS
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    challenges: tuple[str, ...] = ()  # WWW-Authenticate values, one header each, in this order
    reason: str = ""  # for the log line, never for the client


class Authorizer(Protocol):
    async def authorize(self, request: AuthRequest, now: float) -> AuthResult: ...
