"""Who may see what on the HTTP side: each route asks the server's Authorizer (action, path).

Media routes (``/watch``, ``/mp4``, ``/files``, ``/sdp``, ``/hls``) are ``read`` of their path; ``/metrics``
is ``metrics``; the session list and the admin endpoints are ``api``; the index page and
``/api/v1/paths`` list only what the user may read (filtered, not refused); the OpenAPI document
is open. A refusal carries the Authorizer's status and headers (a 401's ``WWW-Authenticate`` makes
a browser show its login prompt) and is logged with its reason, which the client never sees.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from aiohttp import web
from multidict import CIMultiDict

from streamd.auth.model import ANONYMOUS, AuthRequest, AuthResult
from streamd.rtsp.errors import RtspError

if TYPE_CHECKING:
    from streamd.auth.model import Action, Authorizer

log = logging.getLogger(__name__)

Rule = Literal["read", "publish", "metrics", "api", "open", "self"]
# "self": the handler asks (it filters, or needs its own checks first)
RULES: dict[str, Rule] = {
    "/watch/{path}": "read",
    "/mp4/{path}": "read",
    "/files/{path}": "read",
    "/sdp/{path}": "read",
    "/hls/{path}/index.m3u8": "read",  # streamd/hls/routes.py
    "/hls/{path}/{rendition}/{name}": "read",
    "/metrics": "metrics",
    "/api/v1/openapi.json": "open",
    "/": "self",
    "/login": "self",
    "/api/v1/paths": "self",
    "/api/v1/sessions": "self",
    "/api/v1/multicast": "self",
    "/api/v1/cluster": "api",  # streamd/cluster
    "/api/v1/drain": "self",
    "/api/v1/move/{path}": "self",
    "/whep/{path}": "read",  # WebRTC playback (streamd/webrtc)
    "/whep-session/{id}": "open",  # the session's resource: its unguessable id is the key
    "/whip/{path}": "publish",  # WebRTC publishing (a bearer token works as for any route)
    "/whip-session/{id}": "open",
}
TEXTS = {401: "authentication required", 403: "not allowed", 503: "too many failed logins; try later"}

AUTHORIZER_KEY = web.AppKey("authorizer", object)


def media_path(raw: str) -> str:
    """The path a permission is checked against: no empty or ``.`` segments; a ``..`` segment is
    not found (as the catalog answers it), before any permission is asked, so a glob like
    ``cams/*`` cannot be left by ``cams/../secret``."""
    if len(raw) > 4096 or "\0" in raw:
        raise RtspError(400, "invalid path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RtspError(404, "not found")
    return posixpath.join(*parts) if parts else ""


def _authorizer(request: web.Request) -> Authorizer:
    return request.app[AUTHORIZER_KEY]  # type: ignore[return-value]


async def check(request: web.Request, action: Action, path: str) -> AuthResult:
    """The Authorizer's answer for this HTTP request doing ``action`` on ``path``."""
    auth = AuthRequest(
        protocol="http",
        method=request.method,
        uri=request.raw_path,
        client=request.remote or "",
        action=action,
        path=path,
        authorization=request.headers.get("Authorization"),
        token=request.query.get("jwt") or None,
        secure=request.secure,
    )
    return await _authorizer(request).authorize(auth, asyncio.get_running_loop().time())


def refuse(request: web.Request, result: AuthResult, action: str, path: str) -> web.HTTPException:
    """The response for a refusal (raise it), after a log line with the reason."""
    status = result.status if result.status in (401, 403, 503) else 403
    log.info(
        "HTTP %s %s from %s refused (%s %r): %d %s",
        request.method,
        request.path[:200],
        request.remote,
        action,
        path,
        status,
        result.reason or "no permission",
    )
    error = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 503: web.HTTPServiceUnavailable}[status]
    headers = CIMultiDict(result.headers)
    for challenge in result.challenges:  # one header each, in the Authorizer's order
        headers.add("WWW-Authenticate", challenge)
    return error(text=f"{status}: {TEXTS[status]}\n", headers=headers)


async def require(request: web.Request, action: Action, path: str = "") -> AuthResult:
    """Go on only if allowed (else raise the refusal)."""
    result = await check(request, action, path)
    if not result.allowed:
        raise refuse(request, result, action, path)
    return result


@runtime_checkable
class PermissionView(Protocol):
    """What an Authorizer may also offer: a user's permissions, without credentials."""

    def may(self, user: str, action: Action, path: str, client: str) -> bool: ...


def reader(request: web.Request) -> Callable[[str], Awaitable[bool]]:
    """``await may_read(path)`` for filtering lists by what this request's user may read.

    A Digest answer is good for one check only (a second use of its nonce count is a replay), so
    once one check has named the user, an Authorizer that offers ``may`` (:class:`PermissionView`)
    answers the rest by the user's permissions."""
    authorizer = _authorizer(request)
    digest = (request.headers.get("Authorization") or "").lower().startswith("digest ")
    known: list[str] = []

    async def may_read(path: str) -> bool:
        if known and isinstance(authorizer, PermissionView):
            return authorizer.may(known[0], "read", path, request.remote or "")
        result = await check(request, "read", path)
        if digest and result.user not in (None, ANONYMOUS) and result.status != 401:
            known.append(result.user)  # type: ignore[arg-type]
        return result.allowed

    return may_read


@web.middleware
async def authorize(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Checks the routes whose rule is an action before their handler runs."""
    if request.method == "OPTIONS":  # a CORS preflight: never carries credentials, answers nothing
        return await handler(request)
    route = request.match_info.route
    rule = RULES.get(route.resource.canonical if route.resource is not None else "", "open")
    if rule in ("read", "publish", "metrics", "api"):
        path = media_path(request.match_info.get("path", "")) if rule in ("read", "publish") else ""
        await require(request, rule, path)
    return await handler(request)
