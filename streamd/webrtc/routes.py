"""The WHEP endpoints on the HTTP side (draft-ietf-wish-whep; the resource model of RFC 9725).

``POST /whep/<path>`` (``application/sdp`` offer) answers ``201`` with the SDP answer and the
session's resource in ``Location``; ``DELETE`` on that resource ends the session; ``PATCH`` with
an ``application/trickle-ice-sdpfrag`` adds the viewer's late candidates. A page of another
origin may play: every answer carries CORS headers and exposes ``Location``, and ``OPTIONS``
(a browser's preflight, which never carries credentials) is answered for every route. Reading a
path needs ``read`` of it (``streamd.http.access``); the session resource is a 192-bit secret
handed only to whoever made the session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from streamd.http.access import media_path
from streamd.rtsp.errors import RtspError
from streamd.webrtc.negotiate import MAX_OFFER_BYTES
from streamd.webrtc.whep import WhepService
from streamd.webrtc.whip import WhipService

if TYPE_CHECKING:
    from streamd.http.backend import HttpBackend

WHEP_KEY = web.AppKey("whep", WhepService)
WHIP_KEY = web.AppKey("whip", WhipService)
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch",
    "Access-Control-Max-Age": "600",
}
SESSION_PREFIX = "/whep-session/"
WHIP_PREFIX = "/whip-session/"
PREFIXES = ("/whep/", "/whip/", SESSION_PREFIX, WHIP_PREFIX)


def add_whep_routes(app: web.Application, server: HttpBackend) -> WhepService:
    service = WhepService(server)
    app[WHEP_KEY] = service
    publishers = app[WHIP_KEY] = WhipService(server)
    app.middlewares.insert(0, _cors)  # outermost: refusals of every other middleware get CORS too
    app.add_routes(
        [
            web.post("/whep/{path:.+}", _post),
            web.route("OPTIONS", "/whep/{path:.+}", _options),
            web.delete(SESSION_PREFIX + "{id}", _delete),
            web.patch(SESSION_PREFIX + "{id}", _patch),
            web.route("OPTIONS", SESSION_PREFIX + "{id}", _options),
            web.get("/webrtc/watch.js", _watch_js),
            web.post("/whip/{path:.+}", _whip_post),
            web.route("OPTIONS", "/whip/{path:.+}", _options),
            web.delete(WHIP_PREFIX + "{id}", _whip_delete),
            web.patch(WHIP_PREFIX + "{id}", _whip_patch),
            web.route("OPTIONS", WHIP_PREFIX + "{id}", _options),
        ]
    )

    async def stop(_app: web.Application) -> None:
        await service.close_all()
        await publishers.close_all()

    app.on_shutdown.append(stop)
    return service


WATCH_JS = (Path(__file__).parent / "watch.js").read_text(encoding="utf-8")


async def _watch_js(request: web.Request) -> web.Response:
    """The watch page's WebRTC player (``streamd/webrtc/watch.js``)."""
    return web.Response(text=WATCH_JS, content_type="application/javascript")


def _service(request: web.Request) -> WhepService:
    return request.app[WHEP_KEY]


@web.middleware
async def _cors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """CORS headers on every answer of the WHEP routes, refusals included (a page must be able to
    read a 401 or a 415 to tell its user why)."""
    if not request.path.startswith(PREFIXES):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(CORS)
        raise
    response.headers.update(CORS)
    return response


async def _options(request: web.Request) -> web.Response:
    headers = {"Accept-Post": "application/sdp", "Accept-Patch": "application/trickle-ice-sdpfrag"}
    return web.Response(status=204, headers=headers)


async def _offer(request: web.Request) -> str:
    content_type = request.content_type.lower()
    if content_type != "application/sdp":
        raise RtspError(415, f"an offer is application/sdp, not {content_type[:60] or 'untyped'}")
    if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
        raise RtspError(413, "the SDP offer is too large")
    try:
        return await request.text()
    except (UnicodeDecodeError, ValueError):
        raise RtspError(400, "the SDP offer is not text") from None


async def _post(request: web.Request) -> web.Response:
    offer = await _offer(request)
    path = request.match_info["path"]
    session, answer = await _service(request).create(path, offer, request.remote or "")
    return _created(SESSION_PREFIX + session.id, session.id, answer)


async def _whip_post(request: web.Request) -> web.Response:
    offer = await _offer(request)
    path = media_path(request.match_info["path"])
    session, answer = await request.app[WHIP_KEY].create(path, offer, request.remote or "")
    return _created(WHIP_PREFIX + session.id, session.id, answer)


async def _whip_delete(request: web.Request) -> web.Response:
    await request.app[WHIP_KEY].delete(request.match_info["id"])
    return web.Response(status=200)


async def _whip_patch(request: web.Request) -> web.Response:
    raise RtspError(
        405, "trickle ICE and ICE restarts are not supported for WHIP here; send every candidate in the offer"
    )


def _created(location: str, session_id: str, answer: str) -> web.Response:
    return web.Response(
        status=201,
        body=answer.encode(),
        headers={"Content-Type": "application/sdp", "Location": location, "ETag": f'"{session_id[:16]}"'},
    )


async def _delete(request: web.Request) -> web.Response:
    await _service(request).delete(request.match_info["id"])
    return web.Response(status=200)


async def _patch(request: web.Request) -> web.Response:
    if request.content_type.lower() != "application/trickle-ice-sdpfrag":
        raise RtspError(415, "PATCH takes application/trickle-ice-sdpfrag (ICE restarts are not supported)")
    fragment = await request.text()
    if len(fragment) > MAX_OFFER_BYTES:
        raise RtspError(413, "the fragment is too large")
    await _service(request).trickle(request.match_info["id"], fragment)
    return web.Response(status=204)
