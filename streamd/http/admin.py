"""Admin endpoints of the JSON API: drain the server for maintenance, move a path elsewhere.

They change what the server does for everyone, so only clients from ``admin_networks``
(loopback unless configured) may call them; ``streamd drain`` and ``streamd move`` use them.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from streamd.config import ServerConfig
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

    async def drain_status(request: web.Request) -> web.Response:
        return _json(server.relocator.status())

    async def drain(request: web.Request) -> web.Response:
        allowed(request)
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
        allowed(request)
        server.relocator.stop_draining()
        return _json(server.relocator.status())

    async def move(request: web.Request) -> web.Response:
        allowed(request)
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


def is_admin(request: web.Request, config: ServerConfig) -> bool:
    """May this client see what only administrators see (session ids, client addresses)?

    From ``admin_networks`` and, when an ``admin_token`` is configured, carrying it as a bearer token.
    """
    if not config.allows_admin(request.remote or ""):
        return False
    token = config.admin_token
    return token is None or request.headers.get("Authorization", "") == f"Bearer {token}"


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
