"""Admin endpoints of the JSON API: drain the server for maintenance, move a path elsewhere.

They change what the server does for everyone, so only clients from ``admin_networks``
(loopback unless configured) may call them; ``streamd drain`` and ``streamd move`` use them.
Being on loopback is not enough: any web page the admin's browser opens is too. So a change
also needs a JSON body (a page cannot send one cross-origin without asking first), a ``Host``
that names this server (a DNS-rebinding page sends its own name), no foreign ``Origin``, and,
when ``admin_token`` is set, ``Authorization: Bearer <token>``. After these checks the request's
user needs the ``api`` permission (``streamd.http.access``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from streamd.auth.defaults import unconfigured
from streamd.http.access import require

if TYPE_CHECKING:
    from streamd.http.backend import HttpBackend

log = logging.getLogger(__name__)

MAX_GRACE = 24 * 3600.0


def add_admin_routes(app: web.Application, server: HttpBackend) -> None:
    def allowed(request: web.Request) -> None:
        remote = request.remote or ""
        if not server.config.allows_admin(remote):
            log.warning(
                "HTTP %s %s from %s refused: not in admin_networks", request.method, request.path, remote
            )
            raise web.HTTPForbidden(text="403: admin endpoints are open to admin_networks only\n")
        reason = refusal(request, server.config.admin_token, server.config.host)
        if reason is not None:
            status, why = reason
            log.warning("HTTP %s %s from %s refused: %s", request.method, request.path, remote, why)
            headers = {"WWW-Authenticate": 'Bearer realm="streamd admin"'} if status == 401 else None
            raise _ERRORS[status](text=f"{status}: {why}\n", headers=headers)

    async def allowed_api(request: web.Request) -> None:
        """The checks above, then the ``api`` permission of the request's user."""
        allowed(request)
        await require(request, "api")

    async def drain_status(request: web.Request) -> web.Response:
        if not unconfigured(server.config):  # open as before when nobody configured users
            await require(request, "api")
        return _json(server.relocator.status())

    async def drain(request: web.Request) -> web.Response:
        await allowed_api(request)
        body = await _body(request)
        grace = body.get("grace", 30)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= MAX_GRACE:
            raise web.HTTPBadRequest(text=f"400: grace must be seconds between 0 and {MAX_GRACE:.0f}\n")
        try:
            told = server.relocator.drain(_targets(body), float(grace))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"400: {exc}\n") from None
        return _json({**server.relocator.status(), "redirected": told})

    async def stop_draining(request: web.Request) -> web.Response:
        await allowed_api(request)
        server.relocator.stop_draining()
        return _json(server.relocator.status())

    async def move(request: web.Request) -> web.Response:
        await allowed_api(request)
        path = request.match_info["path"].strip("/")
        if not path or len(path) > 4096 or "\0" in path:
            raise web.HTTPBadRequest(text="400: invalid path\n")
        try:
            told = server.relocator.move_path(path, _targets(await _body(request)))
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"400: {exc}\n") from None
        return _json(
            {"path": path, "to": list(server.relocator.relocations.moved.get(path, ())), "redirected": told}
        )

    app.add_routes(
        [
            web.get("/api/v1/drain", drain_status),
            web.post("/api/v1/drain", drain),
            web.delete("/api/v1/drain", stop_draining),
            web.post("/api/v1/move/{path:.+}", move),
        ]
    )


def carries_token(request: web.Request, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
}
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def refusal(request: web.Request, token: str | None, configured_host: str) -> tuple[int, str] | None:
    """Why this admin request must be refused (status, reason), or None if it may go on."""
    if token is not None and not carries_token(request, token):
        return 401, "admin endpoints need Authorization: Bearer <admin_token>"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    local_ip, local_port = (str(sockname[0]), int(sockname[1])) if sockname else ("", 0)
    names = {*LOCAL_NAMES, socket.gethostname().lower(), configured_host.lower()}
    host = request.headers.get("Host", "")
    # with the token, any name may reach us (a page cannot know it, nor send it cross-origin)
    if token is None and not _is_ours(host, names, local_ip, local_port):
        return 403, f"Host {host[:100]!r} does not name this server"
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or (
            parts.netloc != host and not _is_ours(parts.netloc, names, local_ip, local_port)
        ):
            return 403, f"cross-origin request from {origin[:100]!r}"
    if request.method == "POST":
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 400, f"the body must be JSON sent as Content-Type: application/json, not {content_type!r}"
    return None


def _is_ours(authority: str, names: set[str], local_ip: str, local_port: int) -> bool:
    """Whether ``host[:port]`` names this server: a loopback or local name, or the address (and
    port) the client connected to. A DNS-rebinding page can only send a name of its own."""
    parts = urlsplit("//" + authority)
    try:
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return False
    if port is not None and port != local_port:
        return False
    if host in names:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or host == local_ip.lower().split("%")[0]


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body counts as ``{}``)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="400: the body must be a JSON object\n") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="400: the body must be a JSON object\n")
    return body


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _targets(body: dict[str, Any]) -> list[str]:
    targets = body.get("to", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise web.HTTPBadRequest(text='400: "to" must be a list of rtsp:// URLs\n')
    return targets


def _json(data: object) -> web.Response:
    return web.Response(text=json.dumps(data, indent=1) + "\n", content_type="application/json")
